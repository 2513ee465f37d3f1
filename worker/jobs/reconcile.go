package jobs

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strconv"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/intakehq/intake/internal/reconcile"
	"github.com/intakehq/intake/internal/telemetry"
	"github.com/intakehq/intake/worker/tasks"
)

// TypeReconcile is the periodic reconcile of a bucket: compare it with the objects table and repair
// what differs, as `intake reconcile --fix` does. Only intake's scheduler enqueues it; it is not
// one of the tasks app backends or POST /v1/jobs may enqueue (tasks.Types).
const TypeReconcile = "objects:reconcile"

// Settings of the reconcile task.
const (
	// ReconcileMaxRetry is how often a failed reconcile is retried before the next period. One
	// that ran out of its time (ReconcileTimeout) is not retried: see there.
	ReconcileMaxRetry = 3
	// ReconcileTimeout bounds one reconcile: at the configured rate, the bucket must be walked
	// within it (and within the period). A run that reaches it (a minute before it: the run is
	// stopped then, so that its handler, not asynq's deadline, ends the task) fails without retry:
	// a retry would start the walk over 15 to 45 s later, run out of time again, and overlap the
	// next period's reconcile. Its error and log say the bucket is too large for
	// INTAKE_JOBS_RECONCILE_RATE. A timeout of one call inside the run (an S3 request, a
	// statement) is retried as any other error.
	ReconcileTimeout = 23 * time.Hour
	// ReconcileRetention keeps a finished reconcile (and so its period's task ID) in Redis, so that
	// a replica whose scheduler fires a little late cannot enqueue the same period again.
	ReconcileRetention = time.Hour
)

// Reconcile is the payload of [TypeReconcile].
type Reconcile struct {
	// Bucket is compared with its rows (one of the buckets intake serves).
	Bucket string `json:"bucket"`
	// Prefix, when set, limits the comparison to keys starting with it.
	Prefix string `json:"prefix,omitempty"`
	// Rate bounds the objects listed (and the HEADs of the fix) per second; it must be positive.
	Rate float64 `json:"rate"`
}

// Validate reports what is wrong with p, wrapping tasks.ErrInvalidPayload.
func (p Reconcile) Validate() error {
	var errs []error
	if p.Bucket == "" {
		errs = append(errs, errors.New("bucket: required"))
	}
	if !(p.Rate > 0) || math.IsInf(p.Rate, 0) {
		errs = append(errs, fmt.Errorf("rate: %v is not a positive number of objects per second", p.Rate))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%s payload: %w: %w", TypeReconcile, err, tasks.ErrInvalidPayload)
	}
	return nil
}

// NewReconcileTask returns a reconcile task: queue tasks.QueueLow, MaxRetry [ReconcileMaxRetry],
// Timeout [ReconcileTimeout], Retention [ReconcileRetention].
func NewReconcileTask(p Reconcile) (*asynq.Task, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	payload, err := json.Marshal(p)
	if err != nil {
		return nil, fmt.Errorf("encode %s payload: %w", TypeReconcile, err)
	}
	return asynq.NewTask(TypeReconcile, payload, asynq.Queue(tasks.QueueLow), asynq.MaxRetry(ReconcileMaxRetry),
		asynq.Timeout(ReconcileTimeout), asynq.Retention(ReconcileRetention)), nil
}

// ReconcileTaskID is the task ID of the periodic reconcile of bucket for the period starting at
// window: "reconcile:<bucket>:<unix seconds>".
func ReconcileTaskID(bucket string, window time.Time) string {
	return "reconcile:" + bucket + ":" + strconv.FormatInt(window.Unix(), 10)
}

// ReconcilePeriodicConfig configures [NewReconcilePeriodic].
type ReconcilePeriodicConfig struct {
	// Redis is asynq's connection (required).
	Redis asynq.RedisConnOpt
	// Bucket is reconciled every period (required).
	Bucket string
	// Cron is the schedule (required; see [PeriodicConfig]).
	Cron string
	// Rate is the reconcile's bound in objects per second (required, positive).
	Rate float64
	// Log receives the scheduler's logs (default: discard).
	Log *slog.Logger
	// Now is the clock used to name periods (default time.Now).
	Now func() time.Time
}

