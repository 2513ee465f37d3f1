package jobs_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/google/uuid"
	"github.com/hibiken/asynq"
	"github.com/stretchr/testify/require"

	"github.com/intakehq/intake/internal/multipart"
	"github.com/intakehq/intake/internal/objstore"
	"github.com/intakehq/intake/internal/store"
	"github.com/intakehq/intake/internal/testkit"
	"github.com/intakehq/intake/pipeline"
	"github.com/intakehq/intake/worker/jobs"
	"github.com/intakehq/intake/worker/tasks"
)

// TestDeadlineAbort runs a real asynq server: an upload left open is aborted once its deadline and
// grace have passed (the deadline set so that the task is due in about 2 s) and recorded; a completed upload whose task was cancelled is untouched and its task is gone; a
// completed upload whose cancellation never came is found "gone", its intent completed (the
// object at its key says so) and its object inspected (its event is late or was never sent).
func TestDeadlineAbort(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := b.ctx

	client := asynq.NewClient(b.redis)
	t.Cleanup(func() { _ = client.Close() })
	insp := asynq.NewInspector(b.redis)
	t.Cleanup(func() { _ = insp.Close() })
	aborts := tasks.NewAborts(client)
	canceller := tasks.NewCanceller(insp)

	ups := testkit.CreateUploads(t, ctx, b.s3, b.bucket, []string{"open/left.bin", "done/cancelled.bin", "done/late-event.bin"}, 3)
	left, cancelled, late := ups[0], ups[1], ups[2]
	leftIntent := intent(t, ctx, b.st, b.bucket, left)
	lateIntent := intent(t, ctx, b.st, b.bucket, late)
	part := bytes.Repeat([]byte("x"), 1234)
	for _, u := range ups {
		b.uploadPart1(t, u, part, u != left)
	}

	// Due (tasks.AbortDue) in about two seconds.
	deadline := time.Now().Add(-tasks.AbortGrace)
	for _, id := range []uuid.UUID{leftIntent, lateIntent} {
		setDeadline(t, b, id, deadline)
	}
	for _, u := range ups {
		require.NoError(t, aborts.ScheduleAbort(ctx, b.bucket, u.Key, u.ID, deadline))
	}
	// Scheduling the same upload again is not an error, and does not add a task.
	require.NoError(t, aborts.ScheduleAbort(ctx, b.bucket, left.Key, left.ID, deadline.Add(time.Hour)))
	info, err := insp.GetTaskInfo(tasks.QueueCritical, left.ID)
	require.NoError(t, err)
	require.Equal(t, asynq.TaskStateScheduled, info.State)
	require.WithinDuration(t, tasks.AbortDue(deadline), info.NextProcessAt, time.Second, "due a little after the deadline and grace, never before")

	// The consumer saw cancelled's CompleteMultipartUpload: its task is deleted.
	require.NoError(t, canceller.CancelMultipartAbort(ctx, cancelled.ID))
	_, err = insp.GetTaskInfo(tasks.QueueCritical, cancelled.ID)
	require.ErrorIs(t, err, asynq.ErrTaskNotFound)
	require.NoError(t, canceller.CancelMultipartAbort(ctx, cancelled.ID), "cancelling twice is fine")

	// The jobs role's Inspector: the pipeline, with the default policy. No consumer runs here, so
	// no event records any of the objects.
	proc, err := pipeline.NewProcessor(pipeline.ProcessorConfig{
		Objects: objstore.NewObjects(b.s3), Records: store.NewRecords(b.st), Buckets: []string{b.bucket}, Log: b.log,
	})
	require.NoError(t, err)
	srv, err := jobs.NewServer(jobs.ServerConfig{Redis: b.redis, Concurrency: 4, ShutdownTimeout: 5 * time.Second,
		DelayedTaskCheckInterval: time.Second, Log: b.log}, jobs.NewMux(&jobs.Handlers{Aborts: b.mp, Sweeps: b.mp, Inspector: proc, Log: b.log}, b.metrics, b.log))
	require.NoError(t, err)
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- srv.Run(runCtx) }()
	t.Cleanup(func() {
		stop()
		require.NoError(t, <-done)
	})

	// Each abort writes its row ("aborting") before S3 is asked, and settles it after.
	settled := func() bool {
		rows := abortRows(t, ctx, b.st, b.bucket)
		for _, r := range rows {
			if r.Outcome == multipart.OutcomeAborting {
				return false
			}
		}
		return len(rows) == 2
	}
	require.Eventually(t, settled, 60*time.Second, 200*time.Millisecond,
		"both remaining abort tasks should run; log:\n%s", b.logBuf)
	rows := abortRows(t, ctx, b.st, b.bucket)
	require.Equal(t, "aborted", rows[left.ID].Outcome)
	require.Equal(t, "deadline", rows[left.ID].Reason)
	require.NotNil(t, rows[left.ID].Initiated, "initiated comes from the intent")
	require.Equal(t, "gone", rows[late.ID].Outcome)
	require.NotContains(t, rows, cancelled.ID)

	_, err = b.s3.ListParts(ctx, &s3.ListPartsInput{Bucket: aws.String(b.bucket), Key: aws.String(left.Key), UploadId: aws.String(left.ID)})
	require.True(t, objstore.IsNotFound(err), "the open upload is aborted: %v", err)
	for _, u := range []testkit.Upload{cancelled, late} {
		head, err := b.s3.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(b.bucket), Key: aws.String(u.Key)})
		require.NoError(t, err, "completed object %s is untouched", u.Key)
		require.EqualValues(t, len(part), aws.ToInt64(head.ContentLength))
	}
	got, err := testkit.GetUpload(ctx, b.st.Pool, leftIntent)
	require.NoError(t, err)
	require.Equal(t, "aborted", got.Status)
	got, err = testkit.GetUpload(ctx, b.st.Pool, lateIntent)
	require.NoError(t, err)
	require.Equal(t, "completed", got.Status, "a gone upload whose object exists completed")

	require.Eventually(t, func() bool {
		return testkit.Value(t, b.metrics.Tasks.WithLabelValues(tasks.TypeAbortMultipart, jobs.OutcomeSuccess)) == 2
	}, 10*time.Second, 50*time.Millisecond)
	// The late upload's object was inspected by its abort task (its intent declared 1 byte, so the
	// verdict is a rejection); the others were not looked at.
	row, err := testkit.GetObject(ctx, b.st.Pool, b.bucket, late.Key)
	require.NoError(t, err, "the completed upload's object is recorded without its event")
	require.Equal(t, pipeline.StatusRejected, row.Status)
	require.Equal(t, pipeline.ReasonSizeMismatch, *row.Reason)
	require.EqualValues(t, len(part), *row.Size)
	for _, u := range []testkit.Upload{left, cancelled} {
		_, err := testkit.GetObject(ctx, b.st.Pool, b.bucket, u.Key)
		require.Error(t, err, "%s has no row", u.Key)
	}
	require.Equal(t, 1.0, testkit.Value(t, b.mpMetrics.Aborted.WithLabelValues(multipart.ReasonDeadline)))
	require.Equal(t, float64(len(part)), testkit.Value(t, b.mpMetrics.BytesReclaimed))
	for _, u := range ups {
		_, err := insp.GetTaskInfo(tasks.QueueCritical, u.ID)
		require.ErrorIs(t, err, asynq.ErrTaskNotFound, "no abort task is left for %s", u.Key)
	}
}

