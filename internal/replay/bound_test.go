package replay

import (
	"bytes"
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/intakehq/intake/internal/objstore"
	"github.com/intakehq/intake/internal/store"
	"github.com/intakehq/intake/internal/telemetry"
	"github.com/intakehq/intake/internal/testkit"
	"github.com/intakehq/intake/pipeline"
	"github.com/intakehq/intake/worker/consumer"
)

// inflatedCounts is the real SQS client whose ApproximateNumberOfMessages reads extra more than the
// server says: AWS's counts are approximate, and a move must end even when the count at its start
// is too high.
type inflatedCounts struct {
	SQSAPI
	extra int
}

func (c inflatedCounts) GetQueueAttributes(ctx context.Context, in *sqs.GetQueueAttributesInput, opts ...func(*sqs.Options)) (*sqs.GetQueueAttributesOutput, error) {
	out, err := c.SQSAPI.GetQueueAttributes(ctx, in, opts...)
	if err != nil {
		return nil, err
	}
	key := string(types.QueueAttributeNameApproximateNumberOfMessages)
	if v, ok := out.Attributes[key]; ok {
		n, _ := strconv.Atoi(v)
		out.Attributes[key] = strconv.Itoa(n + c.extra)
	}
	return out, nil
}

// runConsumer runs a real consumer and the real pipeline on queueURL; every body it gets here is
// malformed, so it fails for good and the consumer dead-letters it: explicitly to dlqURL when set,
// else through the queue's redrive policy.
func runConsumer(t *testing.T, c *sqs.Client, queueURL, dlqURL string) {
	t.Helper()
	log := telemetry.NewLogger(&bytes.Buffer{}, "text", "error")
	proc, err := pipeline.NewProcessor(pipeline.ProcessorConfig{
		Objects: objstore.NewObjects(testkit.S3()), Records: store.NewRecords(testkit.DB(t)), Buckets: []string{"b"}, Log: log,
	})
	require.NoError(t, err)
	cons, err := consumer.New(consumer.Config{
		Client: c, QueueURL: queueURL, DLQURL: dlqURL, Processor: proc, WaitTime: time.Second, Visibility: 5 * time.Second,
		DepthInterval: -1, Log: log, Registerer: prometheus.NewRegistry(),
	})
	require.NoError(t, err)
	testkit.Serve(t, cons.Run)
}

// TestMoveDLQEnds: the dead-letter queue holds messages that fail for good, and a real consumer
// dead-letters them again as soon as they are back. One run moves each once and ends, whatever the
// consumer does with them, even when the count read at the start is too high.
func TestMoveDLQEnds(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("needs kumo, MinIO and PostgreSQL")
	}
	const n = 3
	for _, tc := range []struct {
		name     string
		explicit bool // the consumer sends to the DLQ itself (INTAKE_DLQ_URL), else the redrive policy does
		// wait is the move's long-poll wait: longer than it takes the consumer to dead-letter a
		// message again, so that the move still receives when they come back.
		wait time.Duration
	}{
		{"consumer dead-letters explicitly", true, 5 * time.Second},
		{"redrive policy after 5 receives", false, 20 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := testSQS()
			q := testkit.Queue(t, c, 5, 30*time.Second)
			entries := make([]types.SendMessageBatchRequestEntry, n)
			for i := range n {
				entries[i] = types.SendMessageBatchRequestEntry{Id: aws.String(strconv.Itoa(i)), MessageBody: aws.String(fmt.Sprintf(`{"poison":%d}`, i))}
			}
			testkit.SendMessages(t, c, q.DLQURL, entries)
			dlq := ""
			if tc.explicit {
				dlq = q.DLQURL
			}
			runConsumer(t, c, q.URL, dlq)

			// Bounded so that a move that never ends fails instead of hanging: it should end in
			// seconds. The long-poll wait outlasts the consumer's round trip, so dead-lettered
			// messages come back while the move still receives.
			ctx, cancel := context.WithTimeout(testkit.Context(t), 90*time.Second)
			defer cancel()
			progress := &countAdds{}
			res, err := MoveDLQ(ctx, inflatedCounts{SQSAPI: c, extra: 7}, DLQOptions{
				From: q.DLQURL, To: q.URL, Concurrency: 1, Wait: tc.wait, Visibility: 60 * time.Second, Progress: progress,
			})
			require.NoError(t, err)
			require.NoError(t, ctx.Err(), "the move did not end by itself")
			t.Logf("start %+v: received %d, sent %d, skipped %d", res.Start, res.Received, res.Sent, res.Skipped)
			require.Equal(t, n+7, res.Start.Messages, "the count read at the start")
			require.Equal(t, n, res.Sent, "each message moved once")
			require.Equal(t, n, res.Deleted)
			require.EqualValues(t, n, progress.n.Load())
			require.False(t, res.SkipLimit)

			// The consumer dead-letters each of them again, once.
			require.Eventually(t, func() bool {
				counts, err := Counts(context.Background(), c, q.DLQURL)
				require.NoError(t, err)
				return counts.Visible+counts.InFlight == n
			}, 60*time.Second, 100*time.Millisecond)
			back, total := testkit.DrainQueue(t, c, q.DLQURL)
			require.Len(t, back, n)
			require.Equal(t, n, total)
		})
	}
}

