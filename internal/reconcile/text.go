package reconcile

import (
	"fmt"
	"io"
	"time"
)

// textLimit is how many keys of each kind the text report lists.
const textLimit = 100

// WriteText prints the report for a person: the counts, then up to 100 keys of each kind.
func (r *Report) WriteText(w io.Writer) error {
	prefix := r.Prefix
	if prefix == "" {
		prefix = "(none)"
	}
	fmt.Fprintf(w, "reconcile: bucket %s, prefix %s: done in %s\n", r.Bucket, prefix, r.Elapsed.Round(time.Millisecond))
	fmt.Fprintf(w, "  listed objects      %d\n", r.Listed)
	fmt.Fprintf(w, "  rows                %d\n", r.Rows)
	fmt.Fprintf(w, "  in sync             %d\n", r.InSync)
	fmt.Fprintf(w, "  missing rows        %d\n", len(r.Missing))
	fmt.Fprintf(w, "  stale rows          %d\n", len(r.Stale))
	fmt.Fprintf(w, "  gone objects        %d\n", len(r.Gone))
	fmt.Fprintf(w, "  changed during run  %d\n", r.Changed)
	if s := r.Elapsed.Seconds(); s > 0 {
		fmt.Fprintf(w, "  rate                %.1f objects/s\n", float64(r.Listed)/s)
	}
	if f := r.Fixed; f != nil {
		fmt.Fprintf(w, "  fixed: enqueued %d inspections (%d already queued, %d keys skipped), marked %d rows missing (%d reappeared, %d changed meanwhile)\n",
			f.Enqueued, f.AlreadyQueued, f.EnqueueSkipped, f.MarkedMissing, f.Reappeared, f.Unchanged)
	}
	section := func(title string, n int, line func(i int) string) {
		if n == 0 {
			return
		}
		fmt.Fprintf(w, "%s (%d):\n", title, n)
		for i := range min(n, textLimit) {
			fmt.Fprintf(w, "  %s\n", line(i))
		}
		if n > textLimit {
			fmt.Fprintf(w, "  … and %d more (--json lists them all)\n", n-textLimit)
		}
	}
	section("missing rows (object in the bucket, no row)", len(r.Missing), func(i int) string {
		m := r.Missing[i]
		return fmt.Sprintf("%s  etag=%s size=%d", m.Key, m.ETag, m.Size)
	})
	section("stale rows (row disagrees with the object)", len(r.Stale), func(i int) string {
		s := r.Stale[i]
		return fmt.Sprintf("%s  s3_etag=%s row_etag=%s row_status=%s", s.Key, s.S3ETag, s.RowETag, s.RowStatus)
	})
	section("gone objects (row says present, no object)", len(r.Gone), func(i int) string {
		g := r.Gone[i]
		return fmt.Sprintf("%s  row_status=%s", g.Key, g.RowStatus)
	})
	if r.Problems > 0 && r.Fixed == nil {
		fmt.Fprintln(w, "run again with --fix to enqueue inspections and mark gone rows missing")
	}
	return nil
}
