package auth

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"

	"github.com/intakehq/intake/internal/config"
	"github.com/intakehq/intake/internal/problem"
	"github.com/intakehq/intake/internal/redact"
)

// DevOwner is the owner of every unauthenticated request under INTAKE_API_INSECURE_DEV_AUTH.
const DevOwner = "dev"

// MaxOwnerBytes is the longest owner (key owner or token subject) accepted.
const MaxOwnerBytes = 128

// Caller is who made a request.
type Caller struct {
	// Owner is the tenant the credentials act for: a tenant key's owner or the token's subject.
	// It is empty for operator keys, which act for no tenant.
	Owner string
	// Operator is set for operator credentials: an INTAKE_API_ADMIN_KEYS key, or a JWT whose scope
	// holds INTAKE_API_JWT_ADMIN_SCOPE.
	Operator bool
	// Name identifies the credentials in logs: the owner, or the operator key's name.
	Name string
	// Cookie is set when the credentials came in the auth cookie, which browsers attach by
	// themselves: cross-site request protection applies.
	Cookie bool
	// Dev is set for a request let in by INSECURE_DEV_AUTH without credentials: any page the
	// developer's browser opens could send it, so a request a browser marks as cross-site is
	// refused (see the API's authenticate).
	Dev bool
}

// Authenticator turns a request's credentials into its Caller: a static key (X-API-Key, or
// Authorization: Bearer <key>) of a tenant or an operator, or a bearer JWT (HS256 with the shared
// secret, RS256/ES256 with a key from the JWKS URL) whose issuer and audience are checked and whose
// subject is the owner. The JWT may also come in the configured cookie (browser clients such as Uppy,
// which send no Authorization).
type Authenticator struct {
	keys       map[[32]byte]string // SHA-256 of a tenant key → owner
	adminKeys  map[[32]byte]string // SHA-256 of an operator key → name
	secret     []byte
	jwks       keyfunc.Keyfunc
	parser     *jwt.Parser
	adminScope string
	cookie     string
	devAuth    bool
}

// New builds the Authenticator of the API configuration. It refuses what config.Validate refuses
// about authentication (no authentication, development auth combined with real credentials, JWT
// without issuer or audience), so that no caller can build a weaker one. With a JWKS URL it starts
// the key set's refresh goroutine, which stops when ctx is cancelled; the first fetch happens then
// and a failure is logged, not fatal (keys are fetched again when a token names an unknown kid).
func New(ctx context.Context, c config.API, log *slog.Logger) (*Authenticator, error) {
	tenants, err := config.ParseAPIKeys(c.Keys)
	if err != nil {
		return nil, err
	}
	operators, err := config.ParseKeys("INTAKE_API_ADMIN_KEYS", c.AdminKeys)
	if err != nil {
		return nil, err
	}
	a := &Authenticator{
		keys: make(map[[32]byte]string, len(tenants)), adminKeys: make(map[[32]byte]string, len(operators)),
		adminScope: c.JWTAdminScope, cookie: c.AuthCookie, devAuth: c.InsecureDevAuth,
	}
	for k, owner := range tenants {
		if !ValidOwner(owner) {
			return nil, fmt.Errorf("INTAKE_API_KEYS: owner %q cannot be used in object keys", owner)
		}
		a.keys[sha256.Sum256([]byte(k))] = owner
	}
	for k, name := range operators {
		sum := sha256.Sum256([]byte(k))
		if _, ok := a.keys[sum]; ok {
			return nil, fmt.Errorf("INTAKE_API_ADMIN_KEYS: the key of operator %q is also a tenant key", name)
		}
		a.adminKeys[sum] = name
	}
	var methods []string
	if c.JWTSecret != "" {
		a.secret = []byte(c.JWTSecret)
		methods = append(methods, jwt.SigningMethodHS256.Alg())
	}
	jwtAuth := c.JWTSecret != "" || c.JWKSURL != ""
	if jwtAuth {
		if c.JWTIssuer == "" {
			return nil, errors.New("INTAKE_API_JWT_ISSUER: required with JWT authentication")
		}
		if c.JWTAudience == "" && !c.JWTAllowAnyAudience {
			return nil, errors.New("INTAKE_API_JWT_AUDIENCE: required with JWT authentication (or INTAKE_API_JWT_ALLOW_ANY_AUDIENCE=true)")
		}
	}
	realAuth := len(a.keys) > 0 || len(a.adminKeys) > 0 || jwtAuth
	switch {
	case a.devAuth && realAuth:
		return nil, errors.New("INTAKE_API_INSECURE_DEV_AUTH: cannot be combined with JWT or API keys")
	case !a.devAuth && !realAuth:
		return nil, errors.New("API: no authentication configured (JWT secret, JWKS URL or API keys)")
	}
	if c.JWKSURL != "" {
		kf, err := keyfunc.NewDefaultOverrideCtx(ctx, []string{c.JWKSURL}, keyfunc.Override{
			HTTPTimeout: 10 * time.Second,
			RefreshErrorHandlerFunc: func(u string) func(context.Context, error) {
				return func(ctx context.Context, err error) {
					log.WarnContext(ctx, "refresh JWKS failed", "url", redact.URL(u), "err", redact.Error(err))
				}
			},
		})
		if err != nil {
			return nil, fmt.Errorf("INTAKE_API_JWKS_URL: %w", redact.Error(err))
		}
		a.jwks = kf
		methods = append(methods, jwt.SigningMethodRS256.Alg(), jwt.SigningMethodES256.Alg())
	}
	opts := []jwt.ParserOption{jwt.WithValidMethods(methods), jwt.WithExpirationRequired(), jwt.WithLeeway(30 * time.Second),
		jwt.WithIssuer(c.JWTIssuer)}
	if c.JWTAudience != "" {
		opts = append(opts, jwt.WithAudience(c.JWTAudience))
	}
	a.parser = jwt.NewParser(opts...)
	return a, nil
}

