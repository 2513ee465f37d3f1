package store

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/intakehq/intake/internal/store/dbq"
	"github.com/intakehq/intake/pipeline"
)

// Records is the pipeline's [pipeline.RecordStore] on PostgreSQL (queries in queries/objects.sql).
// Errors caused by an unreachable, restarting, read-only or overloaded server are outages of
// PostgreSQL ([pipeline.UnavailableError], see Unavailable); serialization failures and deadlocks
// are run again in place.
//
// From NewRecords, each call is its own statement. From NewBatchedRecords (the consumer's), the
// lookups and the records of concurrent messages are grouped (group commit, as in
// IntentWriter): one SELECT answers the lookups of many messages, and the records of many messages
// go in one pgx batch, one implicit transaction and one commit. Every caller still returns only
// once its own record is committed, and gets only its own error: when a batch fails because of one
// record (a constraint, a deadlock), each of its records is written again alone.
//
// Records are written through s.Pool, each pgx batch closed exactly once; lookups and archived
// messages go through s.Q.
type Records struct {
	s *Store
	// batches runs PipelineRecord on s.Pool, each pgx batch closed once (closeOncePool).
	batches *dbq.Queries
	// retimeout bounds each record written again alone after a failed batch (batched only).
	retimeout time.Duration

	// lookups and records batch the calls; nil when unbatched.
	lookups *batcher[objectKey, pipeline.Lookup]
	records *batcher[pipeline.Record, pipeline.Recorded]
	sizes   *prometheus.HistogramVec
}

var (
	_ pipeline.RecordStore = (*Records)(nil)
	_ prometheus.Collector = (*Records)(nil)
)

// objectKey names an object.
type objectKey struct{ bucket, key string }

type recordCall = call[pipeline.Record, pipeline.Recorded]

// NewRecords returns the record store of s, unbatched: each call is one statement on the caller's
// goroutine.
func NewRecords(s *Store) *Records {
	return &Records{s: s, batches: dbq.New(closeOncePool{s.Pool}), sizes: batchSizes()}
}

// BatchOptions configure the batching of NewBatchedRecords. Zero values take the defaults.
type BatchOptions struct {
	// MaxBatch caps the calls of one batch (default 64).
	MaxBatch int
	// Committers is how many batches of each kind (lookups, records) may run at once (default 1).
	// Each running batch holds one pool connection. One is enough for a consumer: calls that
	// arrive while a batch runs form the next one, so batches grow with the load (with two, the
	// consumer benchmark's batches averaged under three calls, and each round trip costs CPU in
	// both processes); a batch of up to MaxBatch per round trip is far more than one consumer needs.
	Committers int
	// Timeout bounds each batch (default 10 s); its callers get its error, marked unavailable.
	// When a batch of records fails and each is written again alone, each of those writes gets a
	// Timeout of its own.
	Timeout time.Duration
}

// NewBatchedRecords returns the record store of s with the lookups and records of concurrent
// callers batched (see Records). It starts goroutines: call Close when done, before closing the
// pool. A lone caller is not delayed: an idle committer runs its call at once.
func NewBatchedRecords(s *Store, opts BatchOptions) *Records {
	r := NewRecords(s)
	committers := cmp.Or(opts.Committers, 1)
	maxBatch := cmp.Or(opts.MaxBatch, 64)
	timeout := cmp.Or(opts.Timeout, 10*time.Second)
	r.retimeout = timeout
	r.lookups = newBatcher(committers, maxBatch, timeout, r.sizes.WithLabelValues("intent_lookup"), r.lookupBatch,
		func(ctx context.Context, k objectKey) (pipeline.Lookup, error) {
			return r.lookup(ctx, k.bucket, k.key)
		})
	r.records = newBatcher(committers, maxBatch, timeout, r.sizes.WithLabelValues("record"), r.recordBatch, r.record)
	return r
}

