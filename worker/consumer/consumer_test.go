package consumer_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/smithy-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/intakehq/intake/internal/testkit"
	"github.com/intakehq/intake/pipeline"
	"github.com/intakehq/intake/worker/consumer"
)

func skipShort(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("needs kumo (the local stack)")
	}
}

func bodies(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s-%02d", prefix, i)
	}
	return out
}

func TestNewValidates(t *testing.T) {
	t.Parallel()
	ok := consumer.Config{Client: testkit.SQS(), QueueURL: "http://127.0.0.1:4566/000000000000/q", Processor: consumer.ProcessorFunc(func(context.Context, string, []byte) error { return nil })}
	tests := []struct {
		name   string
		mutate func(*consumer.Config)
		want   string
	}{
		{"valid with defaults", func(*consumer.Config) {}, ""},
		{"no client", func(c *consumer.Config) { c.Client = nil }, "Client is required"},
		{"no queue", func(c *consumer.Config) { c.QueueURL = "" }, "QueueURL is required"},
		{"no processor", func(c *consumer.Config) { c.Processor = nil }, "Processor is required"},
		{"wait above 20s", func(c *consumer.Config) { c.WaitTime = 21 * time.Second }, "WaitTime"},
		{"visibility above 12h", func(c *consumer.Config) { c.Visibility = 13 * time.Hour }, "Visibility"},
		{"negative workers", func(c *consumer.Config) { c.Workers = -1 }, "Workers"},
		{"negative grace", func(c *consumer.Config) { c.Grace = -time.Second }, "Grace"},
		{"message timeout below the visibility", func(c *consumer.Config) { c.MessageTimeout = 30 * time.Second }, "MessageTimeout 30s not in Visibility (1m0s)..6h0m0s"},
		{"message timeout near the visibility cap", func(c *consumer.Config) { c.MessageTimeout = 12 * time.Hour }, "MessageTimeout"},
		{"dependency without a check", func(c *consumer.Config) { c.Dependencies = []consumer.Dependency{{Name: "postgres"}} }, "Dependencies[0] needs a Name and a Check"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := ok
			tt.mutate(&cfg)
			_, err := consumer.New(cfg)
			if tt.want == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tt.want)
		})
	}
}

// Successful messages are deleted; a failing one is not.
func TestAckOnlyOnSuccess(t *testing.T) {
	t.Parallel()
	skipShort(t)
	client := testkit.SQS()
	q := testkit.Queue(t, client, 5, 30*time.Second)
	rec := newRecorder()
	s := start(t, consumer.Config{
		Client: client, QueueURL: q.URL, Visibility: 30 * time.Second, RetryBase: 20 * time.Second,
		Processor: consumer.ProcessorFunc(func(ctx context.Context, id string, body []byte) error {
			rec.call(ctx, id, body)
			if string(body) == "fail" {
				return errors.New("transient")
			}
			rec.commit(body)
			return nil
		}),
	})
	send(t, client, q.URL, "ok-1", "fail", "ok-2")
	require.Eventually(t, func() bool {
		return testkit.Metric(t, s.reg, "intake_messages_acked_total") == 2 && testkit.Metric(t, s.reg, "intake_messages_retried_total") == 1
	}, 20*time.Second, 50*time.Millisecond)
	require.NoError(t, s.stop(t))

	calls, committed := rec.snapshot()
	assert.Equal(t, map[string]int{"ok-1": 1, "ok-2": 1, "fail": 1}, calls)
	assert.Equal(t, map[string]int{"ok-1": 1, "ok-2": 1}, committed)
	visible, inflight := depth(t, client, q.URL)
	assert.Equal(t, 1, visible+inflight, "only the failed message stays in the queue")
	// The failed message is hidden for its retry backoff (10-20 s), not returned at once.
	got := receiveAll(t, client, q.URL, time.Second)
	assert.Empty(t, got, "the failed message is hidden for its retry backoff")
}

