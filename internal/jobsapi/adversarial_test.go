package jobsapi_test

import (
	"context"
	"maps"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/golang-jwt/jwt/v5"
	"github.com/hibiken/asynq"
	"github.com/stretchr/testify/require"

	"github.com/intakehq/intake/internal/config"
	"github.com/intakehq/intake/internal/jobsapi"
	"github.com/intakehq/intake/internal/ratelimit"
	"github.com/intakehq/intake/internal/testkit"
	"github.com/intakehq/intake/worker/tasks"
)

// TestJobsAPIAttacks is the adversarial table of POST /v1/jobs. Each case names the attacker, the
// request (credentials and body), the expected status, problem type and detail, and the side effect
// that must NOT happen: nothing is enqueued (every queue of the test's Redis database is empty after
// all the cases) and nobody's upload changes in PostgreSQL.
func TestJobsAPIAttacks(t *testing.T) {
	t.Parallel()
	b := setup(t)
	// Bob's uploads: a pending multipart upload, a completed one, a single PUT.
	bobMP := b.addIntent(t, "bob", "s3-upload-bob", "pending")
	bobPut := b.addIntent(t, "bob", "", "pending")
	// Alice's own uploads she may not act on in these ways.
	aliceDone := b.addIntent(t, "alice", "s3-upload-alice-done", "completed")
	alicePut := b.addIntent(t, "alice", "", "pending")
	aliceMP := b.addIntent(t, "alice", "s3-upload-alice", "pending")

	alice := map[string]string{"Authorization": "Bearer " + aliceKey}
	aliceJWT := map[string]string{"Authorization": "Bearer " + token(t, jwt.MapClaims{"sub": "alice"})}
	abort := func(key, uploadID string) string {
		return `{"type":"multipart:abort","payload":{"key":"` + key + `","upload_id":"` + uploadID + `"}}`
	}
	inspect := func(key string) string { return `{"type":"object:inspect","payload":{"key":"` + key + `"}}` }
	tests := []struct {
		attacker string // who, doing what
		body     string
		header   map[string]string // replaces the operator's credentials; "" removes a header
		status   int
		slug     string
		detail   string
	}{
		// Credentials.
		{"anonymous caller", `{}`, map[string]string{"Authorization": ""}, 401, "unauthorized", ""},
		{"key guesser", `{}`, map[string]string{"Authorization": "Bearer nope-nope-nope-nope"}, 401, "unauthorized", ""},
		{"basic auth client", `{}`, map[string]string{"Authorization": "Basic " + opsKey}, 401, "unauthorized", ""},
		{"cross-site page riding an operator's cookie", `{"type":"multipart:sweep","payload":{"older_than":"1m"}}`,
			map[string]string{"Authorization": "", "Cookie": token(t, jwt.MapClaims{"sub": "oncall", "scope": adminScope})}, 401, "unauthorized", ""},
		{"user of another application of the IdP", `{"type":"multipart:sweep","payload":{"older_than":"1m"}}`,
			map[string]string{"Authorization": "Bearer " + token(t, jwt.MapClaims{"sub": "x", "scope": adminScope, "aud": "billing"})}, 401, "unauthorized", ""},
		// Issue 12.1: a tenant sweeps or acts on uploads that are not its own.
		{"tenant sweeping every tenant's uploads", `{"type":"multipart:sweep","payload":{"older_than":"1m"}}`, alice, 403, "forbidden", "operator credentials"},
		{"tenant sweeping its own prefix", `{"type":"multipart:sweep","payload":{"prefix":"uploads/alice/","older_than":"48h"}}`, alice, 403, "forbidden", "operator credentials"},
		{"tenant JWT sweeping", `{"type":"multipart:sweep","payload":{"older_than":"1m"}}`, aliceJWT, 403, "forbidden", "operator credentials"},
		{"tenant JWT with a scope that is not the admin scope", `{"type":"multipart:sweep","payload":{"older_than":"1m"}}`,
			map[string]string{"Authorization": "Bearer " + token(t, jwt.MapClaims{"sub": "alice", "scope": "intake:admins intake"})}, 403, "forbidden", "operator credentials"},
		{"tenant aborting another tenant's upload", abort(bobMP.key, bobMP.uploadID), alice, 404, "not-found", "own uploads"},
		{"tenant JWT aborting another tenant's upload", abort(bobMP.key, bobMP.uploadID), aliceJWT, 404, "not-found", "own uploads"},
		{"tenant aborting another's upload id under its own key", abort(alicePut.key, bobMP.uploadID), alice, 404, "not-found", "own uploads"},
		{"tenant aborting an upload id on a key intake never gave out", abort("uploads/alice/x/y", bobMP.uploadID), alice, 404, "not-found", ""},
		{"tenant aborting a key outside intake's prefix", abort("other-app/data.bin", "u"), alice, 404, "not-found", ""},
		{"tenant aborting its single PUT as multipart", abort(alicePut.key, "made-up"), alice, 404, "not-found", ""},
		{"tenant aborting its completed upload", abort(aliceDone.key, aliceDone.uploadID), alice, 409, "upload-not-pending", "completed"},
		// A far deadline would sit in Redis until then (one task per create-abort-delete cycle) and
		// hold the task ID an operator's abort of the same upload needs.
		{"tenant scheduling its own upload's abort for the year 9999",
			`{"type":"multipart:abort","payload":{"key":"` + aliceMP.key + `","upload_id":"` + aliceMP.uploadID + `","deadline":"9999-01-01T00:00:00Z"}}`,
			alice, 422, "invalid-task-payload", "deadline"},
		{"tenant scheduling its own upload's abort for tomorrow",
			`{"type":"multipart:abort","payload":{"key":"` + aliceMP.key + `","upload_id":"` + aliceMP.uploadID + `","deadline":"2030-01-02T00:00:00Z"}}`,
			aliceJWT, 422, "invalid-task-payload", "deadline"},
		{"tenant inspecting another tenant's object", inspect(bobPut.key), alice, 404, "not-found", "own uploads"},
		{"tenant inspecting a key intake never gave out", inspect("uploads/bob/secret.pdf"), alice, 404, "not-found", ""},
		{"tenant naming a foreign bucket", `{"type":"object:inspect","payload":{"bucket":"secrets","key":"` + alicePut.key + `"}}`, alice, 403, "forbidden", "secrets"},
		// An inspection's event is the consumer's hand-off: its sequencer decides which later events
		// of the object count, so a forged one could make the real ones stale.
		{"tenant forging a handed-off event on its own object", `{"type":"object:inspect","payload":{"key":"` + alicePut.key + `","event":{"sequencer":"FFFFFFFFFFFFFFFF","time":"2030-01-01T00:00:00Z"}}}`,
			alice, 422, "invalid-task-payload", "event"},
		{"operator forging a handed-off event", `{"type":"object:inspect","payload":{"key":"k","event":{"sequencer":"FF"}}}`, nil, 422, "invalid-task-payload", "event"},
		// Bad input (from an operator: every check holds whoever calls).
		{"operator posting a form", `type=x`, map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, 415, "unsupported-media-type", ""},
		{"operator posting over 64 KiB", `{"type":"` + strings.Repeat("x", 70<<10) + `"}`, nil, 413, "request-too-large", ""},
		{"operator posting broken JSON", `{"type":`, nil, 400, "invalid-json", ""},
		{"operator adding an unknown top field", `{"type":"object:inspect","payload":{},"priority":1}`, nil, 400, "unknown-field", "priority"},
		{"operator naming an unknown type", `{"type":"email:send","payload":{}}`, nil, 422, "unknown-task-type", "email:send"},
		{"operator omitting the payload", `{"type":"object:inspect"}`, nil, 422, "invalid-task-payload", "payload: required"},
		{"operator omitting the key", `{"type":"object:inspect","payload":{"bucket":"uploads"}}`, nil, 422, "invalid-task-payload", "key: required"},
		{"operator adding an unknown payload field", `{"type":"object:inspect","payload":{"key":"k","size":3}}`, nil, 422, "invalid-task-payload", "size"},
		{"operator naming a foreign bucket", `{"type":"object:inspect","payload":{"bucket":"secrets","key":"k"}}`, nil, 403, "forbidden", "secrets"},
		{"operator sweeping uploads still being written", `{"type":"multipart:sweep","payload":{"older_than":"30s"}}`, nil, 422, "invalid-task-payload", "below the minimum"},
		{"operator with a made-up age", `{"type":"multipart:sweep","payload":{"older_than":"soon"}}`, nil, 422, "invalid-task-payload", "Go duration"},
		// PostgreSQL refuses a NUL in text: the sweep would fail on every retry.
		{"operator sweeping a prefix with a NUL", `{"type":"multipart:sweep","payload":{"prefix":"uploads/\u0000","older_than":"48h"}}`, nil, 422, "invalid-task-payload", "prefix: contains control characters"},
		{"operator sweeping a prefix with a newline", `{"type":"multipart:sweep","payload":{"prefix":"uploads/\n","older_than":"48h"}}`, nil, 422, "invalid-task-payload", "prefix: contains control characters"},
		{"operator aborting without an upload id", `{"type":"multipart:abort","payload":{"key":"k"}}`, nil, 422, "invalid-task-payload", "upload_id: required"},
	}
	for _, tt := range tests {
		t.Run(tt.attacker, func(t *testing.T) {
			t.Parallel()
			// An attack's request may break the OpenAPI document on purpose: only its response is checked.
			header := map[string]string{testkit.OffContract: "attack"}
			maps.Copy(header, tt.header)
			resp, body := b.post(t, tt.body, header)
			require.Equal(t, tt.status, resp.StatusCode, body)
			require.Equal(t, "application/problem+json", resp.Header.Get("Content-Type"))
			require.Equal(t, jobsapi.ProblemBase+tt.slug, body["type"])
			require.EqualValues(t, tt.status, body["status"])
			require.Contains(t, body["detail"], tt.detail)
			if tt.status == 401 {
				require.NotEmpty(t, resp.Header.Get("WWW-Authenticate"))
			}
		})
	}
	t.Cleanup(func() {
		queues, err := b.insp.Queues()
		require.NoError(t, err)
		require.Empty(t, queues, "no refused request enqueued anything")
		var changed int
		require.NoError(t, b.st.Pool.QueryRow(context.Background(),
			"SELECT count(*) FROM uploads WHERE status <> 'pending' AND id <> $1", aliceDone.id).Scan(&changed))
		require.Zero(t, changed, "no upload changed status")
	})
}