func batchSizes() *prometheus.HistogramVec {
	return prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "intake_pipeline_batch_size",
		Help:    "Messages served by one PostgreSQL round trip of the pipeline (group commit), by statement.",
		Buckets: prometheus.ExponentialBuckets(1, 2, 8),
	}, []string{"statement"})
}

// Close runs the queued calls and stops the batching goroutines (nothing for NewRecords). Later
// calls run unbatched. Close is idempotent.
func (r *Records) Close() {
	if r.lookups != nil {
		r.lookups.close()
		r.records.close()
	}
}

// Describe implements prometheus.Collector (intake_pipeline_batch_size).
func (r *Records) Describe(ch chan<- *prometheus.Desc) { r.sizes.Describe(ch) }

// Collect implements prometheus.Collector.
func (r *Records) Collect(ch chan<- prometheus.Metric) { r.sizes.Collect(ch) }

// Lookup returns the upload intent of (bucket, key), or a nil Intent when there is none, and the
// database's time (which stamps the observation the caller makes next).
func (r *Records) Lookup(ctx context.Context, bucket, key string) (pipeline.Lookup, error) {
	if r.lookups != nil {
		return r.lookups.do(ctx, objectKey{bucket, key})
	}
	return r.lookup(ctx, bucket, key)
}

// lookup answers one lookup with one statement.
func (r *Records) lookup(ctx context.Context, bucket, key string) (pipeline.Lookup, error) {
	found, err := retryConflicts(ctx, func(ctx context.Context) (map[objectKey]pipeline.Lookup, error) {
		return r.lookupKeys(ctx, []objectKey{{bucket, key}})
	})
	if err != nil {
		return pipeline.Lookup{}, classify(ctx, fmt.Sprintf("look up intent of %s/%s", bucket, key), err)
	}
	return found[objectKey{bucket, key}], nil
}

// lookupBatch answers the lookups of calls with one statement.
func (r *Records) lookupBatch(ctx context.Context, calls []*call[objectKey, pipeline.Lookup]) {
	keys := make([]objectKey, len(calls))
	for i, c := range calls {
		keys[i] = c.arg
	}
	found, err := retryConflicts(ctx, func(ctx context.Context) (map[objectKey]pipeline.Lookup, error) {
		return r.lookupKeys(ctx, keys)
	})
	for _, c := range calls {
		if err != nil {
			c.answer(pipeline.Lookup{}, classify(c.ctx, fmt.Sprintf("look up intent of %s/%s (with %d others)", c.arg.bucket, c.arg.key, len(calls)-1), err))
			continue
		}
		c.answer(found[c.arg], nil)
	}
}

// lookupKeys returns the lookup of each key: its intent, if any, and the statement's time.
func (r *Records) lookupKeys(ctx context.Context, keys []objectKey) (map[objectKey]pipeline.Lookup, error) {
	p := dbq.PipelineLookupsParams{Buckets: make([]string, len(keys)), Keys: make([]string, len(keys))}
	for i, k := range keys {
		p.Buckets[i], p.Keys[i] = k.bucket, k.key
	}
	rows, err := r.s.Q.PipelineLookups(ctx, p)
	if err != nil {
		return nil, err
	}
	found := make(map[objectKey]pipeline.Lookup, len(rows))
	for _, row := range rows {
		l := pipeline.Lookup{At: row.LookedUpAt}
		if row.ID != nil {
			l.Intent = &pipeline.Intent{
				ID: *row.ID, Owner: strOf(row.Owner), Method: strOf(row.Method), ContentType: strOf(row.ContentType),
				Size: valueOf(row.Size), SizeDeclared: valueOf(row.SizeDeclared), SHA256: row.Sha256,
				MultipartUploadID: strOf(row.MultipartUploadID), Status: strOf(row.Status),
			}
		}
		found[objectKey{row.Bucket, row.Key}] = l
	}
	return found, nil
}

