package jobs_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/intakehq/intake/internal/multipart"
	"github.com/intakehq/intake/internal/reconcile"
	"github.com/intakehq/intake/internal/store/dbq"
	"github.com/intakehq/intake/internal/testkit"
	"github.com/intakehq/intake/worker/jobs"
	"github.com/intakehq/intake/worker/tasks"
)

// slowComplete is MinIO with a CompleteMultipartUpload that waits for release (S3 joining large
// parts), counting the aborts sent.
type slowComplete struct {
	multipart.S3API
	started chan struct{}
	release chan struct{}
	aborts  atomic.Int32
}

func (s *slowComplete) CompleteMultipartUpload(ctx context.Context, in *s3.CompleteMultipartUploadInput, opts ...func(*s3.Options)) (*s3.CompleteMultipartUploadOutput, error) {
	close(s.started)
	<-s.release
	return s.S3API.CompleteMultipartUpload(ctx, in, opts...)
}

func (s *slowComplete) AbortMultipartUpload(ctx context.Context, in *s3.AbortMultipartUploadInput, opts ...func(*s3.Options)) (*s3.AbortMultipartUploadOutput, error) {
	s.aborts.Add(1)
	return s.S3API.AbortMultipartUpload(ctx, in, opts...)
}

// TestAbortTaskWaitsForACompleteInFlight: the API accepts a complete until the deadline, and S3 may
// take a while to join the parts. The deadline task run 2 s after the deadline (the old grace) while
// that complete is still running sends no abort (it would have lost the upload the client was
// told was complete): it runs again after tasks.AbortGrace, and the complete succeeds.
func TestAbortTaskWaitsForACompleteInFlight(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := b.ctx
	u := testkit.CreateUploads(t, ctx, b.s3, b.bucket, []string{"slow/complete.bin"}, 1)[0]
	part, err := b.s3.UploadPart(ctx, &s3.UploadPartInput{Bucket: aws.String(b.bucket), Key: aws.String(u.Key), UploadId: aws.String(u.ID),
		PartNumber: aws.Int32(1), Body: bytes.NewReader([]byte("the only part"))})
	require.NoError(t, err)
	deadline := time.Now().Truncate(time.Microsecond)
	id := intent(t, ctx, b.st, b.bucket, u)
	setDeadline(t, b, id, deadline)

	slow := &slowComplete{S3API: b.s3, started: make(chan struct{}), release: make(chan struct{})}
	mp, err := multipart.New(multipart.Config{S3: slow, Store: b.st.Multipart(), Log: b.log})
	require.NoError(t, err)
	completed := make(chan error, 1)
	go func() {
		// Accepted by the API a moment before the deadline.
		_, err := mp.Complete(ctx, multipart.CompleteRequest{Bucket: b.bucket, Key: u.Key, UploadID: u.ID, DeclaredSize: -1,
			Parts: []multipart.CompletedPart{{Number: 1, ETag: aws.ToString(part.ETag)}}})
		completed <- err
	}()
	select {
	case <-slow.started:
	case <-time.After(30 * time.Second):
		t.Fatal("the complete never reached S3")
	}

	task, err := tasks.NewAbortMultipart(tasks.AbortMultipart{Bucket: b.bucket, Key: u.Key, UploadID: u.ID, Deadline: deadline})
	require.NoError(t, err)
	mux := jobs.NewMux(&jobs.Handlers{Aborts: mp, Log: b.log, Now: func() time.Time { return deadline.Add(2 * time.Second) }}, b.metrics, b.log)
	err = mux.ProcessTask(ctx, task)
	var early *jobs.EarlyError
	require.ErrorAs(t, err, &early, "the abort ran while the complete was in flight")
	require.Zero(t, slow.aborts.Load(), "an abort was sent while the complete was in flight")
	require.Empty(t, abortRows(t, ctx, b.st, b.bucket))

	close(slow.release)
	require.NoError(t, <-completed)
	head, err := b.s3.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(b.bucket), Key: aws.String(u.Key)})
	require.NoError(t, err, "the completed object is there")
	require.EqualValues(t, len("the only part"), aws.ToInt64(head.ContentLength))
}

