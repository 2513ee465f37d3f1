package cli

import (
	"context"
	"fmt"

	"github.com/intakehq/intake/internal/config"
	"github.com/intakehq/intake/worker/jobs"
)

// startJobs builds the jobs role: the asynq server running multipart:abort, multipart:sweep,
// object:inspect (queues and priorities in worker/tasks) and intake:maintenance tasks (intent
// expiry, event retention), stopped within ShutdownGrace.
func startJobs(_ context.Context, a *App) ([]Component, error) {
	log := a.Log.With("role", config.RoleJobs)
	metrics, err := jobs.NewMetrics(a.Registry)
	if err != nil {
		return nil, err
	}
	mp, err := a.Multipart()
	if err != nil {
		return nil, fmt.Errorf("jobs: %w", err)
	}
	proc, err := a.Processor()
	if err != nil {
		return nil, fmt.Errorf("jobs: %w", err)
	}
	maint, err := jobs.NewMaintenance(jobs.MaintenanceConfig{
		Store: jobs.NewMaintenanceStore(a.Store.Q), Registerer: a.Registry, Log: log.With("component", "maintenance"),
	})
	if err != nil {
		return nil, err
	}
	srv, err := jobs.NewServer(jobs.ServerConfig{
		Redis: a.Redis, Concurrency: a.Cfg.Jobs.Concurrency, ShutdownTimeout: a.Cfg.ShutdownGrace, Log: log,
	}, jobs.NewMux(&jobs.Handlers{Aborts: mp, Sweeps: mp, Inspector: proc, Maintenance: maint, Log: log}, metrics, log))
	if err != nil {
		return nil, err
	}
	return []Component{{Name: "jobs", Run: srv.Run}}, nil
}
