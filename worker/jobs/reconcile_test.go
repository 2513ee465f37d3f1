package jobs_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/intakehq/intake/internal/objstore"
	"github.com/intakehq/intake/internal/reconcile"
	"github.com/intakehq/intake/internal/store"
	"github.com/intakehq/intake/internal/telemetry"
	"github.com/intakehq/intake/internal/testkit"
	"github.com/intakehq/intake/pipeline"
	"github.com/intakehq/intake/worker/jobs"
	"github.com/intakehq/intake/worker/tasks"
)

// reconcileBundle runs the jobs role's server (inspections and the reconcile task) over a bucket,
// a schema and a Redis database.
type reconcileBundle struct {
	ctx     context.Context
	s3      *s3.Client
	bucket  string
	st      *store.Store
	redis   asynq.RedisClientOpt
	client  *asynq.Client
	metrics *jobs.ReconcileMetrics
}

func setupReconcile(t *testing.T) *reconcileBundle {
	t.Helper()
	skipShort(t)
	b := &reconcileBundle{ctx: testkit.Context(t), s3: testkit.S3(), st: testkit.DB(t), redis: asynqRedis(t)}
	b.bucket = testkit.Bucket(t, b.s3)
	log := telemetry.NewLogger(&bytes.Buffer{}, "text", "error")
	proc, err := pipeline.NewProcessor(pipeline.ProcessorConfig{
		Objects: objstore.NewObjects(b.s3), Records: store.NewRecords(b.st), Buckets: []string{b.bucket}, Log: log,
	})
	require.NoError(t, err)
	b.client = asynq.NewClient(b.redis)
	t.Cleanup(func() { _ = b.client.Close() })
	b.metrics, err = jobs.NewReconcileMetrics(prometheus.NewRegistry())
	require.NoError(t, err)
	rec, err := jobs.NewReconciler(jobs.ReconcilerConfig{
		S3: b.s3, Rows: b.st.Q, Enqueuer: reconcile.TaskEnqueuer{Client: b.client}, Buckets: []string{b.bucket},
		Metrics: b.metrics, Log: log,
	})
	require.NoError(t, err)
	mux := jobs.NewMux(&jobs.Handlers{Inspector: proc, Log: log}, nil, log)
	rec.Register(mux)
	srv, err := jobs.NewServer(jobs.ServerConfig{Redis: b.redis, Concurrency: 4, ShutdownTimeout: 5 * time.Second, Log: log,
		DelayedTaskCheckInterval: 100 * time.Millisecond}, mux)
	require.NoError(t, err)
	testkit.Serve(t, srv.Run)
	return b
}

func (b *reconcileBundle) put(t *testing.T, key string) string {
	t.Helper()
	out, err := b.s3.PutObject(b.ctx, &s3.PutObjectInput{Bucket: aws.String(b.bucket), Key: aws.String(key), Body: strings.NewReader(key), ContentType: aws.String("text/plain")})
	require.NoError(t, err)
	return strings.Trim(aws.ToString(out.ETag), `"`)
}

// enqueue enqueues a reconcile task as the scheduler does and waits until it and the inspections
// it enqueued are done (or archived).
func (b *reconcileBundle) enqueue(t *testing.T, p jobs.Reconcile) *asynq.TaskInfo {
	t.Helper()
	task, err := jobs.NewReconcileTask(p)
	require.NoError(t, err)
	info, err := b.client.EnqueueContext(b.ctx, task, asynq.TaskID(jobs.ReconcileTaskID(p.Bucket, time.Now())))
	require.NoError(t, err)
	insp := asynq.NewInspector(b.redis)
	t.Cleanup(func() { _ = insp.Close() })
	require.Eventually(t, func() bool {
		for _, q := range []string{tasks.QueueLow, tasks.QueueDefault} {
			st, err := insp.GetQueueInfo(q)
			if err != nil {
				continue // the queue does not exist yet
			}
			if st.Pending+st.Active+st.Scheduled+st.Retry > 0 {
				return false
			}
		}
		return true
	}, 60*time.Second, 50*time.Millisecond, "the reconcile and its inspections did not finish")
	return info
}

