package ratelimit

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/require"

	"github.com/intakehq/intake/internal/problem"
)

// clock is a settable clock for a PerOwner.
type clock struct{ t time.Time }

func (c *clock) now() time.Time      { return c.t }
func (c *clock) add(d time.Duration) { c.t = c.t.Add(d) }
func newAt(c *clock, rate float64, burst int) *PerOwner {
	p := New(rate, burst)
	p.now = c.now
	return p
}

func TestNilAllowsEverything(t *testing.T) {
	require.Nil(t, New(0, 10))
	require.Nil(t, New(-1, 10))
	var p *PerOwner
	for range 1000 {
		require.True(t, p.Allow("acme").OK)
	}
}

func TestBurstThenRate(t *testing.T) {
	c := &clock{t: time.Unix(1_700_000_000, 0)}
	p := newAt(c, 10, 5) // 10 per second, 5 at once
	refused := 0
	allow := func(owner string) Decision {
		d := p.Allow(owner)
		if !d.OK {
			refused++
		}
		return d
	}
	for i := range 5 {
		require.True(t, allow("acme").OK, "request %d of the burst", i)
	}
	d := allow("acme")
	require.False(t, d.OK, "the sixth at the same instant")
	require.True(t, d.Warn, "the first refusal is reported")
	require.InDelta(t, 100*time.Millisecond, d.RetryAfter, float64(time.Millisecond), "one token comes back in 1/10 s")

	// Another owner is not charged for acme's requests.
	require.True(t, allow("globex").OK)

	c.add(50 * time.Millisecond)
	d = allow("acme")
	require.False(t, d.OK)
	require.False(t, d.Warn, "one report per owner per minute")
	require.InDelta(t, 50*time.Millisecond, d.RetryAfter, float64(time.Millisecond))

	c.add(50 * time.Millisecond)
	require.True(t, allow("acme").OK, "a token came back")
	require.False(t, allow("acme").OK, "and only one")

	// Over a long run the owner gets the rate, not more.
	allowed := 0
	for range 1000 { // 10 s in steps of 10 ms, two requests in each
		c.add(10 * time.Millisecond)
		for range 2 {
			if allow("acme").OK {
				allowed++
			}
		}
	}
	require.InDelta(t, 100, allowed, 1, "10 per second for 10 s")
	var m dto.Metric
	require.NoError(t, p.refused.Write(&m))
	require.Equal(t, float64(refused), m.GetCounter().GetValue(), "every refusal counted")
}

func TestWarnOncePerMinute(t *testing.T) {
	c := &clock{t: time.Unix(1_700_000_000, 0)}
	p := newAt(c, 1, 1)
	require.True(t, p.Allow("acme").OK)
	warns := 0
	for range 130 { // 65 s, two requests each half second: refusals at 0.5 s and 60.5 s reported
		c.add(500 * time.Millisecond)
		for range 2 { // the first takes the token that came back, if any
			if d := p.Allow("acme"); !d.OK && d.Warn {
				warns++
			}
		}
	}
	require.Equal(t, 2, warns)
}

func TestSweepForgetsIdleOwners(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	c := &clock{t: t0}
	p := newAt(c, 100, 10)
	drain := func(owner string) (warned bool) {
		for {
			d := p.Allow(owner)
			if !d.OK {
				return d.Warn
			}
		}
	}
	for i := range 500 {
		require.True(t, p.Allow(fmt.Sprintf("owner-%d", i)).OK)
	}
	require.Equal(t, 500, p.size())

	c.t = t0.Add(30 * time.Second)
	require.True(t, drain("busy"), "busy's first refusal is reported")

	// A minute on, every bucket is full again: those of owners never refused are dropped; busy's,
	// refused 30 s ago, is kept, so that its next refusal in the minute is not reported again.
	c.t = t0.Add(sweepEvery)
	require.True(t, p.Allow("probe").OK)
	require.Equal(t, 2, p.size(), "busy and probe")
	require.True(t, p.Allow("owner-7").OK, "an owner seen again starts from a full bucket")

	c.t = t0.Add(80 * time.Second)
	require.False(t, drain("busy"), "50 s after the last report: not reported")
	c.t = t0.Add(95 * time.Second)
	require.True(t, drain("busy"), "65 s after: reported")

	// Another minute on and idle, every bucket goes.
	c.t = t0.Add(95*time.Second + sweepEvery)
	require.True(t, p.Allow("x").OK)
	require.Equal(t, 1, p.size())
}

func TestConcurrentOwners(t *testing.T) {
	p := New(1, 50) // a token a second: within the test each owner has its burst and no more
	var wg sync.WaitGroup
	allowed := make([]int, 8)
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 200 {
				if p.Allow(fmt.Sprintf("owner-%d", g%4)).OK {
					allowed[g]++
				}
			}
		}()
	}
	wg.Wait()
	for o := range 4 {
		got := allowed[o] + allowed[o+4]
		require.GreaterOrEqual(t, got, 50, "owner-%d", o)
		require.LessOrEqual(t, got, 52, "owner-%d: its burst, and the tokens of at most a second or two", o)
	}
}

// BenchmarkAllow is the limiter's cost per request, as the API pays it: 64 goroutines (the load
// benchmark's connections) of one owner, at a rate never reached, and of 1,000 owners.
func BenchmarkAllow(b *testing.B) {
	for _, owners := range []int{1, 1000} {
		b.Run(fmt.Sprintf("owners=%d", owners), func(b *testing.B) {
			p := New(1e9, 1e9)
			names := make([]string, owners)
			for i := range names {
				names[i] = fmt.Sprintf("owner-%d", i)
			}
			b.SetParallelism(32) // 64 goroutines on 2 cores
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				i := 0
				for pb.Next() {
					if !p.Allow(names[i%owners]).OK {
						b.Fatal("refused")
					}
					i++
				}
			})
		})
	}
}

// TestRefuse: a handler's answer is nil while the owner has tokens, then 429 rate-limited with the
// time until its next token in RetryAfter; the first refusal of an owner in a minute is logged
// with the owner, the next ones are not; a nil limiter refuses nothing.
func TestRefuse(t *testing.T) {
	var nilLimiter *PerOwner
	require.Nil(t, nilLimiter.Refuse(context.Background(), slog.New(slog.DiscardHandler), "acme"))

	c := &clock{t: time.Unix(1_700_000_000, 0)}
	p := newAt(c, 2, 1)
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	require.Nil(t, p.Refuse(context.Background(), log, "acme"))
	pr := p.Refuse(context.Background(), log, "acme")
	require.NotNil(t, pr)
	require.Equal(t, 429, pr.Status)
	require.Equal(t, problem.RateLimited.With("").Type, pr.Type)
	require.Equal(t, 500*time.Millisecond, pr.RetryAfter)
	require.Contains(t, pr.Detail, "more than 2 requests per second (1 at once)")
	require.NotNil(t, p.Refuse(context.Background(), log, "acme"))
	require.Equal(t, 1, strings.Count(logs.String(), "owner rate limited"), logs.String())
	require.Contains(t, logs.String(), "owner=acme")
}
