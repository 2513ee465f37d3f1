package auth

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/require"

	"github.com/intakehq/intake/internal/config"
	"github.com/intakehq/intake/internal/problem"
	"github.com/intakehq/intake/internal/testkit"
)

const (
	secret    = "a-test-secret-that-is-32-bytes-long!"
	issuer    = "https://idp.test"
	aliceKey  = "alice-key-0123456789"
	opsKey    = "ops-key-0123456789ab"
	audience  = "intake"
	otherApp  = "billing"
	otherIdP  = "https://other-idp.test"
	adminScop = "intake:admin"
)

func discard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// pad returns the big-endian bytes of n left-padded to size.
func pad(n *big.Int, size int) []byte {
	b := n.Bytes()
	out := make([]byte, size)
	copy(out[size-len(b):], b)
	return out
}

// idp is a real JWKS endpoint (RSA and EC keys) on a local HTTP server, standing for an identity
// provider shared by several applications.
type idp struct {
	url    string
	rsaKey *rsa.PrivateKey
	ecKey  *ecdsa.PrivateKey
}

func newIdP(t *testing.T) *idp {
	t.Helper()
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	jwks, err := json.Marshal(map[string]any{"keys": []map[string]string{
		{"kty": "RSA", "kid": "rsa1", "alg": "RS256", "use": "sig", "n": b64(rsaKey.N.Bytes()), "e": b64(big.NewInt(int64(rsaKey.E)).Bytes())},
		{"kty": "EC", "kid": "ec1", "alg": "ES256", "use": "sig", "crv": "P-256", "x": b64(pad(ecKey.X, 32)), "y": b64(pad(ecKey.Y, 32))},
	}})
	require.NoError(t, err)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(jwks)
	}))
	t.Cleanup(srv.Close)
	return &idp{url: srv.URL, rsaKey: rsaKey, ecKey: ecKey}
}

func tokenClaims(mod func(jwt.MapClaims)) jwt.MapClaims {
	c := jwt.MapClaims{"sub": "rita", "iss": issuer, "aud": audience, "exp": time.Now().Add(time.Minute).Unix()}
	if mod != nil {
		mod(c)
	}
	return c
}

func authenticate(a *Authenticator, header, value string) (Caller, int) {
	req := httptest.NewRequest("GET", "/v1/objects", nil)
	req.Host = "127.0.0.1:8080" // intake's loopback listener
	if header != "" {
		req.Header.Set(header, value)
	}
	c, p := a.Authenticate(req)
	if p != nil {
		return c, p.Status
	}
	return c, http.StatusOK
}

// TestJWKSIssuerAndAudience (issue 12.9): with the JWKS of an identity provider that also issues
// tokens for other applications (or is shared with another issuer name), only tokens for intake's
// audience from intake's issuer are accepted; the audience may be waived explicitly, the issuer not.
func TestJWKSIssuerAndAudience(t *testing.T) {
	t.Parallel()
	p := newIdP(t)
	otherRSA, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	strict, err := New(t.Context(), config.API{JWKSURL: p.url, JWTIssuer: issuer, JWTAudience: audience}, discard())
	require.NoError(t, err)
	anyAud, err := New(t.Context(), config.API{JWKSURL: p.url, JWTIssuer: issuer, JWTAllowAnyAudience: true}, discard())
	require.NoError(t, err)

	rs := func(mod func(jwt.MapClaims)) string {
		return testkit.SignJWT(t, jwt.SigningMethodRS256, p.rsaKey, "rsa1", tokenClaims(mod))
	}
	cases := []struct {
		attacker     string
		token        string
		strict, anyA int
	}{
		{"tenant with an RS256 token for intake", rs(nil), 200, 200},
		{"tenant with an ES256 token for intake", testkit.SignJWT(t, jwt.SigningMethodES256, p.ecKey, "ec1", tokenClaims(nil)), 200, 200},
		{"tenant whose token lists intake among audiences", rs(func(c jwt.MapClaims) { c["aud"] = []string{otherApp, audience} }), 200, 200},
		{"user of another application of the same IdP", rs(func(c jwt.MapClaims) { c["aud"] = otherApp }), 401, 200},
		{"token without audience", rs(func(c jwt.MapClaims) { delete(c, "aud") }), 401, 200},
		{"token from another issuer sharing the keys", rs(func(c jwt.MapClaims) { c["iss"] = otherIdP }), 401, 401},
		{"token without issuer", rs(func(c jwt.MapClaims) { delete(c, "iss") }), 401, 401},
		{"token signed by another key", testkit.SignJWT(t, jwt.SigningMethodRS256, otherRSA, "rsa1", tokenClaims(nil)), 401, 401},
		{"token naming an unknown kid", testkit.SignJWT(t, jwt.SigningMethodRS256, otherRSA, "nope", tokenClaims(nil)), 401, 401},
		{"HS256 token when only a JWKS is configured", testkit.SignJWT(t, jwt.SigningMethodHS256, []byte(secret), "", tokenClaims(nil)), 401, 401},
		{"expired token", rs(func(c jwt.MapClaims) { c["exp"] = time.Now().Add(-time.Hour).Unix() }), 401, 401},
	}
	for _, c := range cases {
		who, status := authenticate(strict, "Authorization", "Bearer "+c.token)
		require.Equal(t, c.strict, status, "strict: %s", c.attacker)
		if status == 200 {
			require.Equal(t, Caller{Owner: "rita", Name: "rita"}, who, c.attacker)
		}
		_, status = authenticate(anyAud, "Authorization", "Bearer "+c.token)
		require.Equal(t, c.anyA, status, "any audience: %s", c.attacker)
	}
}

