package consumer_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/intakehq/intake/internal/objstore"
	"github.com/intakehq/intake/internal/queue"
	"github.com/intakehq/intake/internal/testkit"
	"github.com/intakehq/intake/pipeline"
	"github.com/intakehq/intake/worker/consumer"
)

// A receive against an SQS endpoint that accepts the connection and never answers (half-open)
// fails within the long poll plus a margin, and the receiver backs off and stops when asked,
// instead of hanging for ever.
func TestReceiveFromSilentServer(t *testing.T) {
	t.Parallel()
	addr := testkit.Silent(t)
	client := queue.NewClient(testkit.AWSConfig(), testkit.AWSAt("", "http://"+addr))
	s := start(t, consumer.Config{
		Client: client, QueueURL: "http://" + addr + "/000000000000/q", Receivers: 1, WaitTime: time.Second, DepthInterval: -1,
		Processor: consumer.ProcessorFunc(func(context.Context, string, []byte) error { return nil }),
	})
	require.Eventually(t, func() bool { return testkit.Metric(t, s.reg, "intake_consumer_receive_errors_total") >= 1 },
		40*time.Second, 50*time.Millisecond, "the receive returned (with an error) within its bound")
	require.NoError(t, s.stop(t))
}

// A read of S3 that stalls (the server accepts the request and never answers) is cut off by the
// message timeout: the worker is freed, the message is retried later (not treated as an outage),
// and it is recorded once S3 answers again.
func TestMessageTimeoutFreesStalledWorker(t *testing.T) {
	t.Parallel()
	skipShort(t)
	e := &e2e{s3: testkit.S3(), sqs: testkit.SQS(), st: testkit.DB(t)}
	e.bucket = testkit.Bucket(t, e.s3)
	e.q = testkit.Queue(t, e.sqs, 5, time.Minute)
	obj := uploadObjects(t, e.s3, e.bucket, 1)[0]

	working := e.processor(t, nil)
	silentCfg := testkit.AWSConfig()
	silentCfg.RetryMaxAttempts = 1
	silent := objstore.NewClient(silentCfg, testkit.AWSAt("http://"+testkit.Silent(t), ""))
	stalled, err := pipeline.NewProcessor(pipeline.ProcessorConfig{
		Objects: objstore.NewObjects(silent), Records: batchedRecords(t, e.st), Buckets: []string{e.bucket}, Policy: pipeline.DefaultPolicy(),
	})
	require.NoError(t, err)
	var stalling atomic.Bool
	stalling.Store(true)
	rec := newRecorder()
	s := e.consume(t, consumer.ProcessorFunc(func(ctx context.Context, id string, body []byte) error {
		rec.call(ctx, id, body)
		if stalling.Load() {
			return stalled.Process(ctx, id, body)
		}
		return working.Process(ctx, id, body)
	}), func(c *consumer.Config) {
		c.Visibility = time.Second
		c.MessageTimeout = 2 * time.Second
	})
	body := eventBody(e.bucket, obj, 1)
	send(t, e.sqs, e.q.URL, body)

	require.Eventually(t, func() bool {
		return testkit.Metric(t, s.reg, "intake_messages_timed_out_total") >= 1 && testkit.Metric(t, s.reg, "intake_consumer_inflight") == 0
	}, 30*time.Second, 20*time.Millisecond, "the stalled processing was cut off and its worker freed")
	assert.Zero(t, testkit.Metric(t, s.reg, "intake_consumer_paused", "dependency", "s3"), "a message's own timeout is not an outage")
	stalling.Store(false)

	e.waitRows(t, 30*time.Second, []string{obj.key}, pipeline.StatusValid)
	attempts := rec.attemptsOf(body)
	require.GreaterOrEqual(t, len(attempts), 2)
	assert.GreaterOrEqual(t, attempts[len(attempts)-1].receives, 2, "retried by redelivery")
	assert.GreaterOrEqual(t, testkit.Metric(t, s.reg, "intake_messages_retried_total"), 1.0)
}
