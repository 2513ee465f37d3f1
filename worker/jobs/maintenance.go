package jobs

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/google/uuid"
	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/intakehq/intake/internal/store/dbq"
	"github.com/intakehq/intake/internal/telemetry"
	"github.com/intakehq/intake/worker/tasks"
)

// TypeMaintenance is intake's periodic housekeeping task: expire intents past their deadline, and
// delete archived events and the intents that ended without an upload past their retentions. It is
// not one of tasks.Types: app backends and POST /v1/jobs cannot enqueue it; the scheduler role
// does, once per period.
const TypeMaintenance = "intake:maintenance"

// Settings of the maintenance task.
const (
	// MaintenanceTimeout bounds one run (asynq cancels it after that; the next period continues).
	MaintenanceTimeout = 10 * time.Minute
	// MaintenanceMaxRetry is how often a failed run is retried before the next period takes over.
	MaintenanceMaxRetry = 3
	// MaintenanceRetention keeps a finished run (and so its period's task ID) in Redis, so that a
	// replica whose scheduler fires a little late cannot enqueue the same period again.
	MaintenanceRetention = time.Hour
	// maintenanceBatch is the number of rows one statement expires or deletes.
	maintenanceBatch = 1000
	// maintenanceMaxBatches bounds the statements of each kind in one run (a million rows): a
	// backlog larger than that is worked off over several periods.
	maintenanceMaxBatches = 1000
)

// MaintenancePayload is the payload of [TypeMaintenance].
type MaintenancePayload struct {
	// EventsRetention: archived events received longer ago are deleted; 0 keeps them forever.
	EventsRetention tasks.Duration `json:"events_retention"`
	// ExpiryGrace: a pending intent is expired once its expires_at is this far in the past.
	ExpiryGrace tasks.Duration `json:"expiry_grace"`
	// IntentsRetention: intents that ended without an upload (expired, aborted) longer ago
	// (updated_at) are deleted; 0 keeps them forever. A payload without it (enqueued by a scheduler
	// of an older version during a rolling upgrade) reads as 0: its run deletes no intent.
	IntentsRetention tasks.Duration `json:"intents_retention"`
}

// invalid reports whether a duration of p is negative.
func (p MaintenancePayload) invalid() bool {
	return p.EventsRetention < 0 || p.ExpiryGrace < 0 || p.IntentsRetention < 0
}

// NewMaintenanceTask returns the maintenance task: queue tasks.QueueLow, MaxRetry
// [MaintenanceMaxRetry], Timeout [MaintenanceTimeout], Retention [MaintenanceRetention].
func NewMaintenanceTask(p MaintenancePayload) (*asynq.Task, error) {
	if p.invalid() {
		return nil, fmt.Errorf("%s payload: durations must not be negative: %w", TypeMaintenance, tasks.ErrInvalidPayload)
	}
	payload, err := json.Marshal(p)
	if err != nil {
		return nil, fmt.Errorf("encode %s payload: %w", TypeMaintenance, err)
	}
	return asynq.NewTask(TypeMaintenance, payload, asynq.Queue(tasks.QueueLow), asynq.MaxRetry(MaintenanceMaxRetry),
		asynq.Timeout(MaintenanceTimeout), asynq.Retention(MaintenanceRetention)), nil
}

// MaintenanceTaskID is the task ID of the maintenance run of the period starting at window.
func MaintenanceTaskID(window time.Time) string {
	return "maintenance:" + strconv.FormatInt(window.Unix(), 10)
}

// ExpiredIntent is an intent the maintenance task marked expired.
type ExpiredIntent struct {
	// ID, Owner, Bucket and Key identify the intent.
	ID                 uuid.UUID
	Owner, Bucket, Key string
	// Method is put, post or multipart; MultipartUploadID is set for multipart intents.
	Method, MultipartUploadID string
	// ExpiresAt is the deadline the intent passed.
	ExpiresAt time.Time
}

// MaintenanceStore is what the maintenance task needs from PostgreSQL ([NewMaintenanceStore] is
// intake's).
type MaintenanceStore interface {
	// ExpireIntents marks expired at most limit pending intents whose deadline is before cutoff
	// (a multipart intent only once an abort of its upload has been recorded) and returns them.
	ExpireIntents(ctx context.Context, cutoff time.Time, limit int) ([]ExpiredIntent, error)
	// PruneEvents deletes at most limit archived events received before cutoff and returns how
	// many it deleted.
	PruneEvents(ctx context.Context, cutoff time.Time, limit int) (int64, error)
	// PruneEndedIntents deletes at most limit intents that ended without an upload (expired,
	// aborted) before cutoff (updated_at) and still have that status, and returns how many it
	// deleted. Objects that referenced one keep their row, with upload_id NULL.
	PruneEndedIntents(ctx context.Context, cutoff time.Time, limit int) (int64, error)
}