// TestNewRefuses: New refuses the configurations config.Validate refuses about authentication, so
// that no code path builds a weaker Authenticator.
func TestNewRefuses(t *testing.T) {
	t.Parallel()
	for name, c := range map[string]struct {
		cfg  config.API
		want string // the variable the error names
	}{
		"nothing":                         {config.API{}, "no authentication configured"},
		"jwt secret without issuer":       {config.API{JWTSecret: secret, JWTAudience: audience}, "INTAKE_API_JWT_ISSUER"},
		"jwt secret without audience":     {config.API{JWTSecret: secret, JWTIssuer: issuer}, "INTAKE_API_JWT_AUDIENCE"},
		"jwks without issuer or audience": {config.API{JWKSURL: "http://127.0.0.1:1/jwks"}, "INTAKE_API_JWT_ISSUER"},
		"dev auth with keys":              {config.API{InsecureDevAuth: true, Keys: aliceKey + "=alice"}, "INTAKE_API_INSECURE_DEV_AUTH"},
		"dev auth with admin keys":        {config.API{InsecureDevAuth: true, AdminKeys: opsKey + "=ops"}, "INTAKE_API_INSECURE_DEV_AUTH"},
		"dev auth with jwt":               {config.API{InsecureDevAuth: true, JWTSecret: secret, JWTIssuer: issuer, JWTAudience: audience}, "INTAKE_API_INSECURE_DEV_AUTH"},
		"owner unusable in keys":          {config.API{Keys: "0123456789abcdefgh=a/b"}, "INTAKE_API_KEYS"},
		"operator key is a tenant key":    {config.API{Keys: aliceKey + "=alice", AdminKeys: aliceKey + "=ops"}, "INTAKE_API_ADMIN_KEYS"},
		// What config.Validate refuses, New refuses too.
		"jwt secret under 32 bytes":            {config.API{JWTSecret: "short-secret", JWTIssuer: issuer, JWTAudience: audience}, "INTAKE_API_JWT_SECRET"},
		"jwks over http off loopback":          {config.API{JWKSURL: "http://idp.invalid/jwks", JWTIssuer: issuer, JWTAudience: audience}, "INTAKE_API_JWKS_URL"},
		"audience and any audience":            {config.API{JWTSecret: secret, JWTIssuer: issuer, JWTAudience: audience, JWTAllowAnyAudience: true}, "INTAKE_API_JWT_ALLOW_ANY_AUDIENCE"},
		"operator name that is no owner":       {config.API{AdminKeys: opsKey + "=on call"}, "INTAKE_API_ADMIN_KEYS"},
		"admin scope without jwt":              {config.API{Keys: aliceKey + "=alice", JWTAdminScope: adminScop}, "INTAKE_API_JWT_ADMIN_SCOPE"},
		"cookie without jwt":                   {config.API{Keys: aliceKey + "=alice", AuthCookie: "tok"}, "INTAKE_API_AUTH_COOKIE"},
		"tenant secret under 32 bytes":         {config.API{JWTTenantSecrets: "acme=short", JWTIssuer: issuer, JWTAudience: audience}, "INTAKE_API_JWT_TENANT_SECRETS"},
		"tenant secret that is the shared one": {config.API{JWTSecret: secret, JWTTenantSecrets: "acme=" + secret, JWTIssuer: issuer, JWTAudience: audience}, "INTAKE_API_JWT_TENANT_SECRETS"},
		"tenant secret of an invalid owner":    {config.API{JWTTenantSecrets: "a/b=" + secret, JWTIssuer: issuer, JWTAudience: audience}, "INTAKE_API_JWT_TENANT_SECRETS"},
		"tenant secrets without issuer":        {config.API{JWTTenantSecrets: "acme=" + secret, JWTAudience: audience}, "INTAKE_API_JWT_ISSUER"},
	} {
		_, err := New(t.Context(), c.cfg, discard())
		require.ErrorContains(t, err, c.want, name)
		require.NotContains(t, err.Error(), secret, "%s: no secret in the error", name)
	}
}

