package reconcile

import (
	"context"
	"errors"
	"fmt"

	"github.com/intakehq/intake/worker/tasks"
)

// TaskEnqueuer enqueues object:inspect tasks through asynq (an *asynq.Client), one per object at a
// time (tasks.EnqueueInspect): while an inspection of the same object is queued, running or
// retrying, another one is not enqueued and EnqueueInspect returns an error wrapping
// ErrAlreadyQueued, so that a worker outage does not pile one inspection per period and object.
type TaskEnqueuer struct {
	// Client enqueues the tasks.
	Client tasks.Enqueuer
	// States (an *asynq.Inspector) replaces an inspection of the object that failed for good
	// (archived) or is kept completed, which would otherwise hold its task ID until asynq drops
	// it from its archive. Nil only where that is acceptable (tests).
	States tasks.TaskStates
}

// EnqueueInspect enqueues one object:inspect task. An invalid payload (a key the task refuses)
// wraps ErrSkipKey; an inspection already queued wraps ErrAlreadyQueued.
func (e TaskEnqueuer) EnqueueInspect(ctx context.Context, bucket, key string) error {
	info, err := tasks.EnqueueInspect(ctx, e.Client, e.States, tasks.InspectObject{Bucket: bucket, Key: key})
	switch {
	case errors.Is(err, tasks.ErrInvalidPayload):
		return fmt.Errorf("%w: %w", ErrSkipKey, err)
	case err != nil:
		return err
	case tasks.Duplicate(info):
		return fmt.Errorf("%w: task %s", ErrAlreadyQueued, info.ID)
	}
	return nil
}
