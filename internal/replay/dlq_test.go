package replay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/stretchr/testify/require"

	"github.com/intakehq/intake/internal/queue"
	"github.com/intakehq/intake/internal/testkit"
)

type countAdds struct{ n atomic.Int64 }

func (c *countAdds) Add(n int) { c.n.Add(int64(n)) }

// TestMoveDLQ: 1,000 messages go back with their bodies and attributes; the DLQ ends empty.
func TestMoveDLQ(t *testing.T) {
	t.Parallel()
	c, q := kumoQueues(t)
	const n = 1000
	fill(t, c, q.DLQURL, 0, n)

	progress := &countAdds{}
	res, err := MoveDLQ(testkit.Context(t), c, DLQOptions{From: q.DLQURL, To: q.URL, Concurrency: 8, Wait: time.Second, Progress: progress})
	require.NoError(t, err)
	require.Equal(t, n, res.Received)
	require.Equal(t, n, res.Sent)
	require.Equal(t, n, res.Deleted)
	require.Zero(t, res.SendFailed)
	require.Zero(t, res.DeleteFailed)
	require.EqualValues(t, n, progress.n.Load())
	require.Equal(t, queue.Counts{}, res.Left)
	mainCounts, err := Counts(context.Background(), c, q.URL)
	require.NoError(t, err)
	t.Logf("main queue counts after the move: %+v", mainCounts)

	got, total := testkit.DrainQueue(t, c, q.URL)
	t.Logf("drained %d distinct, %d total", len(got), total)
	require.Equal(t, n, len(got))
	require.Equal(t, n, total, "no duplicates without a crash")
	for i := range n {
		m, ok := got[body(i)]
		require.True(t, ok, "message %d missing from the main queue", i)
		requireSameAttrs(t, i, m)
	}
	left, _ := testkit.DrainQueue(t, c, q.DLQURL)
	require.Empty(t, left)
}

// TestMoveDLQMax: --max moves exactly that many and leaves the rest.
func TestMoveDLQMax(t *testing.T) {
	t.Parallel()
	c, q := kumoQueues(t)
	fill(t, c, q.DLQURL, 0, 25)
	res, err := MoveDLQ(testkit.Context(t), c, DLQOptions{From: q.DLQURL, To: q.URL, Max: 12, Concurrency: 3, Wait: time.Second})
	require.NoError(t, err)
	require.Equal(t, 12, res.Received)
	require.Equal(t, 12, res.Deleted)
	moved, _ := testkit.DrainQueue(t, c, q.URL)
	left, _ := testkit.DrainQueue(t, c, q.DLQURL)
	require.Equal(t, 12, len(moved))
	require.Equal(t, 13, len(left))
	for b := range moved {
		require.NotContains(t, left, b)
	}
}

// TestMoveDLQSendFailures: entries the target refuses are never deleted from the DLQ; those
// refused only once are retried and moved.
func TestMoveDLQSendFailures(t *testing.T) {
	t.Parallel()
	c, q := kumoQueues(t)
	const n = 40
	fill(t, c, q.DLQURL, 0, n)
	faulty := &faultySQS{SQSAPI: c, fail: map[string]int{
		body(3): -1, body(17): -1, body(29): -1, // always refused
		body(5): 1, body(6): 2, // refused once, twice: retried
	}}
	res, err := MoveDLQ(testkit.Context(t), faulty, DLQOptions{From: q.DLQURL, To: q.URL, Concurrency: 2, Visibility: 2 * time.Second, Wait: time.Second})
	require.NoError(t, err)
	require.Equal(t, n, res.Received)
	require.Equal(t, n-3, res.Sent)
	require.Equal(t, n-3, res.Deleted)
	require.Equal(t, 3, res.SendFailed)
	require.Len(t, res.Failures, 3)
	require.Contains(t, res.Failures[0], "InternalError: injected")

	moved, _ := testkit.DrainQueue(t, c, q.URL)
	require.Equal(t, n-3, len(moved))
	require.Contains(t, moved, body(5))
	require.Contains(t, moved, body(6))
	// The refused ones are still in the DLQ once their visibility ends.
	time.Sleep(2500 * time.Millisecond)
	left, _ := testkit.DrainQueue(t, c, q.DLQURL)
	require.Equal(t, 3, len(left))
	for _, i := range []int{3, 17, 29} {
		require.Contains(t, left, body(i))
		requireSameAttrs(t, i, left[body(i)])
	}
}

