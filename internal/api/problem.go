package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// ProblemBase prefixes every problem type URI. The URIs are stable identifiers (clients switch on
// them); the part after the base is the problem's slug.
const ProblemBase = "https://intake.dev/problems/"

// Problem is an RFC 9457 problem detail, returned as application/problem+json for every /v1 error.
type Problem struct {
	// Type is a stable URI identifying the kind of problem (ProblemBase + slug).
	Type string `json:"type"`
	// Title is a short summary of the kind of problem; the same for every occurrence.
	Title string `json:"title"`
	// Status is the HTTP status code.
	Status int `json:"status"`
	// Detail explains this occurrence.
	Detail string `json:"detail,omitempty"`
	// Instance is the request id of the failing request (urn:request:<id>).
	Instance string `json:"instance,omitempty"`
	// Reason is the policy reason code for policy violations (too_large, type_not_allowed).
	Reason string `json:"reason,omitempty"`
}

func (p *Problem) Error() string { return p.Title + ": " + p.Detail }

// problemKind is one stable problem type.
type problemKind struct {
	slug   string
	title  string
	status int
}

// The problem types the API returns. Slugs never change once published.
var (
	probInvalidJSON     = problemKind{"invalid-json", "Malformed JSON body", http.StatusBadRequest}
	probUnknownField    = problemKind{"unknown-field", "Unknown field in request body", http.StatusBadRequest}
	probBodyTooLarge    = problemKind{"request-too-large", "Request body too large", http.StatusRequestEntityTooLarge}
	probUnsupportedBody = problemKind{"unsupported-media-type", "Request body must be application/json", http.StatusUnsupportedMediaType}
	probInvalidFilename = problemKind{"invalid-filename", "Invalid file name", http.StatusBadRequest}
	probInvalidType     = problemKind{"invalid-content-type", "Invalid content type", http.StatusBadRequest}
	probInvalidSize     = problemKind{"invalid-size", "Invalid size", http.StatusBadRequest}
	probInvalidSHA256   = problemKind{"invalid-sha256", "Invalid sha256", http.StatusBadRequest}
	probInvalidMethod   = problemKind{"invalid-method", "Invalid upload method", http.StatusBadRequest}
	probInvalidExpiry   = problemKind{"invalid-expiry", "Invalid expiry", http.StatusBadRequest}
	probExpiryTooLong   = problemKind{"expiry-too-long", "Expiry above the maximum", http.StatusBadRequest}
	probTooLarge        = problemKind{"too-large", "Size above the policy's limit", http.StatusUnprocessableEntity}
	probTypeNotAllowed  = problemKind{"type-not-allowed", "Content type not allowed by the policy", http.StatusUnprocessableEntity}
	probInvalidParts    = problemKind{"invalid-parts", "Invalid part list", http.StatusBadRequest}
	probInvalidCursor   = problemKind{"invalid-cursor", "Invalid cursor", http.StatusBadRequest}
	probInvalidLimit    = problemKind{"invalid-limit", "Invalid limit", http.StatusBadRequest}
	probInvalidID       = problemKind{"invalid-id", "Invalid id", http.StatusBadRequest}
	probInvalidParam    = problemKind{"invalid-parameter", "Invalid query parameter", http.StatusBadRequest}
	probUnauthorized    = problemKind{"unauthorized", "Authentication required", http.StatusUnauthorized}
	probForbidden       = problemKind{"forbidden", "Forbidden", http.StatusForbidden}
	probNotFound        = problemKind{"not-found", "Not found", http.StatusNotFound}
	probNotPending      = problemKind{"upload-not-pending", "Upload is no longer pending", http.StatusConflict}
	probNotMultipart    = problemKind{"not-multipart", "Upload is not a multipart upload", http.StatusConflict}
	probNotValid        = problemKind{"object-not-valid", "Object is not valid", http.StatusConflict}
	probS3Rejected      = problemKind{"storage-rejected", "Storage rejected the request", http.StatusBadRequest}
	probS3Unavailable   = problemKind{"storage-unavailable", "Storage unavailable", http.StatusBadGateway}
	probDBUnavailable   = problemKind{"database-unavailable", "Database unavailable", http.StatusServiceUnavailable}
	probInternal        = problemKind{"internal", "Internal error", http.StatusInternalServerError}
)

// problemKinds lists every kind (the OpenAPI test checks the document names them all).
var problemKinds = []problemKind{
	probInvalidJSON, probUnknownField, probBodyTooLarge, probUnsupportedBody, probInvalidFilename,
	probInvalidType, probInvalidSize, probInvalidSHA256, probInvalidMethod, probInvalidExpiry,
	probExpiryTooLong, probTooLarge, probTypeNotAllowed, probInvalidParts, probInvalidCursor,
	probInvalidLimit, probInvalidID, probInvalidParam, probUnauthorized, probForbidden, probNotFound,
	probNotPending, probNotMultipart, probNotValid, probS3Rejected, probS3Unavailable,
	probDBUnavailable, probInternal,
}

// problem builds a Problem of the kind with a formatted detail.
func problem(k problemKind, format string, args ...any) *Problem {
	return &Problem{Type: ProblemBase + k.slug, Title: k.title, Status: k.status, Detail: fmt.Sprintf(format, args...)}
}

// writeProblem writes p as application/problem+json.
func writeProblem(w http.ResponseWriter, r *http.Request, p *Problem) {
	cp := *p
	if id := requestID(r.Context()); id != "" {
		cp.Instance = "urn:request:" + id
	}
	if cp.Status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="intake"`)
	}
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(cp.Status)
	_ = json.NewEncoder(w).Encode(&cp)
}

// maxJSONBody bounds every JSON request body.
const maxJSONBody = 64 << 10

// decodeJSON reads one JSON object from the body into v, refusing unknown fields, trailing data,
// bodies over maxJSONBody and other media types.
func decodeJSON(w http.ResponseWriter, r *http.Request, v any) *Problem {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, _ := strings.Cut(ct, ";")
		if mt = strings.ToLower(strings.TrimSpace(mt)); mt != "application/json" && !strings.HasSuffix(mt, "+json") {
			return problem(probUnsupportedBody, "content type %q is not application/json", ct)
		}
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxJSONBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonProblem(err)
	}
	if err := dec.Decode(&struct{}{}); !errors.Is(err, io.EOF) {
		if err == nil {
			return problem(probInvalidJSON, "the body holds more than one JSON value")
		}
		return jsonProblem(err)
	}
	return nil
}

func jsonProblem(err error) *Problem {
	var maxErr *http.MaxBytesError
	var syntaxErr *json.SyntaxError
	var typeErr *json.UnmarshalTypeError
	switch {
	case errors.As(err, &maxErr):
		return problem(probBodyTooLarge, "the body exceeds %d bytes", maxErr.Limit)
	case errors.Is(err, io.EOF):
		return problem(probInvalidJSON, "the body is empty")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return problem(probInvalidJSON, "the body ends in the middle of a JSON value")
	case errors.As(err, &syntaxErr):
		return problem(probInvalidJSON, "syntax error at byte %d: %v", syntaxErr.Offset, syntaxErr)
	case errors.As(err, &typeErr):
		return problem(probInvalidJSON, "field %q must be a %s", typeErr.Field, typeErr.Type)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return problem(probUnknownField, "%s", strings.TrimPrefix(err.Error(), "json: "))
	default:
		return problem(probInvalidJSON, "%v", err)
	}
}

// writeJSON writes v as application/json with the status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
