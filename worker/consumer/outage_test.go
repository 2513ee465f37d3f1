package consumer_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/intakehq/intake/internal/objstore"
	"github.com/intakehq/intake/internal/testkit"
	"github.com/intakehq/intake/pipeline"
	"github.com/intakehq/intake/worker/consumer"
)

// outageLength is how long PostgreSQL is cut in TestLongOutageReceivesNothing: longer than the
// longest wait between two checks (30 s), so the checks reach their full backoff.
const outageLength = 45 * time.Second

// TestLongOutageReceivesNothing cuts PostgreSQL for 45 s under the queue's default redrive policy
// (dead-letter after 5 receives) while events keep arriving. The consumer pauses and checks
// PostgreSQL itself: no message is received during the outage, the messages in flight when it
// began are hidden (not retried every 2 s), nothing is dead-lettered, and every event is recorded
// after it, each received at most twice.
func TestLongOutageReceivesNothing(t *testing.T) {
	skipShort(t)
	t.Parallel()
	e := &e2e{s3: testkit.S3(), sqs: testkit.SQS(), st: testkit.DB(t)}
	e.bucket = testkit.Bucket(t, e.s3)
	e.q = testkit.Queue(t, e.sqs, 5, time.Minute) // the default redrive and visibility
	objs := uploadObjects(t, e.s3, e.bucket, 30)

	proxy := testkit.NewProxy(t, "postgres", "127.0.0.1:5432")
	viaProxy := testkit.StoreVia(t, e.st, proxy.Addr)
	real := e.processor(t, batchedRecords(t, viaProxy))
	rec := newRecorder()
	var slow atomic.Bool // holds messages in processing, so that some are in flight when the outage begins
	proc := consumer.ProcessorFunc(func(ctx context.Context, id string, body []byte) error {
		rec.call(ctx, id, body)
		if slow.Load() {
			time.Sleep(time.Second)
		}
		if err := real.Process(ctx, id, body); err != nil {
			return err
		}
		rec.commit(body)
		return nil
	})
	s := e.consume(t, proc, func(c *consumer.Config) {
		c.RetryBase = 0                 // the default, 2 s
		c.Visibility = 60 * time.Second // the default
		c.Dependencies = []consumer.Dependency{
			{Name: pipeline.DependencyPostgres, Check: viaProxy.CheckWritable},
			{Name: pipeline.DependencyS3, Check: func(ctx context.Context) error { return objstore.CheckBucket(ctx, e.s3, e.bucket) }},
		}
	})
	all := make([]string, len(objs))
	for i, o := range objs {
		all[i] = eventBody(e.bucket, o, i)
	}
	events := func(from, to int) []string { return all[from:to] }

	// Before: the consumer works.
	send(t, e.sqs, e.q.URL, events(0, 10)...)
	keys := func(n int) []string {
		var out []string
		for _, o := range objs[:n] {
			out = append(out, o.key)
		}
		return out
	}
	e.waitRows(t, 30*time.Second, keys(10), pipeline.StatusValid)

	// Ten events are in processing when PostgreSQL goes away.
	slow.Store(true)
	send(t, e.sqs, e.q.URL, events(10, 20)...)
	require.Eventually(t, func() bool { return rec.total.Load() >= 20 }, 30*time.Second, 10*time.Millisecond)
	proxy.Down()
	downAt := time.Now()
	slow.Store(false)
	paused := func() bool { return testkit.Metric(t, s.reg, "intake_consumer_paused", "dependency", "postgres") == 1 }
	require.Eventually(t, paused, 15*time.Second, 20*time.Millisecond, "the consumer pauses while PostgreSQL is unreachable")
	// The messages in flight fail and are hidden; a long poll under way when the pause began ends.
	require.Eventually(t, func() bool { return testkit.Metric(t, s.reg, "intake_consumer_inflight") == 0 }, 15*time.Second, 20*time.Millisecond)
	time.Sleep(2 * time.Second)
	receivedAtPause := testkit.Metric(t, s.reg, "intake_messages_received_total")
	callsAtPause := rec.total.Load()

	// Ten more events arrive during the outage.
	send(t, e.sqs, e.q.URL, events(20, 30)...)
	time.Sleep(time.Until(downAt.Add(outageLength)))
	receivedDuring := testkit.Metric(t, s.reg, "intake_messages_received_total") - receivedAtPause
	callsDuring := rec.total.Load() - callsAtPause
	pausedAtEnd := paused()
	readyErr := s.c.Ready(context.Background())
	proxy.Up()

	e.waitRows(t, 90*time.Second, keys(30), pipeline.StatusValid)
	require.Eventually(t, func() bool { return !paused() }, 40*time.Second, 50*time.Millisecond)
	require.Eventually(t, func() bool {
		visible, inflight := depth(t, e.sqs, e.q.URL)
		return visible+inflight == 0
	}, 30*time.Second, 100*time.Millisecond, "every message deleted")

	assert.Zero(t, receivedDuring, "messages received during the outage")
	assert.Zero(t, callsDuring, "messages processed during the outage")
	assert.True(t, pausedAtEnd, "paused until PostgreSQL is back")
	require.ErrorContains(t, readyErr, "paused: postgres unavailable since")
	assert.Equal(t, 30, e.rowCount(t))
	assert.Empty(t, receiveAll(t, e.sqs, e.q.DLQURL, 0), "nothing was dead-lettered")
	maxReceives := 0
	for _, body := range all {
		for _, a := range rec.attemptsOf(body) {
			maxReceives = max(maxReceives, a.receives)
		}
	}
	assert.LessOrEqual(t, maxReceives, 2, "a message in flight at the outage is received once more after it, not once per probe")
	assert.Zero(t, testkit.Metric(t, s.reg, "intake_messages_retried_total"), "an outage spends no retries")
	t.Logf("outage of %s: %v messages deferred, %v received during it, highest receive count %d",
		outageLength, testkit.Metric(t, s.reg, "intake_messages_deferred_total"), receivedDuring, maxReceives)
}
