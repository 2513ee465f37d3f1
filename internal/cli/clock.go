package cli

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/intakehq/intake/internal/telemetry"
)

// MaxClockSkew is how far a host's clock may be from PostgreSQL's before intake warns. A multipart
// upload's deadline is written by the API host's clock and its abort judged by the jobs host's,
// with a 2-minute grace of which a complete accepted just before the deadline may use 110 s: a skew
// above about 10 s eats that margin. asynq's lease recovery and the periodic tasks' IDs read the
// hosts' clocks too.
const MaxClockSkew = 5 * time.Second

// clockWatch measures this host's clock against PostgreSQL's after each passing readiness check of
// PostgreSQL (every 15 s, and on probes), exports it as intake_clock_skew_seconds, and logs a
// warning when it passes MaxClockSkew (once, until it is back within it).
type clockWatch struct {
	measure func(context.Context) (time.Duration, error)
	gauge   prometheus.Gauge
	log     *slog.Logger

	mu  sync.Mutex
	off bool // the last measurement was past MaxClockSkew
}

func newClockWatch(reg prometheus.Registerer, log *slog.Logger, measure func(context.Context) (time.Duration, error)) (*clockWatch, error) {
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: telemetry.Namespace, Name: "clock_skew_seconds",
		Help: "This host's clock minus PostgreSQL's, measured with each passing readiness check of PostgreSQL (positive: this host is ahead).",
	})
	if err := reg.Register(g); err != nil {
		return nil, err
	}
	return &clockWatch{measure: measure, gauge: g, log: log}, nil
}

// after returns check followed, when it passes, by a measurement of the clock; the measurement's
// own failure does not fail the check (it is logged at debug: the next check measures again).
func (w *clockWatch) after(check func(context.Context) error) func(context.Context) error {
	return func(ctx context.Context) error {
		if err := check(ctx); err != nil {
			return err
		}
		skew, err := w.measure(ctx)
		if err != nil {
			w.log.DebugContext(ctx, "clock not compared with postgres's", "err", err)
			return nil
		}
		w.record(ctx, skew)
		return nil
	}
}

func (w *clockWatch) record(ctx context.Context, skew time.Duration) {
	w.gauge.Set(skew.Seconds())
	off := skew > MaxClockSkew || skew < -MaxClockSkew
	w.mu.Lock()
	was := w.off
	w.off = off
	w.mu.Unlock()
	switch {
	case off && !was:
		w.log.WarnContext(ctx, "this host's clock is off postgres's by more than "+MaxClockSkew.String()+
			": deadlines written by one host and judged by another (multipart aborts, intent expiry) move by as much; synchronise the hosts' clocks (NTP)",
			"skew", skew.Round(time.Millisecond).String())
	case !off && was:
		w.log.InfoContext(ctx, "this host's clock agrees with postgres's again", "skew", skew.Round(time.Millisecond).String())
	}
}