func gauge(t *testing.T, g prometheus.Gauge) float64 { t.Helper(); return testkit.Value(t, g) }

// TestReconcileTask: uploads whose events S3 never sent, a row that says deleted while the object
// exists, and a row whose object is gone. The periodic reconcile task finds them, publishes the
// findings, and repairs them through the jobs path; the next one finds nothing.
func TestReconcileTask(t *testing.T) {
	t.Parallel()
	b := setupReconcile(t)
	var lost []string
	for i := range 5 {
		k := fmt.Sprintf("uploads/lost-%d.txt", i) // put, but no event ever came
		b.put(t, k)
		lost = append(lost, k)
	}
	staleETag := b.put(t, "uploads/stale.txt")
	_, err := b.st.Pool.Exec(b.ctx, `INSERT INTO objects (bucket, key, status, sequencer) VALUES ($1, 'uploads/stale.txt', 'deleted', $2)`,
		b.bucket, strings.Repeat("F", 64))
	require.NoError(t, err)
	_, err = b.st.Pool.Exec(b.ctx, `INSERT INTO objects (bucket, key, etag, status) VALUES ($1, 'uploads/gone.txt', 'e', 'valid')`, b.bucket)
	require.NoError(t, err)

	b.enqueue(t, jobs.Reconcile{Bucket: b.bucket, Rate: 1000})
	require.Equal(t, 5.0, gauge(t, b.metrics.Missing))
	require.Equal(t, 1.0, gauge(t, b.metrics.Stale))
	require.Equal(t, 1.0, gauge(t, b.metrics.Gone))
	first := gauge(t, b.metrics.LastSuccess)
	require.Positive(t, first)

	status := func(key string) (string, string) {
		var s string
		var e *string
		require.NoError(t, b.st.Pool.QueryRow(b.ctx, `SELECT status, etag FROM objects WHERE bucket = $1 AND key = $2`, b.bucket, key).Scan(&s, &e))
		return s, aws.ToString(e)
	}
	for _, k := range lost {
		s, _ := status(k)
		require.Equal(t, pipeline.StatusValid, s, k)
	}
	s, e := status("uploads/stale.txt")
	require.Equal(t, pipeline.StatusValid, s)
	require.Equal(t, staleETag, e)
	s, _ = status("uploads/gone.txt")
	require.Equal(t, pipeline.StatusMissing, s)

	// The next period's reconcile finds everything in sync.
	b.enqueue(t, jobs.Reconcile{Bucket: b.bucket, Rate: 1000})
	require.Zero(t, gauge(t, b.metrics.Missing))
	require.Zero(t, gauge(t, b.metrics.Stale))
	require.Zero(t, gauge(t, b.metrics.Gone))
	require.GreaterOrEqual(t, gauge(t, b.metrics.LastSuccess), first)
}

// TestReconcileTaskRefusesForeignBucket: a reconcile task naming a bucket intake does not serve
// (enqueued by anyone with access to Redis) is archived at once and looks at nothing.
func TestReconcileTaskRefusesForeignBucket(t *testing.T) {
	t.Parallel()
	b := setupReconcile(t)
	other := testkit.Bucket(t, b.s3)
	for i := range 3 {
		_, err := b.s3.PutObject(b.ctx, &s3.PutObjectInput{Bucket: aws.String(other), Key: aws.String(fmt.Sprint(i)), Body: strings.NewReader("x")})
		require.NoError(t, err)
	}
	info := b.enqueue(t, jobs.Reconcile{Bucket: other, Rate: 1000})
	insp := asynq.NewInspector(b.redis)
	t.Cleanup(func() { _ = insp.Close() })
	got, err := insp.GetTaskInfo(tasks.QueueLow, info.ID)
	require.NoError(t, err)
	require.Equal(t, asynq.TaskStateArchived, got.State)
	require.Contains(t, got.LastErr, "foreign_bucket")
	var n int
	require.NoError(t, b.st.Pool.QueryRow(b.ctx, `SELECT count(*) FROM objects`).Scan(&n))
	require.Zero(t, n, "nothing of the other bucket was recorded")
	require.Zero(t, gauge(t, b.metrics.LastSuccess))
}

