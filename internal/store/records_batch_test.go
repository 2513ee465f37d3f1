package store_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/intakehq/intake/internal/store"
	"github.com/intakehq/intake/pipeline"
)

// lockTable takes a lock on table in a transaction until release (or the test's end).
func lockTable(t *testing.T, ctx context.Context, st *store.Store, table, mode string) (release func()) {
	t.Helper()
	tx, err := st.Pool.Begin(ctx)
	require.NoError(t, err)
	_, err = tx.Exec(ctx, fmt.Sprintf("LOCK TABLE %s IN %s MODE", table, mode))
	require.NoError(t, err)
	var once sync.Once
	release = func() { once.Do(func() { _ = tx.Rollback(context.Background()) }) }
	t.Cleanup(release)
	return release
}

// waitLockWaiter waits until a statement waits for a lock on table (one held by lockTable).
func waitLockWaiter(t *testing.T, ctx context.Context, st *store.Store, table string) {
	t.Helper()
	require.Eventually(t, func() bool {
		var n int
		err := st.Pool.QueryRow(ctx, "SELECT count(*) FROM pg_locks WHERE relation = $1::regclass AND NOT granted", table).Scan(&n)
		return err == nil && n > 0
	}, 30*time.Second, 5*time.Millisecond, "no statement waiting for the lock on %s", table)
}

// batchSizes returns, for statement, how many batches ran and how many calls they served.
func batchSizes(t *testing.T, reg *prometheus.Registry, statement string) (count uint64, calls float64) {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() != "intake_pipeline_batch_size" {
			continue
		}
		for _, m := range mf.GetMetric() {
			if m.GetLabel()[0].GetValue() == statement {
				return m.GetHistogram().GetSampleCount(), m.GetHistogram().GetSampleSum()
			}
		}
	}
	return 0, 0
}

type recordResult struct {
	got pipeline.Recorded
	err error
}

func recordAsync(b *recordsBundle, rec pipeline.Record) <-chan recordResult {
	ch := make(chan recordResult, 1)
	go func() {
		got, err := b.rs.Record(b.ctx, rec)
		ch <- recordResult{got, err}
	}()
	return ch
}

// TestBatchedRecordsOneBatch queues records behind a blocked one so that they go out in one batch:
// good records, an older and a newer state of one key, an intent completion and a record that
// violates a constraint. Only the bad record's caller fails; the others are committed with the
// results they would have alone.
func TestBatchedRecordsOneBatch(t *testing.T) {
	t.Parallel()
	b, reg := setupBatchedRecords(t, store.BatchOptions{Committers: 1, MaxBatch: 16})
	intent := b.addUpload(t, "with-intent", "put", "pending", nil, nil)
	t0 := time.Date(2026, 11, 26, 3, 0, 0, 0, time.UTC)

	release := lockTable(t, b.ctx, b.st, "objects", "SHARE")
	first := recordAsync(b, state("first", seqKey("01"), t0, "e0"))
	waitLockWaiter(t, b.ctx, b.st, "objects")

	recs := []pipeline.Record{
		state("k1", seqKey("0A"), t0, "e1"),
		state("dup", seqKey("0C"), t0, "new"), // the newer state, queued first
		{Bucket: "b", Key: "bad", Status: "bogus"},
		state("dup", seqKey("0B"), t0, "old"),
		state("k2", "", t0, "e2"),
	}
	withIntent := state("with-intent", seqKey("0D"), t0, "e3")
	withIntent.UploadID, withIntent.CompleteIntent = intent, intent
	recs = append(recs, withIntent)
	results := make([]<-chan recordResult, len(recs))
	for i, rec := range recs {
		results[i] = recordAsync(b, rec)
		// One at a time, so that the batch holds them in this order.
		require.Eventually(t, func() bool { _, n := b.rs.Queued(); return n == i+1 }, 30*time.Second, time.Millisecond)
	}
	release()

	require.NoError(t, (<-first).err)
	got := make([]recordResult, len(recs))
	for i, ch := range results {
		got[i] = <-ch
	}
	require.ErrorContains(t, got[2].err, "objects_status_check")
	for i, r := range got {
		if i != 2 {
			require.NoError(t, r.err, "record %d (%s)", i, recs[i].Key)
		}
	}
	require.Equal(t, pipeline.Recorded{Applied: true, Status: "valid", ETag: "e1"}, got[0].got)
	require.True(t, got[1].got.Applied, "the newer state of dup is written")
	require.False(t, got[3].got.Applied, "the older state of dup, recorded after it, changes nothing")
	require.Equal(t, "new", got[3].got.ETag, "and reports the row as it stands")
	require.Equal(t, "new", *b.row(t, "dup").Etag)
	require.Equal(t, "e2", *b.row(t, "k2").Etag)
	require.Equal(t, "completed", b.uploadStatus(t, intent))

	count, calls := batchSizes(t, reg, "record")
	require.Equal(t, uint64(2), count, "the blocked record, then one batch of the rest")
	require.Equal(t, float64(1+len(recs)), calls)
}

