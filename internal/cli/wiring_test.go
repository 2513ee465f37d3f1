package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/hibiken/asynq"
	"github.com/stretchr/testify/require"

	"github.com/intakehq/intake/internal/testkit"
	"github.com/intakehq/intake/worker/tasks"
)

// TestAPIRoleWiring runs `intake run --roles api` against the real stack and checks what the role
// wires beyond the API itself: a multipart upload gets its abort task in Redis (TaskID = upload id),
// POST /v1/jobs enqueues for API-key callers, and without a consumer in the process the API serves the
// event ingress, which forwards bodies to SQS.
func TestAPIRoleWiring(t *testing.T) {
	if testing.Short() {
		t.Skip("needs the local stack")
	}
	ctx := testkit.Context(t)
	schema := testkit.Schema(t)
	bucket := testkit.Bucket(t, testkit.S3())
	sqsc := testkit.SQS()
	q := testkit.Queue(t, sqsc, 5, 30*time.Second)
	redisDB := testkit.RedisDB(t)
	awsc := testkit.AWS()
	t.Setenv("AWS_ACCESS_KEY_ID", testkit.DefaultAccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", testkit.DefaultSecretKey)
	const apiKey = "0123456789abcdef-alice"
	const opsKey = "0123456789abcdef-oncall"
	addr := testkit.FreeAddr(t)

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	var logs testkit.SyncBuffer
	done := make(chan int, 1)
	go func() {
		done <- MainContext(runCtx, []string{"run", "--roles", "api",
			"--database-url", testkit.DatabaseURLFor(schema), "--migrate",
			"--redis-url", fmt.Sprintf("redis://%s/%d", testkit.RedisAddr(), redisDB),
			"--s3-endpoint", awsc.S3Endpoint, "--sqs-endpoint", awsc.SQSEndpoint, "--aws-region", awsc.Region,
			"--bucket", bucket, "--queue-url", q.URL, "--listen", addr, "--shutdown-grace", "5s",
			"--api-keys", apiKey + "=alice", "--api-admin-keys", opsKey + "=oncall", "--consumer-ingress-token", "wiring-token-0123456789abcdef012345",
		}, io.Discard, &logs)
	}()
	base := "http://" + addr
	require.Eventually(t, func() bool {
		resp, err := http.Get(base + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, 60*time.Second, 200*time.Millisecond, "not ready; logs:\n%s", logs.String())

	post := func(path, auth string, body any) (int, []byte) {
		raw, err := json.Marshal(body)
		require.NoError(t, err)
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+path, bytes.NewReader(raw))
		require.NoError(t, err)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+auth)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		out, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, out
	}

	insp := asynq.NewInspector(asynq.RedisClientOpt{Addr: testkit.RedisAddr(), DB: redisDB})
	t.Cleanup(func() { _ = insp.Close() })

	// 1. A multipart upload schedules its abort at the deadline.
	code, body := post("/v1/uploads", apiKey, map[string]any{
		"filename": "big.bin", "content_type": "application/octet-stream", "size": 20 << 20, "method": "multipart",
	})
	require.Equal(t, http.StatusCreated, code, "%s", body)
	var up struct {
		UploadID string `json:"upload_id"`
		Key      string `json:"key"`
	}
	require.NoError(t, json.Unmarshal(body, &up))
	require.NotEmpty(t, up.UploadID)
	info, err := insp.GetTaskInfo(tasks.QueueCritical, up.UploadID)
	require.NoError(t, err, "abort task scheduled under the upload id")
	require.Equal(t, tasks.TypeAbortMultipart, info.Type)
	require.Equal(t, asynq.TaskStateScheduled, info.State)
	require.WithinDuration(t, tasks.AbortDue(time.Now().Add(24*time.Hour)), info.NextProcessAt, time.Minute, "default deadline 24h, and the grace")

	// 2. POST /v1/jobs enqueues for a tenant on its own upload (checked in PostgreSQL), refuses a
	// tenant's sweep, accepts an operator's, and refuses unknown keys.
	code, body = post("/v1/jobs", apiKey, map[string]any{"type": tasks.TypeInspectObject, "payload": map[string]string{"key": up.Key}})
	require.Equal(t, http.StatusAccepted, code, "%s", body)
	pending, err := insp.ListPendingTasks(tasks.QueueDefault)
	require.NoError(t, err)
	require.Len(t, pending, 1)
	require.Equal(t, tasks.TypeInspectObject, pending[0].Type)
	code, _ = post("/v1/jobs", "not-a-key-of-anyone", map[string]any{"type": tasks.TypeInspectObject, "payload": map[string]string{"key": "k"}})
	require.Equal(t, http.StatusUnauthorized, code)
	code, body = post("/v1/jobs", apiKey, map[string]any{"type": tasks.TypeInspectObject, "payload": map[string]string{"key": "uploads/bob/x"}})
	require.Equal(t, http.StatusNotFound, code, "%s", body)
	code, body = post("/v1/jobs", apiKey, map[string]any{"type": tasks.TypeSweep, "payload": map[string]string{"older_than": "1m"}})
	require.Equal(t, http.StatusForbidden, code, "%s", body)
	code, body = post("/v1/jobs", opsKey, map[string]any{"type": tasks.TypeSweep, "payload": map[string]string{"older_than": "48h"}})
	require.Equal(t, http.StatusAccepted, code, "%s", body)
	code, body = post("/v1/uploads", opsKey, map[string]any{"filename": "x.bin", "content_type": "application/octet-stream", "size": 1})
	require.Equal(t, http.StatusForbidden, code, "operator keys act for no tenant: %s", body)
	// POST /v1/jobs is counted in the API's request series, beside the API's own routes (the
	// IntakeAPIErrors alert's ratio). Before, it was counted nowhere.
	_, all := httpGet(base + "/metrics")
	var metrics string // the request series alone, for a readable failure
	for line := range strings.Lines(all) {
		if strings.HasPrefix(line, "intake_http_requests_total") || strings.HasPrefix(line, "intake_http_request_duration_seconds_count") {
			metrics += line
		}
	}
	for _, want := range []string{
		`intake_http_requests_total{code="202",route="POST /v1/jobs"} 2`,
		`intake_http_requests_total{code="401",route="POST /v1/jobs"} 1`,
		`intake_http_requests_total{code="403",route="POST /v1/jobs"} 1`,
		`intake_http_requests_total{code="404",route="POST /v1/jobs"} 1`,
		`intake_http_request_duration_seconds_count{route="POST /v1/jobs"} 5`,
		`intake_http_requests_total{code="201",route="POST /v1/uploads"} 1`,
	} {
		require.Contains(t, metrics, want)
	}

	// 3. The ingress forwards a test event into the queue.
	testEvent, err := os.ReadFile("../../../shared/fixtures/events/aws/test-event.json")
	require.NoError(t, err)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v1/events/s3", bytes.NewReader(testEvent))
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer wiring-token-0123456789abcdef012345")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Less(t, resp.StatusCode, 300)
	out, err := sqsc.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: aws.String(q.URL), WaitTimeSeconds: 5})
	require.NoError(t, err)
	require.Len(t, out.Messages, 1)
	require.JSONEq(t, string(testEvent), aws.ToString(out.Messages[0].Body))

	cancel()
	require.Equal(t, 0, exitCode(t, done, &logs, 30*time.Second), "logs:\n%s", logs.String())
}

