package problem

import (
	"net/http"
	"strings"
)

// MethodNotAllowed is the kind of a request whose path has routes, none for its method.
var MethodNotAllowed = Kind{"method-not-allowed", "Method not allowed", http.StatusMethodNotAllowed}

// methods are those [Unmatched] lists in Allow.
var methods = []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete, http.MethodOptions}

// HeadRefuser is implemented by a handler on a GET route that answers HEAD 405 (ServeMux would
// otherwise serve HEAD with the GET's handler); [Unmatched] leaves HEAD out of the Allow it names
// for such a path.
type HeadRefuser interface {
	http.Handler
	RefusesHead() bool
}

// Unmatched returns the handler to register on mux as "/": it answers the requests no other route
// matches with problem+json instead of net/http's text/plain, 405 with an Allow header when the
// path has routes for other methods, else 404. HEAD is listed only where the GET route serves it
// (see [HeadRefuser]). Register it last, once every route is on mux; it looks the other methods up
// only for requests that matched nothing.
func Unmatched(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var allow []string
		for _, m := range methods {
			if m == r.Method {
				continue
			}
			probe := r.Clone(r.Context())
			probe.Method = m
			h, pattern := mux.Handler(probe)
			if pattern == "" || pattern == "/" {
				continue
			}
			if hr, ok := h.(HeadRefuser); ok && m == http.MethodHead && hr.RefusesHead() {
				continue
			}
			allow = append(allow, m)
		}
		if len(allow) == 0 {
			Write(w, NotFound.With("no route for "+r.URL.Path))
			return
		}
		w.Header().Set("Allow", strings.Join(allow, ", "))
		Write(w, MethodNotAllowed.With(r.Method+" is not allowed on "+r.URL.Path))
	})
}