// Record upserts the object row if rec is newer than the stored one and completes
// rec.CompleteIntent, in one transaction, and returns the row as it stands.
func (r *Records) Record(ctx context.Context, rec pipeline.Record) (pipeline.Recorded, error) {
	if r.records != nil {
		return r.records.do(ctx, rec)
	}
	return r.record(ctx, rec)
}

// record writes one record alone.
func (r *Records) record(ctx context.Context, rec pipeline.Record) (pipeline.Recorded, error) {
	out, err := r.writeRecordsRetrying(ctx, []pipeline.Record{rec})
	if err != nil {
		return pipeline.Recorded{}, classify(ctx, fmt.Sprintf("record %s/%s", rec.Bucket, rec.Key), err)
	}
	return out[0], nil
}

// recordBatch writes the records of calls in one transaction, in (bucket, key) order so that
// concurrent batches lock rows in the same order. If it fails for a reason other than the database
// being unavailable, each record is written again alone, so that only the culprit's caller fails:
// each under a timeout of its own (the batch's may be nearly spent, and a deadline would read as an
// outage of PostgreSQL), and only for callers still waiting.
func (r *Records) recordBatch(ctx context.Context, calls []*recordCall) {
	slices.SortStableFunc(calls, func(a, b *recordCall) int {
		return cmp.Or(strings.Compare(a.arg.Bucket, b.arg.Bucket), strings.Compare(a.arg.Key, b.arg.Key))
	})
	recs := make([]pipeline.Record, len(calls))
	for i, c := range calls {
		recs[i] = c.arg
	}
	out, err := r.writeRecordsRetrying(ctx, recs)
	switch {
	case err == nil:
		for i, c := range calls {
			c.answer(out[i], nil)
		}
	case len(calls) > 1 && !Unavailable(err):
		for _, c := range calls {
			if err := c.ctx.Err(); err != nil {
				c.answer(pipeline.Recorded{}, err) // nobody waits for it
				continue
			}
			c.answer(r.recordAlone(ctx, c.arg))
		}
	default:
		for _, c := range calls {
			what := fmt.Sprintf("record %s/%s", c.arg.Bucket, c.arg.Key)
			if len(calls) > 1 {
				what += fmt.Sprintf(" (with %d others)", len(calls)-1)
			}
			c.answer(pipeline.Recorded{}, classify(c.ctx, what, err))
		}
	}
}

// recordAlone is record under a timeout of its own (Records.retimeout), for a record of a failed
// batch written again alone; ctx gives it its values, not its deadline.
func (r *Records) recordAlone(ctx context.Context, rec pipeline.Record) (pipeline.Recorded, error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.retimeout)
	defer cancel()
	return r.record(ctx, rec)
}

// writeRecordsRetrying is writeRecords run again in place when it loses a serialization failure or
// a deadlock (retryConflicts).
func (r *Records) writeRecordsRetrying(ctx context.Context, recs []pipeline.Record) ([]pipeline.Recorded, error) {
	return retryConflicts(ctx, func(ctx context.Context) ([]pipeline.Recorded, error) { return r.writeRecords(ctx, recs) })
}

// writeRecords runs one PipelineRecord per record in one pgx batch: one round trip, one implicit
// transaction (one Sync), so all are committed together or none is. It returns the rows as they
// stand after each record (the upsert always returns the row: it updates at least the observation
// time).
func (r *Records) writeRecords(ctx context.Context, recs []pipeline.Record) ([]pipeline.Recorded, error) {
	params := make([]dbq.PipelineRecordParams, len(recs))
	for i, rec := range recs {
		params[i] = recordParams(rec)
	}
	rows := make([]dbq.PipelineRecordRow, len(recs))
	var firstErr error
	results := r.batches.PipelineRecord(ctx, params)
	results.QueryRow(func(i int, row dbq.PipelineRecordRow, err error) {
		switch {
		case err == nil:
			rows[i] = row
		case firstErr == nil:
			firstErr = err
		}
	})
	// QueryRow closed the batch (once: the connection is back in the pool) and dropped the error of
	// its end (the commit); Close returns that error without closing again (closeOncePool).
	if err := results.Close(); err != nil && firstErr == nil {
		firstErr = err
	}
	if firstErr != nil {
		return nil, firstErr
	}
	out := make([]pipeline.Recorded, len(rows))
	for i, row := range rows {
		out[i] = pipeline.Recorded{
			Applied: row.Applied, Status: row.Status, Reason: strOf(row.Reason),
			ETag: strOf(row.Etag), VersionID: strOf(row.VersionID),
		}
	}
	return out, nil
}