// TestMoveDLQSkipsLaterArrivals: messages sent to the dead-letter queue after the move started are
// not moved, and are visible again when it ends.
func TestMoveDLQSkipsLaterArrivals(t *testing.T) {
	t.Parallel()
	c, q := kumoQueues(t)
	fill(t, c, q.DLQURL, 0, 3)
	// kumo runs on this machine's clock: the start is now, and the later messages are sent after it.
	start := DLQStart{Messages: 10, At: time.Now()}
	time.Sleep(5 * time.Millisecond) // SentTimestamp has milliseconds
	fill(t, c, q.DLQURL, 100, 2)

	res, err := MoveDLQ(testkit.Context(t), c, DLQOptions{From: q.DLQURL, To: q.URL, Concurrency: 2, Wait: time.Second, Start: &start})
	require.NoError(t, err)
	require.Equal(t, 3, res.Sent)
	require.Equal(t, 2, res.Skipped)
	moved, _ := testkit.DrainQueue(t, c, q.URL)
	require.Len(t, moved, 3)
	for i := range 3 {
		require.Contains(t, moved, body(i))
	}
	left, _ := testkit.DrainQueue(t, c, q.DLQURL) // visible at once, not after the move's visibility
	require.Len(t, left, 2)
	require.Contains(t, left, body(100))
	require.Contains(t, left, body(101))
}

// batchSizes is the real SQS client that records the payload of every SendMessageBatch.
type batchSizes struct {
	SQSAPI
	mu    sync.Mutex
	sizes []int
}

func (b *batchSizes) SendMessageBatch(ctx context.Context, in *sqs.SendMessageBatchInput, opts ...func(*sqs.Options)) (*sqs.SendMessageBatchOutput, error) {
	size := 0
	for _, e := range in.Entries {
		size += messageBytes(types.Message{Body: e.MessageBody, MessageAttributes: e.MessageAttributes})
	}
	b.mu.Lock()
	b.sizes = append(b.sizes, size)
	b.mu.Unlock()
	return b.SQSAPI.SendMessageBatch(ctx, in, opts...)
}

