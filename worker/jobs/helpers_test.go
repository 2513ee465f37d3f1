package jobs_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/google/uuid"
	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/require"

	"github.com/intakehq/intake/internal/store"
	"github.com/intakehq/intake/internal/store/dbq"
	"github.com/intakehq/intake/internal/testkit"
	"github.com/intakehq/intake/worker/jobs"
)

func skipShort(tb testing.TB) {
	tb.Helper()
	if testing.Short() {
		tb.Skip("needs MinIO, PostgreSQL and Redis (the local stack)")
	}
}

// testBundle is what the integration tests share.
type testBundle struct {
	ctx     context.Context
	s3      *s3.Client
	bucket  string
	st      *store.Store
	redis   asynq.RedisClientOpt
	reg     *prometheus.Registry
	metrics *jobs.Metrics
	mp      *jobs.Multipart
	logBuf  *syncBuffer
	log     *slog.Logger
}

// setup gives a test a fresh bucket, schema and Redis DB, and a Multipart over them.
func setup(tb testing.TB, cfg jobs.MultipartConfig) *testBundle {
	tb.Helper()
	skipShort(tb)
	b := &testBundle{ctx: testkit.Context(tb), s3: testkit.S3(), st: testkit.DB(tb), reg: prometheus.NewRegistry(), logBuf: &syncBuffer{}}
	b.bucket = testkit.Bucket(tb, b.s3)
	b.redis = asynq.RedisClientOpt{Addr: testkit.RedisAddr(), DB: testkit.RedisDB(tb)}
	b.log = slog.New(slog.NewTextHandler(b.logBuf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	var err error
	b.metrics, err = jobs.NewMetrics(b.reg)
	require.NoError(tb, err)
	cfg.S3, cfg.Store, cfg.Metrics, cfg.Log = b.s3, b.st.Q, b.metrics, b.log
	b.mp, err = jobs.NewMultipart(cfg)
	require.NoError(tb, err)
	return b
}

// upload is an open multipart upload created in MinIO.
type upload struct {
	key, id string
}

// createUploads creates one multipart upload per key with `workers` concurrent calls.
func createUploads(tb testing.TB, ctx context.Context, c *s3.Client, bucket string, keys []string, workers int) []upload {
	tb.Helper()
	out := make([]upload, len(keys))
	idx := make(chan int)
	errs := make(chan error, workers)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for i := range idx {
				res, err := c.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: aws.String(bucket), Key: aws.String(keys[i])})
				if err != nil {
					errs <- fmt.Errorf("create upload %s: %w", keys[i], err)
					return
				}
				out[i] = upload{key: keys[i], id: aws.ToString(res.UploadId)}
			}
		})
	}
	for i := range keys {
		select {
		case idx <- i:
		case err := <-errs:
			close(idx)
			wg.Wait()
			tb.Fatal(err)
		}
	}
	close(idx)
	wg.Wait()
	select {
	case err := <-errs:
		tb.Fatal(err)
	default:
	}
	return out
}

// keys returns n keys "<prefix><i>.bin".
func keys(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s%04d.bin", prefix, i)
	}
	return out
}

// openUploads lists every open upload id of the bucket (no prefix: MinIO's folder prefixes list nothing).
func openUploads(tb testing.TB, ctx context.Context, c *s3.Client, bucket string) map[string]string {
	tb.Helper()
	open := map[string]string{}
	p := s3.NewListMultipartUploadsPaginator(c, &s3.ListMultipartUploadsInput{Bucket: aws.String(bucket)})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		require.NoError(tb, err)
		for _, u := range page.Uploads {
			open[aws.ToString(u.UploadId)] = aws.ToString(u.Key)
		}
	}
	return open
}

// intent records an intake intent for a multipart upload.
func intent(tb testing.TB, ctx context.Context, st *store.Store, bucket string, u upload) uuid.UUID {
	tb.Helper()
	row, err := st.Q.CreateUpload(ctx, dbq.CreateUploadParams{
		ID: uuid.New(), Owner: "alice", Bucket: bucket, Key: u.key, Method: "multipart", Filename: "f.bin",
		ContentType: "application/octet-stream", Size: 1, MultipartUploadID: aws.String(u.id),
		ExpiresAt: time.Now().Add(time.Hour),
	})
	require.NoError(tb, err)
	return row.ID
}

// aborts returns the recorded aborts by upload id.
func aborts(tb testing.TB, ctx context.Context, st *store.Store, bucket string) map[string]dbq.MultipartAbort {
	tb.Helper()
	rows, err := st.Q.ListMultipartAborts(ctx, bucket)
	require.NoError(tb, err)
	out := map[string]dbq.MultipartAbort{}
	for _, r := range rows {
		out[r.UploadID] = r
	}
	return out
}

// syncBuffer is a bytes.Buffer safe for concurrent log writes.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// value reads a counter or gauge (one series) without prometheus/testutil.
func value(tb testing.TB, c prometheus.Metric) float64 {
	tb.Helper()
	var m dto.Metric
	require.NoError(tb, c.Write(&m))
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	}
	tb.Fatalf("metric %v is neither a counter nor a gauge", c.Desc())
	return 0
}

// periodFires is the clock of schedulers on spec: it counts how often they fired in each period.
type periodFires struct {
	spec  string
	mu    sync.Mutex
	fires map[int64]int // period start (Unix seconds) -> fires
}

func newPeriodFires(spec string) *periodFires {
	return &periodFires{spec: spec, fires: map[int64]int{}}
}

// now is the schedulers' Now: it records a fire in the current period.
func (f *periodFires) now() time.Time {
	n := time.Now()
	f.mu.Lock()
	f.fires[jobs.SweepWindow(f.spec, n).Unix()]++
	f.mu.Unlock()
	return n
}

// periods returns the starts of the periods that saw a fire, and the fires in all.
func (f *periodFires) periods() (starts []time.Time, total int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for w, n := range f.fires {
		starts = append(starts, time.Unix(w, 0))
		total += n
	}
	return starts, total
}