// TestJobsAPIInspectionFlood: a tenant repeating the inspection of its own object (each one may
// hash gigabytes on the workers every tenant shares) queues one inspection, not one per request;
// an operator's request for the same object is refused the same way, and another object is not.
func TestJobsAPIInspectionFlood(t *testing.T) {
	t.Parallel()
	b := setup(t)
	own := b.addIntent(t, "alice", "", "pending")
	other := b.addIntent(t, "alice", "", "pending")
	alice := map[string]string{"Authorization": "Bearer " + aliceKey}
	inspect := func(key string) string { return `{"type":"object:inspect","payload":{"key":"` + key + `"}}` }

	resp, body := b.post(t, inspect(own.key), alice)
	require.Equal(t, http.StatusAccepted, resp.StatusCode, body)
	for range 20 {
		resp, body = b.post(t, inspect(own.key), alice)
		require.Equal(t, http.StatusConflict, resp.StatusCode, body)
		require.Equal(t, "application/problem+json", resp.Header.Get("Content-Type"))
		require.Equal(t, jobsapi.ProblemBase+"inspection-queued", body["type"])
	}
	resp, body = b.post(t, inspect(own.key), nil) // the operator
	require.Equal(t, http.StatusConflict, resp.StatusCode, body)
	resp, body = b.post(t, inspect(other.key), alice)
	require.Equal(t, http.StatusAccepted, resp.StatusCode, body)

	info, err := b.insp.GetQueueInfo(tasks.QueueDefault)
	require.NoError(t, err)
	require.Equal(t, 2, info.Pending, "one inspection per object, whatever the number of requests")
}

