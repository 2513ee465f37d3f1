package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/alecthomas/kong"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/jackc/pgx/v5"
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
	require.Equal(t, 0, exitCode(t, done, &logs, 30*time.Second), "logs:\n%s", logs.String())
	require.Contains(t, logs.String(), `"msg":"stopped cleanly"`)
	require.Contains(t, logs.String(), `"msg":"migrations applied"`)
	require.True(t, strings.Contains(logs.String(), `"level":"INFO"`), "logs are JSON")
}

// TestUsageErrorsExit2: a command line that a command refuses before doing anything (a flag's
// value out of range, flags that do not go together, a choice not made) exits 2, as kong's own
// usage errors do, with the reason and where to look on stderr; a missing setting of the
// environment still exits 1. Before, these exited 1, like a failure of the work itself.
func TestUsageErrorsExit2(t *testing.T) {
	for _, v := range []string{"DATABASE_URL", "INTAKE_BUCKET", "INTAKE_QUEUE_URL", "INTAKE_DLQ_URL", "REDIS_URL"} {
		t.Setenv(v, "")
	}
	awsEnv(t) // were a check let through, the command would reach for credentials, not hang
	events := filepath.Join(t.TempDir(), "events.jsonl")
	require.NoError(t, os.WriteFile(events, []byte("{}\n"), 0o600))
	dlq := []string{"--from", "http://127.0.0.1:1/q-dlq", "--to", "http://127.0.0.1:1/q", "--aws-region", "us-east-1"}
	db := []string{"--database-url", "postgres://intake@127.0.0.1:1/intake"}
	tests := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"jobs", "run"}, 2, "give exactly one of --id ID or --all"},
		{[]string{"jobs", "run", "--id", "x", "--all"}, 2, "give exactly one of --id ID or --all"},
		{[]string{"jobs", "delete"}, 2, "give exactly one of --id ID or --all"},
		{[]string{"jobs", "delete", "--all"}, 2, "add --yes to delete them"},
		{append([]string{"outbox", "discard"}, db...), 2, "give --endpoint NAME"},
		{append([]string{"outbox", "discard", "--endpoint", "crm", "--all-endpoints"}, db...), 2, "give --endpoint NAME"},
		{append([]string{"outbox", "redeliver", "--stuck-for=-1s"}, db...), 2, "--stuck-for must not be negative"},
		{append([]string{"outbox", "redeliver", "--timeout", "0s"}, db...), 2, "--timeout must be positive"},
		{append([]string{"replay", "dlq", "--wait", "500ms"}, dlq...), 2, "--wait: 500ms is not a whole number of seconds in 1s..20s"},
		{append([]string{"replay", "dlq", "--dry-run", "--visibility", "5m"}, dlq...), 2, "a dry run holds messages at most 1m0s"},
		{append([]string{"replay", "dlq", "--visibility", "500ms"}, dlq...), 2, "--visibility: 500ms not in 1s..12h"},
		{append([]string{"replay", "dlq", "--max=-1"}, dlq...), 2, "--max: -1 is negative"},
		{append([]string{"replay", "dlq", "--rate", "fast"}, dlq...), 2, `rate "fast"`},
		{append([]string{"replay", "dlq", "--concurrency", "65"}, dlq...), 2, "--concurrency: 65 not in 1..64"},
		{append([]string{"replay", "dlq", "--native", "--max", "3"}, dlq...), 2, "--max does not go with --native"},
		{[]string{"replay", "dlq", "--from", "http://127.0.0.1:1/q", "--to", "http://127.0.0.1:1/q", "--aws-region", "us-east-1"}, 2, "--from and --to are the same queue http://127.0.0.1:1/q"},
		{[]string{"replay", "dlq", "--native", "--from", "http://127.0.0.1:1/q", "--to", "http://127.0.0.1:1/q", "--aws-region", "us-east-1"}, 2, "--from and --to are the same queue"},
		{[]string{"replay", "file", events, "--rate=-1", "--to", "http://127.0.0.1:1/q"}, 2, `rate "-1"`},
		{[]string{"replay", "file", events, "--concurrency", "0", "--to", "http://127.0.0.1:1/q"}, 2, "--concurrency: 0 not in 1..64"},
		{append([]string{"replay", "archive", "--since", "tomorrow"}, db...), 2, "--since"},
		{append([]string{"replay", "archive", "--since", "1h", "--until", "2h"}, db...), 2, "is not after --since"},
		{append([]string{"sweep", "--older-than", "1s", "--bucket", "b"}, db...), 2, "--older-than: 1s is below 1m0s"},
		{append([]string{"sweep", "--concurrency", "0", "--bucket", "b"}, db...), 2, "--concurrency: 0 not in 1..256"},
		{append([]string{"migrate", "up", "--wait=-1s"}, db...), 2, "--wait: -1s is negative"},
		// Not usage errors: a setting missing from the environment.
		{[]string{"sweep"}, 1, "DATABASE_URL: required"},
		{[]string{"reconcile"}, 1, "INTAKE_BUCKET: required"},
	}
	for _, tt := range tests {
		var stdout, stderr bytes.Buffer
		code := MainContext(t.Context(), tt.args, &stdout, &stderr)
		require.Equal(t, tt.code, code, "%v\nstdout:\n%s\nstderr:\n%s", tt.args, stdout.String(), stderr.String())
		require.Contains(t, stderr.String(), tt.want, tt.args)
		if tt.code == 2 {
			require.Contains(t, stderr.String(), "See 'intake "+tt.args[0], tt.args)
		}
	}
	// The same queue on both sides by the settings alone: an invalid configuration, not a usage
	// error.
	t.Setenv("INTAKE_DLQ_URL", "http://127.0.0.1:1/q")
	t.Setenv("INTAKE_QUEUE_URL", "http://127.0.0.1:1/q")
	var out bytes.Buffer
	require.Equal(t, 1, MainContext(t.Context(), []string{"replay", "dlq", "--aws-region", "us-east-1"}, io.Discard, &out), out.String())
	require.Contains(t, out.String(), "INTAKE_DLQ_URL and INTAKE_QUEUE_URL are the same queue")
	// jobs run does not offer pending (pending tasks already run): kong refuses it, as any value
	// not in the list.
	var stderr bytes.Buffer
	require.Equal(t, 2, MainContext(t.Context(), []string{"jobs", "run", "--all", "--state", "pending"}, io.Discard, &stderr))
	require.Contains(t, stderr.String(), `--state must be one of "archived","retry","scheduled" but got "pending"`)
}

