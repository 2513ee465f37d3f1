package jobs_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/hibiken/asynq"
	"github.com/stretchr/testify/require"

	"github.com/intakehq/intake/internal/objstore"
	"github.com/intakehq/intake/internal/testkit"
	"github.com/intakehq/intake/worker/jobs"
	"github.com/intakehq/intake/worker/tasks"
)

// TestDeadlineAbort runs a real asynq server: an upload left open is aborted after its 2 s deadline
// and recorded; a completed upload whose task was cancelled is untouched and its task is gone; a
// completed upload whose cancellation never came is found "gone" and its intent is left alone.
func TestDeadlineAbort(t *testing.T) {
	t.Parallel()
	b := setup(t, jobs.MultipartConfig{})
	ctx := b.ctx

	client := asynq.NewClient(b.redis)
	t.Cleanup(func() { _ = client.Close() })
	insp := asynq.NewInspector(b.redis)
	t.Cleanup(func() { _ = insp.Close() })
	sched := tasks.NewScheduler(client)
	canceller := tasks.NewCanceller(insp)

	ups := createUploads(t, ctx, b.s3, b.bucket, []string{"open/left.bin", "done/cancelled.bin", "done/late-event.bin"}, 3)
	left, cancelled, late := ups[0], ups[1], ups[2]
	leftIntent := intent(t, ctx, b.st, b.bucket, left)
	lateIntent := intent(t, ctx, b.st, b.bucket, late)
	part := bytes.Repeat([]byte("x"), 1234)
	for _, u := range ups {
		res, err := b.s3.UploadPart(ctx, &s3.UploadPartInput{Bucket: aws.String(b.bucket), Key: aws.String(u.key),
			UploadId: aws.String(u.id), PartNumber: aws.Int32(1), Body: bytes.NewReader(part)})
		require.NoError(t, err)
		if u != left {
			_, err = b.s3.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{Bucket: aws.String(b.bucket), Key: aws.String(u.key),
				UploadId: aws.String(u.id), MultipartUpload: &types.CompletedMultipartUpload{
					Parts: []types.CompletedPart{{ETag: res.ETag, PartNumber: aws.Int32(1)}}}})
			require.NoError(t, err)
		}
	}

	deadline := time.Now().Add(2 * time.Second)
	for _, u := range ups {
		require.NoError(t, sched.ScheduleAbort(ctx, b.bucket, u.key, u.id, deadline))
	}
	// Scheduling the same upload again is not an error, and does not add a task.
	require.NoError(t, sched.ScheduleAbort(ctx, b.bucket, left.key, left.id, deadline.Add(time.Hour)))
	info, err := insp.GetTaskInfo(tasks.QueueCritical, left.id)
	require.NoError(t, err)
	require.Equal(t, asynq.TaskStateScheduled, info.State)
	require.WithinDuration(t, deadline, info.NextProcessAt, time.Second)

	// The consumer saw cancelled's CompleteMultipartUpload: its task is deleted.
	require.NoError(t, canceller.CancelMultipartAbort(ctx, cancelled.id))
	_, err = insp.GetTaskInfo(tasks.QueueCritical, cancelled.id)
	require.ErrorIs(t, err, asynq.ErrTaskNotFound)
	require.NoError(t, canceller.CancelMultipartAbort(ctx, cancelled.id), "cancelling twice is fine")

	srv, err := jobs.NewServer(jobs.ServerConfig{Redis: b.redis, Concurrency: 4, ShutdownTimeout: 5 * time.Second,
		DelayedTaskCheckInterval: time.Second, Log: b.log}, jobs.NewMux(&jobs.Handlers{Multipart: b.mp, Log: b.log}, b.metrics, b.log))
	require.NoError(t, err)
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- srv.Run(runCtx) }()
	t.Cleanup(func() {
		stop()
		require.NoError(t, <-done)
	})

	require.Eventually(t, func() bool { return len(aborts(t, ctx, b.st, b.bucket)) == 2 }, 60*time.Second, 200*time.Millisecond,
		"both remaining abort tasks should run; log:\n%s", b.logBuf)
	rows := aborts(t, ctx, b.st, b.bucket)
	require.Equal(t, "aborted", rows[left.id].Outcome)
	require.Equal(t, "deadline", rows[left.id].Reason)
	require.NotNil(t, rows[left.id].Initiated, "initiated comes from the intent")
	require.Equal(t, "gone", rows[late.id].Outcome)
	require.NotContains(t, rows, cancelled.id)

	_, err = b.s3.ListParts(ctx, &s3.ListPartsInput{Bucket: aws.String(b.bucket), Key: aws.String(left.key), UploadId: aws.String(left.id)})
	require.True(t, objstore.IsNotFound(err), "the open upload is aborted: %v", err)
	for _, u := range []upload{cancelled, late} {
		head, err := b.s3.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(b.bucket), Key: aws.String(u.key)})
		require.NoError(t, err, "completed object %s is untouched", u.key)
		require.EqualValues(t, len(part), aws.ToInt64(head.ContentLength))
	}
	got, err := b.st.Q.GetUpload(ctx, leftIntent)
	require.NoError(t, err)
	require.Equal(t, "aborted", got.Status)
	got, err = b.st.Q.GetUpload(ctx, lateIntent)
	require.NoError(t, err)
	require.Equal(t, "pending", got.Status, "a gone upload may have completed: its intent is the consumer's business")

	require.Eventually(t, func() bool {
		return value(t, b.metrics.Tasks.WithLabelValues(tasks.TypeAbortMultipart, jobs.OutcomeSuccess)) == 2
	}, 10*time.Second, 50*time.Millisecond)
	require.Equal(t, 1.0, value(t, b.metrics.Aborted.WithLabelValues(jobs.ReasonDeadline)))
	require.Equal(t, float64(len(part)), value(t, b.metrics.BytesReclaimed))
	for _, u := range ups {
		_, err := insp.GetTaskInfo(tasks.QueueCritical, u.id)
		require.ErrorIs(t, err, asynq.ErrTaskNotFound, "no abort task is left for %s", u.key)
	}
}