// TestMoveDLQCancelled: a stop while batches are in flight loses nothing: every message is in one
// queue or the other once the visibility has passed.
func TestMoveDLQCancelled(t *testing.T) {
	t.Parallel()
	c, q := kumoQueues(t)
	const n = 200
	fill(t, c, q.DLQURL, 0, n)
	ctx, cancel := context.WithCancel(testkit.Context(t))
	progress := &stopAfter{at: 60, cancel: cancel}
	res, err := MoveDLQ(ctx, c, DLQOptions{From: q.DLQURL, To: q.URL, Rate: 200, Concurrency: 2, Visibility: 2 * time.Second, Wait: time.Second, Progress: progress})
	require.NoError(t, err)
	require.Less(t, res.Sent, n, "stopped early")
	require.Equal(t, res.Sent, res.Deleted, "batches in flight were finished")
	time.Sleep(2500 * time.Millisecond)
	moved, _ := testkit.DrainQueue(t, c, q.URL)
	left, _ := testkit.DrainQueue(t, c, q.DLQURL)
	require.Equal(t, res.Sent, len(moved))
	require.Equal(t, n, len(moved)+len(left))
}

type stopAfter struct {
	n      atomic.Int64
	at     int64
	cancel func()
}

func (s *stopAfter) Add(n int) {
	if s.n.Add(int64(n)) >= s.at {
		s.cancel()
	}
}

// TestDryRunDLQ: counts and samples without sending or deleting; messages are visible again.
func TestDryRunDLQ(t *testing.T) {
	t.Parallel()
	c, q := kumoQueues(t)
	const n = 35
	fill(t, c, q.DLQURL, 0, n)
	res, err := DryRunDLQ(testkit.Context(t), c, DLQOptions{From: q.DLQURL, To: q.URL, Concurrency: 3, Samples: 4, Wait: time.Second})
	require.NoError(t, err)
	require.Equal(t, n, res.Messages)
	require.Equal(t, n, res.Returned)
	require.Len(t, res.Samples, 4)
	var bytes int64
	for i := range n {
		bytes += int64(len(body(i)))
	}
	require.Equal(t, bytes, res.Bytes)
	require.Equal(t, []string{"blob", "idx", "origin"}, res.Samples[0].Attributes)
	require.Contains(t, res.Samples[0].Body, `"Records"`)

	// Nothing moved; everything is back in the DLQ at once (visibility 0, not after 30s).
	moved, _ := testkit.DrainQueue(t, c, q.URL)
	require.Empty(t, moved)
	left, _ := testkit.DrainQueue(t, c, q.DLQURL)
	require.Equal(t, n, len(left))

	// With --max.
	fill(t, c, q.DLQURL, 100, 20)
	res, err = DryRunDLQ(testkit.Context(t), c, DLQOptions{From: q.DLQURL, Max: 7, Wait: time.Second})
	require.NoError(t, err)
	require.Equal(t, 7, res.Messages)
	left, _ = testkit.DrainQueue(t, c, q.DLQURL)
	require.Equal(t, 20, len(left))
}

// TestMoveNativeUnsupported: kumo has no StartMessageMoveTask; the error says so.
func TestMoveNativeUnsupported(t *testing.T) {
	t.Parallel()
	c, q := kumoQueues(t)
	_, err := MoveNative(testkit.Context(t), c, DLQOptions{From: q.DLQURL, To: q.URL}, time.Second)
	require.ErrorIs(t, err, ErrNativeUnsupported)
	_, err = MoveNative(testkit.Context(t), c, DLQOptions{From: q.DLQURL, To: q.URL, Max: 3}, time.Second)
	require.ErrorContains(t, err, "--max is not supported")
}

func TestDLQOptionsValidate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		o    DLQOptions
		want string
	}{
		{"no source", DLQOptions{To: "u"}, "source queue: required"},
		{"no target", DLQOptions{From: "u"}, "target queue: required"},
		{"same", DLQOptions{From: "u", To: "u"}, "same queue"},
		{"negative max", DLQOptions{From: "a", To: "b", Max: -1}, "max"},
		{"concurrency", DLQOptions{From: "a", To: "b", Concurrency: 65}, "concurrency"},
		{"visibility", DLQOptions{From: "a", To: "b", Visibility: 13 * time.Hour}, "visibility"},
		{"wait", DLQOptions{From: "a", To: "b", Wait: 21 * time.Second}, "wait"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := MoveDLQ(context.Background(), nil, tc.o)
			require.ErrorContains(t, err, tc.want)
		})
	}
}

