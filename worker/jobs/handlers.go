package jobs

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/intakehq/intake/internal/multipart"
	"github.com/intakehq/intake/internal/objstore"
	"github.com/intakehq/intake/pipeline"
	"github.com/intakehq/intake/worker/tasks"
)

// Inspector runs the pipeline on one object (pipeline.Processor satisfies it). Errors wrapping
// pipeline.ErrPermanent are not retried.
type Inspector interface {
	InspectObject(ctx context.Context, bucket, key string) error
}

// HandedOffInspector is an Inspector that also runs the inspections the consumer handed off with
// their event's semantics (pipeline.Processor satisfies it): an object:inspect task carrying its
// event (tasks.InspectObject.Event) goes to InspectHandedOff when the Inspector has it.
type HandedOffInspector interface {
	InspectHandedOff(ctx context.Context, h pipeline.HandedOff) error
}

// InspectorFunc adapts a function to an Inspector.
type InspectorFunc func(ctx context.Context, bucket, key string) error

// InspectObject calls f.
func (f InspectorFunc) InspectObject(ctx context.Context, bucket, key string) error {
	return f(ctx, bucket, key)
}

// Aborter aborts one multipart upload if it is still open and records what happened (the daemon
// passes internal/multipart's Service). reason is tasks.ReasonDeadline or tasks.ReasonAPI. An
// upload that no longer exists is not an error: the outcome says "gone", and completed says
// whether an object is at the key (the upload was completed, not aborted); inspect, when not nil,
// is then called on that object once the outcome is recorded, and its error returned. Errors for
// which objstore.IsRetryable and objstore.IsCredentialsError are false are not retried, inspect's
// excepted (see Handlers.HandleAbort).
// A tasks.ReasonDeadline abort of one of intake's uploads before the expires_at PostgreSQL holds
// for it plus tasks.AbortGrace does nothing and returns a *multipart.NotDueError, which HandleAbort
// turns into an [EarlyError] at that deadline.
type Aborter interface {
	AbortUpload(ctx context.Context, bucket, key, uploadID, reason string,
		inspect func(ctx context.Context, bucket, key string) error) (outcome string, completed bool, err error)
}

// Sweeper aborts a bucket's stale multipart uploads and records what it did (the daemon passes
// internal/multipart's Service, which never aborts intake's own uploads before their deadline).
type Sweeper interface {
	// SweepBucket sweeps; inspect, when not nil, is called for each of intake's uploads found
	// completed (their event is late or was never sent). A failed inspect does not fail the sweep:
	// the upload's abort is recorded and S3 no longer lists it, so a retried sweep would not find
	// it again (the reconcile inspects the object).
	SweepBucket(ctx context.Context, bucket, prefix string, olderThan time.Duration,
		inspect func(ctx context.Context, bucket, key string) error) error
}

// Handlers holds the task handlers' dependencies.
type Handlers struct {
	// Aborts runs multipart:abort tasks; when nil those tasks fail without retry.
	Aborts Aborter
	// Sweeps runs multipart:sweep tasks; when nil those tasks fail without retry.
	Sweeps Sweeper
	// Inspector runs object:inspect tasks; when nil those tasks fail without retry.
	Inspector Inspector
	// Maintenance runs intake:maintenance tasks (maintenance.go); when nil those tasks fail without
	// retry.
	Maintenance *Maintenance
	// Log receives the handlers' logs (default: discard).
	Log *slog.Logger
	// Now is the clock deadline tasks are checked against (default time.Now).
	Now func() time.Time
	// Buckets, when set, are the buckets tasks may name (the ones intake serves); an abort,
	// sweep or inspection of another (a task written by hand into Redis, or left there after a
	// bucket was removed from the configuration) is refused without retry, as POST /v1/jobs and
	// `intake sweep` refuse it.
	Buckets []string
	// Tasks, when set (an *asynq.Client), enqueues an object:inspect task for each of intake's
	// uploads a sweep finds completed, instead of inspecting the object inside the sweep: an
	// inspection may hash gigabytes, and has its own retries there.
	Tasks tasks.Enqueuer
	// TaskStates (an *asynq.Inspector), with Tasks, replaces an inspection of the same object that
	// failed for good (archived), which would otherwise hold its task ID (tasks.EnqueueInspect).
	TaskStates tasks.TaskStates
	// MinSweepAge is the smallest older_than a sweep task may carry (default tasks.MinSweepAge):
	// younger uploads are probably in progress, whoever built the task.
	MinSweepAge time.Duration
	// Concurrency, when above 0, is the number of workers of the [NewServer] server running these
	// handlers (its ServerConfig.Concurrency, INTAKE_JOBS_CONCURRENCY): this process then runs at
	// most max(1, Concurrency/2) object:inspect tasks of one owner at once (a second one only
	// while max(1, Concurrency/4) workers stay free of inspections), and defers the others
	// with an [InspectDeferredError], which that server retries without counting a failure (see
	// inspectshare.go). 0 runs every inspection at once. Only for a NewServer server: another
	// would count each deferral as a failed attempt.
	Concurrency int
	// InspectionsDeferred, when set, counts the deferred inspections ([NewInspectionsDeferred]).
	InspectionsDeferred prometheus.Counter
	// HandedOff, when set, settles the hand-off row of an inspection the consumer handed off once
	// its task has recorded the verdict ([HandOff]; the maintenance task settles what it leaves).
	HandedOff HandedOffSettler

	// The owners' shares of the workers, built at the first inspection.
	shareOnce sync.Once
	share     *inspectShare
}