// TestSweepPeriodicsOnePerPeriod runs two sweep Periodics at once on a one-second schedule and
// checks that every period got exactly one sweep task although both fired in it.
func TestSweepPeriodicsOnePerPeriod(t *testing.T) {
	t.Parallel()
	skipShort(t)
	redisOpt := asynqRedis(t)
	var mu sync.Mutex
	fires := map[int64]int{} // period start -> fires seen
	now := func() time.Time {
		n := time.Now()
		mu.Lock()
		fires[jobs.PeriodStart("@every 1s", n).Unix()]++
		mu.Unlock()
		return n
	}
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for range 2 {
		s, err := jobs.NewSweepPeriodic(jobs.SweepPeriodicConfig{Redis: redisOpt, Bucket: "b1", Cron: "@every 1s", OlderThan: time.Hour, Now: now})
		require.NoError(t, err)
		wg.Go(func() { require.NoError(t, s.Run(ctx)) })
	}
	// Until both have fired in at least three periods (bounded: a busy machine delays fires, it
	// does not stop them).
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		total := 0
		for _, n := range fires {
			total += n
		}
		return total >= 6
	}, 30*time.Second, 50*time.Millisecond)
	stop()
	wg.Wait()

	insp := asynq.NewInspector(redisOpt)
	t.Cleanup(func() { _ = insp.Close() })
	pending, err := insp.ListPendingTasks(tasks.QueueLow, asynq.PageSize(100))
	require.NoError(t, err)
	ids := map[string]bool{}
	for _, ti := range pending {
		require.Equal(t, tasks.TypeSweep, ti.Type)
		require.True(t, strings.HasPrefix(ti.ID, "sweep:b1:"), ti.ID)
		ids[ti.ID] = true
	}
	mu.Lock()
	defer mu.Unlock()
	total := 0
	for w, n := range fires {
		total += n
		require.True(t, ids[tasks.SweepTaskID("b1", time.Unix(w, 0))], "period %d fired %d times but has no task", w, n)
	}
	t.Logf("%d fires over %d periods, %d sweep tasks", total, len(fires), len(pending))
	require.Len(t, pending, len(fires), "one task per period")
	require.Len(t, ids, len(pending))
	require.GreaterOrEqual(t, total, 6, "both Periodics fired")
	require.Less(t, len(pending), total, "the second Periodic's enqueues were absorbed")
}

