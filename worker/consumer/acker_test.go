package consumer

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/smithy-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// deleteAll answers every entry of a DeleteMessageBatch as deleted.
func deleteAll(in *sqs.DeleteMessageBatchInput) *sqs.DeleteMessageBatchOutput {
	out := &sqs.DeleteMessageBatchOutput{}
	for _, e := range in.Entries {
		out.Successful = append(out.Successful, types.DeleteMessageBatchResultEntry{Id: e.Id})
	}
	return out
}

// TestDeleteOutagePauses: SQS answers receives but fails every deletion (a delete-only outage).
// Left alone, each committed message would be received and processed again after its visibility
// timeout until its receives dead-letter it. After ackOutageBatches batches given up, the
// receivers pause under "sqs" (gauge, readiness); the gate's check deletes the last messages given
// up again, and once that works the receivers resume.
func TestDeleteOutagePauses(t *testing.T) {
	t.Parallel()
	client := &fakeSQS{}
	var receives atomic.Int32
	client.receive = func(ctx context.Context, in *sqs.ReceiveMessageInput) (*sqs.ReceiveMessageOutput, error) {
		if n := receives.Add(1); n <= 3 {
			return &sqs.ReceiveMessageOutput{Messages: fakeMessages(fmt.Sprintf("r%d", n), int(in.MaxNumberOfMessages))}, nil
		}
		<-ctx.Done()
		return nil, ctx.Err()
	}
	var down atomic.Bool
	down.Store(true)
	client.deleteBatch = func(_ context.Context, in *sqs.DeleteMessageBatchInput) (*sqs.DeleteMessageBatchOutput, error) {
		if down.Load() {
			return nil, &smithy.GenericAPIError{Code: "InternalError", Message: "We encountered an internal error.", Fault: smithy.FaultServer}
		}
		return deleteAll(in), nil
	}
	c, logs := newFakeConsumer(t, client, Config{Receivers: 1, Workers: 10, DepthInterval: -1, WaitTime: time.Second})
	runFake(t, c)
	paused := func() float64 { return gaugeValue(t, c.m.paused.WithLabelValues(dependencySQS)) }

	require.Eventually(t, func() bool { return paused() == 1 }, 20*time.Second, 5*time.Millisecond,
		"deletions failing pause the receivers")
	require.ErrorContains(t, c.Ready(context.Background()), "paused: sqs unavailable since")
	assert.Contains(t, logs.String(), "deleting settled messages keeps failing: pausing the receivers")
	assert.GreaterOrEqual(t, counterValue(t, c.m.ackFailed), float64(ackOutageBatches))

	down.Store(false)
	require.Eventually(t, func() bool { return paused() == 0 }, 20*time.Second, 5*time.Millisecond,
		"resumed once the check deleted again")
	require.NoError(t, c.Ready(context.Background()))
	deleted := client.deletedHandles()
	assert.NotEmpty(t, deleted, "the check deleted the last messages given up")
	assert.LessOrEqual(t, len(deleted), maxBatch)
	assert.Equal(t, float64(len(deleted)), counterValue(t, c.m.acked))
	assert.Contains(t, logs.String(), "message deleted after its deletion had failed")
}

