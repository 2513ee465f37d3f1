package api

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/intakehq/intake/internal/problem"
)

// TestUnmatchedAllowOmitsRefusedHead: a method a path does not take is answered 405 with the
// path's methods in Allow, and on the GET routes that refuse HEAD (they create or sign something)
// that Allow does not offer HEAD, which would itself be answered 405; on the GET routes that serve
// HEAD it does. No handler runs: the probe stops at the mux.
func TestUnmatchedAllowOmitsRefusedHead(t *testing.T) {
	t.Parallel()
	m, err := newMetrics(prometheus.NewRegistry())
	require.NoError(t, err)
	s := &Server{metrics: m}
	mux := http.NewServeMux()
	s.Register(mux)
	mux.Handle("/", problem.Unmatched(mux))
	refused := 0
	for _, rt := range s.routes() {
		method, path, _ := strings.Cut(rt.pattern, " ")
		if method != http.MethodGet {
			continue
		}
		path = strings.NewReplacer("{id}", "u1", "{uploadId}", "m1", "{partNumber}", "3").Replace(path)
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, httptest.NewRequest(http.MethodPut, path, nil))
		require.Equal(t, http.StatusMethodNotAllowed, rec.Code, "PUT %s", path)
		allow := strings.Split(rec.Header().Get("Allow"), ", ")
		require.Contains(t, allow, http.MethodGet, "PUT %s", path)
		if rt.head == headRefused {
			refused++
			require.NotContains(t, allow, http.MethodHead, "PUT %s: Allow offers a HEAD the route refuses", path)
		} else {
			require.Contains(t, allow, http.MethodHead, "PUT %s", path)
		}
	}
	require.Equal(t, 4, refused, "the GET routes that refuse HEAD")
}