// HandleAbort runs a multipart:abort task: abort the upload if it is still open and record it.
func (h *Handlers) HandleAbort(ctx context.Context, t *asynq.Task) error {
	p, err := tasks.ParseAbortMultipart(t.Payload())
	if err != nil {
		return fmt.Errorf("%w: %w", err, asynq.SkipRetry)
	}
	if h.Aborts == nil {
		return fmt.Errorf("multipart aborts not configured: %w", asynq.SkipRetry)
	}
	if err := h.checkBucket("multipart abort", p.Bucket); err != nil {
		return err
	}
	reason := cmp.Or(p.Reason, tasks.ReasonDeadline)
	if now := h.now(); reason == tasks.ReasonDeadline && now.Before(p.Deadline.Add(tasks.AbortGrace)) {
		// Run before its time: by an operator (`intake jobs run --all --state scheduled`, asynqmon's
		// "Run"), a task built by hand, or a worker whose clock is behind the one that made the task
		// due (a clock ahead is not seen here: it makes the task due early and reads as on time).
		// The upload's
		// owner was promised it until the deadline, by any amount, and a complete accepted just
		// before it may still be running (tasks.AbortGrace): it is left open, nothing is recorded,
		// and the task runs again once the grace has passed (NewServer's retry delay reads the
		// deadline from the error, and the early run does not use up a retry).
		h.log().InfoContext(ctx, "multipart abort task run before its deadline and grace: runs again after them",
			"bucket", p.Bucket, "key", p.Key, "upload_id", p.UploadID, "deadline", p.Deadline,
			"early_by", p.Deadline.Add(tasks.AbortGrace).Sub(now).String())
		return &EarlyError{UploadID: p.UploadID, Deadline: p.Deadline}
	}
	// An upload found completed (an object at its key) had its abort task run anyway: the consumer
	// cancels the task when it processes the object's event, so that event is late or was never
	// sent (S3 may send none for a complete that committed while its client's request failed). The
	// Aborter has the object inspected now rather than leave its verdict to the periodic reconcile;
	// on a late event, both record the same observation.
	var inspect func(ctx context.Context, bucket, key string) error
	if h.Inspector != nil {
		inspect = func(ctx context.Context, bucket, key string) error {
			if err := h.inspect(ctx, bucket, key); err != nil {
				return &inspectError{err}
			}
			return nil
		}
	}
	outcome, completed, err := h.Aborts.AbortUpload(ctx, p.Bucket, p.Key, p.UploadID, reason, inspect)
	if nd := (*multipart.NotDueError)(nil); errors.As(err, &nd) {
		// PostgreSQL's deadline for the upload is later than the payload's (a task written into
		// Redis by hand): the owner's deadline holds, and the task runs again after it.
		h.log().WarnContext(ctx, "multipart abort task's deadline is before the upload's: runs again after the upload's",
			"bucket", p.Bucket, "key", p.Key, "upload_id", p.UploadID, "task_deadline", p.Deadline, "deadline", nd.Deadline)
		return &EarlyError{UploadID: p.UploadID, Deadline: nd.Deadline}
	}
	if ie := (*inspectError)(nil); errors.As(err, &ie) {
		// The abort is recorded; the inspection's error is classified by the pipeline, not by S3's
		// status (h.inspect marks a permanent one), so that a PostgreSQL outage is retried.
		return ie.err
	}
	if errors.Is(err, multipart.ErrWrongKey) {
		return fmt.Errorf("%w: %w", err, asynq.SkipRetry)
	}
	if err != nil {
		return s3Error(err)
	}
	h.log().InfoContext(ctx, "multipart abort task done", "reason", reason,
		"bucket", p.Bucket, "key", p.Key, "upload_id", p.UploadID, "outcome", outcome, "completed", completed)
	return nil
}

