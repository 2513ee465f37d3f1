package consumer

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/intakehq/intake/internal/queue"
	"github.com/intakehq/intake/internal/telemetry"
	"github.com/intakehq/intake/internal/testkit"
)

func fakeMessages(prefix string, n int) []types.Message {
	msgs := make([]types.Message, n)
	for i := range msgs {
		id := fmt.Sprintf("%s-%d", prefix, i)
		msgs[i] = types.Message{
			MessageId: aws.String(id), ReceiptHandle: aws.String("h-" + id), Body: aws.String(id),
			Attributes: map[string]string{string(types.MessageSystemAttributeNameApproximateReceiveCount): "1"},
		}
	}
	return msgs
}

// TestReceiveMoreThanAsked: a server that returns more messages than the receive asked for gets
// the extra ones back at once (visibility 0), unprocessed; the consumer processes as many as it
// holds worker slots for, and its slots stay balanced (it goes on receiving).
func TestReceiveMoreThanAsked(t *testing.T) {
	t.Parallel()
	client := &fakeSQS{}
	var mu sync.Mutex
	var asked []int32
	var calls atomic.Int32
	client.receive = func(ctx context.Context, in *sqs.ReceiveMessageInput) (*sqs.ReceiveMessageOutput, error) {
		switch calls.Add(1) {
		case 1:
			mu.Lock()
			asked = append(asked, in.MaxNumberOfMessages)
			mu.Unlock()
			return &sqs.ReceiveMessageOutput{Messages: fakeMessages("m", int(in.MaxNumberOfMessages)+3)}, nil
		case 2:
			mu.Lock()
			asked = append(asked, in.MaxNumberOfMessages)
			mu.Unlock()
			return &sqs.ReceiveMessageOutput{Messages: fakeMessages("n", int(in.MaxNumberOfMessages))}, nil
		}
		<-ctx.Done()
		return nil, ctx.Err()
	}
	var processed []string
	c, logs := newFakeConsumer(t, client, Config{
		Receivers: 1, Workers: 4, DepthInterval: -1,
		Processor: ProcessorFunc(func(_ context.Context, id string, _ []byte) error {
			mu.Lock()
			processed = append(processed, id)
			mu.Unlock()
			return nil
		}),
	})
	runFake(t, c)

	require.Eventually(t, func() bool { return calls.Load() >= 3 && len(client.deletedHandles()) == 8 }, 10*time.Second, time.Millisecond,
		"both receives' messages are processed and deleted, and the receiver goes on")
	mu.Lock()
	require.Equal(t, []int32{4, 4}, asked, "four idle workers: four messages asked for, twice")
	assert.ElementsMatch(t, []string{"m-0", "m-1", "m-2", "m-3", "n-0", "n-1", "n-2", "n-3"}, processed, "only what was asked for is processed")
	mu.Unlock()
	var returned []string
	for _, v := range client.visibilityCalls() {
		require.Zero(t, v.seconds, "only the extra messages have their visibility changed, to 0")
		returned = append(returned, v.handle)
	}
	assert.ElementsMatch(t, []string{"h-m-4", "h-m-5", "h-m-6"}, returned)
	assert.Equal(t, 8.0, counterValue(t, c.m.received))
	assert.Contains(t, logs.String(), "returned more messages than asked for")
	assert.Contains(t, logs.String(), "extra_message_ids=\"[m-4 m-5 m-6]\"")
}

