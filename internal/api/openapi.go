package api

import (
	"bytes"
	_ "embed"
	"net/http"
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

// serveOpenAPI serves the embedded document at GET /openapi.json.
func serveOpenAPI(w http.ResponseWriter, _ *http.Request, _ principal) *Problem {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "public, max-age=300")
	_, _ = w.Write(openAPIDoc)
	return nil
}
