package auth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/time/rate"

	"github.com/intakehq/intake/internal/config"
	"github.com/intakehq/intake/internal/problem"
	"github.com/intakehq/intake/internal/redact"
)

// DevOwner is the owner of every unauthenticated request under INTAKE_API_INSECURE_DEV_AUTH.
const DevOwner = "dev"

// MaxOwnerBytes is the longest owner (key owner or token subject) accepted.
const MaxOwnerBytes = config.MaxOwnerBytes

// Caller is who made a request.
type Caller struct {
	// Owner is the tenant the credentials act for: a tenant key's owner or the token's subject.
	// It is empty for operator keys, which act for no tenant.
	Owner string
	// Operator is set for operator credentials: an INTAKE_API_ADMIN_KEYS key, or a JWT whose scope
	// holds INTAKE_API_JWT_ADMIN_SCOPE, signed with INTAKE_API_JWT_SECRET or a JWKS key (never one
	// signed with a tenant's secret).
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
// Authorization: Bearer <key>) of a tenant or an operator, or a bearer JWT (HS256 with a tenant's
// secret or the shared secret, RS256/ES256 with a key from the JWKS URL) whose issuer and audience
// are checked and whose subject is the owner. The JWT may also come in the configured cookie
// (browser clients such as Uppy, which send no Authorization).
type Authenticator struct {
	keys          map[[32]byte]string // SHA-256 of a tenant key → owner
	adminKeys     map[[32]byte]string // SHA-256 of an operator key → name
	secret        []byte              // INTAKE_API_JWT_SECRET: operator-level
	tenantSecrets map[string][]byte   // owner → its INTAKE_API_JWT_TENANT_SECRETS secret
	unlisted      []byte              // a random key nobody holds: see jwt
	jwks          keyfunc.Keyfunc
	unknownKID    *rate.Limiter // refreshes of the key set for tokens naming a kid it lacks
	unknownEvery  time.Duration // the period unknownKID allows
	fetchTimeout  time.Duration // bounds one fetch of the key set (jwksSettings.timeout)
	// fetchFailed is set when the last fetch of the key set that completed failed (New's first,
	// the background refresh's, or a refresh for an unknown kid), and cleared when one is answered
	// 2xx (fetchSeen; a body that then fails to read or parse sets it again): a request that finds
	// the unknown-kid refresh taken answers 503 rather than 401 while it is set (see jwksKey).
	// Shared by the copies WithoutCookie makes.
	fetchFailed *atomic.Bool
	parser      *jwt.Parser
	adminScope  string
	cookie      string
	devAuth     bool
}

// jwksSettings tune the JWKS client. New uses defaultJWKS; tests shorten the times and trust their
// TLS servers.
type jwksSettings struct {
	// timeout bounds one fetch of the key set, from connecting to the end of the body, wherever it
	// runs: at New, in the background refresh, or in a request whose token names an unknown kid.
	timeout time.Duration
	// refresh is the period of the background refresh: how long a rotated-out key stays trusted
	// and, at worst, how long a newly published key waits to be fetched.
	refresh time.Duration
	// unknownKIDEvery is the least time between two refreshes caused by tokens naming a kid the key
	// set lacks (an identity provider's key rotation, or junk): anyone can send such a token, so
	// they are rate-limited, and a request that finds the refresh taken fails at once (401, or 503
	// when the last fetch failed) rather than wait for the next. Since a refresh fetches the whole
	// set, a junk kid's refresh fetches a rotated key too: a new key is trusted at most this long
	// after a token first names it.
	unknownKIDEvery time.Duration
	// maxBody caps the key set's size: a longer body fails the fetch.
	maxBody int64
	// transport, when set, carries the fetches (tests: one that trusts their TLS server).
	transport http.RoundTripper
}

// defaultJWKS are the JWKS client's settings.
var defaultJWKS = jwksSettings{timeout: 10 * time.Second, refresh: 5 * time.Minute, unknownKIDEvery: 10 * time.Second, maxBody: 1 << 20}

// maxJWKSRedirects bounds the redirects one fetch of the key set follows.
const maxJWKSRedirects = 5

// New builds the Authenticator of the API configuration. It runs config.API.ValidateAuth, the
// checks config.Validate runs on authentication (no authentication, development auth combined
// with real credentials, JWT without issuer or audience, short secrets, a plain-http JWKS URL
// off loopback, owners that cannot be owners…), so that no caller can build a weaker one. With a
// JWKS URL it starts the key set's refresh goroutine (every 5 minutes), which stops when ctx is
// cancelled; the first fetch happens then and a failure is logged, not fatal: API keys and HS256
// tokens keep working while the identity provider is down, and keys are fetched again when a token
// names an unknown kid (or, with no key fetched yet, names none), at most once per 10 s. Until a
// fetch succeeds, such tokens are answered 503 (problem.AuthUnavailable, with Retry-After), not
// 401: their credentials may well be good.
//
// INTAKE_API_JWT_SECRET is operator-level: a token it signs may name any subject and, with
// INTAKE_API_JWT_ADMIN_SCOPE, be an operator. An HS256 token whose subject has a secret in
// INTAKE_API_JWT_TENANT_SECRETS is verified with that secret only, and acts for that subject only,
// never as an operator (see the package documentation).
func New(ctx context.Context, c config.API, log *slog.Logger) (*Authenticator, error) {
	return newAuthenticator(ctx, c, log, defaultJWKS)
}

func newAuthenticator(ctx context.Context, c config.API, log *slog.Logger, js jwksSettings) (*Authenticator, error) {
	if err := c.ValidateAuth(); err != nil {
		return nil, fmt.Errorf("API authentication: %w", err)
	}
	// ValidateAuth parsed them already: these cannot fail.
	tenants, err := config.ParseAPIKeys(c.Keys)
	if err != nil {
		return nil, err
	}
	operators, err := config.ParseKeys("INTAKE_API_ADMIN_KEYS", c.AdminKeys)
	if err != nil {
		return nil, err
	}
	tenantSecrets, err := config.ParseTenantSecrets(c.JWTTenantSecrets)
	if err != nil {
		return nil, err
	}
	a := &Authenticator{
		keys: make(map[[32]byte]string, len(tenants)), adminKeys: make(map[[32]byte]string, len(operators)),
		tenantSecrets: make(map[string][]byte, len(tenantSecrets)),
		adminScope:    c.JWTAdminScope, cookie: c.AuthCookie, devAuth: c.InsecureDevAuth,
		fetchFailed: new(atomic.Bool),
	}
	for k, owner := range tenants {
		a.keys[sha256.Sum256([]byte(k))] = owner
	}
	for k, name := range operators {
		a.adminKeys[sha256.Sum256([]byte(k))] = name
	}
	for owner, secret := range tenantSecrets {
		a.tenantSecrets[owner] = []byte(secret)
	}
	a.unlisted = make([]byte, 32)
	if _, err := rand.Read(a.unlisted); err != nil {
		return nil, fmt.Errorf("auth: random key: %w", err)
	}
	var methods []string
	if c.JWTSecret != "" {
		a.secret = []byte(c.JWTSecret)
	}
	if a.secret != nil || len(a.tenantSecrets) > 0 {
		methods = append(methods, jwt.SigningMethodHS256.Alg())
	}
	if c.JWKSURL != "" {
		// The library's own limiter lets every refresh through at once (rate.Inf): a.unknownKID
		// decides, without waiting, whether a request may refresh (see jwksKey). The library would
		// make a request wait up to RateLimitWaitMax for its limiter, holding it while an attacker's
		// junk kids keep the limiter taken; its wait also shares one context with the fetch, so
		// RateLimitWaitMax only bounds the fetch here.
		kf, err := keyfunc.NewDefaultOverrideCtx(ctx, []string{c.JWKSURL}, keyfunc.Override{
			Client:            jwksClient(c.JWKSURL, js, a.fetchFailed),
			HTTPTimeout:       js.timeout,
			RefreshInterval:   js.refresh,
			RefreshUnknownKID: rate.NewLimiter(rate.Inf, 1),
			RateLimitWaitMax:  js.timeout,
			// The library reports every failed fetch here only (KeyRead answers a kid it could
			// not fetch as not found): the refresh for an unknown kid collects its own under its
			// context (fetchOutcome).
			RefreshErrorHandlerFunc: func(u string) func(context.Context, error) {
				return func(ctx context.Context, err error) {
					a.fetchFailed.Store(true)
					if o, ok := ctx.Value(fetchOutcomeKey{}).(*fetchOutcome); ok {
						o.err = err
					}
					log.WarnContext(ctx, "refresh JWKS failed", "url", redact.URL(u), "err", redact.Error(err))
				}
			},
		})
		if err != nil {
			return nil, fmt.Errorf("INTAKE_API_JWKS_URL: %w", redact.Error(err))
		}
		a.jwks = kf
		a.unknownKID, a.unknownEvery = rate.NewLimiter(rate.Every(js.unknownKIDEvery), 1), js.unknownKIDEvery
		a.fetchTimeout = js.timeout
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

// jwksClient is the HTTP client of the key set's fetches: each bounded by js.timeout (the
// library bounds only some of them), the body by js.maxBody, and no redirect leaving https: the
// key set decides who is authenticated, and a redirect to plain http would let whoever is on the
// path serve it. A loopback http URL (which config.ValidJWKSURL accepts) may redirect to https or
// to another loopback http URL.
func jwksClient(configured string, js jwksSettings, failed *atomic.Bool) *http.Client {
	base := js.transport
	if base == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.DisableKeepAlives = true // one fetch every few minutes: no connection kept idle
		base = t
	}
	plainHTTP := strings.HasPrefix(strings.ToLower(configured), "http:")
	return &http.Client{
		Transport: fetchSeen{next: limitBody{next: base, max: js.maxBody}, failed: failed},
		Timeout:   js.timeout,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			switch {
			case len(via) >= maxJWKSRedirects:
				return fmt.Errorf("JWKS: stopped after %d redirects", len(via))
			case req.URL.Scheme == "https":
				return nil
			case plainHTTP && req.URL.Scheme == "http" && config.ValidJWKSURL(req.URL.String()) == nil:
				return nil
			}
			return fmt.Errorf("JWKS: redirect to %s refused: the key set is fetched over https only (plain http only from and to a loopback address)",
				redact.URL(req.URL.String()))
		},
	}
}

// fetchSeen clears failed when a fetch of the key set is answered 2xx, whoever fetched it (the
// library's background refresh reports only its failures): the key set is reachable again, and a
// kid it lacks is refused (401), not answered as an outage. A body that then fails (too large,
// not a key set) sets failed again through the library's error handler.
type fetchSeen struct {
	next   http.RoundTripper
	failed *atomic.Bool
}

// RoundTrip implements http.RoundTripper.
func (f fetchSeen) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := f.next.RoundTrip(r)
	if err == nil && resp.StatusCode >= 200 && resp.StatusCode < 300 {
		f.failed.Store(false)
	}
	return resp, err
}

