package consumer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/smithy-go"

	"github.com/intakehq/intake/internal/queue"
	"github.com/intakehq/intake/internal/redact"
)

// ackAttempts bounds the DeleteMessageBatch attempts of one batch (whole-call errors and entries
// failed by the server's fault).
const ackAttempts = 4

// ackOutageBatches batches given up in a row for SQS's failure (no deletion succeeding in between)
// pause the receivers under dependencySQS.
const ackOutageBatches = 3

// dependencySQS names the queue as a dependency of the consumer: its deletions failing pause the
// receivers like an outage of the Processor's dependencies.
const dependencySQS = "sqs"

// acker deletes settled messages in batches of up to ten, flushing a partial batch after ackDelay.
// Several batches may be in flight at once.
//
// Deletions that keep failing for SQS's fault (receives may still work: a delete-only outage, a
// policy that no longer allows sqs:DeleteMessage) would have every committed message received and
// processed again after its visibility timeout, until its receives dead-letter it. After
// ackOutageBatches batches given up in a row, the acker pauses the receivers (outage of
// dependencySQS); the gate's check of it (probe) retries the last deletions given up.
type acker struct {
	client   Client
	queueURL string
	log      *slog.Logger
	m        *metrics
	gate     *gate
	ctx      context.Context
	cancel   context.CancelFunc

	// mu guards closed against sends on in: add holds it for reading while sending, close takes it
	// for writing before closing in. closing is closed first, so that an add waiting for room in
	// in gives up and close does not wait for the flushers behind it.
	mu          sync.RWMutex
	closed      bool
	closing     chan struct{}
	closingOnce sync.Once
	in          chan ackEntry
	done        chan struct{}

	outMu     sync.Mutex
	failedRun int        // batches given up in a row for SQS's failure
	owed      []ackEntry // the last deletions given up for SQS's failure (at most maxBatch), retried by probe
}

type ackEntry struct {
	ctx context.Context // carries the message_id for logs
	d   *delivery
	dlq bool // deleted after being sent to the dead-letter queue
	// reason is a dead-lettered message's intake_messages_dead_lettered_total label: it is counted
	// when its deletion succeeds (deleted, it does not come back to be dead-lettered again).
	reason string
}

func newAcker(ctx context.Context, client Client, queueURL string, log *slog.Logger, m *metrics, g *gate) *acker {
	ctx, cancel := context.WithCancel(ctx)
	a := &acker{
		client: client, queueURL: queueURL, log: log, m: m, gate: g, ctx: ctx, cancel: cancel,
		closing: make(chan struct{}), in: make(chan ackEntry, 4*maxBatch), done: make(chan struct{}),
	}
	go a.run()
	return a
}

// add queues a message whose effect is committed for deletion; see enqueue.
func (a *acker) add(ctx context.Context, d *delivery) {
	a.enqueue(ackEntry{ctx: ctx, d: d})
}

// addDeadLettered queues for deletion a message the dead-letter queue accepted, to be counted in
// intake_messages_dead_lettered_total{reason} once deleted; see enqueue.
func (a *acker) addDeadLettered(ctx context.Context, d *delivery, reason string) {
	a.enqueue(ackEntry{ctx: ctx, d: d, dlq: true, reason: reason})
}

// enqueue queues e for deletion. When the queue is full (every flusher busy retrying), it waits for
// room until e's context ends or close begins. After close, or when it gave up, it only logs: the
// message will be delivered again.
func (a *acker) enqueue(e ackEntry) {
	ctx := e.ctx
	a.mu.RLock()
	defer a.mu.RUnlock()
	if !a.closed {
		select {
		case a.in <- e:
			return
		case <-a.closing:
		case <-a.ctx.Done():
		case <-ctx.Done():
		}
	}
	a.log.WarnContext(ctx, "consumer stopped before the message could be deleted; it will be delivered again")
}

