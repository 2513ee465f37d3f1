package replay

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/stretchr/testify/require"
)

// hiddenDLQ is a dead-letter queue that held messages when the run started, of which only those
// in visible can be received: the others are in flight, held by another reader (a stopped
// replay) for the whole run. Sends, deletes and visibility changes succeed; the queue's counts
// cannot be read (MoveDLQ reads them at the end, best effort).
type hiddenDLQ struct {
	SQSAPI // nil: a call not answered below panics

	mu      sync.Mutex
	visible []types.Message
}

func newHiddenDLQ(visible int) *hiddenDLQ {
	q := &hiddenDLQ{}
	for i := range visible {
		id := strconv.Itoa(i)
		q.visible = append(q.visible, types.Message{MessageId: aws.String("m-" + id), ReceiptHandle: aws.String("h-" + id), Body: aws.String(body(i))})
	}
	return q
}

func (q *hiddenDLQ) ReceiveMessage(_ context.Context, in *sqs.ReceiveMessageInput, _ ...func(*sqs.Options)) (*sqs.ReceiveMessageOutput, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	n := min(int(in.MaxNumberOfMessages), len(q.visible))
	out := &sqs.ReceiveMessageOutput{Messages: q.visible[:n]}
	q.visible = q.visible[n:]
	return out, nil
}

func (q *hiddenDLQ) SendMessageBatch(_ context.Context, in *sqs.SendMessageBatchInput, _ ...func(*sqs.Options)) (*sqs.SendMessageBatchOutput, error) {
	out := &sqs.SendMessageBatchOutput{}
	for _, e := range in.Entries {
		out.Successful = append(out.Successful, types.SendMessageBatchResultEntry{Id: e.Id, MessageId: aws.String("sent-" + aws.ToString(e.Id))})
	}
	return out, nil
}

func (q *hiddenDLQ) DeleteMessageBatch(_ context.Context, in *sqs.DeleteMessageBatchInput, _ ...func(*sqs.Options)) (*sqs.DeleteMessageBatchOutput, error) {
	out := &sqs.DeleteMessageBatchOutput{}
	for _, e := range in.Entries {
		out.Successful = append(out.Successful, types.DeleteMessageBatchResultEntry{Id: e.Id})
	}
	return out, nil
}

func (q *hiddenDLQ) ChangeMessageVisibilityBatch(_ context.Context, in *sqs.ChangeMessageVisibilityBatchInput, _ ...func(*sqs.Options)) (*sqs.ChangeMessageVisibilityBatchOutput, error) {
	out := &sqs.ChangeMessageVisibilityBatchOutput{}
	for _, e := range in.Entries {
		out.Successful = append(out.Successful, types.ChangeMessageVisibilityBatchResultEntry{Id: e.Id})
	}
	return out, nil
}

func (q *hiddenDLQ) GetQueueAttributes(context.Context, *sqs.GetQueueAttributesInput, ...func(*sqs.Options)) (*sqs.GetQueueAttributesOutput, error) {
	return nil, errors.New("not answered")
}

// TestUnreached: a move and a dry run that end on an empty receive while messages present at the
// start are still in flight (held by a stopped replay) say how many they never reached
// (Unreached), within Max; Partial, which is about the skip limit, stays false. Before, nothing in
// the results told such a run from one that had moved (or counted) everything present.
func TestUnreached(t *testing.T) {
	t.Parallel()
	const present, visible = 5, 3 // two in flight for the whole run
	for _, tc := range []struct{ max, want int }{{0, 2}, {4, 1}, {3, 0}, {2, 0}} {
		t.Run("max "+strconv.Itoa(tc.max), func(t *testing.T) {
			t.Parallel()
			start := &DLQStart{Messages: present, At: time.Now()}
			budget := start.Budget(tc.max)
			res, err := MoveDLQ(context.Background(), newHiddenDLQ(visible), DLQOptions{From: "dlq", To: "q", Start: start, Max: tc.max, Concurrency: 1})
			require.NoError(t, err)
			require.Equal(t, min(visible, budget), res.Received)
			require.Equal(t, min(visible, budget), res.Deleted)
			require.Equal(t, tc.want, res.Unreached)
			require.False(t, res.SkipLimit)

			dry, err := DryRunDLQ(context.Background(), newHiddenDLQ(visible), DLQOptions{From: "dlq", Start: start, Max: tc.max, Concurrency: 1})
			require.NoError(t, err)
			require.Equal(t, min(visible, budget), dry.Messages)
			require.Equal(t, tc.want, dry.Unreached)
			require.False(t, dry.Partial)
		})
	}
}