// TestReceiveChecksumFailures: the messages a receive left out, or kept, because their digests did
// not match (queue.ChecksumFailures) are logged with their ids and counted by digest; the others
// are processed. The message whose body did not match is hidden for the retry backoff, not left to
// come back at once.
func TestReceiveChecksumFailures(t *testing.T) {
	t.Parallel()
	// What queue.Lean answers when one message's body and another's attributes were damaged.
	out := leanAnswer(t, fakeMessages("m", 3), "m-1", "m-2")
	require.Len(t, out.Messages, 2)
	client := &fakeSQS{receive: receiveOnce(out)}
	c, logs := newFakeConsumer(t, client, Config{Receivers: 1, Workers: 10, DepthInterval: -1})
	runFake(t, c)

	require.Eventually(t, func() bool { return len(client.deletedHandles()) == 2 }, 10*time.Second, time.Millisecond)
	assert.ElementsMatch(t, []string{"h-m-0", "h-m-2"}, client.deletedHandles(), "the message whose attributes alone failed is processed")
	assert.Equal(t, 1.0, counterValue(t, c.m.checksumMismatch.WithLabelValues(queue.DigestBody)))
	assert.Equal(t, 1.0, counterValue(t, c.m.checksumMismatch.WithLabelValues(queue.DigestAttributes)))
	assert.Equal(t, 2.0, counterValue(t, c.m.received))
	require.Eventually(t, func() bool { return len(client.visibilityCalls()) == 1 }, 10*time.Second, time.Millisecond)
	v := client.visibilityCalls()[0]
	assert.Equal(t, "h-m-1", v.handle, "the damaged message is hidden for the retry backoff")
	assert.Positive(t, v.seconds)
	assert.Regexp(t, `level=WARN msg="received a message whose body does not match its MD5OfBody; [^"]*" receiver=0 message_id=m-1 receive_count=1 err=".*MD5OfBody`, logs.String())
	assert.NotContains(t, logs.String(), "h-m-1", "no receipt handle in the logs")
	assert.Regexp(t, `level=WARN msg="received a message whose attributes do not match their MD5OfMessageAttributes; [^"]*" receiver=0 message_id=m-2 err=".*MD5OfMessageAttributes`, logs.String())
}

// TestReceiveChecksumDeadLetters: with an explicit dead-letter queue and a queue without a redrive
// policy, a message whose body fails its digest on its fifth receive is not a network accident:
// it is sent there with the reason checksum_mismatch and deleted, rather than kept until the
// queue's retention ends.
func TestReceiveChecksumDeadLetters(t *testing.T) {
	t.Parallel()
	msgs := fakeMessages("m", 2)
	msgs[0].Attributes[string(types.MessageSystemAttributeNameApproximateReceiveCount)] = "5"
	out := leanAnswer(t, msgs, "m-0", "")
	client := &fakeSQS{receive: receiveOnce(out), attributes: noRedriveAttributes}
	var mu sync.Mutex
	var sent []*sqs.SendMessageInput
	client.send = func(in *sqs.SendMessageInput) (*sqs.SendMessageOutput, error) {
		mu.Lock()
		defer mu.Unlock()
		sent = append(sent, in)
		return &sqs.SendMessageOutput{MessageId: aws.String("dlq-1")}, nil
	}
	c, _ := newFakeConsumer(t, client, Config{Receivers: 1, Workers: 10, DepthInterval: -1, DLQURL: "https://sqs.example/000000000000/dlq"})
	runFake(t, c)

	require.Eventually(t, func() bool { return len(client.deletedHandles()) == 2 }, 10*time.Second, time.Millisecond)
	assert.ElementsMatch(t, []string{"h-m-0", "h-m-1"}, client.deletedHandles(), "the damaged message is deleted once in the dead-letter queue")
	mu.Lock()
	require.Len(t, sent, 1)
	assert.Equal(t, "m-0", aws.ToString(sent[0].MessageBody))
	assert.Contains(t, aws.ToString(sent[0].MessageAttributes[queue.AttrDLQReason].StringValue), "MD5OfBody")
	mu.Unlock()
	assert.Equal(t, 1.0, counterValue(t, c.m.deadLettered.WithLabelValues("checksum_mismatch")))
	assert.Empty(t, client.visibilityCalls())
}