// TestServerStopsOnCancel checks graceful shutdown: a running task finishes within the timeout and
// Run returns nil after its context ends.
func TestServerStopsOnCancel(t *testing.T) {
	t.Parallel()
	skipShort(t)
	redisOpt := asynqRedis(t)
	started, finished := make(chan struct{}), make(chan struct{})
	inspector := jobs.InspectorFunc(func(ctx context.Context, bucket, key string) error {
		close(started)
		select {
		case <-time.After(500 * time.Millisecond):
			close(finished)
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	})
	srv, err := jobs.NewServer(jobs.ServerConfig{Redis: redisOpt, ShutdownTimeout: 10 * time.Second},
		jobs.NewMux(&jobs.Handlers{Inspector: inspector}, nil, nil))
	require.NoError(t, err)
	client := asynq.NewClient(redisOpt)
	t.Cleanup(func() { _ = client.Close() })
	task, err := tasks.NewInspectObject(tasks.InspectObject{Bucket: "b", Key: "k"})
	require.NoError(t, err)
	_, err = tasks.Enqueue(context.Background(), client, task)
	require.NoError(t, err)

	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	select {
	case <-started:
	case err := <-done:
		t.Fatalf("server stopped early: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("task never started")
	}
	stop()
	require.NoError(t, <-done)
	select {
	case <-finished:
	default:
		t.Fatal("Run returned before the running task finished")
	}
}

// TestServerWaitsForRedis: a jobs server started while Redis does not answer (a real proxy in
// front of it, cut) neither fails nor runs tasks; once Redis is back it starts and runs the task
// queued meanwhile. Cancelled while it waits, Run returns nil at once.
func TestServerWaitsForRedis(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("needs Redis and toxiproxy")
	}
	opt := asynqRedis(t)
	proxy := testkit.NewProxy(t, "redis", opt.Addr)
	proxy.Down()
	viaProxy := opt
	viaProxy.Addr = proxy.Addr

	ran := make(chan string, 1)
	mux := asynq.NewServeMux()
	mux.HandleFunc("test:wait", func(_ context.Context, task *asynq.Task) error {
		ran <- string(task.Payload())
		return nil
	})
	var logs testkit.SyncBuffer
	srv, err := jobs.NewServer(jobs.ServerConfig{Redis: viaProxy, ShutdownTimeout: 5 * time.Second,
		Log: slog.New(slog.NewJSONHandler(&logs, nil))}, mux)
	require.NoError(t, err)
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()

	client := asynq.NewClient(opt) // Redis itself, not through the proxy
	defer client.Close()
	_, err = client.Enqueue(asynq.NewTask("test:wait", []byte("queued during the outage")), asynq.Queue(tasks.QueueDefault))
	require.NoError(t, err)
	select {
	case err := <-done:
		t.Fatalf("Run returned while Redis was down: %v", err)
	case p := <-ran:
		t.Fatalf("a task ran while Redis was down: %s", p)
	case <-time.After(2500 * time.Millisecond):
	}
	require.Contains(t, logs.String(), "redis does not answer")

	proxy.Up()
	select {
	case p := <-ran:
		require.Equal(t, "queued during the outage", p)
	case err := <-done:
		t.Fatalf("Run returned: %v", err)
	case <-time.After(45 * time.Second):
		t.Fatalf("the task did not run within 45 s of Redis coming back; log:\n%s", logs.String())
	}
	stop()
	require.NoError(t, <-done)

	// Cancelled while waiting: nil, promptly.
	srv, err = jobs.NewServer(jobs.ServerConfig{Redis: asynq.RedisClientOpt{Addr: "127.0.0.1:1"}}, asynq.NewServeMux())
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	began := time.Now()
	require.NoError(t, srv.Run(ctx))
	require.Less(t, time.Since(began), 10*time.Second)

	// So does a periodic scheduler.
	var plogs testkit.SyncBuffer
	per, err := jobs.NewPeriodic(jobs.PeriodicConfig{Redis: asynq.RedisClientOpt{Addr: "127.0.0.1:1"}, Name: "test",
		Task: asynq.NewTask("test:periodic", nil), TaskID: func(time.Time) string { return "p" }, Cron: "@every 1m",
		Log: slog.New(slog.NewJSONHandler(&plogs, nil))})
	require.NoError(t, err)
	pctx, pcancel := context.WithTimeout(context.Background(), 8*time.Second)
	defer pcancel()
	require.NoError(t, per.Run(pctx))
	require.Contains(t, plogs.String(), "test scheduler: redis does not answer")
}

func asynqRedis(t *testing.T) asynq.RedisClientOpt {
	t.Helper()
	return asynq.RedisClientOpt{Addr: testkit.RedisAddr(), DB: testkit.RedisDB(t)}
}

// TestHandlersThroughMux runs a sweep task and an operator's abort task through the mux (payload
// decoding, middleware, metrics) against MinIO and PostgreSQL. The sweep task passes the handlers'
// Inspector for an upload of intake's it finds completed past its deadline (its event never came).
func TestHandlersThroughMux(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := b.ctx
	var (
		mu        sync.Mutex // the sweep's aborts run concurrently
		inspected []string
	)
	inspector := jobs.InspectorFunc(func(_ context.Context, bucket, key string) error {
		mu.Lock()
		defer mu.Unlock()
		inspected = append(inspected, bucket+"/"+key)
		return nil
	})
	// A minimum sweep age of a second (a minute by default) keeps the test short.
	mux := jobs.NewMux(&jobs.Handlers{Aborts: b.mp, Sweeps: b.mp, Inspector: inspector, Log: b.log, MinSweepAge: time.Second}, b.metrics, b.log)

	ups := testkit.CreateUploads(t, ctx, b.s3, b.bucket, []string{"s/0.bin", "s/1.bin", "s/2.bin"}, 3)
	done := testkit.CreateUploads(t, ctx, b.s3, b.bucket, []string{"s/done.bin"}, 1)[0]
	b.uploadPart1(t, done, []byte("x"), true)
	doneIntent := intent(t, ctx, b.st, b.bucket, done)
	_, err := b.st.Pool.Exec(ctx, "UPDATE uploads SET expires_at = now() - interval '3 minutes' WHERE id = $1", doneIntent)
	require.NoError(t, err)
	time.Sleep(1200 * time.Millisecond)
	sweep, err := tasks.NewSweep(tasks.Sweep{Bucket: b.bucket, OlderThan: tasks.Duration(time.Second)})
	require.NoError(t, err)
	require.NoError(t, mux.ProcessTask(ctx, sweep))
	require.Empty(t, testkit.OpenUploads(t, ctx, b.s3, b.bucket))
	require.Equal(t, 3.0, testkit.Value(t, b.mpMetrics.Aborted.WithLabelValues(multipart.ReasonSweep)))
	require.Equal(t, 1.0, testkit.Value(t, b.metrics.Tasks.WithLabelValues(tasks.TypeSweep, jobs.OutcomeSuccess)))
	require.Equal(t, []string{b.bucket + "/" + done.Key}, inspected, "only the completed upload is inspected")
	got, err := testkit.GetUpload(ctx, b.st.Pool, doneIntent)
	require.NoError(t, err)
	require.Equal(t, "completed", got.Status)

	op := testkit.CreateUploads(t, ctx, b.s3, b.bucket, []string{"op/x.bin"}, 1)[0]
	abort, err := tasks.NewAbortMultipart(tasks.AbortMultipart{Bucket: b.bucket, Key: op.Key, UploadID: op.ID,
		Deadline: time.Now(), Reason: tasks.ReasonAPI})
	require.NoError(t, err)
	require.NoError(t, mux.ProcessTask(ctx, abort))
	rows := abortRows(t, ctx, b.st, b.bucket)
	require.Len(t, rows, 5)
	require.Equal(t, "gone", rows[done.ID].Outcome)
	require.Equal(t, "api", rows[op.ID].Reason)
	require.Equal(t, "aborted", rows[op.ID].Outcome)
	for _, u := range ups {
		require.Equal(t, "sweep", rows[u.ID].Reason)
	}
	require.Equal(t, 1.0, testkit.Value(t, b.mpMetrics.Aborted.WithLabelValues(multipart.ReasonAPI)))
}

// TestSweepTaskQueuesInspections: an upload of intake's the sweep finds completed (its event and
// its abort task both lost) gets an object:inspect task of its own, unique like the reconcile's,
// instead of an inspection inside the sweep; without a client to enqueue with, the inspection
// runs inline and its failure does not fail the sweep. A failed sweep is retried, and the retry
// would list the whole bucket again without finding that upload (it is recorded and no longer
// listed): the inspection could not be done again that way.
func TestSweepTaskQueuesInspections(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := b.ctx
	client := asynq.NewClient(b.redis)
	t.Cleanup(func() { _ = client.Close() })
	insp := asynq.NewInspector(b.redis)
	t.Cleanup(func() { _ = insp.Close() })
	var inline []string
	failing := jobs.InspectorFunc(func(_ context.Context, _, key string) error {
		inline = append(inline, key) // the sweep's one candidate per prefix: no concurrent calls
		return errors.New("pipeline: connection refused")
	})
	completed := func(key string) testkit.Upload {
		u := testkit.CreateUploads(t, ctx, b.s3, b.bucket, []string{key}, 1)[0]
		b.uploadPart1(t, u, []byte("x"), true)
		id := intent(t, ctx, b.st, b.bucket, u)
		_, err := b.st.Pool.Exec(ctx, "UPDATE uploads SET expires_at = now() - interval '3 minutes' WHERE id = $1", id)
		require.NoError(t, err)
		return u
	}
	sweep := func(prefix string) *asynq.Task {
		task, err := tasks.NewSweep(tasks.Sweep{Bucket: b.bucket, Prefix: prefix, OlderThan: tasks.Duration(time.Hour)})
		require.NoError(t, err)
		return task
	}

	queued := completed("q/done.bin")
	mux := jobs.NewMux(&jobs.Handlers{Sweeps: b.mp, Inspector: failing, Tasks: client, Buckets: []string{b.bucket}, Log: b.log}, b.metrics, b.log)
	require.NoError(t, mux.ProcessTask(ctx, sweep("q/")))
	require.Empty(t, inline, "inspected inside the sweep")
	pending, err := insp.ListPendingTasks(tasks.QueueDefault)
	require.NoError(t, err)
	require.Len(t, pending, 1)
	require.Equal(t, tasks.TypeInspectObject, pending[0].Type)
	p, err := tasks.ParseInspectObject(pending[0].Payload)
	require.NoError(t, err)
	require.Equal(t, tasks.InspectObject{Bucket: b.bucket, Key: queued.Key}, p)
	require.Equal(t, "gone", abortRows(t, ctx, b.st, b.bucket)[queued.ID].Outcome)

	inlined := completed("r/done.bin")
	mux = jobs.NewMux(&jobs.Handlers{Sweeps: b.mp, Inspector: failing, Buckets: []string{b.bucket}, Log: b.log}, b.metrics, b.log)
	require.NoError(t, mux.ProcessTask(ctx, sweep("r/")), "a failed inspection does not fail the sweep")
	require.Equal(t, []string{inlined.Key}, inline)
	require.Equal(t, "gone", abortRows(t, ctx, b.st, b.bucket)[inlined.ID].Outcome)
	require.Contains(t, b.logBuf.String(), "the reconcile will inspect it")
}

// TestPeriodicRunsPastAHeartbeat runs one Periodic for more than ten seconds: asynq.Scheduler,
// which Periodic used to drive, writes its entries (their options included) to Redis every ten
// seconds from a goroutine of its own, while the pre-enqueue hook rewrote the task ID in those
// options: under -race, this test failed with the data race. Each period still gets its task.
func TestPeriodicRunsPastAHeartbeat(t *testing.T) {
	t.Parallel()
	skipShort(t)
	redisOpt := asynqRedis(t)
	var mu sync.Mutex
	periods := map[int64]bool{}
	now := func() time.Time {
		n := time.Now()
		mu.Lock()
		periods[jobs.PeriodStart("@every 1s", n).Unix()] = true
		mu.Unlock()
		return n
	}
	s, err := jobs.NewSweepPeriodic(jobs.SweepPeriodicConfig{Redis: redisOpt, Bucket: "b1", Cron: "@every 1s", OlderThan: time.Hour, Now: now})
	require.NoError(t, err)
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	// Fires span more than the Scheduler's ten-second heartbeat (bounded: a busy machine delays
	// fires, it does not stop them).
	first := time.Now()
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(periods) >= 12 && time.Since(first) > 11*time.Second
	}, 60*time.Second, 100*time.Millisecond)
	stop()
	require.NoError(t, <-done)

	insp := asynq.NewInspector(redisOpt)
	t.Cleanup(func() { _ = insp.Close() })
	pending, err := insp.ListPendingTasks(tasks.QueueLow, asynq.PageSize(100))
	require.NoError(t, err)
	mu.Lock()
	defer mu.Unlock()
	require.Len(t, pending, len(periods), "one task per period")
	for _, ti := range pending {
		w, err := strconv.ParseInt(strings.TrimPrefix(ti.ID, "sweep:b1:"), 10, 64)
		require.NoError(t, err, ti.ID)
		require.True(t, periods[w], "task %s of a period that did not fire", ti.ID)
	}
}

