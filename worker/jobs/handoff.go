package jobs

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/hibiken/asynq"

	"github.com/intakehq/intake/internal/store/dbq"
	"github.com/intakehq/intake/pipeline"
	"github.com/intakehq/intake/worker/tasks"
)

// The durable hash hand-off.
//
// An event's inspection the consumer hands off (pipeline.ProcessorConfig.HashHandOff) is first
// recorded in PostgreSQL (a handed_off row: the object, the event, and the time of the consumer's
// lookup before its inspection, on PostgreSQL's clock), then
// queued as an object:inspect task in Redis, and only then is the event's message deleted. The
// row is the promise: Redis may lose the task (a restart without persistence, a failover, an
// eviction) and the verdict is still recorded.
//   - The task, once its verdict is recorded, settles the row (SettleHandedOff): the object's row
//     holds an observation that covers the events handed off (made at or after that lookup).
//   - The maintenance task settles the rows whose object something else observed since, and queues
//     the inspection again for a row left past its time (the task's timeout plus
//     [handedOffRedriveBase]) whose task is no longer in Redis or failed for good. It gives a row
//     up, logged as an error, after [handedOffMaxRedrives] such inspections recorded nothing.
//   - The intent of a handed-off object does not expire while its row is there.

const (
	// handedOffRedriveBase is how long past the task's timeout the maintenance task first looks at
	// a hand-off row (doubled after each inspection queued again: handedOffRecheck), and how long
	// a row it claimed but did not queue again (its task still in Redis, a failure) waits for its
	// next look.
	handedOffRedriveBase = 10 * time.Minute
	// handedOffRedriveMax caps that doubling (with handedOffMaxRedrives, the largest step is
	// 320 minutes: the cap guards a larger bound).
	handedOffRedriveMax = 6 * time.Hour
	// handedOffMaxRedrives bounds the inspections of one hand-off queued again: each runs with
	// its own retries (tasks.InspectMaxRetry; none for a task refused for good) before it counts.
	handedOffMaxRedrives = 5
	// workersFresh is how long HandOff trusts a reading of the jobs servers that found one
	// working, workersAbsentFresh one that found none (a daemon's first event may come before its
	// jobs role's first heartbeat).
	workersFresh       = 10 * time.Second
	workersAbsentFresh = time.Second
)

// handedOffRecheck is when a hand-off row, whose inspection was queued again redrives times, with a
// hash expected to take hashTime, is looked at next: the task's timeout plus the base doubled per
// redrive, capped.
func handedOffRecheck(hashTime time.Duration, redrives int) time.Duration {
	step := handedOffRedriveBase << min(max(redrives, 0), 10)
	return tasks.HandedOffTimeout(hashTime) + min(step, handedOffRedriveMax)
}

// HandOffRecorder records, in PostgreSQL, an event's inspection handed off ([HandedOffQueries]).
type HandOffRecorder interface {
	// HandOff records that the inspection of h's object is owed for h's event; the maintenance
	// task looks at it after redriveAfter.
	HandOff(ctx context.Context, h pipeline.HandedOff, redriveAfter time.Duration) error
}

// JobsServers lists the asynq servers that heartbeat in Redis (*asynq.Inspector satisfies it).
type JobsServers interface {
	Servers() ([]*asynq.ServerInfo, error)
}

var _ JobsServers = (*asynq.Inspector)(nil)

// HandOffConfig configures [NewHandOff].
type HandOffConfig struct {
	// Tasks enqueues the object:inspect tasks (an *asynq.Client; required).
	Tasks tasks.Enqueuer
	// TaskStates (an *asynq.Inspector) tells whether a task already holding the object's ID has
	// yet to run (tasks.Inspections); nil: never.
	TaskStates tasks.TaskStates
	// Store records each hand-off before its task is queued (required).
	Store HandOffRecorder
	// Servers, when set (an *asynq.Inspector), is read (at most every 10 s while the last reading
	// found an active server working intake-default, every second while it found none) to hand off only while an active jobs server works the
	// inspections' queue: with none (a consumer deployed without a jobs process, every jobs pod
	// down), the event is inspected in its message.
	Servers JobsServers
	// Now is the clock of that reading (default time.Now).
	Now func() time.Time
}

