package store_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/intakehq/intake/internal/store"
	"github.com/intakehq/intake/internal/store/dbq"
	"github.com/intakehq/intake/internal/testkit"
	"github.com/intakehq/intake/pipeline"
)

// BenchmarkRecordBatchNotified is BenchmarkRecordBatch with every object an upload of an intent:
// every other batch changes the 64 verdicts, so each record of it also inserts its notification
// into the outbox (the trigger notifying the listeners included). pg-cpu-us/record compares with
// BenchmarkRecordBatch's.
func BenchmarkRecordBatchNotified(b *testing.B) {
	ctx := testkit.Context(b)
	cfg := testkit.DB(b).Pool.Config()
	cfg.MaxConns, cfg.MinConns = 1, 1
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer pool.Close()
	rs := store.NewRecords(&store.Store{Pool: pool, Q: dbq.New(pool)})
	var pid int
	if err := pool.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid); err != nil {
		b.Fatal(err)
	}
	const n = 64
	size, at := int64(10), time.Now()
	batch := make([]pipeline.Record, n)
	for i := range batch {
		id := uuid.New()
		key := fmt.Sprintf("k%02d", i)
		if _, err := pool.Exec(ctx, `INSERT INTO uploads (id, owner, bucket, key, method, filename, content_type, size, metadata, expires_at)
			VALUES ($1, 'o', 'b', $2, 'put', 'f.txt', 'text/plain', 10, '{"order": 1}', now() + interval '1 hour')`, id, key); err != nil {
			b.Fatal(err)
		}
		batch[i] = pipeline.Record{Bucket: "b", Key: key, Status: pipeline.StatusValid, ETag: "e0", Size: &size,
			ContentType: "text/plain", Observed: true, EventTime: at, ObservedAt: at, Owner: "o", UploadID: id}
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
