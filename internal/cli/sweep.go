package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/intakehq/intake/internal/objstore"
	"github.com/intakehq/intake/worker/jobs"
)

// minSweepAge is the smallest --older-than accepted: younger uploads are probably in progress.
const minSweepAge = time.Minute

// SweepCmd runs the stale multipart sweep once, in this process.
type SweepCmd struct {
	DryRun      bool          `name:"dry-run" help:"Print the uploads that would be aborted; abort nothing."`
	OlderThan   time.Duration `name:"older-than" placeholder:"D" help:"Abort uploads initiated longer ago than this (default: INTAKE_JOBS_SWEEP_OLDER_THAN; at least 1m)."`
	Prefix      string        `name:"prefix" placeholder:"P" help:"Only uploads whose key starts with P (filtered client-side)."`
	Concurrency int           `name:"concurrency" default:"16" help:"Aborts run at once."`
}

// Run sweeps the configured bucket.
func (c *SweepCmd) Run(g *Globals) error {
	cfg := g.Config
	olderThan := c.OlderThan
	if olderThan == 0 {
		olderThan = cfg.Jobs.SweepOlderThan
	}
	var errs []error
	errs = append(errs, cfg.ValidateDB())
	if cfg.Bucket == "" {
		errs = append(errs, errors.New("INTAKE_BUCKET: required"))
	}
	if olderThan < minSweepAge {
		errs = append(errs, fmt.Errorf("--older-than: %s is below %s (younger uploads may still be in progress)", olderThan, minSweepAge))
	}
	if c.Concurrency < 1 || c.Concurrency > 256 {
		errs = append(errs, fmt.Errorf("--concurrency: %d not in 1..256", c.Concurrency))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("invalid configuration:\n%w", err)
	}
	st, err := openStore(g.Ctx, cfg)
	if err != nil {
		return err
	}
	defer st.Close()
	awsCfg, err := objstore.LoadAWS(g.Ctx, cfg.AWS)
	if err != nil {
		return err
	}
	mp, err := jobs.NewMultipart(jobs.MultipartConfig{
		S3: objstore.NewClient(awsCfg, cfg.AWS), Store: st.Q, Log: g.Log, Concurrency: c.Concurrency,
	})
	if err != nil {
		return err
	}
	_, err = runSweep(g.Ctx, mp, jobs.SweepOptions{Bucket: cfg.Bucket, Prefix: c.Prefix, OlderThan: olderThan, DryRun: c.DryRun}, g.Stdout)
	return err
}

// runSweep sweeps once and prints either the candidates (dry run) or a summary to w.
func runSweep(ctx context.Context, mp *jobs.Multipart, opts jobs.SweepOptions, w io.Writer) (jobs.SweepReport, error) {
	var tw *tabwriter.Writer
	if opts.DryRun {
		tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "KEY\tUPLOAD ID\tINITIATED\tAGE\tSOURCE")
		opts.OnCandidate = func(c jobs.Candidate) {
			source := "listing"
			if c.Known {
				source = "postgres"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", c.Key, c.UploadID, c.Initiated.UTC().Format(time.RFC3339),
				time.Since(c.Initiated).Round(time.Second), source)
		}
	}
	rep, err := mp.Sweep(ctx, opts)
	if tw != nil {
		if ferr := tw.Flush(); ferr != nil && err == nil {
			err = ferr
		}
	}
	scope := fmt.Sprintf("bucket %s", rep.Bucket)
	if rep.Prefix != "" {
		scope += fmt.Sprintf(", prefix %q", rep.Prefix)
	}
	if rep.Fallback {
		fmt.Fprintln(w, "note: the store listed no multipart uploads; these are the pending uploads PostgreSQL knows (uploads intake did not create cannot be seen)")
	}
	if opts.DryRun {
		fmt.Fprintf(w, "dry run: %d of %d open uploads would be aborted (%s, initiated before %s); nothing was aborted\n",
			rep.Stale, rep.Listed, scope, rep.Cutoff.UTC().Format(time.RFC3339))
	} else {
		fmt.Fprintf(w, "swept %s: listed %d, stale %d, aborted %d, already gone %d, failed %d, reclaimed %d bytes in %s\n",
			scope, rep.Listed, rep.Stale, rep.Aborted, rep.Gone, rep.Failed, rep.BytesReclaimed, rep.Took.Round(time.Millisecond))
	}
	return rep, err
}
