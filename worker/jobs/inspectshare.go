package jobs

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/intakehq/intake/internal/telemetry"
)

// Each owner's share of the jobs workers for object:inspect tasks (Handlers.Concurrency).
//
// Every tenant's inspections (its POST /v1/jobs, the sweep's and the periodic reconcile's) wait in
// one queue for one pool of workers (INTAKE_JOBS_CONCURRENCY), and an inspection may hash gigabytes.
// A tenant may queue one for each of its objects: without a bound, 10,000 of them take every worker
// for hours, and every other tenant's inspections wait behind them. So one process runs at most
// max(1, Concurrency/2) inspections of one owner at once (the owner is the key's segment before
// its upload id: [InspectionOwner]), and an owner already running one gets another only while a
// reserve of the workers, max(1, Concurrency/4), stays free of inspections: two busy owners then
// cannot take every worker between them, and a third owner's first inspection (or the sweep's, the
// reconcile's) finds a free one. With Concurrency 1 there is nothing to share: each owner's
// inspection runs in turn. A task that is not admitted is not run: it
// returns an [InspectDeferredError], which the [NewServer] server retries after its RetryIn without
// counting it as a failed attempt (its IsFailure and retry delay know the error, as they know
// [EarlyError]). A task with no retry left is run anyway, over the share: asynq archives a task
// whose last run returns any error, failure or not, before it asks whether it failed.
//
// Of the two patterns this follows, [EarlyError]'s server-side handling is the one for the
// failure count: the server knows the error type itself, so no server built by NewServer counts a
// deferral as a failure, and the webhook Deliverer's guard (defer nothing before the server has
// asked IsFailure, because its IsFailure is the caller's to wire) has nothing to guard. For the last
// attempt, the Deliverer's "run it anyway" is the simpler one and is correct here: an inspection
// run over the share is only unfair for a moment, never wrong, whereas an early abort must not run,
// hence EarlyError's putting back of the archived task (Server.handleError), which a deferral
// never needs.
//
// A deferral cannot go on forever. A task is deferred only while its owner has runs under way in
// this process (its share of them, or one or more while the reserve is taken); those runs end (each
// is bounded by its task timeout, tasks.InspectTimeout) and give their slot back whatever the
// outcome (the release is deferred in HandleInspect: success, error, panic, cancel); a deferral
// holds no slot. An owner with no run under way is always admitted, so each owner's backlog
// drains at least a run at a time, whatever the other owners do; the task comes back at least
// every [inspectDeferMax] (plus the server's DelayedTaskCheckInterval and its wait in the queue),
// and one task is queued per object, so unless the owner keeps queueing more its backlog drains
// and the task is granted. An owner that keeps queueing makes the task compete with its new ones
// at random (the delays' jitter, the queue's order), which ends with probability one, though at no
// fixed bound; only that owner waits. And a task at its last attempt is never deferred, it runs:
// as deferrals use up no retry, that is a task of asynq.MaxRetry(0), one whose retries failures
// used up, or one run again by hand from the archive. asynq records a deferral as the task's last
// error (its LastErr, which the Inspector and dashboards show): an earlier failure's message is
// replaced until the task fails again.

// Delays of a deferred inspection, plus up to half as much jitter: its turn behind the owner's
// tasks deferred lately in this process and not back yet, limit at a time, each taking as long as
// this process's inspections lately took (an average of their run times; a second before any ran),
// at least inspectDeferMin and at most inspectDeferMax. So a task of an owner with a few runs ahead
// comes back in about a second, and a backlog's tasks come back about when their turn may have
// come rather than every minute: 100,000 deferred tasks behind runs of a second, 5 at a time,
// come back once an hour each (some 30 a second), not 2,000 times a second (each return is a
// Redis round trip and a dequeue, about 0.7 ms of a worker in a review's measurement). asynq moves
// a retried task back to its queue every DelayedTaskCheckInterval (5 s by default), so the least
// delay is that in practice.
const (
	inspectDeferMin = time.Second
	inspectDeferMax = time.Hour
)

// A deferred task not back inspectForgetAfter after it was due is forgotten (another worker
// process ran it, it was deleted, or it still waits in the queue): kept longer, the tasks other
// processes ran would count as ahead here and make waits too long; forgotten early, a task still on
// its way makes the next wait shorter, which costs round trips, not time. The owners' deferred tasks
// are looked through at most every inspectPruneEvery.
const (
	inspectForgetAfter = 30 * time.Second
	inspectPruneEvery  = 10 * time.Second
)