// HandOff is the consumer's durable hash hand-off (pipeline.HashHandOff) to the jobs workers:
// each inspection handed off is recorded in PostgreSQL, then becomes an object:inspect task
// carrying its event (tasks.Inspections), which HandleInspect runs with the event's semantics and
// the maintenance task queues again if Redis loses it.
type HandOff struct {
	insp    *tasks.Inspections
	store   HandOffRecorder
	servers JobsServers
	now     func() time.Time

	mu        sync.Mutex
	readAt    time.Time     // when servers was last read; zero: never
	working   bool          // what it said: an active server works tasks.QueueDefault
	readError error         // or the error reading it
	reading   chan struct{} // while a reading runs: closed when it ends
}

var _ pipeline.HashHandOff = (*HandOff)(nil)

// NewHandOff checks cfg and returns the HandOff.
func NewHandOff(cfg HandOffConfig) (*HandOff, error) {
	if cfg.Tasks == nil || cfg.Store == nil {
		return nil, errors.New("hash hand-off: tasks and store required")
	}
	return &HandOff{insp: tasks.NewInspections(cfg.Tasks, cfg.TaskStates), store: cfg.Store, servers: cfg.Servers, now: orNow(cfg.Now)}, nil
}

// errNoJobsWorker is InspectLater's error when no active jobs server works the inspections'
// queue: a task queued would not run.
var errNoJobsWorker = errors.New("no active jobs server works queue " + tasks.QueueDefault)

// InspectLater records h in PostgreSQL, then queues its inspection (tasks.Inspections.InspectLater)
// and reports whether the object's inspection is queued: only then may the event's message be
// deleted. For a hash too long for its message (ev.Outlasts), a task holding the object's ID in any
// state (running, failed for good) will do: the row makes the maintenance task queue the inspection
// again if that task's does not cover the event. When no jobs server is active (Servers), or
// PostgreSQL refuses the record, it queues nothing and returns an error: the caller inspects the
// object itself. A row recorded for an inspection then not queued is settled by the caller's own
// record of the object, stamped with the lookup the row holds (the maintenance task deletes it).
func (h *HandOff) InspectLater(ctx context.Context, ev pipeline.HandedOff) (bool, error) {
	if err := h.jobsWorking(ctx); err != nil {
		return false, err
	}
	if err := h.store.HandOff(ctx, ev, handedOffRecheck(ev.HashTime, 0)); err != nil {
		return false, fmt.Errorf("record the hand-off of %s/%s: %w", ev.Bucket, ev.Key, err)
	}
	// A hash too long for its message is not inspected there: once the row is recorded, a task
	// holding the object's ID in any state will do. One that read the object before the row
	// leaves it unsettled, and the maintenance task queues the inspection again once it has ended.
	return h.insp.InspectLater(ctx, tasks.InspectObject{Bucket: ev.Bucket, Key: ev.Key, Event: &tasks.HandedOffEvent{
		Sequencer: ev.Sequencer, Time: ev.EventTime, Removal: ev.Removal,
	}}, ev.HashTime, ev.Outlasts)
}

