package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/hibiken/asynq"

	"github.com/intakehq/intake/internal/config"
	"github.com/intakehq/intake/internal/multipart"
	"github.com/intakehq/intake/internal/objstore"
	"github.com/intakehq/intake/internal/reconcile"
	"github.com/intakehq/intake/worker/tasks"
)

// minSweepAge is the smallest --older-than accepted: younger uploads are probably in progress.
const minSweepAge = tasks.MinSweepAge

// SweepCmd runs the stale multipart sweep once, in this process.
type SweepCmd struct {
	config.Database  `embed:""`
	config.Redis     `embed:"" set:"redis_url_help=Redis URL of asynq (read when one of intake's uploads turns out completed, to enqueue its inspection; not with --no-inspect or --dry-run)."`
	config.AWSRegion `embed:""`
	config.S3Client  `embed:""`
	config.S3Bucket  `embed:""`

	DryRun      bool          `name:"dry-run" help:"Print the uploads that would be aborted; abort nothing."`
	OlderThan   time.Duration `name:"older-than" env:"INTAKE_JOBS_SWEEP_OLDER_THAN" default:"24h" help:"Abort uploads intake did not create when initiated longer ago than this (at least 1m). intake's own uploads are aborted at their deadline, never before."`
	Prefix      string        `name:"prefix" env:"INTAKE_JOBS_SWEEP_PREFIX" placeholder:"P" help:"Only uploads whose key starts with P, filtered client-side (default: the whole bucket)."`
	Concurrency int           `name:"concurrency" default:"16" help:"Aborts run at once."`
	JSON        bool          `name:"json" help:"Print one JSON report (scope, counts, the uploads aborted or, with --dry-run, to abort) instead of text."`
	NoInspect   bool          `name:"no-inspect" help:"Do not enqueue object:inspect tasks (REDIS_URL) for intake's uploads found completed; the reconcile inspects them later."`
}

