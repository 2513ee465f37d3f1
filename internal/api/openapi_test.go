package api

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	mpart "github.com/intakehq/intake/internal/multipart"
	"github.com/intakehq/intake/internal/store"
	"github.com/intakehq/intake/internal/store/dbq"
)

// unitServer is a Server with no reachable backends, for tests of routing and documents only.
func unitServer(t *testing.T) *Server {
	t.Helper()
	client := s3.New(s3.Options{Region: "us-east-1", Credentials: credentials.NewStaticCredentialsProvider("A", "S", ""), BaseEndpoint: aws.String("http://127.0.0.1:1"), UsePathStyle: true})
	mp, err := mpart.New(mpart.Config{S3: client, Store: (&store.Store{Q: dbq.New(nil)}).Multipart()})
	require.NoError(t, err)
	srv, err := New(t.Context(), Options{
		API: testAPIConfig(), Bucket: "b", Queries: dbq.New(nil), S3: client, Presign: client, Multipart: mp,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Registerer: prometheus.NewRegistry(),
	})
	require.NoError(t, err)
	return srv
}

// TestOpenAPIMatchesRoutes keeps openapi.json in sync with the mux: every /v1 route registered is
// documented, every documented operation is registered, and every problem type is listed.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	t.Parallel()
	var doc struct {
		OpenAPI string                                `json:"openapi"`
		Paths   map[string]map[string]json.RawMessage `json:"paths"`
		Comps   struct {
			Schemas map[string]struct {
				Properties map[string]struct {
					Enum []string `json:"enum"`
				} `json:"properties"`
			} `json:"schemas"`
		} `json:"components"`
	}
	require.NoError(t, json.Unmarshal(openAPIDoc, &doc))
	require.True(t, strings.HasPrefix(doc.OpenAPI, "3."))
	var documented []string
	for path, ops := range doc.Paths {
		for method := range ops {
			documented = append(documented, strings.ToUpper(method)+" "+path)
		}
	}
	var registered []string
	for _, rt := range unitServer(t).routes() {
		if _, path, _ := strings.Cut(rt.pattern, " "); strings.HasPrefix(path, "/v1/") {
			registered = append(registered, rt.pattern)
		}
	}
	slices.Sort(documented)
	slices.Sort(registered)
	require.Equal(t, registered, documented)

	var kinds []string
	for _, k := range problemKinds {
		kinds = append(kinds, ProblemBase+k.Slug)
	}
	require.ElementsMatch(t, kinds, doc.Comps.Schemas["Problem"].Properties["type"].Enum)
}

func TestOpenAPIServed(t *testing.T) {
	t.Parallel()
	hs := httptest.NewServer(unitServer(t).Handler())
	defer hs.Close()
	resp, err := http.Get(hs.URL + "/openapi.json")
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	raw, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.JSONEq(t, string(openAPIDoc), string(raw))
}
