package cli

import (
	"context"
	"fmt"

	"github.com/intakehq/intake/internal/api"
	"github.com/intakehq/intake/internal/store"
	"github.com/intakehq/intake/pipeline"
)

// startAPI registers the presign API (/v1, Uppy's /s3 routes, /openapi.json) on the shared mux. It
// has no component of its own: the shared HTTP server serves it. The JWKS refresh goroutine, when a
// JWKS URL is configured, stops with ctx. api.New logs a WARN at start when
// INTAKE_API_INSECURE_DEV_AUTH is on. Multipart aborts are not scheduled yet (Options.Aborts is nil):
// the periodic sweep cleans up until the jobs role provides an AbortScheduler.
//
// Intent rows go through a store.IntentWriter (group commit: one commit for the rows of many
// concurrent requests). The writer is closed when the daemon has stopped (a.onClose), that is after
// the HTTP server's Shutdown has let in-flight requests finish and before the pool closes; a request
// still running past the grace period inserts its row directly (IntentWriter after Close).
func startAPI(ctx context.Context, a *App) ([]Component, error) {
	policy, err := pipeline.LoadPolicy(a.Cfg.PolicyFile)
	if err != nil {
		return nil, fmt.Errorf("api: %w", err)
	}
	intents := store.NewIntentWriter(a.Store.Pool, store.IntentWriterOptions{})
	a.onClose(intents.Close)
	if err := a.Registry.Register(intents); err != nil {
		return nil, fmt.Errorf("api: register intent writer metrics: %w", err)
	}
	srv, err := api.New(ctx, api.Options{
		API:               a.Cfg.API,
		Bucket:            a.Cfg.Bucket,
		MultipartDeadline: a.Cfg.Jobs.MultipartDeadline,
		Policy:            policy,
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
	return nil, nil
}
