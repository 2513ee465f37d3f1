package consumer_test

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/intakehq/intake/internal/ingress"
	"github.com/intakehq/intake/internal/objstore"
	"github.com/intakehq/intake/internal/store"
	"github.com/intakehq/intake/internal/telemetry"
	"github.com/intakehq/intake/internal/testkit"
	"github.com/intakehq/intake/pipeline"
	"github.com/intakehq/intake/worker/consumer"
)

// The MinIO webhook target TEST of the local stack (deploy/local/stack.sh) posts to this address
// with this token. Only this test listens there.
const (
	webhookAddr  = "127.0.0.1:18080"
	webhookToken = "test-ingress-token"
	webhookARN   = "arn:minio:sqs:us-east-1:TEST:webhook"
)

// hook is the ingress listening on webhookAddr; each subtest points it at its own queue.
type hook struct {
	h atomic.Pointer[ingress.Handler]
}

func (k *hook) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := k.h.Load()
	if h == nil {
		http.Error(w, "no queue yet", http.StatusServiceUnavailable)
		return
	}
	h.ServeHTTP(w, r)
}

// listenWebhook serves the ingress on webhookAddr until the test ends.
func listenWebhook(t *testing.T) *hook {
	t.Helper()
	var ln net.Listener
	var err error
	for deadline := time.Now().Add(30 * time.Second); ; {
		if ln, err = net.Listen("tcp", webhookAddr); err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	require.NoError(t, err, "listen on %s (the MinIO TEST webhook target); is another end-to-end run in progress?", webhookAddr)
	k := &hook{}
	mux := http.NewServeMux()
	mux.Handle(ingress.Path, k)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ln)
	}()
	t.Cleanup(func() {
		_ = srv.Close()
		<-done
	})
	return k
}

// e2e is one scenario's world: a bucket whose events reach a fresh queue through the ingress, and
// a fresh database schema.
type e2e struct {
	s3     *s3.Client
	sqs    *sqs.Client
	bucket string
	q      testkit.Queues
	st     *store.Store
}

func newE2E(t *testing.T, k *hook, maxReceive int) *e2e {
	t.Helper()
	ctx := testkit.Context(t)
	e := &e2e{s3: testkit.S3(), sqs: testkit.SQS(), st: testkit.DB(t)}
	e.bucket = testkit.Bucket(t, e.s3)
	e.q = testkit.Queue(t, e.sqs, maxReceive, 30*time.Second)
	h, err := ingress.New(ingress.Config{Token: webhookToken, QueueURL: e.q.URL, Client: e.sqs,
		Log: telemetry.NewLogger(testWriter{t}, "text", "warn")})
	require.NoError(t, err)
	k.h.Store(h)
	require.NoError(t, objstore.NotifyQueue(ctx, e.s3, e.bucket, webhookARN))
	// Before the bucket is emptied and the queue deleted (cleanups run last-in first-out): stop the
	// bucket's notifications, so the removals do not reach the next scenario's queue.
	t.Cleanup(func() {
		k.h.CompareAndSwap(h, nil)
		_, err := e.s3.PutBucketNotificationConfiguration(context.Background(), &s3.PutBucketNotificationConfigurationInput{
			Bucket: aws.String(e.bucket), NotificationConfiguration: &s3types.NotificationConfiguration{},
		})
		assert.NoError(t, err)
	})
	return e
}

// batchedRecords is the daemon's record store over st (lookups and records of concurrent messages
// batched), closed when the test ends.
func batchedRecords(t *testing.T, st *store.Store) *store.Records {
	t.Helper()
	rs := store.NewBatchedRecords(st, store.BatchOptions{})
	t.Cleanup(rs.Close)
	return rs
}

// processor is the real pipeline Processor over the scenario's bucket and records (the daemon's
// batched record store unless given).
func (e *e2e) processor(t *testing.T, records pipeline.RecordStore) *pipeline.Processor {
	t.Helper()
	if records == nil {
		records = batchedRecords(t, e.st)
	}
	p, err := pipeline.NewProcessor(pipeline.ProcessorConfig{
		Objects: objstore.NewObjects(e.s3), Records: records, Buckets: []string{e.bucket}, Policy: pipeline.DefaultPolicy(),
		Log: telemetry.NewLogger(testWriter{t}, "text", "warn"), Registerer: prometheus.NewRegistry(),
	})
	require.NoError(t, err)
	return p
}

func (e *e2e) consume(t *testing.T, p consumer.Processor, tune func(*consumer.Config)) *started {
	t.Helper()
	cfg := consumer.Config{Client: e.sqs, QueueURL: e.q.URL, Processor: p, RetryBase: time.Second,
		Log: telemetry.NewLogger(testWriter{t}, "text", "warn")}
	if tune != nil {
		tune(&cfg)
	}
	return start(t, cfg)
}