// close flushes what is pending and waits for the batches in flight, for at most finalTimeout
// beyond the calls' own bounds and until deadline at the latest; then it cuts them. An add still
// waiting for room gives up. The deletions still owed to the probe are given up, and counted.
func (a *acker) close(deadline time.Time) {
	a.closingOnce.Do(func() { close(a.closing) })
	a.mu.Lock()
	if !a.closed {
		a.closed = true
		close(a.in)
	}
	a.mu.Unlock()
	t := time.NewTimer(max(time.Until(earliest(time.Now().Add(callTimeout+finalTimeout), deadline)), 0))
	defer t.Stop()
	select {
	case <-a.done:
	case <-t.C:
		select {
		case <-a.done:
		default:
			a.log.Warn("pending deletions did not finish in time; those messages will be delivered again")
			a.cancel()
			<-a.done
		}
	}
	a.cancel()
	a.outMu.Lock()
	owed := a.owed
	a.owed = nil
	a.outMu.Unlock()
	a.givenUp(owed, "the consumer stopped")
}

func (a *acker) run() {
	defer close(a.done)
	var (
		batch    []ackEntry
		timer    *time.Timer
		timerC   <-chan time.Time
		flushers sync.WaitGroup
		sem      = make(chan struct{}, ackFlushers)
	)
	flush := func() {
		if timer != nil {
			timer.Stop()
			timerC = nil
		}
		if len(batch) == 0 {
			return
		}
		b := batch
		batch = nil
		sem <- struct{}{}
		flushers.Go(func() {
			defer func() { <-sem }()
			a.flush(b)
		})
	}
	for {
		select {
		case e, ok := <-a.in:
			if !ok {
				flush()
				flushers.Wait()
				return
			}
			batch = append(batch, e)
			switch {
			case len(batch) == maxBatch:
				flush()
			case len(batch) == 1:
				if timer == nil {
					timer = time.NewTimer(ackDelay)
				} else {
					timer.Reset(ackDelay)
				}
				timerC = timer.C
			}
		case <-timerC:
			timerC = nil
			flush()
		}
	}
}

// flush deletes one batch, retrying whole-call errors and the entries the server failed by its own
// fault; entries failed by the sender's fault (an expired receipt handle...) are logged and counted.
// Entries given up for SQS's failure (the call's, the server's) are reported to outage.
func (a *acker) flush(batch []ackEntry) {
	pending := batch
	var deleted bool           // an entry was deleted: deletions work
	var unavailable []ackEntry // entries given up for SQS's failure
	defer func() { a.outage(deleted, unavailable) }()
	for attempt := 1; len(pending) > 0; attempt++ {
		entries := make([]types.DeleteMessageBatchRequestEntry, len(pending))
		for i, e := range pending {
			entries[i] = types.DeleteMessageBatchRequestEntry{Id: aws.String(strconv.Itoa(i)), ReceiptHandle: aws.String(e.d.handle)}
		}
		a.m.deleteSize.Observe(float64(len(entries)))
		ctx, cancel := context.WithTimeout(a.ctx, callTimeout)
		out, err := a.client.DeleteMessageBatch(ctx, &sqs.DeleteMessageBatchInput{QueueUrl: aws.String(a.queueURL), Entries: entries})
		cancel()
		if err != nil {
			err = queue.RedactHandles(err, handles(pending)...)
			if attempt >= ackAttempts || a.ctx.Err() != nil {
				// Not the shutdown cutting the call, nor the request's fault: SQS's failure, whose
				// entries the probe may still delete (they are counted as failed only if it does not).
				outage := a.ctx.Err() == nil && deleteOutage(err)
				for _, e := range pending {
					a.failed(e, fmt.Errorf("delete message batch: %w", err), !outage)
				}
				if outage {
					unavailable = append(unavailable, pending...)
				}
				return
			}
			a.log.Warn("delete message batch failed; retrying", "err", err, "entries", len(pending), "attempt", attempt)
			sleep(a.ctx, time.Duration(attempt)*100*time.Millisecond)
			continue
		}
		answered := make([]bool, len(pending))
		for _, s := range out.Successful {
			e, ok := entryOf(pending, s.Id)
			if !ok {
				continue
			}
			answered[e.i] = true
			deleted = true
			a.deleted(e.ackEntry)
			a.log.DebugContext(e.ctx, "message deleted", "dead_lettered", e.dlq)
		}
		var retry []ackEntry
		for _, f := range out.Failed {
			e, ok := entryOf(pending, f.Id)
			if !ok || answered[e.i] {
				continue
			}
			answered[e.i] = true
			if !f.SenderFault && attempt < ackAttempts {
				retry = append(retry, e.ackEntry)
				continue
			}
			if !f.SenderFault {
				unavailable = append(unavailable, e.ackEntry)
			}
			a.failed(e.ackEntry, fmt.Errorf("delete message: %s: %s (sender fault: %t)", aws.ToString(f.Code),
				redact.New(e.d.handle).String(aws.ToString(f.Message)), f.SenderFault), f.SenderFault)
		}
		// An entry the answer names neither way is treated as the server's failure.
		for i, e := range pending {
			if answered[i] {
				continue
			}
			if attempt < ackAttempts {
				retry = append(retry, e)
				continue
			}
			unavailable = append(unavailable, e)
			a.failed(e, errors.New("delete message: the server's answer did not name the entry"), false)
		}
		pending = retry
		if len(pending) > 0 {
			a.log.Warn("delete message batch: server failed some entries; retrying them", "entries", len(pending), "attempt", attempt)
			sleep(a.ctx, time.Duration(attempt)*100*time.Millisecond)
		}
	}
}

