package jobs_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/google/uuid"
	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/intakehq/intake/internal/multipart"
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
	ctx       context.Context
	s3        *s3.Client
	bucket    string
	st        *store.Store
	redis     asynq.RedisClientOpt
	reg       *prometheus.Registry
	metrics   *jobs.Metrics
	mpMetrics *multipart.Metrics
	mp        *multipart.Service
	logBuf    *testkit.SyncBuffer
	log       *slog.Logger
}

// setup gives a test a fresh bucket, schema and Redis DB, and the multipart service over them.
func setup(tb testing.TB) *testBundle {
	tb.Helper()
	skipShort(tb)
	b := &testBundle{ctx: testkit.Context(tb), s3: testkit.S3(), st: testkit.DB(tb), reg: prometheus.NewRegistry(), logBuf: &testkit.SyncBuffer{}}
	b.bucket = testkit.Bucket(tb, b.s3)
	b.redis = asynq.RedisClientOpt{Addr: testkit.RedisAddr(), DB: testkit.RedisDB(tb)}
	b.log = slog.New(slog.NewTextHandler(b.logBuf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	var err error
	b.metrics, err = jobs.NewMetrics(b.reg)
	require.NoError(tb, err)
	b.mpMetrics, err = multipart.NewMetrics(b.reg)
	require.NoError(tb, err)
	b.mp, err = multipart.New(multipart.Config{S3: b.s3, Store: b.st.Multipart(), Metrics: b.mpMetrics, Log: b.log})
	require.NoError(tb, err)
	return b
}

// intent records an intake intent for a multipart upload.
func intent(tb testing.TB, ctx context.Context, st *store.Store, bucket string, u testkit.Upload) uuid.UUID {
	tb.Helper()
	row, err := testkit.CreateUpload(ctx, st.Pool, dbq.Upload{
		ID: uuid.New(), Owner: "alice", Bucket: bucket, Key: u.Key, Method: "multipart", Filename: "f.bin",
		ContentType: "application/octet-stream", Size: 1, MultipartUploadID: aws.String(u.ID),
		ExpiresAt: time.Now().Add(time.Hour),
	})
	require.NoError(tb, err)
	return row.ID
}

// setDeadline sets an intent's deadline (expires_at).
func setDeadline(tb testing.TB, b *testBundle, id uuid.UUID, deadline time.Time) {
	tb.Helper()
	_, err := b.st.Pool.Exec(b.ctx, "UPDATE uploads SET expires_at = $2 WHERE id = $1", id, deadline)
	require.NoError(tb, err)
}

// abortRows returns the recorded aborts by upload id.
func abortRows(tb testing.TB, ctx context.Context, st *store.Store, bucket string) map[string]dbq.MultipartAbort {
	tb.Helper()
	rows, err := testkit.ListMultipartAborts(ctx, st.Pool, bucket)
	require.NoError(tb, err)
	out := map[string]dbq.MultipartAbort{}
	for _, r := range rows {
		out[r.UploadID] = r
	}
	return out
}

// uploadPart1 is testkit.UploadPart1 in the bundle's bucket.
func (b *testBundle) uploadPart1(tb testing.TB, u testkit.Upload, part []byte, complete bool) {
	tb.Helper()
	testkit.UploadPart1(tb, b.ctx, b.s3, b.bucket, u, part, complete)
}