// statusError is an error carrying an HTTP status, as S3's do.
type statusError int

func (e statusError) Error() string       { return "status " + strconv.Itoa(int(e)) }
func (e statusError) HTTPStatusCode() int { return int(e) }

// TestAbortTaskInspectionErrors: an abort task that finds its upload completed has the object
// inspected after the abort's outcome is recorded, and the inspection's error decides the retry by
// the pipeline's classification, not by S3's status: a permanent one is not retried, any other
// is, even one that carries a 403 (an S3 error of the abort itself with that status would not be).
// A retry of the task records the same outcome and inspects again.
func TestAbortTaskInspectionErrors(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := b.ctx
	tests := []struct {
		name      string
		inspect   error
		skipRetry bool
	}{
		{name: "inspected", inspect: nil},
		{name: "permanent", inspect: fmt.Errorf("policy: %w", pipeline.ErrPermanent), skipRetry: true},
		{name: "transient with a 403 inside", inspect: fmt.Errorf("head: %w", statusError(403))},
		{name: "store down", inspect: errors.New("record: connection refused")},
	}
	for i, tt := range tests {
		u := testkit.CreateUploads(t, ctx, b.s3, b.bucket, []string{fmt.Sprintf("insp/%d.bin", i)}, 1)[0]
		b.uploadPart1(t, u, []byte("x"), true)
		id := intent(t, ctx, b.st, b.bucket, u)
		deadline := time.Now().Add(-tasks.AbortGrace - time.Second)
		setDeadline(t, b, id, deadline)
		var calls []string
		mux := jobs.NewMux(&jobs.Handlers{Aborts: b.mp, Log: b.log, Inspector: jobs.InspectorFunc(func(_ context.Context, bucket, key string) error {
			calls = append(calls, bucket+"/"+key)
			return tt.inspect
		})}, b.metrics, b.log)
		task, err := tasks.NewAbortMultipart(tasks.AbortMultipart{Bucket: b.bucket, Key: u.Key, UploadID: u.ID, Deadline: deadline})
		require.NoError(t, err)
		err = mux.ProcessTask(ctx, task)
		if tt.inspect == nil {
			require.NoError(t, err, tt.name)
		} else {
			require.ErrorIs(t, err, tt.inspect, tt.name)
			require.Equal(t, tt.skipRetry, errors.Is(err, asynq.SkipRetry), "%s: %v", tt.name, err)
		}
		require.Equal(t, []string{b.bucket + "/" + u.Key}, calls, tt.name)
		require.Equal(t, "gone", abortRows(t, ctx, b.st, b.bucket)[u.ID].Outcome, "%s: the abort is recorded first", tt.name)
		got, err := testkit.GetUpload(ctx, b.st.Pool, id)
		require.NoError(t, err)
		require.Equal(t, "completed", got.Status, tt.name)

		// asynq's retry of the task.
		err = mux.ProcessTask(ctx, task)
		require.Len(t, calls, 2, "%s: the retry inspects again", tt.name)
		require.Equal(t, tt.inspect == nil, err == nil, tt.name)
		require.Equal(t, "gone", abortRows(t, ctx, b.st, b.bucket)[u.ID].Outcome, tt.name)
	}
}

