package consumer

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// gate pauses the receivers while a dependency of the Processor is down. It is a circuit breaker:
// closed (receive freely), open (nobody receives until the pause ends) and half-open (one receiver
// probes with one message). See the package documentation, "Outages".
type gate struct {
	min, max time.Duration
	gauge    prometheus.Gauge
	log      *slog.Logger
	now      func() time.Time

	mu       sync.Mutex
	paused   bool
	pausedAt time.Time     // start of the current pause
	until    time.Time     // end of the current pause
	pause    time.Duration // length of the current pause
	probing  bool          // a probe is out
	changed  chan struct{} // closed and replaced on every state change
	epoch    uint64        // incremented whenever a pause starts or grows
}

func newGate(minPause, maxPause time.Duration, gauge prometheus.Gauge, log *slog.Logger) *gate {
	return &gate{min: minPause, max: maxPause, gauge: gauge, log: log, now: time.Now, changed: make(chan struct{})}
}

// pass is a receiver's admission through the gate.
type pass struct {
	limit int       // how many messages it may receive
	probe bool      // it is the probe: report through success, unavailable, neutral or probeDone
	at    time.Time // when it was admitted
	epoch uint64
}

// wait blocks while receiving is paused and admits the caller.
func (g *gate) wait(ctx context.Context) (p pass, err error) {
	for {
		g.mu.Lock()
		if !g.paused {
			p = pass{limit: maxBatch, at: g.now(), epoch: g.epoch}
			g.mu.Unlock()
			return p, nil
		}
		ch := g.changed
		left := g.until.Sub(g.now())
		if left <= 0 && !g.probing {
			g.probing = true
			p = pass{limit: 1, probe: true, at: g.now(), epoch: g.epoch}
			g.mu.Unlock()
			return p, nil
		}
		g.mu.Unlock()

		var timer *time.Timer
		var timeout <-chan time.Time
		if left > 0 {
			timer = time.NewTimer(left)
			timeout = timer.C
		}
		select {
		case <-ctx.Done():
			err = ctx.Err()
		case <-ch:
		case <-timeout:
		}
		if timer != nil {
			timer.Stop()
		}
		if err != nil {
			return pass{}, err
		}
	}
}

// valid reports whether a pass is still good: no pause started or grew since it was issued (a
// receiver that waited for worker slots must not receive during a pause).
func (g *gate) valid(p pass) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return p.probe || g.epoch == p.epoch
}

// unavailable records an outage error of a message whose receiver was admitted at polled. Errors
// of messages admitted before the current pause began do not lengthen it.
func (g *gate) unavailable(polled time.Time, probe bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if probe {
		g.probing = false
	}
	now := g.now()
	switch {
	case !g.paused:
		g.paused, g.pause = true, g.min
		g.gauge.Set(1)
	case !probe && polled.Before(g.pausedAt):
		return
	default:
		g.pause = min(g.pause*2, g.max)
	}
	g.pausedAt, g.until = now, now.Add(g.pause)
	g.epoch++
	g.log.Warn("dependency unavailable: pausing receivers", "pause", g.pause.String())
	g.broadcast()
}

// success records a committed message polled at polled: a probe's, or any polled after the pause
// began, ends the pause.
func (g *gate) success(polled time.Time, probe bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if probe {
		g.probing = false
	}
	if !g.paused || (!probe && polled.Before(g.pausedAt)) {
		if probe {
			g.broadcast()
		}
		return
	}
	g.paused = false
	g.gauge.Set(0)
	g.log.Info("dependency available again: receivers resume", "paused_for", g.now().Sub(g.pausedAt).Round(time.Millisecond).String())
	g.broadcast()
}

// neutral records a result that says nothing about the dependency (a malformed message, another
// error). A probe's frees the way for the next probe.
func (g *gate) neutral(probe bool) {
	if !probe {
		return
	}
	g.probeDone()
}

// probeDone ends a probe without a verdict (it received nothing, or its receive failed).
func (g *gate) probeDone() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.probing = false
	g.broadcast()
}

// close clears the paused gauge at shutdown.
func (g *gate) close() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.gauge.Set(0)
}

func (g *gate) broadcast() {
	close(g.changed)
	g.changed = make(chan struct{})
}
