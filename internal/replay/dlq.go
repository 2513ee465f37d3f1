package replay

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"golang.org/x/time/rate"

	"github.com/intakehq/intake/internal/queue"
)

// DLQOptions configure MoveDLQ and DryRunDLQ.
type DLQOptions struct {
	// From is the dead-letter queue's URL.
	From string
	// To is the queue the messages go back to.
	To string
	// Max stops after this many messages (0: the messages present when the move starts).
	Max int
	// Rate limits messages per second (0: unlimited).
	Rate float64
	// Concurrency is the number of batches in flight at once (default 4).
	Concurrency int
	// Visibility hides received messages from other readers while they are moved (default 60s;
	// dry runs default to 30s). A message whose move failed reappears after it.
	Visibility time.Duration
	// Wait is the long-poll wait of a receive, a whole number of seconds in 1s..20s (a shorter
	// one would be a short poll, which on SQS may find nothing while messages are there); an
	// empty receive ends a worker (default 2s).
	Wait time.Duration
	// Start is what the dead-letter queue held when the move started (nil: MoveDLQ reads it).
	Start *DLQStart
	// Attempts bounds the tries of each send or delete (default 3).
	Attempts int
	// Samples is how many bodies a dry run keeps (0: none).
	Samples int
	// Progress counts moved messages (optional).
	Progress Counter
	// Log receives warnings (default: discarded).
	Log *slog.Logger

	// settle bounds how long MoveDLQ's end check re-reads the count of messages in flight (default
	// defaultSettle; tests shorten it).
	settle time.Duration
}