// WithoutCookie returns an Authenticator that ignores the auth cookie, for endpoints that browsers
// have no business calling (POST /v1/jobs): only credentials a script sets explicitly count there.
func (a *Authenticator) WithoutCookie() *Authenticator {
	cp := *a
	cp.cookie = ""
	return &cp
}

// Authenticate returns the request's Caller, or a 401 problem.
func (a *Authenticator) Authenticate(r *http.Request) (Caller, *problem.Problem) {
	if k := r.Header.Get("X-API-Key"); k != "" {
		if c, ok := a.key(k); ok {
			return c, nil
		}
		return Caller{}, unauthorized("unknown API key")
	}
	if h := r.Header.Get("Authorization"); h != "" {
		scheme, tok, ok := strings.Cut(h, " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(tok) == "" {
			return Caller{}, unauthorized("the Authorization header must be \"Bearer <token>\"")
		}
		tok = strings.TrimSpace(tok)
		if c, ok := a.key(tok); ok {
			return c, nil
		}
		return a.jwt(r.Context(), tok)
	}
	if a.cookie != "" {
		// A browser sends every cookie of the name whose domain and path match, the most specific
		// path first: a sibling subdomain (or a page on http://, or a script there) can plant one for
		// the parent domain with Path=/s3, and r.Cookie would read the planted one first, making the
		// victim's uploads land under the planter's owner. Which of several is intake's own cannot
		// be told, so a request carrying the cookie more than once is refused.
		switch cks := r.CookiesNamed(a.cookie); {
		case len(cks) > 1:
			return Caller{}, unauthorized(fmt.Sprintf("the %s cookie is sent %d times: another site of the domain may have set one; clear the domain's %s cookies and sign in again", a.cookie, len(cks), a.cookie))
		case len(cks) == 1 && cks[0].Value != "":
			c, p := a.jwt(r.Context(), cks[0].Value)
			c.Cookie = true
			return c, p
		}
	}
	if a.devAuth {
		if !LoopbackHost(r.Host) {
			// Development auth listens on loopback only, so a request naming another host was sent
			// by a page whose domain resolves to 127.0.0.1 (DNS rebinding): to the browser it is
			// that page's own origin, so no cross-site header would give it away.
			p := problem.Forbidden.With(fmt.Sprintf("development auth answers requests addressed to localhost or a loopback address only, not %q", r.Host))
			return Caller{}, &p
		}
		return Caller{Owner: DevOwner, Name: DevOwner, Dev: true}, nil
	}
	return Caller{}, unauthorized("no credentials: send Authorization: Bearer <token> or X-API-Key")
}