// A failing message comes back with a growing receive count after a backoff, and is deleted once
// it succeeds.
func TestRetryBackoff(t *testing.T) {
	t.Parallel()
	skipShort(t)
	client := testkit.SQS()
	q := testkit.Queue(t, client, 10, 30*time.Second)
	rec := newRecorder()
	s := start(t, consumer.Config{
		Client: client, QueueURL: q.URL, Visibility: 30 * time.Second, RetryBase: time.Second,
		Processor: consumer.ProcessorFunc(func(ctx context.Context, id string, body []byte) error {
			rec.call(ctx, id, body)
			if len(rec.attemptsOf(string(body))) < 3 {
				return errors.New("transient")
			}
			rec.commit(body)
			return nil
		}),
	})
	ids := send(t, client, q.URL, "flaky")
	require.Eventually(t, func() bool { return testkit.Metric(t, s.reg, "intake_messages_acked_total") == 1 }, 30*time.Second, 50*time.Millisecond)
	require.NoError(t, s.stop(t))

	at := rec.attemptsOf("flaky")
	require.Len(t, at, 3)
	for i, a := range at {
		assert.Equal(t, i+1, a.receives, "receive count of attempt %d", i+1)
		assert.Equal(t, ids[0], a.msgID)
	}
	// The backoff hides the message for at least 1 s (visibility is in whole seconds), where the
	// queue's own visibility would have hidden it for 30 s.
	for i := 1; i < len(at); i++ {
		gap := at[i].at.Sub(at[i-1].at)
		assert.GreaterOrEqual(t, gap, 900*time.Millisecond, "retry %d came back too early", i)
		assert.Less(t, gap, 25*time.Second, "retry %d waited for the queue's visibility, not the backoff", i)
	}
	assert.Equal(t, 2.0, testkit.Metric(t, s.reg, "intake_messages_retried_total"))
	visible, inflight := depth(t, client, q.URL)
	assert.Zero(t, visible+inflight, "the message is deleted after it succeeded")
}

// With a DLQ URL, a permanent failure is sent to the DLQ with its reason and deleted from the main
// queue after one attempt.
func TestPermanentWithDLQURL(t *testing.T) {
	t.Parallel()
	skipShort(t)
	client := testkit.SQS()
	q := testkit.Queue(t, client, 5, 30*time.Second)
	rec := newRecorder()
	s := start(t, consumer.Config{
		Client: client, QueueURL: q.URL, DLQURL: q.DLQURL,
		Processor: consumer.ProcessorFunc(func(ctx context.Context, id string, body []byte) error {
			rec.call(ctx, id, body)
			return fmt.Errorf("decode: malformed JSON: %w", pipeline.ErrPermanent)
		}),
	})
	out, err := client.SendMessage(context.Background(), &sqs.SendMessageInput{
		QueueUrl: aws.String(q.URL), MessageBody: aws.String("{not json"),
		MessageAttributes: map[string]types.MessageAttributeValue{
			"origin": {DataType: aws.String("String"), StringValue: aws.String("test")},
		},
	})
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		return testkit.Metric(t, s.reg, "intake_messages_dead_lettered_total", "reason", "permanent") == 1
	}, 20*time.Second, 50*time.Millisecond)

	dead := receiveAll(t, client, q.DLQURL, 2*time.Second)
	require.Len(t, dead, 1)
	assert.Equal(t, "{not json", aws.ToString(dead[0].Body))
	attrs := dead[0].MessageAttributes
	assert.Contains(t, aws.ToString(attrs["intake-dlq-reason"].StringValue), "malformed JSON")
	assert.Equal(t, aws.ToString(out.MessageId), aws.ToString(attrs["intake-source-message-id"].StringValue))
	assert.Equal(t, "1", aws.ToString(attrs["intake-receive-count"].StringValue))
	assert.Equal(t, "test", aws.ToString(attrs["origin"].StringValue), "the original attributes are kept")

	require.Eventually(t, func() bool {
		visible, inflight := depth(t, client, q.URL)
		return visible+inflight == 0
	}, 10*time.Second, 50*time.Millisecond, "deleted from the main queue")
	require.NoError(t, s.stop(t))
	calls, _ := rec.snapshot()
	assert.Equal(t, map[string]int{"{not json": 1}, calls)
	assert.Zero(t, testkit.Metric(t, s.reg, "intake_messages_acked_total"), "a dead-lettered message is not counted as acked")
}