func (e *e2e) put(t *testing.T, key, contentType string, body []byte) string {
	t.Helper()
	out, err := e.s3.PutObject(context.Background(), &s3.PutObjectInput{
		Bucket: aws.String(e.bucket), Key: aws.String(key), ContentType: aws.String(contentType), Body: bytes.NewReader(body),
	})
	require.NoError(t, err)
	return unquote(aws.ToString(out.ETag))
}

// presignedPut uploads like a browser: through a presigned URL that signs the content type.
func (e *e2e) presignedPut(t *testing.T, key, contentType string, body []byte) {
	t.Helper()
	req, err := s3.NewPresignClient(e.s3).PresignPutObject(context.Background(), &s3.PutObjectInput{
		Bucket: aws.String(e.bucket), Key: aws.String(key), ContentType: aws.String(contentType),
	}, s3.WithPresignExpires(5*time.Minute))
	require.NoError(t, err)
	put, err := http.NewRequest(http.MethodPut, req.URL, bytes.NewReader(body))
	require.NoError(t, err)
	put.Header.Set("Content-Type", contentType)
	resp, err := http.DefaultClient.Do(put)
	require.NoError(t, err)
	msg, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode, string(msg))
}

type row struct {
	Status, Reason, ETag, ContentType, SniffedType, Owner *string
	Size                                                  *int64
	SHA256                                                []byte
	UploadID                                              *uuid.UUID
}

func (e *e2e) row(t *testing.T, key string) (row, bool) {
	t.Helper()
	var r row
	err := e.st.Pool.QueryRow(context.Background(),
		`SELECT status, reason, etag, content_type, sniffed_type, owner, size, sha256, upload_id
		   FROM objects WHERE bucket = $1 AND key = $2`, e.bucket, key).
		Scan(&r.Status, &r.Reason, &r.ETag, &r.ContentType, &r.SniffedType, &r.Owner, &r.Size, &r.SHA256, &r.UploadID)
	if errors.Is(err, pgx.ErrNoRows) {
		return r, false
	}
	require.NoError(t, err)
	return r, true
}

// waitRows waits until every key has a row whose status is one of want.
func (e *e2e) waitRows(t *testing.T, timeout time.Duration, keys []string, want ...string) {
	t.Helper()
	var missing []string
	ok := assert.Eventually(t, func() bool {
		missing = missing[:0]
		for _, k := range keys {
			r, found := e.row(t, k)
			if !found || !contains(want, *r.Status) {
				missing = append(missing, k)
			}
		}
		return len(missing) == 0
	}, timeout, 100*time.Millisecond)
	require.True(t, ok, "keys without a %v row: %v", want, missing)
}

func (e *e2e) rowCount(t *testing.T) int {
	t.Helper()
	var n int
	require.NoError(t, e.st.Pool.QueryRow(context.Background(), `SELECT count(*) FROM objects WHERE bucket = $1`, e.bucket).Scan(&n))
	return n
}

// waitQueued waits until the queue holds at least n messages (the webhook delivered them).
func (e *e2e) waitQueued(t *testing.T, n int) {
	t.Helper()
	require.Eventually(t, func() bool {
		visible, inflight := depth(t, e.sqs, e.q.URL)
		return visible+inflight >= n
	}, 30*time.Second, 50*time.Millisecond, "MinIO's webhook events did not reach the queue")
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func unquote(s string) string { return string(bytes.Trim([]byte(s), `"`)) }

func pngBytes(t *testing.T) []byte {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, 7, 5))
	img.Set(1, 1, color.RGBA{R: 255, A: 255})
	var b bytes.Buffer
	require.NoError(t, png.Encode(&b, img))
	return b.Bytes()
}

