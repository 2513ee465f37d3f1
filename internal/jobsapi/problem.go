package jobsapi

import (
	"encoding/json"
	"net/http"
)

// ProblemBase prefixes every problem type URI (the same base as the main API's).
const ProblemBase = "https://intake.dev/problems/"

// Problem is an RFC 9457 problem detail, returned as application/problem+json.
type Problem struct {
	// Type is a stable URI naming the kind of problem.
	Type string `json:"type"`
	// Title summarises the kind of problem.
	Title string `json:"title"`
	// Status is the HTTP status code.
	Status int `json:"status"`
	// Detail explains this occurrence.
	Detail string `json:"detail,omitempty"`
}

type problemKind struct {
	slug   string
	title  string
	status int
}

// The problems POST /v1/jobs returns. The first six share slugs with the main API.
var (
	probUnauthorized     = problemKind{"unauthorized", "Authentication required", http.StatusUnauthorized}
	probForbidden        = problemKind{"forbidden", "Forbidden", http.StatusForbidden}
	probInvalidJSON      = problemKind{"invalid-json", "Malformed JSON body", http.StatusBadRequest}
	probUnknownField     = problemKind{"unknown-field", "Unknown field in request body", http.StatusBadRequest}
	probBodyTooLarge     = problemKind{"request-too-large", "Request body too large", http.StatusRequestEntityTooLarge}
	probUnsupportedBody  = problemKind{"unsupported-media-type", "Request body must be application/json", http.StatusUnsupportedMediaType}
	probUnknownType      = problemKind{"unknown-task-type", "Unknown task type", http.StatusUnprocessableEntity}
	probInvalidPayload   = problemKind{"invalid-task-payload", "Invalid task payload", http.StatusUnprocessableEntity}
	probQueueUnavailable = problemKind{"queue-unavailable", "Task queue unavailable", http.StatusServiceUnavailable}
)

// problemErr is a problem about to be written.
type problemErr struct {
	kind   problemKind
	detail string
}

// payload re-labels a decoding problem of the payload as an invalid payload.
func (p *problemErr) payload() *problemErr {
	return &problemErr{probInvalidPayload, "payload: " + p.detail}
}

func writeProblem(w http.ResponseWriter, k problemKind, detail string) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(k.status)
	_ = json.NewEncoder(w).Encode(Problem{Type: ProblemBase + k.slug, Title: k.title, Status: k.status, Detail: detail})
}
