package consumer

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/smithy-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/intakehq/intake/internal/queue"
	"github.com/intakehq/intake/pipeline"
)

// TestLastReceiveIsDeadLettered: a message that fails (a retry, or a deferral by an outage) on the
// last receive the queue's redrive policy allows is logged as going to the dead-letter queue, not
// as "will retry", and counted in intake_messages_dead_lettered_total{reason="retries_exhausted"};
// on earlier receives, or while the policy is unknown, it is retried as before.
func TestLastReceiveIsDeadLettered(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	client := &fakeSQS{}
	c, logs := newFakeConsumer(t, client, Config{})
	exhausted := c.m.deadLettered.WithLabelValues(reasonRetriesExhausted)
	msg := func(receives int) *delivery { return &delivery{id: "m-1", handle: "h-1", receives: receives} }
	cause := errors.New("s3 503")

	// The policy is not known yet (the queue's attributes were never read): nothing to tell.
	c.retry(ctx, msg(5), cause)
	assert.Zero(t, counterValue(t, exhausted))
	assert.Contains(t, logs.String(), "processing failed; will retry")

	c.redrive.Store(&queue.RedrivePolicy{DLQARN: "arn:aws:sqs:eu-west-1:123456789012:q-dlq", MaxReceiveCount: 5})
	for receives := 1; receives < 5; receives++ {
		c.retry(ctx, msg(receives), cause)
		c.deferMessage(ctx, msg(receives), deferMin, cause)
	}
	assert.Zero(t, counterValue(t, exhausted), "earlier receives are retried")
	assert.NotContains(t, logs.String(), "dead-letter queue")

	c.retry(ctx, msg(5), cause)
	assert.Equal(t, 1.0, counterValue(t, exhausted))
	line := lastLine(logs.String())
	assert.Contains(t, line, "level=ERROR")
	assert.Contains(t, line, "processing failed on the last receive the queue's redrive policy allows; the queue will move the message to its dead-letter queue")
	assert.Contains(t, line, "reason=retries_exhausted receive_count=5 max_receive_count=5")
	assert.NotContains(t, line, "will retry")

	c.deferMessage(ctx, msg(5), deferMin, cause)
	assert.Equal(t, 2.0, counterValue(t, exhausted))
	assert.Contains(t, lastLine(logs.String()), "dependency unavailable on the last receive the queue's redrive policy allows")

	// Its visibility is still set: the redrive policy moves it at its next receive.
	calls := client.visibilityCalls()
	require.Len(t, calls, 11)
	for _, v := range calls {
		assert.Positive(t, v.seconds)
	}
	assert.Equal(t, 6.0, counterValue(t, c.m.retried), "still counted as retries")
	assert.Equal(t, 5.0, counterValue(t, c.m.deferred))
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// handleNow runs d through handle as a worker would: tracked, holding a worker slot.
func handleNow(c *Consumer, d *delivery) {
	c.slots <- struct{}{}
	c.track(d)
	c.handle(context.Background(), d)
}

// TestPartialOutageSparesReceives: an outage that fails some messages only (S3 throttling one hot
// prefix, a lock making the statements on some rows time out) while the dependency's check
// passes and the other messages succeed. Each failure of the hot message pauses for the 1 s
// minimum only (a success confirms every resume), yet its hiding grows with its receives, so that
// its receives span the tolerance of the package documentation ("Outages"): its fifth receive
// comes at least 7 minutes after its first, its sixth (which the default redrive policy
// dead-letters) at least 15 minutes after. The clock is the gate's; the hot message is received
// again as soon as it is visible.
func TestPartialOutageSparesReceives(t *testing.T) {
	t.Parallel()
	client := &fakeSQS{}
	c, _ := newFakeConsumer(t, client, Config{
		Dependencies: []Dependency{{Name: pipeline.DependencyS3, Check: func(context.Context) error { return nil }}},
		Processor: ProcessorFunc(func(_ context.Context, id string, _ []byte) error {
			if id == "hot" {
				return pipeline.Unavailable(pipeline.DependencyS3, errors.New("get object hot/k: SlowDown"))
			}
			return nil
		}),
	})
	clock := &fakeClock{t: time.Unix(1000, 0)}
	c.gate.now, c.gate.jitter = clock.now, func(d time.Duration) time.Duration { return d }
	c.acks = newAcker(context.Background(), client, c.cfg.QueueURL, c.log, c.m, c.gate)
	t.Cleanup(func() { closeAcker(c.acks) })

	first := clock.t
	var receivedAt []time.Duration // each receive of the hot message, from the first
	for receives := 1; ; receives++ {
		receivedAt = append(receivedAt, clock.t.Sub(first))
		if receives == 6 {
			break // the default redrive policy moves it to the dead-letter queue
		}
		at := clock.t
		handleNow(c, &delivery{id: "hot", handle: "h-hot", receives: receives, polled: at})
		calls := client.visibilityCalls()
		hidden := time.Duration(calls[len(calls)-1].seconds) * time.Second
		require.True(t, blocked(t, c.gate), "receive %d: the failure paused the receivers", receives)
		assert.Equal(t, time.Second, c.gate.remaining(0), "receive %d: the shortest pause: the last resume was confirmed", receives)

		// The check passes; a message of another prefix, received after the resume, succeeds.
		clock.add(c.gate.remaining(0))
		require.True(t, c.gate.probe(context.Background()))
		handleNow(c, &delivery{id: "cold", handle: fmt.Sprintf("h-cold-%d", receives), receives: 1, polled: clock.t})

		clock.t = at.Add(hidden)
	}
	t.Logf("receives of the hot message at %v", receivedAt)
	assert.GreaterOrEqual(t, receivedAt[4], 7*time.Minute, "fifth receive")
	assert.GreaterOrEqual(t, receivedAt[5], 15*time.Minute, "sixth receive: dead-lettered by the default redrive policy")
	assert.Zero(t, counterValue(t, c.m.retried), "an outage is not a retry")
}

// TestPermanentWithoutDLQCountedOnce: without a DLQ URL, a permanently failing message is counted
// as dead-lettered on the last receive the redrive policy allows only, as lastReceive counts: one
// SQS fails to move (its DLQ deleted, KMS denied) comes back with higher counts and is not counted
// again.
func TestPermanentWithoutDLQCountedOnce(t *testing.T) {
	t.Parallel()
	client := &fakeSQS{}
	c, _ := newFakeConsumer(t, client, Config{})
	c.redrive.Store(&queue.RedrivePolicy{DLQARN: "arn:aws:sqs:eu-west-1:123456789012:q-dlq", MaxReceiveCount: 5})
	cause := fmt.Errorf("decode: %w", pipeline.ErrPermanent)
	for receives := 1; receives <= 8; receives++ {
		c.deadLetter(context.Background(), &delivery{id: "m-1", handle: "h-1", receives: receives}, cause)
	}
	assert.Equal(t, 1.0, counterValue(t, c.m.deadLettered.WithLabelValues("permanent")))
}

// TestDLQSendRefusals: the dead-letter queue refusing a message for its content (over the size
// limit, text SQS does not accept) is answered by sending it again with fewer attributes; a
// refusal for anything else (throttling, KMS, a missing queue, access denied: sender faults all)
// is not: the message is retried later, as it is.
func TestDLQSendRefusals(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		code    string
		smaller bool
	}{
		{"InvalidParameterValue", true},
		{"InvalidMessageContents", true},
		{"KMS.ThrottlingException", false},
		{"AWS.SimpleQueueService.RequestThrottled", false},
		{"AWS.SimpleQueueService.NonExistentQueue", false},
		{"AccessDenied", false},
		{"KmsThrottled", false},
	} {
		t.Run(tc.code, func(t *testing.T) {
			t.Parallel()
			client := &fakeSQS{}
			var mu sync.Mutex
			var sent []map[string]types.MessageAttributeValue
			client.send = func(in *sqs.SendMessageInput) (*sqs.SendMessageOutput, error) {
				mu.Lock()
				defer mu.Unlock()
				sent = append(sent, in.MessageAttributes)
				if len(sent) == 1 {
					return nil, &smithy.GenericAPIError{Code: tc.code, Message: "refused", Fault: smithy.FaultClient}
				}
				return &sqs.SendMessageOutput{}, nil
			}
			c, _ := newFakeConsumer(t, client, Config{DLQURL: "http://sqs.test/000000000000/dlq"})
			c.acks = newAcker(context.Background(), client, c.cfg.QueueURL, c.log, c.m, c.gate)
			d := &delivery{id: "m-1", handle: "h-1", receives: 1, msg: types.Message{Body: aws.String("{"), MessageAttributes: map[string]types.MessageAttributeValue{
				"origin": {DataType: aws.String("String"), StringValue: aws.String("test")},
			}}}
			c.deadLetter(context.Background(), d, fmt.Errorf("decode: %w", pipeline.ErrPermanent))
			closeAcker(c.acks)

			mu.Lock()
			defer mu.Unlock()
			if tc.smaller {
				require.Len(t, sent, 2, "sent again with fewer attributes")
				assert.NotContains(t, sent[1], "origin")
				assert.Equal(t, 1.0, counterValue(t, c.m.deadLettered.WithLabelValues("permanent")))
				assert.Equal(t, []string{"h-1"}, client.deletedHandles())
				return
			}
			require.Len(t, sent, 1, "not sent again smaller: the refusal is not about the message")
			assert.Equal(t, 1.0, counterValue(t, c.m.retried), "retried later")
			assert.Zero(t, counterValue(t, c.m.deadLettered.WithLabelValues("permanent")))
			assert.Empty(t, client.deletedHandles())
		})
	}
}

