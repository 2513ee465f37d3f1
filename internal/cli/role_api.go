package cli

import (
	"context"
	"fmt"
	"slices"

	"github.com/hibiken/asynq"
	"github.com/intakehq/intake/internal/api"
	"github.com/intakehq/intake/internal/config"
	"github.com/intakehq/intake/internal/jobsapi"
	"github.com/intakehq/intake/internal/ratelimit"
	"github.com/intakehq/intake/internal/store"
	"github.com/intakehq/intake/worker/tasks"
)

// startAPI registers the presign API (/v1, Uppy's /s3 routes, /openapi.json) on the shared mux,
// which the shared HTTP server serves. The JWKS refresh goroutine, when a
// JWKS URL is configured, stops with ctx. api.New logs a WARN at start when
// INTAKE_API_INSECURE_DEV_AUTH is on. Each multipart upload it creates gets a delayed
// multipart:abort task in Redis (tasks.Aborts), run by the jobs role at the deadline; when Redis
// cannot take it, the scheduler role's sweep aborts the upload after its deadline. It also serves
// POST /v1/jobs for operators and for backends not written in Go (same credentials as the API, the
// cookie excepted; tenants act on their own uploads only), and without a consumer role in the same
// process it serves the event ingress (POST /v1/events/s3) when a token is set. POST /v1/jobs is
// counted in the API's request series (intake_http_requests_total, by route and code).
//
// Intent rows go through a store.IntentWriter (group commit: one commit for the rows of many
// concurrent requests). The writer is closed when the daemon has stopped (a.onClose), that is after
// the HTTP server's Shutdown has let in-flight requests finish and before the pool closes; a request
// still running past the grace period inserts its row directly (IntentWriter after Close).
//
// Multipart completions that outlive their request's answer (the complete budget) are waited for
// when the daemon stops, within the shutdown grace (completionsComponent).
//
// GET /v1/uploads/{id}?wait= is woken by the process's outbox Listener (PostgreSQL LISTEN/NOTIFY),
// whose component the role returns unless another role of the process already did.
func startAPI(ctx context.Context, a *App) ([]Component, error) {
	intents := store.NewIntentWriter(a.Store.Pool, store.IntentWriterOptions{Log: a.Log})
	a.onClose(intents.Close)
	if err := a.Registry.Register(intents); err != nil {
		return nil, fmt.Errorf("api: register intent writer metrics: %w", err)
	}
	client := asynq.NewClient(a.Redis)
	a.onClose(func() { _ = client.Close() })
	listener, comps := a.Listener()
	mp, err := a.Multipart()
	if err != nil {
		return nil, fmt.Errorf("api: %w", err)
	}
	// One bucket per owner for the API's routes and POST /v1/jobs together.
	limiter := ratelimit.New(a.Cfg.API.OwnerRate, a.Cfg.API.OwnerBurst)
	if limiter != nil {
		if err := a.Registry.Register(limiter); err != nil {
			return nil, fmt.Errorf("api: register rate limit metrics: %w", err)
		}
	}
	srv, err := api.New(ctx, api.Options{
		Limiter:           limiter,
		Aborts:            tasks.NewAborts(client),
		Multipart:         mp,
		Waits:             listener,
		API:               a.Cfg.API,
		Bucket:            a.Cfg.Bucket,
		MultipartDeadline: a.Cfg.Jobs.MultipartDeadline,
		Policy:            a.Policy,
		Queries:           store.IntentQueries{Queries: a.Store.Q, Intents: intents},
		S3:                a.S3,
		Presign:           a.Presign,
		Log:               a.Log.With("role", "api"),
		Registerer:        a.Registry,
	})
	if err != nil {
		return nil, err
	}
	srv.Register(a.Mux)

	// The inspector lets a tenant's abort replace one that was archived (a refused attempt) under
	// the same task ID, instead of being answered as already queued.
	inspector := asynq.NewInspector(a.Redis)
	a.onClose(func() { _ = inspector.Close() })
	jobsAPI, err := jobsapi.New(jobsapi.Config{
		Client: client, Inspector: inspector, Auth: srv.Authenticator().WithoutCookie(), Uploads: a.Store.Q, Buckets: []string{a.Cfg.Bucket},
		SweepPrefix: a.Cfg.Jobs.SweepPrefix, Limiter: limiter, Log: a.Log.With("component", "jobsapi"), Registerer: a.Registry,
	})
	if err != nil {
		return nil, err
	}
	jobsAPI.Register(a.Mux)
	if !slices.Contains(a.Roles, config.RoleConsumer) {
		if err := mountIngress(a); err != nil {
			return nil, err
		}
	}
	return append(comps, completionsComponent(a, srv)), nil
}

// completionsComponent waits, once the daemon stops, for the multipart completions still running
// (those that outlived their request's answer), within the shutdown grace: the process's exit
// would cut off a completion S3 is finishing, its answer unrecorded until the event or a later
// look at the key.
func completionsComponent(a *App, srv *api.Server) Component {
	return Component{Name: "api-completions", Run: func(ctx context.Context) error {
		<-ctx.Done()
		wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), a.Cfg.ShutdownGrace)
		defer cancel()
		if err := srv.Wait(wctx); err != nil {
			a.Log.Warn("multipart completions still running when the shutdown grace ended: S3 finishes them or not; their intents follow S3 (the event, or a later look at the key)",
				"grace", a.Cfg.ShutdownGrace.String())
		}
		return nil
	}}
}
