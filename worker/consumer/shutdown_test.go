package consumer

import (
	"context"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// daemonSlack is how long past the grace period the daemon (internal/cli, stopSlack) waits for
// its components to return.
const daemonSlack = 10 * time.Second

// TestShutdownWithinGraceAndBudget: past the grace period, the drain of the cancelled handlers,
// the return of the messages of a handler that ignores its context and the pending deletions share
// one deadline, Grace + postGraceBudget, within the daemon's slack, even when every SQS call hangs
// until its bound: one after the other, their own bounds add up to some 25 s.
func TestShutdownWithinGraceAndBudget(t *testing.T) {
	t.Parallel()
	client := &fakeSQS{receive: receiveOnce(&sqs.ReceiveMessageOutput{Messages: fakeMessages("m", 2)})}
	client.visibility = func(ctx context.Context, _ *sqs.ChangeMessageVisibilityInput) error {
		<-ctx.Done()
		return ctx.Err()
	}
	client.deleteBatch = func(ctx context.Context, _ *sqs.DeleteMessageBatchInput) (*sqs.DeleteMessageBatchOutput, error) {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	stuck := make(chan struct{})
	defer close(stuck)
	processing := make(chan struct{}, 2)
	const grace = time.Second
	c, logs := newFakeConsumer(t, client, Config{Receivers: 1, Workers: 2, DepthInterval: -1, Grace: grace, WaitTime: time.Second,
		Processor: ProcessorFunc(func(_ context.Context, id string, _ []byte) error {
			processing <- struct{}{}
			if id == "m-1" {
				<-stuck // ignores its context
			}
			return nil // m-0 commits: its deletion hangs
		})})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		assert.NoError(t, c.Run(ctx))
	}()
	for range 2 {
		<-processing
	}
	start := time.Now()
	cancel()
	select {
	case <-done:
	case <-time.After(time.Minute):
		t.Fatal("Run did not return")
	}
	took := time.Since(start)
	t.Logf("Run returned %s after the cancellation (grace %s)", took, grace)
	assert.Less(t, took, grace+postGraceBudget+time.Second, "within the grace period and the post-grace budget")
	require.Less(t, took, grace+daemonSlack, "within the daemon's slack")
	assert.GreaterOrEqual(t, took, grace+postGraceBudget-ackReserve, "the phases used their budget (SQS hangs)")
	assert.Contains(t, logs.String(), "handlers did not return after cancellation")
	assert.Contains(t, logs.String(), "pending deletions did not finish in time")
}