// TestAbortTaskRunEarly: a deadline abort task run before its deadline and grace (an operator's
// `intake jobs run --all --state scheduled`, asynqmon's "Run", a worker whose clock is behind)
// aborts nothing and records nothing, however little early: the owner was promised the upload
// until the deadline (a minute's tolerance used to abort up to 60 s early), and a complete accepted
// just before it may still be running for tasks.AbortGrace after it (the 2 s grace there was let
// such a run abort, and lose, an upload whose complete the API had accepted). The run fails with
// a retryable EarlyError, so that the task runs again; once the grace has passed the same task
// aborts.
func TestAbortTaskRunEarly(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := b.ctx
	up := testkit.CreateUploads(t, ctx, b.s3, b.bucket, []string{"early/x.bin"}, 1)[0]
	deadline := time.Now().Add(time.Hour)
	task, err := tasks.NewAbortMultipart(tasks.AbortMultipart{Bucket: b.bucket, Key: up.Key, UploadID: up.ID, Deadline: deadline})
	require.NoError(t, err)

	for _, at := range []time.Duration{-time.Hour, -59 * time.Second, -time.Second, -time.Nanosecond, 0, 2 * time.Second, tasks.AbortGrace - time.Nanosecond} {
		mux := jobs.NewMux(&jobs.Handlers{Aborts: b.mp, Log: b.log, Now: func() time.Time { return deadline.Add(at) }}, b.metrics, b.log)
		err := mux.ProcessTask(ctx, task)
		var ee *jobs.EarlyError
		require.ErrorAs(t, err, &ee, "run at deadline%+v", at)
		require.True(t, deadline.Equal(ee.Deadline), "run at deadline%+v", at)
		require.NotErrorIs(t, err, asynq.SkipRetry, "run at deadline%+v: the task must run again", at)
		require.Contains(t, testkit.OpenUploads(t, ctx, b.s3, b.bucket), up.ID, "aborted at deadline%+v", at)
		require.Empty(t, abortRows(t, ctx, b.st, b.bucket), "an abort recorded at deadline%+v", at)
	}
	require.Equal(t, 7.0, testkit.Value(t, b.metrics.Tasks.WithLabelValues(tasks.TypeAbortMultipart, jobs.OutcomeEarly)))
	require.Zero(t, testkit.Value(t, b.metrics.Tasks.WithLabelValues(tasks.TypeAbortMultipart, jobs.OutcomeRetry)), "an early run is no failure")
	require.NotContains(t, b.logBuf.String(), "task failed; will retry")
	require.Contains(t, b.logBuf.String(), "level=INFO msg=\"task run before its time; runs again then\"")

	late := jobs.NewMux(&jobs.Handlers{Aborts: b.mp, Log: b.log, Now: func() time.Time { return deadline.Add(tasks.AbortGrace) }}, b.metrics, b.log)
	require.NoError(t, late.ProcessTask(ctx, task))
	require.NotContains(t, testkit.OpenUploads(t, ctx, b.s3, b.bucket), up.ID)
	require.Equal(t, "aborted", abortRows(t, ctx, b.st, b.bucket)[up.ID].Outcome)
}