// errJWKSTooLarge fails a fetch whose body passes jwksSettings.maxBody.
var errJWKSTooLarge = errors.New("JWKS: the key set is larger than the limit")

// limitBody caps the body of every response: reading past max bytes fails.
type limitBody struct {
	next http.RoundTripper
	max  int64
}

// RoundTrip implements http.RoundTripper.
func (l limitBody) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := l.next.RoundTrip(r)
	if err != nil {
		return nil, err
	}
	resp.Body = &cappedBody{ReadCloser: resp.Body, left: l.max}
	return resp, nil
}

// cappedBody fails with errJWKSTooLarge once more than left bytes were read.
type cappedBody struct {
	io.ReadCloser
	left int64
}

func (b *cappedBody) Read(p []byte) (int, error) {
	if int64(len(p)) > b.left+1 {
		p = p[:b.left+1] // one byte past the cap tells a body of exactly the cap from a longer one
	}
	n, err := b.ReadCloser.Read(p)
	b.left -= int64(n)
	if b.left < 0 {
		return n + int(b.left), errJWKSTooLarge
	}
	return n, err
}

// WithoutCookie returns an Authenticator that ignores the auth cookie, for endpoints that browsers
// have no business calling (POST /v1/jobs): only credentials a script sets explicitly count there.
func (a *Authenticator) WithoutCookie() *Authenticator {
	cp := *a
	cp.cookie = ""
	return &cp
}