func (o DLQOptions) withDefaults(visibility time.Duration) DLQOptions {
	o.Concurrency = cmp.Or(o.Concurrency, 4)
	o.Visibility = cmp.Or(o.Visibility, visibility)
	o.Wait = cmp.Or(o.Wait, 2*time.Second)
	o.Attempts = cmp.Or(o.Attempts, 3)
	o.settle = cmp.Or(o.settle, defaultSettle)
	if o.Progress == nil {
		o.Progress = nopCounter{}
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	return o
}

func (o DLQOptions) validate(needTo bool) error {
	var errs []error
	if o.From == "" {
		errs = append(errs, errors.New("source queue: required (--from or INTAKE_DLQ_URL)"))
	}
	if needTo && o.To == "" {
		errs = append(errs, errors.New("target queue: required (--to or INTAKE_QUEUE_URL)"))
	}
	if o.From != "" && o.From == o.To {
		errs = append(errs, fmt.Errorf("source and target are the same queue %s", o.From))
	}
	if o.Max < 0 {
		errs = append(errs, errors.New("max: must not be negative"))
	}
	if o.Concurrency < 0 || o.Concurrency > 64 {
		errs = append(errs, fmt.Errorf("concurrency: %d not in 1..64", o.Concurrency))
	}
	if o.Visibility != 0 && (o.Visibility < time.Second || o.Visibility > 12*time.Hour) {
		errs = append(errs, fmt.Errorf("visibility: %s not in 1s..12h", o.Visibility))
	}
	if o.Wait != 0 {
		errs = append(errs, CheckWait(o.Wait))
	}
	return errors.Join(errs...)
}

// CheckWait returns an error unless d is a long-poll wait SQS takes as it is: a whole number of
// seconds, 1s to 20s. WaitTimeSeconds 0 is a short poll, which samples only some of SQS's servers
// and may come back empty while the queue holds messages: an empty receive ends a replay, so it
// must not be one (and a fraction of a second would be cut to one).
func CheckWait(d time.Duration) error {
	if d < time.Second || d > 20*time.Second || d%time.Second != 0 {
		return fmt.Errorf("wait: %s is not a whole number of seconds in 1s..20s", d)
	}
	return nil
}

// DLQStart is what the dead-letter queue held when a move started: MoveDLQ moves at most Messages
// (or Max, if smaller), and only messages sent no later than At.
type DLQStart struct {
	// Messages is what the queue held at the start: its visible messages, and those in flight
	// (held by another reader, such as a replay that was killed: they come back when their
	// visibility ends, and some servers, kumo among them, count a message whose visibility ended as
	// in flight until it is received again). The move still ends when a receive finds nothing.
	Messages int
	// At is the start: the local clock, unless it disagrees with the Date of SQS's response by
	// more than that header's precision (whole seconds); then the server's Date.
	At time.Time
}

// clockTolerance is how far the local clock may be from SQS's Date header (whole seconds) before
// StartDLQ trusts the header instead.
const clockTolerance = 2 * time.Second

// Budget is how many messages a move with max (0: no max) may move.
func (s DLQStart) Budget(max int) int {
	if max > 0 {
		return min(max, s.Messages)
	}
	return s.Messages
}

// StartDLQ reads what the dead-letter queue at url holds now: the count of its messages (visible and
// in flight) and the server's time.
func StartDLQ(ctx context.Context, c SQSAPI, url string) (DLQStart, error) {
	info, err := queue.ReadInfo(ctx, c, url, false)
	if err != nil {
		return DLQStart{}, fmt.Errorf("count the messages of %s: %w", url, err)
	}
	at := time.Now()
	if server, ok := awsmiddleware.GetServerTime(info.Output.ResultMetadata); ok && !server.IsZero() {
		if d := server.Sub(at); d > clockTolerance || d < -clockTolerance {
			at = server
		}
	}
	return DLQStart{Messages: info.Visible + info.InFlight, At: at}, nil
}

// DLQResult counts what MoveDLQ did.
type DLQResult struct {
	// Start is what the dead-letter queue held when the move started.
	Start DLQStart
	// Received messages were taken from the dead-letter queue to be moved (each counted once,
	// however often the run received it).
	Received int
	// Sent messages were accepted by the target queue.
	Sent int
	// Deleted messages were removed from the dead-letter queue after being sent.
	Deleted int
	// SendFailed messages were not sent; they stay in the dead-letter queue and become visible
	// again after the visibility timeout (a run that receives one again leaves it there).
	SendFailed int
	// DeleteFailed messages were sent but not deleted: a later replay sends them again (a
	// duplicate the pipeline absorbs). One the run receives again is deleted then, not sent again.
	DeleteFailed int
	// Skipped messages were received but not moved: they reached the dead-letter queue after the
	// move started (sent after it, or moved by this run and dead-lettered again by the consumer).
	// They stay there, visible again at the end. Those that arrived after the move's last receive
	// are counted too, when the end check finds them (see Unaccounted).
	Skipped int
	// SkipLimit is true when the move stopped because it kept receiving messages it would not
	// move (such messages, or messages it had tried already, visible again): the dead-letter queue
	// fills faster than the move drains it, and messages present at the start may be left.
	SkipLimit bool
	// Unreached counts the messages the move was to move (present at the start, within Max: see
	// DLQStart.Budget) that it never received and that are still there: in flight for the whole run
	// (held by another reader, such as a stopped replay; they reappear when their visibility
	// timeout ends), or not reached because the run stopped early (SkipLimit, or ctx). The end
	// check (see Unaccounted) caps it by what it finds left: messages sent before the start that
	// the run never received, and messages in flight it cannot account for. So a count at the
	// start that was too high (SQS's counts lag: messages deleted moments before may still be
	// counted) is not taken for messages left. Without the check (the run stopped early, or
	// LeftUnknown) it is what the run received short of its budget. Not zero: messages present at
	// the start may be left in the dead-letter queue.
	Unreached int
	// Left is the dead-letter queue's approximate count at the end (zero when LeftUnknown). The
	// messages the end check held when it read it are counted as visible: it gives them back.
	Left queue.Counts
	// LeftUnknown is true when the count at the end could not be read: the run cannot tell whether
	// it left messages present at the start (Unaccounted is then zero, and means nothing).
	LeftUnknown bool
	// Unaccounted counts messages present at the start that the run may have left although it
	// received its budget's worth. A message redriven into the dead-letter queue during the run
	// keeps its SentTimestamp (sent before the start, to the queue): the run takes it for one
	// present at the start, and it uses up that one's place in the budget, so a message present at
	// the start is left, never received, and counted here, not in Unreached.
	//
	// When the move ends (not stopped early), an end check looks at what is left rather than
	// trusting the count: it receives, without moving them, the messages the count says are
	// visible (hidden for at most a minute, then given back at once), until a receive finds
	// nothing or a bound of receipts or time is reached, and sorts them: messages the run tried
	// are counted already (SendFailed, DeleteFailed); messages that arrived during the run (sent
	// after the start, or moved by this run and dead-lettered again) are counted in Skipped, not
	// here; messages sent before the start that the run never received are left. Messages in
	// flight cannot be received: those beyond the ones the run knows may be hidden (what the check
	// holds, the messages whose send or delete failed) count as left, once the count has settled
	// (re-read for up to half a minute until it is no more than that, or two reads agree).
	// Visible messages the check could not look at (it reached its bound) are judged by the count.
	// Unaccounted is what is left beyond Unreached and the messages past Max. A message redriven
	// into the dead-letter queue after the run's last receive counts here too: sent before the
	// start, it cannot be told from one present then. Zero when the run stopped early (SkipLimit,
	// or ctx) or LeftUnknown: there was no check. Not zero: messages present at the start may be
	// left.
	Unaccounted int
	// Failures samples the errors of failed entries (at most 20).
	Failures []string
}

// mover is one MoveDLQ run.
type mover struct {
	c       SQSAPI
	o       DLQOptions
	limiter *rate.Limiter
	fifo    bool
	run     string // this run's id, in the deduplication ids of a FIFO target
	budget  int    // messages the run may move: present at the start, within Max

	mu       sync.Mutex
	reserved int                 // messages moved, or received to be moved, against budget
	sent     map[string]bool     // the ids the target queue gave the messages sent
	tried    map[string]tryState // dead-letter queue message id -> what this run did with it
	held     map[string]string   // message id -> latest receipt handle of a message received and not (yet) moved
	skips    int                 // receipts of messages not moved (skipped or tried already), against skipLimit
	res      DLQResult
}

// tryState is what a run did with a dead-letter queue message it received to move. A message is
// received again when its visibility ended before the run deleted it (its send failed, or its
// delete did): it must not count as another message, nor be sent twice.
type tryState uint8

const (
	// tryMoving: received, its batch is being moved.
	tryMoving tryState = iota
	// trySent: the target accepted it; its delete is under way.
	trySent
	// tryFailed: not sent; it stays in the dead-letter queue.
	tryFailed
	// tryDeleteFailed: sent, but its delete failed (counted in DeleteFailed).
	tryDeleteFailed
	// tryDeleted: sent and deleted (counted in Deleted).
	tryDeleted
)

// MoveDLQ moves the messages present in o.From when it starts to o.To, as SQS's own move task
// does: it reads the count of visible messages and the server's time first (o.Start, else
// StartDLQ), moves at most that many (or Max), and only messages sent no later than that time.
// Each batch is received, sent, then deleted (only what the target accepted). A message that
// reached the dead-letter queue after the start (such as a moved message the consumer failed on
// again) is skipped: held invisible while the move runs, made visible again at the end. A message
// received again in the same run (its visibility ended before it was deleted) is not counted
// again: deleted without being sent again if its send had succeeded, else held like a skipped
// one. The move returns when the budget is spent, a receive with o.Wait finds nothing, it kept
// receiving only such messages (SkipLimit), or ctx is cancelled; batches already received are
// finished (sent and deleted) before it returns, so a stop loses nothing. A receive under way when
// ctx is cancelled is not aborted (it ends within o.Wait): its batch is finished too, as a receive
// aborted after SQS took its messages would leave them hidden for o.Visibility. At the end it looks
// at what the dead-letter queue holds, and counts what it cannot account for (Unaccounted, and
// Unreached: messages present at the start may be left). The result is valid even with an error.
func MoveDLQ(ctx context.Context, c SQSAPI, o DLQOptions) (DLQResult, error) {
	if err := o.validate(true); err != nil {
		return DLQResult{}, err
	}
	o = o.withDefaults(60 * time.Second)
	if o.Start == nil {
		start, err := StartDLQ(ctx, c, o.From)
		if err != nil {
			return DLQResult{}, err
		}
		o.Start = &start
	}
	m := &mover{
		c: c, o: o, limiter: newLimiter(o.Rate), fifo: isFIFO(o.To), run: newRunID(), budget: o.Start.Budget(o.Max),
		sent: map[string]bool{}, tried: map[string]tryState{}, held: map[string]string{}, res: DLQResult{Start: *o.Start},
	}
	var wg sync.WaitGroup
	errs := make([]error, o.Concurrency)
	for i := range o.Concurrency {
		wg.Go(func() { errs[i] = m.worker(ctx) })
	}
	wg.Wait()
	m.res.Unreached = max(0, m.budget-m.res.Received)
	m.finish(ctx)
	return m.res, errors.Join(errs...)
}

// skipLimit bounds the receipts of skipped messages (sent after the start) of a run with budget
// and concurrency: past it, the dead-letter queue is filling faster than the run drains it, and
// the run (a move or a dry run) stops instead of chasing it.
func skipLimit(budget, concurrency int) int { return budget + MaxBatch*concurrency }

// reserve claims up to MaxBatch messages against the budget (0 when it is spent).
func (m *mover) reserve() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := min(MaxBatch, m.budget-m.reserved)
	m.reserved += n
	return n
}

