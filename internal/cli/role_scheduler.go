package cli

import (
	"context"

	"github.com/intakehq/intake/internal/config"
	"github.com/intakehq/intake/worker/jobs"
	"github.com/intakehq/intake/worker/tasks"
)

// startScheduler builds the scheduler role: jobs.Periodic enqueuing the multipart sweep of the
// bucket (under INTAKE_JOBS_SWEEP_PREFIX) on INTAKE_JOBS_SWEEP_CRON, the maintenance task (intent
// expiry, event retention) on INTAKE_JOBS_MAINTENANCE_CRON and, unless INTAKE_JOBS_RECONCILE_CRON is
// off, the reconcile of the bucket. Any number of replicas may run it: each period's task has one
// task ID, so it is enqueued once. It uses Redis only (not a.Store, nil in a process that runs the
// scheduler alone, which neither waits for PostgreSQL nor checks it or S3: see serve, addChecks).
func startScheduler(_ context.Context, a *App) ([]Component, error) {
	log := a.Log.With("role", config.RoleScheduler)
	s, err := jobs.NewSweepPeriodic(jobs.SweepPeriodicConfig{
		Redis: a.Redis, Bucket: a.Cfg.Bucket, Prefix: a.Cfg.Jobs.SweepPrefix, Cron: a.Cfg.Jobs.SweepCron,
		OlderThan: a.Cfg.Jobs.SweepOlderThan, Log: log,
	})
	if err != nil {
		return nil, err
	}
	m, err := jobs.NewMaintenancePeriodic(jobs.MaintenancePeriodicConfig{
		Redis: a.Redis, Cron: a.Cfg.Jobs.MaintenanceCron, Log: log,
		Payload: jobs.MaintenancePayload{
			EventsRetention: tasks.Duration(a.Cfg.EventsRetention), ExpiryGrace: tasks.Duration(a.Cfg.Jobs.ExpiryGrace),
		},
	})
	if err != nil {
		return nil, err
	}
	components := []Component{{Name: "sweep-periodic", Run: s.Run}, {Name: "maintenance-periodic", Run: m.Run}}
	if a.Cfg.Jobs.ReconcileEnabled() {
		r, err := jobs.NewReconcilePeriodic(jobs.ReconcilePeriodicConfig{
			Redis: a.Redis, Bucket: a.Cfg.Bucket, Cron: a.Cfg.Jobs.ReconcileCron, Rate: a.Cfg.Jobs.ReconcileRate, Log: log,
		})
		if err != nil {
			return nil, err
		}
		components = append(components, Component{Name: "reconcile-periodic", Run: r.Run})
	}
	return components, nil
}
