package multipart_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/intakehq/intake/internal/multipart"
	"github.com/intakehq/intake/internal/store"
	"github.com/intakehq/intake/internal/store/dbq"
	"github.com/intakehq/intake/internal/testkit"
)

// testBundle is what the integration tests share: a fresh bucket, schema and Service.
type testBundle struct {
	ctx     context.Context
	s3      *s3.Client
	bucket  string
	st      *store.Store
	metrics *multipart.Metrics
	mp      *multipart.Service
	logBuf  *testkit.SyncBuffer
}

func setup(tb testing.TB, cfg multipart.Config) *testBundle {
	tb.Helper()
	if testing.Short() {
		tb.Skip("needs MinIO and PostgreSQL (the local stack)")
	}
	b := &testBundle{ctx: testkit.Context(tb), s3: testkit.S3(), st: testkit.DB(tb), logBuf: &testkit.SyncBuffer{}}
	b.bucket = testkit.Bucket(tb, b.s3)
	var err error
	b.metrics, err = multipart.NewMetrics(prometheus.NewRegistry())
	require.NoError(tb, err)
	cfg.S3, cfg.Store, cfg.Metrics = b.s3, b.st.Multipart(), b.metrics
	cfg.Log = slog.New(slog.NewTextHandler(b.logBuf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	b.mp, err = multipart.New(cfg)
	require.NoError(tb, err)
	return b
}

// intent records an intake intent for an upload, with its deadline.
func (b *testBundle) intent(tb testing.TB, u testkit.Upload, expiresAt time.Time) uuid.UUID {
	tb.Helper()
	row, err := testkit.CreateUpload(b.ctx, b.st.Pool, dbq.Upload{
		ID: uuid.New(), Owner: "alice", Bucket: b.bucket, Key: u.Key, Method: "multipart", Filename: "f.bin",
		ContentType: "application/octet-stream", Size: 1, MultipartUploadID: aws.String(u.ID), ExpiresAt: expiresAt,
	})
	require.NoError(tb, err)
	return row.ID
}

// status is an intent's status.
func (b *testBundle) status(tb testing.TB, id uuid.UUID) string {
	tb.Helper()
	row, err := testkit.GetUpload(b.ctx, b.st.Pool, id)
	require.NoError(tb, err)
	return row.Status
}

// aborts returns the recorded aborts by upload id.
func (b *testBundle) aborts(tb testing.TB) map[string]dbq.MultipartAbort {
	tb.Helper()
	rows, err := testkit.ListMultipartAborts(b.ctx, b.st.Pool, b.bucket)
	require.NoError(tb, err)
	out := map[string]dbq.MultipartAbort{}
	for _, r := range rows {
		out[r.UploadID] = r
	}
	return out
}

// uploadPart uploads body as part n and returns its ETag.
func (b *testBundle) uploadPart(tb testing.TB, u testkit.Upload, n int32, body []byte) string {
	tb.Helper()
	out, err := b.s3.UploadPart(b.ctx, &s3.UploadPartInput{Bucket: aws.String(b.bucket), Key: aws.String(u.Key),
		UploadId: aws.String(u.ID), PartNumber: aws.Int32(n), Body: bytes.NewReader(body)})
	require.NoError(tb, err)
	return aws.ToString(out.ETag)
}

// complete completes u with its part 1 (etag), as a client holding presigned URLs would, past intake.
func (b *testBundle) complete(tb testing.TB, u testkit.Upload, etag string) {
	tb.Helper()
	_, err := b.s3.CompleteMultipartUpload(b.ctx, &s3.CompleteMultipartUploadInput{Bucket: aws.String(b.bucket), Key: aws.String(u.Key),
		UploadId: aws.String(u.ID), MultipartUpload: &types.CompletedMultipartUpload{Parts: []types.CompletedPart{{ETag: aws.String(etag), PartNumber: aws.Int32(1)}}}})
	require.NoError(tb, err)
}

// objectExists tells whether S3 holds an object at key.
func (b *testBundle) objectExists(tb testing.TB, key string) bool {
	tb.Helper()
	_, err := b.s3.HeadObject(b.ctx, &s3.HeadObjectInput{Bucket: aws.String(b.bucket), Key: aws.String(key)})
	if err == nil {
		return true
	}
	require.ErrorContains(tb, err, "NotFound")
	return false
}

// keys returns n keys "<prefix><i>.bin".
func keys(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s%04d.bin", prefix, i)
	}
	return out
}