// NewMaintenanceStore returns the MaintenanceStore of intake's generated queries.
func NewMaintenanceStore(q *dbq.Queries) MaintenanceStore { return maintenanceQueries{q} }

type maintenanceQueries struct{ q *dbq.Queries }

func (m maintenanceQueries) ExpireIntents(ctx context.Context, cutoff time.Time, limit int) ([]ExpiredIntent, error) {
	rows, err := m.q.ExpireIntents(ctx, dbq.ExpireIntentsParams{Cutoff: cutoff, MaxRows: int32(limit)})
	if err != nil {
		return nil, err
	}
	out := make([]ExpiredIntent, len(rows))
	for i, r := range rows {
		out[i] = ExpiredIntent{ID: r.ID, Owner: r.Owner, Bucket: r.Bucket, Key: r.Key, Method: r.Method, ExpiresAt: r.ExpiresAt}
		if r.MultipartUploadID != nil {
			out[i].MultipartUploadID = *r.MultipartUploadID
		}
	}
	return out, nil
}

func (m maintenanceQueries) PruneEvents(ctx context.Context, cutoff time.Time, limit int) (int64, error) {
	return m.q.PruneEvents(ctx, dbq.PruneEventsParams{Cutoff: cutoff, MaxRows: int32(limit)})
}

func (m maintenanceQueries) PruneEndedIntents(ctx context.Context, cutoff time.Time, limit int) (int64, error) {
	return m.q.PruneEndedIntents(ctx, dbq.PruneEndedIntentsParams{Cutoff: cutoff, MaxRows: int32(limit)})
}

// MaintenanceConfig configures [Maintenance].
type MaintenanceConfig struct {
	// Store runs the statements (required).
	Store MaintenanceStore
	// Registerer receives the metrics (optional).
	Registerer prometheus.Registerer
	// Log receives a summary of every run (default: discard).
	Log *slog.Logger
	// Now is the clock (default time.Now).
	Now func() time.Time
	// BatchSize is the number of rows per statement (default 1000).
	BatchSize int
	// MaxBatches bounds the statements of each kind per run (default 1000).
	MaxBatches int
	// HandedOff, when set, adds the durable hash hand-off's step (handoff.go): settle the
	// hand-off rows whose object was observed since, and queue again, through Tasks and
	// TaskStates (both then required), the inspections past their time that Redis lost or that
	// failed for good.
	HandedOff HandedOffRedriveStore
	// Tasks enqueues the inspections queued again (an *asynq.Client).
	Tasks tasks.Enqueuer
	// TaskStates (an *asynq.Inspector) tells whether a hand-off's task is still in Redis.
	TaskStates tasks.TaskStates
	// RegisterQueues, when set, runs before the hand-off step reads its tasks' states: the daemon
	// registers intake's queues again (tasks.RegisterQueues), which asynq's Inspector needs after
	// Redis lost its data.
	RegisterQueues func(ctx context.Context) error
}

// Maintenance expires intents and prunes archived events and ended intents, in bounded batches.
type Maintenance struct {
	store         MaintenanceStore
	log           *slog.Logger
	now           func() time.Time
	batch         int
	maxBatches    int
	expired       *prometheus.CounterVec
	pruned        prometheus.Counter
	intentsPruned prometheus.Counter
	lastOK        prometheus.Gauge
	handedOff     HandedOffRedriveStore
	register      func(ctx context.Context) error
	inspections   *tasks.Inspections
	redrives      *prometheus.CounterVec
}