// outage counts the batches given up for SQS's failure in a row, each having deleted nothing (a
// batch that deleted any entry ends the run: SQS deletes, and the entries it failed are theirs to
// retry, by redelivery) and, after ackOutageBatches of them, pauses the receivers under
// dependencySQS. It keeps the last entries given up (at most maxBatch) for probe; those it no
// longer keeps are given up for good.
func (a *acker) outage(deleted bool, unavailable []ackEntry) {
	a.outMu.Lock()
	var dropped []ackEntry
	switch {
	case len(unavailable) > 0:
		if deleted {
			a.failedRun = 0
		} else {
			a.failedRun++
		}
		a.owed = append(a.owed, unavailable...)
		n := max(len(a.owed)-maxBatch, 0)
		dropped = slices.Clone(a.owed[:n])
		a.owed = slices.Clone(a.owed[n:])
	case deleted:
		dropped = a.owed
		a.failedRun, a.owed = 0, nil
	}
	pause, run := len(unavailable) > 0 && a.failedRun >= ackOutageBatches, a.failedRun
	a.outMu.Unlock()
	a.givenUp(dropped, "newer deletions failed since")
	if pause && a.gate != nil {
		a.log.Error("deleting settled messages keeps failing: pausing the receivers until SQS deletes again",
			"failed_batches", run)
		a.gate.failing(dependencySQS)
	}
}

// probe is the gate's check of dependencySQS: it deletes again the last messages whose deletion
// was given up for SQS's failure. It passes when SQS answered for each of them (deleted, or
// refused for the entry's own fault: the handle expired meanwhile). With none to retry, it asks
// for the queue's attributes.
func (a *acker) probe(ctx context.Context) error {
	a.outMu.Lock()
	owed := slices.Clone(a.owed)
	a.outMu.Unlock()
	if len(owed) == 0 {
		_, err := a.client.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{
			QueueUrl:       aws.String(a.queueURL),
			AttributeNames: []types.QueueAttributeName{types.QueueAttributeNameApproximateNumberOfMessages},
		})
		if err != nil {
			return fmt.Errorf("get attributes of queue %s: %w", a.queueURL, err)
		}
		return nil
	}
	entries := make([]types.DeleteMessageBatchRequestEntry, len(owed))
	for i, e := range owed {
		entries[i] = types.DeleteMessageBatchRequestEntry{Id: aws.String(strconv.Itoa(i)), ReceiptHandle: aws.String(e.d.handle)}
	}
	out, err := a.client.DeleteMessageBatch(ctx, &sqs.DeleteMessageBatchInput{QueueUrl: aws.String(a.queueURL), Entries: entries})
	if err != nil {
		return fmt.Errorf("delete message batch (%d messages whose deletion failed): %w", len(owed), queue.RedactHandles(err, handles(owed)...))
	}
	// What SQS answered for each entry: deleted, or refused for the entry's own fault (its handle
	// expired meanwhile); either settles it.
	const (
		unanswered = iota
		deletedNow
		refused
	)
	outcome := make([]int, len(owed))
	refusals := make([]string, len(owed))
	var serverFailed error
	for _, f := range out.Failed {
		e, ok := entryOf(owed, f.Id)
		if !ok {
			continue
		}
		msg := fmt.Sprintf("%s: %s", aws.ToString(f.Code), redact.New(e.d.handle).String(aws.ToString(f.Message)))
		if !f.SenderFault {
			serverFailed = errors.New("delete message: " + msg)
			continue
		}
		outcome[e.i], refusals[e.i] = refused, msg
	}
	for _, r := range out.Successful {
		if e, ok := entryOf(owed, r.Id); ok && outcome[e.i] == unanswered {
			outcome[e.i] = deletedNow
		}
	}
	for i, e := range owed {
		if outcome[i] == unanswered && serverFailed == nil {
			// Named neither way: not an answer for it.
			serverFailed = fmt.Errorf("delete message %s: the answer did not name it", e.d.id)
		}
	}
	// The entries SQS answered for are settled, even when others failed (a later probe must not
	// delete and count them again); those given up since stay owed. An entry outage no longer
	// keeps was given up, and counted, meanwhile: it is not counted again.
	a.outMu.Lock()
	defer a.outMu.Unlock()
	a.owed = slices.DeleteFunc(a.owed, func(e ackEntry) bool {
		i := slices.IndexFunc(owed, func(o ackEntry) bool { return o.d == e.d })
		if i < 0 {
			return false
		}
		switch outcome[i] {
		case deletedNow:
			a.deleted(e)
			a.log.InfoContext(e.ctx, "message deleted after its deletion had failed", "dead_lettered", e.dlq)
		case refused:
			a.m.ackFailed.Inc()
			a.log.WarnContext(e.ctx, "a deletion retried by the check of SQS was refused; the message will be delivered again",
				"err", refusals[i], "dead_lettered", e.dlq)
		default:
			return false
		}
		return true
	})
	if serverFailed != nil {
		return serverFailed
	}
	a.failedRun = 0 // SQS deletes again
	return nil
}