// TestJobsAPIDevAuthCrossSite: under development auth (no credentials asked), a page on another
// site that the developer's browser opens cannot queue a job on the loopback API; a request from
// curl or intake's own origin can.
func TestJobsAPIDevAuthCrossSite(t *testing.T) {
	t.Parallel()
	b := setup(t, func() config.API { return config.API{InsecureDevAuth: true} })
	put, mp := b.addIntent(t, "dev", "", "pending"), b.addIntent(t, "dev", "s3-upload-dev", "pending")
	inspect := `{"type":"object:inspect","payload":{"key":"` + put.key + `"}}`
	abort := `{"type":"multipart:abort","payload":{"key":"` + mp.key + `","upload_id":"` + mp.uploadID + `"}}`
	for _, tt := range []struct {
		attacker string
		header   map[string]string
	}{
		{"a page on another site (fetch, no-cors, a Blob without type)", map[string]string{"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example", "Content-Type": ""}},
		{"a page on a sibling site", map[string]string{"Sec-Fetch-Site": "same-site", "Origin": "http://evil.localhost:8080"}},
		{"a page on another site, through an older browser (Origin only)", map[string]string{"Origin": "https://evil.example"}},
		{"a page whose domain was rebound to 127.0.0.1", map[string]string{"Host": "rebind.evil.example", "Sec-Fetch-Site": "same-origin"}},
		// Behind a proxy that terminates https, a network attacker's page served over plain http
		// on intake's own host name is another origin (an older browser sends Origin only).
		{"a plain-http page on intake's host, behind an https proxy", map[string]string{"Origin": "http://" + strings.TrimPrefix(b.srv.URL, "http://"), "X-Forwarded-Proto": "https"}},
	} {
		t.Run(tt.attacker, func(t *testing.T) {
			header := map[string]string{"Authorization": "", testkit.OffContract: "attack"}
			maps.Copy(header, tt.header)
			for _, body := range []string{inspect, abort} {
				resp, out := b.post(t, body, header)
				require.Equal(t, http.StatusForbidden, resp.StatusCode, out)
				require.Equal(t, jobsapi.ProblemBase+"forbidden", out["type"])
			}
		})
	}
	queues, err := b.insp.Queues()
	require.NoError(t, err)
	require.Empty(t, queues, "no cross-site request enqueued anything")

	// curl (no browser headers) and intake's own origin still work.
	resp, out := b.post(t, inspect, map[string]string{"Authorization": "", testkit.OffContract: "dev auth"})
	require.Equal(t, http.StatusAccepted, resp.StatusCode, out)
	resp, out = b.post(t, abort, map[string]string{"Authorization": "", testkit.OffContract: "dev auth", "Sec-Fetch-Site": "same-origin", "Origin": b.srv.URL})
	require.Equal(t, http.StatusAccepted, resp.StatusCode, out)
}

