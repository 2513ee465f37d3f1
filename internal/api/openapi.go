package api

import (
	"bytes"
	_ "embed"
	"net/http"
	"slices"
)

// openAPIDoc is the OpenAPI 3 description of every route intake serves on its public listener
// (openapi.json): the API's, POST /v1/jobs, the event ingress and the health routes. Its list of
// operations is kept equal to the served routes by TestOpenAPIMatchesRoutes, and the API, jobs API
// and ingress tests check every exchange against it (testkit.Contract).
//
//go:embed openapi.json
var openAPIDoc []byte

// OpenAPI returns the OpenAPI 3 document served at GET /openapi.json.
func OpenAPI() []byte { return bytes.Clone(openAPIDoc) }

// serveOpenAPI serves the embedded document at GET /openapi.json. The answer may be kept by shared
// caches, and its CORS headers depend on the request's Origin (the middleware adds them, and
// Vary: Origin, only for a request that has one): it always varies by Origin, or a cache would
// serve a copy stored for a request without one (no Access-Control-Allow-Origin) to a page of an
// allowed origin, or one stored for an origin to the others.
func serveOpenAPI(w http.ResponseWriter, _ *http.Request, _ principal) *Problem {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "public, max-age=300")
	if !slices.Contains(h.Values("Vary"), "Origin") {
		h.Add("Vary", "Origin")
	}
	_, _ = w.Write(openAPIDoc)
	return nil
}
