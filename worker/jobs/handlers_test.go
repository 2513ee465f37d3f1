package jobs_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/intakehq/intake/internal/multipart"
	"github.com/intakehq/intake/internal/telemetry"
	"github.com/intakehq/intake/internal/testkit"
	"github.com/intakehq/intake/pipeline"
	"github.com/intakehq/intake/worker/jobs"
	"github.com/intakehq/intake/worker/tasks"
)

func TestHandleInspect(t *testing.T) {
	t.Parallel()
	errS3Down := errors.New("s3 down")
	tests := []struct {
		name      string
		payload   string
		inspector jobs.Inspector
		wantErr   bool
		skipRetry bool
	}{
		{name: "ok", payload: `{"bucket":"b","key":"k"}`, inspector: jobs.InspectorFunc(func(context.Context, string, string) error { return nil })},
		{name: "retryable", payload: `{"bucket":"b","key":"k"}`, wantErr: true,
			inspector: jobs.InspectorFunc(func(context.Context, string, string) error { return errS3Down })},
		{name: "permanent", payload: `{"bucket":"b","key":"k"}`, wantErr: true, skipRetry: true,
			inspector: jobs.InspectorFunc(func(context.Context, string, string) error {
				return fmt.Errorf("policy: %w", pipeline.ErrPermanent)
			})},
		{name: "bad payload", payload: `{"bucket":"b"}`, wantErr: true, skipRetry: true,
			inspector: jobs.InspectorFunc(func(context.Context, string, string) error { return nil })},
		// A field a later intake added (the task was written by a newer replica): ignored. It used to
		// archive the task at once.
		{name: "later field", payload: `{"bucket":"b","key":"k","priority":"high"}`,
			inspector: jobs.InspectorFunc(func(context.Context, string, string) error { return nil })},
		{name: "not configured", payload: `{"bucket":"b","key":"k"}`, wantErr: true, skipRetry: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var gotBucket, gotKey string
			h := &jobs.Handlers{}
			if tt.inspector != nil {
				h.Inspector = jobs.InspectorFunc(func(ctx context.Context, b, k string) error {
					gotBucket, gotKey = b, k
					return tt.inspector.InspectObject(ctx, b, k)
				})
			}
			err := h.HandleInspect(context.Background(), asynq.NewTask(tasks.TypeInspectObject, []byte(tt.payload)))
			if !tt.wantErr {
				require.NoError(t, err)
				require.Equal(t, "b", gotBucket)
				require.Equal(t, "k", gotKey)
				return
			}
			require.Error(t, err)
			require.Equal(t, tt.skipRetry, errors.Is(err, asynq.SkipRetry), "%v", err)
		})
	}
}

func TestMultipartHandlersRejectBadPayloads(t *testing.T) {
	t.Parallel()
	h := &jobs.Handlers{}
	for _, tc := range []struct {
		typ     string
		payload string
		handle  func(context.Context, *asynq.Task) error
	}{
		{tasks.TypeAbortMultipart, `{"bucket":"b","key":"k"}`, h.HandleAbort},
		{tasks.TypeAbortMultipart, `not json`, h.HandleAbort},
		{tasks.TypeSweep, `{"bucket":"b","older_than":"-1h"}`, h.HandleSweep},
		{tasks.TypeSweep, `{"bucket":"b","older_than":"1h"}`, h.HandleSweep},                                                    // valid, but no Sweeper configured
		{tasks.TypeAbortMultipart, `{"bucket":"b","key":"k","upload_id":"u","deadline":"2030-01-01T00:00:00Z"}`, h.HandleAbort}, // no Aborter
	} {
		err := tc.handle(context.Background(), asynq.NewTask(tc.typ, []byte(tc.payload)))
		require.ErrorIs(t, err, asynq.SkipRetry, "%s %s", tc.typ, tc.payload)
	}
}

// sweepCalls records the sweeps a handler starts.
type sweepCalls struct{ n int }

func (s *sweepCalls) SweepBucket(context.Context, string, string, time.Duration, func(context.Context, string, string) error) error {
	s.n++
	return nil
}