func TestParseRate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		want float64
		err  bool
	}{
		{"", 0, false}, {"0", 0, false}, {"200", 200, false}, {"200/s", 200, false}, {" 50 / s ", 50, false},
		{"6000/m", 100, false}, {"3600/h", 1, false}, {"0.5/s", 0.5, false},
		{"-1", 0, true}, {"abc", 0, true}, {"10/d", 0, true}, {"NaN", 0, true}, {"Inf", 0, true},
	} {
		got, err := ParseRate(tc.in)
		if tc.err {
			require.Error(t, err, tc.in)
			continue
		}
		require.NoError(t, err, tc.in)
		require.InDelta(t, tc.want, got, 1e-9, tc.in)
	}
}

func TestCut(t *testing.T) {
	t.Parallel()
	require.Equal(t, "abc", cut("abc", 3))
	require.Equal(t, "ab…", cut("abc", 2))
	require.Equal(t, "a…", cut("aé", 2), "never splits a UTF-8 sequence")
}

// TestSendEntryFIFO: a FIFO target gets the message group id and a deduplication id of the run and
// the message: the same for a send retried within a run, another in the next run, and never the
// original deduplication id, which SQS would still hold (for five minutes) when a message moved
// back, failed again and was replayed: accepted as a duplicate, not delivered, deleted from the
// dead-letter queue.
func TestSendEntryFIFO(t *testing.T) {
	t.Parallel()
	msg := fifoMessage("m-1", map[string]string{"MessageGroupId": "g", "MessageDeduplicationId": "d"})
	e := sendEntry("0", msg, true, "run1")
	require.Equal(t, "g", aws.ToString(e.MessageGroupId))
	require.Equal(t, "run1:m-1", aws.ToString(e.MessageDeduplicationId))
	require.Equal(t, aws.ToString(e.MessageDeduplicationId), aws.ToString(sendEntry("3", msg, true, "run1").MessageDeduplicationId),
		"stable within a run")
	require.NotEqual(t, aws.ToString(e.MessageDeduplicationId), aws.ToString(sendEntry("0", msg, true, "run2").MessageDeduplicationId),
		"another run, another deduplication id")
	e = sendEntry("0", fifoMessage("m-2", nil), true, "run1")
	require.Equal(t, "intake-replay", aws.ToString(e.MessageGroupId))
	require.Equal(t, "run1:m-2", aws.ToString(e.MessageDeduplicationId))
	e = sendEntry("0", msg, false, "run1")
	require.Nil(t, e.MessageGroupId)
	require.Nil(t, e.MessageDeduplicationId)
	require.NotEqual(t, newRunID(), newRunID())
}

// TestRetryBatchKeepsEarlierFailures: an entry refused by the sender's fault on the first attempt
// stays among the failures when a later attempt retries (and sends) the others.
func TestRetryBatchKeepsEarlierFailures(t *testing.T) {
	t.Parallel()
	calls := 0
	call := func(_ context.Context, entries []string) ([]string, []types.BatchResultErrorEntry, error) {
		calls++
		if calls == 1 {
			return nil, []types.BatchResultErrorEntry{
				{Id: aws.String("a"), Code: aws.String("InvalidMessageContents"), SenderFault: true},
				{Id: aws.String("b"), Code: aws.String("InternalError")},
			}, nil
		}
		require.Equal(t, []string{"b"}, entries, "only the server-side failure is retried")
		return []string{"b"}, nil, nil
	}
	ok, failed, err := retryBatch(context.Background(), []string{"a", "b"}, func(s string) string { return s }, call, 3, slog.New(slog.DiscardHandler), "test batch")
	require.NoError(t, err)
	require.Equal(t, []string{"b"}, ok)
	require.Len(t, failed, 1)
	require.Equal(t, "a", failed[0].ID)
	require.Equal(t, 2, calls)
}

// TestRetryBatchKeepsFailuresWhenTheLastCallFails: an entry refused by the sender's fault on the
// first attempt stays among the failures when the later attempts fail as whole calls (the error is
// returned with it), or when a whole call fails as ctx ends.
func TestRetryBatchKeepsFailuresWhenTheLastCallFails(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		cancel bool // cancel ctx in the second call: no retry then
	}{{"no attempt left", false}, {"ctx ended", true}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			calls := 0
			call := func(_ context.Context, entries []string) ([]string, []types.BatchResultErrorEntry, error) {
				calls++
				if calls == 1 {
					return []string{"c"}, []types.BatchResultErrorEntry{
						{Id: aws.String("a"), Code: aws.String("InvalidMessageContents"), SenderFault: true},
						{Id: aws.String("b"), Code: aws.String("InternalError")},
					}, nil
				}
				require.Equal(t, []string{"b"}, entries)
				if tc.cancel {
					cancel()
				}
				return nil, nil, errors.New("connection reset")
			}
			ok, failed, err := retryBatch(ctx, []string{"a", "b", "c"}, func(s string) string { return s }, call, 3, slog.New(slog.DiscardHandler), "test batch")
			require.ErrorContains(t, err, "connection reset")
			require.Equal(t, []string{"c"}, ok)
			require.Len(t, failed, 1, "a's refusal is kept; b is neither done nor failed: not done")
			require.Equal(t, "a", failed[0].ID)
			require.Equal(t, "InvalidMessageContents", failed[0].Code)
		})
	}
}