// HandleSweep runs a multipart:sweep task.
func (h *Handlers) HandleSweep(ctx context.Context, t *asynq.Task) error {
	p, err := tasks.ParseSweep(t.Payload())
	if err != nil {
		return fmt.Errorf("%w: %w", err, asynq.SkipRetry)
	}
	if h.Sweeps == nil {
		return fmt.Errorf("multipart sweeps not configured: %w", asynq.SkipRetry)
	}
	if minAge := cmp.Or(h.MinSweepAge, tasks.MinSweepAge); time.Duration(p.OlderThan) < minAge {
		return fmt.Errorf("sweep: older_than %s is below the minimum of %s (younger uploads may still be in progress): %w",
			time.Duration(p.OlderThan), minAge, asynq.SkipRetry)
	}
	if err := h.checkBucket("sweep", p.Bucket); err != nil {
		return err
	}
	// A completed upload the sweep finds is gone from the listing and settled in PostgreSQL once
	// its abort is recorded: a retried sweep would not find it again. Its inspection is therefore
	// queued as a task of its own (retried there); an inspection that fails inside the sweep does
	// not fail the sweep (see Sweeper).
	var inspect func(ctx context.Context, bucket, key string) error
	switch {
	case h.Tasks != nil:
		inspect = h.enqueueInspect
	case h.Inspector != nil:
		inspect = h.Inspector.InspectObject
	}
	if err := h.Sweeps.SweepBucket(ctx, p.Bucket, p.Prefix, time.Duration(p.OlderThan), inspect); err != nil {
		return s3Error(err)
	}
	return nil
}

// enqueueInspect queues the inspection of one object as the reconcile queues it
// (tasks.EnqueueInspect): one already queued, running or retrying (by the reconcile, POST /v1/jobs
// or another sweep) is enough.
func (h *Handlers) enqueueInspect(ctx context.Context, bucket, key string) error {
	if _, err := tasks.EnqueueInspect(ctx, h.Tasks, h.TaskStates, tasks.InspectObject{Bucket: bucket, Key: key}); err != nil {
		return fmt.Errorf("queue the inspection of %q: %w", key, err)
	}
	return nil
}

// HandleInspect runs an object:inspect task.
func (h *Handlers) HandleInspect(ctx context.Context, t *asynq.Task) error {
	p, err := tasks.ParseInspectObject(t.Payload())
	if err != nil {
		return fmt.Errorf("%w: %w", err, asynq.SkipRetry)
	}
	if h.Inspector == nil {
		return fmt.Errorf("object inspection not configured in this process: %w", asynq.SkipRetry)
	}
	if err := h.checkBucket("inspect", p.Bucket); err != nil {
		return err
	}
	// One owner's inspections hold at most its share of the workers (Concurrency): one over it
	// is deferred, nothing done, unless it has no retry left.
	release, err := h.admitInspection(ctx, p.Key, p.Event != nil)
	if err != nil {
		return err
	}
	defer release()
	if ev, ok := h.Inspector.(HandedOffInspector); ok && p.Event != nil {
		err := ev.InspectHandedOff(ctx, pipeline.HandedOff{
			Bucket: p.Bucket, Key: p.Key, Sequencer: p.Event.Sequencer, EventTime: p.Event.Time, Removal: p.Event.Removal,
		})
		if err == nil {
			h.settleHandedOff(ctx, p.Bucket, p.Key)
		}
		return h.inspectResult(p.Key, err)
	}
	return h.inspect(ctx, p.Bucket, p.Key)
}

// settleHandedOff deletes the hand-off row of an inspection handed off whose verdict is recorded.
// A failure is logged, not the task's: the maintenance task settles the row later.
func (h *Handlers) settleHandedOff(ctx context.Context, bucket, key string) {
	if h.HandedOff == nil {
		return
	}
	if _, err := h.HandedOff.Settle(ctx, bucket, key); err != nil {
		h.log().WarnContext(ctx, "settle a hand-off row; the maintenance task will", "bucket", bucket, "key", key, "err", err)
	}
}

// checkBucket refuses, without retry, a task naming a bucket that is not one of h.Buckets.
func (h *Handlers) checkBucket(what, bucket string) error {
	if len(h.Buckets) > 0 && !slices.Contains(h.Buckets, bucket) {
		return fmt.Errorf("%s: bucket %q is not one intake is configured for (foreign_bucket): %w", what, bucket, asynq.SkipRetry)
	}
	return nil
}

