package replay

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/intakehq/intake/internal/store/dbq"
	"github.com/intakehq/intake/internal/testkit"
)

// collect runs src and returns what it emitted.
func collect(t *testing.T, src Source) []Body {
	t.Helper()
	var got []Body
	require.NoError(t, src(context.Background(), func(b Body) error { got = append(got, b); return nil }))
	return got
}

func TestFileSource(t *testing.T) {
	t.Parallel()
	long := `{"Records":[{"x":"` + strings.Repeat("a", 300*1024) + `"}]}`
	in := strings.Join([]string{
		`{"Records":[{"eventName":"ObjectCreated:Put"}]}`,
		``,
		`   `,
		`"{\"Records\":[]}"`,
		`"not closed`,
		`""`,
		long,
		`{"last":true}`, // no newline at the end
	}, "\n")
	got := collect(t, FileSource(strings.NewReader(in)))
	require.Len(t, got, 6)
	require.Equal(t, Body{Text: `{"Records":[{"eventName":"ObjectCreated:Put"}]}`, Ref: "line 1"}, got[0])
	require.Equal(t, Body{Text: `{"Records":[]}`, Ref: "line 4"}, got[1], "a JSON string line is unquoted")
	require.Equal(t, "line 5", got[2].Ref)
	require.ErrorContains(t, got[2].Err, "not a valid JSON string")
	require.ErrorContains(t, got[3].Err, "empty body")
	require.Equal(t, long, got[4].Text, "lines longer than any buffer are read whole")
	require.Equal(t, Body{Text: `{"last":true}`, Ref: "line 8"}, got[5])
}

// TestResendFile: bodies of a file land in the queue, batched; unusable lines are counted.
func TestResendFile(t *testing.T) {
	t.Parallel()
	c, q := kumoQueues(t)
	var lines []string
	for i := range 53 {
		lines = append(lines, body(i))
	}
	lines = append(lines, `"broken`)
	progress := &countAdds{}
	res, err := Resend(testkit.Context(t), c, FileSource(strings.NewReader(strings.Join(lines, "\n")+"\n")),
		ResendOptions{To: q.URL, Rate: 500, Concurrency: 3, Progress: progress})
	require.NoError(t, err)
	require.Equal(t, ResendResult{Read: 54, Sent: 53, Failed: 1, Failures: res.Failures}, res)
	require.Len(t, res.Failures, 1)
	require.Contains(t, res.Failures[0], "line 54: not a valid JSON string")
	require.EqualValues(t, 53, progress.n.Load())
	got, total := testkit.DrainQueue(t, c, q.URL)
	require.Equal(t, 53, total)
	for i := range 53 {
		require.Contains(t, got, body(i))
	}

	// Dry run: nothing sent.
	res, err = Resend(testkit.Context(t), nil, FileSource(strings.NewReader(strings.Join(lines, "\n"))), ResendOptions{DryRun: true})
	require.NoError(t, err)
	require.Equal(t, 54, res.Read)
	require.Zero(t, res.Sent)
	require.Equal(t, 1, res.Failed)
	got, _ = testkit.DrainQueue(t, c, q.URL)
	require.Empty(t, got)
}

// TestResendSendFailures: bodies the queue refuses are counted with their line, the rest sent.
func TestResendSendFailures(t *testing.T) {
	t.Parallel()
	c, q := kumoQueues(t)
	faulty := &faultySQS{SQSAPI: c, fail: map[string]int{body(2): -1, body(7): 1}}
	var lines []string
	for i := range 12 {
		lines = append(lines, body(i))
	}
	res, err := Resend(testkit.Context(t), faulty, FileSource(strings.NewReader(strings.Join(lines, "\n"))), ResendOptions{To: q.URL, Concurrency: 1})
	require.NoError(t, err)
	require.Equal(t, 12, res.Read)
	require.Equal(t, 11, res.Sent)
	require.Equal(t, 1, res.Failed)
	require.Equal(t, []string{"line 3: InternalError: injected"}, res.Failures)
	got, _ := testkit.DrainQueue(t, c, q.URL)
	require.Len(t, got, 11)
	require.NotContains(t, got, body(2))
	require.Contains(t, got, body(7), "a transient refusal is retried")
}

