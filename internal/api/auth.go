package api

import (
	"net/http"
	"strings"

	"github.com/intakehq/intake/internal/problem"
)

// principal is the tenant a request acts for.
type principal struct {
	owner string
}

// authenticate returns the tenant of the request (package auth decides who it is), or the problem
// to answer: 401 without valid credentials, 403 for operator keys (they act for no tenant) and for
// cookie-authenticated requests that a cross-site page could have made.
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

// requestedWithHeaders are request headers that only a script can add, and that a cross-origin
// script can add only after a CORS preflight, which intake answers with credentials allowed for
// the origins of INTAKE_API_CORS_ORIGINS only. Uppy's client sends Uppy-Versions on every request.
var requestedWithHeaders = []string{"X-Requested-With", "Uppy-Versions"}

// crossSite refuses a cookie-authenticated request unless something shows that intake's own pages,
// or a trusted origin, made it: browsers attach cookies to requests any site can trigger, GET
// included (a link, an image, a form, a top-level navigation), and every route creates or reveals
// state (GET /s3/params creates an intent). The request must carry one of:
//
//   - Sec-Fetch-Site: same-origin (modern browsers set it on every request; pages cannot forge it);
//   - an Origin in INTAKE_API_CORS_ORIGINS ("*" does not count), or the request's own origin;
//   - a header only scripts can set (X-Requested-With, Uppy-Versions; see requestedWithHeaders).
//
// Sec-Fetch-Site: cross-site or same-site, or an Origin that is neither listed nor intake's own, is
// refused even with such a header. Without requireEvidence (development auth) a request that
// carries none of these passes; one a browser marks as cross-site is still refused.
func (s *Server) crossSite(r *http.Request, requireEvidence bool) *Problem {
	refuse := func(why string) *Problem {
		return problemf(problem.Forbidden, "cross-site request refused: %s; requests authenticated by the cookie (or development auth) must come from intake's origin or an origin in INTAKE_API_CORS_ORIGINS", why)
	}
	origin := r.Header.Get("Origin")
	trustedOrigin := origin != "" && (s.cors.listed(origin) || sameOrigin(origin, r))
	switch site := r.Header.Get("Sec-Fetch-Site"); site {
	case "same-origin":
		return nil
	case "":
	default:
		if site == "none" && !requireEvidence {
			return nil // typed in the address bar, a bookmark: the user's own navigation
		}
		if !trustedOrigin {
			return refuse("Sec-Fetch-Site is " + site)
		}
		return nil
	}
	if origin != "" {
		if !trustedOrigin {
			return refuse("origin " + origin + " is not trusted")
		}
		return nil
	}
	if !requireEvidence {
		return nil
	}
	for _, h := range requestedWithHeaders {
		if r.Header.Get(h) != "" {
			return nil
		}
	}
	return refuse("no Origin, no Sec-Fetch-Site and no X-Requested-With header")
}

// sameOrigin reports whether origin ("scheme://host[:port]") names the host the request was sent
// to.
func sameOrigin(origin string, r *http.Request) bool {
	_, host, ok := strings.Cut(origin, "://")
	return ok && host != "" && strings.EqualFold(host, r.Host)
}
