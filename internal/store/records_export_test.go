package store

import (
	"context"

	"github.com/intakehq/intake/pipeline"
)

// WriteRecords writes recs as one batch of the record store (one pgx batch, one transaction).
func WriteRecords(ctx context.Context, r *Records, recs []pipeline.Record) ([]pipeline.Recorded, error) {
	return r.writeRecords(ctx, recs)
}
