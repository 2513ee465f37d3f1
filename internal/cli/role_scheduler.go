package cli

import (
	"context"

	"github.com/intakehq/intake/internal/config"
	"github.com/intakehq/intake/worker/jobs"
)

// startScheduler builds the scheduler role: a jobs.Cron that enqueues the multipart sweep of the
// bucket (under INTAKE_JOBS_SWEEP_PREFIX) on INTAKE_JOBS_SWEEP_CRON. Any number of replicas may run
// it: each period's sweep has one task ID, so it is enqueued once.
func startScheduler(_ context.Context, a *App) ([]Component, error) {
	sweep, err := jobs.SweepEntry(a.Cfg.Jobs.SweepCron, a.Cfg.Bucket, a.Cfg.Jobs.SweepPrefix, a.Cfg.Jobs.SweepOlderThan)
	if err != nil {
		return nil, err
	}
	c, err := jobs.NewCron(jobs.CronConfig{Redis: a.Redis, Entries: []jobs.CronEntry{sweep}, Log: a.Log.With("role", config.RoleScheduler)})
	if err != nil {
		return nil, err
	}
	return []Component{{Name: "scheduler", Run: c.Run}}, nil
}
