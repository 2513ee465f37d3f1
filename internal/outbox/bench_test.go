package outbox_test

import (
	"context"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/intakehq/intake/internal/testkit"
)

// processCPU is the CPU time (user and system) this process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkDeliveries measures the notification pipeline alone: 5,000 committed notifications in
// the outbox, relayed to asynq and posted (20 workers, the production settings) to a receiver in
// this process that verifies every signature. Reported: notifications/s and this process's CPU per
// notification (relay, asynq client and server, deliverer, HTTP client, and the receiver).
func BenchmarkDeliveries(b *testing.B) {
	if testing.Short() {
		b.Skip("needs PostgreSQL and Redis")
	}
	const n = 5000
	var rate, cpuPer float64
	for range b.N {
		b.StopTimer()
		st := testkit.DB(b)
		_, err := st.Pool.Exec(context.Background(), `INSERT INTO outbox (dedupe_key, event_type, upload_id, bucket, key, data)
			SELECT 'bench:' || i, 'upload.valid', gen_random_uuid(), 'b', 'uploads/bench/' || i,
			       jsonb_build_object('upload_id', gen_random_uuid(), 'owner', 'bench', 'bucket', 'b', 'key', 'uploads/bench/' || i,
			                          'status', 'valid', 'size', 1024, 'metadata', jsonb_build_object('order', i))
			FROM generate_series(1, $1) AS i`, n)
		if err != nil {
			b.Fatal(err)
		}
		cpu := processCPU()
		start := time.Now()
		b.StartTimer()
		notes := testkit.StartNotifications(b, st, testkit.NotificationsOptions{})
		notes.Receiver.WaitDelivered(n, 5*time.Minute)
		b.StopTimer()
		took := time.Since(start)
		rate = n / took.Seconds()
		cpuPer = float64((processCPU() - cpu).Microseconds()) / n
		b.Logf("%d notifications delivered in %s: %.0f/s, %.0f µs of this process's CPU each", n, took.Round(time.Millisecond), rate, cpuPer)
	}
	b.ReportMetric(rate, "notifications/s")
	b.ReportMetric(cpuPer, "cpu-µs/notification")
	_ = fmt.Sprint
}
