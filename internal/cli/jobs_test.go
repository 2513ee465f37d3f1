package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/stretchr/testify/require"

	"github.com/intakehq/intake/internal/testkit"
)

// archiveTasks makes archived tasks the way production does: a task with MaxRetry(0) whose
// handler fails, under a short-lived asynq server.
func archiveTasks(t *testing.T, opt asynq.RedisClientOpt, queue string, payloads ...string) []string {
	t.Helper()
	client := asynq.NewClient(opt)
	defer client.Close()
	var ids []string
	for _, p := range payloads {
		info, err := client.Enqueue(asynq.NewTask("test:fail", []byte(p)), asynq.Queue(queue), asynq.MaxRetry(0))
		require.NoError(t, err)
		ids = append(ids, info.ID)
	}
	srv := asynq.NewServer(opt, asynq.Config{Concurrency: 2, Queues: map[string]int{queue: 1}, LogLevel: asynq.FatalLevel})
	mux := asynq.NewServeMux()
	mux.HandleFunc("test:fail", func(context.Context, *asynq.Task) error { return errors.New("bucket policy denied") })
	require.NoError(t, srv.Start(mux))
	defer srv.Shutdown()
	insp := asynq.NewInspector(opt)
	defer insp.Close()
	require.Eventually(t, func() bool {
		info, err := insp.GetQueueInfo(queue)
		return err == nil && info.Archived == len(payloads)
	}, 30*time.Second, 100*time.Millisecond)
	return ids
}