// TestHelpShowsDefaults: sweep --help shows --older-than's default (a placeholder hid it), and
// jobs run --help offers the states it takes, not pending, which it refused after the parse.
func TestHelpShowsDefaults(t *testing.T) {
	t.Parallel()
	help := func(args ...string) string {
		var out bytes.Buffer
		require.Equal(t, 0, MainContext(context.Background(), append(args, "--help"), &out, io.Discard), args)
		return strings.Join(strings.Fields(out.String()), " ")
	}
	require.Contains(t, help("sweep"), "--older-than=24h Abort uploads")
	run := help("jobs", "run")
	require.Contains(t, run, `--state="archived" Task state: archived, retry or scheduled (pending tasks already run`)
	require.NotContains(t, run, "scheduled or pending")
	for _, cmd := range []string{"list", "delete"} {
		require.Contains(t, help("jobs", cmd), `--state="archived" Task state: archived, retry, scheduled or pending.`, cmd)
	}
	dlq := help("replay", "dlq")
	require.Contains(t, dlq, "--samples=5 Bodies shown by --dry-run (0: none).")
	require.Contains(t, dlq, "Without --to, SQS moves each message back to the queue it came from")
}

// TestEachCommandTakesTheSettingsItReads: each operator command takes the settings (the flags with
// an environment variable) it reads and no other, and words their help for itself, not for `intake
// run`. Before, outbox status and discard took REDIS_URL (only redeliver enqueues), reconcile and
// sweep INTAKE_S3_PUBLIC_ENDPOINT (only presigning reads it), replay file and archive
// INTAKE_DLQ_URL, and every command said DATABASE_URL was "required, except by --roles scheduler".
func TestEachCommandTakesTheSettingsItReads(t *testing.T) {
	t.Parallel()
	aws := []string{"AWS_REGION"}
	s3 := append(slices.Clone(aws), "AWS_ENDPOINT_URL_S3", "INTAKE_S3_PATH_STYLE")
	sqs := append(slices.Clone(aws), "AWS_ENDPOINT_URL_SQS", "INTAKE_QUEUE_URL")
	db := []string{"DATABASE_URL", "INTAKE_DB_SCHEMA"}
	want := map[string][]string{
		"migrate up":       db,
		"migrate status":   db,
		"replay dlq":       append(slices.Clone(sqs), "INTAKE_DLQ_URL"),
		"replay file":      sqs,
		"replay archive":   append(slices.Clone(sqs), db...),
		"reconcile":        append(append(slices.Clone(s3), db...), "REDIS_URL", "INTAKE_BUCKET"),
		"sweep":            append(append(slices.Clone(s3), db...), "REDIS_URL", "INTAKE_BUCKET", "INTAKE_JOBS_SWEEP_OLDER_THAN", "INTAKE_JOBS_SWEEP_PREFIX"),
		"jobs list":        {"REDIS_URL"},
		"jobs run":         {"REDIS_URL"},
		"jobs delete":      {"REDIS_URL"},
		"outbox status":    db,
		"outbox redeliver": append(slices.Clone(db), "REDIS_URL", "INTAKE_WEBHOOK_TIMEOUT"),
		"outbox discard":   db,
	}
	var c CLI
	parser, err := kong.New(&c, kong.Name("intake"))
	require.NoError(t, err)
	got := map[string][]string{}
	for _, n := range parser.Model.Leaves(false) {
		path := strings.TrimPrefix(n.FullPath(), "intake ")
		if path == "run" || path == "version" {
			continue
		}
		for _, f := range n.AllFlags(false) {
			for _, fl := range f {
				for _, env := range fl.Envs {
					if env != "INTAKE_LOG_LEVEL" && env != "INTAKE_LOG_FORMAT" {
						got[path] = append(got[path], env)
					}
				}
			}
		}
	}
	for cmd := range got {
		require.Contains(t, want, cmd, "a new command: list the settings it reads here")
	}
	for cmd, envs := range want {
		require.ElementsMatch(t, envs, got[cmd], cmd)
	}

	help := func(args ...string) string {
		var out bytes.Buffer
		require.Equal(t, 0, MainContext(context.Background(), append(args, "--help"), &out, io.Discard), args)
		return strings.Join(strings.Fields(out.String()), " ")
	}
	require.Contains(t, help("run"), "PostgreSQL URL (required, except by --roles scheduler)")
	require.Contains(t, help("run"), "SQS queue URL of S3 events (required by the consumer role and the API's ingress)")
	require.Contains(t, help("run"), "Dead-letter queue URL (optional: permanent failures go there at once")
	for cmd := range want {
		h := help(strings.Fields(cmd)...)
		require.NotContains(t, h, "--roles", cmd)
		require.NotContains(t, h, "required by the consumer", cmd)
		require.NotContains(t, h, "redrive policy", cmd)
		if slices.Contains(want[cmd], "DATABASE_URL") {
			require.Contains(t, h, "PostgreSQL URL (required) ($DATABASE_URL)", cmd)
		}
	}
	require.Contains(t, help("replay", "dlq"), "--dlq-url=STRING Dead-letter queue the messages are moved from (the default of --from) ($INTAKE_DLQ_URL)")
	require.Contains(t, help("replay", "file", "-"), "--queue-url=STRING Queue the events are sent to (the default of --to) ($INTAKE_QUEUE_URL)")
	require.Contains(t, help("reconcile"), "Redis URL of asynq (read with --fix")
}

