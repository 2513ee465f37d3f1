package store

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/intakehq/intake/internal/store/dbq"
)

// IntentWriterOptions configure an IntentWriter. Zero values take the defaults.
type IntentWriterOptions struct {
	// MaxBatch caps the rows of one INSERT (default 256).
	MaxBatch int
	// Committers is how many batches may be committing at once (default 1). Each committing batch
	// holds one pool connection, so keep it below the pool's MaxConns. One is enough: rows that
	// arrive while a batch commits form the next one, so batches grow with the load. With two, the
	// API benchmark's batches held 14 rows instead of 26 and every extra statement cost a write and
	// a wake-up in intake and a commit in PostgreSQL: one committer cut intake's CPU per request by
	// 16% at 12% more requests per second and 10% less latency (BenchmarkLoad, 64 connections).
	Committers int
	// CommitTimeout bounds each batch, its retries after a split included (default 10 s); the rows'
	// callers get its error.
	CommitTimeout time.Duration
	// Log receives what the callers' errors do not tell (default slog.Default()).
	Log *slog.Logger
}

// IntentWriter records upload intents (the API's POST /v1/uploads rows) with group commit: rows
// from concurrent requests are inserted by one statement, so one commit (one WAL flush) makes all
// of them durable, instead of one flush per request. Each caller still returns only after its own
// row is committed, or with the error that kept it from being committed.
//
// # Batching
//
// There is no timer. Callers queue their row; each of Committers goroutines takes the first queued
// row and every other row already queued (up to MaxBatch) and inserts them in one statement. While
// the committers are busy, new rows wait in the queue for the next free one, so batches grow with
// the load and a row never waits for more than the commits in progress before its own. When idle, a
// row is committed at once, alone. The queue holds 2×MaxBatch×Committers rows (the next batch of
// each committer, and one more); beyond that callers block (back-pressure), respecting their
// context. (The same group commit batches the consumer's records: see NewBatchedRecords.)
//
// # Errors
//
// When a batch fails because of its data (a unique, check or not-null violation, a bad value:
// SQLSTATE classes 23 and 22), it is split in halves and each is retried, down to single rows, which
// use the same statement as the unbatched path (dbq.Queries.APICreateUpload): only the bad rows'
// callers get an error, a *pgconn.PgError naming the constraint, as without batching. Any other
// failure (connection refused or lost, timeout) is returned to every caller of the batch.
//
// # Cancellation
//
// If the caller's context ends first, APICreateUpload returns ctx.Err() at once. A row not yet
// taken by a committer is then skipped; a row already in a statement may still be committed: its
// intent id, never handed to a client, is orphaned. That is harmless: the row stays pending and the
// expiry sweep treats it like any unused intent.
//
// # Lifetime
//
// NewIntentWriter starts the committer goroutines; the IntentWriter owns them, and its creator
// must call Close, which commits every queued row and waits for the committers to return. After
// Close, APICreateUpload inserts the row itself (one statement, one commit, on the caller's
// goroutine), so requests still in flight while a daemon shuts down are served; the pool must stay
// open until they are done.
//
// IntentWriter is also a prometheus.Collector of intake_intent_batch_rows (rows per batch taken
// from the queue) and intake_intent_batch_splits_total (batches split because of a bad row).
type IntentWriter struct {
	q     *dbq.Queries
	log   *slog.Logger
	batch *batcher[dbq.APICreateUploadParams, struct{}]

	batchRows prometheus.Histogram
	splits    prometheus.Counter
}

// NewIntentWriter starts an IntentWriter inserting through pool. Call Close when done.
func NewIntentWriter(pool *pgxpool.Pool, opts IntentWriterOptions) *IntentWriter {
	w := &IntentWriter{
		q: dbq.New(pool), log: cmp.Or(opts.Log, slog.Default()),
		batchRows: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "intake_intent_batch_rows",
			Help:    "Upload intent rows per batch insert (group commit).",
			Buckets: prometheus.ExponentialBuckets(1, 2, 10),
		}),
		splits: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "intake_intent_batch_splits_total",
			Help: "Upload intent batches split and retried because PostgreSQL refused a row (constraint, bad value).",
		}),
	}
	w.batch = newBatcher(cmp.Or(opts.Committers, 1), cmp.Or(opts.MaxBatch, 256),
		cmp.Or(opts.CommitTimeout, 10*time.Second), w.batchRows, w.insert,
		func(ctx context.Context, arg dbq.APICreateUploadParams) (struct{}, error) {
			return struct{}{}, insertOne(ctx, w.q, arg)
		})
	return w
}