// TestOversizedTokenRefused: a caller sends a bearer token of 200 KiB (a claim holding a long
// array). Its claims used to be decoded before anything else, at tens of milliseconds of CPU per
// request for anyone, signed or not; a token past MaxTokenBytes is now refused (401) unread, even
// one signed with the right secret, and a token of a realistic size is still accepted.
func TestOversizedTokenRefused(t *testing.T) {
	t.Parallel()
	a, err := New(t.Context(), config.API{JWTSecret: secret, JWTIssuer: issuer, JWTAudience: audience}, discard())
	require.NoError(t, err)
	withScopes := func(n int) string {
		return testkit.SignJWT(t, jwt.SigningMethodHS256, []byte(secret), "", tokenClaims(func(c jwt.MapClaims) {
			c["scp"] = make([]int, n)
		}))
	}
	big := withScopes(100_000)
	require.Greater(t, len(big), 200_000)
	_, status := authenticate(a, "Authorization", "Bearer "+big)
	require.Equal(t, 401, status, "a signed token of %d bytes", len(big))
	req := httptest.NewRequest("GET", "/v1/objects", nil)
	req.Header.Set("Authorization", "Bearer "+big)
	_, p := a.Authenticate(req)
	require.NotNil(t, p)
	require.Contains(t, p.Detail, fmt.Sprintf("at most %d", MaxTokenBytes))

	fits := withScopes(2_000)
	require.Less(t, len(fits), MaxTokenBytes)
	who, status := authenticate(a, "Authorization", "Bearer "+fits)
	require.Equal(t, 200, status, "a signed token of %d bytes", len(fits))
	require.Equal(t, "rita", who.Owner)
}