// TestSettleLogsNoReceiptHandle: SQS quotes the receipt handle in some errors; the consumer's
// logs of a failed visibility change show "REDACTED" (redact.Mask) instead, and the error keeps its
// code for errors.As.
func TestSettleLogsNoReceiptHandle(t *testing.T) {
	t.Parallel()
	const handle = "AQEBsecretHandle+/="
	client := &fakeSQS{}
	client.visibility = func(context.Context, *sqs.ChangeMessageVisibilityInput) error {
		return &smithy.GenericAPIError{Code: "ReceiptHandleIsInvalid", Fault: smithy.FaultClient,
			Message: `The input receipt handle "` + handle + `" is not a valid receipt handle.`}
	}
	c, logs := newFakeConsumer(t, client, Config{})
	d := &delivery{id: "m-1", handle: handle, receives: 1}
	c.retry(context.Background(), d, errors.New("s3 503"))
	c.deferMessage(context.Background(), d, deferMin, errors.New("postgres down"))
	c.release(context.Background(), d)

	assert.NotContains(t, logs.String(), handle)
	assert.Equal(t, 3, strings.Count(logs.String(), `The input receipt handle \"REDACTED\" is not a valid receipt handle.`))
	err := c.setVisibility(context.Background(), d, 0)
	var ae smithy.APIError
	require.ErrorAs(t, err, &ae)
	assert.Equal(t, "ReceiptHandleIsInvalid", ae.ErrorCode())
}