// TestEndToEnd runs S3 events from MinIO through the ingress, kumo, the consumer and the real
// Processor into PostgreSQL. The scenarios run one after the other because they share the webhook
// listener.
func TestEndToEnd(t *testing.T) {
	skipShort(t)
	t.Parallel()
	k := listenWebhook(t)

	t.Run("valid upload through a presigned PUT", func(t *testing.T) {
		e := newE2E(t, k, 5)
		e.consume(t, e.processor(t, nil), nil)
		body := []byte("hello, intake\n")
		sum := sha256.Sum256(body)
		md := md5.Sum(body)
		key := "uploads/alice/" + uuid.NewString() + "/hello.txt"
		id := uuid.New()
		_, err := e.st.Pool.Exec(context.Background(),
			`INSERT INTO uploads (id, owner, bucket, key, method, filename, content_type, size, sha256, expires_at)
			 VALUES ($1, 'alice', $2, $3, 'put', 'hello.txt', 'text/plain', $4, $5, now() + interval '1 hour')`,
			id, e.bucket, key, len(body), sum[:])
		require.NoError(t, err)

		e.presignedPut(t, key, "text/plain", body)
		e.waitRows(t, 30*time.Second, []string{key}, pipeline.StatusValid)
		r, _ := e.row(t, key)
		assert.Equal(t, int64(len(body)), *r.Size)
		assert.Equal(t, "text/plain", *r.ContentType)
		assert.Equal(t, hex.EncodeToString(md[:]), *r.ETag)
		assert.Equal(t, sum[:], r.SHA256, "the declared sha256 was computed and matched")
		assert.Equal(t, "alice", *r.Owner)
		assert.Equal(t, id, *r.UploadID)
		var status string
		require.NoError(t, e.st.Pool.QueryRow(context.Background(), `SELECT status FROM uploads WHERE id = $1`, id).Scan(&status))
		assert.Equal(t, "completed", status)
	})

	t.Run("PNG declared as PDF is rejected and tagged", func(t *testing.T) {
		e := newE2E(t, k, 5)
		e.consume(t, e.processor(t, nil), nil)
		key := "uploads/bob/" + uuid.NewString() + "/report.pdf"
		e.presignedPut(t, key, "application/pdf", pngBytes(t))
		e.waitRows(t, 30*time.Second, []string{key}, pipeline.StatusRejected)
		r, _ := e.row(t, key)
		assert.Equal(t, pipeline.ReasonSniffMismatch, *r.Reason)
		assert.Equal(t, "image/png", *r.SniffedType)
		var tags map[string]string
		require.Eventually(t, func() bool {
			out, err := e.s3.GetObjectTagging(context.Background(), &s3.GetObjectTaggingInput{Bucket: aws.String(e.bucket), Key: aws.String(key)})
			require.NoError(t, err)
			tags = map[string]string{}
			for _, tag := range out.TagSet {
				tags[aws.ToString(tag.Key)] = aws.ToString(tag.Value)
			}
			return tags[pipeline.TagStatus] == pipeline.StatusRejected
		}, 10*time.Second, 50*time.Millisecond)
		assert.Equal(t, pipeline.ReasonSniffMismatch, tags[pipeline.TagReason])
	})

	t.Run("burst of 64 duplicated and shuffled messages", func(t *testing.T) {
		e := newE2E(t, k, 10)
		// 16 keys, 8 of them written twice: 24 real events, captured from the queue.
		final := map[string][]byte{}
		var keys []string
		for i := range 16 {
			key := fmt.Sprintf("burst/%02d.txt", i)
			keys = append(keys, key)
			final[key] = []byte(fmt.Sprintf("first version of %d", i))
			e.put(t, key, "text/plain", final[key])
		}
		for i := range 8 {
			key := keys[i*2]
			final[key] = []byte(fmt.Sprintf("second, longer version of object %d", i*2))
			e.put(t, key, "text/plain", final[key])
		}
		e.waitQueued(t, 24)
		captured := receiveAll(t, e.sqs, e.q.URL, time.Second)
		require.Len(t, captured, 24)

		var burst []string
		for _, m := range captured {
			burst = append(burst, aws.ToString(m.Body))
		}
		for len(burst) < 64 {
			burst = append(burst, aws.ToString(captured[rand.IntN(len(captured))].Body))
		}
		rand.Shuffle(len(burst), func(i, j int) { burst[i], burst[j] = burst[j], burst[i] })
		send(t, e.sqs, e.q.URL, burst...)

		s := e.consume(t, e.processor(t, nil), nil)
		require.Eventually(t, func() bool { return testkit.Metric(t, s.reg, "intake_messages_acked_total") == 64 }, 60*time.Second, 50*time.Millisecond)
		e.waitRows(t, 10*time.Second, keys, pipeline.StatusValid)
		assert.Equal(t, len(keys), e.rowCount(t), "exactly one row per key")
		for _, key := range keys {
			r, _ := e.row(t, key)
			md := md5.Sum(final[key])
			assert.Equal(t, hex.EncodeToString(md[:]), *r.ETag, key)
			assert.Equal(t, int64(len(final[key])), *r.Size, key)
		}
	})

	t.Run("malformed body reaches the DLQ while the consumer keeps going", func(t *testing.T) {
		e := newE2E(t, k, 2)
		s := e.consume(t, e.processor(t, nil), func(c *consumer.Config) { c.Visibility = 5 * time.Second })
		send(t, e.sqs, e.q.URL, `{"Records":[{"eventName":"ObjectCreated:Put","s3":{}}]}`)
		var dead []string
		require.Eventually(t, func() bool {
			for _, m := range receiveAll(t, e.sqs, e.q.DLQURL, 0) {
				dead = append(dead, aws.ToString(m.Body))
			}
			return len(dead) > 0
		}, 30*time.Second, 200*time.Millisecond)
		assert.Equal(t, []string{`{"Records":[{"eventName":"ObjectCreated:Put","s3":{}}]}`}, dead)
		require.NoError(t, s.c.Ready(context.Background()), "the consumer is still running")

		e.put(t, "after/ok.txt", "text/plain", []byte("still processed"))
		e.waitRows(t, 30*time.Second, []string{"after/ok.txt"}, pipeline.StatusValid)
	})

	t.Run("PostgreSQL outage loses no event", func(t *testing.T) {
		e := newE2E(t, k, 100)
		proxy := testkit.NewProxy(t, "postgres", "127.0.0.1:5432")
		viaProxy := testkit.StoreVia(t, e.st, proxy.Addr)
		s := e.consume(t, e.processor(t, batchedRecords(t, viaProxy)), nil)

		var keys []string
		for i := range 5 {
			keys = append(keys, fmt.Sprintf("before/%d.txt", i))
			e.put(t, keys[i], "text/plain", []byte("before the outage"))
		}
		e.waitRows(t, 30*time.Second, keys, pipeline.StatusValid)

		proxy.Down()
		downAt := time.Now()
		for i := range 10 {
			key := fmt.Sprintf("during/%d.txt", i)
			keys = append(keys, key)
			e.put(t, key, "text/plain", []byte("during the outage"))
		}
		require.Eventually(t, func() bool { return testkit.Metric(t, s.reg, "intake_consumer_paused") == 1 }, 15*time.Second, 20*time.Millisecond,
			"the consumer pauses while PostgreSQL is unreachable")
		time.Sleep(time.Until(downAt.Add(10 * time.Second)))
		proxy.Up()

		e.waitRows(t, 90*time.Second, keys, pipeline.StatusValid)
		assert.Equal(t, len(keys), e.rowCount(t))
		require.Eventually(t, func() bool { return testkit.Metric(t, s.reg, "intake_consumer_paused") == 0 }, 10*time.Second, 20*time.Millisecond)
		assert.Empty(t, receiveAll(t, e.sqs, e.q.DLQURL, 0), "nothing was dead-lettered")
		t.Logf("retried during the outage: %v messages", testkit.Metric(t, s.reg, "intake_messages_retried_total"))
	})

	t.Run("SIGTERM mid-batch loses nothing", func(t *testing.T) {
		e := newE2E(t, k, 10)
		var keys []string
		for i := range 20 {
			keys = append(keys, fmt.Sprintf("term/%02d.txt", i))
			e.put(t, keys[i], "text/plain", []byte(fmt.Sprintf("object %d", i)))
		}
		e.waitQueued(t, 20)

		real := e.processor(t, nil)
		var entered atomic.Int64
		slow := consumer.ProcessorFunc(func(ctx context.Context, id string, body []byte) error {
			entered.Add(1)
			select { // some finish within the grace period, the others are cut off
			case <-time.After(time.Duration(rand.IntN(3000)) * time.Millisecond):
			case <-ctx.Done():
				return ctx.Err()
			}
			return real.Process(ctx, id, body)
		})
		first := e.consume(t, slow, func(c *consumer.Config) { c.Grace = time.Second; c.Visibility = time.Minute })
		require.Eventually(t, func() bool { return entered.Load() == 20 }, 30*time.Second, 10*time.Millisecond)
		require.NoError(t, first.stop(t))
		acked := int(testkit.Metric(t, first.reg, "intake_messages_acked_total"))
		released := int(testkit.Metric(t, first.reg, "intake_messages_released_total"))
		t.Logf("first run: %d acked, %d returned to the queue", acked, released)
		assert.Equal(t, 20, acked+released, "every message was either committed or returned")

		e.consume(t, e.processor(t, nil), nil)
		e.waitRows(t, 20*time.Second, keys, pipeline.StatusValid) // well before the 1 min visibility
		require.Eventually(t, func() bool {
			visible, inflight := depth(t, e.sqs, e.q.URL)
			return visible+inflight == 0
		}, 10*time.Second, 50*time.Millisecond)
		assert.Equal(t, len(keys), e.rowCount(t))
	})
}