// NewReconcilePeriodic returns a [Periodic] that enqueues the reconcile of the bucket every
// period, once per period whatever the number of replicas (task ID [ReconcileTaskID]).
func NewReconcilePeriodic(cfg ReconcilePeriodicConfig) (*Periodic, error) {
	task, err := NewReconcileTask(Reconcile{Bucket: cfg.Bucket, Rate: cfg.Rate})
	if err != nil {
		return nil, fmt.Errorf("reconcile periodic: %w", err)
	}
	return NewPeriodic(PeriodicConfig{
		Redis: cfg.Redis, Name: "reconcile", Task: task, Cron: cfg.Cron, Log: cfg.Log, Now: cfg.Now,
		TaskID: func(window time.Time) string { return ReconcileTaskID(cfg.Bucket, window) },
	})
}

// ReconcileMetrics are the findings of the last completed periodic reconcile. A nil
// *ReconcileMetrics records nothing.
type ReconcileMetrics struct {
	// Missing, Stale and Gone count what the last completed reconcile found (and repaired).
	Missing, Stale, Gone prometheus.Gauge
	// LastSuccess is the Unix time the last reconcile completed.
	LastSuccess prometheus.Gauge
}

// NewReconcileMetrics creates the metrics and registers them on reg.
func NewReconcileMetrics(reg prometheus.Registerer) (*ReconcileMetrics, error) {
	gauge := func(name, help string) prometheus.Gauge {
		return prometheus.NewGauge(prometheus.GaugeOpts{Namespace: telemetry.Namespace, Name: name, Help: help})
	}
	m := &ReconcileMetrics{
		Missing: gauge("reconcile_missing", "Objects in the bucket without a row, found by the last completed periodic reconcile (their inspection was enqueued)."),
		Stale:   gauge("reconcile_stale", "Rows that disagreed with their object, found by the last completed periodic reconcile (their inspection was enqueued)."),
		Gone:    gauge("reconcile_gone", "Rows whose object is not in the bucket, found by the last completed periodic reconcile (checked and marked missing)."),
		LastSuccess: gauge("reconcile_last_success_timestamp_seconds",
			"Unix time at which the last periodic reconcile completed (0: none since the process started)."),
	}
	var errs []error
	for _, c := range []prometheus.Collector{m.Missing, m.Stale, m.Gone, m.LastSuccess} {
		errs = append(errs, reg.Register(c))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("register reconcile metrics: %w", err)
	}
	return m, nil
}

func (m *ReconcileMetrics) done(rep *reconcile.Report, at time.Time) {
	if m == nil {
		return
	}
	m.Missing.Set(float64(rep.MissingCount))
	m.Stale.Set(float64(rep.StaleCount))
	m.Gone.Set(float64(rep.GoneCount))
	m.LastSuccess.Set(float64(at.UnixNano()) / 1e9)
}