// TestJobsAPISweepScope: with INTAKE_JOBS_SWEEP_PREFIX set (the bucket is shared with other
// applications, whose in-use multipart uploads the configured sweep leaves alone), an operator's
// sweep through POST /v1/jobs may narrow that scope, never widen it: a prefix outside it is
// refused with nothing enqueued, and no prefix means the configured one, not the whole bucket.
func TestJobsAPISweepScope(t *testing.T) {
	t.Parallel()
	const scope = "intake/"
	b := setupWith(t, func(c *jobsapi.Config) { c.SweepPrefix = scope })
	sweep := func(payload string) string { return `{"type":"multipart:sweep","payload":` + payload + `}` }
	for _, tt := range []struct {
		attacker string
		body     string
	}{
		{"operator sweeping a co-tenant application's prefix", sweep(`{"prefix":"billing/","older_than":"1m"}`)},
		{"operator sweeping a prefix wider than the scope", sweep(`{"prefix":"intake","older_than":"1m"}`)},
		{"operator sweeping the whole bucket by a one-letter prefix", sweep(`{"prefix":"i","older_than":"48h"}`)},
		{"operator sweeping the other bucket outside the scope", sweep(`{"bucket":"other","prefix":"x/","older_than":"48h"}`)},
	} {
		t.Run(tt.attacker, func(t *testing.T) {
			resp, body := b.post(t, tt.body, map[string]string{testkit.OffContract: "attack"})
			require.Equal(t, http.StatusUnprocessableEntity, resp.StatusCode, body)
			require.Equal(t, "application/problem+json", resp.Header.Get("Content-Type"))
			require.Equal(t, jobsapi.ProblemBase+"invalid-task-payload", body["type"])
			require.Contains(t, body["detail"], "INTAKE_JOBS_SWEEP_PREFIX")
		})
	}
	queues, err := b.insp.Queues()
	require.NoError(t, err)
	require.Empty(t, queues, "no sweep outside the scope was enqueued")

	for _, tt := range []struct {
		name, payload, prefix string
	}{
		{"no prefix: the configured scope", `{"older_than":"1m"}`, scope},
		{"an empty prefix: the configured scope", `{"prefix":"","older_than":"1m"}`, scope},
		{"the scope itself", `{"prefix":"intake/","older_than":"1m"}`, scope},
		{"a narrower prefix", `{"prefix":"intake/alice/","older_than":"1m"}`, "intake/alice/"},
	} {
		resp, body := b.post(t, sweep(tt.payload), nil)
		require.Equal(t, http.StatusAccepted, resp.StatusCode, "%s: %v", tt.name, body)
		info, err := b.insp.GetTaskInfo(tasks.QueueLow, body["id"].(string))
		require.NoError(t, err, tt.name)
		p, err := tasks.ParseSweep(info.Payload)
		require.NoError(t, err, tt.name)
		require.Equal(t, tt.prefix, p.Prefix, tt.name)
	}
}