// sizeLimitedDLQ is the real client, with a dead-letter queue that refuses, as SQS does, a message
// whose body and attributes together exceed limit bytes (kumo does not enforce
// MaximumMessageSize) or whose attribute text holds a character SQS does not accept.
type sizeLimitedDLQ struct {
	consumer.Client
	dlq     string
	limit   int
	refused atomic.Int32
}

func (c *sizeLimitedDLQ) SendMessage(ctx context.Context, in *sqs.SendMessageInput, optFns ...func(*sqs.Options)) (*sqs.SendMessageOutput, error) {
	if aws.ToString(in.QueueUrl) == c.dlq {
		size := len(aws.ToString(in.MessageBody))
		for name, v := range in.MessageAttributes {
			text := aws.ToString(v.StringValue)
			size += len(name) + len(aws.ToString(v.DataType)) + len(text)
			if !utf8.ValidString(text) || strings.ContainsFunc(text, func(r rune) bool { return r < 0x20 && r != '\t' && r != '\n' && r != '\r' }) {
				c.refused.Add(1)
				return nil, &smithy.GenericAPIError{Code: "InvalidParameterValue", Message: "invalid characters in attribute " + name, Fault: smithy.FaultClient}
			}
		}
		if size > c.limit {
			c.refused.Add(1)
			return nil, &smithy.GenericAPIError{Code: "InvalidParameterValue",
				Message: fmt.Sprintf("One or more parameters are invalid. Reason: Message must be shorter than %d bytes.", c.limit), Fault: smithy.FaultClient}
		}
	}
	return c.Client.SendMessage(ctx, in, optFns...)
}

// A permanent failure whose message fits its queue but not the dead-letter queue once intake's
// attributes and the copied ones are added (SQS counts attributes toward the size), and whose
// reason quotes a key with a control character and is cut mid-character: it still reaches the DLQ,
// with intake's attributes and a short reason, after one refusal; it is not retried forever.
func TestPermanentTooLargeForDLQ(t *testing.T) {
	t.Parallel()
	skipShort(t)
	client := testkit.SQS()
	q := testkit.Queue(t, client, 5, 30*time.Second)
	limited := &sizeLimitedDLQ{Client: client, dlq: q.DLQURL, limit: 2048}
	reason := "inspect uploads/é\x01.bin: " + strings.Repeat("é", 1200) // 2,400+ bytes; 1,024 cuts an é in two
	s := start(t, consumer.Config{
		Client: limited, QueueURL: q.URL, DLQURL: q.DLQURL,
		Processor: consumer.ProcessorFunc(func(ctx context.Context, id string, body []byte) error {
			return fmt.Errorf("%s: %w", reason, pipeline.ErrPermanent)
		}),
	})
	body := strings.Repeat("x", 1500)
	_, err := client.SendMessage(context.Background(), &sqs.SendMessageInput{
		QueueUrl: aws.String(q.URL), MessageBody: aws.String(body),
		MessageAttributes: map[string]types.MessageAttributeValue{
			"origin": {DataType: aws.String("String"), StringValue: aws.String(strings.Repeat("o", 300))},
		},
	})
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		return testkit.Metric(t, s.reg, "intake_messages_dead_lettered_total", "reason", "permanent") == 1
	}, 20*time.Second, 50*time.Millisecond)
	require.NoError(t, s.stop(t))

	assert.EqualValues(t, 1, limited.refused.Load(), "refused once with every attribute, accepted with fewer")
	dead := receiveAll(t, client, q.DLQURL, 2*time.Second)
	require.Len(t, dead, 1)
	assert.Equal(t, body, aws.ToString(dead[0].Body))
	attrs := dead[0].MessageAttributes
	got := aws.ToString(attrs["intake-dlq-reason"].StringValue)
	assert.True(t, strings.HasPrefix(got, "inspect uploads/é\ufffd.bin: éé"), got)
	assert.True(t, utf8.ValidString(got))
	assert.LessOrEqual(t, len(got), 256)
	assert.NotContains(t, attrs, "origin", "the copied attributes made it too large")
	visible, inflight := depth(t, client, q.URL)
	assert.Zero(t, visible+inflight, "deleted from the main queue once dead-lettered")
	assert.Zero(t, testkit.Metric(t, s.reg, "intake_messages_retried_total"), "not retried")
}