// TestMoveDLQByteCap: 1 MiB worth of dead-lettered bodies goes back in batches within SQS's batch
// limit (kumo does not enforce it, so the batches are measured on the way).
func TestMoveDLQByteCap(t *testing.T) {
	t.Parallel()
	c, q := kumoQueues(t)
	const n = 8
	entries := make([]types.SendMessageBatchRequestEntry, n)
	for i := range n {
		entries[i] = types.SendMessageBatchRequestEntry{
			Id: aws.String(strconv.Itoa(i)), MessageBody: aws.String(fmt.Sprintf("%02d", i) + strings.Repeat("x", 130*1024)), MessageAttributes: attrs(i),
		}
	}
	testkit.SendMessages(t, c, q.DLQURL, entries)
	rec := &batchSizes{SQSAPI: c}
	res, err := MoveDLQ(testkit.Context(t), rec, DLQOptions{From: q.DLQURL, To: q.URL, Concurrency: 1, Wait: time.Second})
	require.NoError(t, err)
	require.Equal(t, n, res.Sent)
	require.Zero(t, res.SendFailed)
	total := 0
	for _, s := range rec.sizes {
		require.LessOrEqual(t, s, maxBatchBytes, "a SendMessageBatch of %d bytes", s)
		total += s
	}
	require.Greater(t, total, 1<<20)
	require.GreaterOrEqual(t, len(rec.sizes), 5, "two 130 KiB bodies fit in a batch, not three")
	moved, _ := testkit.DrainQueue(t, c, q.URL)
	require.Len(t, moved, n)
}

func TestSplitBatches(t *testing.T) {
	t.Parallel()
	size := func(n int) int { return n }
	tests := []struct {
		name  string
		items []int
		want  [][]int
	}{
		{"empty", nil, nil},
		{"ten per batch", []int{1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1}, [][]int{{1, 1, 1, 1, 1, 1, 1, 1, 1, 1}, {1, 1}}},
		{"bytes", []int{100 << 10, 100 << 10, 100 << 10, 10}, [][]int{{100 << 10, 100 << 10}, {100 << 10, 10}}},
		{"exactly the limit", []int{maxBatchBytes - 1, 1, 1}, [][]int{{maxBatchBytes - 1, 1}, {1}}},
		{"one entry over the limit goes alone", []int{1, maxBatchBytes + 1, 1}, [][]int{{1}, {maxBatchBytes + 1}, {1}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tc.want, splitBatches(tc.items, size))
		})
	}
}

// TestMoveDLQCountsHeldMessages: messages another reader held when the move started (a replay that
// was killed, here a receive with a 1 s visibility) come back and are moved by the next run. kumo,
// like any server whose counts lag, still reports them in flight after their visibility ended, so a
// budget of the visible messages alone left them in the dead-letter queue.
func TestMoveDLQCountsHeldMessages(t *testing.T) {
	t.Parallel()
	c := testkit.SQS()
	q := testkit.Queue(t, c, 3, 30*time.Second)
	const n, held = 30, 10
	fill(t, c, q.DLQURL, 0, n)
	out, err := c.ReceiveMessage(testkit.Context(t), &sqs.ReceiveMessageInput{
		QueueUrl: aws.String(q.DLQURL), MaxNumberOfMessages: held, VisibilityTimeout: 1,
	})
	require.NoError(t, err)
	require.Len(t, out.Messages, held)
	time.Sleep(1500 * time.Millisecond) // their visibility ends; nobody received them since

	start, err := StartDLQ(testkit.Context(t), c, q.DLQURL)
	require.NoError(t, err)
	require.Equal(t, n, start.Messages, "visible and held messages are what the DLQ holds")
	res, err := MoveDLQ(testkit.Context(t), c, DLQOptions{From: q.DLQURL, To: q.URL, Wait: time.Second, Start: &start})
	require.NoError(t, err)
	require.Equal(t, n, res.Sent)
	got, _ := testkit.DrainQueue(t, c, q.URL)
	require.Len(t, got, n, "every message moved, the held ones included")
	left, _ := testkit.DrainQueue(t, c, q.DLQURL)
	require.Empty(t, left)
}

// feeding is the real SQS client that sends one more message to the dead-letter queue before each
// receive from it: a consumer dead-lettering a steady stream of poison while an operator looks.
type feeding struct {
	*sqs.Client
	dlq    string
	sent   atomic.Int32
	failed atomic.Int32
}