// TestJobsAPIInspectionAfterFailure: a repeat of an inspection still queued is refused (409), and
// one that failed for good (archived: a 403 since fixed, its retries used up) does not keep the
// next request out. With asynq.Unique (before), its lock answered 409 for about 8.5 hours after
// the first was queued, while nothing would run.
func TestJobsAPIInspectionAfterFailure(t *testing.T) {
	t.Parallel()
	b := setup(t)
	inspect := `{"type":"object:inspect","payload":{"key":"uploads/a/b.png"}}`
	resp, body := b.post(t, inspect, nil)
	require.Equal(t, http.StatusAccepted, resp.StatusCode, body)
	id, _ := body["id"].(string)
	require.Equal(t, tasks.InspectTaskID("uploads", "uploads/a/b.png"), id)

	resp, body = b.post(t, inspect, nil)
	require.Equal(t, http.StatusConflict, resp.StatusCode, body)
	require.Equal(t, jobsapi.ProblemBase+"inspection-queued", body["type"])
	require.Contains(t, body["detail"], "one inspection per object at a time", "the detail states the rule")

	require.NoError(t, b.insp.ArchiveTask(tasks.QueueDefault, id))
	resp, body = b.post(t, inspect, nil)
	require.Equal(t, http.StatusAccepted, resp.StatusCode, body)
	require.Equal(t, id, body["id"])
	got, err := b.insp.GetTaskInfo(tasks.QueueDefault, id)
	require.NoError(t, err)
	require.Equal(t, asynq.TaskStatePending, got.State, "queued again")
}

// TestJobsAPIOwnerRateLimit: a tenant past INTAKE_API_OWNER_RATE (its bucket shared with the
// API's routes) is answered 429 rate-limited with Retry-After and nothing is enqueued; another
// tenant and the operators are served meanwhile.
func TestJobsAPIOwnerRateLimit(t *testing.T) {
	t.Parallel()
	limiter := ratelimit.New(0.01, 2) // a token per 100 s: within the test, the burst and no more
	b := setupWith(t, func(c *jobsapi.Config) { c.Limiter = limiter })
	alice := map[string]string{"Authorization": "Bearer " + aliceKey}
	inspect := func(key string) string { return `{"type":"object:inspect","payload":{"key":"` + key + `"}}` }
	objects := make([]intent, 4)
	for i := range objects {
		objects[i] = b.addIntent(t, "alice", "", "pending")
	}
	pending := func() int {
		info, err := b.insp.GetQueueInfo(tasks.QueueDefault)
		if err != nil { // no queue yet: nothing enqueued
			return 0
		}
		return info.Pending
	}

	// Alice's API requests took a token already (the API and the jobs API share the bucket).
	require.True(t, limiter.Allow("alice").OK)
	resp, body := b.post(t, inspect(objects[0].key), alice)
	require.Equal(t, http.StatusAccepted, resp.StatusCode, body)
	require.Equal(t, 1, pending())

	resp, body = b.post(t, inspect(objects[1].key), alice)
	require.Equal(t, http.StatusTooManyRequests, resp.StatusCode, body)
	require.Equal(t, "application/problem+json", resp.Header.Get("Content-Type"))
	require.Equal(t, jobsapi.ProblemBase+"rate-limited", body["type"])
	wait, err := strconv.Atoi(resp.Header.Get("Retry-After"))
	require.NoError(t, err)
	require.InDelta(t, 100, wait, 1)
	require.Equal(t, 1, pending(), "a refused tenant enqueues nothing")

	// Bob and the operators are not charged for alice's requests.
	bobs := b.addIntent(t, "bob", "", "pending")
	resp, body = b.post(t, inspect(bobs.key), map[string]string{"Authorization": "Bearer " + bobKey})
	require.Equal(t, http.StatusAccepted, resp.StatusCode, body)
	for _, o := range objects[2:] {
		resp, body = b.post(t, inspect(o.key), nil) // the operator
		require.Equal(t, http.StatusAccepted, resp.StatusCode, body)
	}
	require.Equal(t, 4, pending())
}
