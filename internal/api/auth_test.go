package api

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/require"

	"github.com/intakehq/intake/internal/config"
)

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// pad returns the big-endian bytes of n left-padded to size.
func pad(n *big.Int, size int) []byte {
	b := n.Bytes()
	out := make([]byte, size)
	copy(out[size-len(b):], b)
	return out
}

// TestJWKSAuth serves a JWK Set (RSA and EC keys) from a local HTTP server and checks RS256 and ES256
// tokens against it, with issuer and audience enforced.
func TestJWKSAuth(t *testing.T) {
	t.Parallel()
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	otherRSA, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	jwks, err := json.Marshal(map[string]any{"keys": []map[string]string{
		{"kty": "RSA", "kid": "rsa1", "alg": "RS256", "use": "sig", "n": b64(rsaKey.N.Bytes()), "e": b64(big.NewInt(int64(rsaKey.E)).Bytes())},
		{"kty": "EC", "kid": "ec1", "alg": "ES256", "use": "sig", "crv": "P-256", "x": b64(pad(ecKey.X, 32)), "y": b64(pad(ecKey.Y, 32))},
	}})
	require.NoError(t, err)
	jwksSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(jwks)
	}))
	defer jwksSrv.Close()

	cfg := config.API{JWKSURL: jwksSrv.URL, JWTIssuer: "https://idp.test", JWTAudience: "intake"}
	a, err := NewAuthenticator(t.Context(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	require.NoError(t, err)

	claims := func(sub, aud string) jwt.MapClaims {
		return jwt.MapClaims{"sub": sub, "iss": "https://idp.test", "aud": aud, "exp": time.Now().Add(time.Minute).Unix()}
	}
	cases := []struct {
		name, token, owner string
	}{
		{"RS256", signJWT(t, jwt.SigningMethodRS256, rsaKey, "rsa1", claims("rita", "intake")), "rita"},
		{"ES256", signJWT(t, jwt.SigningMethodES256, ecKey, "ec1", claims("eve", "intake")), "eve"},
		{"RS256 wrong key", signJWT(t, jwt.SigningMethodRS256, otherRSA, "rsa1", claims("rita", "intake")), ""},
		{"RS256 unknown kid", signJWT(t, jwt.SigningMethodRS256, otherRSA, "nope", claims("rita", "intake")), ""},
		{"RS256 wrong audience", signJWT(t, jwt.SigningMethodRS256, rsaKey, "rsa1", claims("rita", "other")), ""},
		{"HS256 not configured", signJWT(t, jwt.SigningMethodHS256, []byte(jwtSecret), "", claims("rita", "intake")), ""},
	}
	for _, c := range cases {
		req := httptest.NewRequest("GET", "/v1/objects", nil)
		req.Header.Set("Authorization", "Bearer "+c.token)
		who, p := a.authenticate(req)
		if c.owner == "" {
			require.NotNil(t, p, c.name)
			require.Equal(t, http.StatusUnauthorized, p.Status, c.name)
			continue
		}
		require.Nil(t, p, "%s: %v", c.name, p)
		require.Equal(t, c.owner, who.owner, c.name)
	}
}

func TestAPIKeyOwnersMustBeUsable(t *testing.T) {
	t.Parallel()
	_, err := NewAuthenticator(t.Context(), config.API{Keys: "0123456789abcdefgh=a/b"}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	require.Error(t, err)
}
