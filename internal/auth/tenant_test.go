package auth

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/require"

	"github.com/intakehq/intake/internal/config"
	"github.com/intakehq/intake/internal/testkit"
)

// TestTenantSecretAttacks: a tenant's backend mints HS256 tokens for its browsers with its own
// secret (INTAKE_API_JWT_TENANT_SECRETS), not the shared one, which can mint any subject and
// operator tokens. Each row names who holds which secret and what they try; a tenant's secret
// signs its own subject's tokens only, and never an operator's.
func TestTenantSecretAttacks(t *testing.T) {
	t.Parallel()
	acmeSecret, globexSecret := strings.Repeat("a", 32)+"-acme", strings.Repeat("g", 32)+"-globex"
	a, err := New(t.Context(), config.API{
		JWTSecret: secret, JWTTenantSecrets: "acme=" + acmeSecret + ", globex=" + globexSecret,
		JWTIssuer: issuer, JWTAudience: audience, JWTAdminScope: adminScop,
	}, discard())
	require.NoError(t, err)
	sign := func(key string, mod func(jwt.MapClaims)) string {
		return "Bearer " + testkit.SignJWT(t, jwt.SigningMethodHS256, []byte(key), "", tokenClaims(mod))
	}
	sub := func(s string, more ...func(jwt.MapClaims)) func(jwt.MapClaims) {
		return func(c jwt.MapClaims) {
			c["sub"] = s
			for _, m := range more {
				m(c)
			}
		}
	}
	admin := func(c jwt.MapClaims) { c["scope"] = "openid " + adminScop }
	for _, c := range []struct {
		who    string
		token  string
		status int
		want   Caller
	}{
		{"acme's backend, for its own browsers", sign(acmeSecret, sub("acme")), 200, Caller{Owner: "acme", Name: "acme"}},
		{"globex's backend, for its own browsers", sign(globexSecret, sub("globex")), 200, Caller{Owner: "globex", Name: "globex"}},
		{"acme's backend minting a token for globex", sign(acmeSecret, sub("globex")), 401, Caller{}},
		{"acme's backend minting a token for a tenant without a secret", sign(acmeSecret, sub("rita")), 401, Caller{}},
		{"acme's backend minting itself an operator token", sign(acmeSecret, sub("acme", admin)), 401, Caller{}},
		{"acme's backend, operator scope in scp", sign(acmeSecret, sub("acme", func(c jwt.MapClaims) { c["scp"] = []string{adminScop} })), 401, Caller{}},
		{"acme's backend, token for another audience", sign(acmeSecret, sub("acme", func(c jwt.MapClaims) { c["aud"] = otherApp })), 401, Caller{}},
		{"acme's backend, token of another issuer", sign(acmeSecret, sub("acme", func(c jwt.MapClaims) { c["iss"] = otherIdP })), 401, Caller{}},
		{"acme's backend, expired token", sign(acmeSecret, sub("acme", func(c jwt.MapClaims) { c["exp"] = time.Now().Add(-time.Hour).Unix() })), 401, Caller{}},
		{"acme's backend, token without exp", sign(acmeSecret, sub("acme", func(c jwt.MapClaims) { delete(c, "exp") })), 401, Caller{}},
		{"the shared secret, a tenant without its own secret", sign(secret, nil), 200, Caller{Owner: "rita", Name: "rita"}},
		{"the shared secret, an operator token", sign(secret, admin), 200, Caller{Owner: "rita", Name: "rita", Operator: true}},
		// A tenant with its own secret is verified with it alone.
		{"the shared secret, a token for acme", sign(secret, sub("acme")), 401, Caller{}},
	} {
		who, status := authenticate(a, "Authorization", c.token)
		require.Equal(t, c.status, status, c.who)
		require.Equal(t, c.want, who, c.who)
	}

	// Tenant secrets alone: HS256 tokens for other subjects have no secret to verify with.
	only, err := New(t.Context(), config.API{JWTTenantSecrets: "acme=" + acmeSecret, JWTIssuer: issuer, JWTAudience: audience}, discard())
	require.NoError(t, err)
	who, status := authenticate(only, "Authorization", sign(acmeSecret, sub("acme")))
	require.Equal(t, http.StatusOK, status)
	require.Equal(t, Caller{Owner: "acme", Name: "acme"}, who)
	_, status = authenticate(only, "Authorization", sign(acmeSecret, sub("globex")))
	require.Equal(t, http.StatusUnauthorized, status)
	_, status = authenticate(only, "Authorization", sign(secret, nil))
	require.Equal(t, http.StatusUnauthorized, status)
}

// TestTenantSecretOwnersNotDisclosed: with tenant secrets and no shared secret, a caller without
// credentials (attacker: anyone on the network) sends junk-signed HS256 tokens naming one subject
// after another. The 401 must read the same for an owner that has a tenant secret and for one that
// has not: a distinct answer would list the tenants to anyone.
func TestTenantSecretOwnersNotDisclosed(t *testing.T) {
	t.Parallel()
	only, err := New(t.Context(), config.API{JWTTenantSecrets: "acme=" + strings.Repeat("a", 32) + "-acme",
		JWTIssuer: issuer, JWTAudience: audience}, discard())
	require.NoError(t, err)
	junk := strings.Repeat("j", 40)
	detail := func(subject string) string {
		req := httptest.NewRequest("GET", "/v1/objects", nil)
		req.Host = "127.0.0.1:8080"
		req.Header.Set("Authorization", "Bearer "+testkit.SignJWT(t, jwt.SigningMethodHS256, []byte(junk), "",
			tokenClaims(func(c jwt.MapClaims) { c["sub"] = subject })))
		_, p := only.Authenticate(req)
		require.NotNil(t, p, subject)
		require.Equal(t, http.StatusUnauthorized, p.Status, subject)
		return p.Detail
	}
	listed, unlisted := detail("acme"), detail("globex")
	require.Equal(t, listed, unlisted, "the answer tells which owners have a tenant secret")
	require.NotContains(t, unlisted, "globex")
}
