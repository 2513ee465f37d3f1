package api

import (
	"net/http"

	"github.com/intakehq/intake/internal/auth"
	"github.com/intakehq/intake/internal/problem"
)

// principal is the tenant a request acts for.
type principal struct {
	owner string
}

// authenticate returns the tenant of the request (package auth decides who it is), or the problem
// to answer: 401 without valid credentials, 403 for operator keys (they act for no tenant) and for
// cookie-authenticated requests that a cross-site page could have made, and 503 auth-unavailable
// for a token whose JWKS key could not be fetched (the identity provider down): package auth's
// problem is answered as it is, its RetryAfter becoming Retry-After on the problem+json routes
// (problem.Write).
func (s *Server) authenticate(r *http.Request) (principal, *Problem) {
	c, p := s.auth.Authenticate(r)
	if p != nil {
		return principal{}, p
	}
	if c.Owner == "" {
		return principal{}, problemf(problem.Forbidden, "operator keys (INTAKE_API_ADMIN_KEYS) act for no tenant: they are accepted by POST /v1/jobs only")
	}
	if c.Cookie || c.Dev {
		// A development caller needs no evidence of where it came from (curl sends none), but a
		// request a browser says another site made is refused: the loopback API is reachable from
		// any page the developer opens.
		if p := s.crossSite(r, c.Cookie); p != nil {
			return principal{}, p
		}
	}
	return principal{owner: c.Owner}, nil
}

// crossSite refuses a cookie-authenticated request (or one under development auth) that a page of
// another site could have made; see [auth.CrossSite] for what counts as evidence. Origins of
// INTAKE_API_CORS_ORIGINS are trusted ("*" does not count); the cookie needs evidence, development
// auth does not.
func (s *Server) crossSite(r *http.Request, requireEvidence bool) *Problem {
	if why := auth.CrossSite(r, s.cors.listed, requireEvidence); why != "" {
		return problemf(problem.Forbidden, "cross-site request refused: %s; requests authenticated by the cookie (or development auth) must come from intake's origin or an origin in INTAKE_API_CORS_ORIGINS", why)
	}
	return nil
}
