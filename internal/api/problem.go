package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"reflect"
	"strconv"
	"strings"
	"sync"

	"github.com/intakehq/intake/internal/problem"
)

// ProblemBase prefixes every problem type URI (problem.Base); the part after it is the problem's
// slug.
const ProblemBase = problem.Base

// Problem is an RFC 9457 problem detail, returned as application/problem+json for every /v1 error.
type Problem = problem.Problem

// The problem types only the API returns (the shared ones are in package problem). Slugs never
// change once published.
var (
	probInvalidFilename  = problem.Kind{Slug: "invalid-filename", Title: "Invalid file name", Status: http.StatusBadRequest}
	probInvalidType      = problem.Kind{Slug: "invalid-content-type", Title: "Invalid content type", Status: http.StatusBadRequest}
	probInvalidSize      = problem.Kind{Slug: "invalid-size", Title: "Invalid size", Status: http.StatusBadRequest}
	probInvalidSHA256    = problem.Kind{Slug: "invalid-sha256", Title: "Invalid sha256", Status: http.StatusBadRequest}
	probInvalidMethod    = problem.Kind{Slug: "invalid-method", Title: "Invalid upload method", Status: http.StatusBadRequest}
	probInvalidExpiry    = problem.Kind{Slug: "invalid-expiry", Title: "Invalid expiry", Status: http.StatusBadRequest}
	probExpiryTooLong    = problem.Kind{Slug: "expiry-too-long", Title: "Expiry above the maximum", Status: http.StatusBadRequest}
	probTooLarge         = problem.Kind{Slug: "too-large", Title: "Size above the policy's limit", Status: http.StatusUnprocessableEntity}
	probTypeNotAllowed   = problem.Kind{Slug: "type-not-allowed", Title: "Content type not allowed by the policy", Status: http.StatusUnprocessableEntity}
	probInvalidParts     = problem.Kind{Slug: "invalid-parts", Title: "Invalid part list", Status: http.StatusBadRequest}
	probInvalidCursor    = problem.Kind{Slug: "invalid-cursor", Title: "Invalid cursor", Status: http.StatusBadRequest}
	probInvalidLimit     = problem.Kind{Slug: "invalid-limit", Title: "Invalid limit", Status: http.StatusBadRequest}
	probInvalidParam     = problem.Kind{Slug: "invalid-parameter", Title: "Invalid query parameter", Status: http.StatusBadRequest}
	probNotFound         = problem.NotFound
	probNotPending       = problem.UploadNotPending
	probNotMultipart     = problem.Kind{Slug: "not-multipart", Title: "Upload is not a multipart upload", Status: http.StatusConflict}
	probNotValid         = problem.Kind{Slug: "object-not-valid", Title: "Object is not valid", Status: http.StatusConflict}
	probS3Rejected       = problem.Kind{Slug: "storage-rejected", Title: "Storage rejected the request", Status: http.StatusBadRequest}
	probS3Unavailable    = problem.Kind{Slug: "storage-unavailable", Title: "Storage unavailable", Status: http.StatusBadGateway}
	probDBUnavailable    = problem.DatabaseUnavailable
	probInternal         = problem.Kind{Slug: "internal", Title: "Internal error", Status: http.StatusInternalServerError}
	probCredsUnavailable = problem.Kind{Slug: "credentials-unavailable", Title: "Signing credentials unavailable", Status: http.StatusServiceUnavailable}
	probTooManyOpen      = problem.Kind{Slug: "too-many-open-uploads", Title: "Too many open multipart uploads", Status: http.StatusTooManyRequests}
	probTooManyWaits     = problem.Kind{Slug: "too-many-waits", Title: "Too many long polls", Status: http.StatusTooManyRequests}
)

// problemKinds lists every kind the API returns (the OpenAPI test checks the document names them
// all).
var problemKinds = []problem.Kind{
	problem.InvalidJSON, problem.UnknownField, problem.RequestTooLarge, problem.UnsupportedMediaType, probInvalidFilename,
	probInvalidType, probInvalidSize, probInvalidSHA256, probInvalidMethod, probInvalidExpiry,
	probExpiryTooLong, probTooLarge, probTypeNotAllowed, probInvalidParts, probInvalidCursor,
	probInvalidLimit, probInvalidParam, problem.Unauthorized, problem.Forbidden, probNotFound,
	probNotPending, probNotMultipart, probNotValid, probS3Rejected, probS3Unavailable,
	probDBUnavailable, probInternal, probInvalidMetadata, probTooManyOpen, probTooManyWaits, problem.MethodNotAllowed,
	probInvalidIdemKey, probIdemKeyReused, problem.AuthUnavailable, probCredsUnavailable,
	probTooManyCompletes, probServerBusy, problem.RateLimited,
}

// problemf builds a Problem of the kind with a formatted detail.
func problemf(k problem.Kind, format string, args ...any) *Problem {
	p := k.With(fmt.Sprintf(format, args...))
	return &p
}

// writeProblem writes p as application/problem+json, its instance the request's id.
func writeProblem(w http.ResponseWriter, r *http.Request, p *Problem) {
	cp := *p
	if id := requestID(r.Context()); id != "" {
		cp.Instance = InstanceURN(id)
	}
	problem.Write(w, cp)
}

// InstanceURN is a problem's instance for the request whose X-Request-Id is id:
// urn:request:<id>, with what a URI may not hold percent-encoded (a client's id may be any
// printable ASCII, such as "a{b}" or "100%", and RFC 9457 makes instance a URI reference that
// clients may parse as one).
func InstanceURN(id string) string { return "urn:request:" + url.PathEscape(id) }