// TestReceiveChecksumLeftToRedrivePolicy: when the queue has a redrive policy (or the consumer
// does not know yet whether it has one), a message whose body fails its digest on its fifth
// receive is not copied, as received, into the explicit dead-letter queue and deleted: it is
// retried, and the policy moves the message as the queue stores it.
func TestReceiveChecksumLeftToRedrivePolicy(t *testing.T) {
	t.Parallel()
	withPolicy := func(*sqs.GetQueueAttributesInput) (*sqs.GetQueueAttributesOutput, error) {
		return &sqs.GetQueueAttributesOutput{Attributes: map[string]string{
			string(types.QueueAttributeNameRedrivePolicy): `{"deadLetterTargetArn":"arn:aws:sqs:eu-west-1:000000000000:dlq","maxReceiveCount":10}`}}, nil
	}
	for name, attributes := range map[string]func(*sqs.GetQueueAttributesInput) (*sqs.GetQueueAttributesOutput, error){
		"redrive policy": withPolicy,
		"policy unknown": nil, // GetQueueAttributes fails
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			msgs := fakeMessages("m", 2)
			msgs[0].Attributes[string(types.MessageSystemAttributeNameApproximateReceiveCount)] = "5"
			client := &fakeSQS{receive: receiveOnce(leanAnswer(t, msgs, "m-0", "")), attributes: attributes}
			var sends atomic.Int32
			client.send = func(*sqs.SendMessageInput) (*sqs.SendMessageOutput, error) {
				sends.Add(1)
				return &sqs.SendMessageOutput{MessageId: aws.String("dlq-1")}, nil
			}
			c, _ := newFakeConsumer(t, client, Config{Receivers: 1, Workers: 10, DepthInterval: -1, WaitTime: time.Second,
				DLQURL: "https://sqs.example/000000000000/dlq"})
			runFake(t, c)

			require.Eventually(t, func() bool { return len(client.deletedHandles())+len(client.visibilityCalls()) == 2 },
				10*time.Second, time.Millisecond, "both messages settled")
			assert.Zero(t, sends.Load(), "nothing copied into the dead-letter queue")
			assert.Equal(t, []string{"h-m-1"}, client.deletedHandles(), "only the intact message is deleted")
			calls := client.visibilityCalls()
			require.Len(t, calls, 1)
			assert.Equal(t, "h-m-0", calls[0].handle, "the damaged message is retried")
			assert.Positive(t, calls[0].seconds)
			assert.Zero(t, counterValue(t, c.m.deadLettered.WithLabelValues("checksum_mismatch")))
		})
	}
}

// TestReceiveChecksumFailureDoesNotDelayBatch: the messages of a receive whose body did not match
// are settled after the batch's intact messages are dispatched: a settling call that hangs (SQS
// slow) does not hold them while their visibility runs out. Nor does it hold the shutdown for its
// whole bound: cut 2 × shutdownCallTimeout after the shutdown began.
func TestReceiveChecksumFailureDoesNotDelayBatch(t *testing.T) {
	t.Parallel()
	out := leanAnswer(t, fakeMessages("m", 2), "m-0", "")
	client := &fakeSQS{receive: receiveOnce(out)}
	client.visibility = func(ctx context.Context, in *sqs.ChangeMessageVisibilityInput) error {
		if aws.ToString(in.ReceiptHandle) == "h-m-0" {
			<-ctx.Done() // SQS slow: the call runs to its bound
			return ctx.Err()
		}
		return nil
	}
	started := make(chan time.Time, 1)
	polled := time.Now()
	c, _ := newFakeConsumer(t, client, Config{Receivers: 1, Workers: 10, DepthInterval: -1, Visibility: 4 * time.Second, MessageTimeout: 4 * time.Second,
		Grace: time.Second, Processor: ProcessorFunc(func(context.Context, string, []byte) error {
			started <- time.Now()
			return nil
		})})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	go func() {
		defer close(done)
		assert.NoError(t, c.Run(ctx))
	}()

	var at time.Time
	select {
	case at = <-started:
	case <-time.After(30 * time.Second):
		t.Fatal("the intact message was not processed")
	}
	assert.Less(t, at.Sub(polled), time.Second, "the intact message is processed at once, while the damaged one is still being settled")
	require.Eventually(t, func() bool { return len(client.deletedHandles()) == 1 }, 10*time.Second, time.Millisecond)
	assert.Equal(t, []string{"h-m-1"}, client.deletedHandles())

	stopping := time.Now()
	cancel()
	select {
	case <-done:
	case <-time.After(time.Minute):
		t.Fatal("Run did not return")
	}
	assert.Less(t, time.Since(stopping), 2*shutdownCallTimeout+2*time.Second,
		"the settling of the damaged message is cut soon after the shutdown began, not at its 2 × callTimeout bound")
}

// receiveOnce answers the first receive with out, and every later one with nothing once its
// context ends (a long poll that never finds more).
func receiveOnce(out *sqs.ReceiveMessageOutput) func(context.Context, *sqs.ReceiveMessageInput) (*sqs.ReceiveMessageOutput, error) {
	var calls atomic.Int32
	return func(ctx context.Context, _ *sqs.ReceiveMessageInput) (*sqs.ReceiveMessageOutput, error) {
		if calls.Add(1) > 1 {
			<-ctx.Done()
			return nil, ctx.Err()
		}
		return out, nil
	}
}

