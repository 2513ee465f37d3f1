package jobsapi_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/stretchr/testify/require"

	"github.com/intakehq/intake/internal/config"
	"github.com/intakehq/intake/internal/jobsapi"
	"github.com/intakehq/intake/internal/testkit"
	"github.com/intakehq/intake/worker/tasks"
)

const apiKey = "k-0123456789abcdef"

type testBundle struct {
	srv  *httptest.Server
	insp *asynq.Inspector
	now  time.Time
}

func setup(t *testing.T) *testBundle {
	t.Helper()
	if testing.Short() {
		t.Skip("needs Redis")
	}
	redisOpt := asynq.RedisClientOpt{Addr: testkit.RedisAddr(), DB: testkit.RedisDB(t)}
	client := asynq.NewClient(redisOpt)
	t.Cleanup(func() { _ = client.Close() })
	insp := asynq.NewInspector(redisOpt)
	t.Cleanup(func() { _ = insp.Close() })
	keys, err := config.ParseAPIKeys(apiKey + "=ops")
	require.NoError(t, err)
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	h, err := jobsapi.New(jobsapi.Config{Client: client, Keys: keys, Buckets: []string{"uploads", "other"},
		Now: func() time.Time { return now }})
	require.NoError(t, err)
	mux := http.NewServeMux()
	h.Register(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return &testBundle{srv: srv, insp: insp, now: now}
}

func (b *testBundle) post(t *testing.T, body string, header map[string]string) (*http.Response, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, b.srv.URL+"/v1/jobs", strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+apiKey)
	for k, v := range header {
		if v == "" {
			req.Header.Del(k)
		} else {
			req.Header.Set(k, v)
		}
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	var out map[string]any
	require.NoError(t, json.Unmarshal(raw, &out), string(raw))
	return resp, out
}

func TestJobsAPIErrors(t *testing.T) {
	t.Parallel()
	b := setup(t)
	tests := []struct {
		name   string
		body   string
		header map[string]string
		status int
		slug   string
		detail string
	}{
		{"no key", `{}`, map[string]string{"Authorization": ""}, 401, "unauthorized", ""},
		{"wrong key", `{}`, map[string]string{"Authorization": "Bearer nope-nope-nope-nope"}, 401, "unauthorized", ""},
		{"basic auth", `{}`, map[string]string{"Authorization": "Basic " + apiKey}, 401, "unauthorized", ""},
		{"form body", `type=x`, map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, 415, "unsupported-media-type", ""},
		{"too large", `{"type":"` + strings.Repeat("x", 70<<10) + `"}`, nil, 413, "request-too-large", ""},
		{"not json", `{"type":`, nil, 400, "invalid-json", ""},
		{"unknown top field", `{"type":"object:inspect","payload":{},"priority":1}`, nil, 400, "unknown-field", "priority"},
		{"unknown type", `{"type":"email:send","payload":{}}`, nil, 422, "unknown-task-type", "email:send"},
		{"no payload", `{"type":"object:inspect"}`, nil, 422, "invalid-task-payload", "payload: required"},
		{"missing key", `{"type":"object:inspect","payload":{"bucket":"uploads"}}`, nil, 422, "invalid-task-payload", "key: required"},
		{"unknown payload field", `{"type":"object:inspect","payload":{"key":"k","size":3}}`, nil, 422, "invalid-task-payload", "size"},
		{"foreign bucket", `{"type":"object:inspect","payload":{"bucket":"secrets","key":"k"}}`, nil, 403, "forbidden", "secrets"},
		{"sweep too young", `{"type":"multipart:sweep","payload":{"older_than":"30s"}}`, nil, 422, "invalid-task-payload", "below the minimum"},
		{"sweep bad age", `{"type":"multipart:sweep","payload":{"older_than":"soon"}}`, nil, 422, "invalid-task-payload", "Go duration"},
		{"abort without id", `{"type":"multipart:abort","payload":{"key":"k"}}`, nil, 422, "invalid-task-payload", "upload_id: required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			resp, body := b.post(t, tt.body, tt.header)
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
	queues, err := b.insp.Queues()
	require.NoError(t, err)
	require.Empty(t, queues, "no rejected request enqueued anything")
}

func TestJobsAPIEnqueues(t *testing.T) {
	t.Parallel()
	b := setup(t)

	resp, body := b.post(t, `{"type":"object:inspect","payload":{"key":"uploads/a/b.png"}}`, map[string]string{"Authorization": "", "X-API-Key": apiKey})
	require.Equal(t, http.StatusAccepted, resp.StatusCode, body)
	require.Equal(t, tasks.QueueDefault, body["queue"])
	require.Equal(t, "pending", body["state"])
	info, err := b.insp.GetTaskInfo(tasks.QueueDefault, body["id"].(string))
	require.NoError(t, err)
	p, err := tasks.ParseInspectObject(info.Payload)
	require.NoError(t, err)
	require.Equal(t, tasks.InspectObject{Bucket: "uploads", Key: "uploads/a/b.png"}, p, "bucket defaults to the first one")

	resp, body = b.post(t, `{"type":"multipart:sweep","payload":{"bucket":"other","prefix":"in/","older_than":7200}}`, nil)
	require.Equal(t, http.StatusAccepted, resp.StatusCode, body)
	info, err = b.insp.GetTaskInfo(tasks.QueueLow, body["id"].(string))
	require.NoError(t, err)
	sw, err := tasks.ParseSweep(info.Payload)
	require.NoError(t, err)
	require.Equal(t, tasks.Sweep{Bucket: "other", Prefix: "in/", OlderThan: tasks.Duration(2 * time.Hour)}, sw)

	const abort = `{"type":"multipart:abort","payload":{"key":"k","upload_id":"u-42"}}`
	resp, body = b.post(t, abort, nil)
	require.Equal(t, http.StatusAccepted, resp.StatusCode, body)
	require.Equal(t, "api:u-42", body["id"])
	require.Equal(t, tasks.QueueCritical, body["queue"])
	require.Nil(t, body["duplicate"])
	info, err = b.insp.GetTaskInfo(tasks.QueueCritical, "api:u-42")
	require.NoError(t, err)
	ab, err := tasks.ParseAbortMultipart(info.Payload)
	require.NoError(t, err)
	require.Equal(t, tasks.ReasonAPI, ab.Reason)
	require.True(t, b.now.Equal(ab.Deadline), "no deadline means now")

	resp, body = b.post(t, abort, nil)
	require.Equal(t, http.StatusAccepted, resp.StatusCode, body)
	require.Equal(t, true, body["duplicate"])
	require.Equal(t, "api:u-42", body["id"])
}

func TestNewValidates(t *testing.T) {
	t.Parallel()
	_, err := jobsapi.New(jobsapi.Config{})
	require.ErrorContains(t, err, "client required")
	require.ErrorContains(t, err, "API key")
	require.ErrorContains(t, err, "buckets required")
}