// TestAbortTaskRunEarlyIsRetriedAtItsDeadline runs a real server: a deadline abort run an hour
// early (forced due now, as `intake jobs run` does) goes back to Redis to be retried at
// tasks.AbortDue(deadline), without using up a retry; it used to be consumed, and the
// upload left to the next sweep.
func TestAbortTaskRunEarlyIsRetriedAtItsDeadline(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := b.ctx
	up := testkit.CreateUploads(t, ctx, b.s3, b.bucket, []string{"early/served.bin"}, 1)[0]
	deadline := time.Now().Add(time.Hour).Truncate(time.Second)
	task, err := tasks.NewAbortMultipart(tasks.AbortMultipart{Bucket: b.bucket, Key: up.Key, UploadID: up.ID, Deadline: deadline})
	require.NoError(t, err)
	client := asynq.NewClient(b.redis)
	t.Cleanup(func() { _ = client.Close() })
	insp := asynq.NewInspector(b.redis)
	t.Cleanup(func() { _ = insp.Close() })
	_, err = client.EnqueueContext(ctx, task, asynq.ProcessIn(0))
	require.NoError(t, err)

	srv, err := jobs.NewServer(jobs.ServerConfig{Redis: b.redis, ShutdownTimeout: 5 * time.Second, Log: b.log},
		jobs.NewMux(&jobs.Handlers{Aborts: b.mp, Log: b.log}, b.metrics, b.log))
	require.NoError(t, err)
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- srv.Run(runCtx) }()
	t.Cleanup(func() {
		stop()
		require.NoError(t, <-done)
	})

	var info *asynq.TaskInfo
	require.Eventually(t, func() bool {
		info, err = insp.GetTaskInfo(tasks.QueueCritical, up.ID)
		return err == nil && info.State == asynq.TaskStateRetry
	}, 30*time.Second, 50*time.Millisecond, "the early run should be retried; log:\n%s", b.logBuf)
	require.WithinDuration(t, tasks.AbortDue(deadline), info.NextProcessAt, 2*time.Second)
	require.Zero(t, info.Retried, "an early run is no failure")
	require.Contains(t, info.LastErr, "before its deadline")
	require.Contains(t, testkit.OpenUploads(t, ctx, b.s3, b.bucket), up.ID)
	require.Empty(t, abortRows(t, ctx, b.st, b.bucket))
}