// sort splits received messages into those to move, those to delete only and those to skip, and
// releases the reservation of all but the first. A message is skipped when it was sent after the
// start, or is one this run moved that came back: the redrive policy keeps the id its send got,
// and intake's consumer, dead-lettering explicitly, names that id in queue.AttrSourceMessageID. A
// message this run received before is not a new one: if its send succeeded (its delete failed) it
// is deleted without being sent again; if not (its send failed, or another worker still moves it)
// it is held like a skipped one. Skipped and repeated receipts count against the skip limit; stop
// is true when it is reached.
func (m *mover) sort(msgs []types.Message) (move, redelete []types.Message, stop bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, msg := range msgs {
		id := aws.ToString(msg.MessageId)
		if st, ok := m.tried[id]; ok {
			m.skips++
			m.reserved--
			if st == trySent || st == tryDeleteFailed || st == tryDeleted {
				redelete = append(redelete, msg)
			} else {
				m.held[id] = aws.ToString(msg.ReceiptHandle)
			}
			continue
		}
		if m.arrived(msg) {
			if _, seen := m.held[id]; !seen {
				m.res.Skipped++
			}
			m.held[id] = aws.ToString(msg.ReceiptHandle)
			m.skips++
			m.reserved--
			continue
		}
		m.tried[id] = tryMoving
		move = append(move, msg)
	}
	if m.skips >= skipLimit(m.budget, m.o.Concurrency) && !m.res.SkipLimit {
		m.res.SkipLimit = true
		m.o.Log.Warn("the dead-letter queue keeps returning messages the replay does not move; stopping", "skipped", m.res.Skipped)
	}
	return move, redelete, m.res.SkipLimit
}

