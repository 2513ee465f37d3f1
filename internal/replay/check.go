package replay

import (
	"context"
	"maps"
	"slices"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/intakehq/intake/internal/queue"
)

// MoveDLQ's end check: what the dead-letter queue holds when the move ends, looked at rather than
// counted (see DLQResult.Unaccounted). A count cannot tell a message present at the start that the
// run left from one that arrived after the run's last receive, nor from an error of SQS's
// approximate counts.

const (
	// checkVisibility hides the messages the end check receives while it looks at them and reads
	// the count; it gives them back at once when done (should that fail, they reappear after it).
	// As a dry run's, it stays short.
	checkVisibility = MaxDryRunVisibility
	// checkWait is the long-poll wait of the end check's receives: a long poll asks all of SQS's
	// servers, so that an empty receive means nothing is visible that the check does not hold.
	checkWait = time.Second
	// checkTime bounds the end check's receives. They, the last one's wait, and the settling of the
	// count (defaultSettle) end within checkVisibility (less checkMargin): what the check holds is
	// still hidden when it reads the count.
	checkTime = 15 * time.Second
	// defaultSettle bounds how long the end check re-reads the count of messages in flight.
	defaultSettle = 30 * time.Second
	// checkMargin is kept between the last read of the count and the end of checkVisibility.
	checkMargin = 5 * time.Second
	// countTimeout bounds one read of the count.
	countTimeout = 10 * time.Second
)

// leftover is what the end check saw of the dead-letter queue.
type leftover struct {
	seen     map[string]string // message id -> receipt handle, of the messages it holds
	notTried int               // of them, those sent before the start that the run never received
	complete bool              // it ended on an empty receive: it saw every visible message
	began    time.Time         // its first receive
}

// finish gives back the messages the run holds, reads what the dead-letter queue holds, and
// checks it (check) unless the run stopped early. Called once the workers are done.
func (m *mover) finish(ctx context.Context) {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	// Messages held and not moved (skipped, or whose send failed) are visible again at once, as
	// they would be without this run.
	_, _, verr := changeVisibility(cctx, m.c, m.o.From, slices.Collect(maps.Values(m.held)), 0)
	if verr != nil {
		m.o.Log.Warn("skipped messages stay invisible until their visibility timeout", "visibility", m.o.Visibility, "err", verr)
	}
	counts, err := Counts(cctx, m.c, m.o.From)
	if err != nil {
		m.o.Log.Warn("could not read what the dead-letter queue holds at the end", "err", err)
		m.res.LeftUnknown = true
		return
	}
	m.res.Left = counts
	if ctx.Err() != nil || m.res.SkipLimit {
		return // stopped early: messages present at the start may be left, as the caller says
	}
	m.check(ctx, counts, verr != nil)
}

// check looks at what the dead-letter queue holds at the end, and sets Unreached, Unaccounted,
// Skipped and Left (see DLQResult.Unaccounted). counts was read once the run had given back what
// it held; stuck is true when giving some back failed (they may still be hidden).
func (m *mover) check(ctx context.Context, counts queue.Counts, stuck bool) {
	// The messages the run knows may still be hidden: tried and not moved (their send or delete
	// failed; hidden until their visibility ends, unless received again and given back), and the
	// ones it held, when giving them back failed.
	hidden := map[string]bool{}
	for id, st := range m.tried {
		if st == tryFailed || st == tryDeleteFailed {
			hidden[id] = true
		}
	}
	if stuck {
		for id := range m.held {
			hidden[id] = true
		}
	}
	// Nothing visible, and nothing in flight but what the run knows of: nothing left behind. (The
	// messages the run gave back are visible, yet some servers, kumo among them, count them in
	// flight until a receive: such a count is looked at.)
	if counts.Visible == 0 && counts.InFlight <= len(hidden) {
		m.leftBehind(0)
		return
	}
	l := leftover{seen: map[string]string{}}
	m.look(ctx, &l, min(counts.Visible+counts.InFlight, m.budget)+MaxBatch*m.o.Concurrency)
	defer m.giveBack(ctx, l.seen)

	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), countTimeout)
	left, err := Counts(rctx, m.c, m.o.From)
	cancel()
	if err != nil {
		m.o.Log.Warn("could not read what the dead-letter queue holds at the end", "err", err)
		m.res.LeftUnknown, m.res.Left = true, queue.Counts{}
		return
	}
	// Visible messages the check did not look at are judged by the count: what is still visible
	// while it holds what it saw.
	unseen := 0
	if !l.complete {
		unseen = left.Visible
		m.o.Log.Warn("the end check did not look at every message left in the dead-letter queue; those it did not are judged by the count", "not_looked_at", unseen)
	}
	// In flight: what the check holds, and what the run knows may be hidden; beyond that, messages
	// held by another reader (the count may lag: let it settle).
	known := len(l.seen)
	for id := range hidden {
		if _, ok := l.seen[id]; !ok {
			known++
		}
	}
	until := time.Now().Add(m.o.settle)
	if hold := l.began.Add(checkVisibility - checkMargin); hold.Before(until) {
		until = hold
	}
	left = m.settle(ctx, left, known, until)
	inFlight := max(0, left.InFlight-known)

	m.leftBehind(l.notTried + unseen + inFlight)
	own := min(len(l.seen), left.InFlight) // given back below
	left.InFlight -= own
	left.Visible += own
	m.res.Left = left
}