// noRedriveAttributes answers GetQueueAttributes for a queue without a redrive policy.
func noRedriveAttributes(*sqs.GetQueueAttributesInput) (*sqs.GetQueueAttributesOutput, error) {
	return &sqs.GetQueueAttributesOutput{Attributes: map[string]string{"ApproximateNumberOfMessages": "0"}}, nil
}

// dlqRecorder records the messages sent to the dead-letter queue.
type dlqRecorder struct {
	mu   sync.Mutex
	sent []*sqs.SendMessageInput
}

func (r *dlqRecorder) send(in *sqs.SendMessageInput) (*sqs.SendMessageOutput, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sent = append(r.sent, in)
	return &sqs.SendMessageOutput{MessageId: aws.String("dlq-1")}, nil
}

func (r *dlqRecorder) messages() []*sqs.SendMessageInput {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*sqs.SendMessageInput(nil), r.sent...)
}

// TestRetriesExhaustedWithoutRedrivePolicy: with a dead-letter queue URL and a queue that has no
// redrive policy, nothing would ever move a message that fails on every receive for its own reason
// (here, a Processor that panics on it): from its fifth receive the consumer sends it to the
// dead-letter queue itself, with the reason retries_exhausted, and deletes it; it is counted once
// deleted. On earlier receives it is retried. The configuration is warned about at start.
func TestRetriesExhaustedWithoutRedrivePolicy(t *testing.T) {
	t.Parallel()
	msgs := fakeMessages("m", 2)
	msgs[0].Attributes[string(types.MessageSystemAttributeNameApproximateReceiveCount)] = "5"
	msgs[1].Attributes[string(types.MessageSystemAttributeNameApproximateReceiveCount)] = "4"
	client := &fakeSQS{receive: receiveOnce(&sqs.ReceiveMessageOutput{Messages: msgs}), attributes: noRedriveAttributes}
	dlq := &dlqRecorder{}
	client.send = dlq.send
	c, logs := newFakeConsumer(t, client, Config{Receivers: 1, Workers: 2, DepthInterval: -1, WaitTime: time.Second, DLQURL: "https://sqs.example/000000000000/dlq",
		Processor: ProcessorFunc(func(context.Context, string, []byte) error { panic("poison") })})
	runFake(t, c)

	require.Eventually(t, func() bool { return len(client.deletedHandles())+len(client.visibilityCalls()) == 2 },
		10*time.Second, time.Millisecond, "both messages settled")
	assert.Equal(t, []string{"h-m-0"}, client.deletedHandles(), "the fifth receive is given up")
	sent := dlq.messages()
	require.Len(t, sent, 1)
	assert.Equal(t, "m-0", aws.ToString(sent[0].MessageBody))
	reason := aws.ToString(sent[0].MessageAttributes[queue.AttrDLQReason].StringValue)
	assert.Contains(t, reason, "retries exhausted: failed on receive 5")
	assert.Contains(t, reason, "processor panicked: poison")
	assert.Equal(t, 1.0, counterValue(t, c.m.deadLettered.WithLabelValues(reasonRetriesExhausted)))
	calls := client.visibilityCalls()
	require.Len(t, calls, 1)
	assert.Equal(t, "h-m-1", calls[0].handle, "the fourth receive is retried")
	assert.Positive(t, calls[0].seconds)
	assert.Equal(t, 1.0, counterValue(t, c.m.retried))
	assert.Contains(t, logs.String(), "the queue has no redrive policy: the consumer sends to the dead-letter queue itself")
}

