package reconcile

import (
	"context"
	"errors"
	"fmt"

	"github.com/intakehq/intake/worker/tasks"
)

// TaskEnqueuer enqueues object:inspect tasks through asynq (an *asynq.Client).
type TaskEnqueuer struct {
	// Client enqueues the tasks.
	Client tasks.Enqueuer
}

// EnqueueInspect enqueues one object:inspect task. An invalid payload (a key the task refuses)
// wraps ErrSkipKey.
func (e TaskEnqueuer) EnqueueInspect(ctx context.Context, bucket, key string) error {
	task, err := tasks.NewInspectObject(tasks.InspectObject{Bucket: bucket, Key: key})
	if err != nil {
		if errors.Is(err, tasks.ErrInvalidPayload) {
			return fmt.Errorf("%w: %w", ErrSkipKey, err)
		}
		return err
	}
	if _, err := tasks.Enqueue(ctx, e.Client, task); err != nil {
		return err
	}
	return nil
}
