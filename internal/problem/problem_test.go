package problem_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/intakehq/intake/internal/problem"
)

func TestKind(t *testing.T) {
	t.Parallel()
	k := problem.Kind{Slug: "queue-unavailable", Title: "Queue unavailable", Status: http.StatusServiceUnavailable}
	require.Equal(t, "https://intake.dev/problems/queue-unavailable", k.Type())
	p := k.With("retry later")
	require.Equal(t, problem.Problem{
		Type: "https://intake.dev/problems/queue-unavailable", Title: "Queue unavailable",
		Status: http.StatusServiceUnavailable, Detail: "retry later",
	}, p)
	require.Equal(t, "Queue unavailable: retry later", p.Error())
}

// TestSharedKinds pins the published slugs, titles and statuses: clients switch on them.
func TestSharedKinds(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		kind   problem.Kind
		slug   string
		title  string
		status int
	}{
		{problem.Unauthorized, "unauthorized", "Authentication required", 401},
		{problem.Forbidden, "forbidden", "Forbidden", 403},
		{problem.InvalidJSON, "invalid-json", "Malformed JSON body", 400},
		{problem.UnknownField, "unknown-field", "Unknown field in request body", 400},
		{problem.RequestTooLarge, "request-too-large", "Request body too large", 413},
		{problem.UnsupportedMediaType, "unsupported-media-type", "Request body must be application/json", 415},
		{problem.AuthUnavailable, "auth-unavailable", "Authentication unavailable", 503},
	} {
		require.Equal(t, problem.Kind{Slug: tt.slug, Title: tt.title, Status: tt.status}, tt.kind)
	}
}

func TestWrite(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name      string
		problem   problem.Problem
		preset    map[string]string
		wantBody  map[string]any
		wantChall string
		wantRetry string
	}{
		{
			name:     "detail only: empty fields are left out",
			problem:  problem.InvalidJSON.With("the body is empty"),
			wantBody: map[string]any{"type": problem.Base + "invalid-json", "title": "Malformed JSON body", "status": 400.0, "detail": "the body is empty"},
		},
		{
			name:     "no detail",
			problem:  problem.Forbidden.With(""),
			wantBody: map[string]any{"type": problem.Base + "forbidden", "title": "Forbidden", "status": 403.0},
		},
		{
			name: "every field",
			problem: problem.Problem{
				Type: problem.Base + "too-large", Title: "Size above the policy's limit", Status: 422,
				Detail: "5 bytes over", Instance: "urn:request:abc", Reason: "too_large",
			},
			wantBody: map[string]any{
				"type": problem.Base + "too-large", "title": "Size above the policy's limit", "status": 422.0,
				"detail": "5 bytes over", "instance": "urn:request:abc", "reason": "too_large",
			},
		},
		{
			name:      "401 carries a Bearer challenge",
			problem:   problem.Unauthorized.With("a valid bearer token is required"),
			wantBody:  map[string]any{"type": problem.Base + "unauthorized", "title": "Authentication required", "status": 401.0, "detail": "a valid bearer token is required"},
			wantChall: `Bearer realm="intake"`,
		},
		{
			name:     "headers set before are kept",
			problem:  problem.Kind{Slug: "queue-unavailable", Title: "Event queue unavailable", Status: 503}.With("retry later"),
			preset:   map[string]string{"Retry-After": "5"},
			wantBody: map[string]any{"type": problem.Base + "queue-unavailable", "title": "Event queue unavailable", "status": 503.0, "detail": "retry later"},
		},
		{
			name:      "RetryAfter is sent as Retry-After, rounded up, not in the body",
			problem:   problem.Problem{Type: problem.Base + "auth-unavailable", Title: "Authentication unavailable", Status: 503, RetryAfter: 9200 * time.Millisecond},
			wantBody:  map[string]any{"type": problem.Base + "auth-unavailable", "title": "Authentication unavailable", "status": 503.0},
			wantRetry: "10",
		},
		{
			name:      "a RetryAfter under a second is sent as 1",
			problem:   problem.Problem{Type: problem.Base + "auth-unavailable", Title: "Authentication unavailable", Status: 503, RetryAfter: time.Millisecond},
			wantBody:  map[string]any{"type": problem.Base + "auth-unavailable", "title": "Authentication unavailable", "status": 503.0},
			wantRetry: "1",
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rec := httptest.NewRecorder()
			for k, v := range tt.preset {
				rec.Header().Set(k, v)
			}
			problem.Write(rec, tt.problem)
			require.Equal(t, tt.problem.Status, rec.Code)
			require.Equal(t, "application/problem+json", rec.Header().Get("Content-Type"))
			require.Equal(t, "no-store", rec.Header().Get("Cache-Control"))
			require.Equal(t, tt.wantChall, rec.Header().Get("WWW-Authenticate"))
			if tt.preset["Retry-After"] == "" {
				require.Equal(t, tt.wantRetry, rec.Header().Get("Retry-After"))
			}
			for k, v := range tt.preset {
				require.Equal(t, v, rec.Header().Get(k))
			}
			var got map[string]any
			require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &got))
			require.Equal(t, tt.wantBody, got)
		})
	}
}