// TestResendArchive: the events table's bodies, filtered by time, key prefix and outcome, with
// repeated deliveries of one message sent once.
func TestResendArchive(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("needs PostgreSQL and kumo")
	}
	st := testkit.DB(t)
	ctx := testkit.Context(t)
	base := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	type ev struct {
		msg     string
		at      time.Duration
		key     *string
		outcome string
		body    string
	}
	k := func(s string) *string { return &s }
	events := []ev{
		{"m1", 0, k("a/1"), "created:valid", "b1"},
		{"m2", time.Minute, k("a/2"), "created:rejected", "b2"},
		{"m2", 2 * time.Minute, k("a/2"), "created:rejected", "b2"}, // redelivery
		{"m3", 3 * time.Minute, k("b/3"), "created:valid", "b3"},
		{"m4", 4 * time.Minute, nil, "test_event", "b4"},
		{"m5", -time.Minute, k("a/5"), "created:valid", "b5"},     // before since
		{"m6", 10 * time.Minute, k("a/6"), "created:valid", "b6"}, // at until: excluded
	}
	for _, e := range events {
		_, err := st.Pool.Exec(ctx, `INSERT INTO events (message_id, received_at, key, outcome, body) VALUES ($1, $2, $3, $4, $5)`,
			e.msg, base.Add(e.at), e.key, e.outcome, e.body)
		require.NoError(t, err)
	}
	c := testSQS()
	for _, tc := range []struct {
		name string
		f    ArchiveFilter
		want []string
		skip int
	}{
		{"window", ArchiveFilter{Since: base, Until: base.Add(10 * time.Minute), PageSize: 2}, []string{"b1", "b2", "b3", "b4"}, 1},
		{"no end", ArchiveFilter{Since: base}, []string{"b1", "b2", "b3", "b4", "b6"}, 1},
		{"prefix", ArchiveFilter{Since: base, Until: base.Add(10 * time.Minute), KeyPrefix: "a/"}, []string{"b1", "b2"}, 1},
		{"outcome", ArchiveFilter{Since: base.Add(-time.Hour), Outcome: "created:valid"}, []string{"b1", "b3", "b5", "b6"}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			q := testkit.Queue(t, c, 3, 30*time.Second)
			res, err := Resend(ctx, c, ArchiveSource(st.Q, tc.f), ResendOptions{To: q.URL})
			require.NoError(t, err)
			require.Equal(t, len(tc.want), res.Sent)
			require.Equal(t, tc.skip, res.Skipped)
			got, total := testkit.DrainQueue(t, c, q.URL)
			require.Equal(t, len(tc.want), total)
			for _, b := range tc.want {
				require.Contains(t, got, b)
			}
		})
	}
}

// archiving is the events table's real queries, with a consumer archiving one more body (a new
// message id, received now) after every page read: the replay's own messages coming back.
type archiving struct {
	EventLister
	t    *testing.T
	pool interface {
		Exec(context.Context, string, ...any) (pgconn.CommandTag, error)
	}
	added int
}

func (a *archiving) OpsListEvents(ctx context.Context, arg dbq.OpsListEventsParams) ([]dbq.OpsListEventsRow, error) {
	rows, err := a.EventLister.OpsListEvents(ctx, arg)
	if a.added < 50 { // bounded, so that a replay that chases them fails instead of hanging
		a.added++
		_, ierr := a.pool.Exec(ctx, `INSERT INTO events (message_id, key, outcome, body) VALUES ($1, 'a/x', 'created:valid', $2)`,
			fmt.Sprintf("resent-%d", a.added), fmt.Sprintf("again-%d", a.added))
		require.NoError(a.t, ierr)
	}
	return rows, err
}

