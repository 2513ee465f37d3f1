package cli

import (
	"context"

	"github.com/intakehq/intake/internal/config"
	"github.com/intakehq/intake/worker/jobs"
	"github.com/intakehq/intake/worker/tasks"
)

// startScheduler builds the scheduler role: asynq Schedulers that enqueue the stale multipart
// sweep of the bucket on INTAKE_JOBS_SWEEP_CRON and the maintenance task (intent expiry, event
// retention) on INTAKE_JOBS_MAINTENANCE_CRON. Any number of replicas may run it: each period's task
// has one task ID, so it is enqueued once.
func startScheduler(_ context.Context, a *App) ([]Component, error) {
	s, err := jobs.NewSweepScheduler(jobs.SweepSchedulerConfig{
		Redis: a.Redis, Bucket: a.Cfg.Bucket, Cron: a.Cfg.Jobs.SweepCron, OlderThan: a.Cfg.Jobs.SweepOlderThan,
		Log: a.Log.With("role", config.RoleScheduler),
	})
	if err != nil {
		return nil, err
	}
	m, err := jobs.NewMaintenanceScheduler(jobs.MaintenanceSchedulerConfig{
		Redis: a.Redis, Cron: a.Cfg.Jobs.MaintenanceCron, Log: a.Log.With("role", config.RoleScheduler),
		Payload: jobs.MaintenancePayload{
			EventsRetention: tasks.Duration(a.Cfg.EventsRetention), ExpiryGrace: tasks.Duration(a.Cfg.Jobs.ExpiryGrace),
		},
	})
	if err != nil {
		return nil, err
	}
	return []Component{{Name: "scheduler", Run: s.Run}, {Name: "maintenance-scheduler", Run: m.Run}}, nil
}
