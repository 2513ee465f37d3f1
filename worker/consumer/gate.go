package consumer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// unknownDependency names the dependency of an outage error that does not say which one failed.
const unknownDependency = "unknown"

// Dependency is something the Processor needs, with a cheap check of it. While the consumer is
// paused by an outage of a dependency, it calls Check (not ReceiveMessage) to learn when the
// dependency is back.
type Dependency struct {
	// Name is the name the Processor's outage errors give it (pipeline.UnavailableError's
	// Dependency: "postgres", "s3").
	Name string
	// Check returns nil when the dependency works again: a ping that also refuses a read-only
	// database, a HeadBucket. Its context is bounded by a timeout.
	Check func(ctx context.Context) error
}

// gate pauses the receivers while a dependency of the Processor is down (see the package
// documentation, "Outages"). Closed, receivers pass; paused, they wait, and run's prober checks
// the dependencies that failed, with a jittered backoff, until every one passes.
type gate struct {
	checks       map[string]func(context.Context) error
	configured   []string // the dependencies of the configuration: those an outage of unknown checks
	min, max     time.Duration
	probeTimeout time.Duration
	gauge        *prometheus.GaugeVec
	log          *slog.Logger
	now          func() time.Time
	jitter       func(time.Duration) time.Duration

	mu      sync.Mutex
	paused  bool
	since   time.Time            // start of the current pause
	down    map[string]time.Time // dependencies that failed during the current pause, since when
	backoff time.Duration        // wait before the next probe
	next    time.Time            // when the next probe is due
	changed chan struct{}        // closed and replaced when the pause starts or ends
	epoch   uint64               // incremented whenever a pause starts

	// A check can pass while the work still fails (a lock makes every statement time out, yet
	// SELECT 1 answers). Until a message received after a resume succeeds, the resume is
	// unconfirmed: a new pause then starts from the backoff the last one reached, doubled.
	resumedAt   time.Time
	confirmed   bool
	lastBackoff time.Duration
}

func newGate(deps []Dependency, minPause, maxPause, probeTimeout time.Duration, gauge *prometheus.GaugeVec, log *slog.Logger) *gate {
	g := &gate{
		checks: map[string]func(context.Context) error{}, min: minPause, max: maxPause, probeTimeout: probeTimeout,
		gauge: gauge, log: log, now: time.Now, jitter: jitter, changed: make(chan struct{}), confirmed: true,
	}
	for _, d := range deps {
		g.checks[d.Name] = d.Check
		g.configured = append(g.configured, d.Name)
		gauge.WithLabelValues(d.Name).Set(0) // export the series at 0
	}
	// The acker pauses under "sqs" whether or not the configuration names a dependency so; its
	// series is exported at 0 too, so that an alert on it sees 0 before the first pause, not nothing.
	gauge.WithLabelValues(dependencySQS).Set(0)
	return g
}

// pass is a receiver's admission through the gate.
type pass struct {
	at    time.Time // when it was admitted
	epoch uint64
}

// wait blocks while receiving is paused and admits the caller.
func (g *gate) wait(ctx context.Context) (pass, error) {
	for {
		g.mu.Lock()
		if !g.paused {
			p := pass{at: g.now(), epoch: g.epoch}
			g.mu.Unlock()
			return p, nil
		}
		ch := g.changed
		g.mu.Unlock()
		select {
		case <-ctx.Done():
			return pass{}, ctx.Err()
		case <-ch:
		}
	}
}

// valid reports whether a pass is still good: no pause started since it was issued (a receiver
// that waited for worker slots, or whose long poll was under way, must not receive or process
// during a pause).
func (g *gate) valid(p pass) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return !g.paused && g.epoch == p.epoch
}

// readmit decides, after a long poll admitted with p returned, whether its messages may be
// processed, and under which pass. A pause under way: no (they would fail too). A pause that began
// and ended during the poll: yes, as if admitted now, after the resume (the dependency was checked
// since; hiding them would spend a receive each for nothing). No pause since p: yes, under p.
func (g *gate) readmit(p pass) (pass, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	switch {
	case g.paused:
		return p, false
	case g.epoch != p.epoch:
		return pass{at: g.now(), epoch: g.epoch}, true
	default:
		return p, true
	}
}

// unavailable records an outage of dep reported by a message processed now, whose receiver was
// admitted at polled, starting a pause if none is under way, and returns how long that message is
// to stay hidden: until the next probe is due, at least minHide.
//
// A message whose receiver was admitted before the last resume, reporting its failure after that
// resume, began its work before the check passed (a long inspection can outlast a whole pause):
// its failure tells nothing of the dependency since. It is hidden for minHide and starts no
// pause; the messages received after the resume tell whether the dependency is back.
func (g *gate) unavailable(dep string, polled time.Time, minHide time.Duration) time.Duration {
	g.mu.Lock()
	defer g.mu.Unlock()
	now := g.now()
	if !g.paused && polled.Before(g.resumedAt) {
		g.log.Debug("dependency unavailable for a message received before the last resume: hidden, no new pause",
			"dependency", dep, "resumed_at", g.resumedAt.UTC().Format(time.RFC3339Nano))
		return minHide
	}
	g.report(dep, now)
	return max(g.next.Sub(now), minHide)
}

// failing records an outage of dep found by other work than a message's processing (the deletion
// of settled messages), starting a pause if none is under way.
func (g *gate) failing(dep string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.report(dep, g.now())
}