// EarlyError is HandleAbort's error for a deadline abort run before its deadline plus
// tasks.AbortGrace (the payload's deadline, or the later one PostgreSQL holds for the upload):
// nothing was done, and the task is to run again once they have passed. It is retryable; the
// [NewServer] server runs it again at tasks.AbortDue(Deadline) without counting a retry, also
// when the task has no retry left (see [NewServer]). Its runs are counted under outcome "early".
type EarlyError struct {
	// UploadID names the upload.
	UploadID string
	// Deadline is the deadline promised to the upload's owner (its grace not included).
	Deadline time.Time
}

// Error says which abort ran early.
func (e *EarlyError) Error() string {
	return fmt.Sprintf("abort of upload %s run before its deadline %s and its grace of %s: left open",
		e.UploadID, e.Deadline.UTC().Format(time.RFC3339Nano), tasks.AbortGrace)
}

// inspectError carries h.inspect's error, already classified, through the Aborter.
type inspectError struct{ err error }

func (e *inspectError) Error() string { return e.err.Error() }
func (e *inspectError) Unwrap() error { return e.err }

// inspect runs the Inspector on one object; a permanent error is not retried.
func (h *Handlers) inspect(ctx context.Context, bucket, key string) error {
	return h.inspectResult(key, h.Inspector.InspectObject(ctx, bucket, key))
}

// inspectResult is the task's error for an inspection of key that returned err: a permanent
// error is not retried.
func (h *Handlers) inspectResult(key string, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, pipeline.ErrPermanent):
		return fmt.Errorf("inspect %q: %w: %w", key, err, asynq.SkipRetry)
	default:
		return fmt.Errorf("inspect %q: %w", key, err)
	}
}

func (h *Handlers) log() *slog.Logger { return cmp.Or(h.Log, slog.New(slog.DiscardHandler)) }

func (h *Handlers) now() time.Time {
	if h.Now != nil {
		return h.Now()
	}
	return time.Now()
}

// s3Error marks S3 errors that retrying cannot fix (403, 400…) as permanent. Errors without an
// HTTP response (PostgreSQL, network) and timeouts stay retryable, and so do S3's refusals of
// intake's credentials (objstore.IsCredentialsError: ExpiredToken, TokenRefreshRequired,
// InvalidAccessKeyId…), which last until the credentials are renewed, often by themselves (an
// instance metadata outage, a web identity refresh lagging): the pipeline calls them an outage of
// S3, so an object:inspect task meeting one is retried, and an abort must not be archived after
// one attempt for them. An AccessDenied stays permanent: with intake's credentials accepted, it is a
// policy denying that request (the pipeline, too, calls it an outage only when a HeadBucket of the
// bucket is refused as well), and the periodic sweep aborts what such a task left. An error joining
// several is retryable when any of them is: a sweep's joins its listing, overdue and interrupted
// passes' and its failed candidates' (multipart.Service.Sweep), so that one abort refused with a
// 403 does not archive a sweep whose other abort met a 503.
func s3Error(err error) error {
	if retryable(err) {
		return err
	}
	return fmt.Errorf("%w: %w", err, asynq.SkipRetry)
}

// retryable is objstore.IsRetryable or objstore.IsCredentialsError, part by part for an error
// joining several (errors.Join, or fmt.Errorf with several %w): IsRetryable alone judges by the
// first part with an HTTP status, so a 403 of the listing joined with a PostgreSQL outage of a
// later pass would be permanent.
func retryable(err error) bool {
	for e := err; e != nil; {
		switch u := e.(type) {
		case interface{ Unwrap() []error }:
			return slices.ContainsFunc(u.Unwrap(), retryable)
		case interface{ Unwrap() error }:
			e = u.Unwrap()
		default:
			e = nil
		}
	}
	return objstore.IsRetryable(err) || objstore.IsCredentialsError(err)
}

// NewMux routes intake's task types to h's handlers, wrapped (outermost first) in Instrument(m),
// Log(log) and Recover(log).
func NewMux(h *Handlers, m *Metrics, log *slog.Logger) *asynq.ServeMux {
	log = cmp.Or(log, slog.New(slog.DiscardHandler))
	mux := asynq.NewServeMux()
	mux.Use(Instrument(m), Log(log), Recover(log))
	mux.HandleFunc(tasks.TypeAbortMultipart, h.HandleAbort)
	mux.HandleFunc(tasks.TypeSweep, h.HandleSweep)
	mux.HandleFunc(tasks.TypeInspectObject, h.HandleInspect)
	mux.HandleFunc(TypeMaintenance, func(ctx context.Context, t *asynq.Task) error {
		if h.Maintenance == nil {
			return fmt.Errorf("maintenance not configured in this process: %w", asynq.SkipRetry)
		}
		return h.Maintenance.HandleMaintenance(ctx, t)
	})
	return mux
}