// arrived reports whether msg reached the dead-letter queue after the start: sent after it, or one
// this run moved that came back (the redrive policy keeps the id its send got; intake's consumer,
// dead-lettering explicitly, names that id in queue.AttrSourceMessageID). Called with m.mu held,
// or once the workers are done.
func (m *mover) arrived(msg types.Message) bool {
	id := aws.ToString(msg.MessageId)
	source := aws.ToString(msg.MessageAttributes[queue.AttrSourceMessageID].StringValue)
	return m.sent[id] || (source != "" && m.sent[source]) || sentAfter(msg, m.o.Start.At)
}

// sentAfter reports whether the message's SentTimestamp is after at (false when it has none).
func sentAfter(msg types.Message, at time.Time) bool {
	ms, err := strconv.ParseInt(msg.Attributes[string(types.MessageSystemAttributeNameSentTimestamp)], 10, 64)
	return err == nil && time.UnixMilli(ms).After(at)
}

// moved records the ids the target queue gave the sent messages.
func (m *mover) moved(ids []string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, id := range ids {
		m.sent[id] = true
	}
}

// mark records what became of the dead-letter queue messages msgs[i] for each batch entry id i.
func (m *mover) mark(msgs []types.Message, entryIDs []string, st tryState) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, e := range entryIDs {
		i, _ := strconv.Atoi(e)
		m.tried[aws.ToString(msgs[i].MessageId)] = st
	}
}

