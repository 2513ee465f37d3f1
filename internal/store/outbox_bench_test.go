package store_test

import (
	"context"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/intakehq/intake/pipeline"
)

// BenchmarkRecordBatchNotified is BenchmarkRecordBatch with every object an upload of an intent:
// every other batch changes the 64 verdicts, so each record of it also inserts its notification
// into the outbox (the trigger notifying the listeners included). pg-cpu-us/record compares with
// BenchmarkRecordBatch's.
func BenchmarkRecordBatchNotified(b *testing.B) {
	benchRecordBatches(b, func(ctx context.Context, pool *pgxpool.Pool, rec *pipeline.Record) {
		id := uuid.New()
		if _, err := pool.Exec(ctx, `INSERT INTO uploads (id, owner, bucket, key, method, filename, content_type, size, metadata, expires_at)
			VALUES ($1, 'o', 'b', $2, 'put', 'f.txt', 'text/plain', 10, '{"order": 1}', now() + interval '1 hour')`, id, rec.Key); err != nil {
			b.Fatal(err)
		}
		rec.Owner, rec.UploadID = "o", id
	})
}
