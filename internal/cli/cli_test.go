package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/stretchr/testify/require"

	"github.com/intakehq/intake/internal/objstore"
	"github.com/intakehq/intake/internal/testkit"
)

func TestVersion(t *testing.T) {
	var out bytes.Buffer
	require.Equal(t, 0, MainContext(context.Background(), []string{"version"}, &out, io.Discard))
	require.Contains(t, out.String(), "intake ")
}

// TestVersionFlag: `intake --version` prints what `intake version` prints and exits 0.
func TestVersionFlag(t *testing.T) {
	var flag, cmd bytes.Buffer
	require.Equal(t, 0, MainContext(context.Background(), []string{"--version"}, &flag, io.Discard))
	require.Equal(t, 0, MainContext(context.Background(), []string{"version"}, &cmd, io.Discard))
	require.Equal(t, strings.TrimSpace(cmd.String()), strings.TrimSpace(flag.String()))
	require.True(t, strings.HasPrefix(flag.String(), "intake "), flag.String())
}

// TestHelpListsWhatTheCommandNeeds (issue 15.8): `run --help` lists the daemon's settings; an
// operator command's help lists the sections it reads and none of the daemon's tuning.
func TestHelpListsWhatTheCommandNeeds(t *testing.T) {
	t.Parallel()
	daemonOnly := []string{"--consumer-workers", "--api-jwt-secret", "--jobs-concurrency", "--webhook-url", "--listen", "--admin-listen", "--policy-file", "--migrate"}
	global := []string{"--log-level", "--log-format", "--version"}
	tests := []struct {
		args      []string
		want      []string
		notWanted []string
	}{
		{[]string{"run"}, append(append([]string{"--roles", "--database-url", "--queue-url", "--bucket"}, daemonOnly...), global...), nil},
		{[]string{"replay", "dlq"}, append([]string{"--aws-region", "--queue-url", "--dlq-url", "--sqs-endpoint", "--max", "--dry-run"}, global...), append([]string{"--database-url", "--bucket", "--redis-url", "--s3-endpoint"}, daemonOnly...)},
		{[]string{"replay", "file"}, []string{"--queue-url", "--to"}, append([]string{"--database-url", "--bucket", "--s3-endpoint"}, daemonOnly...)},
		{[]string{"replay", "archive"}, []string{"--queue-url", "--database-url", "--since"}, append([]string{"--bucket", "--s3-endpoint"}, daemonOnly...)},
		{[]string{"reconcile"}, []string{"--database-url", "--db-schema", "--bucket", "--redis-url", "--s3-endpoint", "--fix"}, append([]string{"--queue-url", "--sqs-endpoint"}, daemonOnly...)},
		{[]string{"sweep"}, []string{"--database-url", "--bucket", "--s3-endpoint", "--redis-url", "--no-inspect", "--older-than", "--prefix", "--json"}, append([]string{"--queue-url", "--sqs-endpoint", "--jobs-sweep-older-than"}, daemonOnly...)},
		{[]string{"migrate", "status"}, []string{"--database-url", "--db-schema", "--json"}, append([]string{"--bucket", "--redis-url", "--queue-url"}, daemonOnly...)},
		{[]string{"jobs", "list"}, []string{"--redis-url", "--state"}, append([]string{"--database-url", "--bucket"}, daemonOnly...)},
	}
	for _, tt := range tests {
		var out bytes.Buffer
		require.Equal(t, 0, MainContext(context.Background(), append(tt.args, "--help"), &out, io.Discard), tt.args)
		help := out.String()
		for _, w := range tt.want {
			require.Contains(t, help, w+"", "%v --help lacks %s:\n%s", tt.args, w, help)
		}
		for _, nw := range tt.notWanted {
			require.NotContains(t, help, nw+"=", "%v --help lists %s:\n%s", tt.args, nw, help)
			require.NotContains(t, help, nw+" ", "%v --help lists %s:\n%s", tt.args, nw, help)
		}
	}
}

func TestHelpAndUsageErrors(t *testing.T) {
	var out, errOut bytes.Buffer
	require.Equal(t, 0, MainContext(context.Background(), []string{"--help"}, &out, &errOut))
	require.Contains(t, out.String(), "Usage: intake")
	require.Equal(t, 2, MainContext(context.Background(), []string{"frobnicate"}, io.Discard, &errOut))
	require.Contains(t, errOut.String(), "unexpected argument frobnicate")
}

// TestRunInvalidConfig: a bad configuration fails at start with every problem named, exit code 1.
func TestRunInvalidConfig(t *testing.T) {
	t.Setenv("DATABASE_URL", "")
	t.Setenv("INTAKE_BUCKET", "")
	var errOut bytes.Buffer
	code := MainContext(context.Background(), []string{"run", "--roles", "api,consumer", "--redis-url", "http://nope"}, io.Discard, &errOut)
	require.Equal(t, 1, code)
	for _, want := range []string{"DATABASE_URL: required", "INTAKE_BUCKET: required", "REDIS_URL: scheme", "INTAKE_QUEUE_URL: required", "no authentication configured"} {
		require.Contains(t, errOut.String(), want)
	}
	code = MainContext(context.Background(), []string{"run", "--roles", "web"}, io.Discard, &errOut)
	require.Equal(t, 1, code)
	require.Contains(t, errOut.String(), `unknown role "web"`)
}