// jobsWorking returns nil when an active jobs server works tasks.QueueDefault (or Servers is not
// set), as last read. A reading is trusted for workersFresh when it found one, workersAbsentFresh
// otherwise; a stale one is refreshed by one goroutine at a time (asynq's Servers takes no context:
// the read ends with go-redis's own timeouts), which no caller waits for, except the first ones,
// which wait within ctx: a slow or unreachable Redis costs a hand-off at most its own deadline.
func (h *HandOff) jobsWorking(ctx context.Context) error {
	if h.servers == nil {
		return nil
	}
	h.mu.Lock()
	fresh := workersFresh
	if !h.working {
		fresh = workersAbsentFresh
	}
	if now := h.now(); h.reading == nil && (h.readAt.IsZero() || now.Sub(h.readAt) >= fresh || now.Before(h.readAt)) {
		done := make(chan struct{})
		h.reading = done
		go func() {
			defer close(done)
			servers, err := h.servers.Servers()
			working := slices.ContainsFunc(servers, func(s *asynq.ServerInfo) bool {
				return s.Status == "active" && s.Queues[tasks.QueueDefault] > 0
			})
			h.mu.Lock()
			defer h.mu.Unlock()
			h.readAt, h.readError, h.working, h.reading = now, err, working, nil
		}()
	}
	if h.readAt.IsZero() { // nothing read yet: wait for the first reading
		done := h.reading
		h.mu.Unlock()
		select {
		case <-done:
		case <-ctx.Done():
			return fmt.Errorf("list the jobs servers: %w", ctx.Err())
		}
		h.mu.Lock()
	}
	defer h.mu.Unlock()
	switch {
	case h.readError != nil:
		return fmt.Errorf("list the jobs servers: %w", h.readError)
	case !h.working:
		return errNoJobsWorker
	}
	return nil
}

// HandedOffSettler settles a hand-off row once its object's verdict is recorded
// ([HandedOffQueries]).
type HandedOffSettler interface {
	// Settle deletes the hand-off row of (bucket, key) when the object's row records an
	// observation that covers its events, and reports whether it did.
	Settle(ctx context.Context, bucket, key string) (bool, error)
}

// OwedInspection is a hand-off row the maintenance task found past its time with no observation
// of its object recorded since.
type OwedInspection struct {
	pipeline.HandedOff
	// HandedAt is PostgreSQL's time of the hand-off; Redrives how often its inspection was queued
	// again.
	HandedAt time.Time
	Redrives int
}

// HandedOffRedriveStore is what the maintenance task needs of the hand-off rows
// ([HandedOffQueries]).
type HandedOffRedriveStore interface {
	// SettleDue deletes at most limit rows due before cutoff whose object's row records an
	// observation that covers their events, and returns how many.
	SettleDue(ctx context.Context, cutoff time.Time, limit int) (int64, error)
	// ClaimDue returns at most limit rows due before cutoff with no such observation, their next
	// look moved recheck ahead.
	ClaimDue(ctx context.Context, cutoff time.Time, limit int, recheck time.Duration) ([]OwedInspection, error)
	// Redriven counts one more inspection queued again for o, whose next look is recheck ahead.
	Redriven(ctx context.Context, o OwedInspection, recheck time.Duration) error
	// GiveUp deletes o's row (unless a new hand-off replaced it) and reports whether it did.
	GiveUp(ctx context.Context, o OwedInspection) (bool, error)
	// StillOwed reports whether o's row is still there, not replaced by a new hand-off nor
	// covered by an observation of its object.
	StillOwed(ctx context.Context, o OwedInspection) (bool, error)
}

// HandedOffQueries is intake's store of hand-off rows on its generated queries: it satisfies
// [HandOffRecorder], [HandedOffSettler] and [HandedOffRedriveStore].
type HandedOffQueries struct{ q *dbq.Queries }

// NewHandedOffStore returns the HandedOffQueries of q.
func NewHandedOffStore(q *dbq.Queries) HandedOffQueries { return HandedOffQueries{q} }

// HandOff implements [HandOffRecorder].
func (s HandedOffQueries) HandOff(ctx context.Context, h pipeline.HandedOff, redriveAfter time.Duration) error {
	var evTime, lookedUp *time.Time
	if !h.EventTime.IsZero() {
		evTime = &h.EventTime
	}
	if !h.LookedUpAt.IsZero() {
		lookedUp = &h.LookedUpAt
	}
	return s.q.HandOffInspection(ctx, dbq.HandOffInspectionParams{
		Bucket: h.Bucket, Key: h.Key, Sequencer: h.Sequencer, EventTime: evTime, Removal: h.Removal,
		HashTimeMs: max(h.HashTime.Milliseconds(), 0), LookedUpAt: lookedUp, RedriveAfterSecs: redriveAfter.Seconds(),
	})
}

