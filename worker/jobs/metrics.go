package jobs

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/intakehq/intake/internal/telemetry"
	"github.com/intakehq/intake/worker/tasks"
)

// Task outcomes (label outcome of intake_tasks_total).
const (
	OutcomeSuccess = "success"
	OutcomeRetry   = "retry"
	OutcomeFailed  = "failed"
)

// Abort reasons (label reason of intake_multipart_aborted_total, column multipart_aborts.reason).
const (
	ReasonDeadline = tasks.ReasonDeadline
	ReasonSweep    = "sweep"
	ReasonAPI      = tasks.ReasonAPI
)

// Metrics are the jobs' Prometheus metrics. Create one per registry with NewMetrics and share it
// between the server's middleware and the multipart handlers. A nil *Metrics records nothing.
type Metrics struct {
	// Tasks counts finished task runs by type and outcome.
	Tasks *prometheus.CounterVec
	// Duration observes task run time by type.
	Duration *prometheus.HistogramVec
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
		Tasks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: telemetry.Namespace, Name: "tasks_total",
			Help: "asynq task runs by type and outcome (success, retry, failed).",
		}, []string{"type", "outcome"}),
		Duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: telemetry.Namespace, Name: "task_duration_seconds",
			Help:    "Duration of asynq task runs by type.",
			Buckets: []float64{0.005, 0.025, 0.1, 0.25, 1, 2.5, 10, 30, 60, 300, 900, 3600},
		}, []string{"type"}),
		Aborted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: telemetry.Namespace, Name: "multipart_aborted_total",
			Help: "Multipart uploads aborted, by reason (deadline, sweep, api).",
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
	for _, c := range []prometheus.Collector{m.Tasks, m.Duration, m.Aborted, m.BytesReclaimed, m.SweepLastSuccess} {
		errs = append(errs, reg.Register(c))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("register jobs metrics: %w", err)
	}
	for _, r := range []string{ReasonDeadline, ReasonSweep, ReasonAPI} {
		m.Aborted.WithLabelValues(r)
	}
	for _, t := range tasks.Types {
		m.Duration.WithLabelValues(t)
		for _, o := range []string{OutcomeSuccess, OutcomeRetry, OutcomeFailed} {
			m.Tasks.WithLabelValues(t, o)
		}
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
