package jobs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"time"

	"github.com/hibiken/asynq"

	"github.com/intakehq/intake/internal/telemetry"
)

// Recover turns a panic in the handler into an error (retried like any other) and logs the stack.
// asynq recovers panics too, but without the stack in intake's logs.
func Recover(log *slog.Logger) asynq.MiddlewareFunc {
	return func(next asynq.Handler) asynq.Handler {
		return asynq.HandlerFunc(func(ctx context.Context, t *asynq.Task) (err error) {
			defer func() {
				if r := recover(); r != nil {
					log.ErrorContext(ctx, "task handler panicked", "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
					err = fmt.Errorf("panic in %s handler: %v", t.Type(), r)
				}
			}()
			return next.ProcessTask(ctx, t)
		})
	}
}

// Log adds task_id, task_type, queue and retry to the context's log attributes (see
// telemetry.WithAttrs) and logs the end of every run: debug on success and for a run deferred by a
// share (an error with Deferred() true: a webhook endpoint's, an owner's inspections), info for a
// run that is to happen later ([OutcomeEarly]: a deadline abort run early) or was interrupted
// ([OutcomeInterrupted]), warn when it will be retried, error when it failed for good.
func Log(log *slog.Logger) asynq.MiddlewareFunc {
	return func(next asynq.Handler) asynq.Handler {
		return asynq.HandlerFunc(func(ctx context.Context, t *asynq.Task) error {
			id, _ := asynq.GetTaskID(ctx)
			queue, _ := asynq.GetQueueName(ctx)
			retried, _ := asynq.GetRetryCount(ctx)
			ctx = telemetry.WithAttrs(ctx, slog.String("task_id", id), slog.String("task_type", t.Type()),
				slog.String("queue", queue), slog.Int("retry", retried))
			start := time.Now()
			err := next.ProcessTask(ctx, t)
			took := slog.Duration("took", time.Since(start))
			switch outcome(ctx, err) {
			case OutcomeSuccess:
				log.DebugContext(ctx, "task done", took)
			case OutcomeEarly:
				if d := deferral(nil); errors.As(err, &d) && d.Deferred() {
					// A share's deferral: thousands a minute under a tenant's backlog; counted, and
					// logged by its handler at debug.
					log.DebugContext(ctx, "task deferred; runs again later", took, "err", err)
					break
				}
				log.InfoContext(ctx, "task run before its time; runs again then", took, "err", err)
			case OutcomeInterrupted:
				log.InfoContext(ctx, "task interrupted (the server is stopping, or the run was cancelled); it runs again", took, "err", err)
			case OutcomeRetry:
				log.WarnContext(ctx, "task failed; will retry", took, "err", err)
			default:
				log.ErrorContext(ctx, "task failed permanently", took, "err", err)
			}
			return err
		})
	}
}

// Instrument counts runs (intake_tasks_total) and observes their duration
// (intake_task_duration_seconds), except a share's deferral's (it did nothing). A nil m records
// nothing.
func Instrument(m *Metrics) asynq.MiddlewareFunc {
	return func(next asynq.Handler) asynq.Handler {
		return asynq.HandlerFunc(func(ctx context.Context, t *asynq.Task) error {
			start := time.Now()
			err := next.ProcessTask(ctx, t)
			if m != nil {
				if d := deferral(nil); !errors.As(err, &d) || !d.Deferred() {
					// A share's deferral did nothing: its microseconds would hide the runs' times.
					m.Duration.WithLabelValues(t.Type()).Observe(time.Since(start).Seconds())
				}
				m.Tasks.WithLabelValues(t.Type(), outcome(ctx, err)).Inc()
			}
			return err
		})
	}
}

// deferral is implemented by the errors of runs put off on purpose, which did nothing and are no
// failed attempt (webhook.DeferredError: the endpoint had its share of the workers).
type deferral interface{ Deferred() bool }

// outcome classifies a run: success; failed when the error skips retries or the retries are used
// up (asynq archives the task); early for a deadline abort run before its time ([EarlyError]: it
// runs again then, see [NewServer]); interrupted when the run's context was cancelled (the server
// shutting down, whose unfinished tasks asynq puts back; a cancel through asynq's Inspector; a
// lost lease) rather than timing out; retry otherwise.
func outcome(ctx context.Context, err error) string {
	if err == nil {
		return OutcomeSuccess
	}
	if errors.Is(err, asynq.SkipRetry) {
		return OutcomeFailed
	}
	if early := (*EarlyError)(nil); errors.As(err, &early) {
		return OutcomeEarly
	}
	if d := deferral(nil); errors.As(err, &d) && d.Deferred() {
		return OutcomeEarly
	}
	if errors.Is(ctx.Err(), context.Canceled) {
		return OutcomeInterrupted
	}
	retried, ok1 := asynq.GetRetryCount(ctx)
	maxRetry, ok2 := asynq.GetMaxRetry(ctx)
	if ok1 && ok2 && retried >= maxRetry {
		return OutcomeFailed
	}
	return OutcomeRetry
}