// Settle implements [HandedOffSettler].
func (s HandedOffQueries) Settle(ctx context.Context, bucket, key string) (bool, error) {
	n, err := s.q.SettleHandedOff(ctx, dbq.SettleHandedOffParams{Bucket: bucket, Key: key})
	return n > 0, err
}

// SettleDue implements [HandedOffRedriveStore].
func (s HandedOffQueries) SettleDue(ctx context.Context, cutoff time.Time, limit int) (int64, error) {
	return s.q.SettleHandedOffDue(ctx, dbq.SettleHandedOffDueParams{Cutoff: cutoff, MaxRows: int32(limit)})
}

// ClaimDue implements [HandedOffRedriveStore].
func (s HandedOffQueries) ClaimDue(ctx context.Context, cutoff time.Time, limit int, recheck time.Duration) ([]OwedInspection, error) {
	rows, err := s.q.ClaimHandedOffDue(ctx, dbq.ClaimHandedOffDueParams{
		Cutoff: cutoff, MaxRows: int32(limit), RecheckSecs: recheck.Seconds(),
	})
	if err != nil {
		return nil, err
	}
	out := make([]OwedInspection, len(rows))
	for i, r := range rows {
		out[i] = OwedInspection{HandedOff: pipeline.HandedOff{
			Bucket: r.Bucket, Key: r.Key, Sequencer: r.Sequencer, Removal: r.Removal,
			HashTime: time.Duration(r.HashTimeMs) * time.Millisecond,
		}, HandedAt: r.HandedAt, Redrives: int(r.Redrives)}
		if r.EventTime != nil {
			out[i].EventTime = *r.EventTime
		}
	}
	return out, nil
}

// Redriven implements [HandedOffRedriveStore].
func (s HandedOffQueries) Redriven(ctx context.Context, o OwedInspection, recheck time.Duration) error {
	_, err := s.q.RedrivenHandedOff(ctx, dbq.RedrivenHandedOffParams{
		Bucket: o.Bucket, Key: o.Key, HandedAt: o.HandedAt, RecheckSecs: recheck.Seconds(),
	})
	return err
}

// StillOwed implements [HandedOffRedriveStore].
func (s HandedOffQueries) StillOwed(ctx context.Context, o OwedInspection) (bool, error) {
	return s.q.HandedOffStillOwed(ctx, dbq.HandedOffStillOwedParams{Bucket: o.Bucket, Key: o.Key, HandedAt: o.HandedAt})
}

// GiveUp implements [HandedOffRedriveStore].
func (s HandedOffQueries) GiveUp(ctx context.Context, o OwedInspection) (bool, error) {
	n, err := s.q.GiveUpHandedOff(ctx, dbq.GiveUpHandedOffParams{Bucket: o.Bucket, Key: o.Key, HandedAt: o.HandedAt})
	return n > 0, err
}

// Results of the maintenance task's look at a hand-off row past its time
// (intake_hashes_handed_off_redrives_total).
const (
	redriveSettled = "settled"  // its object's row records an observation that covers it: deleted
	redriveQueued  = "queued"   // its inspection queued again
	redriveWaiting = "waiting"  // its task is still in Redis (to run, running or retrying), or the row changed since the claim
	redriveGivenUp = "given_up" // handedOffMaxRedrives inspections recorded nothing
	redriveFailed  = "failed"   // Redis or PostgreSQL failed; looked at again next run
)