// NewMaintenance checks cfg, registers the metrics and returns the Maintenance.
func NewMaintenance(cfg MaintenanceConfig) (*Maintenance, error) {
	if cfg.Store == nil {
		return nil, errors.New("maintenance: store required")
	}
	if cfg.HandedOff != nil && (cfg.Tasks == nil || cfg.TaskStates == nil) {
		return nil, errors.New("maintenance: the hand-off step needs tasks and task states")
	}
	m := &Maintenance{
		store: cfg.Store, log: cmp.Or(cfg.Log, slog.New(slog.DiscardHandler)), now: orNow(cfg.Now),
		batch: cmp.Or(cfg.BatchSize, maintenanceBatch), maxBatches: cmp.Or(cfg.MaxBatches, maintenanceMaxBatches),
		expired: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: telemetry.Namespace, Name: "intents_expired_total",
			Help: "Upload intents marked expired by the maintenance task, by method (put, post, multipart).",
		}, []string{"method"}),
		pruned: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: telemetry.Namespace, Name: "events_pruned_total",
			Help: "Archived events deleted by the maintenance task (older than INTAKE_EVENTS_RETENTION).",
		}),
		intentsPruned: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: telemetry.Namespace, Name: "intents_pruned_total",
			Help: "Intents that ended without an upload (expired, aborted) deleted by the maintenance task " +
				"(ended longer than INTAKE_INTENTS_RETENTION ago).",
		}),
		lastOK: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: telemetry.Namespace, Name: "maintenance_last_success_timestamp_seconds",
			Help: "Unix time at which the last complete maintenance run ended.",
		}),
		handedOff: cfg.HandedOff, register: cfg.RegisterQueues,
		redrives: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: telemetry.Namespace, Name: "hashes_handed_off_redrives_total",
			Help: "Hand-off rows (INTAKE_CONSUMER_HASH_HANDOFF) past their time looked at by the maintenance task, by result: " +
				"settled (the object was observed since: deleted), waiting (its task is still in Redis, or the row changed since), queued (its task was " +
				"lost or failed for good: queued again), given_up (its inspections queued again recorded nothing: deleted, " +
				"logged as an error), failed (Redis or PostgreSQL failed: looked at again 10 minutes later).",
		}, []string{"result"}),
	}
	if cfg.HandedOff != nil {
		m.inspections = tasks.NewInspections(cfg.Tasks, cfg.TaskStates)
	}
	for _, r := range []string{redriveSettled, redriveWaiting, redriveQueued, redriveGivenUp, redriveFailed} {
		m.redrives.WithLabelValues(r)
	}
	for _, method := range []string{"put", "post", "multipart"} {
		m.expired.WithLabelValues(method)
	}
	if cfg.Registerer != nil {
		var errs []error
		for _, c := range []prometheus.Collector{m.expired, m.pruned, m.intentsPruned, m.lastOK, m.redrives} {
			errs = append(errs, cfg.Registerer.Register(c))
		}
		if err := errors.Join(errs...); err != nil {
			return nil, fmt.Errorf("register maintenance metrics: %w", err)
		}
	}
	return m, nil
}

// MaintenanceReport says what one run did.
type MaintenanceReport struct {
	// Expired counts the intents marked expired; Pruned the archived events deleted;
	// PrunedIntents the intents that ended without an upload deleted.
	Expired       int
	Pruned        int64
	PrunedIntents int64
	// HandedOffSettled counts the hand-off rows deleted because their object was observed since;
	// HandedOffRedriven the inspections queued again; HandedOffGivenUp the rows given up.
	HandedOffSettled  int64
	HandedOffRedriven int
	HandedOffGivenUp  int
	// Complete is false when a bound (batches per run) stopped a kind of work before it was done:
	// the next run continues.
	Complete bool
	// Took is the run's duration.
	Took time.Duration
}

// Run expires the pending intents whose expires_at is more than p.ExpiryGrace in the past
// (multipart ones only once their upload's abort has been recorded); when p.EventsRetention is
// positive, deletes archived events older than that; and when p.IntentsRetention is positive,
// deletes the intents that ended without an upload (expired, aborted) longer ago than that; with
// HandedOff, settles and queues again the hash hand-offs past their time (redriveHandedOff). The
// cutoffs are taken once at the start, so each loop works on what was there then; each loop also
// stops after MaxBatches statements or when ctx ends.
func (m *Maintenance) Run(ctx context.Context, p MaintenancePayload) (MaintenanceReport, error) {
	start := m.now()
	rep := MaintenanceReport{Complete: true}
	err := m.expire(ctx, start.Add(-time.Duration(p.ExpiryGrace)), &rep)
	if err == nil && p.EventsRetention > 0 {
		err = m.prune(ctx, "events received", start.Add(-time.Duration(p.EventsRetention)), m.store.PruneEvents, m.pruned, &rep.Pruned, &rep)
	}
	if err == nil && p.IntentsRetention > 0 {
		err = m.prune(ctx, "intents ended", start.Add(-time.Duration(p.IntentsRetention)), m.store.PruneEndedIntents, m.intentsPruned, &rep.PrunedIntents, &rep)
	}
	if err == nil && m.handedOff != nil {
		err = m.redriveHandedOff(ctx, start, &rep)
	}
	rep.Took = m.now().Sub(start)
	attrs := []any{"expired", rep.Expired, "events_pruned", rep.Pruned, "intents_pruned", rep.PrunedIntents,
		"handed_off_settled", rep.HandedOffSettled, "handed_off_redriven", rep.HandedOffRedriven,
		"handed_off_given_up", rep.HandedOffGivenUp, "complete", rep.Complete, "took", rep.Took}
	if err != nil {
		m.log.WarnContext(ctx, "maintenance failed", append(attrs, "err", err)...)
		return rep, err
	}
	if rep.Complete {
		m.lastOK.Set(float64(m.now().UnixNano()) / 1e9)
	}
	m.log.InfoContext(ctx, "maintenance done", attrs...)
	return rep, nil
}