// Authenticate returns the request's Caller, or the problem to answer: 401 for missing or invalid
// credentials, 403 for development auth reached through a name that is not loopback, and 503
// (problem.AuthUnavailable, its RetryAfter set) for a JWKS-signed token whose key could not be
// fetched (see jwksKey).
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

// MaxTokenBytes bounds a JWT (bearer or cookie). Identity providers' tokens are a few KiB at most
// (a browser cookie holds 4 KiB); a longer one is refused before it is decoded.
const MaxTokenBytes = 16 << 10

// jwt authenticates a bearer token. An HS256 token is verified with the secret of the owner its
// (unverified) subject names when that owner is in INTAKE_API_JWT_TENANT_SECRETS, else with the
// shared INTAKE_API_JWT_SECRET (or, without one, a random key nobody holds): a tenant's secret
// thus signs its own subject's tokens only. A token a tenant's secret verified never makes an
// operator: one asking for the admin scope is refused (401) rather than downgraded, since its
// signer, a tenant's backend, has no operator rights to give and a token that claims them is either
// a mistake to surface or an attempt to escalate.
func (a *Authenticator) jwt(ctx context.Context, raw string) (Caller, *problem.Problem) {
	if a.secret == nil && len(a.tenantSecrets) == 0 && a.jwks == nil {
		return Caller{}, unauthorized("bearer tokens are not accepted: only API keys are configured")
	}
	if len(raw) > MaxTokenBytes {
		// Refused before decoding: the claims are decoded before the signature is checked, so a
		// junk token of a megabyte (a claim holding a long array) would cost anyone without
		// credentials tens of milliseconds of CPU per request.
		return Caller{}, unauthorized(fmt.Sprintf("the bearer token is %d bytes; at most %d are accepted", len(raw), MaxTokenBytes))
	}
	var cl claims
	tenantSigned := false
	tok, err := a.parser.ParseWithClaims(raw, &cl, func(t *jwt.Token) (any, error) {
		if t.Method.Alg() == jwt.SigningMethodHS256.Alg() {
			// cl holds the token's claims, not yet verified: the subject only picks the secret
			// the signature must verify with.
			if s, ok := a.tenantSecrets[cl.Subject]; ok {
				tenantSigned = true
				return s, nil
			}
			if a.secret == nil {
				// Verified with a key nobody holds, so that it fails as a listed owner's token
				// signed with the wrong secret does: a distinct answer would tell anyone, without
				// credentials, which owners have a tenant secret.
				return a.unlisted, nil
			}
			return a.secret, nil
		}
		if a.jwks == nil {
			return nil, fmt.Errorf("%s tokens are not accepted", t.Method.Alg())
		}
		return a.jwksKey(ctx, t)
	})
	if unavailable := (*keySetUnavailable)(nil); errors.As(err, &unavailable) {
		// The fetch's error is logged (RefreshErrorHandlerFunc), not told to whoever sent a token.
		key := fmt.Sprintf("the key the token names (kid %q) is not", unavailable.kid)
		if unavailable.kid == "" {
			key = "no key to verify the token (it names none) is"
		}
		p := problem.AuthUnavailable.With(fmt.Sprintf("the identity provider's key set (INTAKE_API_JWKS_URL) could not be fetched, so %s known yet; the token may well be valid: try again in %s",
			key, retryAfterText(unavailable.retryAfter)))
		p.RetryAfter = unavailable.retryAfter
		return Caller{}, &p
	}
	if err != nil || !tok.Valid {
		return Caller{}, unauthorized(fmt.Sprintf("invalid bearer token: %v", err))
	}
	if !ValidOwner(cl.Subject) {
		return Caller{}, unauthorized(fmt.Sprintf("the token's subject %q cannot be an owner (%s)", cl.Subject, config.OwnerRule))
	}
	c := Caller{Owner: cl.Subject, Name: cl.Subject}
	if a.adminScope != "" && slices.Contains(cl.scopes(), a.adminScope) {
		if tenantSigned {
			return Caller{}, unauthorized(fmt.Sprintf("the token is signed with the tenant secret of %q, which cannot grant the operator scope %q: only INTAKE_API_JWT_SECRET or the JWKS can",
				cl.Subject, a.adminScope))
		}
		c.Operator = true
	}
	return c, nil
}