// TestDLQWait: a receive's wait must be a whole number of seconds in 1s..20s: WaitTimeSeconds 0 is
// a short poll, which on SQS may come back empty while messages are there, and an empty receive
// ends the replay. 0 in DLQOptions is the default (2s).
func TestDLQWait(t *testing.T) {
	t.Parallel()
	for _, w := range []time.Duration{-time.Second, 500 * time.Millisecond, 999 * time.Millisecond, 1500 * time.Millisecond, 21 * time.Second} {
		err := DLQOptions{From: "a", To: "b", Wait: w}.validate(true)
		require.ErrorContains(t, err, "wait: "+w.String()+" is not a whole number of seconds in 1s..20s")
		_, err = DryRunDLQ(context.Background(), nil, DLQOptions{From: "a", Wait: w})
		require.ErrorContains(t, err, "wait:", "the dry run too")
	}
	for _, w := range []time.Duration{0, time.Second, 20 * time.Second} {
		require.NoError(t, DLQOptions{From: "a", To: "b", Wait: w}.validate(true), w)
	}
	in := receiveInput("u", 10, time.Minute, DLQOptions{}.withDefaults(time.Minute).Wait)
	require.EqualValues(t, 2, in.WaitTimeSeconds, "0 is the default, a long poll")
}

// fifoDedupSQS adds to received messages the system attributes SQS returns for a FIFO queue and
// kumo does not: their MessageGroupId and MessageDeduplicationId (dedup maps a body to the id it
// was sent with).
type fifoDedupSQS struct {
	SQSAPI
	dedup map[string]string
}

func (f *fifoDedupSQS) ReceiveMessage(ctx context.Context, in *sqs.ReceiveMessageInput, opts ...func(*sqs.Options)) (*sqs.ReceiveMessageOutput, error) {
	out, err := f.SQSAPI.ReceiveMessage(ctx, in, opts...)
	if err != nil {
		return nil, err
	}
	for i, m := range out.Messages {
		if d, ok := f.dedup[aws.ToString(m.Body)]; ok {
			attrs := maps.Clone(m.Attributes)
			if attrs == nil {
				attrs = map[string]string{}
			}
			attrs[string(types.MessageSystemAttributeNameMessageGroupId)] = "g"
			attrs[string(types.MessageSystemAttributeNameMessageDeduplicationId)] = d
			out.Messages[i].Attributes = attrs
		}
	}
	return out, nil
}

// fifoQueue creates a FIFO queue (removed when the test ends) and returns its URL.
func fifoQueue(t *testing.T, c *sqs.Client) string {
	t.Helper()
	out, err := c.CreateQueue(context.Background(), &sqs.CreateQueueInput{
		QueueName:  aws.String(testkit.Name("t-") + ".fifo"),
		Attributes: map[string]string{string(types.QueueAttributeNameFifoQueue): "true"},
	})
	require.NoError(t, err)
	t.Cleanup(func() { _, _ = c.DeleteQueue(context.Background(), &sqs.DeleteQueueInput{QueueUrl: out.QueueUrl}) })
	return aws.ToString(out.QueueUrl)
}

// TestMoveDLQFIFOReplayedAgain: a message moved to a FIFO queue, dead-lettered again with its
// deduplication id (as SQS's redrive keeps it) and replayed again within five minutes is delivered
// again, not accepted as a duplicate of the first move and deleted from the dead-letter queue.
// (kumo deduplicates only while the first copy is still in the queue, SQS for five minutes
// whatever became of it: the first copy stays in the queue here.)
func TestMoveDLQFIFOReplayedAgain(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("needs kumo")
	}
	c := testSQS()
	target, dlq := fifoQueue(t, c), fifoQueue(t, c)
	ctx := testkit.Context(t)
	deadLetter := func() {
		_, err := c.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: aws.String(dlq), MessageBody: aws.String(body(1)),
			MessageGroupId: aws.String("g"), MessageDeduplicationId: aws.String("original")})
		require.NoError(t, err)
	}
	src := &fifoDedupSQS{SQSAPI: c, dedup: map[string]string{body(1): "original"}}
	for run := 1; run <= 2; run++ {
		deadLetter()
		res, err := MoveDLQ(ctx, src, DLQOptions{From: dlq, To: target, Wait: time.Second})
		require.NoError(t, err)
		require.Equal(t, 1, res.Sent, "run %d", run)
		require.Equal(t, 1, res.Deleted, "run %d", run)
	}
	_, total := testkit.DrainQueue(t, c, target)
	require.Equal(t, 2, total, "each run delivered its message")
}

