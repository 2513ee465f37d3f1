package cli

import (
	"context"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/intakehq/intake/internal/config"
	"github.com/intakehq/intake/internal/telemetry"
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
			IntentsRetention: tasks.Duration(a.Cfg.IntentsRetention),
		},
	})
	if err != nil {
		return nil, err
	}
	components := []Component{{Name: "sweep-periodic", Run: s.Run}, {Name: "maintenance-periodic", Run: m.Run}}
	// IntakeReconcileNotRunning keeps the last success of a jobs pod that has gone (max_over_time):
	// it must know when the reconcile was turned off since, rather than never run.
	scheduled := prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: telemetry.Namespace, Name: "reconcile_scheduled",
		Help: "1 when this scheduler enqueues the periodic reconcile, 0 when INTAKE_JOBS_RECONCILE_CRON is off.",
	})
	if err := a.Registry.Register(scheduled); err != nil {
		return nil, err
	}
	if a.Cfg.Jobs.ReconcileEnabled() {
		scheduled.Set(1)
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