// TestAPIReadinessNeedsWhatTheAPINeeds: an API-only replica with Redis down (and the queue URL of
// the shared configuration, but no ingress) stays ready: it reports Redis failed, presigns uploads
// (which need neither Redis nor SQS), and does not check the queue it never calls. Before, every
// API replica failed /readyz during a Redis or SQS blip and left its Service.
func TestAPIReadinessNeedsWhatTheAPINeeds(t *testing.T) {
	if testing.Short() {
		t.Skip("needs the local stack")
	}
	ctx, schema, bucket, awsc := daemonStack(t)
	const apiKey = "0123456789abcdef-alice"
	redisDown := testkit.FreeAddr(t)
	d := startDaemon(t, ctx, "--roles", "api",
		"--database-url", testkit.DatabaseURLFor(schema), "--migrate", "--redis-url", "redis://"+redisDown+"/0",
		"--s3-endpoint", awsc.S3Endpoint, "--sqs-endpoint", awsc.SQSEndpoint, "--aws-region", awsc.Region,
		"--bucket", bucket, "--queue-url", "http://"+redisDown+"/000000000000/nowhere", "--shutdown-grace", "2s",
		"--api-keys", apiKey+"=alice")
	ready := readyz(t, d.base)
	checks := ready["checks"].(map[string]any)
	require.Equal(t, "failed", checks["redis"], "reported")
	require.Equal(t, "ok", checks["postgres"])
	require.NotContains(t, checks, "sqs", "the API without an ingress never calls the queue")

	presignOnce(t, ctx, d.base, apiKey)
	require.Equal(t, 0, d.stop(), d.logs.String())
}

