package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/google/uuid"
	"github.com/hibiken/asynq"
	"github.com/stretchr/testify/require"

	"github.com/intakehq/intake/internal/objstore"
	"github.com/intakehq/intake/internal/queue"
	"github.com/intakehq/intake/internal/replay"
	"github.com/intakehq/intake/internal/store"
	"github.com/intakehq/intake/internal/store/dbq"
	"github.com/intakehq/intake/internal/testkit"
	"github.com/intakehq/intake/internal/webhook"
	"github.com/intakehq/intake/worker/tasks"
)

// opsSQS is an SQS client for the tests (see objstore.WrapHTTPClient).
func opsSQS() *sqs.Client {
	cfg := testkit.AWSConfig()
	cfg.HTTPClient = objstore.HTTPClient(100)
	return queue.NewClient(cfg, testkit.AWS())
}

func opsBody(i int) string {
	return fmt.Sprintf(`{"Records":[{"eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"b"},"object":{"key":"k/%05d"}}}]}`, i)
}

func opsAttrs(i int) map[string]types.MessageAttributeValue {
	return map[string]types.MessageAttributeValue{
		"idx":  {DataType: aws.String("Number"), StringValue: aws.String(strconv.Itoa(i))},
		"blob": {DataType: aws.String("Binary"), BinaryValue: []byte{byte(i), byte(i >> 8)}},
	}
}

// opsFill sends n messages with attributes to url.
func opsFill(t *testing.T, c *sqs.Client, url string, n int) {
	t.Helper()
	entries := make([]types.SendMessageBatchRequestEntry, n)
	for i := range n {
		entries[i] = types.SendMessageBatchRequestEntry{Id: aws.String(strconv.Itoa(i)), MessageBody: aws.String(opsBody(i)), MessageAttributes: opsAttrs(i)}
	}
	testkit.SendMessages(t, c, url, entries)
}

// buildIntake builds the intake binary into a temporary directory.
func buildIntake(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "intake")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/intakehq/intake/cmd/intake")
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "go build: %s", out)
	return bin
}

// opsEnv is the environment of an intake subprocess pointed at the local stack.
func opsEnv(extra ...string) []string {
	a := testkit.AWS()
	env := []string{
		"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"),
		"AWS_ACCESS_KEY_ID=" + testkit.DefaultAccessKey, "AWS_SECRET_ACCESS_KEY=" + testkit.DefaultSecretKey,
		"AWS_REGION=" + a.Region, "AWS_ENDPOINT_URL_SQS=" + a.SQSEndpoint, "AWS_ENDPOINT_URL_S3=" + a.S3Endpoint,
		"AWS_EC2_METADATA_DISABLED=true", "INTAKE_LOG_FORMAT=text",
	}
	return append(env, extra...)
}

// runIntake runs the binary to completion and returns its exit code and outputs.
func runIntake(t *testing.T, bin string, env []string, args ...string) (int, string, string) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else {
		require.NoError(t, err)
	}
	return code, stdout.String(), stderr.String()
}

// summaryField reads "  name  value" from a text summary.
func summaryField(t *testing.T, out, name string) string {
	t.Helper()
	m := regexp.MustCompile(`(?m)^  ` + regexp.QuoteMeta(name) + `\s+(\S+)$`).FindStringSubmatch(out)
	require.NotNil(t, m, "no %q in:\n%s", name, out)
	return m[1]
}

