package cli

import (
	"context"
	"fmt"
	"slices"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/intakehq/intake/internal/config"
	"github.com/intakehq/intake/internal/objstore"
	"github.com/intakehq/intake/internal/store"
	"github.com/intakehq/intake/pipeline"
	"github.com/intakehq/intake/worker/jobs"
)

// startJobs builds the jobs role: the asynq server running multipart:abort, multipart:sweep and
// object:inspect tasks (queues and priorities in worker/tasks), stopped within ShutdownGrace.
func startJobs(_ context.Context, a *App) ([]Component, error) {
	log := a.Log.With("role", config.RoleJobs)
	metrics, err := jobs.NewMetrics(a.Registry)
	if err != nil {
		return nil, err
	}
	mp, err := jobs.NewMultipart(jobs.MultipartConfig{S3: a.S3, Store: a.Store.Q, Log: log, Metrics: metrics})
	if err != nil {
		return nil, err
	}
	policy, err := pipeline.LoadPolicy(a.Cfg.PolicyFile)
	if err != nil {
		return nil, fmt.Errorf("jobs: %w", err)
	}
	// The consumer role registers the pipeline's metrics when it runs in this process; the
	// processor of object:inspect tasks then records none (the task metrics still count them).
	var reg prometheus.Registerer = a.Registry
	if slices.Contains(a.Roles, config.RoleConsumer) {
		reg = nil
	}
	proc, err := pipeline.NewProcessor(pipeline.ProcessorConfig{
		Objects: objstore.NewObjects(a.S3), Records: store.NewRecords(a.Store), Policy: policy,
		Log: log, Registerer: reg, HashMaxSize: a.Cfg.Consumer.HashMaxSize,
	})
	if err != nil {
		return nil, fmt.Errorf("jobs: %w", err)
	}
	srv, err := jobs.NewServer(jobs.ServerConfig{
		Redis: a.Redis, Concurrency: a.Cfg.Jobs.Concurrency, ShutdownTimeout: a.Cfg.ShutdownGrace, Log: log,
	}, jobs.NewMux(&jobs.Handlers{Multipart: mp, Inspector: proc, Log: log}, metrics, log))
	if err != nil {
		return nil, err
	}
	return []Component{{Name: "jobs", Run: srv.Run}}, nil
}