// report records an outage of dep at now, starting a pause if none is under way. g.mu is held.
func (g *gate) report(dep string, now time.Time) {
	if dep == "" {
		dep = unknownDependency
	}
	if !g.paused {
		g.paused, g.since = true, now
		g.down = map[string]time.Time{}
		g.backoff = g.min
		if !g.confirmed && g.lastBackoff > 0 {
			g.backoff = min(2*g.lastBackoff, g.max)
		}
		g.next = now.Add(g.backoff)
		g.epoch++
		g.log.Warn("dependency unavailable: receivers paused; checking it until it is back",
			"dependency", dep, "first_check_in", g.backoff.String(), "resumed_unconfirmed", !g.confirmed)
		g.broadcast()
	}
	if _, known := g.down[dep]; !known {
		g.down[dep] = now
		g.gauge.WithLabelValues(dep).Set(1)
		if len(g.down) > 1 {
			g.log.Warn("another dependency unavailable during the pause", "dependency", dep)
		}
	}
}

// success records a committed message whose receiver was admitted at polled: one received after
// the last resume confirms it.
func (g *gate) success(polled time.Time) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.confirmed && !g.paused && !polled.Before(g.resumedAt) {
		g.confirmed, g.lastBackoff = true, 0
	}
}

// run is the prober: while paused, it waits for the next probe (the backoff, jittered), checks
// every dependency that failed and resumes the receivers when all pass; otherwise the backoff
// doubles up to max. It returns when ctx ends.
func (g *gate) run(ctx context.Context) {
	for {
		g.mu.Lock()
		paused, ch, wait := g.paused, g.changed, g.jitter(g.backoff)
		g.mu.Unlock()
		if !paused {
			select {
			case <-ctx.Done():
				return
			case <-ch:
			}
			continue
		}
		if !sleep(ctx, wait) {
			return
		}
		g.probe(ctx)
	}
}

// probe checks the dependencies that failed (every configured one for an outage of an unknown
// dependency) and resumes the receivers if all pass. It reports whether it resumed them.
//
// The checks run without the lock (each may take probeTimeout): a message can report another
// dependency meanwhile. Such a dependency is checked too before the receivers resume, in up to
// maxProbeRounds rounds; one still unchecked after them keeps the pause.
func (g *gate) probe(ctx context.Context) bool {
	checked := map[string]bool{}
	var errs []error
	for round := 0; ; round++ {
		g.mu.Lock()
		if !g.paused {
			g.mu.Unlock()
			return true
		}
		names := g.unchecked(checked)
		if len(names) == 0 || len(errs) > 0 {
			break // with g.mu held
		}
		if round == maxProbeRounds {
			errs = append(errs, fmt.Errorf("%s: reported during the check, not checked yet", strings.Join(names, ", ")))
			break
		}
		g.mu.Unlock()
		for _, name := range names {
			checked[name] = true
			check := g.checks[name]
			if check == nil {
				continue // nothing to check: the pause alone is the backoff
			}
			cctx, cancel := context.WithTimeout(ctx, g.probeTimeout)
			err := check(cctx)
			cancel()
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", name, err))
			}
		}
		if ctx.Err() != nil {
			return false
		}
	}
	defer g.mu.Unlock()
	now := g.now()
	if err := errors.Join(errs...); err != nil {
		g.backoff = min(2*g.backoff, g.max)
		g.next = now.Add(g.backoff)
		g.log.Info("dependency still unavailable", "err", err, "next_check_in", g.backoff.String(),
			"paused_for", now.Sub(g.since).Round(time.Millisecond).String())
		return false
	}
	g.log.Info("dependency available again: receivers resume", "dependencies", strings.Join(slices.Sorted(maps.Keys(g.down)), ","),
		"paused_for", now.Sub(g.since).Round(time.Millisecond).String())
	for dep := range g.down {
		g.gauge.WithLabelValues(dep).Set(0)
	}
	g.paused, g.down = false, nil
	g.resumedAt, g.confirmed, g.lastBackoff = now, false, g.backoff
	g.broadcast()
	return true
}

// check runs dep's check once, bounded by probeTimeout: nil when it passes or dep has none. An
// unknown dependency runs every configured check.
func (g *gate) check(ctx context.Context, dep string) error {
	names := []string{dep}
	if dep == unknownDependency {
		names = g.configured
	}
	var errs []error
	for _, name := range names {
		check := g.checks[name]
		if check == nil {
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, g.probeTimeout)
		err := check(cctx)
		cancel()
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
		}
	}
	return errors.Join(errs...)
}

// unchecked returns, sorted, the dependencies of the current pause that are not in checked: those
// found down, and every configured one when an outage named none. g.mu is held.
func (g *gate) unchecked(checked map[string]bool) []string {
	var names []string
	add := func(name string) {
		if !checked[name] && !slices.Contains(names, name) {
			names = append(names, name)
		}
	}
	for dep := range g.down {
		add(dep)
	}
	if _, ok := g.down[unknownDependency]; ok {
		for _, dep := range g.configured {
			add(dep)
		}
	}
	slices.Sort(names)
	return names
}

// pausedBy describes the current pause for readiness: nil when not paused.
func (g *gate) pausedBy() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.paused {
		return nil
	}
	return fmt.Errorf("paused: %s unavailable since %s", strings.Join(slices.Sorted(maps.Keys(g.down)), ", "),
		g.since.UTC().Format(time.RFC3339))
}

// close clears the paused gauges at shutdown.
func (g *gate) close() {
	g.mu.Lock()
	defer g.mu.Unlock()
	for dep := range g.down {
		g.gauge.WithLabelValues(dep).Set(0)
	}
}

func (g *gate) broadcast() {
	close(g.changed)
	g.changed = make(chan struct{})
}

// remaining is how long until the next check of the paused dependencies, at least minHide
// (minHide when not paused).
func (g *gate) remaining(minHide time.Duration) time.Duration {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.paused {
		return minHide
	}
	return max(g.next.Sub(g.now()), minHide)
}