// APICreateUpload queues arg and waits until it is committed (nil) or fails (its error). It has the
// signature of dbq.Queries.APICreateUpload, so the API can use it in its place.
func (w *IntentWriter) APICreateUpload(ctx context.Context, arg dbq.APICreateUploadParams) error {
	_, err := w.batch.do(ctx, arg)
	return err
}

// Close commits the queued rows, stops the committers and waits for them. Later APICreateUpload
// calls insert directly. Close is idempotent.
func (w *IntentWriter) Close() { w.batch.close() }

// Describe implements prometheus.Collector.
func (w *IntentWriter) Describe(ch chan<- *prometheus.Desc) {
	w.batchRows.Describe(ch)
	w.splits.Describe(ch)
}

// Collect implements prometheus.Collector.
func (w *IntentWriter) Collect(ch chan<- prometheus.Metric) {
	w.batchRows.Collect(ch)
	w.splits.Collect(ch)
}

var _ prometheus.Collector = (*IntentWriter)(nil)

type intentCall = call[dbq.APICreateUploadParams, struct{}]

// insert inserts the calls' rows in one statement and answers each; on a data error it splits them
// in halves.
func (w *IntentWriter) insert(ctx context.Context, calls []*intentCall) {
	if len(calls) == 1 {
		calls[0].answer(struct{}{}, insertOne(ctx, w.q, calls[0].arg))
		return
	}
	params := batchParams.Get().(*dbq.IntentsInsertBatchParams)
	fillParams(params, calls)
	n, err := w.q.IntentsInsertBatch(ctx, *params) // encodes the arrays before it returns
	clearParams(params)
	batchParams.Put(params)
	switch {
	case err == nil && n == int64(len(calls)):
		for _, c := range calls {
			c.answer(struct{}{}, nil)
		}
	case err == nil: // rows whose Idempotency-Key was taken were skipped
		w.answerSkipped(ctx, calls)
	case noConflictTarget(err):
		// The Idempotency-Key index is missing or invalid (dropped or rebuilt by hand, a restore):
		// ON CONFLICT cannot name it. Each row alone, without ON CONFLICT, still commits (keys then
		// unenforced until the index is back: uniqueness needs it).
		w.log.ErrorContext(ctx, "the unique index uploads_owner_idempotency_key_idx is missing or invalid: upload intents are inserted one by one and Idempotency-Keys are not enforced; run intake migrate, or recreate the index", "err", err)
		for _, c := range calls {
			c.answer(struct{}{}, insertOne(ctx, w.q, c.arg))
		}
	case dataError(err):
		w.splits.Inc()
		mid := len(calls) / 2
		w.insert(ctx, calls[:mid])
		w.insert(ctx, calls[mid:])
	default:
		err = fmt.Errorf("insert %d upload intents: %w", len(calls), err)
		for _, c := range calls {
			c.answer(struct{}{}, err)
		}
	}
}

// answerSkipped answers the calls of a batch some of whose rows were skipped (their
// Idempotency-Key taken): those whose row exists were inserted, the others get
// ErrIdempotencyKeyTaken. When the rows cannot be read, every caller gets that error (whether its
// row committed is then unknown to it, as after a lost answer).
func (w *IntentWriter) answerSkipped(ctx context.Context, calls []*intentCall) {
	ids := make([]uuid.UUID, len(calls))
	for i, c := range calls {
		ids[i] = c.arg.ID
	}
	found, err := w.q.IntentsInserted(ctx, ids)
	if err != nil {
		err = fmt.Errorf("read which of %d upload intents were inserted: %w", len(calls), err)
		for _, c := range calls {
			c.answer(struct{}{}, err)
		}
		return
	}
	for _, c := range calls {
		if slices.Contains(found, c.arg.ID) {
			c.answer(struct{}{}, nil)
		} else {
			c.answer(struct{}{}, fmt.Errorf("insert upload intent %s: %w", c.arg.ID, ErrIdempotencyKeyTaken))
		}
	}
}

// ErrIdempotencyKeyTaken is the error of an intent row not inserted because its owner's
// Idempotency-Key names another row already (a request racing another with the same key): the API
// answers with that row. Through a batch the row is skipped (its batch commits without it); alone
// (dbq.Queries.APICreateUpload) PostgreSQL refuses it with a unique violation of
// uploads_owner_idempotency_key_idx instead.
var ErrIdempotencyKeyTaken = errors.New("the owner's Idempotency-Key names another intent")

// insertOne is the unbatched insert: one row, one statement, one commit.
func insertOne(ctx context.Context, q *dbq.Queries, arg dbq.APICreateUploadParams) error {
	if err := q.APICreateUpload(ctx, arg); err != nil {
		return fmt.Errorf("insert upload intent %s: %w", arg.ID, err)
	}
	return nil
}

