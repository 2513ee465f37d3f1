package testkit

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
)

// OffContract is a request header a test sets on a request that deliberately breaks the OpenAPI
// document (an attack, a route that must not exist, a credential-less request under development
// auth): [Contract.Handler] removes it, does not check the request, and checks the response only
// when the request's route and method are documented.
const OffContract = "X-Test-Off-Contract"

// Contract checks HTTP exchanges against an OpenAPI 3 document (intake's openapi.json) with
// kin-openapi: a request must be one the document describes (path, method, parameters, body,
// credentials present) and its response one the document lists for that operation (status, headers,
// body schema, content type), so that a field that drifts from the document fails the test that
// exercised it.
type Contract struct {
	router routers.Router
	opts   *openapi3filter.Options
}

// NewContract loads and validates doc, failing t when the document itself is invalid. Loading is
// done once per document and shared by every Contract of the test binary.
func NewContract(t testing.TB, doc []byte) *Contract {
	t.Helper()
	router, err := loadContract(doc)
	if err != nil {
		t.Fatalf("testkit: contract: %v", err)
	}
	opts := &openapi3filter.Options{
		// An undocumented status fails as a wrong body does.
		IncludeResponseStatus: true,
		// A request body the operation does not take fails.
		RejectWhenRequestBodyNotSpecified: true,
		// The handler must see the request as the client sent it, without defaults filled in.
		SkipSettingDefaults: true,
		MultiError:          true,
		AuthenticationFunc:  credentialsPresent,
	}
	// Name the field and the rule, without the whole schema.
	opts.WithCustomSchemaErrorFunc(func(err *openapi3.SchemaError) string {
		return fmt.Sprintf("at /%s: %s", strings.Join(err.JSONPointer(), "/"), err.Reason)
	})
	return &Contract{router: router, opts: opts}
}

var contracts sync.Map // string(doc) → *loaded

type loaded struct {
	once   sync.Once
	router routers.Router
	err    error
}

func loadContract(doc []byte) (routers.Router, error) {
	v, _ := contracts.LoadOrStore(string(doc), &loaded{})
	l := v.(*loaded)
	l.once.Do(func() {
		loader := openapi3.NewLoader()
		spec, err := loader.LoadFromData(doc)
		if err != nil {
			l.err = fmt.Errorf("load the document: %w", err)
			return
		}
		if err := spec.Validate(loader.Context); err != nil {
			l.err = fmt.Errorf("the document is not valid OpenAPI: %w", err)
			return
		}
		if l.router, err = gorillamux.NewRouter(spec); err != nil {
			l.err = fmt.Errorf("route the document: %w", err)
		}
	})
	return l.router, l.err
}

// credentialsPresent is the contract's authentication: the credentials a security scheme names
// are present (whether they are valid is the server's business, and its tests').
func credentialsPresent(_ context.Context, in *openapi3filter.AuthenticationInput) error {
	r, s := in.RequestValidationInput.Request, in.SecurityScheme
	switch {
	case s.Type == "http":
		scheme, cred, _ := strings.Cut(r.Header.Get("Authorization"), " ")
		if strings.EqualFold(scheme, s.Scheme) && strings.TrimSpace(cred) != "" {
			return nil
		}
	case s.Type == "apiKey" && s.In == "header":
		if r.Header.Get(s.Name) != "" {
			return nil
		}
	case s.Type == "apiKey" && s.In == "cookie":
		if c, err := r.Cookie(s.Name); err == nil && c.Value != "" {
			return nil
		}
	case s.Type == "apiKey" && s.In == "query":
		if r.URL.Query().Get(s.Name) != "" {
			return nil
		}
	}
	return fmt.Errorf("no %s credentials", in.SecuritySchemeName)
}

// Reporter receives the mismatches a Contract finds (a *testing.T, or a recorder in the tests of
// the contract itself).
type Reporter interface {
	Errorf(format string, args ...any)
}