// TestSweep creates 200 stale uploads under the prefix, 40 stale ones outside it and 60 fresh ones
// under it, and checks that one sweep (listing in pages of 50) aborts exactly the 200.
func TestSweep(t *testing.T) {
	t.Parallel()
	b := setup(t, jobs.MultipartConfig{PageSize: 50})
	ctx := b.ctx

	old := createUploads(t, ctx, b.s3, b.bucket, keys("in/old/", 200), 16)
	outside := createUploads(t, ctx, b.s3, b.bucket, keys("out/old/", 40), 16)
	knownIntent := intent(t, ctx, b.st, b.bucket, old[7])
	time.Sleep(3 * time.Second)
	beforeFresh := time.Now()
	fresh := createUploads(t, ctx, b.s3, b.bucket, keys("in/new/", 60), 16)
	// 1.5 s older than the oldest fresh upload, 1.5 s younger than the youngest old one, however
	// long the creations took.
	olderThan := time.Since(beforeFresh) + 1500*time.Millisecond

	rep, err := b.mp.Sweep(ctx, jobs.SweepOptions{Bucket: b.bucket, Prefix: "in/", OlderThan: olderThan})
	require.NoError(t, err)
	require.Equal(t, 300, rep.Listed)
	require.Equal(t, 200, rep.Stale)
	require.Equal(t, 200, rep.Aborted)
	require.Zero(t, rep.Gone+rep.Failed)
	require.False(t, rep.Fallback)

	open := openUploads(t, ctx, b.s3, b.bucket)
	require.Len(t, open, 100)
	for _, u := range append(outside, fresh...) {
		require.Contains(t, open, u.id, "%s must stay open", u.key)
	}
	rows := aborts(t, ctx, b.st, b.bucket)
	require.Len(t, rows, 200)
	for _, u := range old {
		require.Equal(t, "aborted", rows[u.id].Outcome, u.key)
		require.Equal(t, "sweep", rows[u.id].Reason)
		require.NotNil(t, rows[u.id].Initiated)
	}
	got, err := b.st.Q.GetUpload(ctx, knownIntent)
	require.NoError(t, err)
	require.Equal(t, "aborted", got.Status)
	require.Equal(t, 200.0, value(t, b.metrics.Aborted.WithLabelValues(jobs.ReasonSweep)))
	require.Positive(t, value(t, b.metrics.SweepLastSuccess))

	// A second sweep finds nothing more to do.
	rep, err = b.mp.Sweep(ctx, jobs.SweepOptions{Bucket: b.bucket, Prefix: "in/", OlderThan: time.Hour})
	require.NoError(t, err)
	require.Equal(t, 100, rep.Listed)
	require.Zero(t, rep.Stale)
}