// TestBatchedRecordsLookups queues lookups behind a blocked one: one statement answers each caller
// with its own intent, or none.
func TestBatchedRecordsLookups(t *testing.T) {
	t.Parallel()
	b, reg := setupBatchedRecords(t, store.BatchOptions{Committers: 1})
	ids := map[string]uuid.UUID{}
	for i := range 5 {
		key := fmt.Sprintf("k%d", i)
		ids[key] = b.addUpload(t, key, "put", "pending", nil, nil)
	}
	release := lockTable(t, b.ctx, b.st, "uploads", "ACCESS EXCLUSIVE")
	type lookup struct {
		key    string
		intent *pipeline.Intent
		err    error
	}
	done := make(chan lookup, 20)
	ask := func(key string) {
		go func() {
			l, err := b.rs.Lookup(b.ctx, "b", key)
			done <- lookup{key, l.Intent, err}
		}()
	}
	ask("k0")
	waitLockWaiter(t, b.ctx, b.st, "uploads")
	keys := []string{"k1", "k2", "none-1", "k3", "k4", "k1", "none-2"}
	for _, k := range keys {
		ask(k)
	}
	require.Eventually(t, func() bool { n, _ := b.rs.Queued(); return n == len(keys) }, 30*time.Second, time.Millisecond)
	release()
	for range 1 + len(keys) {
		l := <-done
		require.NoError(t, l.err, l.key)
		if id, ok := ids[l.key]; ok {
			require.NotNil(t, l.intent, l.key)
			require.Equal(t, id, l.intent.ID, l.key)
		} else {
			require.Nil(t, l.intent, l.key)
		}
	}
	count, calls := batchSizes(t, reg, "intent_lookup")
	require.Equal(t, uint64(2), count)
	require.Equal(t, float64(1+len(keys)), calls)
}

// TestBatchedRecordsConcurrentOrder sends the states of 40 keys, each state twice and in random
// order, from 320 concurrent callers: whatever the batches, each key ends with its newest state.
func TestBatchedRecordsConcurrentOrder(t *testing.T) {
	t.Parallel()
	b, reg := setupBatchedRecords(t, store.BatchOptions{})
	t0 := time.Date(2026, 11, 26, 3, 0, 0, 0, time.UTC)
	var recs []pipeline.Record
	for k := range 40 {
		for s := range 4 {
			rec := state(fmt.Sprintf("k%02d", k), seqKey(fmt.Sprintf("%02X", 0x10+s)), t0, fmt.Sprintf("e%d", s))
			recs = append(recs, rec, rec)
		}
	}
	rand.Shuffle(len(recs), func(i, j int) { recs[i], recs[j] = recs[j], recs[i] })
	var wg sync.WaitGroup
	errs := make([]error, len(recs))
	for i, rec := range recs {
		wg.Go(func() { _, errs[i] = b.rs.Record(b.ctx, rec) })
	}
	wg.Wait()
	for i, err := range errs {
		require.NoError(t, err, "record %d", i)
	}
	for k := range 40 {
		row := b.row(t, fmt.Sprintf("k%02d", k))
		require.Equal(t, "e3", *row.Etag, "key %d", k)
	}
	_, calls := batchSizes(t, reg, "record")
	require.Equal(t, float64(len(recs)), calls, "every record went through the batcher")
}

// TestBatchedRecordsClose: after Close, calls run unbatched and still work.
func TestBatchedRecordsClose(t *testing.T) {
	t.Parallel()
	b, reg := setupBatchedRecords(t, store.BatchOptions{})
	_, err := b.rs.Record(b.ctx, state("before", "", time.Now(), "e1"))
	require.NoError(t, err)
	b.rs.Close()
	b.rs.Close() // idempotent
	got, err := b.rs.Record(b.ctx, state("after", "", time.Now(), "e2"))
	require.NoError(t, err)
	require.True(t, got.Applied)
	l, err := b.rs.Lookup(b.ctx, "b", "nothing")
	require.NoError(t, err)
	require.Nil(t, l.Intent)
	_, calls := batchSizes(t, reg, "record")
	require.Equal(t, float64(1), calls, "only the record before Close was batched")
}

