package store

import (
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// batcher gathers the calls of concurrent callers into batches, each run by one statement (or one
// pgx batch) and one commit, instead of one of each per call: group commit. The IntentWriter and
// the batched Records use it.
//
// There is no timer. Callers queue their call; each of the committer goroutines takes the first
// queued call and every other call already queued (up to maxBatch) and runs them together. While
// the committers are busy, new calls wait in the queue for the next free one, so batches grow with
// the load and a call never waits for more than the batches in progress before its own. When idle,
// a call runs at once, alone. The queue holds 2×maxBatch×committers calls; beyond that callers
// block (back-pressure), respecting their context.
//
// A call whose context ends first returns ctx.Err() at once; if no committer has taken it yet it
// is skipped, otherwise it may still be carried out (its result is dropped). Each batch runs under
// its own context, bounded by timeout, not under any caller's.
//
// newBatcher starts the committers; close runs every queued call and waits for them. After close,
// do runs the call itself through direct, on the caller's goroutine.
type batcher[A, R any] struct {
	maxBatch int
	timeout  time.Duration
	// run carries out calls (one or more) and must answer every one of them.
	run func(ctx context.Context, calls []*call[A, R])
	// direct carries out one call without batching (after close).
	direct func(ctx context.Context, arg A) (R, error)
	// sizes observes the calls per batch.
	sizes prometheus.Observer

	// mu guards closed against sends on reqs: senders hold it for reading while sending, close
	// takes it for writing before closing reqs.
	mu     sync.RWMutex
	closed bool
	reqs   chan *call[A, R]
	wg     sync.WaitGroup
}

// call is one caller's argument and where its result goes (buffered: a committer never blocks on a
// caller that has given up).
type call[A, R any] struct {
	ctx  context.Context
	arg  A
	done chan result[R]
}

type result[R any] struct {
	val R
	err error
}

// answer delivers the result of c (exactly once per call).
func (c *call[A, R]) answer(val R, err error) { c.done <- result[R]{val, err} }

func newBatcher[A, R any](committers, maxBatch int, timeout time.Duration, sizes prometheus.Observer,
	run func(context.Context, []*call[A, R]), direct func(context.Context, A) (R, error)) *batcher[A, R] {
	committers, maxBatch = max(committers, 1), max(maxBatch, 1)
	b := &batcher[A, R]{
		maxBatch: maxBatch, timeout: timeout, run: run, direct: direct, sizes: sizes,
		reqs: make(chan *call[A, R], 2*maxBatch*committers),
	}
	for range committers {
		b.wg.Go(b.commitLoop)
	}
	return b
}

// do queues arg and waits for its result, or for ctx to end.
func (b *batcher[A, R]) do(ctx context.Context, arg A) (R, error) {
	var zero R
	if err := ctx.Err(); err != nil {
		return zero, err
	}
	c := &call[A, R]{ctx: ctx, arg: arg, done: make(chan result[R], 1)}
	b.mu.RLock()
	if b.closed {
		b.mu.RUnlock()
		return b.direct(ctx, arg)
	}
	select {
	case b.reqs <- c:
		b.mu.RUnlock()
	case <-ctx.Done():
		b.mu.RUnlock()
		return zero, ctx.Err()
	}
	select {
	case r := <-c.done:
		return r.val, r.err
	case <-ctx.Done():
		select {
		case r := <-c.done: // done just as ctx ended: report what happened
			return r.val, r.err
		default:
			return zero, ctx.Err()
		}
	}
}

// close runs the queued calls, stops the committers and waits for them. It is idempotent.
func (b *batcher[A, R]) close() {
	b.mu.Lock()
	if !b.closed {
		b.closed = true
		close(b.reqs)
	}
	b.mu.Unlock()
	b.wg.Wait()
}

// queued is how many calls wait for a committer.
func (b *batcher[A, R]) queued() int { return len(b.reqs) }

// closing reports whether close has been called.
func (b *batcher[A, R]) closing() bool {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return b.closed
}

// commitLoop is one committer: it takes the first queued call, then every call already queued up
// to maxBatch, and runs them; it returns when reqs is closed and empty.
func (b *batcher[A, R]) commitLoop() {
	batch := make([]*call[A, R], 0, b.maxBatch)
	for first := range b.reqs {
		batch = append(batch[:0], first)
	fill:
		for len(batch) < b.maxBatch {
			select {
			case c, ok := <-b.reqs:
				if !ok {
					break fill
				}
				batch = append(batch, c)
			default:
				break fill
			}
		}
		// Skip calls whose caller has already gone: nobody waits for them.
		live := batch[:0]
		for _, c := range batch {
			if err := c.ctx.Err(); err != nil {
				var zero R
				c.answer(zero, err)
				continue
			}
			live = append(live, c)
		}
		if len(live) > 0 {
			b.sizes.Observe(float64(len(live)))
			ctx, cancel := context.WithTimeout(context.Background(), b.timeout)
			b.run(ctx, live)
			cancel()
		}
		clear(batch[:cap(batch)])
	}
}