// TestOperatorsAndTenants (issue 12.1): tenant keys and operator keys are told apart, and a JWT is
// an operator only with the configured scope.
func TestOperatorsAndTenants(t *testing.T) {
	t.Parallel()
	a, err := New(t.Context(), config.API{
		JWTSecret: secret, JWTIssuer: issuer, JWTAudience: audience, JWTAdminScope: adminScop,
		Keys: aliceKey + "=alice", AdminKeys: opsKey + "=oncall",
	}, discard())
	require.NoError(t, err)
	hs := func(mod func(jwt.MapClaims)) string {
		return "Bearer " + testkit.SignJWT(t, jwt.SigningMethodHS256, []byte(secret), "", tokenClaims(mod))
	}
	cases := []struct {
		name, header, value string
		want                Caller
		status              int
	}{
		{"tenant key", "X-API-Key", aliceKey, Caller{Owner: "alice", Name: "alice"}, 200},
		{"tenant key as bearer", "Authorization", "Bearer " + aliceKey, Caller{Owner: "alice", Name: "alice"}, 200},
		{"operator key", "X-API-Key", opsKey, Caller{Operator: true, Name: "oncall"}, 200},
		{"operator key as bearer", "Authorization", "Bearer " + opsKey, Caller{Operator: true, Name: "oncall"}, 200},
		{"tenant token", "Authorization", hs(nil), Caller{Owner: "rita", Name: "rita"}, 200},
		{"token with the admin scope", "Authorization", hs(func(c jwt.MapClaims) { c["scope"] = "openid " + adminScop }), Caller{Owner: "rita", Name: "rita", Operator: true}, 200},
		{"token with the admin scope in scp", "Authorization", hs(func(c jwt.MapClaims) { c["scp"] = []string{"read", adminScop} }), Caller{Owner: "rita", Name: "rita", Operator: true}, 200},
		{"token with a scope that merely contains it", "Authorization", hs(func(c jwt.MapClaims) { c["scope"] = adminScop + "x " + "x" + adminScop }), Caller{Owner: "rita", Name: "rita"}, 200},
		{"token with an admin claim of another name", "Authorization", hs(func(c jwt.MapClaims) { c["roles"] = []string{adminScop} }), Caller{Owner: "rita", Name: "rita"}, 200},
		{"token with a subject unusable in keys", "Authorization", hs(func(c jwt.MapClaims) { c["sub"] = "a/b" }), Caller{}, 401},
		{"unknown key", "X-API-Key", "not-a-key-0123456789", Caller{}, 401},
		{"basic auth", "Authorization", "Basic " + aliceKey, Caller{}, 401},
		{"nothing", "", "", Caller{}, 401},
	}
	for _, c := range cases {
		who, status := authenticate(a, c.header, c.value)
		require.Equal(t, c.status, status, c.name)
		require.Equal(t, c.want, who, c.name)
	}

	// Without the setting no scope makes an operator.
	b, err := New(t.Context(), config.API{JWTSecret: secret, JWTIssuer: issuer, JWTAudience: audience}, discard())
	require.NoError(t, err)
	who, status := authenticate(b, "Authorization", hs(func(c jwt.MapClaims) { c["scope"] = adminScop }))
	require.Equal(t, 200, status)
	require.False(t, who.Operator)
}

func TestCookieAndDevAuth(t *testing.T) {
	t.Parallel()
	a, err := New(t.Context(), config.API{JWTSecret: secret, JWTIssuer: issuer, JWTAudience: audience, AuthCookie: "tok"}, discard())
	require.NoError(t, err)
	req := httptest.NewRequest("GET", "/", nil)
	req.AddCookie(&http.Cookie{Name: "tok", Value: testkit.SignJWT(t, jwt.SigningMethodHS256, []byte(secret), "", tokenClaims(nil))})
	who, p := a.Authenticate(req)
	require.Nil(t, p)
	require.Equal(t, Caller{Owner: "rita", Name: "rita", Cookie: true}, who)
	_, p = a.WithoutCookie().Authenticate(req)
	require.NotNil(t, p, "the cookie is ignored where browsers have no business")
	require.Equal(t, 401, p.Status)

	dev, err := New(t.Context(), config.API{InsecureDevAuth: true}, discard())
	require.NoError(t, err)
	who, status := authenticate(dev, "", "")
	require.Equal(t, 200, status)
	require.Equal(t, Caller{Owner: DevOwner, Name: DevOwner, Dev: true}, who, "marked, so that cross-site requests are refused")
	_, status = authenticate(dev, "Authorization", "Bearer anything")
	require.Equal(t, 401, status, "dev auth does not accept made-up tokens")

	// DNS rebinding: a page whose own domain now resolves to 127.0.0.1 is same-origin to the
	// browser; only the Host it names gives it away.
	for host, want := range map[string]int{
		"127.0.0.1:8080": 200, "localhost:8080": 200, "LOCALHOST": 200, "[::1]:8080": 200, "127.1.2.3": 200,
		"app.localhost:3000": 200, "localhost.:8080": 200,
		"rebind.evil.example:8080": 403, "evil.example": 403, "10.0.0.1:8080": 403, "0.0.0.0:8080": 403,
		"localhost.evil.example": 403, "127.0.0.1.nip.io:8080": 403, "": 403,
	} {
		req := httptest.NewRequest("GET", "/v1/objects", nil)
		req.Host = host
		_, p := dev.Authenticate(req)
		status := 200
		if p != nil {
			status = p.Status
		}
		require.Equal(t, want, status, "Host %q", host)
	}
}