// leftBehind sets Unreached and Unaccounted from the number of messages the end check found left
// behind (sent before the start and never received: visible, or in flight): Unreached is capped
// by it, and what it holds beyond Unreached and the messages past Max is unaccounted for.
func (m *mover) leftBehind(n int) {
	m.res.Unreached = min(m.res.Unreached, n)
	m.res.Unaccounted = max(0, n-m.res.Unreached-(m.res.Start.Messages-m.budget))
}

// look receives the visible messages of the dead-letter queue, each held for checkVisibility, and
// sorts them (classify), until a receive finds nothing, it has limit receipts, checkTime has
// passed or ctx is cancelled. It does not move anything.
func (m *mover) look(ctx context.Context, l *leftover, limit int) {
	l.began = time.Now()
	for receipts := 0; receipts < limit && time.Since(l.began) < checkTime && ctx.Err() == nil; {
		// Not aborted by ctx (see receive): what it takes is held, and given back.
		out, err := receive(ctx, m.c, receiveInput(m.o.From, MaxBatch, checkVisibility, checkWait), checkWait)
		if err != nil {
			m.o.Log.Warn("the end check could not receive from the dead-letter queue", "err", err)
			return
		}
		if len(out.Messages) == 0 {
			// In a FIFO queue, a message held (by the check itself) hides the rest of its group:
			// there, an empty receive does not mean nothing else is visible.
			l.complete = !isFIFO(m.o.From)
			return
		}
		receipts += len(out.Messages)
		for _, msg := range out.Messages {
			m.classify(l, msg)
		}
	}
}

// classify records msg, received by the end check: a message the run tried or held is counted
// already; one that arrived after the start is counted in Skipped; one sent before the start that
// the run never received is left behind (notTried).
func (m *mover) classify(l *leftover, msg types.Message) {
	id := aws.ToString(msg.MessageId)
	_, again := l.seen[id]
	l.seen[id] = aws.ToString(msg.ReceiptHandle)
	if again {
		return
	}
	if _, ok := m.tried[id]; ok {
		return // counted: moved, not sent, or not deleted
	}
	if _, ok := m.held[id]; ok {
		return // counted in Skipped
	}
	if m.arrived(msg) {
		m.res.Skipped++
		return
	}
	l.notTried++
}

// settle re-reads the count c of the dead-letter queue while it shows more messages in flight
// than known: until it shows no more, two reads in a row agree, until is near or ctx is
// cancelled. It returns the last count read.
func (m *mover) settle(ctx context.Context, c queue.Counts, known int, until time.Time) queue.Counts {
	pause := min(time.Second, m.o.settle/4)
	for c.InFlight > known && time.Now().Add(pause).Before(until) {
		t := time.NewTimer(pause)
		select {
		case <-ctx.Done():
			t.Stop()
			return c
		case <-t.C:
		}
		rctx, cancel := context.WithTimeout(ctx, countTimeout)
		next, err := Counts(rctx, m.c, m.o.From)
		cancel()
		if err != nil {
			m.o.Log.Warn("could not read the dead-letter queue's count again", "err", err)
			return c
		}
		agree := next.InFlight == c.InFlight
		c = next
		if agree {
			break
		}
		pause *= 2
	}
	return c
}

// giveBack makes the messages the end check held (handles by message id) visible again at once.
func (m *mover) giveBack(ctx context.Context, handles map[string]string) {
	if len(handles) == 0 {
		return
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if _, _, err := changeVisibility(cctx, m.c, m.o.From, slices.Collect(maps.Values(handles)), 0); err != nil {
		m.o.Log.Warn("messages the end check looked at stay invisible until their visibility timeout", "visibility", checkVisibility, "err", err)
	}
}
