package api

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/intakehq/intake/internal/ingress"
	"github.com/intakehq/intake/internal/jobsapi"
	mpart "github.com/intakehq/intake/internal/multipart"
	"github.com/intakehq/intake/internal/problem"
	"github.com/intakehq/intake/internal/store"
	"github.com/intakehq/intake/internal/store/dbq"
	"github.com/intakehq/intake/internal/testkit"
)

// unitServer is a Server with no reachable backends, for tests of routing and documents only.
func unitServer(t *testing.T) *Server {
	t.Helper()
	return unitServerQueries(t, dbq.New(nil))
}

// unitServerQueries is unitServer with its queries.
func unitServerQueries(t *testing.T, q Queries) *Server {
	t.Helper()
	client := s3.New(s3.Options{Region: "us-east-1", Credentials: credentials.NewStaticCredentialsProvider("A", "S", ""), BaseEndpoint: aws.String("http://127.0.0.1:1"), UsePathStyle: true})
	mp, err := mpart.New(mpart.Config{S3: client, Store: (&store.Store{Q: dbq.New(nil)}).Multipart()})
	require.NoError(t, err)
	srv, err := New(t.Context(), Options{
		API: testAPIConfig(), Bucket: "b", Queries: q, S3: client, Presign: client, Multipart: mp,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Registerer: prometheus.NewRegistry(),
	})
	require.NoError(t, err)
	return srv
}

// healthRoutes are the routes internal/cli mounts beside the API on the public listener
// (App.mountHealth; /metrics only without an admin listener). Its TestHealthRoutesPerListener
// runs them through the contract.
var healthRoutes = []string{"GET /healthz", "GET /readyz", "GET /metrics"}

// TestOpenAPIMatchesRoutes keeps openapi.json in sync with what intake serves: every route of the
// API (/v1, Uppy's /s3 routes, /openapi.json), POST /v1/jobs, the ingress and the health routes is
// documented, every documented operation is served, and every problem type any of them answers is
// listed (and only those).
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
	served := []string{jobsapi.Route, "POST " + ingress.Path}
	served = append(served, healthRoutes...)
	for _, rt := range unitServer(t).routes() {
		served = append(served, rt.pattern)
	}
	slices.Sort(documented)
	slices.Sort(served)
	require.Equal(t, served, documented)

	var types []string
	for _, kinds := range [][]problem.Kind{problemKinds, jobsapi.ProblemKinds, ingress.ProblemKinds} {
		for _, k := range kinds {
			types = append(types, k.Type())
		}
	}
	slices.Sort(types)
	require.ElementsMatch(t, slices.Compact(types), doc.Comps.Schemas["Problem"].Properties["type"].Enum)
}

func TestOpenAPIServed(t *testing.T) {
	t.Parallel()
	hs := httptest.NewServer(testkit.NewContract(t, openAPIDoc).Handler(t, unitServer(t).Handler()))
	defer hs.Close()
	resp, err := http.Get(hs.URL + "/openapi.json")
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	raw, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.JSONEq(t, string(openAPIDoc), string(raw))
}

// TestOpenAPIVariesByOrigin: /openapi.json may be kept by shared caches (public, max-age=300) and
// its CORS headers depend on the request's Origin, so every answer says Vary: Origin, once, with an
// Origin or without one: a copy stored for a request without Origin (no Access-Control-Allow-Origin)
// must not be served to a page of an allowed origin, nor one stored for an origin to another.
func TestOpenAPIVariesByOrigin(t *testing.T) {
	t.Parallel()
	hs := httptest.NewServer(testkit.NewContract(t, openAPIDoc).Handler(t, unitServer(t).Handler()))
	defer hs.Close()
	for _, origin := range []string{"", "https://app.example.com", "https://evil.example.net"} {
		req, err := http.NewRequest(http.MethodGet, hs.URL+"/openapi.json", nil)
		require.NoError(t, err)
		if origin != "" {
			req.Header.Set("Origin", origin)
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		_ = resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode)
		require.Equal(t, "public, max-age=300", resp.Header.Get("Cache-Control"))
		require.Equal(t, []string{"Origin"}, resp.Header.Values("Vary"), "Origin %q", origin)
	}
}

// reported collects what a contract reports.
type reported struct {
	mu   sync.Mutex
	errs []string
}

func (r *reported) Errorf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}

