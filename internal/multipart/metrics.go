package multipart

import (
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/intakehq/intake/internal/telemetry"
)

// Metrics are the multipart Prometheus series. Create one per registry with NewMetrics and share
// it between every Service of the process. A nil *Metrics records nothing.
type Metrics struct {
	// Aborted counts multipart uploads really aborted (not those found gone), by reason.
	Aborted *prometheus.CounterVec
	// BytesReclaimed sums the part sizes of aborted uploads when ListParts gave them.
	BytesReclaimed prometheus.Counter
	// SweepLastSuccess is the Unix time the last complete sweep ended.
	SweepLastSuccess prometheus.Gauge
}

// NewMetrics creates the metrics and registers them on reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		Aborted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: telemetry.Namespace, Name: "multipart_aborted_total",
			Help: "Multipart uploads aborted, by reason (deadline, sweep, api, too_large).",
		}, []string{"reason"}),
		BytesReclaimed: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: telemetry.Namespace, Name: "bytes_reclaimed_total",
			Help: "Bytes of uploaded parts freed by aborting multipart uploads (when ListParts reported them).",
		}),
		SweepLastSuccess: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: telemetry.Namespace, Name: "sweep_last_success_timestamp_seconds",
			Help: "Unix time at which the last complete multipart sweep ended.",
		}),
	}
	var errs []error
	for _, c := range []prometheus.Collector{m.Aborted, m.BytesReclaimed, m.SweepLastSuccess} {
		errs = append(errs, reg.Register(c))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("register multipart metrics: %w", err)
	}
	for _, r := range Reasons {
		m.Aborted.WithLabelValues(r)
	}
	return m, nil
}

func (m *Metrics) aborted(reason string, bytes int64, bytesKnown bool) {
	if m == nil {
		return
	}
	m.Aborted.WithLabelValues(reason).Inc()
	if bytesKnown && bytes > 0 {
		m.BytesReclaimed.Add(float64(bytes))
	}
}

func (m *Metrics) swept(at time.Time) {
	if m == nil {
		return
	}
	m.SweepLastSuccess.Set(float64(at.UnixNano()) / 1e9)
}
