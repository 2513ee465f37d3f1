package outbox_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/intakehq/intake/internal/outbox"
	"github.com/intakehq/intake/internal/store"
	"github.com/intakehq/intake/internal/testkit"
)

// discardDB is a fresh schema for the discard tests, which need PostgreSQL only.
func discardDB(t *testing.T) (context.Context, *store.Store) {
	t.Helper()
	if testing.Short() {
		t.Skip("needs PostgreSQL (the local stack)")
	}
	return testkit.Context(t), testkit.DB(t)
}

// insertGivenUp inserts n relayed notifications, ids 1 to n in order, each with gaveUp(g) given
// up and pending(g) still pending (g counts from 1).
func insertGivenUp(ctx context.Context, t *testing.T, st *store.Store, n int, gaveUp, pending string) {
	t.Helper()
	_, err := st.Pool.Exec(ctx, `INSERT INTO outbox (dedupe_key, event_type, upload_id, bucket, key, data, relayed_at,
			pending, gave_up, delivered_at)
		SELECT 'discard:' || g, 'upload.valid', gen_random_uuid(), 'b', 'k' || g, '{}', now(),
		       (`+pending+`)::text[], (`+gaveUp+`)::text[], CASE WHEN (`+pending+`)::text[] = '{}' THEN now() END
		FROM generate_series(1, $1) AS g ORDER BY g`, n)
	require.NoError(t, err)
}

// countRows counts the outbox rows where cond holds.
func countRows(ctx context.Context, t *testing.T, st *store.Store, cond string) int {
	t.Helper()
	var n int
	require.NoError(t, st.Pool.QueryRow(ctx, `SELECT count(*) FROM outbox WHERE `+cond).Scan(&n))
	return n
}

// TestDiscardInBatches: 3,000 notifications, 2,400 given up on "gone" and "kept", 300 on "kept"
// only, 300 undelivered (still pending on "gone", nothing given up), interleaved. Discarding
// "gone" 300 at a time changes the 2,400, each statement 300 of them, and leaves "kept" and the
// undelivered rows alone; a notification given up while it runs (after its start) is left too.
// Discarding every endpoint, 250 at a time, then drops the rest: 2,701 notifications, the last
// batch short.
func TestDiscardInBatches(t *testing.T) {
	t.Parallel()
	ctx, st := discardDB(t)
	insertGivenUp(ctx, t, st, 3000,
		`CASE g % 10 WHEN 0 THEN '{kept}' WHEN 1 THEN '{}' ELSE '{gone,kept}' END`,
		`CASE g % 10 WHEN 1 THEN '{gone}' ELSE '{}' END`)

	var seen []int64
	n, err := outbox.DiscardInBatches(ctx, st.Pool, "gone", 300, func(done int64) {
		if len(seen) == 0 {
			_, err := st.Pool.Exec(ctx, `INSERT INTO outbox (dedupe_key, event_type, upload_id, bucket, key, data,
				relayed_at, pending, gave_up, delivered_at)
				VALUES ('late', 'upload.valid', gen_random_uuid(), 'b', 'late', '{}', now(), '{}', '{gone}', now())`)
			require.NoError(t, err)
		}
		seen = append(seen, done)
	})
	require.NoError(t, err)
	require.EqualValues(t, 2400, n)
	require.Equal(t, []int64{300, 600, 900, 1200, 1500, 1800, 2100, 2400}, seen, "300 notifications a statement")
	require.Zero(t, countRows(ctx, t, st, `'gone' = ANY (gave_up) AND dedupe_key <> 'late'`))
	require.Equal(t, 2700, countRows(ctx, t, st, `gave_up = '{kept}'`))
	require.Equal(t, 1, countRows(ctx, t, st, `dedupe_key = 'late' AND gave_up = '{gone}'`), "given up after the start")
	require.Equal(t, 300, countRows(ctx, t, st, `pending = '{gone}' AND gave_up = '{}' AND delivered_at IS NULL`))

	seen = nil
	n, err = outbox.DiscardInBatches(ctx, st.Pool, "", 250, func(done int64) { seen = append(seen, done) })
	require.NoError(t, err)
	require.EqualValues(t, 2701, n)
	require.Equal(t, []int64{250, 500, 750, 1000, 1250, 1500, 1750, 2000, 2250, 2500}, seen)
	require.Zero(t, countRows(ctx, t, st, `gave_up <> '{}'`))
	require.Equal(t, 300, countRows(ctx, t, st, `pending = '{gone}' AND delivered_at IS NULL`))
	require.Equal(t, 3001, countRows(ctx, t, st, `true`))
}

