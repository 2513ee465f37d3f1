package ingress_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/intakehq/intake/internal/api"
	"github.com/intakehq/intake/internal/ingress"
	"github.com/intakehq/intake/internal/objstore"
	"github.com/intakehq/intake/internal/store"
	"github.com/intakehq/intake/internal/telemetry"
	"github.com/intakehq/intake/internal/testkit"
	"github.com/intakehq/intake/pipeline"
	"github.com/intakehq/intake/worker/consumer"
)

// attackStack is the real event path: the ingress forwards to a kumo queue, a consumer with an
// explicit dead-letter queue runs the pipeline over a served MinIO bucket and a PostgreSQL schema.
// A second bucket, "victim", belongs to someone else: intake's credentials can reach it, intake is
// not configured for it.
type attackStack struct {
	ctx            context.Context
	s3             *s3.Client
	sqs            *sqs.Client
	bucket, victim string
	st             *store.Store
	ingressURL     string
	dlqURL         string
	reg            *prometheus.Registry
	posted         int
}

func setupAttack(t *testing.T) *attackStack {
	t.Helper()
	a := &attackStack{ctx: testkit.Context(t), s3: testkit.S3(), sqs: testkit.SQS(), reg: prometheus.NewRegistry()}
	a.bucket, a.victim = testkit.Bucket(t, a.s3), testkit.Bucket(t, a.s3)
	a.st = testkit.DB(t)
	q := testkit.Queue(t, a.sqs, 5, 30*time.Second)
	a.dlqURL = q.DLQURL

	h, err := ingress.New(ingress.Config{Token: token, QueueURL: q.URL, Client: a.sqs, SendTimeout: 5 * time.Second})
	require.NoError(t, err)
	mux := http.NewServeMux()
	h.Mount(mux)
	srv := httptest.NewServer(testkit.NewContract(t, api.OpenAPI()).Handler(t, mux))
	t.Cleanup(srv.Close)
	a.ingressURL = srv.URL + ingress.Path

	log := telemetry.NewLogger(&bytes.Buffer{}, "text", "error")
	records := store.NewBatchedRecords(a.st, store.BatchOptions{})
	t.Cleanup(records.Close)
	// The most destructive policy: content that disagrees with its type is deleted.
	policy := &pipeline.Policy{Rules: []pipeline.Rule{{Prefix: "", RequireSniffMatch: true, Action: pipeline.ActionDelete}}}
	proc, err := pipeline.NewProcessor(pipeline.ProcessorConfig{
		Objects: objstore.NewObjects(a.s3), Records: records, Buckets: []string{a.bucket}, Policy: policy,
		Log: log, Registerer: a.reg,
	})
	require.NoError(t, err)
	c, err := consumer.New(consumer.Config{
		Client: a.sqs, QueueURL: q.URL, DLQURL: q.DLQURL, Processor: proc, WaitTime: time.Second,
		Visibility: 10 * time.Second, DepthInterval: -1, Log: log, Registerer: a.reg,
	})
	require.NoError(t, err)
	testkit.Serve(t, c.Run)
	return a
}

// post sends a body through the ingress, as MinIO's webhook (or anyone holding its token) does, and
// waits until the consumer settled it (acknowledged or dead-lettered).
func (a *attackStack) post(t *testing.T, body []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(a.ctx, http.MethodPost, a.ingressURL, bytes.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json") // as MinIO's webhook sends it
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	_ = resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode, "the ingress forwards any well-formed event")
	a.posted++
	require.Eventually(t, func() bool {
		return a.metric(t, "intake_messages_acked_total", nil)+a.metric(t, "intake_messages_dead_lettered_total", nil) >= float64(a.posted)
	}, 30*time.Second, 20*time.Millisecond, "message %d not settled", a.posted)
}

// metric sums the counters name with the given labels.
func (a *attackStack) metric(t *testing.T, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := a.reg.Gather()
	require.NoError(t, err)
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if v, ok := labels[lp.GetName()]; ok && v != lp.GetValue() {
					continue series
				}
			}
			sum += m.GetCounter().GetValue()
		}
	}
	return sum
}