// batchParams keeps the parallel arrays of IntentsInsertBatch between batches: filled anew for each
// batch, they were five allocations per row.
var batchParams = sync.Pool{New: func() any { return new(dbq.IntentsInsertBatchParams) }}

// clearParams drops the rows' values from p's arrays (keeping their capacity), so that a pooled p
// holds on to no request's data.
func clearParams(p *dbq.IntentsInsertBatchParams) {
	clear(p.Owners)
	clear(p.Buckets)
	clear(p.Keys)
	clear(p.Methods)
	clear(p.Filenames)
	clear(p.ContentTypes)
	clear(p.Sha256s)
	clear(p.MultipartUploadIds)
	clear(p.ExpiresAts)
	clear(p.Metadatas)
	clear(p.IdempotencyKeys)
	clear(p.IdempotencyHashes)
}

// fillParams sets p's parallel arrays to the calls' rows.
func fillParams(p *dbq.IntentsInsertBatchParams, calls []*intentCall) {
	*p = dbq.IntentsInsertBatchParams{
		Ids: p.Ids[:0], Owners: p.Owners[:0], Buckets: p.Buckets[:0], Keys: p.Keys[:0],
		Methods: p.Methods[:0], Filenames: p.Filenames[:0], ContentTypes: p.ContentTypes[:0],
		Sizes: p.Sizes[:0], SizesDeclared: p.SizesDeclared[:0], Sha256s: p.Sha256s[:0],
		MultipartUploadIds: p.MultipartUploadIds[:0], PartSizes: p.PartSizes[:0], ExpiresAts: p.ExpiresAts[:0], Metadatas: p.Metadatas[:0],
		IdempotencyKeys: p.IdempotencyKeys[:0], IdempotencyHashes: p.IdempotencyHashes[:0],
	}
	for _, c := range calls {
		a := &c.arg
		p.Ids = append(p.Ids, a.ID)
		p.Owners = append(p.Owners, a.Owner)
		p.Buckets = append(p.Buckets, a.Bucket)
		p.Keys = append(p.Keys, a.Key)
		p.Methods = append(p.Methods, a.Method)
		p.Filenames = append(p.Filenames, a.Filename)
		p.ContentTypes = append(p.ContentTypes, a.ContentType)
		p.Sizes = append(p.Sizes, a.Size)
		p.SizesDeclared = append(p.SizesDeclared, a.SizeDeclared)
		p.Sha256s = append(p.Sha256s, a.Sha256)
		var mp string // NULL is sent as "" (see queries/intents.sql)
		if a.MultipartUploadID != nil {
			mp = *a.MultipartUploadID
		}
		p.MultipartUploadIds = append(p.MultipartUploadIds, mp)
		var partSize int64 // NULL is sent as 0
		if a.PartSize != nil {
			partSize = *a.PartSize
		}
		p.PartSizes = append(p.PartSizes, partSize)
		p.ExpiresAts = append(p.ExpiresAts, a.ExpiresAt)
		p.Metadatas = append(p.Metadatas, a.Metadata) // nil: NULL
		var idemKey string                            // NULL is sent as ""
		if a.IdempotencyKey != nil {
			idemKey = *a.IdempotencyKey
		}
		p.IdempotencyKeys = append(p.IdempotencyKeys, idemKey)
		p.IdempotencyHashes = append(p.IdempotencyHashes, a.IdempotencyHash) // nil: NULL
	}
}

// noConflictTarget reports whether err is PostgreSQL finding no unique index for an ON CONFLICT
// (SQLSTATE 42P10).
func noConflictTarget(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "42P10"
}

// dataError reports whether err is PostgreSQL refusing a row's values (SQLSTATE class 22, data
// exception, or 23, integrity constraint violation), which splitting the batch isolates.
func dataError(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && (strings.HasPrefix(pgErr.Code, "22") || strings.HasPrefix(pgErr.Code, "23"))
}

// IntentQueries are the generated queries with APICreateUpload going through an IntentWriter: the
// API's store in the daemon (api.Queries).
type IntentQueries struct {
	*dbq.Queries
	// Intents records the intent rows.
	Intents *IntentWriter
}

// APICreateUpload records the row through the IntentWriter (same signature and errors as
// dbq.Queries.APICreateUpload).
func (q IntentQueries) APICreateUpload(ctx context.Context, arg dbq.APICreateUploadParams) error {
	return q.Intents.APICreateUpload(ctx, arg)
}