// redeliveringSQS is faultySQS whose deletes can fail too: the entries of a message whose body is
// in failDelete are refused (counting down per entry; -1 for ever). It counts how often each body
// was received.
type redeliveringSQS struct {
	*faultySQS
	failDelete map[string]int
	// pick, when set, chooses the faulty messages from the first batch received instead of by
	// body: its first message is never sent, its second's first delete (3 attempts) fails. SQS
	// does not promise an order, and a message chosen by body that happens to come in the last
	// batch is never received again before the run ends.
	pick              bool
	unsent, undeleted string

	mu       sync.Mutex
	bodies   map[string]string // receipt handle -> body
	receipts map[string]int    // body -> receipts
}

func (r *redeliveringSQS) ReceiveMessage(ctx context.Context, in *sqs.ReceiveMessageInput, opts ...func(*sqs.Options)) (*sqs.ReceiveMessageOutput, error) {
	out, err := r.faultySQS.ReceiveMessage(ctx, in, opts...)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.pick && r.unsent == "" && len(out.Messages) >= 2 {
		r.unsent, r.undeleted = aws.ToString(out.Messages[0].Body), aws.ToString(out.Messages[1].Body)
		r.faultySQS.mu.Lock()
		r.faultySQS.fail[r.unsent] = -1
		r.faultySQS.mu.Unlock()
		r.failDelete[r.undeleted] = 3
	}
	for _, m := range out.Messages {
		r.bodies[aws.ToString(m.ReceiptHandle)] = aws.ToString(m.Body)
		r.receipts[aws.ToString(m.Body)]++
	}
	return out, nil
}

func (r *redeliveringSQS) DeleteMessageBatch(ctx context.Context, in *sqs.DeleteMessageBatchInput, opts ...func(*sqs.Options)) (*sqs.DeleteMessageBatchOutput, error) {
	r.mu.Lock()
	var pass []types.DeleteMessageBatchRequestEntry
	var failed []types.BatchResultErrorEntry
	for _, e := range in.Entries {
		b := r.bodies[aws.ToString(e.ReceiptHandle)]
		if n := r.failDelete[b]; n != 0 {
			if n > 0 {
				r.failDelete[b] = n - 1
			}
			failed = append(failed, types.BatchResultErrorEntry{Id: e.Id, Code: aws.String("InternalError"), Message: aws.String("injected")})
			continue
		}
		pass = append(pass, e)
	}
	r.mu.Unlock()
	out := &sqs.DeleteMessageBatchOutput{}
	if len(pass) > 0 {
		cp := *in
		cp.Entries = pass
		real, err := r.faultySQS.DeleteMessageBatch(ctx, &cp, opts...)
		if err != nil {
			return nil, err
		}
		out = real
	}
	out.Failed = append(out.Failed, failed...)
	return out, nil
}