// deleteOutage reports whether a DeleteMessageBatch call's error is SQS's failure (or a permission
// or queue gone, which no retry of the entries fixes either) rather than the request's own fault.
func deleteOutage(err error) bool {
	var ae smithy.APIError
	if !errors.As(err, &ae) || ae.ErrorFault() != smithy.FaultClient {
		return true // the server's fault, a timeout, the network
	}
	code := ae.ErrorCode()
	return strings.Contains(code, "AccessDenied") || strings.Contains(code, "Throttl") ||
		strings.Contains(code, "NonExistentQueue") || code == "QueueDoesNotExist" ||
		strings.HasPrefix(code, "KMS") || code == "InvalidClientTokenId" || code == "ExpiredToken"
}

// handles returns the receipt handles of entries.
func handles(entries []ackEntry) []string {
	hs := make([]string, len(entries))
	for i, e := range entries {
		hs[i] = e.d.handle
	}
	return hs
}

// failed logs an entry whose deletion failed. final: it is given up for good, and counted in
// intake_messages_ack_failed_total; otherwise (SQS's failure) it goes to outage, which keeps the
// last ones for the probe to delete, and it is counted only if they are given up (givenUp).
func (a *acker) failed(e ackEntry, err error, final bool) {
	if final {
		a.m.ackFailed.Inc()
	}
	a.log.ErrorContext(e.ctx, "could not delete a settled message; it will be delivered again (processing is idempotent)",
		"err", err, "dead_lettered", e.dlq)
}

// givenUp counts in intake_messages_ack_failed_total the entries whose deletion failed for SQS's
// failure and that will not be retried any more (why).
func (a *acker) givenUp(entries []ackEntry, why string) {
	for _, e := range entries {
		a.m.ackFailed.Inc()
		a.log.DebugContext(e.ctx, "deletion given up; the message will be delivered again", "why", why, "dead_lettered", e.dlq)
	}
}

// deleted counts a deleted entry: in intake_messages_acked_total, or, dead-lettered, in
// intake_messages_dead_lettered_total{reason}.
func (a *acker) deleted(e ackEntry) {
	if e.dlq {
		a.m.deadLettered.WithLabelValues(e.reason).Inc()
		return
	}
	a.m.acked.Inc()
}

// indexedEntry is a pending entry and its index in the batch (its request id).
type indexedEntry struct {
	ackEntry
	i int
}

func entryOf(pending []ackEntry, id *string) (indexedEntry, bool) {
	i, err := strconv.Atoi(aws.ToString(id))
	if err != nil || i < 0 || i >= len(pending) {
		return indexedEntry{}, false
	}
	return indexedEntry{pending[i], i}, true
}