// jwksKey returns the JWKS key that verifies t. A token naming a kid the key set lacks (or naming
// none while the set holds no key) makes the key set be fetched again, at most once per
// jwksSettings.unknownKIDEvery: when the refresh is taken, the token is refused at once instead of
// waiting for the next.
//
// The refresh runs detached from the request (bounded by jwksSettings.timeout): a client that
// hangs up as soon as it has sent a junk kid must not spend the refresh without a fetch, which
// would keep a rotated key refused until the background refresh. The request waits for it (or
// for its own end).
//
// When the key set could not be fetched, the token is neither good nor bad as far as intake can
// tell: the error is a *keySetUnavailable (503 with Retry-After, until the next refresh may run),
// whether this request's refresh failed or, the refresh being taken, the last fetch did. Once a
// fetch succeeded, a kid not in the set is refused (401), as is a bad signature.
func (a *Authenticator) jwksKey(ctx context.Context, t *jwt.Token) (any, error) {
	kid, named := t.Header["kid"].(string)
	_, present := t.Header["kid"]
	ids := a.keyIDs(ctx)
	if named && !slices.Contains(ids, kid) || !present && len(ids) == 0 {
		if !a.unknownKID.Allow() {
			if a.fetchFailed.Load() {
				return nil, &keySetUnavailable{kid: kid, retryAfter: a.untilRefresh()}
			}
			return nil, fmt.Errorf("no key %q in the key set, which was fetched again less than %s ago: retry shortly", kid, a.unknownEvery)
		}
		done := make(chan error, 1)
		go func() {
			o := &fetchOutcome{}
			fctx, cancel := context.WithTimeout(context.WithValue(context.WithoutCancel(ctx), fetchOutcomeKey{}, o), a.fetchTimeout)
			defer cancel()
			_, _ = a.jwks.Storage().KeyRead(fctx, kid) // fetches the set again: kid is not in it
			if o.err == nil {
				a.fetchFailed.Store(false)
			}
			done <- o.err
		}()
		select {
		case err := <-done:
			if err != nil {
				return nil, &keySetUnavailable{kid: kid, retryAfter: a.untilRefresh()}
			}
		case <-ctx.Done():
			return nil, fmt.Errorf("key set fetched again for key %q: %w", kid, ctx.Err())
		}
		if named && !slices.Contains(a.keyIDs(ctx), kid) {
			return nil, fmt.Errorf("no key %q in the key set, fetched again just now", kid)
		}
	}
	return a.jwks.KeyfuncCtx(ctx)(t)
}

