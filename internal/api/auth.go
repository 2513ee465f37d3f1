package api

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"

	"github.com/intakehq/intake/internal/config"
	"github.com/intakehq/intake/internal/problem"
	"github.com/intakehq/intake/internal/redact"
)

// DevOwner is the owner of every unauthenticated request under INTAKE_API_INSECURE_DEV_AUTH.
const DevOwner = "dev"

// Authenticator turns a request's credentials into its owner: a static API key (X-API-Key, or
// Authorization: Bearer <key>), or a bearer JWT (HS256 with the shared secret, RS256/ES256 with a key
// from the JWKS URL) whose issuer and audience are checked and whose subject is the owner. The JWT may
// also come in the configured cookie (browser clients such as Uppy, which send no Authorization).
type Authenticator struct {
	keys     map[[32]byte]string // SHA-256 of the key → owner
	secret   []byte
	jwks     keyfunc.Keyfunc
	parser   *jwt.Parser
	cookie   string
	devAuth  bool
	anyCreds bool // some real authentication is configured
}

// NewAuthenticator builds the Authenticator of the API configuration. With a JWKS URL it starts the
// key set's refresh goroutine, which stops when ctx is cancelled; the first fetch happens then and a
// failure is logged, not fatal (keys are fetched again when a token names an unknown kid).
func NewAuthenticator(ctx context.Context, c config.API, log *slog.Logger) (*Authenticator, error) {
	keys, err := config.ParseAPIKeys(c.Keys)
	if err != nil {
		return nil, err
	}
	a := &Authenticator{keys: make(map[[32]byte]string, len(keys)), cookie: c.AuthCookie, devAuth: c.InsecureDevAuth}
	for k, owner := range keys {
		if !validOwner(owner) {
			return nil, fmt.Errorf("INTAKE_API_KEYS: owner %q cannot be used in object keys", owner)
		}
		a.keys[sha256.Sum256([]byte(k))] = owner
	}
	var methods []string
	if c.JWTSecret != "" {
		a.secret = []byte(c.JWTSecret)
		methods = append(methods, jwt.SigningMethodHS256.Alg())
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
	opts := []jwt.ParserOption{jwt.WithValidMethods(methods), jwt.WithExpirationRequired(), jwt.WithLeeway(30 * time.Second)}
	if c.JWTIssuer != "" {
		opts = append(opts, jwt.WithIssuer(c.JWTIssuer))
	}
	if c.JWTAudience != "" {
		opts = append(opts, jwt.WithAudience(c.JWTAudience))
	}
	a.parser = jwt.NewParser(opts...)
	a.anyCreds = len(a.keys) > 0 || len(methods) > 0
	if !a.anyCreds && !a.devAuth {
		return nil, errors.New("API: no authentication configured (JWT secret, JWKS URL or API keys)")
	}
	return a, nil
}

// principal is who made a request.
type principal struct {
	owner string
	// cookie is set when the credentials came in a cookie (cross-origin protection applies).
	cookie bool
}

// authenticate returns the request's principal, or a 401 problem.
func (a *Authenticator) authenticate(r *http.Request) (principal, *Problem) {
	if k := r.Header.Get("X-API-Key"); k != "" {
		if owner, ok := a.apiKey(k); ok {
			return principal{owner: owner}, nil
		}
		return principal{}, problemf(problem.Unauthorized, "unknown API key")
	}
	if h := r.Header.Get("Authorization"); h != "" {
		scheme, tok, ok := strings.Cut(h, " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(tok) == "" {
			return principal{}, problemf(problem.Unauthorized, "the Authorization header must be \"Bearer <token>\"")
		}
		tok = strings.TrimSpace(tok)
		if owner, ok := a.apiKey(tok); ok {
			return principal{owner: owner}, nil
		}
		owner, p := a.jwt(r.Context(), tok)
		return principal{owner: owner}, p
	}
	if a.cookie != "" {
		if c, err := r.Cookie(a.cookie); err == nil && c.Value != "" {
			owner, p := a.jwt(r.Context(), c.Value)
			return principal{owner: owner, cookie: true}, p
		}
	}
	if a.devAuth {
		return principal{owner: DevOwner}, nil
	}
	return principal{}, problemf(problem.Unauthorized, "no credentials: send Authorization: Bearer <token> or X-API-Key")
}

// apiKey looks the key up by its SHA-256, so lookup time reveals nothing useful about stored keys.
func (a *Authenticator) apiKey(k string) (string, bool) {
	if len(a.keys) == 0 {
		return "", false
	}
	owner, ok := a.keys[sha256.Sum256([]byte(k))]
	return owner, ok
}

func (a *Authenticator) jwt(ctx context.Context, raw string) (string, *Problem) {
	if a.secret == nil && a.jwks == nil {
		if a.devAuth && !a.anyCreds {
			return DevOwner, nil
		}
		return "", problemf(problem.Unauthorized, "bearer tokens are not accepted: only API keys are configured")
	}
	var claims jwt.RegisteredClaims
	tok, err := a.parser.ParseWithClaims(raw, &claims, func(t *jwt.Token) (any, error) {
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
		return "", problemf(problem.Unauthorized, "invalid bearer token: %v", err)
	}
	if !validOwner(claims.Subject) {
		return "", problemf(problem.Unauthorized, "the token's subject %q cannot be an owner (1..%d bytes, no '/', '\\', spaces or control characters)", claims.Subject, maxOwnerBytes)
	}
	return claims.Subject, nil
}