// Run sweeps the configured bucket.
func (c *SweepCmd) Run(g *Globals) error {
	cfg := g.Config
	olderThan, prefix := c.OlderThan, c.Prefix
	// Every problem is reported at once; a flag's among them makes it a usage error (exit 2).
	var flagErrs, errs []error
	if olderThan < minSweepAge {
		flagErrs = append(flagErrs, fmt.Errorf("--older-than: %s is below %s (younger uploads may still be in progress)", olderThan, minSweepAge))
	}
	if c.Concurrency < 1 || c.Concurrency > 256 {
		flagErrs = append(flagErrs, fmt.Errorf("--concurrency: %d not in 1..256", c.Concurrency))
	}
	errs = append(errs, cfg.ValidateDB())
	if cfg.Bucket == "" {
		errs = append(errs, errors.New("INTAKE_BUCKET: required"))
	}
	if err := errors.Join(append(flagErrs, errs...)...); err != nil {
		err = fmt.Errorf("invalid configuration:\n%w", err)
		if len(flagErrs) > 0 {
			return usage(err)
		}
		return err
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
	mp, err := multipart.New(multipart.Config{
		S3: objstore.NewClient(awsCfg, cfg.AWS), Store: st.Multipart(), Log: g.Log, Concurrency: c.Concurrency,
	})
	if err != nil {
		return err
	}
	opts := multipart.SweepOptions{Bucket: cfg.Bucket, Prefix: prefix, OlderThan: olderThan, DryRun: c.DryRun}
	if !c.NoInspect && !c.DryRun {
		// An upload of intake's found completed had its event late or never sent: the jobs role
		// runs the pipeline on it, as after the daemon's own sweep, instead of waiting for the
		// reconcile. Redis is dialled only if such an upload turns up.
		redisOpt, err := parseRedisURL(cfg.RedisURL)
		if err != nil {
			return fmt.Errorf("%w (or --no-inspect)", err)
		}
		client := asynq.NewClient(redisOpt)
		defer client.Close()
		states := asynq.NewInspector(redisOpt)
		defer states.Close()
		enq := reconcile.TaskEnqueuer{Client: client, States: states}
		opts.Inspect = func(ctx context.Context, bucket, key string) error {
			if err := enq.EnqueueInspect(ctx, bucket, key); err != nil && !errors.Is(err, reconcile.ErrAlreadyQueued) {
				return err
			}
			return nil // queued now, or already
		}
	}
	if c.JSON {
		_, err = runSweepJSON(g.Ctx, mp, opts, g.Stdout)
		return err
	}
	_, err = runSweep(g.Ctx, mp, opts, g.Stdout)
	return err
}

// sweepJSON is the report `intake sweep --json` prints.
type sweepJSON struct {
	multipart.SweepReport
	// TookSeconds is the sweep's duration.
	TookSeconds float64 `json:"took_seconds"`
	// Candidates are the uploads aborted (or, in a dry run, to abort).
	Candidates []multipart.Candidate `json:"candidates"`
	// Error is the sweep's error, if any (the command also exits non-zero).
	Error string `json:"error,omitempty"`
}

// runSweepJSON sweeps once and writes one JSON object to w, also when the sweep fails.
func runSweepJSON(ctx context.Context, mp *multipart.Service, opts multipart.SweepOptions, w io.Writer) (multipart.SweepReport, error) {
	out := sweepJSON{Candidates: []multipart.Candidate{}}
	opts.OnCandidate = func(c multipart.Candidate) { out.Candidates = append(out.Candidates, c) }
	rep, err := mp.Sweep(ctx, opts)
	out.SweepReport, out.TookSeconds = rep, rep.Took.Seconds()
	if err != nil {
		out.Error = err.Error()
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if werr := enc.Encode(out); werr != nil && err == nil {
		err = werr
	}
	return rep, err
}

// runSweep sweeps once and prints either the candidates (dry run) or a summary to w.
func runSweep(ctx context.Context, mp *multipart.Service, opts multipart.SweepOptions, w io.Writer) (multipart.SweepReport, error) {
	var tw *tabwriter.Writer
	if opts.DryRun {
		tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "KEY\tUPLOAD ID\tINITIATED\tAGE\tDEADLINE\tSOURCE")
		opts.OnCandidate = func(c multipart.Candidate) {
			deadline := "-"
			if c.Deadline != nil {
				deadline = c.Deadline.UTC().Format(time.RFC3339)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", c.Key, c.UploadID, c.Initiated.UTC().Format(time.RFC3339),
				time.Since(c.Initiated).Round(time.Second), deadline, c.Source)
		}
	}
	rep, err := mp.Sweep(ctx, opts)
	if tw != nil {
		if ferr := tw.Flush(); ferr != nil && err == nil {
			err = ferr
		}
	}
	writeSweepSummary(w, rep, opts.DryRun)
	return rep, err
}

// writeSweepSummary prints the sweep's summary line, then a note: line for each thing that needs
// attention (the operator commands' habit: the summary last, its notes after it).
func writeSweepSummary(w io.Writer, rep multipart.SweepReport, dryRun bool) {
	scope := fmt.Sprintf("bucket %s", rep.Bucket)
	if rep.Prefix != "" {
		scope += fmt.Sprintf(", prefix %q", rep.Prefix)
	}
	if dryRun {
		fmt.Fprintf(w, "dry run: %d of %d open uploads would be aborted (%s; other uploads initiated before %s, intake's past their deadline); nothing was aborted\n",
			rep.Stale, rep.Listed, scope, rep.Cutoff.UTC().Format(time.RFC3339))
	} else {
		fmt.Fprintf(w, "swept %s: listed %d, stale %d, aborted %d, already gone %d, failed %d, reclaimed %d bytes in %s\n",
			scope, rep.Listed, rep.Stale, rep.Aborted, rep.Gone, rep.Failed, rep.BytesReclaimed, rep.Took.Round(time.Millisecond))
	}
	if rep.Overdue > 0 {
		fmt.Fprintf(w, "note: %d of intake's uploads past their deadline were not in the listing (lost abort tasks, or a store that lists no uploads); they are found in PostgreSQL\n", rep.Overdue)
	}
	if rep.Interrupted > 0 {
		fmt.Fprintf(w, "note: %d aborts were begun and never recorded (a process stopped between S3's answer and PostgreSQL); resumed\n", rep.Interrupted)
	}
	if rep.Inspected > 0 {
		fmt.Fprintf(w, "note: %d of intake's uploads turned out completed (their events are late or were never sent); object:inspect tasks enqueued for them (the jobs role runs them)\n", rep.Inspected)
	}
	if n := rep.Completed - rep.Inspected; n > 0 {
		fmt.Fprintf(w, "note: %d of intake's uploads turned out completed (their events are late or were never sent) and no inspection was enqueued; the daemon's reconcile inspects them, or run `intake reconcile --fix`\n", n)
	}
	if rep.Protected > 0 {
		fmt.Fprintf(w, "note: %d of intake's uploads are older than the cutoff but before their deadline: kept\n", rep.Protected)
	}
}
