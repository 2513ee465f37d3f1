package jobs

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/hibiken/asynq"

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
// which objstore.IsRetryable is false are not retried, inspect's excepted (see Handlers.HandleAbort).
type Aborter interface {
	AbortUpload(ctx context.Context, bucket, key, uploadID, reason string,
		inspect func(ctx context.Context, bucket, key string) error) (outcome string, completed bool, err error)
}

// Sweeper aborts a bucket's stale multipart uploads and records what it did (the daemon passes
// internal/multipart's Service, which never aborts intake's own uploads before their deadline).
type Sweeper interface {
	// SweepBucket sweeps; inspect, when not nil, is called for each of intake's uploads found
	// completed (their event is late or was never sent).
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
	// Buckets, when set, are the buckets sweep tasks may name (the ones intake serves); a sweep of
	// another is refused without retry, as POST /v1/jobs and `intake sweep` refuse it.
	Buckets []string
	// MinSweepAge is the smallest older_than a sweep task may carry (default tasks.MinSweepAge):
	// younger uploads are probably in progress, whoever built the task.
	MinSweepAge time.Duration
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
	reason := cmp.Or(p.Reason, tasks.ReasonDeadline)
	if now := h.now(); reason == tasks.ReasonDeadline && now.Add(earlyTolerance).Before(p.Deadline) {
		// Run before its time: by an operator (`intake jobs run --all --state scheduled`, asynqmon's
		// "Run") or a task built by hand. The upload's owner was promised it until the deadline, so it
		// is left open and the task consumed: nothing is recorded, and the sweep aborts the upload
		// once its deadline has passed (its overdue pass reads the deadline from PostgreSQL).
		h.log().WarnContext(ctx, "multipart abort task run before its deadline: upload left open for the sweep",
			"bucket", p.Bucket, "key", p.Key, "upload_id", p.UploadID, "deadline", p.Deadline, "early_by", p.Deadline.Sub(now).String())
		return nil
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
	if len(h.Buckets) > 0 && !slices.Contains(h.Buckets, p.Bucket) {
		return fmt.Errorf("sweep: bucket %q is not one intake is configured for (foreign_bucket): %w", p.Bucket, asynq.SkipRetry)
	}
	var inspect func(ctx context.Context, bucket, key string) error
	if h.Inspector != nil {
		inspect = h.Inspector.InspectObject
	}
	if err := h.Sweeps.SweepBucket(ctx, p.Bucket, p.Prefix, time.Duration(p.OlderThan), inspect); err != nil {
		return s3Error(err)
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
	return h.inspect(ctx, p.Bucket, p.Key)
}

// inspectError carries h.inspect's error, already classified, through the Aborter.
type inspectError struct{ err error }

func (e *inspectError) Error() string { return e.err.Error() }
func (e *inspectError) Unwrap() error { return e.err }

// inspect runs the Inspector on one object; a permanent error is not retried.
func (h *Handlers) inspect(ctx context.Context, bucket, key string) error {
	if err := h.Inspector.InspectObject(ctx, bucket, key); err != nil {
		if errors.Is(err, pipeline.ErrPermanent) {
			return fmt.Errorf("inspect %q: %w: %w", key, err, asynq.SkipRetry)
		}
		return fmt.Errorf("inspect %q: %w", key, err)
	}
	return nil
}

func (h *Handlers) log() *slog.Logger { return cmp.Or(h.Log, slog.New(slog.DiscardHandler)) }

// earlyTolerance is how early a deadline abort task may run and still abort: asynq forwards a
// scheduled task by whole seconds (up to a second early), and the replicas' clocks differ a little.
// An operator running scheduled tasks by hand is hours early.
const earlyTolerance = time.Minute

func (h *Handlers) now() time.Time {
	if h.Now != nil {
		return h.Now()
	}
	return time.Now()
}

// s3Error marks S3 errors that retrying cannot fix (403, 400…) as permanent. Errors without an
// HTTP response (PostgreSQL, network) and timeouts stay retryable.
func s3Error(err error) error {
	if objstore.IsRetryable(err) {
		return err
	}
	return fmt.Errorf("%w: %w", err, asynq.SkipRetry)
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
