package store_test

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/intakehq/intake/internal/store"
	"github.com/intakehq/intake/internal/store/dbq"
	"github.com/intakehq/intake/internal/testkit"
	"github.com/intakehq/intake/pipeline"
)

// BenchmarkRecordBatch writes batches of 64 records (the consumer's group commit) over 64 existing
// rows, every other batch changing their state, through one connection. ns/op is one batch;
// pg-cpu-us/record is the CPU the PostgreSQL backend spent per record (read from /proc, so only
// when PostgreSQL runs on this machine): unlike wall time, it holds on a busy machine.
func BenchmarkRecordBatch(b *testing.B) {
	benchRecordBatches(b, nil)
}

// oneConnRecords returns a schema of its own behind a pool of one connection (closed when b ends),
// its record store, and the PID of that connection's backend (whose CPU the benchmarks read).
func oneConnRecords(b *testing.B) (context.Context, *pgxpool.Pool, *store.Records, int) {
	b.Helper()
	ctx := testkit.Context(b)
	cfg := testkit.DB(b).Pool.Config()
	cfg.MaxConns, cfg.MinConns = 1, 1
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(pool.Close)
	var pid int
	if err := pool.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid); err != nil {
		b.Fatal(err)
	}
	return ctx, pool, store.NewRecords(&store.Store{Pool: pool, Q: dbq.New(pool)}), pid
}

// benchRecordBatches is the body of the record benchmarks: through a pool of one connection it
// writes a batch of 64 records of keys k00…k63 once, then b.N times again with every other batch
// changing their ETag (a new state), and reports the backend's CPU per record. prepare, when not
// nil, runs first on that pool and completes each record (its intent, for instance).
func benchRecordBatches(b *testing.B, prepare func(ctx context.Context, pool *pgxpool.Pool, rec *pipeline.Record)) {
	ctx, pool, rs, pid := oneConnRecords(b)
	const n = 64
	size, at := int64(10), time.Now()
	batch := make([]pipeline.Record, n)
	for i := range batch {
		batch[i] = pipeline.Record{Bucket: "b", Key: fmt.Sprintf("k%02d", i), Status: pipeline.StatusValid, ETag: "e0", Size: &size,
			ContentType: "text/plain", Observed: true, EventTime: at, ObservedAt: at}
		if prepare != nil {
			prepare(ctx, pool, &batch[i])
		}
	}
	if _, err := store.WriteRecords(ctx, rs, batch); err != nil {
		b.Fatal(err)
	}
	before, measured := backendCPU(pid)
	b.ResetTimer()
	for i := range b.N {
		for j := range batch {
			batch[j].ETag = fmt.Sprintf("e%d", i%2)
			batch[j].EventTime = at.Add(time.Duration(i+1) * time.Millisecond)
			batch[j].ObservedAt = batch[j].EventTime
		}
		if _, err := store.WriteRecords(ctx, rs, batch); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	if after, ok := backendCPU(pid); measured && ok {
		b.ReportMetric(float64((after-before).Microseconds())/float64(b.N*n), "pg-cpu-us/record")
	}
}

// backendCPU is the user and system CPU time of process pid (false when /proc cannot tell).
func backendCPU(pid int) (time.Duration, bool) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, false
	}
	s := string(raw)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	if len(f) < 13 {
		return 0, false
	}
	utime, err1 := strconv.Atoi(f[11])
	stime, err2 := strconv.Atoi(f[12])
	if err1 != nil || err2 != nil {
		return 0, false
	}
	return time.Duration(utime+stime) * 10 * time.Millisecond, true // clock ticks of 10 ms (USER_HZ 100)
}
