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
	// OutcomeSuccess: the run succeeded.
	OutcomeSuccess = "success"
	// OutcomeRetry: the run failed and the task will run again (asynq's backoff).
	OutcomeRetry = "retry"
	// OutcomeFailed: the run failed for good (permanent error, or no retry left): archived.
	OutcomeFailed = "failed"
	// OutcomeEarly: a deadline abort ran before its deadline and grace ([EarlyError]), or a run
	// was deferred on purpose (a webhook delivery whose endpoint had its share of the workers);
	// nothing was done, and it runs again later, using up no retry. Not a failure.
	OutcomeEarly = "early"
	// OutcomeInterrupted: the run's context was cancelled under it (the server shutting down:
	// asynq puts the task back; a cancel through asynq's Inspector; a lost lease); it runs again.
	OutcomeInterrupted = "interrupted"
)

// Outcomes lists every outcome label.
var Outcomes = []string{OutcomeSuccess, OutcomeRetry, OutcomeFailed, OutcomeEarly, OutcomeInterrupted}

// Metrics are the jobs' Prometheus metrics (the multipart ones are internal/multipart's). Create
// one per registry with NewMetrics. A nil *Metrics records nothing.
type Metrics struct {
	// Tasks counts finished task runs by type and outcome.
	Tasks *prometheus.CounterVec
	// Duration observes task run time by type.
	Duration *prometheus.HistogramVec
}

// NewMetrics creates the metrics and registers them on reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		Tasks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: telemetry.Namespace, Name: "tasks_total",
			Help: "asynq task runs by type and outcome (success, retry, failed, early, interrupted).",
		}, []string{"type", "outcome"}),
		Duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: telemetry.Namespace, Name: "task_duration_seconds",
			Help:    "Duration of asynq task runs by type.",
			Buckets: []float64{0.005, 0.025, 0.1, 0.25, 1, 2.5, 10, 30, 60, 300, 900, 3600},
		}, []string{"type"}),
	}
	var errs []error
	for _, c := range []prometheus.Collector{m.Tasks, m.Duration} {
		errs = append(errs, reg.Register(c))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("register jobs metrics: %w", err)
	}
	for _, t := range tasks.Types {
		m.Duration.WithLabelValues(t)
		for _, o := range Outcomes {
			m.Tasks.WithLabelValues(t, o)
		}
	}
	return m, nil
}