// TestReadyzRefusesReadOnlyPostgres: a PostgreSQL that answers but refuses writes (the old primary
// after a failover, still behind the DNS name; here a database made read-only) leaves the daemon
// not ready: every role writes (intents, records, the outbox). With a ping as the check, /readyz
// answered 200 while every POST /v1/uploads failed.
func TestReadyzRefusesReadOnlyPostgres(t *testing.T) {
	if testing.Short() {
		t.Skip("needs the local stack")
	}
	ctx := testkit.Context(t)
	dbURL := testkit.Database(t)
	var out bytes.Buffer
	require.Equal(t, 0, MainContext(ctx, []string{"migrate", "up", "--database-url", dbURL}, &out, &out), out.String())
	admin, err := pgx.Connect(ctx, dbURL)
	require.NoError(t, err)
	var db string
	require.NoError(t, admin.QueryRow(ctx, "SELECT current_database()").Scan(&db))
	_, err = admin.Exec(ctx, "ALTER DATABASE "+pgx.Identifier{db}.Sanitize()+" SET default_transaction_read_only = on")
	require.NoError(t, err)
	require.NoError(t, admin.Close(ctx))

	aws := testkit.AWS()
	t.Setenv("AWS_ACCESS_KEY_ID", testkit.DefaultAccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", testkit.DefaultSecretKey)
	addr := testkit.FreeAddr(t)
	runCtx, cancel := context.WithCancel(ctx)
	var logs testkit.SyncBuffer
	done := make(chan int, 1)
	go func() {
		done <- MainContext(runCtx, []string{"run", "--roles", "api",
			"--database-url", dbURL,
			"--redis-url", fmt.Sprintf("redis://%s/%d", testkit.RedisAddr(), testkit.RedisDB(t)),
			"--s3-endpoint", aws.S3Endpoint, "--aws-region", aws.Region,
			"--bucket", testkit.Bucket(t, testkit.S3()), "--listen", addr,
			"--api-insecure-dev-auth", "--shutdown-grace", "5s",
		}, io.Discard, &logs)
	}()
	defer func() { cancel(); <-done }()

	var ready map[string]any
	require.Eventually(t, func() bool {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		ready = nil
		_ = json.NewDecoder(resp.Body).Decode(&ready)
		checks, _ := ready["checks"].(map[string]any)
		return resp.StatusCode == http.StatusServiceUnavailable && checks["redis"] == "ok" && checks["s3"] == "ok" && checks["started"] == "ok"
	}, 60*time.Second, 200*time.Millisecond, "readyz: %v; logs:\n%s", ready, logs.String())
	checks, _ := ready["checks"].(map[string]any)
	require.Equal(t, "failed", checks["postgres"], "connected (started is ok), but read-only: %v", ready)
}

// TestUnknownEnvWarned: an operator misspells a setting (INTAKE_POLCY_FILE for INTAKE_POLICY_FILE).
// It used to be ignored without a word, the daemon running with the built-in policy; every
// command now warns, naming the variable and the setting it most likely meant. The local stack's
// and the test suites' own variables, and the settings themselves, are not reported.
func TestUnknownEnvWarned(t *testing.T) {
	t.Setenv("INTAKE_POLCY_FILE", "/etc/intake/strict.yaml")
	t.Setenv("INTAKE_NO_SUCH_THING_AT_ALL", "1")
	t.Setenv("INTAKE_LOCAL_BUCKET", "uploads")
	t.Setenv("INTAKE_BUCKET", "uploads")
	var out, errOut bytes.Buffer
	require.Equal(t, 0, MainContext(context.Background(), []string{"version"}, &out, &errOut))
	logs := errOut.String()
	require.Contains(t, logs, "environment variable INTAKE_POLCY_FILE is no setting of intake and is ignored: did you mean INTAKE_POLICY_FILE?")
	require.Contains(t, logs, "environment variable INTAKE_NO_SUCH_THING_AT_ALL is no setting of intake and is ignored")
	require.NotContains(t, logs, "INTAKE_NO_SUCH_THING_AT_ALL is no setting of intake and is ignored: did you mean")
	require.NotContains(t, logs, "INTAKE_LOCAL_BUCKET")
	require.NotContains(t, logs, "INTAKE_BUCKET ")
	require.NotContains(t, logs, `"name":"INTAKE_BUCKET"`)

	names, _ := unknownEnv(mustModel(t), []string{"INTAKE_API_CORS_ORIGIN=*", "INTAKE_API_CORS_ORIGINS=*", "HOME=/root", "INTAKE_BENCH_STAGES=1"})
	require.Equal(t, []string{"INTAKE_API_CORS_ORIGIN"}, names)
}

// TestUnknownEnvKnowsPolicySecrets: a policy webhook's secret_env may well be named INTAKE_…; it is
// read (the endpoint's signing secret), so it must not be reported as ignored, which would invite
// an operator to remove it.
func TestUnknownEnvKnowsPolicySecrets(t *testing.T) {
	file := filepath.Join(t.TempDir(), "policy.yaml")
	require.NoError(t, os.WriteFile(file, []byte(`rules:
  - prefix: ""
webhooks:
  - name: avatars
    prefix: uploads/avatars/
    url: https://hooks.example/in
    secret_env: INTAKE_WEBHOOK_SECRET_AVATARS
`), 0o600))
	t.Setenv("INTAKE_POLICY_FILE", file)
	t.Setenv("INTAKE_WEBHOOK_SECRET_AVATARS", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	t.Setenv("INTAKE_WEBHOOK_SECRET_AVATAR", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	var out, errOut bytes.Buffer
	require.Equal(t, 0, MainContext(context.Background(), []string{"version"}, &out, &errOut))
	require.NotContains(t, errOut.String(), "INTAKE_WEBHOOK_SECRET_AVATARS is no setting")
	require.Contains(t, errOut.String(), "INTAKE_WEBHOOK_SECRET_AVATAR is no setting", "a misspelling of it is still reported")
}

// mustModel is intake's command-line grammar.
func mustModel(t *testing.T) *kong.Node {
	t.Helper()
	var c CLI
	p, err := kong.New(&c, kong.Name("intake"), kong.Vars{"version": "test"})
	require.NoError(t, err)
	return p.Model.Node
}