// TestOperatorBinary runs the real binary as operators do.
func TestOperatorBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("needs the local stack")
	}
	bin := buildIntake(t)

	// 1,000 messages; the first replay is SIGKILLed half-way, the second finishes: every message is
	// in the main queue (duplicates allowed), with its attributes, and the DLQ is empty.
	t.Run("replay dlq killed half-way", func(t *testing.T) {
		t.Parallel()
		c := opsSQS()
		q := testkit.Queue(t, c, 3, 30*time.Second)
		const n = 1000
		opsFill(t, c, q.DLQURL, n)
		env := opsEnv("INTAKE_DLQ_URL="+q.DLQURL, "INTAKE_QUEUE_URL="+q.URL)

		cmd := exec.Command(bin, "replay", "dlq", "--rate", "200/s", "--visibility", "3s", "--wait", "1s")
		cmd.Env = env
		var out testkit.SyncBuffer
		cmd.Stdout, cmd.Stderr = &out, &out
		require.NoError(t, cmd.Start())
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		deadline := time.Now().Add(60 * time.Second)
		for {
			counts, err := replay.Counts(context.Background(), c, q.URL)
			require.NoError(t, err)
			if counts.Visible >= n/2 {
				break
			}
			select {
			case err := <-exited:
				t.Fatalf("replay ended before it was killed (%v):\n%s", err, out.String())
			case <-time.After(50 * time.Millisecond):
			}
			require.True(t, time.Now().Before(deadline), "replay made no progress:\n%s", out.String())
		}
		require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
		err := <-exited
		require.Error(t, err, "killed")
		require.Equal(t, syscall.SIGKILL, err.(*exec.ExitError).Sys().(syscall.WaitStatus).Signal())
		mid, err := replay.Counts(context.Background(), c, q.URL)
		require.NoError(t, err)
		require.Less(t, mid.Visible, n, "killed before the end")
		t.Logf("killed with %d messages in the main queue:\n%s", mid.Visible, out.String())

		// Messages the killed run held reappear in the DLQ after its 3s visibility; the second run
		// counts them (in flight at its start) in what it moves.
		time.Sleep(3500 * time.Millisecond)
		code, stdout, stderr := runIntake(t, bin, env, "replay", "dlq", "--wait", "1s")
		require.Equal(t, 0, code, "stdout:\n%s\nstderr:\n%s", stdout, stderr)
		require.Contains(t, stdout, "replay dlq: done in")
		require.Regexp(t, `(?m)^replay dlq: \d+`, stdout, "plain progress lines when stdout is not a terminal")
		require.Equal(t, "0", summaryField(t, stdout, "send_failed"))
		require.Equal(t, summaryField(t, stdout, "sent"), summaryField(t, stdout, "deleted"))

		got, total := testkit.DrainQueue(t, c, q.URL)
		t.Logf("main queue: %d distinct bodies, %d messages (%d duplicates)", len(got), total, total-len(got))
		require.Equal(t, n, len(got), "no message lost")
		for i := range n {
			m, ok := got[opsBody(i)]
			require.True(t, ok, "message %d lost", i)
			require.Equal(t, strconv.Itoa(i), aws.ToString(m.MessageAttributes["idx"].StringValue))
			require.Equal(t, []byte{byte(i), byte(i >> 8)}, m.MessageAttributes["blob"].BinaryValue)
		}
		left, _ := testkit.DrainQueue(t, c, q.DLQURL)
		require.Empty(t, left, "the DLQ is empty")
	})

	// Ctrl-C, then SQS hangs while the command gives the messages it holds back (up to 30 s): a
	// second Ctrl-C ends the process at once. Before, the first signal's NotifyContext kept
	// catching them, and the second did nothing.
	t.Run("a second Ctrl-C ends a command that is stopping", func(t *testing.T) {
		t.Parallel()
		c := opsSQS()
		q := testkit.Queue(t, c, 3, 30*time.Second)
		opsFill(t, c, q.DLQURL, 50)
		u, err := url.Parse(q.DLQURL)
		require.NoError(t, err)
		proxy := testkit.NewProxy(t, "sqs", u.Host)
		env := append(opsEnv(), "AWS_ENDPOINT_URL_SQS="+proxy.URL())
		cmd := exec.Command(bin, "replay", "dlq", "--dry-run", "--from", q.DLQURL, "--to", q.URL, "--rate", "5/s", "--wait", "1s")
		cmd.Env = env
		var out testkit.SyncBuffer
		cmd.Stdout, cmd.Stderr = &out, &out
		require.NoError(t, cmd.Start())
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		time.Sleep(2 * time.Second) // it holds received messages by now
		proxy.Timeout(testkit.Upstream, 0)
		proxy.Timeout(testkit.Downstream, 0)
		require.NoError(t, cmd.Process.Signal(syscall.SIGINT))
		select {
		case err := <-exited:
			t.Fatalf("replay ended at the first signal (%v): SQS did not hang?\n%s", err, out.String())
		case <-time.After(2 * time.Second):
		}
		second := time.Now()
		require.NoError(t, cmd.Process.Signal(syscall.SIGINT))
		select {
		case err := <-exited:
			var exitErr *exec.ExitError
			require.ErrorAs(t, err, &exitErr, out.String())
			status := exitErr.Sys().(syscall.WaitStatus)
			require.True(t, status.Signal() == syscall.SIGINT || exitErr.ExitCode() == exitInterrupted, "%v\n%s", err, out.String())
			t.Logf("ended %s after the second signal: %v", time.Since(second).Round(time.Millisecond), err)
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			t.Fatalf("a second SIGINT did not end the command:\n%s", out.String())
		}
	})

	t.Run("replay dlq dry run changes nothing", func(t *testing.T) {
		t.Parallel()
		c := opsSQS()
		q := testkit.Queue(t, c, 3, 30*time.Second)
		opsFill(t, c, q.DLQURL, 23)
		code, stdout, stderr := runIntake(t, bin, opsEnv(), "replay", "dlq", "--dry-run", "--from", q.DLQURL, "--to", q.URL, "--samples", "2", "--wait", "1s")
		require.Equal(t, 0, code, stderr)
		require.Contains(t, stdout, "dry run: nothing sent or deleted")
		require.Equal(t, "23", summaryField(t, stdout, "messages"))
		require.Equal(t, "23", summaryField(t, stdout, "returned"))
		require.Contains(t, stdout, "sample 2: message ")
		require.NotContains(t, stdout, "sample 3:")
		moved, _ := testkit.DrainQueue(t, c, q.URL)
		require.Empty(t, moved)
		left, _ := testkit.DrainQueue(t, c, q.DLQURL)
		require.Len(t, left, 23)
	})

	t.Run("replay file and json summary", func(t *testing.T) {
		t.Parallel()
		c := opsSQS()
		q := testkit.Queue(t, c, 3, 30*time.Second)
		file := filepath.Join(t.TempDir(), "events.jsonl")
		var lines []string
		for i := range 25 {
			lines = append(lines, opsBody(i))
		}
		require.NoError(t, os.WriteFile(file, []byte(strings.Join(lines, "\n")+"\n"), 0o600))
		code, stdout, stderr := runIntake(t, bin, opsEnv("INTAKE_QUEUE_URL="+q.URL), "replay", "file", file, "--json", "--rate", "1000")
		require.Equal(t, 0, code, stderr)
		var sum map[string]any
		require.NoError(t, json.Unmarshal([]byte(stdout), &sum), stdout)
		require.EqualValues(t, 25, sum["sent"])
		require.EqualValues(t, 0, sum["failed"])
		got, _ := testkit.DrainQueue(t, c, q.URL)
		require.Len(t, got, 25)

		code, _, stderr = runIntake(t, bin, opsEnv("INTAKE_QUEUE_URL="+q.URL), "replay", "file", filepath.Join(t.TempDir(), "nope.jsonl"))
		require.Equal(t, 1, code)
		require.Contains(t, stderr, "open events file")

		// Ctrl-C part-way: the summary says what was sent, and the exit code is not success.
		cmd := exec.Command(bin, "replay", "file", file, "--rate", "5/s")
		cmd.Env = opsEnv("INTAKE_QUEUE_URL=" + q.URL)
		var out testkit.SyncBuffer
		cmd.Stdout, cmd.Stderr = &out, &out
		require.NoError(t, cmd.Start())
		time.Sleep(1500 * time.Millisecond)
		require.NoError(t, cmd.Process.Signal(syscall.SIGINT))
		err := cmd.Wait()
		var exitErr *exec.ExitError
		require.ErrorAs(t, err, &exitErr, out.String())
		require.Equal(t, 130, exitErr.ExitCode(), out.String())
		require.Contains(t, out.String(), "interrupted: run again to send the rest")
		sent, _ := testkit.DrainQueue(t, c, q.URL)
		require.NotEmpty(t, sent)
		require.Less(t, len(sent), 25, "stopped part-way")
	})

	t.Run("replay archive", func(t *testing.T) {
		t.Parallel()
		schema := testkit.Schema(t)
		dbURL := testkit.DatabaseURLFor(schema)
		st, err := store.Open(context.Background(), dbURL)
		require.NoError(t, err)
		t.Cleanup(st.Close)
		_, err = store.Migrate(context.Background(), st.Pool)
		require.NoError(t, err)
		for i, ev := range []struct{ at, key string }{
			{"2025-03-01T10:00:00Z", "a/1"}, {"2025-03-01T11:00:00Z", "a/2"}, {"2025-03-01T11:30:00Z", "b/3"},
			{"2025-03-02T10:00:00Z", "a/4"}, {"2025-02-28T23:59:59Z", "a/0"},
		} {
			_, err := st.Pool.Exec(context.Background(), `INSERT INTO events (message_id, received_at, key, outcome, body) VALUES ($1, $2, $3, 'created:valid', $4)`,
				fmt.Sprintf("m%d", i), ev.at, ev.key, opsBody(i))
			require.NoError(t, err)
		}
		c := opsSQS()
		q := testkit.Queue(t, c, 3, 30*time.Second)
		env := opsEnv("DATABASE_URL="+dbURL, "INTAKE_QUEUE_URL="+q.URL)
		code, stdout, stderr := runIntake(t, bin, env, "replay", "archive", "--since", "2025-03-01", "--until", "2025-03-02", "--key-prefix", "a/", "--dry-run")
		require.Equal(t, 0, code, stderr)
		require.Equal(t, "2", summaryField(t, stdout, "would_send"))
		got, _ := testkit.DrainQueue(t, c, q.URL)
		require.Empty(t, got, "a dry run sends nothing")

		code, stdout, stderr = runIntake(t, bin, env, "replay", "archive", "--since", "2025-03-01", "--until", "2025-03-02", "--key-prefix", "a/")
		require.Equal(t, 0, code, stderr)
		require.Equal(t, "2", summaryField(t, stdout, "sent"))
		got, _ = testkit.DrainQueue(t, c, q.URL)
		require.Len(t, got, 2)
		require.Contains(t, got, opsBody(0))
		require.Contains(t, got, opsBody(1))

		code, _, stderr = runIntake(t, bin, env, "replay", "archive", "--since", "tomorrow")
		require.Equal(t, 2, code, "a usage error")
		require.Contains(t, stderr, "--since")
	})

	t.Run("replay dlq native is refused by kumo", func(t *testing.T) {
		t.Parallel()
		c := opsSQS()
		q := testkit.Queue(t, c, 3, 30*time.Second)
		code, _, stderr := runIntake(t, bin, opsEnv(), "replay", "dlq", "--native", "--from", q.DLQURL, "--to", q.URL)
		require.Equal(t, 1, code)
		require.Contains(t, stderr, "does not support StartMessageMoveTask")
	})

	t.Run("reconcile", func(t *testing.T) {
		t.Parallel()
		schema := testkit.Schema(t)
		dbURL := testkit.DatabaseURLFor(schema)
		st, err := store.Open(context.Background(), dbURL)
		require.NoError(t, err)
		t.Cleanup(st.Close)
		_, err = store.Migrate(context.Background(), st.Pool)
		require.NoError(t, err)
		s3c := testkit.S3()
		bucket := testkit.Bucket(t, s3c)
		for i := range 12 {
			k := fmt.Sprintf("p/%02d", i)
			out, err := s3c.PutObject(context.Background(), &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(k), Body: strings.NewReader(k)})
			require.NoError(t, err)
			if i < 10 { // p/10 and p/11 have no row
				_, err = st.Pool.Exec(context.Background(), `INSERT INTO objects (bucket, key, etag, status) VALUES ($1, $2, $3, 'valid')`, bucket, k, aws.ToString(out.ETag))
				require.NoError(t, err)
			}
		}
		_, err = st.Pool.Exec(context.Background(), `INSERT INTO objects (bucket, key, etag, status) VALUES ($1, 'p/99', 'e', 'valid')`, bucket)
		require.NoError(t, err)
		redisURL := fmt.Sprintf("redis://%s/%d", testkit.RedisAddr(), testkit.RedisDB(t))
		env := opsEnv("DATABASE_URL="+dbURL, "REDIS_URL="+redisURL)

		code, stdout, stderr := runIntake(t, bin, env, "reconcile", "--bucket", bucket)
		require.Equal(t, 0, code, stderr)
		require.Equal(t, "2", summaryField(t, stdout, "missing rows"))
		require.Equal(t, "1", summaryField(t, stdout, "gone objects"))
		require.Contains(t, stdout, "  p/10  etag=")
		require.Contains(t, stdout, "  p/99  row_status=valid")
		require.Contains(t, stdout, "run again with --fix")
		code, _, stderr = runIntake(t, bin, env, "reconcile", "--bucket", bucket, "--exit-code")
		require.Equal(t, 3, code, "--exit-code: differences found\n%s", stderr)
		code, _, stderr = runIntake(t, bin, env, "reconcile", "--bucket", bucket, "--prefix", "p/0", "--exit-code")
		require.Equal(t, 0, code, "--exit-code: p/00..p/09 are in sync\n%s", stderr)

		code, stdout, stderr = runIntake(t, bin, env, "reconcile", "--bucket", bucket, "--prefix", "p/", "--fix", "--json")
		require.Equal(t, 0, code, stderr)
		var rep struct {
			Listed  int              `json:"listed"`
			Missing []map[string]any `json:"missing"`
			Gone    []map[string]any `json:"gone"`
			Fixed   map[string]int   `json:"fixed"`
		}
		require.NoError(t, json.Unmarshal([]byte(stdout), &rep), stdout)
		require.Equal(t, 12, rep.Listed)
		require.Len(t, rep.Missing, 2)
		require.Equal(t, 2, rep.Fixed["enqueued"])
		require.Equal(t, 1, rep.Fixed["marked_missing"])

		code, _, stderr = runIntake(t, bin, opsEnv("DATABASE_URL="+dbURL), "reconcile")
		require.Equal(t, 1, code)
		require.Contains(t, stderr, "INTAKE_BUCKET: required")
	})

	// An upload of intake's completed past intake (its event never came) and past its deadline:
	// `intake sweep` records it gone, its intent completed, and enqueues an object:inspect task for
	// its object for the jobs role; with --no-inspect it enqueues nothing and says so.
	t.Run("sweep enqueues inspections", func(t *testing.T) {
		t.Parallel()
		ctx := context.Background()
		schema := testkit.Schema(t)
		dbURL := testkit.DatabaseURLFor(schema)
		st, err := store.Open(ctx, dbURL)
		require.NoError(t, err)
		t.Cleanup(st.Close)
		_, err = store.Migrate(ctx, st.Pool)
		require.NoError(t, err)
		s3c := testkit.S3()
		bucket := testkit.Bucket(t, s3c)
		ups := testkit.CreateUploads(t, ctx, s3c, bucket, []string{"i/a.bin", "n/b.bin"}, 2)
		for _, u := range ups {
			testkit.UploadPart1(t, ctx, s3c, bucket, u, []byte("x"), true)
			_, err := testkit.CreateUpload(ctx, st.Pool, dbq.Upload{ID: uuid.New(), Owner: "alice", Bucket: bucket, Key: u.Key, Method: "multipart",
				Filename: "f.bin", ContentType: "application/octet-stream", MultipartUploadID: aws.String(u.ID), ExpiresAt: time.Now().Add(-tasks.AbortGrace - time.Minute)}) // past deadline and grace
			require.NoError(t, err)
		}
		redisOpt := asynq.RedisClientOpt{Addr: testkit.RedisAddr(), DB: testkit.RedisDB(t)}
		env := opsEnv("DATABASE_URL="+dbURL, fmt.Sprintf("REDIS_URL=redis://%s/%d", redisOpt.Addr, redisOpt.DB))
		insp := asynq.NewInspector(redisOpt)
		t.Cleanup(func() { _ = insp.Close() })
		pending := func() []string {
			ts, err := insp.ListPendingTasks(tasks.QueueDefault)
			if errors.Is(err, asynq.ErrQueueNotFound) {
				return nil
			}
			require.NoError(t, err)
			var keys []string
			for _, ti := range ts {
				p, err := tasks.ParseInspectObject(ti.Payload)
				require.NoError(t, err, ti.Type)
				keys = append(keys, p.Bucket+"/"+p.Key)
			}
			return keys
		}

		code, stdout, stderr := runIntake(t, bin, env, "sweep", "--bucket", bucket, "--prefix", "i/", "--older-than", "1h", "--json")
		require.Equal(t, 0, code, stderr)
		var rep struct{ Gone, Completed, Inspected, Failed int }
		require.NoError(t, json.Unmarshal([]byte(stdout), &rep), stdout)
		require.Equal(t, struct{ Gone, Completed, Inspected, Failed int }{1, 1, 1, 0}, rep)
		require.Equal(t, []string{bucket + "/i/a.bin"}, pending())

		code, stdout, stderr = runIntake(t, bin, env, "sweep", "--bucket", bucket, "--prefix", "n/", "--older-than", "1h", "--no-inspect")
		require.Equal(t, 0, code, stderr)
		require.Contains(t, stdout, "1 of intake's uploads turned out completed (their events are late or were never sent) and no inspection was enqueued")
		require.Equal(t, []string{bucket + "/i/a.bin"}, pending(), "--no-inspect enqueues nothing")
		var status string
		require.NoError(t, st.Pool.QueryRow(ctx, "SELECT string_agg(status, ',' ORDER BY key) FROM uploads WHERE bucket = $1", bucket).Scan(&status))
		require.Equal(t, "completed,completed", status)

		// Redis down: the completed upload is still recorded (its intent completed), its inspection
		// is not enqueued, and the command says so and exits 1 instead of reporting success.
		ups = testkit.CreateUploads(t, ctx, s3c, bucket, []string{"r/c.bin"}, 1)
		testkit.UploadPart1(t, ctx, s3c, bucket, ups[0], []byte("x"), true)
		_, err = testkit.CreateUpload(ctx, st.Pool, dbq.Upload{ID: uuid.New(), Owner: "alice", Bucket: bucket, Key: ups[0].Key, Method: "multipart",
			Filename: "f.bin", ContentType: "application/octet-stream", MultipartUploadID: aws.String(ups[0].ID), ExpiresAt: time.Now().Add(-tasks.AbortGrace - time.Minute)})
		require.NoError(t, err)
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		down := ln.Addr().String()
		require.NoError(t, ln.Close())
		code, stdout, stderr = runIntake(t, bin, opsEnv("DATABASE_URL="+dbURL, "REDIS_URL=redis://"+down+"/0"), "sweep", "--bucket", bucket, "--prefix", "r/", "--older-than", "1h")
		require.Equal(t, 1, code, "stdout:\n%s\nstderr:\n%s", stdout, stderr)
		require.Contains(t, stdout, "1 of intake's uploads turned out completed (their events are late or were never sent) and no inspection was enqueued")
		require.Contains(t, stdout, "failed 1")
		require.Contains(t, stderr, "1 of 1 candidates failed (an abort, or a completed upload's inspection), first: inspect completed upload")
		require.Contains(t, stderr, down, "the error names what was unreachable")
		for _, line := range strings.Split(strings.TrimSpace(stderr), "\n") {
			if !strings.HasPrefix(line, "intake: ") { // the last line: the error for a person
				require.True(t, strings.HasPrefix(line, "time="), "every log line is the logger's, go-redis's too: %q", line)
			}
		}
		require.Contains(t, stderr, "component=redis", "go-redis's own lines go through the logger")
		require.NoError(t, st.Pool.QueryRow(ctx, "SELECT status FROM uploads WHERE bucket = $1 AND key = 'r/c.bin'", bucket).Scan(&status))
		require.Equal(t, "completed", status, "recorded before the inspection was tried")
		require.Equal(t, []string{bucket + "/i/a.bin"}, pending(), "nothing enqueued")
	})

	// Two notifications given up (one to each of two endpoints): status counts them, a dry run
	// sends nothing, redeliver --endpoint enqueues the one delivery under its redelivery's task id
	// and puts it back in progress, discard drops the other.
	t.Run("outbox", func(t *testing.T) {
		t.Parallel()
		ctx := context.Background()
		schema := testkit.Schema(t)
		dbURL := testkit.DatabaseURLFor(schema)
		st, err := store.Open(context.Background(), dbURL)
		require.NoError(t, err)
		t.Cleanup(st.Close)
		_, err = store.Migrate(context.Background(), st.Pool)
		require.NoError(t, err)
		ids := map[string]int64{}
		for _, ep := range []string{"crm", "old"} {
			var id int64
			require.NoError(t, st.Pool.QueryRow(ctx, `INSERT INTO outbox (dedupe_key, event_type, upload_id, bucket, key, data,
				relayed_at, pending, gave_up, delivered_at) VALUES ($1, 'upload.valid', gen_random_uuid(), 'b', 'k', '{}', now(), '{}', $2, now())
				RETURNING id`, "test:"+ep, []string{ep}).Scan(&id))
			ids[ep] = id
		}
		redisOpt := asynq.RedisClientOpt{Addr: testkit.RedisAddr(), DB: testkit.RedisDB(t)}
		env := opsEnv("DATABASE_URL="+dbURL, fmt.Sprintf("REDIS_URL=redis://%s/%d", redisOpt.Addr, redisOpt.DB))

		code, stdout, stderr := runIntake(t, bin, env, "outbox", "status", "--json")
		require.Equal(t, 0, code, stderr)
		var status struct {
			GaveUp []struct {
				Endpoint      string
				Notifications int
			} `json:"gave_up"`
		}
		require.NoError(t, json.Unmarshal([]byte(stdout), &status), stdout)
		require.Len(t, status.GaveUp, 2, stdout)
		require.Equal(t, "crm", status.GaveUp[0].Endpoint)
		require.Equal(t, 1, status.GaveUp[0].Notifications)

		// Redis down: exit 1, and with --json still one JSON object on stdout, naming the error;
		// nothing was sent (the rows stay given up, as below).
		deadRedis := opsEnv("DATABASE_URL="+dbURL, "REDIS_URL=redis://127.0.0.1:1/0")
		code, stdout, stderr = runIntake(t, bin, deadRedis, "outbox", "redeliver", "--json")
		require.Equal(t, 1, code, stderr)
		var failed struct {
			Notifications int    `json:"notifications"`
			Error         string `json:"error"`
		}
		require.NoError(t, json.Unmarshal([]byte(stdout), &failed), "stdout: %q", stdout)
		require.Zero(t, failed.Notifications)
		require.NotEmpty(t, failed.Error)

		code, stdout, stderr = runIntake(t, bin, env, "outbox", "redeliver", "--dry-run")
		require.Equal(t, 0, code, stderr)
		require.Contains(t, stdout, "would send again the deliveries of 2 notifications")
		code, stdout, stderr = runIntake(t, bin, env, "outbox", "redeliver", "--endpoint", "crm")
		require.Equal(t, 0, code, stderr)
		require.Contains(t, stdout, "sent again the deliveries of 1 notifications\n  crm: 1\n")
		insp := asynq.NewInspector(redisOpt)
		t.Cleanup(func() { _ = insp.Close() })
		pendingTasks, err := insp.ListPendingTasks(webhook.Queue)
		require.NoError(t, err)
		require.Len(t, pendingTasks, 1)
		require.Equal(t, webhook.RedeliverTaskID(ids["crm"], "crm", 1), pendingTasks[0].ID)
		var pendingEPs, gaveUp []string
		require.NoError(t, st.Pool.QueryRow(ctx, "SELECT pending, gave_up FROM outbox WHERE id = $1", ids["crm"]).Scan(&pendingEPs, &gaveUp))
		require.Equal(t, []string{"crm"}, pendingEPs)
		require.Empty(t, gaveUp)

		code, stdout, stderr = runIntake(t, bin, env, "outbox", "discard", "--endpoint", "old")
		require.Equal(t, 0, code, stderr)
		require.Contains(t, stdout, "dropped the given-up deliveries of 1 notifications")
		code, stdout, stderr = runIntake(t, bin, env, "outbox", "status")
		require.Equal(t, 0, code, stderr)
		require.Contains(t, stdout, "given-up deliveries: none")
	})
}