// TestMoveDLQReceivedAgain: a message whose send failed, or whose delete failed, reappears in the
// dead-letter queue after the visibility timeout while the move still runs, and is received
// again. It is the same message: counted once (received, send_failed), not sent again (a message
// already sent is deleted with its new receipt handle), and it does not take the place of another
// message present at the start, which would then be left. Before, each receipt counted as a new
// message and the sent one went to the queue twice.
func TestMoveDLQReceivedAgain(t *testing.T) {
	t.Parallel()
	c, q := kumoQueues(t)
	const n = 50
	fill(t, c, q.DLQURL, 0, n)
	r := &redeliveringSQS{
		faultySQS:  &faultySQS{SQSAPI: c, fail: map[string]int{}},
		failDelete: map[string]int{},
		pick:       true, // the first two messages received: one never sent, one whose first delete fails
		bodies:     map[string]string{}, receipts: map[string]int{},
	}
	// Batches of ten a second, messages hidden for one: the two, from the first batch, come back
	// while the four batches after it are received.
	res, err := MoveDLQ(testkit.Context(t), r, DLQOptions{From: q.DLQURL, To: q.URL, Concurrency: 1, Rate: 10, Visibility: time.Second, Wait: time.Second})
	require.NoError(t, err)
	r.mu.Lock()
	unsent, undeleted := r.unsent, r.undeleted
	againUnsent, againUndeleted := r.receipts[unsent], r.receipts[undeleted]
	r.mu.Unlock()
	require.NotEmpty(t, unsent, "the first batch held two messages")
	t.Logf("%+v; %s (unsent) received %d times, %s (undeleted) %d times", res, unsent, againUnsent, undeleted, againUndeleted)
	require.GreaterOrEqual(t, againUnsent, 2, "the unsent message was received again")
	require.GreaterOrEqual(t, againUndeleted, 2, "the undeleted message was received again")
	require.Equal(t, n, res.Received, "distinct messages")
	require.Equal(t, n-1, res.Sent)
	require.Equal(t, 1, res.SendFailed)
	require.Equal(t, n-1, res.Deleted, "the undeleted one was deleted when received again")
	require.Zero(t, res.DeleteFailed)
	require.Zero(t, res.Skipped)
	require.False(t, res.SkipLimit)

	moved, total := testkit.DrainQueue(t, c, q.URL)
	require.Equal(t, n-1, total, "nothing sent twice")
	require.Len(t, moved, n-1, "every message present at the start moved, but the one refused")
	require.NotContains(t, moved, unsent)
	require.Contains(t, moved, undeleted)
	left, _ := testkit.DrainQueue(t, c, q.DLQURL)
	require.Len(t, left, 1)
	require.Contains(t, left, unsent)
}

// refusingVisibility is the real SQS client whose ChangeMessageVisibilityBatch refuses the first
// entry of every call (it never reaches the server; InternalError, not a handle no longer current:
// see TestDryRunDLQOutlastsVisibility) and passes the others on.
type refusingVisibility struct{ SQSAPI }

func (r refusingVisibility) ChangeMessageVisibilityBatch(ctx context.Context, in *sqs.ChangeMessageVisibilityBatchInput, opts ...func(*sqs.Options)) (*sqs.ChangeMessageVisibilityBatchOutput, error) {
	cp := *in
	cp.Entries = in.Entries[1:]
	out := &sqs.ChangeMessageVisibilityBatchOutput{}
	if len(cp.Entries) > 0 {
		real, err := r.SQSAPI.ChangeMessageVisibilityBatch(ctx, &cp, opts...)
		if err != nil {
			return nil, err
		}
		out = real
	}
	out.Failed = append(out.Failed, types.BatchResultErrorEntry{Id: in.Entries[0].Id, Code: aws.String("InternalError"), Message: aws.String("injected")})
	return out, nil
}

// TestDryRunDLQGiveBack: a dry run holds messages at most MaxDryRunVisibility (should giving them
// back fail, they stay hidden that long; --dry-run --visibility 2h held them two hours), and a
// message the queue refuses to make visible again is reported (NotReturned, and an error), not
// silently counted as held. Before, the refusals of ChangeMessageVisibilityBatch were ignored.
func TestDryRunDLQGiveBack(t *testing.T) {
	t.Parallel()
	c, q := kumoQueues(t)
	const n = 5
	fill(t, c, q.DLQURL, 0, n)

	_, err := DryRunDLQ(testkit.Context(t), c, DLQOptions{From: q.DLQURL, Wait: time.Second, Visibility: 2 * time.Hour})
	require.ErrorContains(t, err, "visibility: 2h0m0s is more than a dry run's 1m0s")
	counts, err := Counts(testkit.Context(t), c, q.DLQURL)
	require.NoError(t, err)
	require.Equal(t, n, counts.Visible, "refused before receiving anything")

	res, err := DryRunDLQ(testkit.Context(t), refusingVisibility{c}, DLQOptions{From: q.DLQURL, Wait: time.Second, Visibility: 2 * time.Second})
	require.ErrorContains(t, err, "1 of 5 messages refused (InternalError: injected)")
	require.Equal(t, n, res.Messages)
	require.Equal(t, n-1, res.Returned)
	require.Equal(t, 1, res.NotReturned)
}