// TestAbortTaskKeepsTheOwnersDeadline: a deadline abort task whose payload carries an earlier
// deadline than the one PostgreSQL holds for the upload (written into Redis by an app backend
// sharing it, to abort another tenant's upload) aborts nothing: the owner's deadline holds, and
// the task is retried at tasks.AbortDue of that deadline, without using up a retry. The handler
// trusted the payload's deadline, and aborted the upload at once.
func TestAbortTaskKeepsTheOwnersDeadline(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := b.ctx
	u := testkit.CreateUploads(t, ctx, b.s3, b.bucket, []string{"tenant-b/x.bin"}, 1)[0]
	owners := time.Now().Add(time.Hour).Truncate(time.Second)
	setDeadline(t, b, intent(t, ctx, b.st, b.bucket, u), owners)
	forged, err := tasks.NewAbortMultipart(tasks.AbortMultipart{Bucket: b.bucket, Key: u.Key, UploadID: u.ID,
		Deadline: time.Now().Add(-time.Hour)})
	require.NoError(t, err)

	mux := jobs.NewMux(&jobs.Handlers{Aborts: b.mp, Log: b.log}, b.metrics, b.log)
	err = mux.ProcessTask(ctx, forged)
	var early *jobs.EarlyError
	require.ErrorAs(t, err, &early)
	require.True(t, owners.Equal(early.Deadline), "retried after the owner's deadline, not the payload's: %s", early.Deadline)
	require.Contains(t, testkit.OpenUploads(t, ctx, b.s3, b.bucket), u.ID, "another tenant's upload aborted before its deadline")
	require.Empty(t, abortRows(t, ctx, b.st, b.bucket))

	// Through a server: back in Redis, due at the owner's deadline and grace.
	client := asynq.NewClient(b.redis)
	t.Cleanup(func() { _ = client.Close() })
	insp := asynq.NewInspector(b.redis)
	t.Cleanup(func() { _ = insp.Close() })
	_, err = client.EnqueueContext(ctx, forged, asynq.ProcessIn(0))
	require.NoError(t, err)
	srv, err := jobs.NewServer(jobs.ServerConfig{Redis: b.redis, ShutdownTimeout: 5 * time.Second, Log: b.log}, mux)
	require.NoError(t, err)
	testkit.Serve(t, srv.Run)
	var info *asynq.TaskInfo
	require.Eventually(t, func() bool {
		info, err = insp.GetTaskInfo(tasks.QueueCritical, u.ID)
		return err == nil && info.State == asynq.TaskStateRetry
	}, 30*time.Second, 50*time.Millisecond, "log:\n%s", b.logBuf)
	require.WithinDuration(t, tasks.AbortDue(owners), info.NextProcessAt, 2*time.Second)
	require.Zero(t, info.Retried)
	require.Contains(t, testkit.OpenUploads(t, ctx, b.s3, b.bucket), u.ID)
}

// TestEarlyRunWithoutRetriesRunsAtItsTime: a deadline abort enqueued with no retry at all
// (asynq.MaxRetry(0)) and run early is not archived (asynq archives a failed run with no retry
// left before asking whether it failed): the server puts it back, under its ID, due at its time.
// It was archived, and its upload left to the sweep.
func TestEarlyRunWithoutRetriesRunsAtItsTime(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := b.ctx
	u := testkit.CreateUploads(t, ctx, b.s3, b.bucket, []string{"early/no-retry.bin"}, 1)[0]
	deadline := time.Now().Add(time.Hour).Truncate(time.Second)
	task, err := tasks.NewAbortMultipart(tasks.AbortMultipart{Bucket: b.bucket, Key: u.Key, UploadID: u.ID, Deadline: deadline})
	require.NoError(t, err)
	client := asynq.NewClient(b.redis)
	t.Cleanup(func() { _ = client.Close() })
	insp := asynq.NewInspector(b.redis)
	t.Cleanup(func() { _ = insp.Close() })
	_, err = client.EnqueueContext(ctx, task, asynq.ProcessIn(0), asynq.MaxRetry(0))
	require.NoError(t, err)

	srv, err := jobs.NewServer(jobs.ServerConfig{Redis: b.redis, ShutdownTimeout: 5 * time.Second, Log: b.log},
		jobs.NewMux(&jobs.Handlers{Aborts: b.mp, Log: b.log}, b.metrics, b.log))
	require.NoError(t, err)
	testkit.Serve(t, srv.Run)
	var info *asynq.TaskInfo
	require.Eventually(t, func() bool {
		info, err = insp.GetTaskInfo(tasks.QueueCritical, u.ID)
		return err == nil && info.State == asynq.TaskStateScheduled
	}, 30*time.Second, 50*time.Millisecond, "the early run should be put back; state %v; log:\n%s", info, b.logBuf)
	require.WithinDuration(t, tasks.AbortDue(deadline), info.NextProcessAt, 2*time.Second)
	require.Zero(t, info.MaxRetry, "its options are kept")
	require.Equal(t, tasks.AbortTimeout, info.Timeout)
	require.Equal(t, 1.0, testkit.Value(t, b.metrics.Tasks.WithLabelValues(tasks.TypeAbortMultipart, jobs.OutcomeEarly)))
	require.Zero(t, testkit.Value(t, b.metrics.Tasks.WithLabelValues(tasks.TypeAbortMultipart, jobs.OutcomeFailed)))
	require.Contains(t, testkit.OpenUploads(t, ctx, b.s3, b.bucket), u.ID)
}