func (a *attackStack) put(t *testing.T, bucket, key, contentType, content string) string {
	t.Helper()
	out, err := a.s3.PutObject(a.ctx, &s3.PutObjectInput{
		Bucket: aws.String(bucket), Key: aws.String(key), ContentType: aws.String(contentType), Body: strings.NewReader(content),
	})
	require.NoError(t, err)
	return strings.Trim(aws.ToString(out.ETag), `"`)
}

func (a *attackStack) exists(t *testing.T, bucket, key string) bool {
	t.Helper()
	_, err := a.s3.HeadObject(a.ctx, &s3.HeadObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if objstore.IsNotFound(err) {
		return false
	}
	require.NoError(t, err)
	return true
}

func (a *attackStack) tags(t *testing.T, bucket, key string) int {
	t.Helper()
	out, err := a.s3.GetObjectTagging(a.ctx, &s3.GetObjectTaggingInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	require.NoError(t, err)
	return len(out.TagSet)
}

// attackRow is the part of an objects row the attacks aim at.
type attackRow struct {
	status, etag string
	eventTime    *time.Time
}

func (a *attackStack) row(t *testing.T, bucket, key string) (attackRow, bool) {
	t.Helper()
	var r attackRow
	var etag *string
	err := a.st.Pool.QueryRow(a.ctx, `SELECT status, etag, event_time FROM objects WHERE bucket = $1 AND key = $2`, bucket, key).
		Scan(&r.status, &etag, &r.eventTime)
	if errors.Is(err, pgx.ErrNoRows) {
		return r, false
	}
	require.NoError(t, err)
	if etag != nil {
		r.etag = *etag
	}
	return r, true
}

// dlqReasons drains the dead-letter queue and returns the intake-dlq-reason attribute of each message.
func (a *attackStack) dlqReasons(t *testing.T) []string {
	t.Helper()
	var reasons []string
	for {
		out, err := a.sqs.ReceiveMessage(a.ctx, &sqs.ReceiveMessageInput{
			QueueUrl: aws.String(a.dlqURL), MaxNumberOfMessages: 10, WaitTimeSeconds: 1, MessageAttributeNames: []string{"All"},
		})
		require.NoError(t, err)
		if len(out.Messages) == 0 {
			return reasons
		}
		for _, m := range out.Messages {
			reasons = append(reasons, aws.ToString(m.MessageAttributes["intake-dlq-reason"].StringValue))
			_, err := a.sqs.DeleteMessage(a.ctx, &sqs.DeleteMessageInput{QueueUrl: aws.String(a.dlqURL), ReceiptHandle: m.ReceiptHandle})
			require.NoError(t, err)
		}
	}
}

// record is one S3 event record as MinIO sends it.
type record struct {
	name, bucket, key, seq string
	at                     time.Time
}

func event(records ...record) []byte {
	var rs []map[string]any
	for _, r := range records {
		obj := map[string]any{"key": url.QueryEscape(r.key)}
		if r.seq != "" {
			obj["sequencer"] = r.seq
		}
		rs = append(rs, map[string]any{
			"eventVersion": "2.0", "eventSource": "minio:s3", "awsRegion": "us-east-1", "eventName": "s3:" + r.name,
			"eventTime": r.at.UTC().Format(time.RFC3339Nano),
			"s3":        map[string]any{"bucket": map[string]any{"name": r.bucket}, "object": obj},
		})
	}
	b, err := json.Marshal(map[string]any{"Records": rs})
	if err != nil {
		panic(err)
	}
	return b
}

// minioSequencer is what MinIO sends: its modification time in nanoseconds, upper-case hex.
func minioSequencer(at time.Time) string { return fmt.Sprintf("%X", at.UnixNano()) }

// TestForgedAndStrayEvents: events are hints, S3 is the truth. Each case names who sends what
// through the ingress, what must happen, and the side effect that must NOT happen.
func TestForgedAndStrayEvents(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("needs MinIO, kumo and PostgreSQL")
	}
	a := setupAttack(t)
	forgedSeq := strings.Repeat("F", 64)
	farFuture := time.Date(2099, 1, 1, 0, 0, 0, 0, time.UTC)

	tests := []struct {
		// attacker says who sends what.
		attacker string
		// attack prepares real objects (and rows, through honest events) and returns the body sent.
		attack func(t *testing.T, key string) []byte
		// deadLetter is the expected outcome: the message dead-lettered with this reason, or
		// acknowledged ("") with nothing changed that S3 does not confirm.
		deadLetter string
		// then runs honest events after the attack (nil: none).
		then func(t *testing.T, key string)
		// mustNot checks that the side effect the attacker wants did not happen.
		mustNot func(t *testing.T, key string)
	}{
		{
			attacker: "a stray event for another bucket (a misconfigured notification) naming a rejectable object",
			attack: func(t *testing.T, key string) []byte {
				a.put(t, a.victim, key, "image/png", "not a png")
				return event(record{"ObjectCreated:Put", a.victim, key, minioSequencer(time.Now()), time.Now()})
			},
			deadLetter: pipeline.ReasonForeignBucket,
			mustNot: func(t *testing.T, key string) {
				require.True(t, a.exists(t, a.victim, key), "the other bucket's object was deleted")
				require.Zero(t, a.tags(t, a.victim, key), "the other bucket's object was tagged")
				_, recorded := a.row(t, a.victim, key)
				require.False(t, recorded, "the other bucket's object was recorded")
			},
		},
		{
			attacker: "a forged body mixing a served key with another bucket's",
			attack: func(t *testing.T, key string) []byte {
				a.put(t, a.bucket, key, "text/plain", "fine")
				a.put(t, a.victim, key, "image/png", "not a png")
				now := time.Now()
				return event(record{"ObjectCreated:Put", a.bucket, key, minioSequencer(now), now}, record{"ObjectCreated:Put", a.victim, key, minioSequencer(now), now})
			},
			deadLetter: pipeline.ReasonForeignBucket,
			mustNot: func(t *testing.T, key string) {
				require.True(t, a.exists(t, a.victim, key), "the other bucket's object was deleted")
				_, recorded := a.row(t, a.bucket, key)
				require.False(t, recorded, "part of a refused message was processed")
			},
		},
		{
			attacker: "a forged removal (newer sequencer) of a live object",
			attack: func(t *testing.T, key string) []byte {
				a.honestPut(t, key, "text/plain", "live")
				return event(record{"ObjectRemoved:Delete", a.bucket, key, forgedSeq[:16], time.Now()})
			},
			mustNot: func(t *testing.T, key string) {
				r, _ := a.row(t, a.bucket, key)
				require.Equal(t, pipeline.StatusValid, r.status, "the live object's row was marked deleted")
				require.True(t, a.exists(t, a.bucket, key))
			},
		},
		{
			attacker: "a forged removal with an all-F sequencer and a far-future time, to pin the row deleted",
			attack: func(t *testing.T, key string) []byte {
				a.honestPut(t, key, "text/plain", "live")
				return event(record{"ObjectRemoved:Delete", a.bucket, key, forgedSeq, farFuture})
			},
			mustNot: func(t *testing.T, key string) {
				r, _ := a.row(t, a.bucket, key)
				require.Equal(t, pipeline.StatusValid, r.status, "the live object's row was marked deleted")
			},
		},
		{
			attacker: "a forged removal (or a stray delete marker) of an upload that has not landed, to have its app told it was deleted",
			attack: func(t *testing.T, key string) []byte {
				a.intent(t, key)
				return event(record{"ObjectRemoved:DeleteMarkerCreated", a.bucket, key, minioSequencer(time.Now()), time.Now()})
			},
			// The upload lands after the forgery: its verdict is notified as any other.
			then: func(t *testing.T, key string) { a.honestPut(t, key, "text/plain", "the real upload") },
			mustNot: func(t *testing.T, key string) {
				require.Equal(t, []string{"upload.valid"}, a.notifications(t, key), "the app was told of a deletion that never happened")
			},
		},
		{
			attacker: "a forged creation with an all-F sequencer and a far-future time, to pin the row before a real upload",
			attack: func(t *testing.T, key string) []byte {
				a.honestPut(t, key, "text/plain", "first")
				return event(record{"ObjectCreated:Put", a.bucket, key, forgedSeq, farFuture})
			},
			then: func(t *testing.T, key string) { a.honestPut(t, key, "text/plain", "second, after the forgery") },
			mustNot: func(t *testing.T, key string) {
				r, _ := a.row(t, a.bucket, key)
				require.Equal(t, a.etag(t, key), r.etag, "the row is pinned to the content before the forgery")
				require.NotNil(t, r.eventTime)
				require.True(t, r.eventTime.Before(farFuture), "the forged event time was stored: %v", r.eventTime)
			},
		},
	}
	for i, tc := range tests {
		t.Run(tc.attacker, func(t *testing.T) {
			key := fmt.Sprintf("attack-%d.txt", i)
			deadBefore := a.metric(t, "intake_messages_dead_lettered_total", nil)
			a.post(t, tc.attack(t, key))
			if tc.deadLetter != "" {
				require.Equal(t, deadBefore+1, a.metric(t, "intake_messages_dead_lettered_total", map[string]string{"reason": tc.deadLetter}))
				reasons := a.dlqReasons(t)
				require.Len(t, reasons, 1)
				require.Contains(t, reasons[0], tc.deadLetter)
			} else {
				require.Equal(t, deadBefore, a.metric(t, "intake_messages_dead_lettered_total", nil), "dead-lettered")
			}
			if tc.then != nil {
				tc.then(t, key)
			}
			tc.mustNot(t, key)
		})
	}
	require.Positive(t, a.metric(t, "intake_events_distrusted_total", map[string]string{"reason": "removal_unconfirmed"}))
	require.Positive(t, a.metric(t, "intake_events_distrusted_total", map[string]string{"reason": "sequencer_implausible"}))
	require.Positive(t, a.metric(t, "intake_events_distrusted_total", map[string]string{"reason": "event_time_future"}))
}

// intent adds a pending upload intent of key, as the API does.
func (a *attackStack) intent(t *testing.T, key string) {
	t.Helper()
	_, err := a.st.Pool.Exec(a.ctx, `INSERT INTO uploads (id, owner, bucket, key, method, filename, content_type, size, expires_at)
		VALUES (gen_random_uuid(), 'alice', $1, $2, 'put', 'name', 'text/plain', 15, now() + interval '1 hour')`, a.bucket, key)
	require.NoError(t, err)
}

// notifications returns the event types of the outbox rows of key, oldest first.
func (a *attackStack) notifications(t *testing.T, key string) []string {
	t.Helper()
	rows, err := a.st.Pool.Query(a.ctx, `SELECT event_type FROM outbox WHERE bucket = $1 AND key = $2 ORDER BY id`, a.bucket, key)
	require.NoError(t, err)
	types, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	return types
}

// honestPut writes an object and sends the event MinIO would: a sequencer from its clock.
func (a *attackStack) honestPut(t *testing.T, key, contentType, content string) {
	t.Helper()
	a.put(t, a.bucket, key, contentType, content)
	now := time.Now()
	a.post(t, event(record{"ObjectCreated:Put", a.bucket, key, minioSequencer(now), now}))
	r, ok := a.row(t, a.bucket, key)
	require.True(t, ok)
	require.Equal(t, a.etag(t, key), r.etag)
}

func (a *attackStack) etag(t *testing.T, key string) string {
	t.Helper()
	out, err := a.s3.HeadObject(a.ctx, &s3.HeadObjectInput{Bucket: aws.String(a.bucket), Key: aws.String(key)})
	require.NoError(t, err)
	return strings.Trim(aws.ToString(out.ETag), `"`)
}