// outlastedSend is the real SQS client on which the send of the first batch received (one
// message: SQS may return fewer than asked) outlasts the message's visibility, which another worker
// receives again meanwhile. The answer to that first receive is slow (it arrives a visibility
// after SQS hid the message, as over a slow network), so that the batch's deadline, counted from
// that answer, is still ahead when the visibility ends; its send waits until the message was
// received again; the other receives wait until that send started and the visibility ended (kumo
// returns a message whose visibility ended only to a receive made after that: its long poll is not
// woken by it).
type outlastedSend struct {
	SQSAPI
	visibility time.Duration

	mu      sync.Mutex
	claimed bool          // the first receive is under way
	first   string        // the body of the message it received
	firstAt time.Time     // when SQS answered it
	sending chan struct{} // closed when its send started
	again   chan struct{} // closed when it was received again
	once    [2]sync.Once
}

func newOutlastedSend(c SQSAPI, visibility time.Duration) *outlastedSend {
	return &outlastedSend{SQSAPI: c, visibility: visibility, sending: make(chan struct{}), again: make(chan struct{})}
}

func (o *outlastedSend) ReceiveMessage(ctx context.Context, in *sqs.ReceiveMessageInput, opts ...func(*sqs.Options)) (*sqs.ReceiveMessageOutput, error) {
	o.mu.Lock()
	first := !o.claimed
	o.claimed = true
	o.mu.Unlock()
	if first {
		cp := *in
		cp.MaxNumberOfMessages = 1
		out, err := o.SQSAPI.ReceiveMessage(ctx, &cp, opts...)
		if err != nil || len(out.Messages) == 0 {
			return out, fmt.Errorf("the first receive brought nothing: %w", err)
		}
		o.mu.Lock()
		o.first, o.firstAt = aws.ToString(out.Messages[0].Body), time.Now()
		o.mu.Unlock()
		time.Sleep(o.visibility) // the slow answer (the scenario, not a synchronisation)
		return out, nil
	}
	select {
	case <-o.again:
	case <-o.sending:
		o.mu.Lock()
		until := o.firstAt.Add(o.visibility + 100*time.Millisecond)
		o.mu.Unlock()
		time.Sleep(time.Until(until)) // SQS's visibility timer: nothing to wait on
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	out, err := o.SQSAPI.ReceiveMessage(ctx, in, opts...)
	if err != nil {
		return nil, err
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, m := range out.Messages {
		if aws.ToString(m.Body) == o.first {
			o.once[1].Do(func() { close(o.again) })
		}
	}
	return out, nil
}

func (o *outlastedSend) SendMessageBatch(ctx context.Context, in *sqs.SendMessageBatchInput, opts ...func(*sqs.Options)) (*sqs.SendMessageBatchOutput, error) {
	o.mu.Lock()
	first := o.first
	o.mu.Unlock()
	for _, e := range in.Entries {
		if aws.ToString(e.MessageBody) == first {
			o.once[0].Do(func() { close(o.sending) })
			select {
			case <-o.again:
			case <-ctx.Done(): // the batch's deadline: the test fails
				return nil, ctx.Err()
			}
		}
	}
	return o.SQSAPI.SendMessageBatch(ctx, in, opts...)
}

// TestMoveDLQBatchOutlastsVisibility: a batch whose send outlasts the visibility SQS gave it (its
// receive's answer was slow, its send too) is received again by another worker, which holds it, as
// its move is under way. When the send succeeds, the message is deleted with the newest receipt
// handle, and is no longer held: it leaves the dead-letter queue. Before, the delete used the first receipt handle, which SQS answers with
// success without deleting (kumo refuses it): the message stayed in the dead-letter queue, was
// made visible again at the end, and the next run sent it again.
func TestMoveDLQBatchOutlastsVisibility(t *testing.T) {
	t.Parallel()
	c, q := kumoQueues(t)
	const n = 11 // the workers reserve ten and one
	fill(t, c, q.DLQURL, 0, n)
	o := newOutlastedSend(c, time.Second)
	res, err := MoveDLQ(testkit.Context(t), o, DLQOptions{From: q.DLQURL, To: q.URL, Concurrency: 2, Visibility: time.Second, Wait: time.Second})
	require.NoError(t, err)
	t.Logf("%+v", res)
	select {
	case <-o.again:
	default:
		t.Fatal("the first batch was not received again while it was sent")
	}
	require.Equal(t, n, res.Received)
	require.Equal(t, n, res.Sent)
	require.Equal(t, n, res.Deleted)
	require.Zero(t, res.DeleteFailed)
	require.Zero(t, res.SendFailed)
	require.Zero(t, res.Unaccounted)

	moved, total := testkit.DrainQueue(t, c, q.URL)
	require.Len(t, moved, n)
	require.Equal(t, n, total, "each sent once")
	left, _ := testkit.DrainQueue(t, c, q.DLQURL)
	require.Empty(t, left, "every message sent left the dead-letter queue")
}

// TestDryRunDLQSamples: --samples 0 keeps no body (it kept five).
func TestDryRunDLQSamples(t *testing.T) {
	t.Parallel()
	c, q := kumoQueues(t)
	fill(t, c, q.DLQURL, 0, 8)
	for _, samples := range []int{0, 3} {
		res, err := DryRunDLQ(testkit.Context(t), c, DLQOptions{From: q.DLQURL, Wait: time.Second, Samples: samples})
		require.NoError(t, err)
		require.Equal(t, 8, res.Messages)
		require.Len(t, res.Samples, samples)
	}
}

// peekAll is another reader of the dead-letter queue: it receives every message of url (waiting
// for those another reader holds to be visible again), then gives them back at once.
func peekAll(ctx context.Context, c *sqs.Client, url string, n int) error {
	seen := map[string]bool{}
	deadline := time.Now().Add(20 * time.Second)
	for len(seen) < n {
		if time.Now().After(deadline) {
			return fmt.Errorf("peek: %d of %d messages received", len(seen), n)
		}
		out, err := c.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: aws.String(url), MaxNumberOfMessages: 10, WaitTimeSeconds: 1, VisibilityTimeout: 30})
		if err != nil {
			return fmt.Errorf("peek: %w", err)
		}
		for _, m := range out.Messages {
			seen[aws.ToString(m.MessageId)] = true
			if _, err := c.ChangeMessageVisibility(ctx, &sqs.ChangeMessageVisibilityInput{QueueUrl: aws.String(url), ReceiptHandle: m.ReceiptHandle}); err != nil {
				return fmt.Errorf("peek: give back: %w", err)
			}
		}
	}
	return nil
}