// TestFailedBatchClosedOnce: a failed batch of records closes its pgx batch once. Closed a second
// time (to read the error of its end), it touched the statement cache of a connection already back
// in the pool (pgx invalidates a failed batch's statements): with a pool of one connection, another
// goroutine's queries on it raced with that write (the race detector reports it; without it, the
// process could crash with "concurrent map read and map write").
func TestFailedBatchClosedOnce(t *testing.T) {
	t.Parallel()
	b := setupRecords(t)
	cfg := b.st.Pool.Config()
	cfg.MaxConns = 1
	st, err := store.OpenConfig(b.ctx, cfg)
	require.NoError(t, err)
	t.Cleanup(st.Close)
	rs := store.NewRecords(st)
	ctx, cancel := context.WithTimeout(b.ctx, 3*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	var failed, queries int
	var unexpected error
	wg.Go(func() {
		bad := []pipeline.Record{{Bucket: "b", Key: "x", Status: "bogus"}, {Bucket: "b", Key: "y", Status: "bogus"}}
		for ctx.Err() == nil {
			_, err := store.WriteRecords(ctx, rs, bad)
			switch {
			case ctx.Err() != nil:
			case err != nil && strings.Contains(err.Error(), "objects_status_check"):
				failed++
			default:
				unexpected = fmt.Errorf("a batch of bad records returned %v", err)
			}
		}
	})
	wg.Go(func() {
		// A new statement each time: each fills the connection's statement cache.
		for i := 0; ctx.Err() == nil; i++ {
			var n int
			if err := st.Pool.QueryRow(ctx, fmt.Sprintf("SELECT $1::int + %d", i), 1).Scan(&n); err == nil {
				queries++
			}
		}
	})
	wg.Wait()
	require.NoError(t, unexpected)
	require.Positive(t, failed)
	require.Positive(t, queries)
	// The pool's connection is whole: the failed batches left it usable.
	_, err = store.WriteRecords(b.ctx, rs, []pipeline.Record{state("k", "", time.Time{}, "e1")})
	require.NoError(t, err)
}

// TestFailedBatchRewritesHaveTheirOwnTimeout: when a batch fails because of one record after
// spending most of its timeout, each record written again alone gets a timeout of its own, rather
// than the little left of the batch's (which would end in a deadline, reported as an outage of
// PostgreSQL, for a record that has nothing wrong with it).
func TestFailedBatchRewritesHaveTheirOwnTimeout(t *testing.T) {
	t.Parallel()
	const timeout = 2 * time.Second
	b, _ := setupBatchedRecords(t, store.BatchOptions{Committers: 1, MaxBatch: 16, Timeout: timeout})
	// Writing the row of "a-slow" takes 60% of the timeout.
	_, err := b.st.Pool.Exec(b.ctx, fmt.Sprintf(`
CREATE FUNCTION slow_write() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.key = 'a-slow' THEN PERFORM pg_sleep(%g); END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER slow_write BEFORE INSERT ON objects FOR EACH ROW EXECUTE FUNCTION slow_write();`, (timeout*6/10).Seconds()))
	require.NoError(t, err)

	release := lockTable(t, b.ctx, b.st, "objects", "SHARE")
	first := recordAsync(b, state("first", "", time.Time{}, "e0"))
	waitLockWaiter(t, b.ctx, b.st, "objects")
	slow := recordAsync(b, state("a-slow", "", time.Time{}, "e1"))
	require.Eventually(t, func() bool { _, n := b.rs.Queued(); return n == 1 }, 30*time.Second, time.Millisecond)
	bad := recordAsync(b, pipeline.Record{Bucket: "b", Key: "z-bad", Status: "bogus"})
	require.Eventually(t, func() bool { _, n := b.rs.Queued(); return n == 2 }, 30*time.Second, time.Millisecond)
	release()
	require.NoError(t, (<-first).err)

	// The batch (a-slow, then z-bad) fails after 60% of its timeout; a-slow written alone takes
	// another 60%.
	r := <-slow
	require.NoError(t, r.err, "the record written again alone had a timeout of its own")
	require.True(t, r.got.Applied)
	r = <-bad
	require.ErrorContains(t, r.err, "objects_status_check")
	require.False(t, errors.Is(r.err, pipeline.ErrUnavailable), "%v", r.err)
	require.Equal(t, "e1", *b.row(t, "a-slow").Etag)
}