// TestSweepDryRun is what `intake sweep --dry-run` calls: candidates are reported, nothing aborted.
func TestSweepDryRun(t *testing.T) {
	t.Parallel()
	b := setup(t, jobs.MultipartConfig{})
	ctx := b.ctx
	old := createUploads(t, ctx, b.s3, b.bucket, keys("a/", 20), 8)
	time.Sleep(1500 * time.Millisecond)

	var seen []string
	rep, err := b.mp.Sweep(ctx, jobs.SweepOptions{Bucket: b.bucket, OlderThan: time.Second, DryRun: true,
		OnCandidate: func(c jobs.Candidate) { seen = append(seen, c.UploadID) }})
	require.NoError(t, err)
	require.True(t, rep.DryRun)
	require.Equal(t, 20, rep.Stale)
	require.Zero(t, rep.Aborted+rep.Gone+rep.Failed)
	require.Len(t, seen, 20)
	open := openUploads(t, ctx, b.s3, b.bucket)
	for _, u := range old {
		require.Contains(t, seen, u.id)
		require.Contains(t, open, u.id, "a dry run aborts nothing")
	}
	require.Empty(t, aborts(t, ctx, b.st, b.bucket))
	require.Zero(t, value(t, b.metrics.SweepLastSuccess), "a dry run is not a sweep")
}

// TestSweepFallback uses MinIO's real behaviour with a server-side folder prefix (it lists nothing)
// to check that the sweep then aborts the stale uploads PostgreSQL knows, by id, and says so.
func TestSweepFallback(t *testing.T) {
	t.Parallel()
	b := setup(t, jobs.MultipartConfig{ServerSidePrefix: true})
	ctx := b.ctx
	known := createUploads(t, ctx, b.s3, b.bucket, keys("a/known/", 5), 5)
	unknown := createUploads(t, ctx, b.s3, b.bucket, keys("a/unknown/", 2), 2)
	for _, u := range known {
		intent(t, ctx, b.st, b.bucket, u)
	}
	time.Sleep(2 * time.Second)
	beforeFresh := time.Now()
	freshKnown := createUploads(t, ctx, b.s3, b.bucket, keys("a/fresh/", 1), 1)[0]
	intent(t, ctx, b.st, b.bucket, freshKnown)
	olderThan := time.Since(beforeFresh) + time.Second

	rep, err := b.mp.Sweep(ctx, jobs.SweepOptions{Bucket: b.bucket, Prefix: "a/", OlderThan: olderThan})
	require.NoError(t, err)
	require.Zero(t, rep.Listed, "MinIO lists no uploads for a folder prefix")
	require.True(t, rep.Fallback)
	require.Equal(t, 5, rep.Stale)
	require.Equal(t, 5, rep.Aborted)
	require.Contains(t, b.logBuf.String(), "object store listed no multipart uploads while PostgreSQL knows")

	open := openUploads(t, ctx, b.s3, b.bucket)
	for _, u := range known {
		require.NotContains(t, open, u.id)
	}
	for _, u := range append(unknown, freshKnown) {
		require.Contains(t, open, u.id, "uploads PostgreSQL does not know (or fresh ones) stay")
	}
	// The recorded aborts keep the next fallback from retrying them (they are still old enough).
	rep, err = b.mp.Sweep(ctx, jobs.SweepOptions{Bucket: b.bucket, Prefix: "a/", OlderThan: time.Since(beforeFresh) + time.Second})
	require.NoError(t, err)
	require.False(t, rep.Fallback)
	require.Zero(t, rep.Stale)
}

// TestAbortOfUnknownUpload checks that aborting an upload that never existed is "gone", not an error.
func TestAbortOfUnknownUpload(t *testing.T) {
	t.Parallel()
	b := setup(t, jobs.MultipartConfig{})
	res, err := b.mp.Abort(b.ctx, jobs.AbortRequest{Bucket: b.bucket, Key: "nope.bin", UploadID: "bm9wZQ", Reason: jobs.ReasonAPI})
	require.NoError(t, err)
	require.Equal(t, jobs.AbortGone, res.Outcome)
	require.False(t, res.IntentAborted)
	rows := aborts(t, b.ctx, b.st, b.bucket)
	require.Equal(t, "gone", rows["bm9wZQ"].Outcome)
	require.Nil(t, rows["bm9wZQ"].Initiated)
	require.Zero(t, value(t, b.metrics.Aborted.WithLabelValues(jobs.ReasonAPI)))
}