func TestJobsCommands(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("needs Redis")
	}
	opt := asynq.RedisClientOpt{Addr: testkit.RedisAddr(), DB: testkit.RedisDB(t)}
	redisURL := fmt.Sprintf("redis://%s/%d", opt.Addr, opt.DB)
	const q = "intake-default"
	ids := archiveTasks(t, opt, q, `{"n":1}`, `{"n":2}`, `{"n":3}`)
	insp := asynq.NewInspector(opt)
	t.Cleanup(func() { _ = insp.Close() })
	intake := func(args ...string) (int, string, string) {
		var out, errOut bytes.Buffer
		code := MainContext(context.Background(), append(args, "--redis-url", redisURL), &out, &errOut)
		return code, out.String(), errOut.String()
	}

	// list: a table of the archived tasks with their last error.
	code, out, errOut := intake("jobs", "list")
	require.Equal(t, 0, code, errOut)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	require.Regexp(t, `^ID\s+TYPE\s+QUEUE\s+STATE\s+LAST ERROR\s+NEXT PROCESS AT`, lines[0])
	for _, id := range ids {
		require.Regexp(t, id+`\s+test:fail\s+intake-default\s+archived\s+bucket policy denied\s+-`, out)
	}
	require.Contains(t, out, "3 archived tasks in 1 queues")
	code, out, _ = intake("jobs", "list", "--state", "retry", "--queue", q)
	require.Equal(t, 0, code)
	require.Contains(t, out, "0 retry tasks in 1 queues")
	code, out, _ = intake("jobs", "list", "--json", "--limit", "1")
	require.Equal(t, 0, code)
	require.Len(t, strings.Split(strings.TrimSpace(out), "\n"), 1)
	require.Contains(t, out, `"last_error":"bucket policy denied"`)

	// delete one by id (searched across queues).
	code, out, errOut = intake("jobs", "delete", "--id", ids[2])
	require.Equal(t, 0, code, errOut)
	require.Regexp(t, `(?m)^  deleted\s+1$`, out)
	_, err := insp.GetTaskInfo(q, ids[2])
	require.ErrorIs(t, err, asynq.ErrTaskNotFound)

	// run the rest: they become pending, and a healthy server processes them.
	code, out, errOut = intake("jobs", "run", "--all", "--queue", q)
	require.Equal(t, 0, code, errOut)
	require.Regexp(t, `(?m)^  run\s+2$`, out)
	for _, id := range ids[:2] {
		info, err := insp.GetTaskInfo(q, id)
		require.NoError(t, err)
		require.Equal(t, asynq.TaskStatePending, info.State)
	}
	var mu sync.Mutex
	var processed []string
	srv := asynq.NewServer(opt, asynq.Config{Concurrency: 1, Queues: map[string]int{q: 1}, LogLevel: asynq.FatalLevel})
	mux := asynq.NewServeMux()
	mux.HandleFunc("test:fail", func(_ context.Context, task *asynq.Task) error {
		mu.Lock()
		defer mu.Unlock()
		processed = append(processed, string(task.Payload()))
		return nil
	})
	require.NoError(t, srv.Start(mux))
	t.Cleanup(srv.Shutdown)
	require.Eventually(t, func() bool { mu.Lock(); defer mu.Unlock(); return len(processed) == 2 }, 30*time.Second, 100*time.Millisecond)
	require.ElementsMatch(t, []string{`{"n":1}`, `{"n":2}`}, processed)

	// usage errors
	code, _, errOut = intake("jobs", "run")
	require.Equal(t, 2, code)
	require.Contains(t, errOut, "give exactly one of --id ID or --all")
	code, _, errOut = intake("jobs", "run", "--all", "--state", "pending")
	require.Equal(t, 2, code)
	require.Contains(t, errOut, `--state must be one of "archived","retry","scheduled"`)
	code, _, errOut = intake("jobs", "run", "--id", "nope", "--queue", q)
	require.Equal(t, 1, code)
	require.Contains(t, errOut, "task nope not found")
	code, _, _ = intake("jobs", "list", "--state", "done")
	require.Equal(t, 2, code, "kong refuses an unknown state")

	// A named queue that does not exist in Redis (never used, or Redis lost its data) holds no
	// task: the runbooks' commands on it answer 0 and exit 0.
	for _, args := range [][]string{
		{"jobs", "list", "--queue", "intake-webhooks", "--state", "retry"},
		{"jobs", "run", "--all", "--queue", "intake-critical"},
		{"jobs", "delete", "--all", "--yes", "--queue", "intake-critical"},
		{"jobs", "delete", "--all", "--dry-run", "--queue", "intake-critical"},
	} {
		code, out, errOut := intake(args...)
		require.Equal(t, 0, code, "%v: %s%s", args, out, errOut)
		require.Contains(t, errOut, "does not exist in Redis", args)
		require.NotContains(t, out, "INTERNAL_ERROR", args)
	}
	// A name that is not one of intake's queues and not in Redis is a typo, not an empty queue.
	code, _, errOut = intake("jobs", "run", "--all", "--queue", "intake-critcal")
	require.Equal(t, 1, code)
	require.Contains(t, errOut, `queue "intake-critcal" is not one of intake's`)
	code, _, errOut = intake("jobs", "run", "--id", "nope", "--queue", "intake-critical")
	require.Equal(t, 1, code, "a task named by id in a queue that does not exist is not found")
	require.Contains(t, errOut, "task nope not found")
}

// TestOpsHelp: every operator command has a --help.
func TestOpsHelp(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"replay", "dlq"}, {"replay", "file"}, {"replay", "archive"}, {"reconcile"},
		{"jobs", "list"}, {"jobs", "run"}, {"jobs", "delete"},
	} {
		var out bytes.Buffer
		require.Equal(t, 0, MainContext(context.Background(), append(args, "--help"), &out, io.Discard), args)
		require.Contains(t, out.String(), "Usage: intake "+strings.Join(args, " "))
	}
}

func TestParseTime(t *testing.T) {
	t.Parallel()
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		in   string
		want time.Time
	}{
		{"2025-01-02T03:04:05Z", time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)},
		{"2025-01-02T03:04:05+02:00", time.Date(2025, 1, 2, 1, 4, 5, 0, time.UTC)},
		{"2025-01-02T03:04:05", time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)},
		{"2025-01-02", time.Date(2025, 1, 2, 0, 0, 0, 0, time.UTC)},
		{"24h", now.Add(-24 * time.Hour)},
		{"90m", now.Add(-90 * time.Minute)},
	} {
		got, err := parseTime(tc.in, now)
		require.NoError(t, err, tc.in)
		require.True(t, tc.want.Equal(got), "%s: %s", tc.in, got)
	}
	for _, bad := range []string{"", "yesterday", "-1h", "2025-13-01"} {
		_, err := parseTime(bad, now)
		require.Error(t, err, bad)
	}
}