// deleted counts the messages sent and then deleted (entry ids ok) or not (failed). Each message
// is counted once: another worker may have deleted it already (received again with a new receipt
// handle, see redelete), and a message it deletes later is counted there.
func (m *mover) deleted(msgs []types.Message, ok, failed []string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, e := range ok {
		i, _ := strconv.Atoi(e)
		id := aws.ToString(msgs[i].MessageId)
		if m.tried[id] != tryDeleted {
			m.res.Deleted++
			m.tried[id] = tryDeleted
		}
	}
	for _, e := range failed {
		i, _ := strconv.Atoi(e)
		id := aws.ToString(msgs[i].MessageId)
		if m.tried[id] == trySent {
			m.res.DeleteFailed++
			m.tried[id] = tryDeleteFailed
		}
	}
}

func (m *mover) release(n int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.reserved -= n
}

func (m *mover) record(f func(r *DLQResult)) {
	m.mu.Lock()
	defer m.mu.Unlock()
	f(&m.res)
}

func (m *mover) fail(fs []failure, what string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, f := range fs {
		if len(m.res.Failures) < 20 {
			m.res.Failures = append(m.res.Failures, what+": "+f.String())
		}
	}
}

// worker moves batches until the budget is spent, the queue looks empty, the skip limit is reached
// or ctx is done.
func (m *mover) worker(ctx context.Context) error {
	for ctx.Err() == nil {
		n := m.reserve()
		if n <= 0 {
			return nil
		}
		if err := wait(ctx, m.limiter, n); err != nil {
			m.release(n)
			return nil // cancelled while waiting: nothing held
		}
		out, err := receive(ctx, m.c, receiveInput(m.o.From, n, m.o.Visibility, m.o.Wait), m.o.Wait)
		if err != nil {
			m.release(n)
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("receive from %s: %w", m.o.From, err)
		}
		m.release(n - len(out.Messages))
		if len(out.Messages) == 0 {
			return nil
		}
		msgs, redelete, stop := m.sort(out.Messages)
		m.record(func(r *DLQResult) { r.Received += len(msgs) })
		// Finish the batch even if ctx is cancelled now: sending and deleting take moments, and a
		// half-moved batch would only mean duplicates. The visibility timeout bounds the work.
		bctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), m.o.Visibility)
		var errs []error
		for _, batch := range splitBatches(msgs, messageBytes) {
			errs = append(errs, m.move(bctx, batch))
		}
		if len(redelete) > 0 {
			errs = append(errs, m.redelete(bctx, redelete))
		}
		cancel()
		if err := errors.Join(errs...); err != nil {
			return err
		}
		if stop {
			return nil
		}
	}
	return nil
}