// leanAnswer is what queue.Lean answers for msgs when the body of badBody and the attributes of
// badAttrs do not match their digests: a loopback server sends them as SQS would, digests and all.
func leanAnswer(t *testing.T, msgs []types.Message, badBody, badAttrs string) *sqs.ReceiveMessageOutput {
	t.Helper()
	wire := make([]map[string]any, len(msgs))
	for i, m := range msgs {
		body := aws.ToString(m.Body)
		attrs := map[string]types.MessageAttributeValue{"k": {DataType: aws.String("String"), StringValue: aws.String("v")}}
		sum, attrSum := md5Hex(body), queue.MD5OfMessageAttributes(attrs)
		switch aws.ToString(m.MessageId) {
		case badBody:
			sum = md5Hex("something else")
		case badAttrs:
			attrSum = md5Hex("other attributes")
		}
		wire[i] = map[string]any{
			"MessageId": aws.ToString(m.MessageId), "ReceiptHandle": aws.ToString(m.ReceiptHandle), "Body": body,
			"MD5OfBody": sum, "Attributes": m.Attributes, "MD5OfMessageAttributes": attrSum,
			"MessageAttributes": map[string]any{"k": map[string]string{"DataType": "String", "StringValue": "v"}},
		}
	}
	answer, err := json.Marshal(map[string]any{"Messages": wire})
	require.NoError(t, err)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/x-amz-json-1.0")
		_, _ = w.Write(answer)
	}))
	defer srv.Close()
	lean, err := queue.NewLean(queue.NewClient(testkit.AWSConfig(), testkit.AWSAt("", srv.URL)))
	require.NoError(t, err)
	out, err := lean.ReceiveMessage(context.Background(), &sqs.ReceiveMessageInput{
		QueueUrl: aws.String(srv.URL + "/000000000000/q"), MaxNumberOfMessages: 10, MessageAttributeNames: []string{"All"},
	})
	require.NoError(t, err)
	return out
}

func md5Hex(s string) string {
	sum := md5.Sum([]byte(s))
	return hex.EncodeToString(sum[:])
}