// maxJSONBody bounds JSON request bodies, except on routes that set their own limit (complete).
const maxJSONBody = 64 << 10

// decodeJSON reads one JSON object from the body into v, refusing unknown fields, members given
// twice or in another case than their field's (exactMembers), trailing data, bodies over
// maxJSONBody and other media types. The body is read whole first (encoding/json's decoder buffered
// the whole value anyway); a scannable v reads it through its fast path when it can (which gives up
// on such members), and encoding/json decodes it otherwise.
func decodeJSON(w http.ResponseWriter, r *http.Request, v any) *Problem {
	return decodeJSONLimit(w, r, v, maxJSONBody)
}

// decodeJSONLimit is decodeJSON with the route's own body limit.
func decodeJSONLimit(w http.ResponseWriter, r *http.Request, v any, limit int64) *Problem {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, _ := strings.Cut(ct, ";")
		if mt = strings.ToLower(strings.TrimSpace(mt)); mt != "application/json" && !strings.HasSuffix(mt, "+json") {
			return problemf(problem.UnsupportedMediaType, "content type %q is not application/json", ct)
		}
	}
	body, err := readBody(w, r, limit)
	defer releaseBody(body)
	if err != nil {
		return jsonProblem(err)
	}
	if sc, ok := v.(scannable); ok && sc.scanJSON(body.Bytes()) {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(body.Bytes()))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonProblem(err)
	}
	if err := dec.Decode(&struct{}{}); !errors.Is(err, io.EOF) {
		if err == nil {
			return problemf(problem.InvalidJSON, "the body holds more than one JSON value")
		}
		return jsonProblem(err)
	}
	return exactMembers(body.Bytes(), reflect.TypeOf(v))
}

// jsonProblem maps an error of reading or decoding a JSON body. A *Problem (what a type's own
// UnmarshalJSON refuses, such as partList) is answered as it is.
func jsonProblem(err error) *Problem {
	var maxErr *http.MaxBytesError
	var syntaxErr *json.SyntaxError
	var typeErr *json.UnmarshalTypeError
	var prob *Problem
	switch {
	case errors.As(err, &prob):
		return prob
	case errors.As(err, &maxErr):
		return problemf(problem.RequestTooLarge, "the body exceeds %d bytes", maxErr.Limit)
	case errors.Is(err, io.EOF):
		return problemf(problem.InvalidJSON, "the body is empty")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return problemf(problem.InvalidJSON, "the body ends in the middle of a JSON value")
	case errors.As(err, &syntaxErr):
		return problemf(problem.InvalidJSON, "syntax error at byte %d: %v", syntaxErr.Offset, syntaxErr)
	case errors.As(err, &typeErr):
		return problemf(problem.InvalidJSON, "field %q must be a %s", typeErr.Field, typeErr.Type)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return problemf(problem.UnknownField, "%s", strings.TrimPrefix(err.Error(), "json: "))
	default:
		return problemf(problem.InvalidJSON, "%v", err)
	}
}

// Header values of JSON answers, shared (net/http copies a handler's header map before writing it
// and never changes the slices in it): assigning them skips Header.Set's key canonicalization
// and a slice per value.
var (
	headerJSON    = []string{"application/json"}
	headerNoStore = []string{"no-store"}
)

// responseBuffers holds the buffers answers are appended into (writeUpload); one that grew beyond
// maxPooledResponse is left to the collector.
var responseBuffers = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

const maxPooledResponse = 64 << 10

// netHTTPChunk is the size of net/http's response buffer (bufferBeforeChunkingSize): a body up to
// this size, written before the handler returns, is sent with a Content-Length net/http computes.
const netHTTPChunk = 2048

// writeJSON writes v as application/json with the status, encoded by encoding/json.
func writeJSON(w http.ResponseWriter, status int, v any) {
	h := w.Header()
	h["Content-Type"] = headerJSON
	h["Cache-Control"] = headerNoStore
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// writeUpload writes an upload's answer as application/json, appended by hand into a pooled buffer.
// It takes the answer's concrete type: passed through an interface (as to writeJSON), the answer
// would move to the heap on every POST /v1/uploads (TestUploadAnswerDoesNotEscape).
func writeUpload(w http.ResponseWriter, status int, resp *uploadResponse) {
	bp := responseBuffers.Get().(*[]byte)
	writeAppended(w, status, bp, resp.appendJSON((*bp)[:0]))
}

// writeAppended writes buf, a JSON body appended into the pooled buffer bp, as application/json
// with the status, and returns bp to the pool. Write copies the body (into the connection's
// buffered writer) before it returns. net/http sets Content-Length itself for a body that fits its
// first chunk (2 KiB) and is written at once, without an allocation; a longer one is given its
// length here, or net/http would send it chunked (TestWriteJSONContentLength).
func writeAppended(w http.ResponseWriter, status int, bp *[]byte, buf []byte) {
	h := w.Header()
	h["Content-Type"] = headerJSON
	h["Cache-Control"] = headerNoStore
	if len(buf) > netHTTPChunk {
		h["Content-Length"] = []string{strconv.Itoa(len(buf))}
	}
	w.WriteHeader(status)
	_, _ = w.Write(buf)
	if cap(buf) <= maxPooledResponse {
		*bp = buf
		responseBuffers.Put(bp)
	}
}
