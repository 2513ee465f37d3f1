package reconcile

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hibiken/asynq"

	"github.com/intakehq/intake/worker/tasks"
)

// TaskEnqueuer enqueues object:inspect tasks through asynq (an *asynq.Client).
type TaskEnqueuer struct {
	// Client enqueues the tasks.
	Client tasks.Enqueuer
	// Unique, when positive, makes each inspection unique for that long (asynq.Unique): while an
	// inspection of the same object is still queued, retrying or, within Unique, archived, another
	// one is not enqueued and EnqueueInspect returns an error wrapping ErrAlreadyQueued. The periodic
	// reconcile sets it (to tasks.InspectUnique) so that a worker outage does not pile one inspection per period and object.
	Unique time.Duration
}

// EnqueueInspect enqueues one object:inspect task. An invalid payload (a key the task refuses)
// wraps ErrSkipKey; an inspection already queued (with Unique) wraps ErrAlreadyQueued.
func (e TaskEnqueuer) EnqueueInspect(ctx context.Context, bucket, key string) error {
	task, err := tasks.NewInspectObject(tasks.InspectObject{Bucket: bucket, Key: key})
	if err != nil {
		if errors.Is(err, tasks.ErrInvalidPayload) {
			return fmt.Errorf("%w: %w", ErrSkipKey, err)
		}
		return err
	}
	var opts []asynq.Option
	if e.Unique > 0 {
		opts = append(opts, asynq.Unique(e.Unique))
	}
	if _, err := tasks.Enqueue(ctx, e.Client, task, opts...); err != nil {
		if errors.Is(err, asynq.ErrDuplicateTask) {
			return fmt.Errorf("%w: %w", ErrAlreadyQueued, err)
		}
		return err
	}
	return nil
}
