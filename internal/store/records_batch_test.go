package store_test

import (
	"context"
	"fmt"
	"math/rand/v2"
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