// LoopbackHost reports whether host (a request's Host: "name[:port]") names this machine's
// loopback interface: localhost (or a name under .localhost), 127.0.0.0/8 or ::1.
func LoopbackHost(host string) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimSuffix(strings.TrimPrefix(host, "["), "]"), ".")
	if strings.EqualFold(host, "localhost") || strings.HasSuffix(strings.ToLower(host), ".localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.Unmap().IsLoopback()
}

// key looks a static key up by its SHA-256, so lookup time reveals nothing useful about stored
// keys.
func (a *Authenticator) key(k string) (Caller, bool) {
	if len(a.keys) == 0 && len(a.adminKeys) == 0 {
		return Caller{}, false
	}
	sum := sha256.Sum256([]byte(k))
	if owner, ok := a.keys[sum]; ok {
		return Caller{Owner: owner, Name: owner}, true
	}
	if name, ok := a.adminKeys[sum]; ok {
		return Caller{Operator: true, Name: name}, true
	}
	return Caller{}, false
}

// claims are the JWT claims intake reads.
type claims struct {
	jwt.RegisteredClaims
	// Scope is OAuth 2.0's space-separated scope list (RFC 8693 section 4.2).
	Scope string `json:"scope,omitempty"`
	// Scp is the scope list some identity providers send instead (a string or an array).
	Scp any `json:"scp,omitempty"`
}

// scopes returns every scope the token grants.
func (c *claims) scopes() []string {
	out := strings.Fields(c.Scope)
	switch v := c.Scp.(type) {
	case string:
		out = append(out, strings.Fields(v)...)
	case []any:
		for _, s := range v {
			if s, ok := s.(string); ok {
				out = append(out, s)
			}
		}
	}
	return out
}

func (a *Authenticator) jwt(ctx context.Context, raw string) (Caller, *problem.Problem) {
	if a.secret == nil && a.jwks == nil {
		return Caller{}, unauthorized("bearer tokens are not accepted: only API keys are configured")
	}
	var cl claims
	tok, err := a.parser.ParseWithClaims(raw, &cl, func(t *jwt.Token) (any, error) {
		if t.Method.Alg() == jwt.SigningMethodHS256.Alg() {
			if a.secret == nil {
				return nil, errors.New("HS256 tokens are not accepted")
			}
			return a.secret, nil
		}
		if a.jwks == nil {
			return nil, fmt.Errorf("%s tokens are not accepted", t.Method.Alg())
		}
		return a.jwks.KeyfuncCtx(ctx)(t)
	})
	if err != nil || !tok.Valid {
		return Caller{}, unauthorized(fmt.Sprintf("invalid bearer token: %v", err))
	}
	if !ValidOwner(cl.Subject) {
		return Caller{}, unauthorized(fmt.Sprintf("the token's subject %q cannot be an owner (1..%d bytes, no '/', '\\', spaces or control characters)", cl.Subject, MaxOwnerBytes))
	}
	c := Caller{Owner: cl.Subject, Name: cl.Subject}
	if a.adminScope != "" && slices.Contains(cl.scopes(), a.adminScope) {
		c.Operator = true
	}
	return c, nil
}

func unauthorized(detail string) *problem.Problem {
	p := problem.Unauthorized.With(detail)
	return &p
}

// ValidOwner reports whether a token subject or API key owner can be an owner segment of keys.
func ValidOwner(owner string) bool {
	if owner == "" || len(owner) > MaxOwnerBytes || owner == "." || owner == ".." || !utf8.ValidString(owner) {
		return false
	}
	for _, r := range owner {
		if r == '/' || r == '\\' || unicode.IsControl(r) || unicode.IsSpace(r) {
			return false
		}
	}
	return true
}