func TestReconcilePayload(t *testing.T) {
	t.Parallel()
	for _, p := range []jobs.Reconcile{{Rate: 1}, {Bucket: "b"}, {Bucket: "b", Rate: -1}} {
		_, err := jobs.NewReconcileTask(p)
		require.ErrorIs(t, err, tasks.ErrInvalidPayload, "%+v", p)
	}
	task, err := jobs.NewReconcileTask(jobs.Reconcile{Bucket: "b", Rate: 50})
	require.NoError(t, err)
	require.JSONEq(t, `{"bucket":"b","rate":50}`, string(task.Payload()))
	require.Equal(t, "reconcile:b:60", jobs.ReconcileTaskID("b", time.Unix(60, 0)))
}

// TestReconcilePeriodic: the reconcile Periodic enqueues the reconcile of the bucket, with the
// period's task ID (the one-per-period mechanism of Periodic is tested with the sweep's).
func TestReconcilePeriodic(t *testing.T) {
	t.Parallel()
	skipShort(t)
	redisOpt := asynqRedis(t)
	p, err := jobs.NewReconcilePeriodic(jobs.ReconcilePeriodicConfig{Redis: redisOpt, Bucket: "b1", Cron: "@every 1s", Rate: 100})
	require.NoError(t, err)
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	insp := asynq.NewInspector(redisOpt)
	t.Cleanup(func() { _ = insp.Close() })
	var pending []*asynq.TaskInfo
	require.Eventually(t, func() bool {
		pending, err = insp.ListPendingTasks(tasks.QueueLow)
		return err == nil && len(pending) > 0
	}, 30*time.Second, 100*time.Millisecond)
	stop()
	require.NoError(t, <-done)
	ti := pending[0]
	require.Equal(t, jobs.TypeReconcile, ti.Type)
	require.JSONEq(t, `{"bucket":"b1","rate":100}`, string(ti.Payload))
	require.True(t, strings.HasPrefix(ti.ID, "reconcile:b1:"), ti.ID)
	start, err := strconv.ParseInt(strings.TrimPrefix(ti.ID, "reconcile:b1:"), 10, 64)
	require.NoError(t, err)
	require.Equal(t, jobs.ReconcileTaskID("b1", jobs.PeriodStart("@every 1s", time.Unix(start, 0))), ti.ID, "named after a period's start")
}

func TestNewReconcilePeriodicValidates(t *testing.T) {
	t.Parallel()
	opt := asynq.RedisClientOpt{Addr: "127.0.0.1:6379"}
	for _, cfg := range []jobs.ReconcilePeriodicConfig{
		{Redis: opt, Bucket: "b", Cron: "not a cron", Rate: 1},
		{Redis: opt, Bucket: "b", Cron: "@daily"},
		{Redis: opt, Cron: "@daily", Rate: 1},
		{Bucket: "b", Cron: "@daily", Rate: 1},
	} {
		_, err := jobs.NewReconcilePeriodic(cfg)
		require.Error(t, err, "%+v", cfg)
	}
}

// endlessListing is a store whose listing of a bucket never ends within the time it is given (a
// bucket too large to walk at the rate), except for the buckets of fail, whose listing fails at
// once with their error.
type endlessListing struct{ fail map[string]error }

func (s endlessListing) ListObjectsV2(ctx context.Context, in *s3.ListObjectsV2Input, _ ...func(*s3.Options)) (*s3.ListObjectsV2Output, error) {
	if err := s.fail[aws.ToString(in.Bucket)]; err != nil {
		return nil, err
	}
	<-ctx.Done()
	return nil, ctx.Err()
}