// closeOncePool is the dbq.DBTX of the records' batches: a pool whose batch results close once. The
// generated batch helpers (dbq.PipelineRecordBatchResults.QueryRow) close the pgx batch when done,
// which returns its connection to the pool, and drop the error of its end (the commit); the only
// way to read that error is to call Close again. Closing a pgx batch of the pool a second time
// would touch the connection it no longer owns: after a failed batch, pgx invalidates the batch's
// statements in that connection's statement cache while another goroutine may be using it (a
// data race, and "concurrent map read and map write" crashes the process). With closeOncePool, the
// first Close closes the batch and keeps its error, and later calls return that error.
type closeOncePool struct{ *pgxpool.Pool }

// SendBatch sends b on the pool and returns its results, closed at most once.
func (p closeOncePool) SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults {
	return &closeOnceBatch{BatchResults: p.Pool.SendBatch(ctx, b)}
}

// closeOnceBatch is a pgx batch's results whose Close closes them once and returns that close's
// error ever after.
type closeOnceBatch struct {
	pgx.BatchResults
	closed bool
	err    error
}

// Close closes the batch the first time and returns the error of that close.
func (r *closeOnceBatch) Close() error {
	if !r.closed {
		r.closed = true
		r.err = r.BatchResults.Close()
	}
	return r.err
}

// Archive stores a raw message body in the events table.
func (r *Records) Archive(ctx context.Context, ev pipeline.ArchivedEvent) error {
	err := r.s.Q.PipelineArchiveEvent(ctx, dbq.PipelineArchiveEventParams{
		MessageID: ev.MessageID, Bucket: optString(ev.Bucket), Key: optString(ev.Key), EventName: optString(ev.EventName),
		Outcome: ev.Outcome, Body: ev.Body,
	})
	if err != nil {
		return classify(ctx, "archive message "+ev.MessageID, err)
	}
	return nil
}

func recordParams(rec pipeline.Record) dbq.PipelineRecordParams {
	p := dbq.PipelineRecordParams{
		Bucket: rec.Bucket, Key: rec.Key, Status: rec.Status, Reason: optString(rec.Reason),
		VersionID: optString(rec.VersionID), Etag: optString(rec.ETag), Size: rec.Size,
		ContentType: optString(rec.ContentType), SniffedType: optString(rec.SniffedType), Sha256: rec.SHA256,
		Owner: optString(rec.Owner), Sequencer: optString(rec.Sequencer), Observed: rec.Observed,
	}
	if rec.Width > 0 && rec.Height > 0 {
		w, h := int32(min(rec.Width, 1<<31-1)), int32(min(rec.Height, 1<<31-1))
		p.Width, p.Height = &w, &h
	}
	if rec.UploadID != uuid.Nil {
		id := rec.UploadID
		p.UploadID = &id
	}
	if !rec.EventTime.IsZero() {
		t := rec.EventTime
		p.EventTime = &t
	}
	if !rec.ObservedAt.IsZero() {
		t := rec.ObservedAt
		p.ObservedAt = &t
	}
	if rec.CompleteIntent != uuid.Nil {
		id := rec.CompleteIntent
		p.CompleteIntent = &id
	}
	return p
}

// optString maps "" to NULL.
func optString(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// strOf maps NULL to "".
func strOf(s *string) string { return valueOf(s) }

// valueOf maps NULL to the zero value.
func valueOf[T any](p *T) T {
	if p == nil {
		var zero T
		return zero
	}
	return *p
}
