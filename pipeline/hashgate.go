package pipeline

import (
	"context"
	"fmt"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// hashGate holds n hash slots (ProcessorConfig.HashConcurrency) shared fairly between owners (an
// intent's Owner; "" for objects without one). A slot free while nobody waits is taken at once;
// otherwise the caller waits in its owner's FIFO, and each slot released goes to the waiting owner
// holding the fewest slots (ties: the owner whose oldest waiter has waited longest). One owner's
// many large uploads thus take turns with another owner's one, instead of queueing it behind all
// of them past its message timeout.
//
// A waiter is woken by the release that hands it a slot: no goroutine runs per waiter besides the
// caller's own.
type hashGate struct {
	n int
	// waitingGauge counts the callers waiting (intake_hashes_waiting); nil: none.
	waitingGauge prometheus.Gauge

	mu   sync.Mutex
	free int
	// held counts the slots held per owner (owners holding none are absent).
	held map[string]int
	// queues holds each owner's waiters, oldest first (owners with none are absent).
	queues map[string][]*hashWaiter
	// seq numbers the waiters in arrival order.
	seq uint64
}

// hashWaiter is a caller waiting for a slot.
type hashWaiter struct {
	owner string
	seq   uint64
	// ready is closed when the waiter is handed a slot (granted, under hashGate.mu).
	ready   chan struct{}
	granted bool
}

// newHashGate returns a gate of n slots (n > 0) whose waiters are counted by waiting (nil: none).
func newHashGate(n int, waiting prometheus.Gauge) *hashGate {
	return &hashGate{
		n: n, waitingGauge: waiting, free: n,
		held: make(map[string]int), queues: make(map[string][]*hashWaiter),
	}
}

// acquire takes a slot for owner, waiting for its turn within ctx, and returns its release (which
// may be called more than once; only the first counts). When ctx ends first, acquire holds no slot
// and returns an error wrapping ctx.Err().
func (g *hashGate) acquire(ctx context.Context, owner string) (release func(), err error) {
	g.mu.Lock()
	if g.free > 0 && len(g.queues) == 0 {
		g.free--
		g.held[owner]++
		g.mu.Unlock()
		return g.releaser(owner), nil
	}
	g.seq++
	w := &hashWaiter{owner: owner, seq: g.seq, ready: make(chan struct{})}
	g.queues[owner] = append(g.queues[owner], w)
	g.gauge(1)
	g.mu.Unlock()

	select {
	case <-w.ready:
		return g.releaser(owner), nil
	case <-ctx.Done():
	}
	g.mu.Lock()
	if w.granted {
		// Handed a slot as ctx ended: pass it on, to the next waiter or the pool.
		g.releaseLocked(owner)
	} else {
		g.dequeue(w)
		g.gauge(-1)
	}
	g.mu.Unlock()
	return nil, fmt.Errorf("wait for a hash slot (%d hashes run at once): %w", g.n, ctx.Err())
}

// tryAcquire takes a slot for owner when one is free and nobody waits (a caller never passes the
// waiters), and returns its release; ok is false, and nothing is held, otherwise.
func (g *hashGate) tryAcquire(owner string) (release func(), ok bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.free == 0 || len(g.queues) > 0 {
		return nil, false
	}
	g.free--
	g.held[owner]++
	return g.releaser(owner), true
}

// releaser returns the release of a slot held by owner.
func (g *hashGate) releaser(owner string) func() {
	var once sync.Once
	return func() {
		once.Do(func() {
			g.mu.Lock()
			g.releaseLocked(owner)
			g.mu.Unlock()
		})
	}
}

// releaseLocked gives back a slot held by owner: to the waiting owner holding the fewest slots,
// else to the pool. g.mu is held.
func (g *hashGate) releaseLocked(owner string) {
	if g.held[owner]--; g.held[owner] <= 0 {
		delete(g.held, owner)
	}
	var next []*hashWaiter
	for o, q := range g.queues {
		if next == nil || g.held[o] < g.held[next[0].owner] ||
			(g.held[o] == g.held[next[0].owner] && q[0].seq < next[0].seq) {
			next = q
		}
	}
	if next == nil {
		g.free++
		return
	}
	w := next[0]
	g.dequeue(w)
	g.gauge(-1)
	g.held[w.owner]++
	w.granted = true
	close(w.ready)
}

// dequeue removes w from its owner's queue. g.mu is held.
func (g *hashGate) dequeue(w *hashWaiter) {
	q := g.queues[w.owner]
	for i, x := range q {
		if x == w {
			copy(q[i:], q[i+1:])
			q[len(q)-1] = nil
			q = q[:len(q)-1]
			break
		}
	}
	if len(q) == 0 {
		delete(g.queues, w.owner)
	} else {
		g.queues[w.owner] = q
	}
}

func (g *hashGate) gauge(d float64) {
	if g.waitingGauge != nil {
		g.waitingGauge.Add(d)
	}
}