func (endlessListing) HeadObject(context.Context, *s3.HeadObjectInput, ...func(*s3.Options)) (*s3.HeadObjectOutput, error) {
	return nil, errors.New("not expected")
}

func (endlessListing) HeadBucket(context.Context, *s3.HeadBucketInput, ...func(*s3.Options)) (*s3.HeadBucketOutput, error) {
	return &s3.HeadBucketOutput{}, nil
}

// TestReconcileOutOfTimeIsNotRetried: a reconcile that uses up its time (the bucket is too large
// for the rate) fails for good with a log that says so, instead of being retried 15 to 45 s later
// into the next period's reconcile; a timeout of a call inside the run (here the listing's own)
// is retried as before. The task's time is cut from 23 h to a few seconds by the enqueue's
// asynq.Timeout: the run's budget is read from the task's deadline.
func TestReconcileOutOfTimeIsNotRetried(t *testing.T) {
	t.Parallel()
	skipShort(t)
	ctx, redisOpt, st := testkit.Context(t), asynqRedis(t), testkit.DB(t)
	logs := &testkit.SyncBuffer{}
	log := slog.New(slog.NewTextHandler(logs, nil))
	client := asynq.NewClient(redisOpt)
	t.Cleanup(func() { _ = client.Close() })
	insp := asynq.NewInspector(redisOpt)
	t.Cleanup(func() { _ = insp.Close() })
	s3c := endlessListing{fail: map[string]error{"flaky": fmt.Errorf("operation error S3: ListObjectsV2: %w", context.DeadlineExceeded)}}
	rec, err := jobs.NewReconciler(jobs.ReconcilerConfig{S3: s3c, Rows: st.Q, Enqueuer: reconcile.TaskEnqueuer{Client: client},
		Buckets: []string{"huge", "flaky"}, Log: log})
	require.NoError(t, err)
	mux := jobs.NewMux(&jobs.Handlers{Log: log}, nil, log)
	rec.Register(mux)
	srv, err := jobs.NewServer(jobs.ServerConfig{Redis: redisOpt, Concurrency: 2, ShutdownTimeout: 5 * time.Second, Log: log}, mux)
	require.NoError(t, err)
	testkit.Serve(t, srv.Run)

	// failed enqueues the bucket's reconcile with a task time of 10 s and returns it once it failed.
	failed := func(bucket string) *asynq.TaskInfo {
		t.Helper()
		task, err := jobs.NewReconcileTask(jobs.Reconcile{Bucket: bucket, Rate: 1})
		require.NoError(t, err)
		info, err := client.EnqueueContext(ctx, task, asynq.TaskID(jobs.ReconcileTaskID(bucket, time.Now())), asynq.Timeout(10*time.Second))
		require.NoError(t, err)
		var got *asynq.TaskInfo
		require.Eventually(t, func() bool {
			got, err = insp.GetTaskInfo(tasks.QueueLow, info.ID)
			require.NoError(t, err)
			return got.State == asynq.TaskStateArchived || got.State == asynq.TaskStateRetry
		}, 60*time.Second, 50*time.Millisecond, "the reconcile of %s did not fail", bucket)
		return got
	}

	huge := failed("huge")
	require.Equal(t, asynq.TaskStateArchived, huge.State, "a run out of its time is not retried: %s", huge.LastErr)
	require.Contains(t, huge.LastErr, "too large for INTAKE_JOBS_RECONCILE_RATE")
	require.Contains(t, logs.String(), "periodic reconcile ran out of its time")

	flaky := failed("flaky")
	require.Equal(t, asynq.TaskStateRetry, flaky.State, "a call's own timeout is retried: %s", flaky.LastErr)
	require.Contains(t, flaky.LastErr, "deadline exceeded")
}
