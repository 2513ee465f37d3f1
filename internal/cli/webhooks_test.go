package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/hibiken/asynq"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/intakehq/intake/internal/testkit"
	"github.com/intakehq/intake/internal/webhook"
	"github.com/intakehq/intake/worker/tasks"
)

// process is one running `intake run` process of the built binary (daemon_test.go's daemon runs
// in-process; SIGKILL needs a process).
type process struct {
	cmd  *exec.Cmd
	base string
	logs *testkit.SyncBuffer
}

// startProcess starts bin with env and roles on addr and waits until /readyz answers 200.
func startProcess(t *testing.T, bin string, env []string, roles, addr string) *process {
	t.Helper()
	d := &process{base: "http://" + addr, logs: &testkit.SyncBuffer{}}
	d.cmd = exec.Command(bin, "run", "--roles", roles, "--listen", addr)
	d.cmd.Env = env
	d.cmd.Stdout, d.cmd.Stderr = d.logs, d.logs
	require.NoError(t, d.cmd.Start())
	t.Cleanup(func() {
		if d.cmd.ProcessState == nil {
			_ = d.cmd.Process.Kill()
			_ = d.cmd.Wait()
		}
	})
	require.Eventually(t, func() bool {
		resp, err := http.Get(d.base + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, 60*time.Second, 100*time.Millisecond, "daemon (%s) not ready; logs:\n%s", roles, d.logs)
	return d
}

// kill9 kills the daemon with SIGKILL: nothing of it runs after this returns.
func (d *process) kill9(t *testing.T) {
	t.Helper()
	require.NoError(t, d.cmd.Process.Signal(syscall.SIGKILL))
	err := d.cmd.Wait()
	require.ErrorContains(t, err, "killed")
}

// stop sends SIGTERM and requires a clean exit.
func (d *process) stop(t *testing.T) {
	t.Helper()
	require.NoError(t, d.cmd.Process.Signal(syscall.SIGTERM))
	require.NoError(t, d.cmd.Wait(), "logs:\n%s", d.logs)
}

// api sends a request to the daemon's API as alice.
func (d *process) api(t *testing.T, method, path string, body any) (int, map[string]any) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		raw, err := json.Marshal(body)
		require.NoError(t, err)
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, d.base+path, rd)
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-API-Key", e2eAPIKey)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	var out map[string]any
	raw, _ := io.ReadAll(resp.Body)
	if len(raw) > 0 {
		require.NoError(t, json.Unmarshal(raw, &out), "%s", raw)
	}
	return resp.StatusCode, out
}

const e2eAPIKey = "alice-e2e-key-0123456789"