// TestAckerCloseWithFlushersStuck: with every flusher waiting on SQS and the queue of deletions
// full, a settled message's add waits for room; close does not wait behind it (the shutdown
// would otherwise last as long as the flushers' retries): the add gives up, the message will be
// delivered again.
func TestAckerCloseWithFlushersStuck(t *testing.T) {
	t.Parallel()
	client := &fakeSQS{}
	release := make(chan struct{})
	var calls atomic.Int32
	client.deleteBatch = func(ctx context.Context, in *sqs.DeleteMessageBatchInput) (*sqs.DeleteMessageBatchOutput, error) {
		calls.Add(1)
		select {
		case <-release:
			return deleteAll(in), nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	c, logs := newFakeConsumer(t, client, Config{})
	a := newAcker(context.Background(), client, c.cfg.QueueURL, c.log, c.m, c.gate)
	added := make(chan struct{})
	go func() {
		defer close(added)
		for i := range 200 {
			a.add(context.Background(), &delivery{id: fmt.Sprint(i), handle: fmt.Sprint("h-", i)})
		}
	}()
	require.Eventually(t, func() bool { return calls.Load() == ackFlushers && len(a.in) == cap(a.in) }, 10*time.Second, time.Millisecond,
		"every flusher waits on SQS and the queue of deletions is full")

	closed := make(chan struct{})
	go func() {
		defer close(closed)
		closeAcker(a)
	}()
	select {
	case <-added:
	case <-time.After(30 * time.Second):
		t.Fatal("an add still waits for room after close began")
	}
	close(release)
	select {
	case <-closed:
	case <-time.After(time.Minute):
		t.Fatal("close did not return")
	}
	assert.Contains(t, logs.String(), "consumer stopped before the message could be deleted")
	assert.GreaterOrEqual(t, len(client.deletedHandles()), ackFlushers*maxBatch, "what was queued is deleted")
}

// TestAckerLogsNoReceiptHandle: SQS's errors quote receipt handles; the acker logs
// "REDACTED" (redact.Mask) instead, for entries it failed and for a whole call that failed.
func TestAckerLogsNoReceiptHandle(t *testing.T) {
	t.Parallel()
	const handle = "AQEBsecretHandle+/="
	invalid := `The input receipt handle "` + handle + `" is not a valid receipt handle.`
	for _, whole := range []bool{false, true} {
		t.Run(fmt.Sprintf("whole call %t", whole), func(t *testing.T) {
			t.Parallel()
			client := &fakeSQS{}
			client.deleteBatch = func(_ context.Context, in *sqs.DeleteMessageBatchInput) (*sqs.DeleteMessageBatchOutput, error) {
				if whole {
					return nil, &smithy.GenericAPIError{Code: "ReceiptHandleIsInvalid", Message: invalid, Fault: smithy.FaultClient}
				}
				out := &sqs.DeleteMessageBatchOutput{}
				for _, e := range in.Entries {
					out.Failed = append(out.Failed, types.BatchResultErrorEntry{Id: e.Id, Code: aws.String("ReceiptHandleIsInvalid"),
						Message: aws.String(invalid), SenderFault: true})
				}
				return out, nil
			}
			c, logs := newFakeConsumer(t, client, Config{})
			a := newAcker(context.Background(), client, c.cfg.QueueURL, c.log, c.m, c.gate)
			// More batches than ackOutageBatches, one after the other: had they counted as SQS's
			// failure, the receivers would pause.
			for i := range ackOutageBatches + 1 {
				a.add(context.Background(), &delivery{id: fmt.Sprintf("m-%d", i), handle: handle})
				require.Eventually(t, func() bool { return counterValue(t, c.m.ackFailed) == float64(i+1) }, 10*time.Second, time.Millisecond)
			}
			closeAcker(a)
			assert.Contains(t, logs.String(), `The input receipt handle \"REDACTED\"`)
			assert.NotContains(t, logs.String(), handle)
			a.outMu.Lock()
			assert.Zero(t, a.failedRun, "the entry's own fault is no outage")
			a.outMu.Unlock()
			assert.False(t, strings.Contains(logs.String(), "pausing the receivers"), "the entry's own fault is no outage")
		})
	}
}

// TestAckerProbeSettlesWhatItDeleted: a probe whose retried deletes partly fail (one entry failed by
// SQS) fails, but the entries it did delete are settled: the next probe does not delete and count
// them again. An entry the answer does not name is not taken as deleted.
func TestAckerProbeSettlesWhatItDeleted(t *testing.T) {
	t.Parallel()
	client := &fakeSQS{}
	var fail atomic.Value // the handles the next call fails by SQS's fault; "unnamed": left out
	fail.Store(map[string]string{})
	client.deleteBatch = func(_ context.Context, in *sqs.DeleteMessageBatchInput) (*sqs.DeleteMessageBatchOutput, error) {
		out := &sqs.DeleteMessageBatchOutput{}
		for _, e := range in.Entries {
			switch fail.Load().(map[string]string)[aws.ToString(e.ReceiptHandle)] {
			case "server":
				out.Failed = append(out.Failed, types.BatchResultErrorEntry{Id: e.Id, Code: aws.String("InternalError"), Message: aws.String("x")})
			case "unnamed":
			default:
				out.Successful = append(out.Successful, types.DeleteMessageBatchResultEntry{Id: e.Id})
			}
		}
		return out, nil
	}
	c, _ := newFakeConsumer(t, client, Config{})
	a := newAcker(context.Background(), client, c.cfg.QueueURL, c.log, c.m, c.gate)
	defer closeAcker(a)
	a.outMu.Lock()
	a.owed = []ackEntry{{ctx: context.Background(), d: &delivery{id: "a", handle: "h-a"}}, {ctx: context.Background(), d: &delivery{id: "b", handle: "h-b"}},
		{ctx: context.Background(), d: &delivery{id: "c", handle: "h-c"}}}
	a.failedRun = ackOutageBatches
	a.outMu.Unlock()

	fail.Store(map[string]string{"h-b": "server", "h-c": "unnamed"})
	require.Error(t, a.probe(context.Background()))
	assert.Equal(t, 1.0, counterValue(t, c.m.acked), "a deleted")
	fail.Store(map[string]string{})
	require.NoError(t, a.probe(context.Background()))
	assert.Equal(t, 3.0, counterValue(t, c.m.acked), "b and c deleted now, a not again")
	a.outMu.Lock()
	defer a.outMu.Unlock()
	assert.Empty(t, a.owed)
	assert.Zero(t, a.failedRun)
}

// TestAckFailedCountsOnlyGivenUp: intake_messages_ack_failed_total counts the settled messages
// left undeleted, once each: not those whose deletion failed for SQS's fault and that the check of
// SQS (probe) deletes later (counted in intake_messages_acked_total), only those it no longer
// keeps to retry, and those still owed when the acker closes.
func TestAckFailedCountsOnlyGivenUp(t *testing.T) {
	t.Parallel()
	client := &fakeSQS{}
	var down atomic.Bool
	down.Store(true)
	client.deleteBatch = func(_ context.Context, in *sqs.DeleteMessageBatchInput) (*sqs.DeleteMessageBatchOutput, error) {
		if down.Load() {
			return nil, &smithy.GenericAPIError{Code: "InternalError", Message: "We encountered an internal error.", Fault: smithy.FaultServer}
		}
		return deleteAll(in), nil
	}
	c, _ := newFakeConsumer(t, client, Config{})
	a := newAcker(context.Background(), client, c.cfg.QueueURL, c.log, c.m, nil)
	owed := func() int {
		a.outMu.Lock()
		defer a.outMu.Unlock()
		return len(a.owed)
	}
	// 15 deletions given up for SQS's failure: the probe keeps the last 10 to retry.
	for i := range 15 {
		a.add(context.Background(), &delivery{id: fmt.Sprint("m-", i), handle: fmt.Sprint("h-", i)})
	}
	require.Eventually(t, func() bool { return owed() == maxBatch && counterValue(t, c.m.ackFailed) >= 5 }, 20*time.Second, time.Millisecond)
	assert.Equal(t, 5.0, counterValue(t, c.m.ackFailed), "only the 5 deletions not kept for the probe are given up and counted")

	down.Store(false)
	require.NoError(t, a.probe(context.Background()))
	assert.Equal(t, 10.0, counterValue(t, c.m.acked), "the probe deleted the 10 it kept")
	assert.Equal(t, 5.0, counterValue(t, c.m.ackFailed), "and they are not counted as failed")

	// One more given up, still owed when the acker closes: counted then.
	down.Store(true)
	a.add(context.Background(), &delivery{id: "m-last", handle: "h-last"})
	require.Eventually(t, func() bool { return owed() == 1 }, 20*time.Second, time.Millisecond)
	assert.Equal(t, 5.0, counterValue(t, c.m.ackFailed))
	closeAcker(a)
	assert.Equal(t, 6.0, counterValue(t, c.m.ackFailed))
	assert.Equal(t, 16.0, counterValue(t, c.m.acked)+counterValue(t, c.m.ackFailed), "each message counted once")
}

// TestAckerPartialDeleteFailuresDoNotPause: SQS fails one entry of each batch (every attempt, for
// its own fault: not the sender's) and deletes the other nine. Deletions work: the receivers are
// not paused, however many such batches come (the failed entries come back and are settled
// again). Before, three of them in a row paused every receiver until a probe could delete those
// entries, about a visibility timeout with nothing received.
func TestAckerPartialDeleteFailuresDoNotPause(t *testing.T) {
	t.Parallel()
	client := &fakeSQS{}
	var calls atomic.Int32
	client.deleteBatch = func(_ context.Context, in *sqs.DeleteMessageBatchInput) (*sqs.DeleteMessageBatchOutput, error) {
		calls.Add(1)
		out := &sqs.DeleteMessageBatchOutput{}
		for _, e := range in.Entries {
			if strings.HasPrefix(aws.ToString(e.ReceiptHandle), "bad") {
				out.Failed = append(out.Failed, types.BatchResultErrorEntry{Id: e.Id, Code: aws.String("InternalError"), SenderFault: false})
				continue
			}
			out.Successful = append(out.Successful, types.DeleteMessageBatchResultEntry{Id: e.Id})
		}
		return out, nil
	}
	c, logs := newFakeConsumer(t, client, Config{})
	a := newAcker(context.Background(), client, c.cfg.QueueURL, c.log, c.m, c.gate)
	for b := range ackOutageBatches + 1 {
		for i := range 10 {
			h := fmt.Sprintf("ok-%d-%d", b, i)
			if i == 0 {
				h = fmt.Sprintf("bad-%d", b)
			}
			a.add(context.Background(), &delivery{id: h, handle: h})
		}
		// The batch is settled: its nine deleted, its bad entry failed on each of its attempts.
		require.Eventually(t, func() bool {
			return len(client.deletedHandles()) == 9*(b+1) && calls.Load() == int32(ackAttempts*(b+1))
		}, 10*time.Second, time.Millisecond, "batch %d", b)
	}
	closeAcker(a) // waits for the last batch's accounting
	assert.Nil(t, c.gate.pausedBy(), "deletions work: nothing to pause for")
	assert.NotContains(t, logs.String(), "pausing the receivers")
}