// TestSweepTaskGuards: a sweep task built by hand (an app backend with worker/tasks, a payload in
// Redis) gets the checks POST /v1/jobs and `intake sweep` apply: an age below a minute or a bucket
// intake does not serve is refused without retry, and no sweep starts.
func TestSweepTaskGuards(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		payload string
		refused bool
	}{
		{"young uploads", `{"bucket":"mine","older_than":"1s"}`, true},
		{"just under the minimum", `{"bucket":"mine","older_than":"59s"}`, true},
		{"foreign bucket", `{"bucket":"theirs","older_than":"1h"}`, true},
		{"the minimum, intake's bucket", `{"bucket":"mine","older_than":"1m"}`, false},
	} {
		calls := &sweepCalls{}
		h := &jobs.Handlers{Sweeps: calls, Buckets: []string{"mine"}}
		err := h.HandleSweep(context.Background(), asynq.NewTask(tasks.TypeSweep, []byte(tc.payload)))
		if !tc.refused {
			require.NoError(t, err, tc.name)
			require.Equal(t, 1, calls.n, tc.name)
			continue
		}
		require.ErrorIs(t, err, asynq.SkipRetry, tc.name)
		require.Zero(t, calls.n, "%s: a sweep started", tc.name)
	}
}

// abortCalls records the aborts a handler starts.
type abortCalls struct{ n int }

func (a *abortCalls) AbortUpload(context.Context, string, string, string, string, func(context.Context, string, string) error) (string, bool, error) {
	a.n++
	return "aborted", false, nil
}

// TestTasksGuardBuckets: an abort or inspection task naming a bucket intake is not configured for
// (written by hand into Redis, or left there after the bucket was removed from the
// configuration) is refused without retry, as a sweep is, and nothing acts on that bucket.
func TestTasksGuardBuckets(t *testing.T) {
	t.Parallel()
	const deadline = `"deadline":"2000-01-01T00:00:00Z"`
	for _, tc := range []struct {
		name    string
		typ     string
		payload string
		refused bool
	}{
		{"abort of a foreign bucket", tasks.TypeAbortMultipart, `{"bucket":"theirs","key":"k","upload_id":"u",` + deadline + `}`, true},
		{"operator's abort of a foreign bucket", tasks.TypeAbortMultipart, `{"bucket":"theirs","key":"k","upload_id":"u","reason":"api",` + deadline + `}`, true},
		{"abort of intake's bucket", tasks.TypeAbortMultipart, `{"bucket":"mine","key":"k","upload_id":"u",` + deadline + `}`, false},
		{"inspection of a foreign bucket", tasks.TypeInspectObject, `{"bucket":"theirs","key":"k"}`, true},
		{"inspection of intake's bucket", tasks.TypeInspectObject, `{"bucket":"mine","key":"k"}`, false},
	} {
		aborts, inspected := &abortCalls{}, 0
		h := &jobs.Handlers{Aborts: aborts, Buckets: []string{"mine"},
			Inspector: jobs.InspectorFunc(func(context.Context, string, string) error { inspected++; return nil })}
		err := jobs.NewMux(h, nil, nil).ProcessTask(context.Background(), asynq.NewTask(tc.typ, []byte(tc.payload)))
		if !tc.refused {
			require.NoError(t, err, tc.name)
			require.Equal(t, 1, aborts.n+inspected, tc.name)
			continue
		}
		require.ErrorIs(t, err, asynq.SkipRetry, tc.name)
		require.ErrorContains(t, err, `bucket "theirs" is not one intake is configured for`, tc.name)
		require.Zero(t, aborts.n+inspected, "%s: acted on the foreign bucket", tc.name)
	}
}

// failingSweep is a Sweeper whose sweeps fail with err.
type failingSweep struct{ err error }

func (f failingSweep) SweepBucket(context.Context, string, string, time.Duration, func(context.Context, string, string) error) error {
	return f.err
}