// TestRunServesReadyAndStopsOnCancel runs the daemon against the real local stack: /readyz turns 200
// once every dependency answers, /metrics serves intake_* metrics, and cancelling the context (what
// SIGTERM does) stops it cleanly with exit code 0.
func TestRunServesReadyAndStopsOnCancel(t *testing.T) {
	if testing.Short() {
		t.Skip("needs the local stack")
	}
	ctx := testkit.Context(t)
	schema := testkit.Schema(t)
	s3c := testkit.S3()
	bucket := testkit.Bucket(t, s3c)
	q := testkit.Queue(t, testkit.SQS(), 5, 30*time.Second)
	aws := testkit.AWS()
	t.Setenv("AWS_ACCESS_KEY_ID", testkit.DefaultAccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", testkit.DefaultSecretKey)
	addr := testkit.FreeAddr(t)

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	var logs testkit.SyncBuffer
	done := make(chan int, 1)
	go func() {
		done <- MainContext(runCtx, []string{"run",
			"--database-url", testkit.DatabaseURLFor(schema), "--migrate",
			"--redis-url", fmt.Sprintf("redis://%s/%d", testkit.RedisAddr(), testkit.RedisDB(t)),
			"--s3-endpoint", aws.S3Endpoint, "--sqs-endpoint", aws.SQSEndpoint, "--aws-region", aws.Region,
			"--bucket", bucket, "--queue-url", q.URL, "--listen", addr,
			"--api-insecure-dev-auth", "--shutdown-grace", "5s",
		}, io.Discard, &logs)
	}()

	base := "http://" + addr
	var ready map[string]any
	require.Eventually(t, func() bool {
		resp, err := http.Get(base + "/readyz")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		ready = nil
		_ = json.NewDecoder(resp.Body).Decode(&ready)
		return resp.StatusCode == http.StatusOK
	}, 60*time.Second, 200*time.Millisecond, "readyz never turned 200; logs:\n%s", logs.String())
	checks, _ := ready["checks"].(map[string]any)
	for _, dep := range []string{"postgres", "redis", "s3", "sqs"} {
		require.Equal(t, "ok", checks[dep], dep)
	}

	resp, err := http.Get(base + "/healthz")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)

	resp, err = http.Get(base + "/metrics")
	require.NoError(t, err)
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Contains(t, string(metrics), `intake_dependency_up{dependency="s3",required="true"} 1`)

	// What no route matches is a problem+json answer too: 404, or 405 with Allow.
	for path, want := range map[string]int{"/no/such/route": http.StatusNotFound, "/healthz": http.StatusMethodNotAllowed} {
		req, err := http.NewRequest(http.MethodDelete, base+path, nil)
		require.NoError(t, err)
		resp, err = http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, want, resp.StatusCode, path)
		require.Equal(t, "application/problem+json", resp.Header.Get("Content-Type"), path)
	}

	// Removing the bucket makes the daemon not ready (once the cached report is older than 1 s).
	_, err = s3c.DeleteBucket(ctx, &s3.DeleteBucketInput{Bucket: &bucket})
	require.NoError(t, err)
	var body []byte
	require.Eventually(t, func() bool {
		resp, err = http.Get(base + "/readyz")
		if err != nil {
			return false
		}
		body, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp.StatusCode != http.StatusOK
	}, 10*time.Second, 100*time.Millisecond)
	require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	require.Contains(t, string(body), `"s3":"failed"`)
	require.NotContains(t, string(body), bucket, "the public readiness names the dependency, not its error")
	require.Regexp(t, `"msg":"readiness check failed",.*"dependency":"s3","err":"head bucket`, logs.String(), "the log says why")

	// Without INTAKE_ADMIN_LISTEN_ADDR there is no pprof at all.
	resp, err = http.Get(base + "/debug/pprof/")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusNotFound, resp.StatusCode)
	require.NoError(t, objstore.EnsureBucket(ctx, s3c, bucket))
	cancel()
	select {
	case code := <-done:
		require.Equal(t, 0, code, "logs:\n%s", logs.String())
	case <-time.After(30 * time.Second):
		t.Fatalf("daemon did not stop; logs:\n%s", logs.String())
	}
	require.Contains(t, logs.String(), `"msg":"stopped cleanly"`)
	require.Contains(t, logs.String(), `"msg":"migrations applied"`)
	require.True(t, strings.Contains(logs.String(), `"level":"INFO"`), "logs are JSON")
}
