package cli

import (
	"context"

	"github.com/intakehq/intake/internal/config"
	"github.com/intakehq/intake/worker/jobs"
)

// startScheduler builds the scheduler role: an asynq Scheduler that enqueues the stale multipart
// sweep of the bucket on INTAKE_JOBS_SWEEP_CRON and, unless INTAKE_JOBS_RECONCILE_CRON is off, its
// periodic reconcile. Any number of replicas may run it: each period's task has one task ID, so it
// is enqueued once.
func startScheduler(_ context.Context, a *App) ([]Component, error) {
	j := a.Cfg.Jobs
	sweep, err := jobs.SweepEntry(a.Cfg.Bucket, "", j.SweepCron, j.SweepOlderThan)
	if err != nil {
		return nil, err
	}
	entries := []jobs.PeriodicEntry{sweep}
	if j.ReconcileEnabled() {
		rec, err := jobs.ReconcileEntry(a.Cfg.Bucket, j.ReconcileCron, j.ReconcileRate)
		if err != nil {
			return nil, err
		}
		entries = append(entries, rec)
	}
	s, err := jobs.NewPeriodic(jobs.PeriodicConfig{Redis: a.Redis, Entries: entries, Log: a.Log.With("role", config.RoleScheduler)})
	if err != nil {
		return nil, err
	}
	return []Component{{Name: "scheduler", Run: s.Run}}, nil
}