// TestAbortTaskWrongKey: an operator's abort task naming one of intake's upload ids with another
// key (a typo in POST /v1/jobs) is refused without retry: nothing is aborted, nothing recorded,
// and the real upload's intent stays pending (it used to be settled aborted, with upload.aborted
// sent, while S3 kept the upload open).
func TestAbortTaskWrongKey(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := b.ctx
	up := testkit.CreateUploads(t, ctx, b.s3, b.bucket, []string{"typo/real.bin"}, 1)[0]
	id := intent(t, ctx, b.st, b.bucket, up)
	task, err := tasks.NewAbortMultipart(tasks.AbortMultipart{Bucket: b.bucket, Key: "typo/reel.bin", UploadID: up.ID,
		Deadline: time.Now(), Reason: tasks.ReasonAPI})
	require.NoError(t, err)
	mux := jobs.NewMux(&jobs.Handlers{Aborts: b.mp, Log: b.log}, b.metrics, b.log)
	err = mux.ProcessTask(ctx, task)
	require.ErrorIs(t, err, asynq.SkipRetry)
	require.ErrorContains(t, err, `created for "typo/real.bin"`)
	require.Contains(t, testkit.OpenUploads(t, ctx, b.s3, b.bucket), up.ID)
	require.Empty(t, abortRows(t, ctx, b.st, b.bucket))
	got, err := testkit.GetUpload(ctx, b.st.Pool, id)
	require.NoError(t, err)
	require.Equal(t, "pending", got.Status)
}