// TestRetriesExhaustedNeverForOutages: a message is given up (retries_exhausted) only for its own
// failures. However many receives it had, it is deferred when a dependency is down, retried when
// its message timeout came from a dependency that hangs (the error wraps pipeline.ErrUnavailable)
// or when the receivers paused while it was processed (the outage may be what failed it), and
// left alone while the queue's redrive policy is unknown or when there is one.
func TestRetriesExhaustedNeverForOutages(t *testing.T) {
	t.Parallel()
	hang := func(ctx context.Context) error {
		<-ctx.Done()
		return pipeline.Unavailable(pipeline.DependencyPostgres, ctx.Err())
	}
	for _, tc := range []struct {
		name      string
		redrive   *queue.RedrivePolicy
		unknown   bool
		process   func(ctx context.Context, c *Consumer) error
		givenUp   bool
		deferred  float64
		timedOut  float64
		retried   float64
		lastWords string
	}{
		{name: "own failure", process: func(context.Context, *Consumer) error { return errors.New("AccessDenied on one object") },
			givenUp: true},
		{name: "own message timeout", process: func(ctx context.Context, _ *Consumer) error {
			<-ctx.Done() // an object that always stalls
			return ctx.Err()
		}, givenUp: true, timedOut: 1},
		{name: "outage", process: func(context.Context, *Consumer) error {
			return pipeline.Unavailable(pipeline.DependencyPostgres, errors.New("connection refused"))
		}, deferred: 1},
		{name: "timeout from a hanging dependency", process: func(ctx context.Context, _ *Consumer) error { return hang(ctx) },
			timedOut: 1, retried: 1},
		{name: "paused during processing", process: func(_ context.Context, c *Consumer) error {
			c.gate.unavailable(pipeline.DependencyPostgres, time.Now(), 0) // another message found postgres down
			return errors.New("statement timeout")
		}, retried: 1},
		{name: "redrive policy unknown", unknown: true, process: func(context.Context, *Consumer) error { return errors.New("409") },
			retried: 1},
		{name: "redrive policy", redrive: &queue.RedrivePolicy{DLQARN: "arn:aws:sqs:eu-west-1:123456789012:q-dlq", MaxReceiveCount: 100},
			process: func(context.Context, *Consumer) error { return errors.New("409") }, retried: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			client := &fakeSQS{}
			dlq := &dlqRecorder{}
			client.send = dlq.send
			var c *Consumer
			c, _ = newFakeConsumer(t, client, Config{DLQURL: "https://sqs.example/000000000000/dlq", Visibility: time.Second, MessageTimeout: time.Second,
				Processor: ProcessorFunc(func(ctx context.Context, _ string, _ []byte) error { return tc.process(ctx, c) })})
			c.redrive.Store(tc.redrive)
			c.redriveKnown.Store(!tc.unknown)
			c.acks = newAcker(context.Background(), client, c.cfg.QueueURL, c.log, c.m, c.gate)

			handleNow(c, &delivery{id: "m-1", handle: "h-1", receives: 50, polled: time.Now()})
			closeAcker(c.acks)

			if tc.givenUp {
				require.Len(t, dlq.messages(), 1)
				assert.Equal(t, []string{"h-1"}, client.deletedHandles())
				assert.Equal(t, 1.0, counterValue(t, c.m.deadLettered.WithLabelValues(reasonRetriesExhausted)))
				assert.Zero(t, counterValue(t, c.m.retried))
				assert.Equal(t, tc.timedOut, counterValue(t, c.m.timedOut))
				return
			}
			assert.Empty(t, dlq.messages(), "not sent to the dead-letter queue")
			assert.Empty(t, client.deletedHandles(), "not deleted")
			assert.Zero(t, counterValue(t, c.m.deadLettered.WithLabelValues(reasonRetriesExhausted)))
			assert.Equal(t, tc.deferred, counterValue(t, c.m.deferred))
			assert.Equal(t, tc.timedOut, counterValue(t, c.m.timedOut))
			assert.Equal(t, tc.retried, counterValue(t, c.m.retried))
		})
	}
}