// TestResendArchiveEndsAtTheStart: a replay of the archive without --until sends the rows archived
// when it started, not those the consumer archives meanwhile (its own messages among them), so it
// ends.
func TestResendArchiveEndsAtTheStart(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("needs PostgreSQL and kumo")
	}
	st := testkit.DB(t)
	ctx := testkit.Context(t)
	for i := range 3 {
		_, err := st.Pool.Exec(ctx, `INSERT INTO events (message_id, key, outcome, body) VALUES ($1, 'a/x', 'created:valid', $2)`,
			fmt.Sprintf("m%d", i), fmt.Sprintf("b%d", i))
		require.NoError(t, err)
	}
	c := testSQS()
	q := testkit.Queue(t, c, 3, 30*time.Second)
	src := &archiving{EventLister: st.Q, t: t, pool: st.Pool}
	res, err := Resend(ctx, c, ArchiveSource(src, ArchiveFilter{Since: time.Now().Add(-time.Hour), PageSize: 1}), ResendOptions{To: q.URL, Concurrency: 1})
	require.NoError(t, err)
	require.Positive(t, src.added, "the consumer archived while the replay ran")
	require.Equal(t, 3, res.Sent, "only the rows archived at the start")
	got, total := testkit.DrainQueue(t, c, q.URL)
	require.Equal(t, 3, total)
	for _, b := range []string{"b0", "b1", "b2"} {
		require.Contains(t, got, b)
	}
}

func TestResendOptions(t *testing.T) {
	t.Parallel()
	_, err := Resend(context.Background(), nil, FileSource(strings.NewReader("x")), ResendOptions{})
	require.ErrorContains(t, err, "target queue: required")
	_, err = Resend(context.Background(), nil, FileSource(strings.NewReader("x")), ResendOptions{To: "q", Concurrency: 100})
	require.ErrorContains(t, err, "concurrency")
}

// stopSQS is the real SQS client, except for the batches that carry hold or fail: the call of hold
// waits for its context to end (a send in flight when another worker fails), the call of fail
// waits until hold's call started, then fails as a whole.
type stopSQS struct {
	SQSAPI
	hold, fail string
	holding    chan struct{}
	once       sync.Once
}

func (s *stopSQS) SendMessageBatch(ctx context.Context, in *sqs.SendMessageBatchInput, opts ...func(*sqs.Options)) (*sqs.SendMessageBatchOutput, error) {
	for _, e := range in.Entries {
		switch aws.ToString(e.MessageBody) {
		case s.hold:
			s.once.Do(func() { close(s.holding) })
			<-ctx.Done()
			return nil, ctx.Err()
		case s.fail:
			<-s.holding
			return nil, errors.New("injected outage")
		}
	}
	return s.SQSAPI.SendMessageBatch(ctx, in, opts...)
}

// TestResendWorkerFailureIsNotAnInterruption: a batch that fails for good stops the other workers
// (their sends end with context.Canceled); the error is the batch's, not an interruption, and
// every body read is counted as sent or failed, those the workers never sent included.
func TestResendWorkerFailureIsNotAnInterruption(t *testing.T) {
	t.Parallel()
	c, q := kumoQueues(t)
	var lines []string
	for i := range 80 {
		lines = append(lines, body(i))
	}
	// Batches of ten, in order: 0-9 is sent, 10-19 is held in flight, 20-29 fails; two workers.
	faulty := &stopSQS{SQSAPI: c, hold: body(10), fail: body(20), holding: make(chan struct{})}
	res, err := Resend(testkit.Context(t), faulty, FileSource(strings.NewReader(strings.Join(lines, "\n"))), ResendOptions{To: q.URL, Concurrency: 2})
	require.ErrorContains(t, err, "injected outage")
	require.NotErrorIs(t, err, context.Canceled, "not an interruption: %v", err)
	require.Equal(t, 10, res.Sent)
	require.Equal(t, res.Read, res.Sent+res.Failed, "every body read is sent or failed: %+v", res)
	require.GreaterOrEqual(t, res.Read, 30)
	got, total := testkit.DrainQueue(t, c, q.URL)
	require.Equal(t, 10, total)
	for i := range 10 {
		require.Contains(t, got, body(i))
	}
}