func TestValidOwner(t *testing.T) {
	t.Parallel()
	for owner, want := range map[string]bool{
		"alice": true, "auth0|123": true, "user@example.com": true, "42": true,
		"": false, ".": false, "..": false, "a/b": false, `a\b`: false, "a b": false, "a\nb": false,
		strings.Repeat("x", 128): true, strings.Repeat("x", 129): false,
	} {
		require.Equal(t, want, ValidOwner(owner), "%q", owner)
	}
}

// TestPlantedCookieAttacks: the auth cookie is what browsers attach by themselves, and a sibling
// subdomain (or a page of the domain served over http://) can set one for the parent domain with a
// more specific Path (Path=/s3): the browser then sends both, the planted one first, and a
// first-wins read would act for the planter's owner with the victim's uploads. Each row names the
// attacker, the cookies the victim's browser sends, the status, and what must not happen: the
// request acting for anyone but the cookie's rightful owner.
func TestPlantedCookieAttacks(t *testing.T) {
	t.Parallel()
	a, err := New(t.Context(), config.API{JWTSecret: secret, JWTIssuer: issuer, JWTAudience: audience, AuthCookie: "intake_token",
		Keys: aliceKey + "=alice"}, discard())
	require.NoError(t, err)
	victim := testkit.SignJWT(t, jwt.SigningMethodHS256, []byte(secret), "", tokenClaims(nil)) // rita
	planted := testkit.SignJWT(t, jwt.SigningMethodHS256, []byte(secret), "", tokenClaims(func(c jwt.MapClaims) { c["sub"] = "mallory" }))
	for _, c := range []struct {
		attacker string
		cookies  []string // Cookie headers, in the order the browser sends them
		apiKey   string
		status   int
		owner    string // the owner the request may act for ("" when refused)
		mustNot  string
	}{
		{"nobody: the victim's own cookie", []string{"intake_token=" + victim}, "", 200, "rita", ""},
		{"sibling subdomain planting its token with Path=/s3 (sent first)", []string{"intake_token=" + planted + "; intake_token=" + victim}, "", 401, "",
			"act for mallory with the victim's upload"},
		{"planted token sent after the victim's", []string{"intake_token=" + victim + "; intake_token=" + planted}, "", 401, "",
			"let the order of the cookies decide the owner"},
		{"planted token in a second Cookie header", []string{"intake_token=" + planted, "intake_token=" + victim}, "", 401, "",
			"act for mallory"},
		{"planted empty cookie shadowing the victim's", []string{"intake_token=; intake_token=" + victim}, "", 401, "",
			"accept a request whose cookies disagree"},
		{"planted token, victim signed out", []string{"other=1; intake_token=" + planted}, "", 200, "mallory",
			""}, // one cookie is the only one there is: the planter's own session, acting for the planter alone
		{"planted tokens beside an explicit API key", []string{"intake_token=" + planted + "; intake_token=" + victim}, aliceKey, 200, "alice",
			"let cookies override the credentials a script set"},
	} {
		req := httptest.NewRequest("POST", "/s3/multipart", nil)
		req.Host = "intake.example.com"
		for _, h := range c.cookies {
			req.Header.Add("Cookie", h)
		}
		if c.apiKey != "" {
			req.Header.Set("X-API-Key", c.apiKey)
		}
		who, p := a.Authenticate(req)
		status := http.StatusOK
		if p != nil {
			status = p.Status
		}
		require.Equal(t, c.status, status, "%s: must not %s (%+v)", c.attacker, c.mustNot, who)
		require.Equal(t, c.owner, who.Owner, "%s: must not %s", c.attacker, c.mustNot)
		if p != nil {
			require.Equal(t, problem.Unauthorized.Type(), p.Type, c.attacker)
		}
	}
}