// InspectDeferredError is the error of an object:inspect run deferred because its owner had its
// share of the workers: nothing was done, and the run is no failed attempt (the [NewServer] server
// retries it after RetryIn without counting a retry). Its runs are counted under outcome "early".
type InspectDeferredError struct {
	// Owner is the object's owner ("" for keys outside INTAKE_API_KEY_PREFIX).
	Owner string
	// Running is how many inspections of the owner this process was running, Limit how many it may.
	Running, Limit int
	// RetryIn is when to run the task again.
	RetryIn time.Duration
}

// Error says whose inspection was deferred, and for how long.
func (e *InspectDeferredError) Error() string {
	return fmt.Sprintf("inspection deferred, nothing done: %d of owner %q's inspections are running (its share of the workers is %d); runs again in %s",
		e.Running, e.Owner, e.Limit, e.RetryIn.Round(time.Millisecond))
}

// Deferred reports that the run was put off on purpose: counted and logged as a run to happen
// later (outcome "early"), not as a failure to retry.
func (e *InspectDeferredError) Deferred() bool { return true }

// InspectionOwner returns the owner of key, as intake names the objects it signs:
// {prefix}/{owner}/{upload id}/{name}, the name without '/'. The owner is the segment before the
// next to last, when that one is an upload id (a UUID) and the owner's segment is not empty,
// whatever the prefix: the keys named under an earlier INTAKE_API_KEY_PREFIX keep their owners.
// Any other key (an object intake did not name) belongs to owner "": those share one owner's share.
func InspectionOwner(key string) string {
	name := strings.LastIndexByte(key, '/')
	if name < 0 {
		return ""
	}
	id := strings.LastIndexByte(key[:name], '/')
	if id < 0 || uuid.Validate(key[id+1:name]) != nil || name-id-1 != 36 {
		return ""
	}
	owner := key[strings.LastIndexByte(key[:id], '/')+1 : id]
	return owner
}

// NewInspectionsDeferred creates intake_jobs_inspections_deferred_total (object:inspect runs
// deferred because their owner had its share of the workers) and registers it on reg.
func NewInspectionsDeferred(reg prometheus.Registerer) (prometheus.Counter, error) {
	c := prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: telemetry.Namespace, Name: "jobs_inspections_deferred_total",
		Help: "object:inspect runs deferred, nothing done, because their owner had its share of the jobs workers; retried without counting a failure.",
	})
	if err := reg.Register(c); err != nil {
		return nil, fmt.Errorf("register jobs inspection metrics: %w", err)
	}
	return c, nil
}

// handedOffDeferMax bounds the deferral of a handed-off event's inspection (admitInspection).
const handedOffDeferMax = 15 * time.Second

// admitInspection takes a slot of key's owner for the task of ctx, or returns its
// *InspectDeferredError (counted and logged at debug) when the owner has its share and the task has
// a retry left. release gives the slot back; it is to be called once the inspection has returned.
//
// A handed-off event's inspection (urgent: an upload waiting for its first verdict, its intent
// for its completion) is deferred by at most handedOffDeferMax, not by its turn behind the owner's
// backlog of re-inspections (up to an hour): it still waits for the owner's share, but is tried
// again soon enough to take the next slot that frees, before the intent expires.
func (h *Handlers) admitInspection(ctx context.Context, key string, urgent bool) (release func(), err error) {
	h.shareOnce.Do(func() { h.share = newInspectShare(h.Concurrency, time.Now) })
	if h.share == nil {
		return func() {}, nil
	}
	owner := InspectionOwner(key)
	id, _ := asynq.GetTaskID(ctx)
	release, derr := h.share.admit(owner, id, !canDefer(ctx))
	if derr != nil && urgent {
		derr.RetryIn = min(derr.RetryIn, handedOffDeferMax)
	}
	if derr != nil {
		if h.InspectionsDeferred != nil {
			h.InspectionsDeferred.Inc()
		}
		h.log().DebugContext(ctx, "object inspection deferred: its owner has its share of the workers",
			"owner", owner, "key", key, "running", derr.Running, "limit", derr.Limit, "retry_in", derr.RetryIn.String())
		return nil, derr
	}
	return release, nil
}