// Handler serves next and checks each exchange against the document, reporting every mismatch
// to t (the exchange itself goes on unchanged). CORS preflights (OPTIONS with
// Access-Control-Request-Method) are not in the document and pass unchecked; so does the response
// of a request whose client left before it was written.
func (c *Contract) Handler(t Reporter, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		off := r.Header.Get(OffContract) != ""
		r.Header.Del(OffContract)
		if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
			next.ServeHTTP(w, r)
			return
		}
		body, err := io.ReadAll(r.Body)
		if err != nil {
			t.Errorf("contract: %s %s: read the request body: %v", r.Method, r.URL.Path, err)
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		in, err := c.checkRequest(r, body, !off)
		if err != nil {
			t.Errorf("contract: %s %s: the request does not match the document: %v", r.Method, r.URL.RequestURI(), err)
		}
		rec := &recorder{ResponseWriter: w}
		next.ServeHTTP(rec, r)
		if in == nil || r.Context().Err() != nil {
			return
		}
		status, header, sent := rec.result()
		if err := c.checkResponse(in, status, header, sent); err != nil {
			t.Errorf("contract: %s %s → %d: the response does not match the document: %v\nbody: %s",
				r.Method, r.URL.RequestURI(), status, err, truncate(sent, 2048))
		}
	})
}

// checkRequest finds the operation of r and, with strict, validates r (its body given apart) against
// it. It returns the validation input the response is checked with: nil when the operation is not in
// the document (an error when strict).
func (c *Contract) checkRequest(r *http.Request, body []byte, strict bool) (*openapi3filter.RequestValidationInput, error) {
	clone := r.Clone(context.Background())
	clone.Body = io.NopCloser(bytes.NewReader(body))
	route, params, err := c.router.FindRoute(clone)
	if err != nil {
		if !strict {
			return nil, nil
		}
		return nil, err
	}
	in := &openapi3filter.RequestValidationInput{Request: clone, PathParams: params, Route: route, Options: c.opts}
	if !strict {
		return in, nil
	}
	return in, openapi3filter.ValidateRequest(context.Background(), in)
}

// checkResponse validates one response to the request of in. A problem+json body's "status" must
// also be the response's own (RFC 9457: "the HTTP status code generated by the origin server"),
// which the document's schema cannot say.
func (c *Contract) checkResponse(in *openapi3filter.RequestValidationInput, status int, header http.Header, body []byte) error {
	if err := openapi3filter.ValidateResponse(context.Background(), &openapi3filter.ResponseValidationInput{
		RequestValidationInput: in, Status: status, Header: header, Body: io.NopCloser(bytes.NewReader(body)), Options: c.opts,
	}); err != nil {
		return err
	}
	if mt, _, _ := mime.ParseMediaType(header.Get("Content-Type")); mt == "application/problem+json" {
		var p struct {
			Status *int `json:"status"`
		}
		if err := json.Unmarshal(body, &p); err == nil && p.Status != nil && *p.Status != status {
			return fmt.Errorf("the problem's status %d is not the response's %d", *p.Status, status)
		}
	}
	return nil
}

// recorder passes a response through and keeps a copy of its status, headers and body.
type recorder struct {
	http.ResponseWriter
	code   int
	header http.Header
	body   bytes.Buffer
}

func (r *recorder) WriteHeader(code int) {
	if r.code == 0 {
		r.code = code
		r.header = r.ResponseWriter.Header().Clone()
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	if r.code == 0 {
		r.WriteHeader(http.StatusOK)
	}
	r.body.Write(b)
	return r.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection's writer.
func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// result is the response as sent: a handler that wrote nothing sent 200 with the headers it set.
func (r *recorder) result() (int, http.Header, []byte) {
	if r.code == 0 {
		return http.StatusOK, r.ResponseWriter.Header().Clone(), nil
	}
	return r.code, r.header, r.body.Bytes()
}

func truncate(b []byte, n int) string {
	if len(b) <= n {
		return string(b)
	}
	return string(b[:n]) + "…"
}
