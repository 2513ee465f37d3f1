package consumer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
)

// ackAttempts bounds the DeleteMessageBatch attempts of one batch (whole-call errors and entries
// failed by the server's fault).
const ackAttempts = 4

// acker deletes settled messages in batches of up to ten, flushing a partial batch after ackDelay.
// Several batches may be in flight at once.
type acker struct {
	client   Client
	queueURL string
	log      *slog.Logger
	m        *metrics
	ctx      context.Context
	cancel   context.CancelFunc

	mu     sync.Mutex
	closed bool
	in     chan ackEntry
	done   chan struct{}
}

type ackEntry struct {
	ctx context.Context // carries the message_id for logs
	d   *delivery
	dlq bool // deleted after being sent to the dead-letter queue
}

func newAcker(ctx context.Context, client Client, queueURL string, log *slog.Logger, m *metrics) *acker {
	ctx, cancel := context.WithCancel(ctx)
	a := &acker{
		client: client, queueURL: queueURL, log: log, m: m, ctx: ctx, cancel: cancel,
		in: make(chan ackEntry, 4*maxBatch), done: make(chan struct{}),
	}
	go a.run()
	return a
}

// add queues the message for deletion. After close it only logs: the message will be delivered
// again.
func (a *acker) add(ctx context.Context, d *delivery, dlq bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		a.log.WarnContext(ctx, "consumer stopped before the message could be deleted; it will be delivered again")
		return
	}
	a.in <- ackEntry{ctx: ctx, d: d, dlq: dlq}
}

// close flushes what is pending and waits for the batches in flight, for at most finalTimeout
// beyond the calls' own bounds.
func (a *acker) close() {
	a.mu.Lock()
	if !a.closed {
		a.closed = true
		close(a.in)
	}
	a.mu.Unlock()
	t := time.NewTimer(callTimeout + finalTimeout)
	defer t.Stop()
	select {
	case <-a.done:
	case <-t.C:
		a.log.Warn("pending deletions did not finish in time; those messages will be delivered again")
		a.cancel()
		<-a.done
	}
	a.cancel()
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
func (a *acker) flush(batch []ackEntry) {
	pending := batch
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
			if attempt >= ackAttempts || a.ctx.Err() != nil {
				for _, e := range pending {
					a.failed(e, fmt.Errorf("delete message batch: %w", err))
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
			if !e.dlq {
				a.m.acked.Inc()
			}
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
			a.failed(e.ackEntry, fmt.Errorf("delete message: %s: %s (sender fault: %t)", aws.ToString(f.Code), aws.ToString(f.Message), f.SenderFault))
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
			a.failed(e, errors.New("delete message: the server's answer did not name the entry"))
		}
		pending = retry
		if len(pending) > 0 {
			a.log.Warn("delete message batch: server failed some entries; retrying them", "entries", len(pending), "attempt", attempt)
			sleep(a.ctx, time.Duration(attempt)*100*time.Millisecond)
		}
	}
}

func (a *acker) failed(e ackEntry, err error) {
	a.m.ackFailed.Inc()
	a.log.ErrorContext(e.ctx, "could not delete a settled message; it will be delivered again (processing is idempotent)",
		"err", err, "dead_lettered", e.dlq)
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
