package problem

import (
	"encoding/json"
	"net/http"
	"strconv"
	"time"
)

// Base prefixes every problem type URI. The URIs are stable identifiers (clients switch on them);
// the part after the base is the problem's slug.
const Base = "https://intake.dev/problems/"

// Kind is one stable problem type.
type Kind struct {
	// Slug names the kind; the type URI is Base + Slug. It never changes once published.
	Slug string
	// Title summarises the kind; the same for every occurrence.
	Title string
	// Status is the HTTP status code.
	Status int
}

// Type returns the kind's type URI (Base + Slug).
func (k Kind) Type() string { return Base + k.Slug }

// With returns a problem of this kind whose detail explains the occurrence.
func (k Kind) With(detail string) Problem {
	return Problem{Type: k.Type(), Title: k.Title, Status: k.Status, Detail: detail}
}

// The kinds returned by several endpoints. Slugs never change once published.
var (
	Unauthorized         = Kind{"unauthorized", "Authentication required", http.StatusUnauthorized}
	Forbidden            = Kind{"forbidden", "Forbidden", http.StatusForbidden}
	InvalidJSON          = Kind{"invalid-json", "Malformed JSON body", http.StatusBadRequest}
	UnknownField         = Kind{"unknown-field", "Unknown field in request body", http.StatusBadRequest}
	RequestTooLarge      = Kind{"request-too-large", "Request body too large", http.StatusRequestEntityTooLarge}
	UnsupportedMediaType = Kind{"unsupported-media-type", "Request body must be application/json", http.StatusUnsupportedMediaType}
	NotFound             = Kind{"not-found", "Not found", http.StatusNotFound}
	UploadNotPending     = Kind{"upload-not-pending", "Upload is no longer pending", http.StatusConflict}
	DatabaseUnavailable  = Kind{"database-unavailable", "Database unavailable", http.StatusServiceUnavailable}
	// AuthUnavailable: the credentials cannot be checked now (the identity provider's key set
	// could not be fetched); the client retries after Retry-After rather than take it for bad
	// credentials.
	AuthUnavailable = Kind{"auth-unavailable", "Authentication unavailable", http.StatusServiceUnavailable}
	// RateLimited: the caller's owner made more requests of the replica than INTAKE_API_OWNER_RATE
	// allows; the client retries after Retry-After.
	RateLimited = Kind{"rate-limited", "Too many requests", http.StatusTooManyRequests}
)

// Problem is an RFC 9457 problem detail.
type Problem struct {
	// Type is a stable URI identifying the kind of problem (Base + slug).
	Type string `json:"type"`
	// Title is a short summary of the kind of problem; the same for every occurrence.
	Title string `json:"title"`
	// Status is the HTTP status code.
	Status int `json:"status"`
	// Detail explains this occurrence.
	Detail string `json:"detail,omitempty"`
	// Instance identifies this occurrence (the API puts urn:request:<request id> here).
	Instance string `json:"instance,omitempty"`
	// Reason is the policy reason code for policy violations (too_large, type_not_allowed).
	Reason string `json:"reason,omitempty"`
	// RetryAfter, when positive, is how long the client should wait before trying again: Write
	// sends it as Retry-After (SetRetryAfter). It is not part of the body.
	RetryAfter time.Duration `json:"-"`
}

// Error returns the title and the detail.
func (p *Problem) Error() string { return p.Title + ": " + p.Detail }

// Challenge is the WWW-Authenticate value of every 401 intake answers (RFC 9110 section 11.6.1
// requires one), in whatever format its body is.
const Challenge = `Bearer realm="intake"`

// SetChallenge sets WWW-Authenticate to Challenge on the headers of an answer of status, when it is
// a 401.
func SetChallenge(h http.Header, status int) {
	if status == http.StatusUnauthorized {
		h.Set("WWW-Authenticate", Challenge)
	}
}

// RetryAfterSeconds is d in the whole seconds of a Retry-After header: rounded up, at least 1.
func RetryAfterSeconds(d time.Duration) int64 {
	return max(int64((d+time.Second-1)/time.Second), 1)
}

// SetRetryAfter sets Retry-After to p.RetryAfter (RetryAfterSeconds) when it is positive, and
// leaves h alone otherwise.
func SetRetryAfter(h http.Header, p Problem) {
	if p.RetryAfter > 0 {
		h.Set("Retry-After", strconv.FormatInt(RetryAfterSeconds(p.RetryAfter), 10))
	}
}

// Write sends p as application/problem+json with p.Status, never to be cached. A 401 carries the
// challenge `WWW-Authenticate: Bearer realm="intake"` (SetChallenge), a problem with a RetryAfter
// its Retry-After (SetRetryAfter). Headers set on w before (Retry-After, ...) are kept, unless p
// sets the same.
func Write(w http.ResponseWriter, p Problem) {
	h := w.Header()
	SetChallenge(h, p.Status)
	SetRetryAfter(h, p)
	h.Set("Content-Type", "application/problem+json")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(p.Status)
	_ = json.NewEncoder(w).Encode(&p)
}