// TestReadyFailsWhileReceivesFail: a consumer whose receives all fail stops being ready once
// unreadyReceiveFailures receives per receiver failed in a row, with the last error; one receive
// that succeeds makes it ready again.
func TestReadyFailsWhileReceivesFail(t *testing.T) {
	t.Parallel()
	client := &fakeSQS{}
	answers := make(chan error)
	var calls atomic.Int32
	client.receive = func(ctx context.Context, _ *sqs.ReceiveMessageInput) (*sqs.ReceiveMessageOutput, error) {
		calls.Add(1)
		select {
		case err := <-answers:
			if err != nil {
				return nil, err
			}
			return &sqs.ReceiveMessageOutput{}, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	c, _ := newFakeConsumer(t, client, Config{Receivers: 2, DepthInterval: -1})
	c.sleep = func(ctx context.Context, _ time.Duration) bool { return ctx.Err() == nil } // no backoff
	runFake(t, c)
	ctx := context.Background()
	// answer hands one answer to a waiting receive, and waits until the receiver has recorded it
	// (it has called again).
	answer := func(err error) {
		t.Helper()
		n := calls.Load()
		answers <- err
		require.Eventually(t, func() bool { return calls.Load() > n }, 10*time.Second, time.Millisecond)
	}
	require.Eventually(t, func() bool { return calls.Load() == 2 }, 10*time.Second, time.Millisecond, "both receivers poll")
	require.NoError(t, c.Ready(ctx))

	denied := errors.New("AccessDenied: not authorized to perform sqs:ReceiveMessage")
	limit := 2 * unreadyReceiveFailures
	for range limit - 1 {
		answer(denied)
	}
	require.NoError(t, c.Ready(ctx), "a few failed receives do not make the consumer unready")
	answer(denied)
	err := c.Ready(ctx)
	require.ErrorIs(t, err, denied)
	require.ErrorContains(t, err, fmt.Sprintf("the last %d receives failed, since ", limit))
	answer(denied)
	require.ErrorContains(t, c.Ready(ctx), fmt.Sprintf("the last %d receives failed", limit+1))

	answer(nil)
	require.NoError(t, c.Ready(ctx), "a receive that succeeds ends it")
	for range limit - 1 {
		answer(denied)
	}
	require.NoError(t, c.Ready(ctx), "the count starts again")
	assert.Equal(t, float64(2*limit), counterValue(t, c.m.receiveErrors))
}

// TestReceiveHealth: the count of receives failed in a row, across receivers.
func TestReceiveHealth(t *testing.T) {
	t.Parallel()
	var r receiveHealth
	start := time.Date(2026, 12, 3, 14, 0, 0, 0, time.UTC)
	require.NoError(t, r.check(1))
	r.failure(start, errors.New("first"))
	r.failure(start.Add(time.Minute), errors.New("second"))
	require.NoError(t, r.check(3))
	err := r.check(2)
	require.EqualError(t, err, "consumer: the last 2 receives failed, since 2026-12-03T14:00:00Z: second")
	r.success()
	require.NoError(t, r.check(1))
	require.Zero(t, r.failed)
}

// TestReceiveAfterPauseEnded: a long poll that was under way during a whole pause (it began and
// ended while the poll waited) hands its messages to be processed, not hidden: the dependency was
// checked since, and hiding them would spend a receive each for nothing.
func TestReceiveAfterPauseEnded(t *testing.T) {
	t.Parallel()
	client := &fakeSQS{}
	var c *Consumer
	var calls atomic.Int32
	client.receive = func(ctx context.Context, in *sqs.ReceiveMessageInput) (*sqs.ReceiveMessageOutput, error) {
		if calls.Add(1) > 1 {
			<-ctx.Done()
			return nil, ctx.Err()
		}
		// During the poll, another message fails for an outage and the check passes at once.
		c.gate.unavailable("postgres", time.Now(), 0)
		c.gate.probe(ctx)
		return &sqs.ReceiveMessageOutput{Messages: fakeMessages("m", 2)}, nil
	}
	var processed atomic.Int32
	c, _ = newFakeConsumer(t, client, Config{
		Receivers: 1, Workers: 2, DepthInterval: -1, WaitTime: time.Second,
		Dependencies: []Dependency{{Name: "postgres", Check: func(context.Context) error { return nil }}},
		Processor: ProcessorFunc(func(context.Context, string, []byte) error {
			processed.Add(1)
			return nil
		}),
	})
	runFake(t, c)

	require.Eventually(t, func() bool { return len(client.deletedHandles()) == 2 }, 10*time.Second, time.Millisecond,
		"both messages processed and deleted")
	assert.EqualValues(t, 2, processed.Load())
	assert.Zero(t, counterValue(t, c.m.deferred))
	assert.Empty(t, client.visibilityCalls(), "none hidden")
}

// TestReceiveMoreThanAskedLogsMessageIDs: an extra message returned unprocessed on the last
// receive the redrive policy allows is logged as going to the dead-letter queue. That line had no
// message_id (its context lacked one), though every log line about a message carries it.
func TestReceiveMoreThanAskedLogsMessageIDs(t *testing.T) {
	t.Parallel()
	client := &fakeSQS{}
	var calls atomic.Int32
	client.receive = func(ctx context.Context, in *sqs.ReceiveMessageInput) (*sqs.ReceiveMessageOutput, error) {
		if calls.Add(1) == 1 {
			return &sqs.ReceiveMessageOutput{Messages: fakeMessages("m", int(in.MaxNumberOfMessages)+2)}, nil
		}
		<-ctx.Done()
		return nil, ctx.Err()
	}
	logs := &syncBuffer{}
	c, err := New(Config{
		Client: client, QueueURL: "http://sqs.test/000000000000/q", Receivers: 1, Workers: 2, DepthInterval: -1,
		Processor:  ProcessorFunc(func(context.Context, string, []byte) error { return nil }),
		Log:        telemetry.NewLogger(logs, "json", "debug"),
		Registerer: prometheus.NewRegistry(),
	})
	require.NoError(t, err)
	c.redrive.Store(&queue.RedrivePolicy{MaxReceiveCount: 1}) // every receive is the last one
	runFake(t, c)

	require.Eventually(t, func() bool { return len(client.visibilityCalls()) == 2 }, 10*time.Second, time.Millisecond)
	for _, id := range []string{"m-2", "m-3"} {
		require.Eventually(t, func() bool {
			for line := range strings.SplitSeq(logs.String(), "\n") {
				if strings.Contains(line, "returned unprocessed") && strings.Contains(line, `"message_id":"`+id+`"`) {
					return true
				}
			}
			return false
		}, 10*time.Second, time.Millisecond, "the last-receive line of extra message %s carries its id:\n%s", id, logs.String())
	}
}
