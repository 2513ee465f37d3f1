package cli

import (
	"errors"
	"fmt"

	"github.com/hibiken/asynq"

	"github.com/intakehq/intake/internal/config"
	"github.com/intakehq/intake/internal/objstore"
	"github.com/intakehq/intake/internal/reconcile"
)

// ReconcileCmd compares a bucket with the objects table. The bucket is the global --bucket
// (INTAKE_BUCKET).
type ReconcileCmd struct {
	config.Database  `embed:""`
	config.Redis     `embed:"" set:"redis_url_help=Redis URL of asynq (read with --fix: the inspections are enqueued there)."`
	config.AWSRegion `embed:""`
	config.S3Client  `embed:""`
	config.S3Bucket  `embed:""`

	Prefix string `name:"prefix" placeholder:"P" help:"Only keys that start with P."`
	Fix    bool   `name:"fix" help:"Enqueue object:inspect tasks for missing and stale objects, and mark gone rows missing (reason 'reconcile')."`
	JSON   bool   `name:"json" help:"Print the report as JSON (every key)."`
	// ExitCode makes differences visible to scripts and cron (like diff(1) and git diff --exit-code).
	ExitCode bool `name:"exit-code" help:"Exit with status 3 when the report lists differences (missing, stale or gone); 0 means in sync, 1 an error."`
}

// exitDifferences is the exit status of reconcile --exit-code when differences were found.
const exitDifferences = 3

// Run compares, optionally fixes, and prints the report.
func (c *ReconcileCmd) Run(g *Globals) error {
	cfg := g.Config
	var errs []error
	if cfg.Bucket == "" {
		errs = append(errs, errors.New("INTAKE_BUCKET: required (or --bucket)"))
	}
	errs = append(errs, cfg.ValidateDB())
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("invalid configuration:\n%w", err)
	}
	st, err := openStore(g.Ctx, cfg)
	if err != nil {
		return err
	}
	defer st.Close()
	awsCfg, err := objstore.LoadAWS(g.Ctx, cfg.AWS, g.Log)
	if err != nil {
		return err
	}
	o := reconcile.Options{Bucket: cfg.Bucket, Prefix: c.Prefix, Fix: c.Fix, Log: g.Log}
	if c.Fix {
		redisOpt, err := parseRedisURL(cfg.RedisURL)
		if err != nil {
			return err
		}
		client := asynq.NewClient(redisOpt)
		defer client.Close()
		states := asynq.NewInspector(redisOpt)
		defer states.Close()
		o.Enqueuer = reconcile.TaskEnqueuer{Client: client, States: states}
	}
	var jr *reconcile.JSONReport
	if c.JSON {
		// Every key, spooled to a temporary file as found: the report in memory keeps a sample.
		jr = reconcile.NewJSONReport()
		defer jr.Close()
		o.Sink = jr
	}
	bar := newBar(g, c.JSON, "reconcile "+cfg.Bucket, -1, "objects")
	o.Progress = bar
	rep, err := reconcile.Run(g.Ctx, objstore.NewClient(awsCfg, cfg.AWS), st.Q, o)
	bar.Finish()
	if err != nil {
		if rep != nil && rep.Fixed != nil {
			// The fix is applied as the comparison goes and stopped part-way: show what was done.
			_ = c.write(g, rep, jr)
		}
		return err
	}
	if err := c.write(g, rep, jr); err != nil {
		return err
	}
	if c.ExitCode && rep.Differences() > 0 {
		return exitError{exitDifferences}
	}
	return nil
}

// write prints the report as text, or as JSON with --json (every key, from jr).
func (c *ReconcileCmd) write(g *Globals, rep *reconcile.Report, jr *reconcile.JSONReport) error {
	var err error
	if jr != nil {
		err = jr.Write(g.Stdout, rep)
	} else {
		err = rep.WriteText(g.Stdout)
	}
	if err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	return nil
}