// TestSweepTaskErrorClassification: a sweep's error joins its passes' (listing, overdue,
// interrupted). It is retried when any of them may pass on a retry: a listing refused with a 403
// joined with a PostgreSQL outage of the next pass used to be archived, judged by the 403 alone.
func TestSweepTaskErrorClassification(t *testing.T) {
	t.Parallel()
	listing := func(status int) error {
		return fmt.Errorf("list multipart uploads (after key \"\"): %w", statusError(status))
	}
	store := fmt.Errorf("find intake's uploads past their deadline: %w: %w", multipart.ErrStore, errors.New("connection refused"))
	sweep := func(errs ...error) error { return fmt.Errorf("sweep b: %w", errors.Join(errs...)) }
	for _, tc := range []struct {
		name      string
		err       error
		permanent bool
	}{
		{"listing refused", sweep(listing(403)), true},
		{"listing refused, then PostgreSQL down", sweep(listing(403), store), false},
		{"PostgreSQL down, then the listing refused", sweep(store, listing(403)), false},
		{"listing refused, then a store outage", sweep(listing(403), fmt.Errorf("abort: %w", statusError(503))), false},
		{"every part refused", sweep(listing(403), fmt.Errorf("abort: %w", statusError(400))), true},
		{"store unavailable", sweep(listing(503)), false},
		{"one candidate failed", fmt.Errorf("sweep b: 1 of 3 candidates failed, first: %w", statusError(403)), true},
	} {
		h := &jobs.Handlers{Sweeps: failingSweep{tc.err}}
		err := h.HandleSweep(context.Background(), asynq.NewTask(tasks.TypeSweep, []byte(`{"bucket":"b","older_than":"1h"}`)))
		require.ErrorIs(t, err, tc.err, tc.name)
		require.Equal(t, tc.permanent, errors.Is(err, asynq.SkipRetry), "%s: %v", tc.name, err)
	}
}

func TestMiddleware(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	m, err := jobs.NewMetrics(reg)
	require.NoError(t, err)
	_, err = jobs.NewMetrics(reg)
	require.Error(t, err, "registering twice is reported")
	var logs bytes.Buffer
	log := telemetry.NewLogger(&logs, "text", "debug")

	calls := map[string]func() error{
		"ok":    func() error { return nil },
		"skip":  func() error { return fmt.Errorf("bad: %w", asynq.SkipRetry) },
		"panic": func() error { panic("boom") },
	}
	mux := jobs.NewMux(&jobs.Handlers{Inspector: jobs.InspectorFunc(func(_ context.Context, _, key string) error {
		return calls[key]()
	})}, m, log)

	run := func(key string) error {
		task, err := tasks.NewInspectObject(tasks.InspectObject{Bucket: "b", Key: key})
		require.NoError(t, err)
		return mux.ProcessTask(context.Background(), task)
	}
	require.NoError(t, run("ok"))
	require.ErrorIs(t, run("skip"), asynq.SkipRetry)
	err = run("panic")
	require.ErrorContains(t, err, "panic in object:inspect handler: boom")

	require.Equal(t, 1.0, testkit.Value(t, m.Tasks.WithLabelValues(tasks.TypeInspectObject, jobs.OutcomeSuccess)))
	require.Equal(t, 1.0, testkit.Value(t, m.Tasks.WithLabelValues(tasks.TypeInspectObject, jobs.OutcomeFailed)))
	require.Equal(t, 1.0, testkit.Value(t, m.Tasks.WithLabelValues(tasks.TypeInspectObject, jobs.OutcomeRetry)))
	require.Contains(t, logs.String(), "task handler panicked")
	require.Contains(t, logs.String(), "task failed permanently")
	require.Contains(t, logs.String(), "task_type=object:inspect")
}

func TestPeriodStart(t *testing.T) {
	t.Parallel()
	base := time.Date(2030, 1, 1, 10, 15, 0, 0, time.UTC)
	tests := []struct {
		spec string
		now  time.Time
		want time.Time
	}{
		{"*/15 * * * *", base.Add(120 * time.Millisecond), base},
		{"*/15 * * * *", base.Add(-20 * time.Second), base}, // a replica whose clock is 20 s behind
		{"*/15 * * * *", base.Add(29 * time.Second), base},
		{"@hourly", base.Add(2 * time.Second), base},
		{"@every 1s", base.Add(1500 * time.Millisecond), base.Add(time.Second)},
		{"@every 10m", base.Add(7 * time.Minute), base.Add(5 * time.Minute)},
		{"@every 10ms", base.Add(1500 * time.Millisecond), base.Add(time.Second)}, // at least a second
	}
	for _, tt := range tests {
		require.Equal(t, tt.want, jobs.PeriodStart(tt.spec, tt.now), "%s at %s", tt.spec, tt.now)
	}
}

