package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/intakehq/intake/internal/store/dbq"
	"github.com/intakehq/intake/internal/testkit"
)

// sqlRecorder is a dbq.DBTX that keeps the SQL of the last statement it executed or queried: the
// generated statement, as sent, for a plan test to EXPLAIN.
type sqlRecorder struct {
	dbq.DBTX
	sql string
}

func (r *sqlRecorder) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	r.sql = sql
	return r.DBTX.Exec(ctx, sql, args...)
}

func (r *sqlRecorder) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	r.sql = sql
	return r.DBTX.Query(ctx, sql, args...)
}

// TestPruneEndedIntentsReadsTheEndedIndex: the maintenance task's delete of the intents that
// ended without an upload (PruneEndedIntents) finds its batch by a range scan of the partial index
// uploads_ended_updated_idx and deletes it by primary key, both in the plan made with the call's
// values and in the generic plan a cached statement may get: however many pending and completed
// intents the table holds, and however large the backlog of ended ones, a batch reads its own
// rows only.
func TestPruneEndedIntentsReadsTheEndedIndex(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("needs PostgreSQL")
	}
	st := testkit.DB(t)
	ctx := context.Background()
	now := time.Now().UTC()
	// 20,000 completed and pending intents, 5,000 ended ones (half past the cutoff).
	_, err := st.Pool.Exec(ctx, `INSERT INTO uploads (id, owner, bucket, key, method, filename, content_type, size, expires_at, status, updated_at)
		SELECT gen_random_uuid(), 'o' || (g % 50), 'b', 'k/' || g, 'put', 'f', 'application/octet-stream', 1,
		       $1::timestamptz - (g % 1000) * interval '1 hour' - interval '1 hour',
		       (ARRAY['completed', 'completed', 'completed', 'pending', 'completed', 'expired'])[1 + g % 6],
		       $1::timestamptz - (g % 1000) * interval '1 hour'
		FROM generate_series(1, 30000) g`, now)
	require.NoError(t, err)
	_, err = st.Pool.Exec(ctx, "ANALYZE uploads")
	require.NoError(t, err)

	rec := &sqlRecorder{DBTX: st.Pool}
	cutoff := now.Add(-500 * time.Hour)
	n, err := dbq.New(rec).PruneEndedIntents(ctx, dbq.PruneEndedIntentsParams{Cutoff: cutoff, MaxRows: 0})
	require.NoError(t, err)
	require.Zero(t, n)
	require.Contains(t, rec.sql, "PruneEndedIntents")

	check := func(plan string) {
		t.Helper()
		require.Regexp(t, `Index Scan (on|using) uploads_ended_updated_idx`, plan)
		require.Regexp(t, `Index Scan (on|using) uploads_pkey\b`, plan)
		require.NotContains(t, plan, "Seq Scan", plan)
		require.NotContains(t, plan, "Join", "the ended intents are not read beyond the batch")
	}
	check(planOf(t, ctx, st.Pool, rec.sql, cutoff, 1000))

	conn, err := st.Pool.Acquire(ctx)
	require.NoError(t, err)
	defer conn.Release()
	_, err = conn.Exec(ctx, "PREPARE prune_ended(timestamptz, int) AS "+rec.sql)
	require.NoError(t, err)
	defer func() { _, _ = conn.Exec(context.Background(), "DEALLOCATE prune_ended; RESET plan_cache_mode") }()
	_, err = conn.Exec(ctx, "SET plan_cache_mode = force_generic_plan")
	require.NoError(t, err)
	check(planOf(t, ctx, conn, "EXECUTE prune_ended('"+cutoff.Format(time.RFC3339Nano)+"', 1000)"))
}