func (m *Maintenance) expire(ctx context.Context, cutoff time.Time, rep *MaintenanceReport) error {
	for range m.maxBatches {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("expire intents: %w", err)
		}
		rows, err := m.store.ExpireIntents(ctx, cutoff, m.batch)
		if err != nil {
			return fmt.Errorf("expire intents before %s: %w", cutoff.UTC().Format(time.RFC3339), err)
		}
		for _, r := range rows {
			m.expired.WithLabelValues(r.Method).Inc()
			m.log.DebugContext(ctx, "intent expired", "upload_id", r.ID, "owner", r.Owner, "bucket", r.Bucket,
				"key", r.Key, "method", r.Method, "expires_at", r.ExpiresAt)
		}
		rep.Expired += len(rows)
		if len(rows) < m.batch {
			return nil
		}
	}
	rep.Complete = false
	return nil
}

// prune deletes, in batches of m.batch, the rows del deletes before cutoff (what names them in
// errors), counting them in counter and *total, until a batch comes back short; after MaxBatches it
// leaves the rest to the next run (rep.Complete false).
func (m *Maintenance) prune(ctx context.Context, what string, cutoff time.Time, del func(context.Context, time.Time, int) (int64, error),
	counter prometheus.Counter, total *int64, rep *MaintenanceReport) error {
	for range m.maxBatches {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("prune %s: %w", what, err)
		}
		n, err := del(ctx, cutoff, m.batch)
		if err != nil {
			return fmt.Errorf("prune %s before %s: %w", what, cutoff.UTC().Format(time.RFC3339), err)
		}
		counter.Add(float64(n))
		*total += n
		if n < int64(m.batch) {
			return nil
		}
	}
	rep.Complete = false
	return nil
}

// HandleMaintenance runs a [TypeMaintenance] task. An invalid payload is not retried.
func (m *Maintenance) HandleMaintenance(ctx context.Context, t *asynq.Task) error {
	var p MaintenancePayload
	if err := json.Unmarshal(t.Payload(), &p); err != nil || p.invalid() {
		return fmt.Errorf("%s payload %q: %w: %w", TypeMaintenance, t.Payload(), tasks.ErrInvalidPayload, asynq.SkipRetry)
	}
	_, err := m.Run(ctx, p)
	return err
}

// MaintenancePeriodicConfig configures [NewMaintenancePeriodic].
type MaintenancePeriodicConfig struct {
	// Redis is asynq's connection (required).
	Redis asynq.RedisConnOpt
	// Cron is the schedule (required; see [PeriodicConfig]).
	Cron string
	// Payload is what every run does.
	Payload MaintenancePayload
	// Log receives the Periodic's logs (default: discard).
	Log *slog.Logger
	// Now is the clock used to name periods (default time.Now).
	Now func() time.Time
}

// NewMaintenancePeriodic returns a [Periodic] that enqueues the maintenance task every period,
// once per period whatever the number of replicas (task ID [MaintenanceTaskID]).
func NewMaintenancePeriodic(cfg MaintenancePeriodicConfig) (*Periodic, error) {
	task, err := NewMaintenanceTask(cfg.Payload)
	if err != nil {
		return nil, err
	}
	return NewPeriodic(PeriodicConfig{
		Redis: cfg.Redis, Name: "maintenance", Task: task, TaskID: MaintenanceTaskID, Cron: cfg.Cron, Log: cfg.Log, Now: cfg.Now,
	})
}
