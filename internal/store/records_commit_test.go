package store_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/intakehq/intake/internal/store"
	"github.com/intakehq/intake/pipeline"
)

// refuseAtCommit makes the commit of any transaction that wrote the object "commit-fails" fail
// (a deferred constraint trigger runs at COMMIT), after every statement of it succeeded: what a
// server crashing or failing over between the last row and the commit leaves the writer with.
func refuseAtCommit(t *testing.T, b *recordsBundle) {
	t.Helper()
	_, err := b.st.Pool.Exec(b.ctx, `
CREATE FUNCTION refuse_at_commit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.key = 'commit-fails' THEN RAISE EXCEPTION 'refused at commit'; END IF;
    RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER refuse_at_commit AFTER INSERT OR UPDATE ON objects
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION refuse_at_commit();`)
	require.NoError(t, err)
}

// objectRows counts the rows of key.
func (b *recordsBundle) objectRows(t *testing.T, key string) int {
	t.Helper()
	var n int
	require.NoError(t, b.st.Pool.QueryRow(b.ctx, "SELECT count(*) FROM objects WHERE key = $1", key).Scan(&n))
	return n
}

// TestRecordsCommitFailure: records whose statements all succeeded but whose commit failed are not
// reported recorded. The writer of a batch gets the commit's error (the consumer then keeps the
// message: nothing is acked that is not durable), and no row of the batch exists. Through the group
// commit, only the record that cannot commit fails: the batch's other record is written again on
// its own and recorded.
func TestRecordsCommitFailure(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 12, 5, 22, 0, 0, 0, time.UTC)
	t.Run("one batch", func(t *testing.T) {
		t.Parallel()
		b := setupRecords(t)
		refuseAtCommit(t, b)
		_, err := store.WriteRecords(b.ctx, b.rs, []pipeline.Record{state("other", "", t0, "e1"), state("commit-fails", "", t0, "e2")})
		require.ErrorContains(t, err, "refused at commit")
		require.Zero(t, b.objectRows(t, "other"), "the batch's transaction was rolled back")
		require.Zero(t, b.objectRows(t, "commit-fails"))
	})
	t.Run("one record", func(t *testing.T) {
		t.Parallel()
		b := setupRecords(t)
		refuseAtCommit(t, b)
		_, err := b.rs.Record(b.ctx, state("commit-fails", "", t0, "e2"))
		require.ErrorContains(t, err, "refused at commit")
		require.Zero(t, b.objectRows(t, "commit-fails"))
	})
	t.Run("group commit", func(t *testing.T) {
		t.Parallel()
		b, _ := setupBatchedRecords(t, store.BatchOptions{Committers: 1, MaxBatch: 16})
		refuseAtCommit(t, b)
		release := lockTable(t, b.ctx, b.st, "objects", "SHARE")
		first := recordAsync(b, state("first", "", t0, "e0"))
		waitLockWaiter(t, b.ctx, b.st, "objects")
		other := recordAsync(b, state("other", "", t0, "e1"))
		require.Eventually(t, func() bool { _, n := b.rs.Queued(); return n == 1 }, 30*time.Second, time.Millisecond)
		bad := recordAsync(b, state("commit-fails", "", t0, "e2"))
		require.Eventually(t, func() bool { _, n := b.rs.Queued(); return n == 2 }, 30*time.Second, time.Millisecond)
		release()
		require.NoError(t, (<-first).err)
		require.ErrorContains(t, (<-bad).err, "refused at commit")
		r := <-other
		require.NoError(t, r.err)
		require.True(t, r.got.Applied)
		require.Equal(t, 1, b.objectRows(t, "other"))
		require.Zero(t, b.objectRows(t, "commit-fails"))
	})
}