// receiveMargin is how long a receive may take beyond its long-poll wait before it is abandoned:
// the round trip, and the SDK's retries of a failed attempt.
const receiveMargin = 5 * time.Second

// receive makes one ReceiveMessage that ctx's cancellation does not abort (its deadline is the
// long-poll wait plus receiveMargin), so that the caller gets, and deals with, whatever SQS took
// from the queue. A receive aborted by a Ctrl-C after SQS had dequeued its messages, but before
// their receipt handles arrived, would leave them hidden for the visibility timeout with nobody to
// move them or give them back. The caller stops after the batch once ctx is done.
func receive(ctx context.Context, c SQSAPI, in *sqs.ReceiveMessageInput, wait time.Duration) (*sqs.ReceiveMessageOutput, error) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), wait+receiveMargin)
	defer cancel()
	return c.ReceiveMessage(rctx, in)
}

// move sends msgs (one SendMessageBatch) to the target and deletes from the source those the
// target accepted.
func (m *mover) move(ctx context.Context, msgs []types.Message) error {
	entries := make([]types.SendMessageBatchRequestEntry, len(msgs))
	for i, msg := range msgs {
		entries[i] = sendEntry(strconv.Itoa(i), msg, m.fifo, m.run)
	}
	sent, newIDs, failed, sendErr := sendBatch(ctx, m.c, m.o.To, entries, m.o.Attempts, m.o.Log)
	m.moved(newIDs)
	m.mark(msgs, sent, trySent)
	m.mark(msgs, without(batchIDs(len(msgs)), sent), tryFailed)
	unsent := len(msgs) - len(sent)
	m.record(func(r *DLQResult) { r.Sent += len(sent); r.SendFailed += unsent })
	m.fail(failed, "send")
	for _, f := range failed {
		i, _ := strconv.Atoi(f.ID)
		m.o.Log.Warn("message not sent; left in the dead-letter queue", "message_id", aws.ToString(msgs[i].MessageId), "code", f.Code, "err", f.Message)
	}
	m.o.Progress.Add(len(sent))
	if len(sent) == 0 {
		return sendErr
	}
	dels := m.deletes(msgs, sent)
	deleted, delFailed, delErr := deleteBatch(ctx, m.c, m.o.From, dels, m.o.Attempts, m.o.Log)
	m.deleted(msgs, deleted, without(sent, deleted))
	m.fail(delFailed, "delete")
	for _, f := range delFailed {
		i, _ := strconv.Atoi(f.ID)
		m.o.Log.Warn("message sent but not deleted; a later replay will send it again", "message_id", aws.ToString(msgs[i].MessageId), "code", f.Code, "err", f.Message)
	}
	return errors.Join(sendErr, delErr)
}

// deletes returns the delete entries of the sent messages msgs[i] (entry ids i), each with its
// newest receipt handle. A message whose visibility ended while this worker sent it may have been
// received again by another worker (sort holds it, with the new handle): SQS answers a delete with
// the older handle with success, yet may not delete the message, which would stay in the
// dead-letter queue, counted deleted, and be made visible again at the end (to be sent again by the
// next run). Such a message is deleted with the new handle, and is no longer held. (One received
// again after mark recorded it as sent is deleted by that worker: see redelete.)
func (m *mover) deletes(msgs []types.Message, sent []string) []types.DeleteMessageBatchRequestEntry {
	m.mu.Lock()
	defer m.mu.Unlock()
	dels := make([]types.DeleteMessageBatchRequestEntry, 0, len(sent))
	for _, e := range sent {
		i, _ := strconv.Atoi(e)
		handle := msgs[i].ReceiptHandle
		id := aws.ToString(msgs[i].MessageId)
		if newer, ok := m.held[id]; ok {
			handle = aws.String(newer)
			delete(m.held, id)
		}
		dels = append(dels, types.DeleteMessageBatchRequestEntry{Id: aws.String(e), ReceiptHandle: handle})
	}
	return dels
}