// TestPeriodicSurvivesAPanic: a fire that panics (here the clock the period is read from) is
// logged, and the schedule goes on: the next fires enqueue their periods' tasks. Without the
// recovery, the panic would end the scheduler role's process.
func TestPeriodicSurvivesAPanic(t *testing.T) {
	t.Parallel()
	skipShort(t)
	redisOpt := asynqRedis(t)
	var calls atomic.Int32
	now := func() time.Time {
		if calls.Add(1) == 1 {
			panic("clock broke")
		}
		return time.Now()
	}
	s, err := jobs.NewSweepPeriodic(jobs.SweepPeriodicConfig{Redis: redisOpt, Bucket: "b1", Cron: "@every 1s", OlderThan: time.Hour, Now: now})
	require.NoError(t, err)
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	insp := asynq.NewInspector(redisOpt)
	t.Cleanup(func() { _ = insp.Close() })
	require.Eventually(t, func() bool {
		pending, err := insp.ListPendingTasks(tasks.QueueLow, asynq.PageSize(100))
		return err == nil && len(pending) >= 1 && calls.Load() >= 2
	}, 30*time.Second, 100*time.Millisecond, "a period after the panic enqueued its task")
	stop()
	require.NoError(t, <-done)
}

// TestAPIAbortRunsBeforeTheDeadline: an app's "abort now" (a ReasonAPI task built with
// tasks.NewAbortMultipart, as a backend sharing intake's Redis does) of an upload whose deadline
// task was scheduled at creation, 24 h away, runs at once on a real server: it used to get the
// deadline task's ID, was answered as its duplicate, and waited for the deadline.
func TestAPIAbortRunsBeforeTheDeadline(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := b.ctx
	client := asynq.NewClient(b.redis)
	t.Cleanup(func() { _ = client.Close() })
	insp := asynq.NewInspector(b.redis)
	t.Cleanup(func() { _ = insp.Close() })

	up := testkit.CreateUploads(t, ctx, b.s3, b.bucket, []string{"now/x.bin"}, 1)[0]
	deadline := time.Now().Add(24 * time.Hour)
	setDeadline(t, b, intent(t, ctx, b.st, b.bucket, up), deadline)
	require.NoError(t, tasks.NewAborts(client).ScheduleAbort(ctx, b.bucket, up.Key, up.ID, deadline))

	abort, err := tasks.NewAbortMultipart(tasks.AbortMultipart{Bucket: b.bucket, Key: up.Key, UploadID: up.ID,
		Deadline: time.Now(), Reason: tasks.ReasonAPI})
	require.NoError(t, err)
	info, err := tasks.Enqueue(ctx, client, abort)
	require.NoError(t, err)
	require.False(t, tasks.Duplicate(info), "not the deadline task's duplicate")

	srv, err := jobs.NewServer(jobs.ServerConfig{Redis: b.redis, ShutdownTimeout: 5 * time.Second, Log: b.log},
		jobs.NewMux(&jobs.Handlers{Aborts: b.mp, Log: b.log}, b.metrics, b.log))
	require.NoError(t, err)
	testkit.Serve(t, srv.Run)

	require.Eventually(t, func() bool {
		r, ok := abortRows(t, ctx, b.st, b.bucket)[up.ID]
		return ok && r.Outcome == "aborted"
	}, 30*time.Second, 100*time.Millisecond, "the abort asked for now did not run; log:\n%s", b.logBuf)
	require.Equal(t, "api", abortRows(t, ctx, b.st, b.bucket)[up.ID].Reason)
	_, err = b.s3.ListParts(ctx, &s3.ListPartsInput{Bucket: aws.String(b.bucket), Key: aws.String(up.Key), UploadId: aws.String(up.ID)})
	require.True(t, objstore.IsNotFound(err), "the upload is aborted: %v", err)
}
