package cli

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/hibiken/asynq"

	"github.com/intakehq/intake/internal/config"
	"github.com/intakehq/intake/internal/reconcile"
	"github.com/intakehq/intake/worker/jobs"
)

// startJobs builds the jobs role: the asynq server running multipart:abort, multipart:sweep,
// object:inspect, objects:reconcile (queues and priorities in worker/tasks) and intake:maintenance
// tasks (intent expiry, event retention), stopped within ShutdownGrace.
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
	rec, err := newReconciler(a, log)
	if err != nil {
		return nil, err
	}
	mux := jobs.NewMux(&jobs.Handlers{Aborts: mp, Sweeps: mp, Inspector: proc, Maintenance: maint, Log: log}, metrics, log)
	rec.Register(mux)
	srv, err := jobs.NewServer(jobs.ServerConfig{
		Redis: a.Redis, Concurrency: a.Cfg.Jobs.Concurrency, ShutdownTimeout: a.Cfg.ShutdownGrace, Log: log,
	}, mux)
	if err != nil {
		return nil, err
	}
	return []Component{{Name: "jobs", Run: srv.Run}}, nil
}

// newReconciler builds the runner of the periodic reconcile task: it lists the bucket, compares it
// with the objects table and enqueues object:inspect tasks (through its own asynq client, closed
// when the daemon stops).
func newReconciler(a *App, log *slog.Logger) (*jobs.Reconciler, error) {
	m, err := jobs.NewReconcileMetrics(a.Registry)
	if err != nil {
		return nil, err
	}
	client := asynq.NewClient(a.Redis)
	a.onClose(func() { _ = client.Close() })
	return jobs.NewReconciler(jobs.ReconcilerConfig{
		S3: a.S3, Rows: a.Store.Q, Enqueuer: reconcile.TaskEnqueuer{Client: client},
		Buckets: []string{a.Cfg.Bucket}, Metrics: m, Log: log.With("task", jobs.TypeReconcile),
	})
}