// TestDiscardReleasesEachBatch: a transaction holds the last of 3,000 given-up notifications (a
// delivery being recorded), and Discard waits for it. Meanwhile, the first notification, in an
// earlier batch, is already discarded and not locked: a delivery recorded on it would not wait for
// the whole discard, as it did when one statement changed every row. Once the holder ends, the
// discard finishes all 3,000.
func TestDiscardReleasesEachBatch(t *testing.T) {
	t.Parallel()
	ctx, st := discardDB(t)
	insertGivenUp(ctx, t, st, 3000, `'{gone}'`, `'{}'`)

	holder, err := st.Pool.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = holder.Rollback(context.WithoutCancel(ctx)) }()
	_, err = holder.Exec(ctx, `SELECT id FROM outbox WHERE id = 3000 FOR UPDATE`)
	require.NoError(t, err)
	var holderPID int32
	require.NoError(t, holder.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&holderPID))

	type result struct {
		n   int64
		err error
	}
	done := make(chan result, 1)
	var wg sync.WaitGroup
	wg.Go(func() {
		n, err := outbox.Discard(ctx, st.Pool, "")
		done <- result{n, err}
	})
	defer func() {
		_ = holder.Rollback(context.WithoutCancel(ctx))
		wg.Wait()
	}()
	require.Eventually(t, func() bool {
		var waiting int
		err := st.Pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
			WHERE $1::int = ANY (pg_blocking_pids(pid)) AND query LIKE '-- name: OutboxDiscard%'`, holderPID).Scan(&waiting)
		return err == nil && waiting == 1
	}, 30*time.Second, 10*time.Millisecond, "the discard never waited for the held row")

	probe, err := st.Pool.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = probe.Rollback(context.WithoutCancel(ctx)) }()
	var gaveUp []string
	err = probe.QueryRow(ctx, `SELECT gave_up FROM outbox WHERE id = 1 FOR UPDATE NOWAIT`).Scan(&gaveUp)
	require.NoError(t, err, "the first batch's row is still locked while the discard waits")
	require.Empty(t, gaveUp, "the first batch is discarded (committed)")
	require.NoError(t, probe.Rollback(ctx))

	require.NoError(t, holder.Rollback(ctx))
	res := <-done
	require.NoError(t, res.err)
	require.EqualValues(t, 3000, res.n)
	require.Zero(t, countRows(ctx, t, st, `gave_up <> '{}'`))
}

// TestDiscardStopsWithItsContext: a discard whose context ends after its first batch returns that
// batch's count with the context's error; those rows stay discarded, the others given up, and
// running it again drops the rest.
func TestDiscardStopsWithItsContext(t *testing.T) {
	t.Parallel()
	ctx, st := discardDB(t)
	insertGivenUp(ctx, t, st, 1000, `'{gone}'`, `'{}'`)
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	n, err := outbox.DiscardInBatches(runCtx, st.Pool, "gone", 400, func(int64) { cancel() })
	require.ErrorIs(t, err, context.Canceled)
	require.EqualValues(t, 400, n)
	require.Equal(t, 400, countRows(ctx, t, st, `gave_up = '{}' AND id <= 400`))
	require.Equal(t, 600, countRows(ctx, t, st, `gave_up = '{gone}'`))
	n, err = outbox.Discard(ctx, st.Pool, "gone")
	require.NoError(t, err)
	require.EqualValues(t, 600, n)
}
