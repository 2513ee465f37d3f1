package testkit

import (
	"testing"

	"github.com/golang-jwt/jwt/v5"
)

// SignJWT signs claims with method and key (a []byte secret for HS256, a private key otherwise),
// with a kid header when kid is set: the tokens an identity provider, or an attacker, would make.
func SignJWT(t testing.TB, method jwt.SigningMethod, key any, kid string, claims jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, claims)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatalf("testkit: sign JWT: %v", err)
	}
	return s
}