// redriveHandedOff is the maintenance task's hand-off step: it settles the rows due whose
// object was observed since, then, for each other row due, queues its inspection again when its
// task is gone or failed for good, or gives it up after handedOffMaxRedrives. The cutoff is the
// run's start, so each row is looked at once per run; the loops stop after m.maxBatches
// statements or when ctx ends.
func (m *Maintenance) redriveHandedOff(ctx context.Context, cutoff time.Time, rep *MaintenanceReport) error {
	if m.register != nil {
		if err := m.register(ctx); err != nil {
			// The states of tasks whose queue is not registered cannot be read: those rows are
			// counted failed, and looked at again next run.
			m.log.WarnContext(ctx, "register intake's queues with asynq", "err", err)
		}
	}
	if err := m.prune(ctx, "settled hand-offs", cutoff, m.handedOff.SettleDue,
		m.redrives.WithLabelValues(redriveSettled), &rep.HandedOffSettled, rep); err != nil {
		return err
	}
	for i := 0; ; i++ {
		if i == m.maxBatches {
			rep.Complete = false
			return nil
		}
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("redrive hand-offs: %w", err)
		}
		owed, err := m.handedOff.ClaimDue(ctx, cutoff, m.batch, handedOffRedriveBase)
		if err != nil {
			return fmt.Errorf("claim the hand-offs due before %s: %w", cutoff.UTC().Format(time.RFC3339), err)
		}
		for _, o := range owed {
			result := m.redriveOne(ctx, o)
			m.redrives.WithLabelValues(result).Inc()
			switch result {
			case redriveQueued:
				rep.HandedOffRedriven++
			case redriveGivenUp:
				rep.HandedOffGivenUp++
			}
		}
		if len(owed) < m.batch {
			return nil
		}
	}
}

// redriveOne looks at one hand-off row past its time and returns the result.
func (m *Maintenance) redriveOne(ctx context.Context, o OwedInspection) string {
	log := m.log.With("bucket", o.Bucket, "key", o.Key, "handed_off_at", o.HandedAt, "redrives", o.Redrives)
	alive, err := m.inspections.Alive(ctx, o.Bucket, o.Key)
	if err != nil {
		log.WarnContext(ctx, "hand-off past its time: cannot read its task; looked at again next run", "err", err)
		return redriveFailed
	}
	if alive {
		return redriveWaiting
	}
	if o.Redrives >= handedOffMaxRedrives {
		gone, err := m.handedOff.GiveUp(ctx, o)
		if err != nil {
			log.WarnContext(ctx, "give up a hand-off", "err", err)
			return redriveFailed
		}
		if !gone {
			return redriveWaiting // replaced by a new hand-off, or settled, since the claim
		}
		log.ErrorContext(ctx, "handed-off inspection given up: its inspections queued again recorded nothing; "+
			"inspect the object (POST /v1/jobs object:inspect) once the cause in the jobs logs is fixed")
		return redriveGivenUp
	}
	// Its task may have recorded the verdict and settled the row since the claim.
	owed, err := m.handedOff.StillOwed(ctx, o)
	if err != nil {
		log.WarnContext(ctx, "read a hand-off row", "err", err)
		return redriveFailed
	}
	if !owed {
		return redriveWaiting
	}
	queued, err := m.inspections.Redrive(ctx, tasks.InspectObject{Bucket: o.Bucket, Key: o.Key, Event: &tasks.HandedOffEvent{
		Sequencer: o.Sequencer, Time: o.EventTime, Removal: o.Removal,
	}}, o.HashTime)
	if err != nil {
		log.WarnContext(ctx, "queue a handed-off inspection again", "err", err)
		return redriveFailed
	}
	if !queued {
		return redriveWaiting
	}
	if err := m.handedOff.Redriven(ctx, o, handedOffRecheck(o.HashTime, o.Redrives+1)); err != nil {
		log.WarnContext(ctx, "count a handed-off inspection queued again", "err", err)
	}
	log.WarnContext(ctx, "handed-off inspection queued again: its task was lost or failed for good, and its verdict is not recorded")
	return redriveQueued
}
