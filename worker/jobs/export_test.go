package jobs

import (
	"context"

	"github.com/hibiken/asynq"
)

// Fire enqueues the task of the period now falls in, as one fire of p's cron does.
func (p *Periodic) Fire(ctx context.Context, client *asynq.Client) { p.enqueue(ctx, client) }

// RetryDelay is retryDelay (the jobs server's retry schedule over next).
var RetryDelay = retryDelay
