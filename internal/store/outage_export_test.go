package store

import (
	"context"

	"github.com/intakehq/intake/pipeline"
)

// WriteRecords writes recs in one transaction as the batched store does (conflicts retried in
// place), for the deadlock test that needs two records in one transaction.
func (r *Records) WriteRecords(ctx context.Context, recs []pipeline.Record) ([]pipeline.Recorded, error) {
	return r.writeRecordsRetrying(ctx, recs)
}
