package jobsapi

import (
	"net/http"

	"github.com/intakehq/intake/internal/problem"
)

// ProblemBase prefixes every problem type URI (problem.Base, the same base as the main API's).
const ProblemBase = problem.Base

// The problems only POST /v1/jobs returns; it shares unauthorized, forbidden, invalid-json,
// unknown-field, request-too-large and unsupported-media-type with the main API (package problem).
var (
	probUnknownType      = problem.Kind{Slug: "unknown-task-type", Title: "Unknown task type", Status: http.StatusUnprocessableEntity}
	probInvalidPayload   = problem.Kind{Slug: "invalid-task-payload", Title: "Invalid task payload", Status: http.StatusUnprocessableEntity}
	probQueueUnavailable = problem.Kind{Slug: "queue-unavailable", Title: "Task queue unavailable", Status: http.StatusServiceUnavailable}
	probInspectionQueued = problem.Kind{Slug: "inspection-queued", Title: "Inspection already queued", Status: http.StatusConflict}
)

// ProblemKinds lists every problem kind POST /v1/jobs answers (the OpenAPI test checks that
// internal/api/openapi.json names them all).
var ProblemKinds = []problem.Kind{
	problem.Unauthorized, problem.Forbidden, problem.InvalidJSON, problem.UnknownField, problem.RequestTooLarge,
	problem.UnsupportedMediaType, problem.NotFound, problem.UploadNotPending, problem.DatabaseUnavailable,
	probUnknownType, probInvalidPayload, probQueueUnavailable, probInspectionQueued, problem.AuthUnavailable,
}

// problemErr is a problem about to be written.
type problemErr struct {
	kind   problem.Kind
	detail string
}

// payload re-labels a decoding problem of the payload as an invalid payload.
func (p *problemErr) payload() *problemErr {
	return &problemErr{probInvalidPayload, "payload: " + p.detail}
}