// ReconcilerConfig configures [Reconciler].
type ReconcilerConfig struct {
	// S3 lists the bucket and HEADs gone objects (required).
	S3 reconcile.S3API
	// Rows reads and marks the objects table (required; *dbq.Queries has it).
	Rows reconcile.Rows
	// Enqueuer enqueues the object:inspect tasks of the fix (required; reconcile.TaskEnqueuer).
	Enqueuer reconcile.Enqueuer
	// Buckets are the buckets intake serves (required): a task naming another one is refused.
	Buckets []string
	// Metrics receives the findings (optional).
	Metrics *ReconcileMetrics
	// Log receives the reconciler's logs (default: discard).
	Log *slog.Logger
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Reconciler runs [TypeReconcile] tasks: reconcile.Run with Fix, at the task's rate.
type Reconciler struct {
	cfg ReconcilerConfig
	log *slog.Logger
	now func() time.Time
}

// NewReconciler checks cfg and returns the reconciler.
func NewReconciler(cfg ReconcilerConfig) (*Reconciler, error) {
	if cfg.S3 == nil || cfg.Rows == nil || cfg.Enqueuer == nil || len(cfg.Buckets) == 0 {
		return nil, errors.New("reconciler: S3, Rows, Enqueuer and Buckets are required")
	}
	return &Reconciler{cfg: cfg, log: cmp.Or(cfg.Log, slog.New(slog.DiscardHandler)), now: orNow(cfg.Now)}, nil
}

// Register routes [TypeReconcile] on mux (NewMux's, so that its middleware applies).
func (r *Reconciler) Register(mux *asynq.ServeMux) { mux.HandleFunc(TypeReconcile, r.HandleReconcile) }

// HandleReconcile runs a reconcile task: it compares the bucket with its rows, enqueues the
// inspection of missing and stale objects, marks confirmed gone rows missing, and publishes the
// findings as metrics. Invalid payloads and buckets intake does not serve fail without retry.
func (r *Reconciler) HandleReconcile(ctx context.Context, t *asynq.Task) error {
	var p Reconcile
	// Fields a later intake added are ignored: the task may have been enqueued by a newer replica.
	dec := json.NewDecoder(bytes.NewReader(t.Payload()))
	if err := dec.Decode(&p); err != nil {
		return fmt.Errorf("decode %s payload: %v: %w: %w", TypeReconcile, err, tasks.ErrInvalidPayload, asynq.SkipRetry)
	}
	if err := p.Validate(); err != nil {
		return fmt.Errorf("%w: %w", err, asynq.SkipRetry)
	}
	if !slices.Contains(r.cfg.Buckets, p.Bucket) {
		return fmt.Errorf("reconcile: bucket %q is not one intake is configured for (foreign_bucket): %w", p.Bucket, asynq.SkipRetry)
	}
	runCtx, budget, stop := runBudget(ctx)
	defer stop()
	rep, err := reconcile.Run(runCtx, r.cfg.S3, r.cfg.Rows, reconcile.Options{
		Bucket: p.Bucket, Prefix: p.Prefix, Fix: true, Enqueuer: r.cfg.Enqueuer, Rate: p.Rate, Log: r.log,
	})
	if err != nil && errors.Is(context.Cause(runCtx), errRunOutOfTime) {
		r.log.ErrorContext(ctx, "periodic reconcile ran out of its time: the bucket is too large to walk within it at "+
			"INTAKE_JOBS_RECONCILE_RATE (raise the rate, or set a prefix); not retried, the next period runs it again",
			"bucket", p.Bucket, "rate", p.Rate, "time", budget.String(), "err", err)
		return fmt.Errorf("reconcile bucket %q: ran out of its time (%s) at %v objects/s: the bucket is too large for "+
			"INTAKE_JOBS_RECONCILE_RATE: %w: %w", p.Bucket, budget, p.Rate, err, asynq.SkipRetry)
	}
	if err != nil {
		return fmt.Errorf("reconcile bucket %q: %w", p.Bucket, err)
	}
	r.cfg.Metrics.done(rep, r.now())
	attrs := []any{"bucket", p.Bucket, "listed", rep.Listed, "rows", rep.Rows, "missing", rep.MissingCount,
		"stale", rep.StaleCount, "gone", rep.GoneCount, "changed_during_run", rep.Changed,
		"enqueued", rep.Fixed.Enqueued, "marked_missing", rep.Fixed.MarkedMissing, "head_failed", rep.Fixed.HeadFailed,
		"took", rep.Elapsed.String()}
	if rep.Differences() > 0 {
		// Events S3 never sent, or intake lost: worth a look even though they are repaired now.
		r.log.WarnContext(ctx, "periodic reconcile found and repaired differences", attrs...)
	} else {
		r.log.InfoContext(ctx, "periodic reconcile: in sync", attrs...)
	}
	return nil
}

// reconcileStopMargin is how long before the task's deadline a reconcile's run is stopped (at
// most; a tenth of the task's time when that is shorter): asynq fails a task whose deadline
// passes by itself, retrying it, before its handler returns.
const reconcileStopMargin = time.Minute

// errRunOutOfTime is the cause with which [runBudget] stops a run whose time is up.
var errRunOutOfTime = errors.New("the reconcile's time is up")

// runBudget returns the context a reconcile runs in: ctx's values and cancellation, without its
// deadline, cancelled with the cause errRunOutOfTime at the deadline less reconcileStopMargin
// (budget is the time it was given; zero when ctx has no deadline). Its end is thus told apart
// from a timeout inside the run (an S3 call's own, whose context has a deadline of its own), and
// from the rate limiter's refusal of a wait that would pass a deadline it can see, an error that
// is not the context's. stop releases its resources.
func runBudget(ctx context.Context) (runCtx context.Context, budget time.Duration, stop func()) {
	runCtx, cancel := context.WithCancelCause(context.WithoutCancel(ctx))
	stopParent := context.AfterFunc(ctx, func() { cancel(context.Cause(ctx)) })
	stopTimer := func() bool { return false }
	if deadline, ok := ctx.Deadline(); ok {
		left := time.Until(deadline)
		budget = left - min(reconcileStopMargin, left/10)
		stopTimer = time.AfterFunc(budget, func() { cancel(errRunOutOfTime) }).Stop
	}
	return runCtx, budget, func() {
		stopTimer()
		stopParent()
		cancel(context.Canceled)
	}
}
