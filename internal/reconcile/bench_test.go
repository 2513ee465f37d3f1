package reconcile

import (
	"fmt"
	"testing"
	"time"
)

// BenchmarkReconcile compares a bucket of 2,000 objects (MinIO) with 2,000 rows, 10% of them
// missing, and reports objects per second.
func BenchmarkReconcile(b *testing.B) {
	const n = 2000
	bk := setup(b, n, func(i int) string { return fmt.Sprintf("bench/%02d/%05d", i%50, i) })
	for k, etag := range bk.etags {
		var i int
		_, _ = fmt.Sscanf(k[len("bench/00/"):], "%d", &i)
		if i%10 != 0 {
			bk.row(b, bk.bucket, k, etag, "valid")
		}
	}
	var listed int
	var elapsed time.Duration
	for b.Loop() {
		start := time.Now()
		rep, err := Run(b.Context(), bk.s3, bk.st.Q, Options{Bucket: bk.bucket})
		elapsed += time.Since(start)
		if err != nil || rep.Listed != n || len(rep.Missing) != n/10 {
			b.Fatalf("listed %d, missing %d: %v", rep.Listed, len(rep.Missing), err)
		}
		listed += rep.Listed
	}
	b.ReportMetric(float64(listed)/elapsed.Seconds(), "objects/s")
}