// fifoSink answers SendMessageBatch as a FIFO queue of SQS does: an entry whose deduplication id
// the queue has seen is accepted (listed as Successful) but not delivered again. With lostAnswers,
// the first send of every entry is delivered but answered as a server failure (the answer lost on
// the way), so that the replay retries it.
type fifoSink struct {
	SQSAPI
	lostAnswers bool

	mu        sync.Mutex
	seen      map[string]bool
	delivered []string
}

func (f *fifoSink) SendMessageBatch(_ context.Context, in *sqs.SendMessageBatchInput, _ ...func(*sqs.Options)) (*sqs.SendMessageBatchOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := &sqs.SendMessageBatchOutput{}
	for _, e := range in.Entries {
		if e.MessageGroupId == nil || e.MessageDeduplicationId == nil {
			out.Failed = append(out.Failed, types.BatchResultErrorEntry{Id: e.Id, Code: aws.String("MissingParameter"), SenderFault: true})
			continue
		}
		d := aws.ToString(e.MessageDeduplicationId)
		if f.seen[d] {
			out.Successful = append(out.Successful, types.SendMessageBatchResultEntry{Id: e.Id, MessageId: aws.String(d)})
			continue
		}
		f.seen[d] = true
		f.delivered = append(f.delivered, aws.ToString(e.MessageBody))
		if f.lostAnswers {
			out.Failed = append(out.Failed, types.BatchResultErrorEntry{Id: e.Id, Code: aws.String("InternalError")})
			continue
		}
		out.Successful = append(out.Successful, types.SendMessageBatchResultEntry{Id: e.Id, MessageId: aws.String(d)})
	}
	return out, nil
}

// TestResendFIFODeduplicationIDs: every body of a replay to a FIFO queue gets a deduplication id
// of its own. They were a clock reading and the entry's place in its batch: two batches built in
// the same tick of the clock (a coarse clock, concurrent workers) shared them, and SQS accepted
// the second batch as duplicates, reported it sent and never delivered it. The test runs in a
// synctest bubble, where the clock does not move while nothing waits: every batch is built at the
// same instant. A second run delivers again (another run id), and a retried entry keeps its id.
func TestResendFIFODeduplicationIDs(t *testing.T) {
	t.Parallel()
	const n = 200
	var lines []string
	for i := range n {
		lines = append(lines, body(i))
	}
	file := strings.Join(lines, "\n")
	const to = "https://sqs.us-east-1.amazonaws.com/123456789012/intake.fifo"
	synctest.Test(t, func(t *testing.T) {
		sink := &fifoSink{seen: map[string]bool{}}
		for run := 1; run <= 2; run++ {
			res, err := Resend(context.Background(), sink, FileSource(strings.NewReader(file)), ResendOptions{To: to, Concurrency: 8})
			require.NoError(t, err)
			require.Equal(t, n, res.Sent, "run %d", run)
			require.Equal(t, run*n, len(sink.delivered), "run %d: every body delivered, none taken for a duplicate", run)
		}
	})
	synctest.Test(t, func(t *testing.T) {
		sink := &fifoSink{seen: map[string]bool{}, lostAnswers: true}
		res, err := Resend(context.Background(), sink, FileSource(strings.NewReader(file)), ResendOptions{To: to, Concurrency: 8})
		require.NoError(t, err)
		require.Equal(t, n, res.Sent)
		require.Equal(t, n, len(sink.delivered), "a retried send is deduplicated: delivered once")
	})
}

// TestResendFIFO: bodies replayed to a FIFO queue of kumo, which deduplicates on the ids, all
// arrive, sent by concurrent workers.
func TestResendFIFO(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("needs kumo")
	}
	c := testSQS()
	target := fifoQueue(t, c)
	const n = 120
	var lines []string
	for i := range n {
		lines = append(lines, body(i))
	}
	res, err := Resend(testkit.Context(t), c, FileSource(strings.NewReader(strings.Join(lines, "\n"))), ResendOptions{To: target, Concurrency: 8})
	require.NoError(t, err)
	require.Equal(t, n, res.Sent)
	got, total := testkit.DrainQueue(t, c, target)
	require.Equal(t, n, total)
	require.Len(t, got, n)
}
