// Package ratelimit bounds the requests each owner (tenant) makes of one replica: a token bucket
// per owner (golang.org/x/time/rate), refilled at a steady rate up to a burst. The API and the jobs
// API share one [PerOwner], so that a tenant cannot make up for its limit on one route with
// another.
package ratelimit

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"github.com/intakehq/intake/internal/problem"
	"github.com/intakehq/intake/internal/telemetry"
)

// sweepEvery is how often Allow drops the buckets that are full again: a full bucket is the same
// as none, so the map holds the owners seen within the last minute or two (and those refused in
// the last minute), each a few hundred bytes; a sweep walks them all, under the lock.
const sweepEvery = time.Minute

// warnEvery is how often, per owner, a refusal is reported for logging (Decision.Warn).
const warnEvery = time.Minute

// PerOwner is a token bucket per owner. A nil *PerOwner allows everything. It is safe for
// concurrent use.
type PerOwner struct {
	limit   rate.Limit
	burst   int
	now     func() time.Time
	refused prometheus.Counter

	mu     sync.Mutex
	owners map[string]*bucket
	swept  time.Time
}

// bucket is one owner's tokens and when a refusal of its was last reported.
type bucket struct {
	tokens *rate.Limiter
	warned time.Time
}

// New returns a PerOwner allowing each owner perSecond requests per second on average and burst at
// once (burst below 1 counts as 1), or nil (no limit) when perSecond is not positive.
func New(perSecond float64, burst int) *PerOwner {
	if perSecond <= 0 {
		return nil
	}
	return &PerOwner{
		limit: rate.Limit(perSecond), burst: max(burst, 1), now: time.Now, owners: map[string]*bucket{},
		refused: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: telemetry.Namespace, Name: "api_rate_limited_total",
			Help: "Requests refused (429 rate-limited) because their owner passed INTAKE_API_OWNER_RATE on the replica.",
		}),
	}
}

// Decision is the answer of [PerOwner.Allow].
type Decision struct {
	// OK is true when the request may run.
	OK bool
	// RetryAfter, when refused, is how long until the owner has a token again.
	RetryAfter time.Duration
	// Warn, when refused, is true for the first refusal of the owner in a minute: the caller logs
	// it (one line per throttled owner per minute, not one per request).
	Warn bool
}

// Allow takes a token from owner's bucket, or refuses the request when the bucket is empty.
func (p *PerOwner) Allow(owner string) Decision {
	if p == nil {
		return Decision{OK: true}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	// Read under the lock: a time older than the bucket's last would be credited its interval
	// again (rate.Limiter takes it as no time elapsed, then moves its last time back to it).
	now := p.now()
	if now.Sub(p.swept) >= sweepEvery {
		p.sweep(now)
	}
	b := p.owners[owner]
	if b == nil {
		b = &bucket{tokens: rate.NewLimiter(p.limit, p.burst)}
		p.owners[owner] = b
	}
	if b.tokens.AllowN(now, 1) {
		return Decision{OK: true}
	}
	p.refused.Inc()
	d := Decision{RetryAfter: p.untilToken(b, now)}
	if now.Sub(b.warned) >= warnEvery {
		b.warned, d.Warn = now, true
	}
	return d
}

// Refuse is Allow for a handler: nil when owner's request may run, else the problem to answer, 429
// rate-limited with Retry-After the time until the owner's next token. The first refusal of an
// owner in a minute is logged on log (with the route's attributes of ctx), the others only counted.
func (p *PerOwner) Refuse(ctx context.Context, log *slog.Logger, owner string) *problem.Problem {
	d := p.Allow(owner)
	if d.OK {
		return nil
	}
	if d.Warn {
		log.WarnContext(ctx, "owner rate limited", "owner", owner, "rate", float64(p.limit), "burst", p.burst, "retry_after", d.RetryAfter)
	}
	pr := problem.RateLimited.With(fmt.Sprintf("more than %g requests per second (%d at once) of yours on this replica; retry after Retry-After", float64(p.limit), p.burst))
	pr.RetryAfter = d.RetryAfter
	return &pr
}

// untilToken is how long until b holds one token again (at least a millisecond).
func (p *PerOwner) untilToken(b *bucket, now time.Time) time.Duration {
	missing := 1 - b.tokens.TokensAt(now)
	return max(time.Duration(missing/float64(p.limit)*float64(time.Second)), time.Millisecond)
}

// sweep drops the buckets that are full again (and whose refusal report, if any, is older than
// warnEvery): an owner seen again starts from a full bucket, as it would have.
func (p *PerOwner) sweep(now time.Time) {
	p.swept = now
	for owner, b := range p.owners {
		if b.tokens.TokensAt(now) >= float64(p.burst) && now.Sub(b.warned) >= warnEvery {
			delete(p.owners, owner)
		}
	}
}

// size returns how many owners have a bucket.
func (p *PerOwner) size() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.owners)
}

// Describe implements [prometheus.Collector]: the refusals counter, intake_api_rate_limited_total.
func (p *PerOwner) Describe(ch chan<- *prometheus.Desc) { p.refused.Describe(ch) }

// Collect implements [prometheus.Collector].
func (p *PerOwner) Collect(ch chan<- prometheus.Metric) { p.refused.Collect(ch) }