// TestAPIReadinessWithIngressDoesNotNeedSQS: an API-only replica serving the event ingress stays
// ready while its queue cannot be reached: it reports sqs failed (and optional on the admin
// listener) and presigns, which never calls SQS. Before, the ingress token made the queue required,
// so an SQS outage took every API replica out of its Service, presign, status and download with
// it.
func TestAPIReadinessWithIngressDoesNotNeedSQS(t *testing.T) {
	if testing.Short() {
		t.Skip("needs the local stack")
	}
	ctx, schema, bucket, awsc := daemonStack(t)
	const apiKey = "0123456789abcdef-alice"
	adminAddr := testkit.FreeAddr(t)
	d := startDaemon(t, ctx, "--roles", "api",
		"--database-url", testkit.DatabaseURLFor(schema), "--migrate",
		"--redis-url", fmt.Sprintf("redis://%s/%d", testkit.RedisAddr(), testkit.RedisDB(t)),
		"--s3-endpoint", awsc.S3Endpoint, "--sqs-endpoint", awsc.SQSEndpoint, "--aws-region", awsc.Region,
		"--bucket", bucket, "--queue-url", awsc.SQSEndpoint+"/000000000000/"+testkit.Name("no-such-queue-"),
		"--consumer-ingress-token", "wiring-token-0123456789abcdef012345",
		"--admin-listen", adminAddr, "--shutdown-grace", "2s", "--api-keys", apiKey+"=alice")
	ready := readyz(t, d.base)
	require.Equal(t, "failed", ready["checks"].(map[string]any)["sqs"], "reported")
	resp, err := http.Get("http://" + adminAddr + "/readyz")
	require.NoError(t, err)
	var detail struct {
		Checks map[string]struct {
			OK       bool `json:"ok"`
			Optional bool `json:"optional"`
		} `json:"checks"`
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&detail))
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.False(t, detail.Checks["sqs"].OK)
	require.True(t, detail.Checks["sqs"].Optional, "the API does not need the queue to be ready")

	presignOnce(t, ctx, d.base, apiKey)
	require.Equal(t, 0, d.stop(), d.logs.String())
}

// TestConsumerReadinessDoesNotNeedTheDLQ: a consumer whose dead-letter queue cannot be reached
// stays ready and reports it (sqs-dlq failed, optional): only permanent failures go there, and a
// send that fails is retried later. Before, the DLQ was required, and its outage stopped the
// consumption of every good event.
func TestConsumerReadinessDoesNotNeedTheDLQ(t *testing.T) {
	if testing.Short() {
		t.Skip("needs the local stack")
	}
	ctx := testkit.Context(t)
	schema := testkit.Schema(t)
	bucket := testkit.Bucket(t, testkit.S3())
	q := testkit.Queue(t, testkit.SQS(), 5, 30*time.Second)
	awsc := testkit.AWS()
	t.Setenv("AWS_ACCESS_KEY_ID", testkit.DefaultAccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", testkit.DefaultSecretKey)
	adminAddr := testkit.FreeAddr(t)
	d := startDaemon(t, ctx, "--roles", "consumer",
		"--database-url", testkit.DatabaseURLFor(schema), "--migrate",
		"--redis-url", fmt.Sprintf("redis://%s/%d", testkit.RedisAddr(), testkit.RedisDB(t)),
		"--s3-endpoint", awsc.S3Endpoint, "--sqs-endpoint", awsc.SQSEndpoint, "--aws-region", awsc.Region,
		"--bucket", bucket, "--queue-url", q.URL, "--dlq-url", awsc.SQSEndpoint+"/000000000000/"+testkit.Name("no-such-dlq-"),
		"--consumer-wait-time", "1s", "--admin-listen", adminAddr, "--shutdown-grace", "2s")
	code, body := httpGet("http://" + adminAddr + "/readyz")
	require.Equal(t, http.StatusOK, code, body)
	var detail struct {
		Checks map[string]struct {
			OK       bool `json:"ok"`
			Optional bool `json:"optional"`
		} `json:"checks"`
	}
	require.NoError(t, json.Unmarshal([]byte(body), &detail), body)
	require.False(t, detail.Checks["sqs-dlq"].OK, body)
	require.True(t, detail.Checks["sqs-dlq"].Optional, body)
	require.True(t, detail.Checks["sqs"].OK, body)
	require.False(t, detail.Checks["sqs"].Optional, "the consumer needs its queue: %s", body)
	require.Equal(t, 0, d.stop(), d.logs.String())
}

// presignOnce creates one upload through the daemon at base with a tenant's key: 201.
func presignOnce(t *testing.T, ctx context.Context, base, apiKey string) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v1/uploads",
		bytes.NewReader([]byte(`{"filename":"a.txt","content_type":"text/plain","size":5}`)))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+apiKey)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	out, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, http.StatusCreated, resp.StatusCode, "%s", out)
}

// readyz returns the public /readyz report of the daemon at base, which answers 200.
func readyz(t *testing.T, base string) map[string]any {
	t.Helper()
	code, body := httpGet(base + "/readyz")
	require.Equal(t, http.StatusOK, code, body)
	var ready map[string]any
	require.NoError(t, json.Unmarshal([]byte(body), &ready), body)
	return ready
}
