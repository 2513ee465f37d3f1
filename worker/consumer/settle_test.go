package consumer

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
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
	t.Cleanup(c.acks.close)

	first := clock.t
	var receivedAt []time.Duration // each receive of the hot message, from the first
	for receives := 1; ; receives++ {
		receivedAt = append(receivedAt, clock.t.Sub(first))
		if receives == 6 {
			break // the default redrive policy moves it to the dead-letter queue
		}
		at := clock.t
		handleNow(c, &delivery{id: "hot", handle: "h-hot", receives: receives, polled: at, received: at})
		calls := client.visibilityCalls()
		hidden := time.Duration(calls[len(calls)-1].seconds) * time.Second
		require.True(t, blocked(t, c.gate), "receive %d: the failure paused the receivers", receives)
		assert.Equal(t, time.Second, c.gate.remaining(0), "receive %d: the shortest pause: the last resume was confirmed", receives)

		// The check passes; a message of another prefix, received after the resume, succeeds.
		clock.add(c.gate.remaining(0))
		require.True(t, c.gate.probe(context.Background()))
		handleNow(c, &delivery{id: "cold", handle: fmt.Sprintf("h-cold-%d", receives), receives: 1, polled: clock.t, received: clock.t})

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
			c.acks.close()

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
