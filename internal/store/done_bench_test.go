package store_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/intakehq/intake/internal/store"
	"github.com/intakehq/intake/pipeline"
)

// BenchmarkRecordBatchNewUploads writes batches of 64 first verdicts, each of a new intent that
// its record completes: the path every upload takes once, the one where migration 0027's trigger
// calls its function (the objects row's first verdict notifies the upload, a notification
// PostgreSQL merges with its outbox row's). BenchmarkRecordBatch and BenchmarkRecordBatchNotified
// write records over existing rows, which 0027's WHEN clauses leave out without calling anything.
// pg-cpu-us/record is the backend's CPU during the batches only (not the intents' creation).
func BenchmarkRecordBatchNewUploads(b *testing.B) {
	ctx, pool, rs, pid := oneConnRecords(b)
	const n = 64
	size, at := int64(10), time.Now()
	batch := make([]pipeline.Record, n)
	ids, keys := make([]uuid.UUID, n), make([]string, n)
	var cpu time.Duration
	measured := true
	b.ResetTimer()
	for i := range b.N {
		b.StopTimer()
		for j := range batch {
			ids[j], keys[j] = uuid.New(), fmt.Sprintf("new/%d/%02d", i, j)
			batch[j] = pipeline.Record{Bucket: "b", Key: keys[j], Status: pipeline.StatusValid, ETag: "e0", Size: &size,
				ContentType: "text/plain", Owner: "o", UploadID: ids[j], CompleteIntent: ids[j], Observed: true,
				EventTime: at, ObservedAt: at}
		}
		if _, err := pool.Exec(ctx, `INSERT INTO uploads (id, owner, bucket, key, method, filename, content_type, size, expires_at)
			SELECT id, 'o', 'b', key, 'put', 'f.txt', 'text/plain', 10, now() + interval '1 hour'
			FROM unnest($1::uuid[], $2::text[]) AS t(id, key)`, ids, keys); err != nil {
			b.Fatal(err)
		}
		before, ok := backendCPU(pid)
		b.StartTimer()
		if _, err := store.WriteRecords(ctx, rs, batch); err != nil {
			b.Fatal(err)
		}
		after, ok2 := backendCPU(pid)
		measured = measured && ok && ok2
		cpu += after - before
	}
	b.StopTimer()
	if measured {
		b.ReportMetric(float64(cpu.Microseconds())/float64(b.N*n), "pg-cpu-us/record")
	}
}