// TestContractCatchesDrift: the contract every API test runs through is not a no-op. Each case
// serves one exchange through testkit.Contract's Handler, as setup does: the exchange as
// openapi.json documents it passes, and the same exchange with one thing drifted is reported.
func TestContractCatchesDrift(t *testing.T) {
	t.Parallel()
	contract := testkit.NewContract(t, openAPIDoc)
	id := uuid.NewString()
	const created = `{"id":"%s","bucket":"b","key":"uploads/alice/%s/a.txt","method":"put","url":"http://s3.test/b/k",` +
		`"headers":{"Content-Type":"text/plain"},"expires_at":"2030-01-01T00:00:00Z"}`
	upload := fmt.Sprintf(created, id, id)
	const problemBody = `{"type":"https://intake.dev/problems/too-large","title":"Size above the policy's limit","status":422,"detail":"d","instance":"urn:request:r1","reason":"too_large"}`
	const request = `{"filename":"a.txt","content_type":"text/plain","size":5}`
	for _, tc := range []struct {
		name        string
		request     string
		credentials bool
		status      int
		contentType string
		requestID   bool
		body        string
		drift       string // what the contract must report ("" for nothing)
	}{
		{"as documented", request, true, 201, "application/json", true, upload, ""},
		{"a problem as documented", request, true, 422, "application/problem+json", true, problemBody, ""},
		{"a required response field renamed", request, true, 201, "application/json", true,
			strings.Replace(upload, `"expires_at"`, `"expiresAt"`, 1), "expires_at"},
		{"an optional response field renamed", request, true, 201, "application/json", true,
			strings.Replace(upload, `"url"`, `"href"`, 1), "href"},
		{"a response field of another type", request, true, 201, "application/json", true,
			strings.Replace(upload, `"method":"put"`, `"method":"PUT"`, 1), "method"},
		{"a problem field renamed", request, true, 422, "application/problem+json", true,
			strings.Replace(problemBody, `"detail"`, `"details"`, 1), "details"},
		{"a problem type not in the document", request, true, 422, "application/problem+json", true,
			strings.Replace(problemBody, "too-large", "too-big", 1), "type"},
		{"a problem whose status is not the response's", request, true, 400, "application/problem+json", true,
			problemBody, "the problem's status 422 is not the response's 400"},
		{"X-Request-Id missing", request, true, 201, "application/json", false, upload, "X-Request-Id"},
		{"an undocumented status", request, true, 202, "application/json", true, upload, "status"},
		{"a problem sent as application/json", request, true, 422, "application/json", true, problemBody, "Content-Type"},
		{"a request field renamed", strings.Replace(request, "filename", "file_name", 1), true, 201, "application/json", true, upload, "file_name"},
		{"a request without credentials", request, false, 201, "application/json", true, upload, "security"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var got reported
			srv := httptest.NewServer(contract.Handler(&got, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				_, _ = io.Copy(io.Discard, r.Body)
				w.Header().Set("Content-Type", tc.contentType)
				if tc.requestID {
					w.Header().Set("X-Request-Id", "r1")
				}
				w.WriteHeader(tc.status)
				_, _ = io.WriteString(w, tc.body)
			})))
			defer srv.Close()
			req, err := http.NewRequest(http.MethodPost, srv.URL+"/v1/uploads", strings.NewReader(tc.request))
			require.NoError(t, err)
			req.Header.Set("Content-Type", "application/json")
			if tc.credentials {
				req.Header.Set("X-API-Key", aliceKey)
			}
			resp, err := http.DefaultClient.Do(req)
			require.NoError(t, err)
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
			srv.Close() // waits for the handler, and so for the check
			got.mu.Lock()
			defer got.mu.Unlock()
			if tc.drift == "" {
				require.Empty(t, got.errs)
				return
			}
			require.Len(t, got.errs, 1, "one mismatch reported")
			require.Contains(t, got.errs[0], tc.drift)
		})
	}
}

// TestOpenAPIHeaderNames: a response's header is named by its key, so a key must be a header's
// name, never a component's: "Retry-After-Optional" as a key documented a header nobody sends and
// left the Retry-After of rate-limited undocumented. A header component is referred to under its
// own name, or, for the optional variant, under the name without "-Optional".
func TestOpenAPIHeaderNames(t *testing.T) {
	var doc struct {
		Paths map[string]map[string]struct {
			Responses map[string]struct {
				Headers map[string]struct {
					Ref string `json:"$ref"`
				} `json:"headers"`
			} `json:"responses"`
		} `json:"paths"`
	}
	require.NoError(t, json.Unmarshal(openAPIDoc, &doc))
	checked := 0
	for path, ops := range doc.Paths {
		for method, op := range ops {
			for code, resp := range op.Responses {
				for name, h := range resp.Headers {
					if h.Ref == "" {
						continue
					}
					require.False(t, strings.HasSuffix(name, "-Optional"), "%s %s %s: header key %q is a component's name, not a header's", method, path, code, name)
					component := strings.TrimPrefix(h.Ref, "#/components/headers/")
					require.Contains(t, []string{name, name + "-Optional"}, component, "%s %s %s: header %q refers to %s", method, path, code, name, h.Ref)
					checked++
				}
			}
		}
	}
	require.Positive(t, checked)
}
