package cli

import (
	"context"
	"fmt"
	"log/slog"
	"os"

	"github.com/hibiken/asynq"

	"github.com/intakehq/intake/internal/config"
	"github.com/intakehq/intake/internal/outbox"
	"github.com/intakehq/intake/internal/reconcile"
	"github.com/intakehq/intake/internal/store"
	"github.com/intakehq/intake/internal/webhook"
	"github.com/intakehq/intake/worker/jobs"
	"github.com/intakehq/intake/worker/tasks"
)

// startJobs builds the jobs role: the asynq server running multipart:abort, multipart:sweep,
// object:inspect, objects:reconcile (queues and priorities in worker/tasks) and intake:maintenance
// tasks (intent expiry, event retention), stopped within ShutdownGrace, its runs counted in
// intake_tasks_total (the reconcile's outcomes exported at 0 from the start); and the
// notifications: the outbox relay (woken by the process's outbox Listener) and, when webhook
// endpoints are configured, a second asynq server of INTAKE_WEBHOOK_CONCURRENCY workers running the
// webhook deliveries (queue intake-webhooks, retried for at least a day).
func startJobs(_ context.Context, a *App) ([]Component, error) {
	cfg := a.Cfg
	log := a.Log.With("role", config.RoleJobs)
	metrics, err := jobs.NewMetrics(a.Registry)
	if err != nil {
		return nil, err
	}
	// NewMetrics exports the series of tasks.Types at 0; objects:reconcile is not one of them.
	// Exported at 0 from the start, a jobs pod's first failed reconcile is an increase that
	// IntakeReconcileFailing (deploy/observability/alerts.yml) sees, not a series born at 1.
	for _, o := range jobs.Outcomes {
		metrics.Tasks.WithLabelValues(jobs.TypeReconcile, o)
	}
	mp, err := a.Multipart()
	if err != nil {
		return nil, fmt.Errorf("jobs: %w", err)
	}
	proc, err := a.Processor()
	if err != nil {
		return nil, fmt.Errorf("jobs: %w", err)
	}
	// One asynq client for the sweeps' inspection tasks, the hand-offs queued again, the outbox
	// relay and the webhook deliveries' follow-ups.
	client := asynq.NewClient(a.Redis)
	a.onClose(func() { _ = client.Close() })
	states := asynq.NewInspector(a.Redis) // replaces a sweep's inspection that failed for good
	a.onClose(func() { _ = states.Close() })
	// The hand-off rows are settled and queued again whether or not this release's consumers
	// hand off: rows another replica wrote must not wait for a configuration change.
	handedOff := jobs.NewHandedOffStore(a.Store.Q)
	maint, err := jobs.NewMaintenance(jobs.MaintenanceConfig{
		Store: jobs.NewMaintenanceStore(a.Store.Q), Registerer: a.Registry, Log: log.With("component", "maintenance"),
		HandedOff: handedOff, Tasks: client, TaskStates: states,
		RegisterQueues: func(ctx context.Context) error {
			return tasks.RegisterQueues(ctx, a.Redis, tasks.QueueCritical, tasks.QueueDefault, tasks.QueueLow)
		},
	})
	if err != nil {
		return nil, err
	}
	rec, err := newReconciler(a, log)
	if err != nil {
		return nil, err
	}
	deferred, err := jobs.NewInspectionsDeferred(a.Registry)
	if err != nil {
		return nil, err
	}
	mux := jobs.NewMux(&jobs.Handlers{
		Aborts: mp, Sweeps: mp, Inspector: proc, Tasks: client, TaskStates: states, Maintenance: maint, Log: log, Buckets: []string{a.Cfg.Bucket},
		HandedOff: handedOff,
		// One owner's object:inspect tasks hold at most half the workers, and a second one only
		// while a reserve stays free (the owner is the key's segment before its upload id), so
		// that the other tenants' inspections go on.
		Concurrency: a.Cfg.Jobs.Concurrency, InspectionsDeferred: deferred,
	}, metrics, log)
	rec.Register(mux)
	srv, err := jobs.NewServer(jobs.ServerConfig{
		Redis: a.Redis, Concurrency: a.Cfg.Jobs.Concurrency, ShutdownTimeout: a.Cfg.ShutdownGrace, Log: log,
	}, mux)
	if err != nil {
		return nil, err
	}
	comps := []Component{{Name: "jobs", Run: srv.Run}}

	endpoints, err := webhook.NewEndpoints(
		webhook.Configs(cfg.Webhook.URL, cfg.Webhook.Secret, a.Policy.Webhooks, os.Getenv), cfg.Webhook.AllowPrivate)
	if err != nil {
		return nil, fmt.Errorf("jobs: %w", err)
	}
	listener, lcomps := a.Listener()
	relay, err := outbox.NewRelay(outbox.RelayConfig{
		Pool: a.Store.Pool, Client: client, Endpoints: endpoints, AttemptTimeout: cfg.Webhook.Timeout,
		VerdictQueue: cfg.NotifyAsynqQueue, Waker: listener, Retention: cfg.Webhook.Retention,
		Log: a.Log.With("component", "outbox-relay"), Registerer: a.Registry,
	})
	if err != nil {
		return nil, err
	}
	comps = append(comps, lcomps...)
	comps = append(comps, Component{Name: "outbox-relay", Run: relay.Run})
	if len(endpoints.Names()) == 0 {
		log.Info("no webhook endpoint configured (INTAKE_WEBHOOK_URL, policy webhooks): notifications are recorded, not posted",
			"notify_asynq_queue", cfg.NotifyAsynqQueue)
		return comps, nil
	}
	wlog := a.Log.With("component", "webhooks")
	wm, err := webhook.NewMetrics(a.Registry, endpoints.Names())
	if err != nil {
		return nil, err
	}
	// The delivery records of concurrent deliveries share statements and commits; closed after
	// the roles have stopped, before the pool.
	notes := store.NewOutbox(a.Store, store.BatchOptions{})
	a.onClose(notes.Close)
	deliverer, err := webhook.NewDeliverer(webhook.DelivererConfig{
		Store: notes, Endpoints: endpoints, Tasks: client, AttemptTimeout: cfg.Webhook.Timeout,
		Metrics: wm, Log: wlog, UserAgent: "intake-webhooks/" + Version,
		// One endpoint that hangs holds at most half the workers (one once its attempts keep
		// timing out), so that the others' deliveries go on.
		MaxPerEndpoint: max(1, cfg.Webhook.Concurrency/2),
		// Slow receivers together hold at most three quarters of them.
		Workers: cfg.Webhook.Concurrency,
		Client:  webhook.NewClient(webhook.ClientOptions{Timeout: cfg.Webhook.Timeout, AllowPrivate: cfg.Webhook.AllowPrivate}),
	})
	if err != nil {
		return nil, err
	}
	whMux := asynq.NewServeMux()
	whMux.Use(jobs.Instrument(metrics), jobs.Log(wlog), jobs.Recover(wlog))
	whMux.Handle(webhook.TypeDeliver, deliverer)
	whSrv, err := jobs.NewServer(jobs.ServerConfig{
		Redis: a.Redis, Concurrency: cfg.Webhook.Concurrency, Queues: map[string]int{webhook.Queue: 1},
		RetryDelayFunc: webhook.RetryDelay, TaskCheckInterval: webhook.TaskCheckInterval, IsFailure: deliverer.IsFailure,
		ShutdownTimeout: cfg.ShutdownGrace, Log: wlog,
	}, whMux)
	if err != nil {
		return nil, err
	}
	log.Info("webhooks enabled", "endpoints", endpoints.Names(), "allow_private", cfg.Webhook.AllowPrivate,
		"notify_asynq_queue", cfg.NotifyAsynqQueue)
	return append(comps, Component{Name: "webhooks", Run: whSrv.Run}), nil
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
	states := asynq.NewInspector(a.Redis)
	a.onClose(func() { _ = states.Close() })
	return jobs.NewReconciler(jobs.ReconcilerConfig{
		S3: a.S3, Rows: a.Store.Q, Enqueuer: reconcile.TaskEnqueuer{Client: client, States: states},
		Buckets: []string{a.Cfg.Bucket}, Metrics: m, Log: log.With("task", jobs.TypeReconcile),
	})
}
