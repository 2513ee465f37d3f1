package store_test

import (
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/intakehq/intake/internal/store"
	"github.com/intakehq/intake/internal/store/dbq"
)

// TestIntentWriterIdempotencyKeyTaken: rows whose owner's Idempotency-Key names another row (one
// committed before, or one earlier in the same batch) are skipped from their batch, their callers
// told ErrIdempotencyKeyTaken; the batch is not split (one statement, one commit for the others),
// and the other tenants' rows, the same key of another owner among them, commit with it.
func TestIntentWriterIdempotencyKeyTaken(t *testing.T) {
	t.Parallel()
	b := setupIntents(t, store.IntentWriterOptions{Committers: 1})
	keyed := func(n int, owner, key string) dbq.APICreateUploadParams {
		a := intentArg(n)
		a.Owner, a.IdempotencyKey, a.IdempotencyHash = owner, &key, []byte{byte(n)}
		return a
	}
	committed := keyed(0, "alice", "k0")
	require.NoError(t, b.w.APICreateUpload(b.ctx, committed))

	release := lockUploads(t, b)
	first := call(b.ctx, b.w, intentArg(1))
	waitInsertBlocked(t, b)
	args := []dbq.APICreateUploadParams{
		intentArg(10),
		keyed(11, "alice", "k0"), // taken by the committed row
		keyed(12, "alice", "k1"), // one of rows 2 and 4 wins k1 (the callers queue in any order),
		intentArg(13),
		keyed(14, "alice", "k1"), // the other loses it, in the same statement
		keyed(15, "bob", "k1"),   // bob's k1: another owner's key
		keyed(16, "alice", "k0"), // taken
		intentArg(17),
	}
	losers := map[uuid.UUID]bool{args[1].ID: true, args[6].ID: true}
	k1 := map[uuid.UUID]bool{args[2].ID: true, args[4].ID: true}
	results := make([]<-chan error, len(args))
	for i, a := range args {
		results[i] = call(b.ctx, b.w, a)
	}
	require.Eventually(t, func() bool { return b.w.Queued() == len(args) }, 30*time.Second, time.Millisecond)
	release()
	require.NoError(t, <-first)
	k1Won := 0
	for i, ch := range results {
		err := <-ch
		if k1[args[i].ID] {
			if err == nil {
				k1Won++
				require.True(t, exists(t, b, args[i].ID), "row %d", i)
			} else {
				require.ErrorIs(t, err, store.ErrIdempotencyKeyTaken, "row %d", i)
				require.False(t, exists(t, b, args[i].ID), "row %d", i)
			}
			continue
		}
		if losers[args[i].ID] {
			require.ErrorIs(t, err, store.ErrIdempotencyKeyTaken, "row %d", i)
			require.False(t, exists(t, b, args[i].ID), "row %d", i)
			continue
		}
		require.NoError(t, err, "row %d", i)
		require.True(t, exists(t, b, args[i].ID), "row %d", i)
	}
	require.Equal(t, 1, k1Won, "one of the two rows with alice's k1 is inserted")
	count, rows, splits := batches(t, b)
	require.Equal(t, uint64(3), count, "committed row, blocker, then one batch")
	require.Equal(t, float64(2+len(args)), rows)
	require.Zero(t, splits, "a taken key does not split its batch")
	require.Equal(t, 2+len(args)-len(losers)-1, countUploads(t, b))

	// Alone (the writer's single-row statement), PostgreSQL refuses the row with the unique index.
	err := b.w.APICreateUpload(b.ctx, keyed(20, "bob", "k1"))
	require.ErrorContains(t, err, "uploads_owner_idempotency_key_idx")
}

// TestIntentWriterWithoutTheKeyIndex: with the Idempotency-Key index missing (dropped or rebuilt by
// hand, a restore that left it invalid), ON CONFLICT names no index and every batched insert
// failed for all its rows, keyed or not; now each row is inserted alone and commits.
func TestIntentWriterWithoutTheKeyIndex(t *testing.T) {
	t.Parallel()
	b := setupIntents(t, store.IntentWriterOptions{Committers: 1})
	_, err := b.st.Pool.Exec(b.ctx, "DROP INDEX uploads_owner_idempotency_key_idx")
	require.NoError(t, err)
	release := lockUploads(t, b)
	first := call(b.ctx, b.w, intentArg(1))
	waitInsertBlocked(t, b)
	var results []<-chan error
	var args []dbq.APICreateUploadParams
	for i := range 5 {
		a := intentArg(10 + i)
		args = append(args, a)
		results = append(results, call(b.ctx, b.w, a))
	}
	require.Eventually(t, func() bool { return b.w.Queued() == len(args) }, 30*time.Second, time.Millisecond)
	release()
	require.NoError(t, <-first)
	for i, ch := range results {
		require.NoError(t, <-ch, "row %d", i)
		require.True(t, exists(t, b, args[i].ID))
	}
}