// TestInterruptedRunIsNoFailure: a run whose context is cancelled under it (the server shutting
// down: asynq puts the task back) counts as "interrupted" and is logged at info, not as a failure
// to retry ("retry", a warning), which IntakeReconcileFailing counts.
func TestInterruptedRunIsNoFailure(t *testing.T) {
	t.Parallel()
	m, err := jobs.NewMetrics(prometheus.NewRegistry())
	require.NoError(t, err)
	var logs testkit.SyncBuffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	mux := jobs.NewMux(&jobs.Handlers{Inspector: jobs.InspectorFunc(func(ctx context.Context, _, _ string) error {
		<-ctx.Done()
		return ctx.Err()
	})}, m, log)
	task, err := tasks.NewInspectObject(tasks.InspectObject{Bucket: "b", Key: "k"})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(10*time.Millisecond, cancel)
	require.ErrorIs(t, mux.ProcessTask(ctx, task), context.Canceled)
	require.Equal(t, 1.0, testkit.Value(t, m.Tasks.WithLabelValues(tasks.TypeInspectObject, jobs.OutcomeInterrupted)))
	require.Zero(t, testkit.Value(t, m.Tasks.WithLabelValues(tasks.TypeInspectObject, jobs.OutcomeRetry)))
	require.Contains(t, logs.String(), "level=INFO msg=\"task interrupted")
	require.NotContains(t, logs.String(), "will retry")

	// A run that times out (its own deadline) did fail: retried.
	tctx, tcancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer tcancel()
	require.ErrorIs(t, mux.ProcessTask(tctx, task), context.DeadlineExceeded)
	require.Equal(t, 1.0, testkit.Value(t, m.Tasks.WithLabelValues(tasks.TypeInspectObject, jobs.OutcomeRetry)))
}

// TestEveryPeriodHoldsItsTaskID: with an "@every 24h" sweep, replicas' crons fire 24 h after their
// own start, anywhere in the period; the period's task is kept for the whole period (at least 24
// h), so that a replica firing hours after another finds its ID taken. It was kept for an hour,
// and a day's sweep ran once per replica. A cron spec keeps the task's own retention.
func TestEveryPeriodHoldsItsTaskID(t *testing.T) {
	t.Parallel()
	skipShort(t)
	redisOpt := asynqRedis(t)
	client := asynq.NewClient(redisOpt)
	t.Cleanup(func() { _ = client.Close() })
	insp := asynq.NewInspector(redisOpt)
	t.Cleanup(func() { _ = insp.Close() })
	now := time.Date(2030, 1, 1, 10, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		spec, bucket string
		retention    time.Duration
	}{
		{"@every 24h", "daily", 24 * time.Hour},
		{"@every 90m", "often", 90 * time.Minute},
		{"@every 5m", "busy", tasks.SweepRetention},
		{"0 3 * * *", "cron", tasks.SweepRetention},
	} {
		p, err := jobs.NewSweepPeriodic(jobs.SweepPeriodicConfig{Redis: redisOpt, Bucket: tc.bucket, Cron: tc.spec, OlderThan: time.Hour,
			Now: func() time.Time { return now }})
		require.NoError(t, err)
		p.Fire(context.Background(), client)
		info, err := insp.GetTaskInfo(tasks.QueueLow, tasks.SweepTaskID(tc.bucket, jobs.PeriodStart(tc.spec, now)))
		require.NoError(t, err, tc.spec)
		require.Equal(t, tc.retention, info.Retention, tc.spec)
	}
}

