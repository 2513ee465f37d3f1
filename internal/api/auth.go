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
//   - an Origin in INTAKE_API_CORS_ORIGINS ("*" does not count), or, from a browser that sends no
//     Sec-Fetch-Site, the request's own origin (scheme included: see sameOrigin);
//   - a header only scripts can set (X-Requested-With, Uppy-Versions; see requestedWithHeaders).
//
// Sec-Fetch-Site: cross-site or same-site with an Origin that is not listed, or an Origin that is
// neither listed nor intake's own, is refused even with such a header: a browser that says the
// request is not same-origin knows the schemes, hosts and ports of both ends, so an Origin naming
// intake's host (http://intake.example.com, a page a network attacker serves over plain HTTP, against
// an https deployment) does not outweigh its word. Without requireEvidence (development auth) a
// request that carries none of these passes; one a browser marks as cross-site is still refused.
func (s *Server) crossSite(r *http.Request, requireEvidence bool) *Problem {
	refuse := func(why string) *Problem {
		return problemf(problem.Forbidden, "cross-site request refused: %s; requests authenticated by the cookie (or development auth) must come from intake's origin or an origin in INTAKE_API_CORS_ORIGINS", why)
	}
	origin := r.Header.Get("Origin")
	switch site := r.Header.Get("Sec-Fetch-Site"); site {
	case "same-origin":
		return nil
	case "":
	default:
		if site == "none" && !requireEvidence {
			return nil // typed in the address bar, a bookmark: the user's own navigation
		}
		if origin == "" || !s.cors.listed(origin) {
			return refuse("Sec-Fetch-Site is " + site)
		}
		return nil
	}
	if origin != "" {
		if !s.cors.listed(origin) && !sameOrigin(origin, r) {
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

// sameOrigin reports whether origin ("scheme://host[:port]") names the scheme and host the request
// was sent to (requestScheme).
func sameOrigin(origin string, r *http.Request) bool {
	scheme, host, ok := strings.Cut(origin, "://")
	return ok && host != "" && strings.EqualFold(host, r.Host) && strings.EqualFold(scheme, requestScheme(r))
}

// requestScheme is the scheme the client sent r with: https when intake terminated TLS itself,
// else the one the TLS-terminating proxy in front of it names in X-Forwarded-Proto (its first
// value), else http. intake has no list of trusted proxies, and the header is trusted here for one
// use only, telling intake's own origin from a page's: a page cannot set it on the requests it makes
// a browser send (it is not a CORS-safelisted header, and intake's preflight does not allow it), so
// on a browser's request it comes from a proxy. A client that sets it itself holds the credentials it
// sends and has no use for the cookie's checks.
func requestScheme(r *http.Request) string {
	if r.TLS != nil {
		return "https"
	}
	proto, _, _ := strings.Cut(r.Header.Get("X-Forwarded-Proto"), ",")
	if proto == "" {
		proto = forwardedProto(r.Header.Get("Forwarded"))
	}
	switch proto = strings.ToLower(strings.Trim(strings.TrimSpace(proto), `"`)); proto {
	case "https", "http":
		return proto
	}
	return "http"
}

// forwardedProto returns the proto parameter of the first element of an RFC 7239 Forwarded header
// ("for=192.0.2.1;proto=https, for=…"), the standard form of X-Forwarded-Proto; "" without one.
func forwardedProto(h string) string {
	first, _, _ := strings.Cut(h, ",")
	for _, pair := range strings.Split(first, ";") {
		k, v, ok := strings.Cut(strings.TrimSpace(pair), "=")
		if ok && strings.EqualFold(k, "proto") {
			return v
		}
	}
	return ""
}