// TestSchedulersOnePerPeriod runs two schedulers at once on a one-second schedule and checks that
// every period got exactly one sweep task although both fired in it.
func TestSchedulersOnePerPeriod(t *testing.T) {
	t.Parallel()
	skipShort(t)
	redisOpt := asynqRedis(t)
	clock := newPeriodFires("@every 1s")
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for range 2 {
		s, err := jobs.NewSweepScheduler(jobs.SweepSchedulerConfig{Redis: redisOpt, Bucket: "b1", Cron: "@every 1s",
			OlderThan: time.Hour, Now: clock.now})
		require.NoError(t, err)
		wg.Go(func() { require.NoError(t, s.Run(ctx)) })
	}
	time.Sleep(4500 * time.Millisecond)
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
	periods, total := clock.periods()
	for _, w := range periods {
		require.True(t, ids[tasks.SweepTaskID("b1", w)], "period %s fired but has no task", w)
	}
	t.Logf("%d fires over %d periods, %d sweep tasks", total, len(periods), len(pending))
	require.Len(t, pending, len(periods), "one task per period")
	require.Len(t, ids, len(pending))
	require.GreaterOrEqual(t, total, 6, "both schedulers fired")
	require.Less(t, len(pending), total, "the second scheduler's enqueues were absorbed")
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

func TestServerFailsWithoutRedis(t *testing.T) {
	t.Parallel()
	srv, err := jobs.NewServer(jobs.ServerConfig{Redis: asynq.RedisClientOpt{Addr: "127.0.0.1:1"}}, asynq.NewServeMux())
	require.NoError(t, err)
	err = srv.Run(context.Background())
	require.Error(t, err)
	require.False(t, errors.Is(err, context.Canceled))
}

func asynqRedis(t *testing.T) asynq.RedisClientOpt {
	t.Helper()
	return asynq.RedisClientOpt{Addr: testkit.RedisAddr(), DB: testkit.RedisDB(t)}
}

// TestHandlersThroughMux runs a sweep task and an operator's abort task through the mux (payload
// decoding, middleware, metrics) against MinIO and PostgreSQL.
func TestHandlersThroughMux(t *testing.T) {
	t.Parallel()
	b := setup(t, jobs.MultipartConfig{})
	ctx := b.ctx
	mux := jobs.NewMux(&jobs.Handlers{Multipart: b.mp, Log: b.log}, b.metrics, b.log)

	ups := createUploads(t, ctx, b.s3, b.bucket, keys("s/", 3), 3)
	time.Sleep(1200 * time.Millisecond)
	sweep, err := tasks.NewSweep(tasks.Sweep{Bucket: b.bucket, OlderThan: tasks.Duration(time.Second)})
	require.NoError(t, err)
	require.NoError(t, mux.ProcessTask(ctx, sweep))
	require.Empty(t, openUploads(t, ctx, b.s3, b.bucket))
	require.Equal(t, 3.0, value(t, b.metrics.Aborted.WithLabelValues(jobs.ReasonSweep)))
	require.Equal(t, 1.0, value(t, b.metrics.Tasks.WithLabelValues(tasks.TypeSweep, jobs.OutcomeSuccess)))

	op := createUploads(t, ctx, b.s3, b.bucket, []string{"op/x.bin"}, 1)[0]
	abort, err := tasks.NewAbortMultipart(tasks.AbortMultipart{Bucket: b.bucket, Key: op.key, UploadID: op.id,
		Deadline: time.Now(), Reason: tasks.ReasonAPI})
	require.NoError(t, err)
	require.NoError(t, mux.ProcessTask(ctx, abort))
	rows := aborts(t, ctx, b.st, b.bucket)
	require.Len(t, rows, 4)
	require.Equal(t, "api", rows[op.id].Reason)
	require.Equal(t, "aborted", rows[op.id].Outcome)
	for _, u := range ups {
		require.Equal(t, "sweep", rows[u.id].Reason)
	}
	require.Equal(t, 1.0, value(t, b.metrics.Aborted.WithLabelValues(jobs.ReasonAPI)))
}
