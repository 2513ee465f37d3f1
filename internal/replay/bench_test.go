package replay

import (
	"strings"
	"testing"
	"time"

	"github.com/intakehq/intake/internal/testkit"
)

// BenchmarkMoveDLQ moves 2,000 messages (with attributes) from a DLQ back to the queue through
// kumo and reports messages per second. Max is set so that the run ends on the count; a run
// without it ends with one empty long-poll receive per worker (--wait, 2s by default) on top.
func BenchmarkMoveDLQ(b *testing.B) {
	const n = 2000
	c := testSQS()
	q := testkit.Queue(b, c, 3, 30*time.Second)
	var moved int
	var elapsed time.Duration
	for b.Loop() {
		b.StopTimer()
		fill(b, c, q.DLQURL, 0, n)
		b.StartTimer()
		start := time.Now()
		res, err := MoveDLQ(b.Context(), c, DLQOptions{From: q.DLQURL, To: q.URL, Max: n, Concurrency: 8, Wait: time.Second})
		elapsed += time.Since(start)
		if err != nil || res.Deleted != n {
			b.Fatalf("moved %d of %d: %v", res.Deleted, n, err)
		}
		moved += res.Deleted
		b.StopTimer()
		testkit.DrainQueue(b, c, q.URL)
		b.StartTimer()
	}
	b.ReportMetric(float64(moved)/elapsed.Seconds(), "msgs/s")
}

// BenchmarkResendFile sends 2,000 bodies from a JSONL file and reports messages per second.
func BenchmarkResendFile(b *testing.B) {
	const n = 2000
	c := testSQS()
	q := testkit.Queue(b, c, 3, 30*time.Second)
	lines := make([]string, n)
	for i := range lines {
		lines[i] = body(i)
	}
	file := strings.Join(lines, "\n")
	var sent int
	var elapsed time.Duration
	for b.Loop() {
		start := time.Now()
		res, err := Resend(b.Context(), c, FileSource(strings.NewReader(file)), ResendOptions{To: q.URL, Concurrency: 8})
		elapsed += time.Since(start)
		if err != nil || res.Sent != n {
			b.Fatalf("sent %d of %d: %v", res.Sent, n, err)
		}
		sent += res.Sent
		b.StopTimer()
		testkit.DrainQueue(b, c, q.URL)
		b.StartTimer()
	}
	b.ReportMetric(float64(sent)/elapsed.Seconds(), "msgs/s")
}