// TestReconcileTaskIgnoresLaterFields: a reconcile task written by a newer intake, with a field
// this one does not know, is judged on what it knows (here: a bucket intake does not serve), not
// archived as undecodable.
func TestReconcileTaskIgnoresLaterFields(t *testing.T) {
	t.Parallel()
	rec, err := jobs.NewReconciler(jobs.ReconcilerConfig{S3: testkit.S3(), Rows: (*dbq.Queries)(nil), Enqueuer: reconcile.TaskEnqueuer{},
		Buckets: []string{"served"}})
	require.NoError(t, err)
	err = rec.HandleReconcile(context.Background(), asynq.NewTask(jobs.TypeReconcile, []byte(`{"bucket":"other","rate":10,"dry_run":true}`)))
	require.ErrorIs(t, err, asynq.SkipRetry)
	require.ErrorContains(t, err, "foreign_bucket")
	require.False(t, errors.Is(err, tasks.ErrInvalidPayload), "%v", err)
}

// deferredErr is a run put off on purpose, as webhook.DeferredError is.
type deferredErr struct{}

func (deferredErr) Error() string  { return "deferred" }
func (deferredErr) Deferred() bool { return true }

// TestServerIsFailure: a run the server's IsFailure says is no failure (the webhook server's
// deferrals) uses up none of the task's retries, and is counted and logged as a run to happen
// later, not a retry. Without ServerConfig.IsFailure, a task of one retry deferred three times was
// archived after its second run.
func TestServerIsFailure(t *testing.T) {
	t.Parallel()
	skipShort(t)
	redisOpt := asynqRedis(t)
	m, err := jobs.NewMetrics(prometheus.NewRegistry())
	require.NoError(t, err)
	var logs testkit.SyncBuffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	var runs atomic.Int32
	mux := asynq.NewServeMux()
	mux.Use(jobs.Instrument(m), jobs.Log(log))
	mux.HandleFunc("test:deferred", func(context.Context, *asynq.Task) error {
		if runs.Add(1) <= 3 {
			return deferredErr{}
		}
		return nil
	})
	srv, err := jobs.NewServer(jobs.ServerConfig{
		Redis: redisOpt, Queues: map[string]int{"test-deferred": 1}, ShutdownTimeout: 5 * time.Second, Log: log,
		DelayedTaskCheckInterval: 100 * time.Millisecond,
		RetryDelayFunc:           func(int, error, *asynq.Task) time.Duration { return 100 * time.Millisecond },
		IsFailure:                func(err error) bool { return !errors.As(err, new(deferredErr)) },
	}, mux)
	require.NoError(t, err)
	testkit.Serve(t, srv.Run)
	client := asynq.NewClient(redisOpt)
	t.Cleanup(func() { _ = client.Close() })
	_, err = client.Enqueue(asynq.NewTask("test:deferred", nil), asynq.Queue("test-deferred"), asynq.MaxRetry(1), asynq.TaskID("d"))
	require.NoError(t, err)
	insp := asynq.NewInspector(redisOpt)
	t.Cleanup(func() { _ = insp.Close() })
	require.Eventually(t, func() bool { // done: completed (deleted), or archived
		info, err := insp.GetTaskInfo("test-deferred", "d")
		return errors.Is(err, asynq.ErrTaskNotFound) || (err == nil && info.State == asynq.TaskStateArchived)
	}, 60*time.Second, 20*time.Millisecond)
	require.EqualValues(t, 4, runs.Load(), "three deferrals and the run that succeeded; not archived after two")
	require.Eventually(t, func() bool {
		return testkit.Value(t, m.Tasks.WithLabelValues("test:deferred", jobs.OutcomeSuccess)) == 1
	}, 10*time.Second, 20*time.Millisecond)
	require.Equal(t, 3.0, testkit.Value(t, m.Tasks.WithLabelValues("test:deferred", jobs.OutcomeEarly)))
	require.Zero(t, testkit.Value(t, m.Tasks.WithLabelValues("test:deferred", jobs.OutcomeRetry)))
	require.NotContains(t, logs.String(), "will retry")
}