// TestPermanentPastRedriveNotHotLooped: without a DLQ URL a permanent failure is left to the
// redrive policy, hidden 1 s so that its receive count reaches maxReceiveCount soon. One that comes
// back past maxReceiveCount was not moved by SQS (its dead-letter queue deleted, KMS denied):
// hidden 1 s again it would come back every second for as long as that lasts; it is hidden for
// MaxBackoff instead, and that is warned about once.
func TestPermanentPastRedriveNotHotLooped(t *testing.T) {
	t.Parallel()
	client := &fakeSQS{}
	c, logs := newFakeConsumer(t, client, Config{MaxBackoff: 10 * time.Minute})
	c.redrive.Store(&queue.RedrivePolicy{DLQARN: "arn:aws:sqs:eu-west-1:123456789012:gone", MaxReceiveCount: 5})
	c.redriveKnown.Store(true)
	cause := fmt.Errorf("decode: %w", pipeline.ErrPermanent)
	for _, receives := range []int{3, 5, 6, 50} {
		c.deadLetter(context.Background(), &delivery{id: "m-1", handle: fmt.Sprint("h-", receives), receives: receives}, cause)
	}
	var seconds []int32
	for _, v := range client.visibilityCalls() {
		seconds = append(seconds, v.seconds)
	}
	assert.Equal(t, []int32{1, 1, 600, 600}, seconds, "1 s up to maxReceiveCount, MaxBackoff past it")
	assert.Equal(t, 1, strings.Count(logs.String(), "came back past the redrive policy's maxReceiveCount"), "warned once")
}

// TestDeadLetteredCountedAtDeletion: a message copied to the dead-letter queue is counted in
// intake_messages_dead_lettered_total once it is deleted from the main queue: one whose deletion
// failed comes back, is copied again, and is counted then, once.
func TestDeadLetteredCountedAtDeletion(t *testing.T) {
	t.Parallel()
	client := &fakeSQS{}
	client.send = (&dlqRecorder{}).send
	var deletes atomic.Int32
	client.deleteBatch = func(_ context.Context, in *sqs.DeleteMessageBatchInput) (*sqs.DeleteMessageBatchOutput, error) {
		if deletes.Add(1) == 1 {
			return &sqs.DeleteMessageBatchOutput{Failed: []types.BatchResultErrorEntry{{Id: in.Entries[0].Id,
				Code: aws.String("ReceiptHandleIsInvalid"), Message: aws.String("expired"), SenderFault: true}}}, nil
		}
		return deleteAll(in), nil
	}
	c, _ := newFakeConsumer(t, client, Config{DLQURL: "https://sqs.example/000000000000/dlq"})
	permanent := c.m.deadLettered.WithLabelValues("permanent")
	cause := fmt.Errorf("decode: %w", pipeline.ErrPermanent)

	c.acks = newAcker(context.Background(), client, c.cfg.QueueURL, c.log, c.m, c.gate)
	c.deadLetter(context.Background(), &delivery{id: "m-1", handle: "h-1", receives: 1}, cause)
	closeAcker(c.acks)
	assert.Zero(t, counterValue(t, permanent), "not deleted: it comes back")
	assert.Equal(t, 1.0, counterValue(t, c.m.ackFailed))

	c.acks = newAcker(context.Background(), client, c.cfg.QueueURL, c.log, c.m, c.gate)
	c.deadLetter(context.Background(), &delivery{id: "m-1", handle: "h-2", receives: 2}, cause)
	closeAcker(c.acks)
	assert.Equal(t, 1.0, counterValue(t, permanent), "counted once, when deleted")
	assert.Equal(t, []string{"h-2"}, client.deletedHandles())
	assert.Zero(t, counterValue(t, c.m.acked), "a dead-lettered message is not acked")
}