// redelete deletes messages this run sent already and received again (their delete had failed, or
// SQS delivered a deleted message again), with their new receipt handles, without sending them
// again. A message counted as not deleted is counted as deleted once this succeeds.
func (m *mover) redelete(ctx context.Context, msgs []types.Message) error {
	dels := make([]types.DeleteMessageBatchRequestEntry, len(msgs))
	for i, msg := range msgs {
		dels[i] = types.DeleteMessageBatchRequestEntry{Id: aws.String(strconv.Itoa(i)), ReceiptHandle: msg.ReceiptHandle}
	}
	deleted, delFailed, err := deleteBatch(ctx, m.c, m.o.From, dels, m.o.Attempts, m.o.Log)
	m.mu.Lock()
	for _, e := range deleted {
		i, _ := strconv.Atoi(e)
		id := aws.ToString(msgs[i].MessageId)
		switch m.tried[id] {
		case tryDeleteFailed:
			m.res.DeleteFailed--
			m.res.Deleted++
		case trySent: // the worker that sent it is still deleting it: counted here, not there
			m.res.Deleted++
		}
		m.tried[id] = tryDeleted
	}
	m.mu.Unlock()
	for _, f := range delFailed {
		i, _ := strconv.Atoi(f.ID)
		m.o.Log.Warn("message sent but not deleted; a later replay will send it again", "message_id", aws.ToString(msgs[i].MessageId), "code", f.Code, "err", f.Message)
	}
	if err != nil {
		return fmt.Errorf("delete messages already sent: %w", err)
	}
	return nil
}

// batchIDs returns the entry ids of a batch of n: "0" to n-1.
func batchIDs(n int) []string {
	ids := make([]string, n)
	for i := range n {
		ids[i] = strconv.Itoa(i)
	}
	return ids
}

// without returns the ids that are not in drop.
func without(ids, drop []string) []string {
	skip := make(map[string]bool, len(drop))
	for _, id := range drop {
		skip[id] = true
	}
	var out []string
	for _, id := range ids {
		if !skip[id] {
			out = append(out, id)
		}
	}
	return out
}

// receiveInput asks for n messages with every attribute.
func receiveInput(url string, n int, visibility, waitTime time.Duration) *sqs.ReceiveMessageInput {
	return &sqs.ReceiveMessageInput{
		QueueUrl:                    aws.String(url),
		MaxNumberOfMessages:         int32(n),
		VisibilityTimeout:           int32(visibility / time.Second),
		WaitTimeSeconds:             int32(waitTime / time.Second),
		MessageAttributeNames:       []string{"All"},
		MessageSystemAttributeNames: []types.MessageSystemAttributeName{types.MessageSystemAttributeNameAll},
	}
}

// newRunID returns a random id for one MoveDLQ run.
func newRunID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return hex.EncodeToString(b)
}

// sendEntry copies a received message into a send entry: body and message attributes, and for a
// FIFO target the group id and a deduplication id made of run (the run's id) and the message id.
// Within a run the id is stable, so that SQS deduplicates a message sent twice (a retried send, or
// a message received again after its delete failed); across runs it differs. The original
// deduplication id would not do: SQS keeps it for five minutes, so a message moved back, failed
// again and replayed within that time would be accepted as a duplicate without being delivered,
// and then deleted from the dead-letter queue: lost.
func sendEntry(id string, msg types.Message, fifo bool, run string) types.SendMessageBatchRequestEntry {
	e := types.SendMessageBatchRequestEntry{
		Id:                aws.String(id),
		MessageBody:       msg.Body,
		MessageAttributes: msg.MessageAttributes,
	}
	if fifo {
		sys := msg.Attributes
		e.MessageGroupId = aws.String(cmp.Or(sys[string(types.MessageSystemAttributeNameMessageGroupId)], "intake-replay"))
		e.MessageDeduplicationId = aws.String(run + ":" + aws.ToString(msg.MessageId))
	}
	return e
}