func (f *feeding) ReceiveMessage(ctx context.Context, in *sqs.ReceiveMessageInput, opts ...func(*sqs.Options)) (*sqs.ReceiveMessageOutput, error) {
	if aws.ToString(in.QueueUrl) == f.dlq {
		time.Sleep(2 * time.Millisecond) // SentTimestamp has milliseconds: later than the start
		i := 1000 + int(f.sent.Add(1))
		if _, err := f.Client.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: aws.String(f.dlq), MessageBody: aws.String(body(i))}); err != nil {
			f.failed.Add(1)
		}
	}
	return f.Client.ReceiveMessage(ctx, in, opts...)
}

// TestDryRunDLQEnds: a dry run counts what a move would move, the messages present when it
// starts, and ends although every receive finds a newer one, even when the count read at the start
// is too high (so the budget alone does not end it); the newer ones are not counted, and
// everything is visible again at the end.
func TestDryRunDLQEnds(t *testing.T) {
	t.Parallel()
	c, q := kumoQueues(t)
	const n = 3
	fill(t, c, q.DLQURL, 0, n)
	time.Sleep(5 * time.Millisecond) // SentTimestamp has milliseconds: the start is after them

	ctx, cancel := context.WithTimeout(testkit.Context(t), 60*time.Second)
	defer cancel()
	f := &feeding{Client: c, dlq: q.DLQURL}
	res, err := DryRunDLQ(ctx, inflatedCounts{SQSAPI: f, extra: 7}, DLQOptions{From: q.DLQURL, Concurrency: 1, Wait: time.Second})
	require.NoError(t, err)
	require.NoError(t, ctx.Err(), "the dry run did not end by itself")
	t.Logf("present %d, counted %d, skipped %d, fed %d", res.Present, res.Messages, res.Skipped, f.sent.Load())
	require.Equal(t, n+7, res.Present, "the count read at the start")
	require.Equal(t, n, res.Messages, "only the messages present at the start")
	require.Positive(t, res.Skipped, "the fed messages were received and not counted")
	require.True(t, res.Partial, "it stopped at the skip limit with fewer than the count read at the start: said so")
	require.Zero(t, f.failed.Load())
	fed := int(f.sent.Load())
	require.Equal(t, n+res.Skipped, res.Returned, "everything received is visible again at once")
	left, _ := testkit.DrainQueue(t, c, q.DLQURL)
	require.Len(t, left, n+fed)
}

// TestDryRunDLQCountsPastLaterArrivals: a receive that brings only messages the dry run does not
// count (sent after the start) does not end it: the messages present at the start may come after
// them, here held by another reader (a killed replay) when the dry run starts. Before, the dry run
// ended at that receive and reported 0 messages with exit 0.
func TestDryRunDLQCountsPastLaterArrivals(t *testing.T) {
	t.Parallel()
	c, q := kumoQueues(t)
	const n, later = 10, 5
	fill(t, c, q.DLQURL, 0, n)
	out, err := c.ReceiveMessage(testkit.Context(t), &sqs.ReceiveMessageInput{
		QueueUrl: aws.String(q.DLQURL), MaxNumberOfMessages: n, VisibilityTimeout: 1,
	})
	require.NoError(t, err)
	require.Len(t, out.Messages, n, "held for 1 s")
	start := DLQStart{Messages: n, At: time.Now()}
	time.Sleep(5 * time.Millisecond) // SentTimestamp has milliseconds: later than the start
	fill(t, c, q.DLQURL, 100, later)

	// The first receive finds only the later ones. The rate (ten messages every 2.5 s) puts the
	// second receive after the hold: kumo's long poll, unlike SQS's, does not return messages
	// whose visibility ends while it waits.
	res, err := DryRunDLQ(testkit.Context(t), c, DLQOptions{From: q.DLQURL, Concurrency: 1, Rate: 4, Wait: time.Second, Start: &start})
	require.NoError(t, err)
	t.Logf("counted %d, skipped %d, returned %d", res.Messages, res.Skipped, res.Returned)
	require.Equal(t, n, res.Messages, "every message present at the start counted")
	require.Equal(t, later, res.Skipped)
	require.False(t, res.Partial)
	require.Equal(t, n+later, res.Returned)
	require.Zero(t, res.NotReturned)
}
