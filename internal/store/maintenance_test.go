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

// TestPruneEventsReadsItsBatchOnly: the maintenance task's delete of archived events past their
// retention (PruneEvents) finds its batch by a range scan of events_received_at_id_idx and deletes
// it by primary key, in the plan made with the call's values and in the generic one: as
// "id IN (SELECT ...)" it scanned the whole events table in every batch of 1,000.
func TestPruneEventsReadsItsBatchOnly(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("needs PostgreSQL")
	}
	st := testkit.DB(t)
	ctx := context.Background()
	now := time.Now().UTC()
	_, err := st.Pool.Exec(ctx, `INSERT INTO events (message_id, received_at, bucket, key, event_name, outcome, body)
		SELECT 'm' || g, $1::timestamptz - (g % 1000) * interval '1 hour', 'b', 'k' || g, 'ObjectCreated:Put', 'recorded', repeat('x', 200)
		FROM generate_series(1, 30000) g`, now)
	require.NoError(t, err)
	_, err = st.Pool.Exec(ctx, "VACUUM ANALYZE events")
	require.NoError(t, err)

	rec := &sqlRecorder{DBTX: st.Pool}
	cutoff := now.Add(-500 * time.Hour)
	n, err := dbq.New(rec).PruneEvents(ctx, dbq.PruneEventsParams{Cutoff: cutoff, MaxRows: 1000})
	require.NoError(t, err)
	require.Equal(t, int64(1000), n, "one batch")

	check := func(plan string) {
		t.Helper()
		require.Regexp(t, `Index Scan (on|using) events_received_at_id_idx`, plan)
		require.Regexp(t, `Index Scan (on|using) events_pkey\b`, plan)
		require.NotContains(t, plan, "Seq Scan", plan)
	}
	check(planOf(t, ctx, st.Pool, rec.sql, cutoff, 1000))

	conn, err := st.Pool.Acquire(ctx)
	require.NoError(t, err)
	defer conn.Release()
	_, err = conn.Exec(ctx, "PREPARE prune_events(timestamptz, int) AS "+rec.sql)
	require.NoError(t, err)
	defer func() { _, _ = conn.Exec(context.Background(), "DEALLOCATE prune_events; RESET plan_cache_mode") }()
	_, err = conn.Exec(ctx, "SET plan_cache_mode = force_generic_plan")
	require.NoError(t, err)
	check(planOf(t, ctx, conn, "EXECUTE prune_events('"+cutoff.Format(time.RFC3339Nano)+"', 1000)"))
}

// TestOutboxPurgeReadsItsBatchOnly: the purge of delivered notifications past the webhook
// retention (OutboxPurge, once a minute) finds its batch in outbox_purgeable_idx and deletes it by
// primary key, in the plan made with the call's values and in the generic one: as
// "id IN (SELECT ...)" it scanned the whole outbox in every batch.
func TestOutboxPurgeReadsItsBatchOnly(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("needs PostgreSQL")
	}
	st := testkit.DB(t)
	ctx := context.Background()
	now := time.Now().UTC()
	// 30,000 notifications relayed over 1,000 minutes, nine in ten delivered.
	_, err := st.Pool.Exec(ctx, `INSERT INTO outbox (dedupe_key, event_type, upload_id, bucket, key, data, relayed_at, pending, delivered_at)
		SELECT 'd' || g, 'upload.valid', gen_random_uuid(), 'b', 'k' || g, '{}'::jsonb, $1::timestamptz - (g % 1000) * interval '1 minute', '{}',
		       CASE WHEN g % 10 = 0 THEN NULL ELSE $1::timestamptz - (g % 1000) * interval '1 minute' END
		FROM generate_series(1, 30000) g`, now)
	require.NoError(t, err)
	_, err = st.Pool.Exec(ctx, "VACUUM ANALYZE outbox")
	require.NoError(t, err)

	rec := &sqlRecorder{DBTX: st.Pool}
	cutoff := now.Add(-500 * time.Minute)
	n, err := dbq.New(rec).OutboxPurge(ctx, dbq.OutboxPurgeParams{Cutoff: cutoff, MaxRows: 1000})
	require.NoError(t, err)
	require.Equal(t, int64(1000), n, "one batch")

	check := func(plan string) {
		t.Helper()
		require.Regexp(t, `Index Scan (on|using) outbox_purgeable_idx`, plan)
		require.Regexp(t, `Index Scan (on|using) outbox_pkey\b`, plan)
		require.NotContains(t, plan, "Seq Scan", plan)
	}
	check(planOf(t, ctx, st.Pool, rec.sql, cutoff, 1000))

	conn, err := st.Pool.Acquire(ctx)
	require.NoError(t, err)
	defer conn.Release()
	_, err = conn.Exec(ctx, "PREPARE purge_outbox(timestamptz, int) AS "+rec.sql)
	require.NoError(t, err)
	defer func() { _, _ = conn.Exec(context.Background(), "DEALLOCATE purge_outbox; RESET plan_cache_mode") }()
	_, err = conn.Exec(ctx, "SET plan_cache_mode = force_generic_plan")
	require.NoError(t, err)
	check(planOf(t, ctx, conn, "EXECUTE purge_outbox('"+cutoff.Format(time.RFC3339Nano)+"', 1000)"))
}
