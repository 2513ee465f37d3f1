package pipeline

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/require"
)

// gaugeValue reads g.
func gaugeValue(t *testing.T, g prometheus.Gauge) float64 {
	t.Helper()
	var m dto.Metric
	require.NoError(t, g.Write(&m))
	return m.GetGauge().GetValue()
}

// queued is how many of owner's callers wait.
func (g *hashGate) queued(owner string) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.queues[owner])
}

// idle reports whether every slot is free and nobody waits or holds one.
func (g *hashGate) idle() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.free == g.n && len(g.held) == 0 && len(g.queues) == 0
}

// gateResult is what a waiter's acquire returned.
type gateResult struct {
	name    string
	release func()
	err     error
}

// queueWaiter calls acquire for owner in a goroutine, and returns once it waits in owner's queue:
// its result comes on got.
func queueWaiter(t *testing.T, g *hashGate, ctx context.Context, owner, name string, got chan<- gateResult) {
	t.Helper()
	before := g.queued(owner)
	go func() {
		release, err := g.acquire(ctx, owner)
		got <- gateResult{name: name, release: release, err: err}
	}()
	require.Eventually(t, func() bool { return g.queued(owner) == before+1 }, 10*time.Second, time.Millisecond,
		"%s queued", name)
}

// TestHashGateFair: a slot released goes to the waiting owner holding the fewest slots, not to the
// next of the owner holding them all; each owner's waiters take theirs in order; a waiter whose
// context ends gets the error and holds nothing.
func TestHashGateFair(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	waiting := prometheus.NewGauge(prometheus.GaugeOpts{Name: "w"})
	g := newHashGate(2, waiting)
	a1, err := g.acquire(ctx, "A")
	require.NoError(t, err)
	a2, err := g.acquire(ctx, "A")
	require.NoError(t, err)

	got := make(chan gateResult)
	for _, name := range []string{"A3", "A4", "A5"} {
		queueWaiter(t, g, ctx, "A", name, got)
	}
	queueWaiter(t, g, ctx, "B", "B1", got)
	require.Equal(t, 4.0, gaugeValue(t, waiting))

	// A cancelled waiter returns the error, leaves its queue, and holds nothing.
	cctx, cancel := context.WithCancel(ctx)
	cancelled := make(chan gateResult)
	queueWaiter(t, g, cctx, "A", "A6", cancelled)
	cancel()
	r := <-cancelled
	require.ErrorContains(t, r.err, "wait for a hash slot (2 hashes run at once)")
	require.ErrorIs(t, r.err, context.Canceled)
	require.Nil(t, r.release)
	require.Equal(t, 3, g.queued("A"))
	require.Equal(t, 4.0, gaugeValue(t, waiting))

	a1()
	a1() // a release counts once
	r = <-got
	require.Equal(t, "B1", r.name, "B holds none: it is served before A's next")
	require.NoError(t, r.err)
	require.Equal(t, 3, g.queued("A"), "A's waiters still wait")
	b1 := r.release

	releases := []func(){a2, b1}
	for _, want := range []string{"A3", "A4", "A5"} {
		releases[0]()
		releases = releases[1:]
		r = <-got
		require.Equal(t, want, r.name, "A's waiters in order")
		require.NoError(t, r.err)
		releases = append(releases, r.release)
	}
	require.Zero(t, gaugeValue(t, waiting))
	for _, release := range releases {
		release()
	}
	require.True(t, g.idle())
}

// TestHashGateHandedWhileCancelled: a slot handed to a waiter whose context ended at the same time
// is not lost: it goes to the next waiter (or back to the pool).
func TestHashGateHandedWhileCancelled(t *testing.T) {
	t.Parallel()
	var failed int
	for range 100 {
		g := newHashGate(1, nil)
		_, err := g.acquire(context.Background(), "H") // released below, under the lock
		require.NoError(t, err)
		xctx, cancel := context.WithCancel(context.Background())
		xs, ys := make(chan gateResult, 1), make(chan gateResult, 1)
		queueWaiter(t, g, xctx, "X", "X", xs)
		queueWaiter(t, g, context.Background(), "Y", "Y", ys)

		// X's context ends and X is handed the slot under one lock: X sees both.
		g.mu.Lock()
		cancel()
		g.releaseLocked("H")
		g.mu.Unlock()

		x := <-xs
		if x.err != nil {
			failed++
			require.ErrorIs(t, x.err, context.Canceled)
		} else {
			x.release()
		}
		y := <-ys
		require.NoError(t, y.err, "the slot went on to Y")
		y.release()
		require.True(t, g.idle(), "no slot leaked")
	}
	require.NotZero(t, failed, "some waiters took the cancelled path with a slot in hand")
}

// TestHashGateStress: owners acquire, release and give up at random; never more than n slots are
// held at once, and at the end all are free.
func TestHashGateStress(t *testing.T) {
	t.Parallel()
	const n = 3
	waiting := prometheus.NewGauge(prometheus.GaugeOpts{Name: "w"})
	g := newHashGate(n, waiting)
	owners := []string{"", "a", "b", "c", "d"}
	var holding, most, acquired, gaveUp atomic.Int64
	var wg sync.WaitGroup
	for i := range 40 {
		wg.Go(func() {
			owner := owners[i%len(owners)]
			for range 300 {
				ctx, cancel := context.Background(), context.CancelFunc(func() {})
				switch rand.IntN(3) {
				case 0:
					ctx, cancel = context.WithTimeout(ctx, time.Duration(rand.IntN(200))*time.Microsecond)
				case 1:
					ctx, cancel = context.WithCancel(ctx)
					cancel()
				}
				release, err := g.acquire(ctx, owner)
				cancel()
				if err != nil {
					if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
						t.Errorf("acquire: %v", err)
						return
					}
					gaveUp.Add(1)
					continue
				}
				acquired.Add(1)
				h := holding.Add(1)
				for m := most.Load(); h > m && !most.CompareAndSwap(m, h); m = most.Load() {
				}
				if rand.IntN(4) == 0 {
					time.Sleep(time.Duration(rand.IntN(50)) * time.Microsecond)
				}
				holding.Add(-1)
				release()
				if rand.IntN(8) == 0 {
					release()
				}
			}
		})
	}
	wg.Wait()
	require.LessOrEqual(t, most.Load(), int64(n), "slots held at once")
	require.NotZero(t, acquired.Load())
	require.NotZero(t, gaveUp.Load())
	require.Zero(t, gaugeValue(t, waiting))

	// All slots are free: n acquires succeed at once, even with a context already ended.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for i := range n {
		release, err := g.acquire(ctx, owners[i])
		require.NoError(t, err, "slot %d", i)
		defer release()
	}
}
