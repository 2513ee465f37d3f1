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
		keyed(12, "alice", "k1"), // wins k1
		intentArg(13),
		keyed(14, "alice", "k1"), // loses k1 to row 12, in the same statement
		keyed(15, "bob", "k1"),   // bob's k1: another owner's key
		keyed(16, "alice", "k0"), // taken
		intentArg(17),
	}
	losers := map[uuid.UUID]bool{args[1].ID: true, args[4].ID: true, args[6].ID: true}
	results := make([]<-chan error, len(args))
	for i, a := range args {
		results[i] = call(b.ctx, b.w, a)
	}
	require.Eventually(t, func() bool { return b.w.Queued() == len(args) }, 30*time.Second, time.Millisecond)
	release()
	require.NoError(t, <-first)
	for i, ch := range results {
		err := <-ch
		if losers[args[i].ID] {
			require.ErrorIs(t, err, store.ErrIdempotencyKeyTaken, "row %d", i)
			require.False(t, exists(t, b, args[i].ID), "row %d", i)
			continue
		}
		require.NoError(t, err, "row %d", i)
		require.True(t, exists(t, b, args[i].ID), "row %d", i)
	}
	count, rows, splits := batches(t, b)
	require.Equal(t, uint64(3), count, "committed row, blocker, then one batch")
	require.Equal(t, float64(2+len(args)), rows)
	require.Zero(t, splits, "a taken key does not split its batch")
	require.Equal(t, 2+len(args)-len(losers), countUploads(t, b))

	// Alone (the writer's single-row statement), PostgreSQL refuses the row with the unique index.
	err := b.w.APICreateUpload(b.ctx, keyed(20, "bob", "k1"))
	require.ErrorContains(t, err, "uploads_owner_idempotency_key_idx")
}
