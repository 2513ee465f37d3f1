package auth

import (
	"net/http"
	"strings"
)

// requestedWithHeaders are request headers that only a script can add, and that a cross-origin
// script can add only after a CORS preflight, which intake answers with credentials allowed for
// the trusted origins only. Uppy's client sends Uppy-Versions on every request.
var requestedWithHeaders = []string{"X-Requested-With", "Uppy-Versions"}

// CrossSite says why a browser's request looks made by another site's page, or "" when nothing
// does. It is the check of requests a browser authenticates by itself (a cookie, or development
// auth, which asks for no credentials): browsers attach cookies to requests any site can trigger,
// GET included (a link, an image, a form, a top-level navigation), and the loopback API of a
// developer's machine is reachable from any page the developer opens.
//
// trusted reports whether an Origin is trusted (INTAKE_API_CORS_ORIGINS; nil trusts none). A
// request passes with:
//
//   - Sec-Fetch-Site: same-origin (modern browsers set it on every request; pages cannot forge it);
//   - an Origin trusted, or, from a browser that sends no Sec-Fetch-Site, the request's own
//     origin (scheme included: see [RequestScheme]);
//   - a header only scripts can set (X-Requested-With, Uppy-Versions).
//
// Sec-Fetch-Site: cross-site or same-site with an Origin that is not trusted, or an Origin that is
// neither trusted nor intake's own, is refused even with such a header: a browser that says the
// request is not same-origin knows the schemes, hosts and ports of both ends, so an Origin naming
// intake's host (http://intake.example.com, a page a network attacker serves over plain HTTP,
// against an https deployment) does not outweigh its word. Without requireEvidence (development
// auth, where curl sends none of these) a request that carries none passes, and so does
// Sec-Fetch-Site: none (the user's own navigation); one a browser marks as another site's is still
// refused.
func CrossSite(r *http.Request, trusted func(origin string) bool, requireEvidence bool) string {
	listed := func(origin string) bool { return trusted != nil && trusted(origin) }
	origin := r.Header.Get("Origin")
	switch site := r.Header.Get("Sec-Fetch-Site"); site {
	case "same-origin":
		return ""
	case "":
	default:
		if site == "none" && !requireEvidence {
			return "" // typed in the address bar, a bookmark: the user's own navigation
		}
		if origin == "" || !listed(origin) {
			return "Sec-Fetch-Site is " + site
		}
		return ""
	}
	if origin != "" {
		if !listed(origin) && !SameOrigin(origin, r) {
			return "origin " + origin + " is not trusted"
		}
		return ""
	}
	if !requireEvidence {
		return ""
	}
	for _, h := range requestedWithHeaders {
		if r.Header.Get(h) != "" {
			return ""
		}
	}
	return "no Origin, no Sec-Fetch-Site and no X-Requested-With header"
}

// SameOrigin reports whether origin ("scheme://host[:port]") names the scheme and host the request
// was sent to ([RequestScheme]).
func SameOrigin(origin string, r *http.Request) bool {
	scheme, host, ok := strings.Cut(origin, "://")
	return ok && host != "" && strings.EqualFold(host, r.Host) && strings.EqualFold(scheme, RequestScheme(r))
}

// RequestScheme is the scheme the client sent r with: https when intake terminated TLS itself,
// else the one the TLS-terminating proxy in front of it names in X-Forwarded-Proto (its first
// value) or in an RFC 7239 Forwarded header, else http. intake has no list of trusted proxies, and
// the header is trusted for one use only, telling intake's own origin from a page's: a page cannot
// set it on the requests it makes a browser send (it is not a CORS-safelisted header, and intake's
// preflight does not allow it), so on a browser's request it comes from a proxy. A client that sets
// it itself holds the credentials it sends and has no use for the cookie's checks.
func RequestScheme(r *http.Request) string {
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