// Without a DLQ URL, a permanent failure reaches the DLQ through the redrive policy after
// maxReceiveCount receives, and is never deleted by the consumer.
func TestPermanentWithoutDLQURLUsesRedrive(t *testing.T) {
	t.Parallel()
	skipShort(t)
	client := testkit.SQS()
	q := testkit.Queue(t, client, 2, 2*time.Second)
	rec := newRecorder()
	s := start(t, consumer.Config{
		Client: client, QueueURL: q.URL, Visibility: 2 * time.Second,
		Processor: consumer.ProcessorFunc(func(ctx context.Context, id string, body []byte) error {
			rec.call(ctx, id, body)
			return fmt.Errorf("no records: %w", pipeline.ErrPermanent)
		}),
	})
	send(t, client, q.URL, "poison")
	var dead []types.Message
	require.Eventually(t, func() bool {
		dead = append(dead, receiveAll(t, client, q.DLQURL, time.Second)...)
		return len(dead) > 0
	}, 30*time.Second, 100*time.Millisecond)
	require.NoError(t, s.stop(t))

	require.Len(t, dead, 1)
	assert.Equal(t, "poison", aws.ToString(dead[0].Body))
	calls, _ := rec.snapshot()
	assert.Equal(t, map[string]int{"poison": q.MaxReceiveCount}, calls, "processed once per receive until the redrive")
	assert.Equal(t, 1.0, testkit.Metric(t, s.reg, "intake_messages_dead_lettered_total", "reason", "permanent"), "counted once, on its last receive")
	visible, inflight := depth(t, client, q.URL)
	assert.Zero(t, visible+inflight)
}

// The heartbeat keeps a message that is processed for longer than its visibility timeout
// invisible: nobody else receives it, and it is processed once.
func TestHeartbeatKeepsSlowMessageInvisible(t *testing.T) {
	t.Parallel()
	skipShort(t)
	client := testkit.SQS()
	q := testkit.Queue(t, client, 5, 2*time.Second)
	rec := newRecorder()
	var startedProcessing atomic.Bool
	s := start(t, consumer.Config{
		Client: client, QueueURL: q.URL, Visibility: 2 * time.Second,
		Processor: consumer.ProcessorFunc(func(ctx context.Context, id string, body []byte) error {
			rec.call(ctx, id, body)
			startedProcessing.Store(true)
			select {
			case <-time.After(6 * time.Second): // three visibility timeouts
			case <-ctx.Done():
				return ctx.Err()
			}
			rec.commit(body)
			return nil
		}),
	})
	send(t, client, q.URL, "slow")
	require.Eventually(t, startedProcessing.Load, 10*time.Second, 20*time.Millisecond)

	// Another consumer of the queue polls while the message is processed.
	stolen := 0
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		out, err := client.ReceiveMessage(context.Background(), &sqs.ReceiveMessageInput{
			QueueUrl: aws.String(q.URL), MaxNumberOfMessages: 10, WaitTimeSeconds: 1, VisibilityTimeout: 1,
		})
		require.NoError(t, err)
		stolen += len(out.Messages)
	}
	require.Eventually(t, func() bool { return testkit.Metric(t, s.reg, "intake_messages_acked_total") == 1 }, 15*time.Second, 50*time.Millisecond)
	require.NoError(t, s.stop(t))

	assert.Zero(t, stolen, "the message was delivered to someone else while it was processed")
	calls, committed := rec.snapshot()
	assert.Equal(t, map[string]int{"slow": 1}, calls)
	assert.Equal(t, map[string]int{"slow": 1}, committed)
	assert.GreaterOrEqual(t, testkit.Metric(t, s.reg, "intake_consumer_heartbeats_total"), 2.0)
}

