package reconcile_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/hibiken/asynq"
	"github.com/stretchr/testify/require"

	"github.com/intakehq/intake/internal/objstore"
	"github.com/intakehq/intake/internal/reconcile"
	"github.com/intakehq/intake/internal/store"
	"github.com/intakehq/intake/internal/telemetry"
	"github.com/intakehq/intake/internal/testkit"
	"github.com/intakehq/intake/pipeline"
	"github.com/intakehq/intake/worker/jobs"
)

// convergeBundle is a bucket, a schema, a Redis database, the pipeline, and a running jobs server
// (the object:inspect tasks of reconcile --fix go through the real asynq path).
type convergeBundle struct {
	ctx    context.Context
	s3     *s3.Client
	bucket string
	st     *store.Store
	proc   *pipeline.Processor
	client *asynq.Client
}

func setupConverge(t *testing.T) *convergeBundle {
	t.Helper()
	if testing.Short() {
		t.Skip("needs MinIO, PostgreSQL and Redis")
	}
	b := &convergeBundle{ctx: testkit.Context(t), s3: testkit.S3(), st: testkit.DB(t)}
	b.bucket = testkit.Bucket(t, b.s3)
	redisOpt := asynq.RedisClientOpt{Addr: testkit.RedisAddr(), DB: testkit.RedisDB(t)}
	log := telemetry.NewLogger(logWriter{t}, "text", "warn")
	proc, err := pipeline.NewProcessor(pipeline.ProcessorConfig{
		Objects: objstore.NewObjects(b.s3), Records: store.NewRecords(b.st), Buckets: []string{b.bucket}, Log: log,
	})
	require.NoError(t, err)
	b.proc = proc
	srv, err := jobs.NewServer(jobs.ServerConfig{Redis: redisOpt, Concurrency: 2, ShutdownTimeout: 5 * time.Second, Log: log},
		jobs.NewMux(&jobs.Handlers{Inspector: proc, Log: log}, nil, log))
	require.NoError(t, err)
	testkit.Serve(t, srv.Run)
	b.client = asynq.NewClient(redisOpt)
	t.Cleanup(func() { _ = b.client.Close() })
	return b
}

func (b *convergeBundle) put(t *testing.T, key, content string) string {
	t.Helper()
	out, err := b.s3.PutObject(b.ctx, &s3.PutObjectInput{Bucket: aws.String(b.bucket), Key: aws.String(key), Body: strings.NewReader(content), ContentType: aws.String("text/plain")})
	require.NoError(t, err)
	return strings.Trim(aws.ToString(out.ETag), `"`)
}

func (b *convergeBundle) event(t *testing.T, name, key, seq string, at time.Time) {
	t.Helper()
	body, err := json.Marshal(map[string]any{"Records": []map[string]any{{
		"eventSource": "minio:s3", "eventName": "s3:" + name, "eventTime": at.UTC().Format(time.RFC3339Nano),
		"s3": map[string]any{"bucket": map[string]any{"name": b.bucket}, "object": map[string]any{"key": url.QueryEscape(key), "sequencer": seq}},
	}}})
	require.NoError(t, err)
	require.NoError(t, b.proc.Process(b.ctx, "m-"+seq, body))
}

func (b *convergeBundle) status(t *testing.T, key string) (status, etag string) {
	t.Helper()
	var e *string
	require.NoError(t, b.st.Pool.QueryRow(b.ctx, `SELECT status, etag FROM objects WHERE bucket = $1 AND key = $2`, b.bucket, key).Scan(&status, &e))
	if e != nil {
		etag = *e
	}
	return status, etag
}

// TestFixConverges: a row that says deleted while the object exists is stale; reconcile --fix
// enqueues its inspection, the jobs server runs it, the row ends as S3 is, and a second reconcile
// reports nothing.
func TestFixConverges(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		// stale leaves key's row deleted while S3 has the object, and returns the object's ETag.
		stale func(t *testing.T, b *convergeBundle, key string) string
	}{
		{
			// MinIO stamps events with its node's clock: a removal's time may lie after the
			// LastModified (whole seconds) of the upload that follows it, whose event was lost.
			name: "a newer-sequencer removal, then an upload whose event was lost",
			stale: func(t *testing.T, b *convergeBundle, key string) string {
				now := time.Now()
				b.put(t, key, "one")
				b.event(t, "ObjectCreated:Put", key, fmt.Sprintf("%X", now.UnixNano()), now)
				_, err := b.s3.DeleteObject(b.ctx, &s3.DeleteObjectInput{Bucket: aws.String(b.bucket), Key: aws.String(key)})
				require.NoError(t, err)
				later := now.Add(2 * time.Minute)
				b.event(t, "ObjectRemoved:Delete", key, fmt.Sprintf("%X", later.UnixNano()), later)
				return b.put(t, key, "two") // its event is lost
			},
		},
		{
			name: "a row from before the observation times, deleted by a forged sequencer",
			stale: func(t *testing.T, b *convergeBundle, key string) string {
				etag := b.put(t, key, "live")
				_, err := b.st.Pool.Exec(b.ctx, `INSERT INTO objects (bucket, key, status, sequencer, event_time)
					VALUES ($1, $2, 'deleted', $3, now() + interval '1 day')`, b.bucket, key, strings.Repeat("F", 64))
				require.NoError(t, err)
				return etag
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := setupConverge(t)
			const key = "uploads/k.txt"
			etag := tc.stale(t, b, key)
			status, _ := b.status(t, key)
			require.Equal(t, pipeline.StatusDeleted, status)

			rep, err := reconcile.Run(b.ctx, b.s3, b.st.Q, reconcile.Options{Bucket: b.bucket})
			require.NoError(t, err)
			require.Equal(t, []reconcile.Stale{{Key: key, S3ETag: etag, RowETag: "", RowStatus: "deleted"}}, rep.Stale)

			rep, err = reconcile.Run(b.ctx, b.s3, b.st.Q, reconcile.Options{Bucket: b.bucket, Fix: true, Enqueuer: reconcile.TaskEnqueuer{Client: b.client}})
			require.NoError(t, err)
			require.Equal(t, 1, rep.Fixed.Enqueued)
			require.Eventually(t, func() bool {
				status, got := b.status(t, key)
				return status == pipeline.StatusValid && got == etag
			}, 90*time.Second, 50*time.Millisecond, "the inspection did not bring the row to what S3 shows (one asynq retry allowed)")

			rep, err = reconcile.Run(b.ctx, b.s3, b.st.Q, reconcile.Options{Bucket: b.bucket})
			require.NoError(t, err)
			require.Zero(t, rep.Differences(), "a second reconcile reports nothing: %+v", rep)
			require.Zero(t, rep.Changed)
		})
	}
}

// logWriter sends log lines to the test's log.
type logWriter struct{ t *testing.T }

func (w logWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}
