package api

import (
	_ "embed"
	"net/http"
)

// openAPIDoc is the OpenAPI 3 description of the /v1 routes (openapi.json, kept in sync with the
// registered routes by TestOpenAPIMatchesRoutes).
//
//go:embed openapi.json
var openAPIDoc []byte

// serveOpenAPI serves the embedded document at GET /openapi.json.
func serveOpenAPI(w http.ResponseWriter, _ *http.Request, _ principal) *Problem {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "public, max-age=300")
	_, _ = w.Write(openAPIDoc)
	return nil
}
