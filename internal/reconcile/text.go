package reconcile

import (
	"fmt"
	"io"
	"time"
)

// textLimit is how many keys of each kind the text report lists.
const textLimit = 100

// WriteText prints the report for a person: the counts, then up to 100 keys of each kind (of the
// SampleSize the report keeps).
func (r *Report) WriteText(w io.Writer) error {
	prefix := r.Prefix
	if prefix == "" {
		prefix = "(none)"
	}
	took := "done in"
	if !r.Complete {
		took = "stopped after"
	}
	fmt.Fprintf(w, "reconcile: bucket %s, prefix %s: %s %s\n", r.Bucket, prefix, took, r.Elapsed.Round(time.Millisecond))
	if !r.Complete {
		fmt.Fprintln(w, "  (stopped part-way: the counts, and the fixes, are those of the keys compared until then)")
	}
	fmt.Fprintf(w, "  listed objects      %d\n", r.Listed)
	fmt.Fprintf(w, "  rows                %d\n", r.Rows)
	fmt.Fprintf(w, "  in sync             %d\n", r.InSync)
	fmt.Fprintf(w, "  missing rows        %d\n", r.MissingCount)
	fmt.Fprintf(w, "  stale rows          %d\n", r.StaleCount)
	fmt.Fprintf(w, "  gone objects        %d\n", r.GoneCount)
	fmt.Fprintf(w, "  changed during run  %d\n", r.Changed)
	if s := r.Elapsed.Seconds(); s > 0 {
		fmt.Fprintf(w, "  rate                %.1f objects/s\n", float64(r.Listed)/s)
	}
	if f := r.Fixed; f != nil {
		fmt.Fprintf(w, "  fixed: enqueued %d inspections (%d already queued, %d keys skipped), marked %d rows missing (%d reappeared, %d changed meanwhile, %d not checked: HEAD failed)\n",
			f.Enqueued, f.AlreadyQueued, f.EnqueueSkipped, f.MarkedMissing, f.Reappeared, f.Unchanged, f.HeadFailed)
	}
	// section lists the first keys of a kind: n were found, the report kept sample of them, where
	// lists the rest.
	section := func(title string, n, sample int, where string, line func(i int) string) {
		if n == 0 {
			return
		}
		shown := min(sample, textLimit)
		if shown < n {
			fmt.Fprintf(w, "%s (first %d of %d):\n", title, shown, n)
		} else {
			fmt.Fprintf(w, "%s (%d):\n", title, n)
		}
		for i := range shown {
			fmt.Fprintf(w, "  %s\n", line(i))
		}
		if shown < n {
			fmt.Fprintf(w, "  … and %d more (%s)\n", n-shown, where)
		}
	}
	section("missing rows (object in the bucket, no row)", r.MissingCount, len(r.Missing), "--json lists them all", func(i int) string {
		m := r.Missing[i]
		return fmt.Sprintf("%s  etag=%s size=%d", m.Key, m.ETag, m.Size)
	})
	section("stale rows (row disagrees with the object)", r.StaleCount, len(r.Stale), "--json lists them all", func(i int) string {
		s := r.Stale[i]
		return fmt.Sprintf("%s  s3_etag=%s row_etag=%s row_status=%s", s.Key, s.S3ETag, s.RowETag, s.RowStatus)
	})
	section("gone objects (row says present, no object)", r.GoneCount, len(r.Gone), "--json lists them all", func(i int) string {
		g := r.Gone[i]
		return fmt.Sprintf("%s  row_status=%s", g.Key, g.RowStatus)
	})
	if f := r.Fixed; f != nil {
		section("gone rows not checked (HeadObject failed for the key; left as they are)", f.HeadFailed, len(f.HeadErrors), "the log names each", func(i int) string {
			h := f.HeadErrors[i]
			return fmt.Sprintf("%s  %s", h.Key, h.Error)
		})
	}
	if r.Problems > 0 && r.Fixed == nil {
		fmt.Fprintln(w, "run again with --fix to enqueue inspections and mark gone rows missing")
	}
	return nil
}