// An outage error pauses every receiver: while the dependency is down, nothing is received or
// processed (the consumer checks the dependency itself), the consumer is not ready, and
// everything is processed once it is back.
func TestPausesOnUnavailable(t *testing.T) {
	t.Parallel()
	skipShort(t)
	sqsClient := testkit.SQS()
	q := testkit.Queue(t, sqsClient, 100, 30*time.Second)
	client := &countingClient{Client: sqsClient}
	rec := newRecorder()
	var down atomic.Bool
	down.Store(true)
	var checks atomic.Int64
	const workers = 8
	s := start(t, consumer.Config{
		Client: client, QueueURL: q.URL, Workers: workers, Receivers: 4, RetryBase: time.Second,
		Dependencies: []consumer.Dependency{{Name: "postgres", Check: func(context.Context) error {
			checks.Add(1)
			if down.Load() {
				return errors.New("connection refused")
			}
			return nil
		}}},
		Processor: consumer.ProcessorFunc(func(ctx context.Context, id string, body []byte) error {
			rec.call(ctx, id, body)
			if down.Load() {
				return pipeline.Unavailable(pipeline.DependencyPostgres, errors.New("record: connection refused"))
			}
			rec.commit(body)
			return nil
		}),
	})
	all := bodies("m", 40)
	send(t, sqsClient, q.URL, all...)

	paused := func() bool { return testkit.Metric(t, s.reg, "intake_consumer_paused", "dependency", "postgres") == 1 }
	require.Eventually(t, paused, 10*time.Second, 10*time.Millisecond)
	time.Sleep(500 * time.Millisecond) // the messages in flight when the pause began fail
	receivesAtPause := client.receives.Load()
	callsAtPause := rec.total.Load()
	time.Sleep(5500 * time.Millisecond) // the rest of the outage: checks after 1, 2 and 4 s
	pausedNow := paused()
	readyErr := s.c.Ready(context.Background())
	receivesDuring := client.receives.Load() - receivesAtPause
	callsDuring := rec.total.Load() - callsAtPause
	checksDuring := checks.Load()
	down.Store(false)

	require.Eventually(t, func() bool { return testkit.Metric(t, s.reg, "intake_messages_acked_total") == float64(len(all)) }, 60*time.Second, 50*time.Millisecond)
	require.NoError(t, s.stop(t))

	assert.True(t, pausedNow, "still paused while the dependency is down")
	require.ErrorContains(t, readyErr, "paused: postgres unavailable since", "not ready while paused")
	// Without the pause, the 40 messages would be retried about every 1-2 s by four receivers:
	// about a hundred calls in 5.5 s. Paused, nothing is received: the dependency is checked.
	assert.Zero(t, callsDuring, "processing calls during the outage")
	assert.Zero(t, receivesDuring, "receive calls during the outage")
	assert.GreaterOrEqual(t, checksDuring, int64(2), "the dependency itself was checked")
	assert.Zero(t, testkit.Metric(t, s.reg, "intake_consumer_paused", "dependency", "postgres"), "resumed")
	assert.Zero(t, testkit.Metric(t, s.reg, "intake_messages_retried_total"), "an outage is not a retry")
	assert.Positive(t, testkit.Metric(t, s.reg, "intake_messages_deferred_total"))
	_, committed := rec.snapshot()
	require.Len(t, committed, len(all))
	for _, b := range all {
		assert.Equal(t, 1, committed[b], b)
	}
	t.Logf("during 5.5 s of outage: %d receives, %d processing calls, %d checks", receivesDuring, callsDuring, checksDuring)
}

