package cli

import (
	"context"

	"github.com/intakehq/intake/internal/config"
	"github.com/intakehq/intake/worker/jobs"
)

// startScheduler builds the scheduler role: an asynq Scheduler that enqueues the stale multipart
// sweep of the bucket on INTAKE_JOBS_SWEEP_CRON. Any number of replicas may run it: each period's
// sweep has one task ID, so it is enqueued once.
func startScheduler(_ context.Context, a *App) ([]Component, error) {
	s, err := jobs.NewSweepScheduler(jobs.SweepSchedulerConfig{
		Redis: a.Redis, Bucket: a.Cfg.Bucket, Cron: a.Cfg.Jobs.SweepCron, OlderThan: a.Cfg.Jobs.SweepOlderThan,
		Log: a.Log.With("role", config.RoleScheduler),
	})
	if err != nil {
		return nil, err
	}
	return []Component{{Name: "scheduler", Run: s.Run}}, nil
}