func TestNewSweepPeriodicValidates(t *testing.T) {
	t.Parallel()
	opt := asynq.RedisClientOpt{Addr: "127.0.0.1:6379"}
	for _, cfg := range []jobs.SweepPeriodicConfig{
		{Redis: opt, Bucket: "b", Cron: "not a cron", OlderThan: time.Hour},
		{Redis: opt, Bucket: "b", Cron: "*/15 * * * *"},
		{Redis: opt, Cron: "*/15 * * * *", OlderThan: time.Hour},
		{Bucket: "b", Cron: "*/15 * * * *", OlderThan: time.Hour},
	} {
		_, err := jobs.NewSweepPeriodic(cfg)
		require.Error(t, err, "%+v", cfg)
	}
	_, err := jobs.NewSweepPeriodic(jobs.SweepPeriodicConfig{Redis: opt, Bucket: "b", Cron: "*/15 * * * *", OlderThan: time.Hour})
	require.NoError(t, err)
}

func TestAsynqLogger(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	l := jobs.NewAsynqLogger(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo})))
	l.Debug("hidden")
	l.Info("hello ", 42)
	l.Fatal("bad")
	out := buf.String()
	require.NotContains(t, out, "hidden")
	require.Contains(t, out, `msg="hello 42"`)
	require.Contains(t, out, "component=asynq")
	require.Contains(t, out, "level=ERROR")
	require.Contains(t, out, "fatal=true")
}

// completedFound is a sweep that finds one of intake's uploads completed at key and hands it to
// the handler's inspect.
type completedFound struct{ key string }

func (s completedFound) SweepBucket(ctx context.Context, bucket, _ string, _ time.Duration, inspect func(context.Context, string, string) error) error {
	return inspect(ctx, bucket, s.key)
}

// TestSweepInspectionOnePerObject: the inspection a sweep queues for an upload it finds completed
// is one per object while it is queued (or running, or retrying), and one that failed for good
// (archived) is replaced by the next sweep's. With asynq.Unique (before), the archived one's lock
// kept the next sweep's (and the reconcile's) inspection out for about 8.5 hours.
func TestSweepInspectionOnePerObject(t *testing.T) {
	t.Parallel()
	skipShort(t)
	redisOpt := asynqRedis(t)
	client := asynq.NewClient(redisOpt)
	t.Cleanup(func() { _ = client.Close() })
	insp := asynq.NewInspector(redisOpt)
	t.Cleanup(func() { _ = insp.Close() })
	h := &jobs.Handlers{Sweeps: completedFound{key: "k/done.bin"}, Tasks: client, TaskStates: insp, Buckets: []string{"mine"}}
	sweep := asynq.NewTask(tasks.TypeSweep, []byte(`{"bucket":"mine","older_than":"1h"}`))
	require.NoError(t, h.HandleSweep(context.Background(), sweep))
	require.NoError(t, h.HandleSweep(context.Background(), sweep), "an inspection already queued is enough")

	pending, err := insp.ListPendingTasks(tasks.QueueDefault)
	require.NoError(t, err)
	require.Len(t, pending, 1, "one inspection for two sweeps")
	id := tasks.InspectTaskID("mine", "k/done.bin")
	require.Equal(t, id, pending[0].ID)

	require.NoError(t, insp.ArchiveTask(tasks.QueueDefault, id))
	require.NoError(t, h.HandleSweep(context.Background(), sweep))
	got, err := insp.GetTaskInfo(tasks.QueueDefault, id)
	require.NoError(t, err)
	require.Equal(t, asynq.TaskStatePending, got.State, "the inspection that failed for good is queued again")
}