// TestHangingDependencyTimeoutIsAnOutage: a dependency that hangs rather than refuses (S3
// accepting requests but stalling every body) fails each message at its message timeout with an
// error wrapping the dependency's outage error. When the dependency's check fails too, that is an
// outage: the receivers pause and the message is deferred, spending no receive toward the redrive
// policy, even on its last receive. When the check passes, the message alone is at fault (one
// object that stalls): retried, and on the last receive left to the redrive policy, as before.
func TestHangingDependencyTimeoutIsAnOutage(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name       string
		checkFails bool
	}{
		{"check fails: outage", true},
		{"check passes: the message's own stall", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			client := &fakeSQS{}
			var checks atomic.Int32
			c, logs := newFakeConsumer(t, client, Config{
				Dependencies: []Dependency{{Name: pipeline.DependencyS3, Check: func(context.Context) error {
					checks.Add(1)
					if tc.checkFails {
						return errors.New("head bucket: context deadline exceeded")
					}
					return nil
				}}},
				Processor: ProcessorFunc(func(ctx context.Context, _ string, _ []byte) error {
					<-ctx.Done() // the body never comes
					return pipeline.Unavailable(pipeline.DependencyS3, fmt.Errorf("read object body: %w", ctx.Err()))
				}),
			})
			c.cfg.MessageTimeout = 50 * time.Millisecond
			c.redrive.Store(&queue.RedrivePolicy{DLQARN: "arn:aws:sqs:eu-west-1:123456789012:q-dlq", MaxReceiveCount: 5})
			exhausted := c.m.deadLettered.WithLabelValues(reasonRetriesExhausted)

			handleNow(c, &delivery{id: "m-1", handle: "h-1", receives: 5, polled: time.Now()})

			assert.Equal(t, int32(1), checks.Load(), "the dependency is checked once")
			assert.Equal(t, 1.0, counterValue(t, c.m.timedOut))
			if tc.checkFails {
				assert.True(t, blocked(t, c.gate), "the receivers pause")
				assert.Equal(t, 1.0, counterValue(t, c.m.deferred), "deferred as an outage")
				assert.Zero(t, counterValue(t, c.m.retried), "not a retry")
				assert.Contains(t, logs.String(), "message timed out and its dependency fails its check: an outage, not the message")
				return
			}
			assert.False(t, blocked(t, c.gate), "no pause")
			assert.Zero(t, counterValue(t, c.m.deferred))
			assert.Equal(t, 1.0, counterValue(t, c.m.retried), "retried by its receive count")
			assert.Equal(t, 1.0, counterValue(t, exhausted), "its last receive: left to the redrive policy, counted")
		})
	}
}

// TestReleaseOnLastReceiveCounted: a message returned to the queue unprocessed at shutdown on the
// last receive the redrive policy allows goes to the dead-letter queue at its next receive: it is
// counted in intake_messages_dead_lettered_total{reason="retries_exhausted"} and logged at error,
// as a retry on that receive is; on an earlier receive it is not.
func TestReleaseOnLastReceiveCounted(t *testing.T) {
	t.Parallel()
	client := &fakeSQS{}
	c, logs := newFakeConsumer(t, client, Config{})
	c.redrive.Store(&queue.RedrivePolicy{DLQARN: "arn:aws:sqs:eu-west-1:123456789012:q-dlq", MaxReceiveCount: 5})
	exhausted := c.m.deadLettered.WithLabelValues(reasonRetriesExhausted)

	c.release(context.Background(), &delivery{id: "m-1", handle: "h-1", receives: 4})
	assert.Zero(t, counterValue(t, exhausted))
	c.release(context.Background(), &delivery{id: "m-2", handle: "h-2", receives: 5})
	assert.Equal(t, 1.0, counterValue(t, exhausted))
	assert.Contains(t, logs.String(), "returned unprocessed (shutdown) on the last receive the queue's redrive policy allows")
	assert.Equal(t, 2.0, counterValue(t, c.m.released))
}