// lateGiveBack is the real SQS client whose ChangeMessageVisibilityBatch (the dry run's give-back)
// comes after the dry run's visibility ended, and after another reader received the messages and
// gave them back: the dry run's receipt handles are no longer current.
type lateGiveBack struct {
	*sqs.Client
	url string
	n   int
	err error
}

func (l *lateGiveBack) ChangeMessageVisibilityBatch(ctx context.Context, in *sqs.ChangeMessageVisibilityBatchInput, opts ...func(*sqs.Options)) (*sqs.ChangeMessageVisibilityBatchOutput, error) {
	if l.err = peekAll(ctx, l.Client, l.url, l.n); l.err != nil {
		return nil, l.err
	}
	return l.Client.ChangeMessageVisibilityBatch(ctx, in, opts...)
}

// TestDryRunDLQOutlastsVisibility: a dry run that gives its messages back after its visibility
// ended finds its receipt handles refused (kumo: ReceiptHandleIsInvalid, once another receive
// took them; SQS also answers MessageNotInflight, or that the handle expired). The messages are no
// longer held by the dry run: counted as returned (Expired), not as not returned, and no error.
// Before, they were reported not returned and the dry run exited 1 although they were visible.
func TestDryRunDLQOutlastsVisibility(t *testing.T) {
	t.Parallel()
	c, q := kumoQueues(t)
	const n = 5
	fill(t, c, q.DLQURL, 0, n)
	l := &lateGiveBack{Client: c, url: q.DLQURL, n: n}
	res, err := DryRunDLQ(testkit.Context(t), l, DLQOptions{From: q.DLQURL, Wait: time.Second, Visibility: time.Second})
	require.NoError(t, l.err)
	require.NoError(t, err)
	require.Equal(t, n, res.Messages)
	require.Equal(t, n, res.Returned)
	require.Equal(t, n, res.Expired)
	require.Zero(t, res.NotReturned)
	left, _ := testkit.DrainQueue(t, c, q.DLQURL)
	require.Len(t, left, n, "visible")
}

// TestExpiredHandle: the refusals of ChangeMessageVisibility that say the receipt handle is no
// longer current, as SQS words them.
func TestExpiredHandle(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		code, message string
		want          bool
	}{
		{"AWS.SimpleQueueService.MessageNotInflight", "Message does not exist or is not available for visibility timeout change.", true},
		{"MessageNotInflight", "", true},
		{"ReceiptHandleIsInvalid", "The input receipt handle is invalid.", true},
		{"InvalidParameterValue", "Value AQEB… for parameter ReceiptHandle is invalid. Reason: The receipt handle has expired.", true},
		{"InvalidParameterValue", "Value 50000 for parameter VisibilityTimeout is invalid.", false},
		{"InternalError", "", false},
		{"AccessDenied", "", false},
	} {
		require.Equal(t, tc.want, expiredHandle(tc.code, tc.message), "%s: %s", tc.code, tc.message)
	}
}
