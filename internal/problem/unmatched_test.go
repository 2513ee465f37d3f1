package problem_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/intakehq/intake/internal/problem"
)

// TestUnmatched: a request no route matches gets a problem+json 404, or a 405 naming the methods
// the path has routes for; matched requests are not touched.
func TestUnmatched(t *testing.T) {
	t.Parallel()
	mux := http.NewServeMux()
	ok := func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusTeapot) }
	mux.HandleFunc("POST /v1/uploads", ok)
	mux.HandleFunc("GET /v1/uploads/{id}", ok)
	mux.HandleFunc("OPTIONS /v1/uploads/{id}", ok)
	mux.Handle("GET /v1/objects/{id}/download", headRefused{http.HandlerFunc(ok)})
	mux.Handle("/", problem.Unmatched(mux))
	for _, c := range []struct {
		method, path string
		status       int
		allow, typ   string
	}{
		{"POST", "/v1/uploads", http.StatusTeapot, "", ""},
		{"GET", "/v1/uploads/7", http.StatusTeapot, "", ""},
		{"HEAD", "/v1/uploads/7", http.StatusTeapot, "", ""}, // GET routes serve HEAD
		{"GET", "/nope", http.StatusNotFound, "", problem.NotFound.Type()},
		{"GET", "/", http.StatusNotFound, "", problem.NotFound.Type()},
		{"GET", "/v1/uploads", http.StatusMethodNotAllowed, "POST", problem.MethodNotAllowed.Type()},
		{"DELETE", "/v1/uploads/7", http.StatusMethodNotAllowed, "GET, HEAD, OPTIONS", problem.MethodNotAllowed.Type()},
		// A GET route that refuses HEAD: Allow must not invite the HEAD it would refuse.
		{"POST", "/v1/objects/7/download", http.StatusMethodNotAllowed, "GET", problem.MethodNotAllowed.Type()},
	} {
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, httptest.NewRequest(c.method, c.path, nil))
		require.Equal(t, c.status, rec.Code, "%s %s", c.method, c.path)
		require.Equal(t, c.allow, rec.Header().Get("Allow"), "%s %s", c.method, c.path)
		if c.typ == "" {
			continue
		}
		require.Equal(t, "application/problem+json", rec.Header().Get("Content-Type"))
		var p problem.Problem
		require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &p))
		require.Equal(t, c.typ, p.Type)
		require.Equal(t, c.status, p.Status)
	}
}

// headRefused is a GET route's handler that refuses HEAD (as the API's signing routes do).
type headRefused struct{ http.Handler }

func (headRefused) RefusesHead() bool { return true }
