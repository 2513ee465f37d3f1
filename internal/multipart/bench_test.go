package multipart_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/intakehq/intake/internal/multipart"
	"github.com/intakehq/intake/internal/testkit"
)

// BenchmarkSweep10k sweeps 10,000 stale multipart uploads in MinIO (the listing's intent lookups,
// ListParts, abort and one PostgreSQL row each, 16 at a time) and reports aborts per second.
// Creating the uploads (64 at a time) is not timed. Target: the whole sweep within 60 s.
func BenchmarkSweep10k(b *testing.B) {
	const n = 10_000
	bb := setup(b, multipart.Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	var took time.Duration
	for i := range b.N {
		b.StopTimer()
		created := time.Now()
		testkit.CreateUploads(b, ctx, bb.s3, bb.bucket, keys(fmt.Sprintf("bench/%d/", i), n), 64)
		b.Logf("created %d uploads in %s", n, time.Since(created).Round(time.Millisecond))
		time.Sleep(1100 * time.Millisecond)
		b.StartTimer()

		start := time.Now()
		rep, err := bb.mp.Sweep(ctx, multipart.SweepOptions{Bucket: bb.bucket, OlderThan: time.Second})
		took += time.Since(start)
		b.StopTimer()
		require.NoError(b, err)
		require.Equal(b, n, rep.Aborted)
		require.Equal(b, n, rep.Listed)
	}
	b.ReportMetric(float64(n*b.N)/took.Seconds(), "aborts/s")
	b.ReportMetric(took.Seconds()/float64(b.N), "s/sweep")
}