// SIGTERM while 20 slow messages are in flight: those that finish within the grace period are
// deleted, the others are returned to the queue at once (visibility 0) and a second run
// processes them. Nothing is lost, nothing is processed twice.
func TestShutdownMidBatchLosesNothing(t *testing.T) {
	t.Parallel()
	skipShort(t)
	client := testkit.SQS()
	q := testkit.Queue(t, client, 10, 60*time.Second)
	all := bodies("s", 20)
	send(t, client, q.URL, all...)

	rec := newRecorder()
	var inProcess atomic.Int64
	first := start(t, consumer.Config{
		Client: client, QueueURL: q.URL, Workers: 32, Visibility: 60 * time.Second, Grace: 1500 * time.Millisecond,
		Processor: consumer.ProcessorFunc(func(ctx context.Context, id string, body []byte) error {
			rec.call(ctx, id, body)
			inProcess.Add(1)
			n, _ := strconv.Atoi(string(body[2:]))
			work := time.Duration(n%2)*30*time.Second + 200*time.Millisecond // odd ones take 30 s
			select {
			case <-time.After(work):
				rec.commit(body)
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		}),
	})
	require.Eventually(t, func() bool { return inProcess.Load() == int64(len(all)) }, 20*time.Second, 10*time.Millisecond)
	begin := time.Now()
	require.NoError(t, first.stop(t))
	stopTook := time.Since(begin)
	_, committed1 := rec.snapshot()
	assert.Len(t, committed1, 10, "the fast half finished within the grace period")
	assert.Equal(t, 10.0, testkit.Metric(t, first.reg, "intake_messages_released_total"))
	assert.Equal(t, 10.0, testkit.Metric(t, first.reg, "intake_messages_acked_total"))
	// The slow messages end 30 s after they began (all began before begin), so a Run that waited
	// for them would take over 25 s here; the grace period is 1.5 s.
	assert.Less(t, stopTook, 10*time.Second, "Run returned after the grace period, not after the slow messages")

	// The second run must see the returned messages long before their 60 s visibility would end.
	rec2 := newRecorder()
	second := start(t, consumer.Config{
		Client: client, QueueURL: q.URL,
		Processor: consumer.ProcessorFunc(func(ctx context.Context, id string, body []byte) error {
			rec2.call(ctx, id, body)
			rec2.commit(body)
			return nil
		}),
	})
	require.Eventually(t, func() bool { return testkit.Metric(t, second.reg, "intake_messages_acked_total") == 10 }, 20*time.Second, 20*time.Millisecond)
	require.NoError(t, second.stop(t))

	_, committed2 := rec2.snapshot()
	for _, b := range all {
		assert.Equal(t, 1, committed1[b]+committed2[b], "message %s committed exactly once over both runs", b)
	}
	visible, inflight := depth(t, client, q.URL)
	assert.Zero(t, visible+inflight)
}

// failingDeletes decorates the real client so that the first DeleteMessageBatch carries a receipt
// handle the server does not know: the server reports that entry in Failed.
type failingDeletes struct {
	consumer.Client
	once sync.Once
}

func (f *failingDeletes) DeleteMessageBatch(ctx context.Context, in *sqs.DeleteMessageBatchInput, optFns ...func(*sqs.Options)) (*sqs.DeleteMessageBatchOutput, error) {
	f.once.Do(func() {
		entries := append([]types.DeleteMessageBatchRequestEntry(nil), in.Entries...)
		entries[0].ReceiptHandle = aws.String("stale-" + aws.ToString(entries[0].ReceiptHandle))
		in = &sqs.DeleteMessageBatchInput{QueueUrl: in.QueueUrl, Entries: entries}
	})
	return f.Client.DeleteMessageBatch(ctx, in, optFns...)
}

// slowVisibility is the real client whose ChangeMessageVisibility answers a second late.
type slowVisibility struct {
	consumer.Client
}

func (c slowVisibility) ChangeMessageVisibility(ctx context.Context, in *sqs.ChangeMessageVisibilityInput, optFns ...func(*sqs.Options)) (*sqs.ChangeMessageVisibilityOutput, error) {
	select {
	case <-time.After(time.Second):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return c.Client.ChangeMessageVisibility(ctx, in, optFns...)
}

// Handlers that ignore their cancelled context are abandoned after the grace period and the drain:
// their 20 messages go back to the queue, with SQS answering each return a second late, and Run
// still returns within the grace period, the drain (3 s) and the few seconds left of the
// post-grace budget: the returns run together, not one after another (20 s).
func TestAbandonedHandlersReturnTheirMessagesTogether(t *testing.T) {
	t.Parallel()
	skipShort(t)
	client := testkit.SQS()
	q := testkit.Queue(t, client, 10, 60*time.Second)
	all := bodies("a", 20)
	send(t, client, q.URL, all...)
	block := make(chan struct{})
	var inProcess atomic.Int64
	first := start(t, consumer.Config{
		Client: slowVisibility{client}, QueueURL: q.URL, Workers: 32, Visibility: 60 * time.Second, Grace: 300 * time.Millisecond,
		Processor: consumer.ProcessorFunc(func(ctx context.Context, id string, body []byte) error {
			inProcess.Add(1)
			<-block // ignores ctx
			return nil
		}),
	})
	require.Eventually(t, func() bool { return inProcess.Load() == int64(len(all)) }, 20*time.Second, 10*time.Millisecond)
	begin := time.Now()
	require.NoError(t, first.stop(t))
	stopTook := time.Since(begin)
	close(block)
	t.Logf("Run returned %s after the stop", stopTook)
	assert.Equal(t, float64(len(all)), testkit.Metric(t, first.reg, "intake_messages_released_total"), "every abandoned message returned")
	// 0.3 s of grace, 3 s of drain, then 2 rounds of 16 returns at 1 s each; one by one it was 20 s more.
	assert.Less(t, stopTook, 15*time.Second, "the abandoned messages were returned one after another")
	back := receiveAll(t, client, q.URL, 2*time.Second)
	assert.Len(t, back, len(all), "visible again at once, not after the 60 s visibility")
}

// silentDeletes is the real client whose first DeleteMessageBatch is answered, without reaching
// the server, with an answer naming none of its entries (neither Successful nor Failed).
type silentDeletes struct {
	consumer.Client
	once sync.Once
}

func (f *silentDeletes) DeleteMessageBatch(ctx context.Context, in *sqs.DeleteMessageBatchInput, optFns ...func(*sqs.Options)) (*sqs.DeleteMessageBatchOutput, error) {
	silent := false
	f.once.Do(func() { silent = true })
	if silent {
		return &sqs.DeleteMessageBatchOutput{}, nil
	}
	return f.Client.DeleteMessageBatch(ctx, in, optFns...)
}

// What becomes of a message whose deletion goes wrong. An entry the server fails (an expired
// receipt handle) is logged and counted; the message comes back and is processed again, then
// deleted. An entry the answer does not name at all is deleted again at once, as a server failure
// is, not forgotten until the message comes back and is processed a second time.
func TestDeleteBatchAnswers(t *testing.T) {
	t.Parallel()
	skipShort(t)
	for _, tc := range []struct {
		name       string
		client     func(consumer.Client) consumer.Client
		ackFailed  float64
		deliveries int
	}{
		{"entry failed by the server", func(c consumer.Client) consumer.Client { return &failingDeletes{Client: c} }, 1, 2},
		{"entry not in the answer", func(c consumer.Client) consumer.Client { return &silentDeletes{Client: c} }, 0, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			sqsClient := testkit.SQS()
			q := testkit.Queue(t, sqsClient, 10, 2*time.Second)
			rec := newRecorder()
			s := start(t, consumer.Config{
				Client: tc.client(sqsClient), QueueURL: q.URL, Visibility: 2 * time.Second,
				Processor: consumer.ProcessorFunc(func(ctx context.Context, id string, body []byte) error {
					rec.call(ctx, id, body)
					rec.commit(body)
					return nil
				}),
			})
			send(t, sqsClient, q.URL, "only")
			require.Eventually(t, func() bool { return testkit.Metric(t, s.reg, "intake_messages_acked_total") == 1 }, 20*time.Second, 50*time.Millisecond)
			time.Sleep(3 * time.Second) // past the 2 s visibility: a message not deleted would be back
			require.NoError(t, s.stop(t))

			assert.Equal(t, tc.ackFailed, testkit.Metric(t, s.reg, "intake_messages_ack_failed_total"))
			calls, _ := rec.snapshot()
			assert.Equal(t, map[string]int{"only": tc.deliveries}, calls)
			visible, inflight := depth(t, sqsClient, q.URL)
			assert.Zero(t, visible+inflight)
		})
	}
}

// When the queue cannot be read, each receiver backs off instead of spinning.
func TestReceiveErrorsBackOff(t *testing.T) {
	t.Parallel()
	skipShort(t)
	client := &countingClient{Client: testkit.SQS()}
	s := start(t, consumer.Config{
		Client: client, QueueURL: testkit.AWS().SQSEndpoint + "/000000000000/" + testkit.Name("missing-"), Receivers: 2,
		Processor: consumer.ProcessorFunc(func(context.Context, string, []byte) error { return nil }),
	})
	time.Sleep(3 * time.Second)
	require.NoError(t, s.stop(t))
	n := client.receives.Load()
	assert.GreaterOrEqual(t, n, int64(2))
	assert.LessOrEqual(t, n, int64(2*4), "two receivers backing off 0.5-1 s, then 1-2 s, over 3 s")
	assert.Equal(t, float64(n), testkit.Metric(t, s.reg, "intake_consumer_receive_errors_total"))
}

// Queue depth gauges are read at start.
func TestQueueDepthGauges(t *testing.T) {
	t.Parallel()
	skipShort(t)
	client := testkit.SQS()
	q := testkit.Queue(t, client, 3, 30*time.Second)
	send(t, client, q.DLQURL, "d1", "d2")
	s := start(t, consumer.Config{
		Client: client, QueueURL: q.URL, Receivers: 1,
		Processor: consumer.ProcessorFunc(func(context.Context, string, []byte) error { return nil }),
	})
	require.Eventually(t, func() bool {
		return testkit.Metric(t, s.reg, "intake_queue_depth", "queue", "dlq", "state", "visible") == 2
	}, 10*time.Second, 20*time.Millisecond, "the DLQ of the redrive policy is found and measured")
	assert.Zero(t, testkit.Metric(t, s.reg, "intake_queue_depth", "queue", "main", "state", "visible"))
}

// pollSignal is the real client, telling when a ReceiveMessage call starts.
type pollSignal struct {
	consumer.Client
	polling chan<- struct{}
}

func (p pollSignal) ReceiveMessage(ctx context.Context, in *sqs.ReceiveMessageInput, optFns ...func(*sqs.Options)) (*sqs.ReceiveMessageOutput, error) {
	select {
	case p.polling <- struct{}{}:
	default:
	}
	return p.Client.ReceiveMessage(ctx, in, optFns...)
}

// TestShutdownFinishesLongPoll: a long poll in flight at shutdown is not cut (SQS may hand it
// messages, which an abandoned poll would leave hidden for the visibility timeout, a receive
// spent): it finishes, and what it returns is processed within the grace period and deleted.
func TestShutdownFinishesLongPoll(t *testing.T) {
	t.Parallel()
	skipShort(t)
	client := testkit.SQS()
	q := testkit.Queue(t, client, 10, 60*time.Second)
	polling := make(chan struct{}, 1)
	rec := newRecorder()
	s := start(t, consumer.Config{
		Client: pollSignal{client, polling}, QueueURL: q.URL, Receivers: 1, WaitTime: 10 * time.Second, Grace: 15 * time.Second,
		DepthInterval: -1,
		Processor: consumer.ProcessorFunc(func(ctx context.Context, id string, body []byte) error {
			rec.call(ctx, id, body)
			rec.commit(body)
			return nil
		}),
	})
	select {
	case <-polling:
	case <-time.After(20 * time.Second):
		t.Fatal("no poll started")
	}
	time.Sleep(200 * time.Millisecond) // the poll reaches kumo and waits there
	s.cancel()
	send(t, client, q.URL, "late")
	select {
	case <-s.done:
	case <-time.After(time.Minute):
		t.Fatal("consumer did not stop")
	}
	_, committed := rec.snapshot()
	require.Equal(t, map[string]int{"late": 1}, committed, "the message the last poll received is processed")
	visible, inflight := depth(t, client, q.URL)
	require.Zero(t, visible+inflight, "and deleted, not left hidden")
}