// canDefer reports whether the run of ctx has a retry left: asynq archives a task whose run with
// no retry left returns any error. A run outside asynq (no retry count) is not deferred either.
func canDefer(ctx context.Context) bool {
	retried, ok1 := asynq.GetRetryCount(ctx)
	maxRetry, ok2 := asynq.GetMaxRetry(ctx)
	return ok1 && ok2 && retried < maxRetry
}

// inspectShare counts the inspections of each owner one process runs and the tasks it deferred
// that have not come back yet. A nil inspectShare admits everything.
type inspectShare struct {
	limit   int // per owner
	reserve int // workers kept free of a second inspection of any owner
	workers int
	now     func() time.Time
	mu      sync.Mutex
	owners  map[string]*ownerRuns
	running int           // inspections running, every owner's
	runTime time.Duration // the average run time of the inspections lately (exponential)
	pruned  time.Time
}

// ownerRuns is one owner's inspections running, and its tasks deferred and not back yet, by task
// ID: when each is forgotten.
type ownerRuns struct {
	running int
	waiting map[string]time.Time
}

// newInspectShare returns the share of a server of concurrency workers: max(1, concurrency/2) per
// owner, a reserve of max(1, concurrency/4); nil (no share) when concurrency is 0 or less.
func newInspectShare(concurrency int, now func() time.Time) *inspectShare {
	if concurrency <= 0 {
		return nil
	}
	return &inspectShare{limit: inspectLimit(concurrency), reserve: max(1, concurrency/4), workers: concurrency,
		now: now, owners: map[string]*ownerRuns{}, runTime: inspectDeferMin, pruned: now()}
}

// inspectLimit is how many inspections of one owner a server of concurrency workers runs at once.
func inspectLimit(concurrency int) int { return max(1, concurrency/2) }

// inspectDeferBase is the delay of a deferred task, before jitter, with ahead of the owner's tasks
// deferred before it and not back yet, limit at a time, each run taking runTime (see
// inspectDeferMin).
func inspectDeferBase(ahead, limit int, runTime time.Duration) time.Duration {
	turns := float64(ahead+1) / float64(max(1, limit))
	d := time.Duration(min(turns*float64(runTime), float64(inspectDeferMax)))
	return min(max(d, inspectDeferMin), inspectDeferMax)
}

// admits reports whether o may start an inspection now: under its share, and, unless it runs none,
// with the reserve of workers left free.
func (s *inspectShare) admits(o *ownerRuns) bool {
	if o.running >= s.limit {
		return false
	}
	return o.running == 0 || s.running < s.workers-s.reserve
}

// admit takes a slot of owner for task (its asynq task ID; "" when unknown), or returns the task's
// deferral when the owner may not start one now (see admits; unless force: a run with no retry
// left). release gives the slot back; calls after the first do nothing.
func (s *inspectShare) admit(owner, task string, force bool) (release func(), err *InspectDeferredError) {
	if s == nil {
		return func() {}, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	if now.Sub(s.pruned) >= inspectPruneEvery {
		s.prune(now)
	}
	o := s.owners[owner]
	if o == nil {
		o = &ownerRuns{waiting: map[string]time.Time{}}
		s.owners[owner] = o
	}
	if task != "" {
		delete(o.waiting, task) // back
	}
	if !s.admits(o) && !force {
		wait := inspectDeferBase(len(o.waiting), s.limit, s.runTime)
		wait += rand.N(wait/2 + 1)
		if task != "" {
			o.waiting[task] = now.Add(wait + inspectForgetAfter)
		}
		return nil, &InspectDeferredError{Owner: owner, Running: o.running, Limit: s.limit, RetryIn: wait}
	}
	o.running++
	s.running++
	start := now
	var once sync.Once
	return func() {
		once.Do(func() {
			s.mu.Lock()
			defer s.mu.Unlock()
			o.running--
			s.running--
			// An exponential average of the run times (a fifth the last one's): the pace at which
			// the owners' slots free up.
			s.runTime += (s.now().Sub(start) - s.runTime) / 5
			if o.running == 0 && len(o.waiting) == 0 && s.owners[owner] == o {
				delete(s.owners, owner)
			}
		})
	}, nil
}

// prune forgets the deferred tasks due to be forgotten at now, and the owners left with nothing.
// s.mu is held.
func (s *inspectShare) prune(now time.Time) {
	s.pruned = now
	for owner, o := range s.owners {
		for task, at := range o.waiting {
			if now.After(at) {
				delete(o.waiting, task)
			}
		}
		if o.running == 0 && len(o.waiting) == 0 {
			delete(s.owners, owner)
		}
	}
}