// TestWebhooksEndToEnd runs the real binary against the real stack and a real Standard Webhooks
// receiver, and kills it with SIGKILL twice between verdicts and their deliveries:
//
//  1. Replica A (api, consumer) and replica B (api) share the database. Intents for a valid upload,
//     a rejected one and a multipart upload are created on A; a client long-polls the valid one on
//     B; the objects are uploaded and their events queued. B answers with the verdict (committed by
//     A's consumer), before its wait ends; the multipart upload is cancelled (DELETE) on B. No jobs
//     role runs yet, so the three notifications stay in the outbox: A is killed with SIGKILL. (The
//     deadline's abort, which waits 2 minutes past the deadline, is tested in worker/jobs and by
//     the fault suite.)
//  2. A daemon with every role starts: the relay sends the three notifications; the receiver fails
//     every first attempt (503). Once the three deliveries wait for their retry, the daemon is
//     killed with SIGKILL.
//  3. A daemon with every role starts again: the retries deliver the notifications; the one whose
//     task was archived meanwhile (as when its retries run out) is listed by `intake jobs list`
//     and delivered by `intake jobs run --all`.
//
// The receiver verifies every request with the specification's library and sees exactly three
// webhook-ids (valid, rejected, aborted), each delivered once after two attempts, each carrying the
// metadata given with its intent.
func TestWebhooksEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("needs the local stack")
	}
	bin := buildIntake(t)
	ctx := testkit.Context(t)
	schema := testkit.Schema(t)
	s3c := testkit.S3()
	bucket := testkit.Bucket(t, s3c)
	sqsc := testkit.SQS()
	q := testkit.Queue(t, sqsc, 5, 30*time.Second)
	redisDB := testkit.RedisDB(t)
	secret := testkit.WebhookSecret(t)
	recv := testkit.NewWebhookReceiver(t, secret)
	env := opsEnv(
		"DATABASE_URL="+testkit.DatabaseURLFor(schema), "INTAKE_MIGRATE=true",
		fmt.Sprintf("REDIS_URL=redis://%s/%d", testkit.RedisAddr(), redisDB),
		"INTAKE_BUCKET="+bucket, "INTAKE_QUEUE_URL="+q.URL, "INTAKE_API_KEYS="+e2eAPIKey+"=alice",
		"INTAKE_CONSUMER_WAIT_TIME=1s", "INTAKE_SHUTDOWN_GRACE=5s",
		"INTAKE_WEBHOOK_URL="+recv.URL, "INTAKE_WEBHOOK_SECRET="+secret, "INTAKE_WEBHOOK_ALLOW_PRIVATE=true",
	)
	addrA, addrB := testkit.FreeAddr(t), testkit.FreeAddr(t)

	// 1. Verdicts committed, nothing relayed; the long poll on the other replica answers.
	a := startProcess(t, bin, env, "api,consumer", addrA)
	b := startProcess(t, bin, env, "api", addrB)
	intent := func(body map[string]any) (string, map[string]any) {
		status, resp := a.api(t, "POST", "/v1/uploads", body)
		require.Equal(t, http.StatusCreated, status, resp)
		return resp["id"].(string), resp
	}
	validID, valid := intent(map[string]any{"filename": "ok.txt", "content_type": "text/plain", "size": 6, "metadata": map[string]string{"order": "V"}})
	rejectedID, rejected := intent(map[string]any{"filename": "fake.png", "content_type": "image/png", "size": 6, "metadata": map[string]string{"order": "R"}})
	abortedID, _ := intent(map[string]any{"filename": "big.bin", "content_type": "application/octet-stream", "size": 20 << 20, "method": "multipart", "metadata": map[string]string{"order": "M"}})

	const wait = 30 * time.Second
	type answer struct {
		status int
		resp   map[string]any
		took   time.Duration
	}
	polled := make(chan answer, 1)
	go func() {
		start := time.Now()
		status, resp := b.api(t, "GET", fmt.Sprintf("/v1/uploads/%s?wait=%s", validID, wait), nil)
		polled <- answer{status, resp, time.Since(start)}
	}()

	for i, up := range []map[string]any{valid, rejected} {
		hdrs := map[string]string{}
		for k, v := range up["headers"].(map[string]any) {
			if !strings.EqualFold(k, "Content-Length") {
				hdrs[k] = v.(string)
			}
		}
		req, err := http.NewRequest(http.MethodPut, up["url"].(string), strings.NewReader("hello\n"))
		require.NoError(t, err)
		for k, v := range hdrs {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode)
		etag := strings.Trim(resp.Header.Get("ETag"), `"`)
		_, err = sqsc.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: aws.String(q.URL),
			MessageBody: aws.String(testkit.S3Event(bucket, up["key"].(string), etag, 6, i))})
		require.NoError(t, err)
	}
	got := <-polled
	require.Equal(t, http.StatusOK, got.status, got.resp)
	require.Equal(t, true, got.resp["done"], "replica B answered with the verdict committed by A")
	require.Equal(t, "valid", got.resp["object"].(map[string]any)["status"])
	require.Less(t, got.took, wait, "before the wait ended")
	require.Eventually(t, func() bool {
		_, resp := a.api(t, "GET", "/v1/uploads/"+rejectedID, nil)
		return resp["done"] == true
	}, 30*time.Second, 50*time.Millisecond)

	pool, err := pgxpool.New(ctx, testkit.DatabaseURLFor(schema))
	require.NoError(t, err)
	defer pool.Close()
	var unrelayed int
	status, resp := b.api(t, "DELETE", "/v1/uploads/"+abortedID, nil)
	require.Equal(t, http.StatusNoContent, status, resp)
	require.NoError(t, pool.QueryRow(ctx, "SELECT count(*) FROM outbox WHERE relayed_at IS NULL").Scan(&unrelayed))
	require.Equal(t, 3, unrelayed, "both verdicts and the abort committed their notification; none relayed")
	a.kill9(t)
	b.stop(t)
	require.Empty(t, recv.Received())

	// 2. Relayed, first attempts fail, killed while the retries wait.
	recv.Answer(func(_ string, attempt int) int {
		if attempt == 1 {
			return http.StatusServiceUnavailable
		}
		return http.StatusNoContent
	})
	c := startProcess(t, bin, env, "all", addrA)
	recv.WaitAttempts(3, 60*time.Second)
	insp := asynq.NewInspector(asynq.RedisClientOpt{Addr: testkit.RedisAddr(), DB: redisDB})
	defer insp.Close()
	require.Eventually(t, func() bool {
		// A batch's failed items wait as scheduled tasks of their own, a single delivery as a retry.
		retry, err1 := insp.ListRetryTasks(webhook.Queue)
		scheduled, err2 := insp.ListScheduledTasks(webhook.Queue)
		return err1 == nil && err2 == nil && len(retry)+len(scheduled) == 3
	}, 30*time.Second, 20*time.Millisecond, "the three deliveries wait for their retry")
	// The rejected upload's delivery is archived, as when its day of retries runs out.
	var rejectedRow int64
	require.NoError(t, pool.QueryRow(ctx, "SELECT id FROM outbox WHERE upload_id = $1", rejectedID).Scan(&rejectedRow))
	require.NoError(t, insp.ArchiveTask(webhook.Queue, webhook.DeliverTaskID(rejectedRow, webhook.DefaultEndpoint)))
	c.kill9(t)

	// 3. The retries deliver after the restart; the operator runs the archived one again.
	d := startProcess(t, bin, env, "all", addrA)
	recv.WaitDelivered(2, 90*time.Second)
	code, out, stderr := runIntake(t, bin, env, "jobs", "list", "--queue", webhook.Queue)
	require.Equal(t, 0, code, stderr)
	require.Contains(t, out, webhook.DeliverTaskID(rejectedRow, webhook.DefaultEndpoint))
	require.Contains(t, out, "1 archived tasks")
	code, _, stderr = runIntake(t, bin, env, "jobs", "run", "--queue", webhook.Queue, "--all")
	require.Equal(t, 0, code, stderr)
	all := recv.WaitDelivered(3, 60*time.Second)
	require.Len(t, all, 3)
	wantOrder := map[string]struct{ typ, order string }{
		validID:    {tasks.EventUploadValid, "V"},
		rejectedID: {tasks.EventUploadRejected, "R"},
		abortedID:  {tasks.EventUploadAborted, "M"},
	}
	for _, w := range all {
		want, ok := wantOrder[w.Verdict.Data.UploadID.String()]
		require.True(t, ok, "unexpected notification %+v", w)
		delete(wantOrder, w.Verdict.Data.UploadID.String())
		require.Equal(t, want.typ, w.Verdict.Type)
		require.JSONEq(t, `{"order":"`+want.order+`"}`, string(w.Verdict.Data.Metadata))
		require.Equal(t, 2, w.Attempts, "%s: one failed attempt before the kill, one after", w.Verdict.Type)
		require.Equal(t, 1, w.Delivered, "%s: delivered once", w.Verdict.Type)
	}
	require.Equal(t, "sniff_mismatch", testkit.ByType(all, tasks.EventUploadRejected)[0].Verdict.Data.Reason)
	require.Equal(t, tasks.ReasonAPI, testkit.ByType(all, tasks.EventUploadAborted)[0].Verdict.Data.Reason)
	require.Zero(t, recv.BadSignatures())
	require.Eventually(t, func() bool {
		var undelivered int
		err := pool.QueryRow(context.Background(), "SELECT count(*) FROM outbox WHERE delivered_at IS NULL").Scan(&undelivered)
		return err == nil && undelivered == 0
	}, 30*time.Second, 50*time.Millisecond, "the outbox records every delivery")
	d.stop(t)
}
