package cli

import (
	"context"
	"fmt"

	"github.com/intakehq/intake/internal/api"
	"github.com/intakehq/intake/pipeline"
)

// startAPI registers the presign API (/v1, Uppy's /s3 routes, /openapi.json) on the shared mux. It
// has no component of its own: the shared HTTP server serves it. The JWKS refresh goroutine, when a
// JWKS URL is configured, stops with ctx. api.New logs a WARN at start when
// INTAKE_API_INSECURE_DEV_AUTH is on. Multipart aborts are not scheduled yet (Options.Aborts is nil):
// the periodic sweep cleans up until the jobs role provides an AbortScheduler.
func startAPI(ctx context.Context, a *App) ([]Component, error) {
	policy, err := pipeline.LoadPolicy(a.Cfg.PolicyFile)
	if err != nil {
		return nil, fmt.Errorf("api: %w", err)
	}
	srv, err := api.New(ctx, api.Options{
		API:               a.Cfg.API,
		Bucket:            a.Cfg.Bucket,
		MultipartDeadline: a.Cfg.Jobs.MultipartDeadline,
		Policy:            policy,
		Queries:           a.Store.Q,
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