// keySetUnavailable is jwksKey's error when the key set could not be fetched: the token may be
// good, and is answered 503 with retryAfter.
type keySetUnavailable struct {
	kid        string        // the kid the token names ("" for none)
	retryAfter time.Duration // until the next refresh for an unknown kid may run
}

func (e *keySetUnavailable) Error() string {
	return fmt.Sprintf("the key set could not be fetched to find key %q", e.kid)
}

// fetchOutcome holds the error of the fetch a refresh for an unknown kid ran, which the library
// hands to RefreshErrorHandlerFunc only, under the refresh's context (its value fetchOutcomeKey).
type fetchOutcome struct{ err error }

type fetchOutcomeKey struct{}

// untilRefresh is how long until a refresh for an unknown kid may run again (at least a second):
// the Retry-After of a 503 for a key set that could not be fetched.
func (a *Authenticator) untilRefresh() time.Duration {
	wait := time.Duration((1 - a.unknownKID.Tokens()) * float64(a.unknownEvery))
	return max(wait, time.Second)
}

// retryAfterText is d as the whole seconds Retry-After says.
func retryAfterText(d time.Duration) string {
	return (time.Duration(problem.RetryAfterSeconds(d)) * time.Second).String()
}

// keyIDs returns the IDs of the keys in the key set, without fetching it.
func (a *Authenticator) keyIDs(ctx context.Context) []string {
	keys, err := a.jwks.Storage().KeyReadAll(ctx)
	if err != nil {
		return nil
	}
	ids := make([]string, len(keys))
	for i, k := range keys {
		ids[i] = k.Marshal().KID
	}
	return ids
}

func unauthorized(detail string) *problem.Problem {
	p := problem.Unauthorized.With(detail)
	return &p
}

// ValidOwner reports whether a token subject or API key owner can be an owner segment of keys
// (config.ValidOwner, which config.Validate checks the configured owners with).
func ValidOwner(owner string) bool { return config.ValidOwner(owner) }
