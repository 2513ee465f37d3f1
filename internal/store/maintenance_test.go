package store_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/intakehq/intake/internal/store"
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

func (r *sqlRecorder) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	r.sql = sql
	return r.DBTX.QueryRow(ctx, sql, args...)
}

// checkPlans runs check on the plan of sql with args made with their values, and on the generic
// plan a statement pgx prepared and cached may get instead (PREPARE with the parameters' types,
// plan_cache_mode = force_generic_plan).
func checkPlans(t *testing.T, ctx context.Context, st *store.Store, sql, types string, args []any, check func(plan string)) {
	t.Helper()
	check(planOf(t, ctx, st.Pool, sql, args...))
	conn, err := st.Pool.Acquire(ctx)
	require.NoError(t, err)
	defer conn.Release()
	_, err = conn.Exec(ctx, "PREPARE generic("+types+") AS "+sql)
	require.NoError(t, err)
	defer func() { _, _ = conn.Exec(context.Background(), "DEALLOCATE generic; RESET plan_cache_mode") }()
	_, err = conn.Exec(ctx, "SET plan_cache_mode = force_generic_plan")
	require.NoError(t, err)
	// EXECUTE's arguments cannot be bound parameters: they are written as literals.
	literals := make([]string, len(args))
	for i, a := range args {
		switch a := a.(type) {
		case time.Time:
			literals[i] = "'" + a.Format(time.RFC3339Nano) + "'"
		case string:
			literals[i] = "'" + strings.ReplaceAll(a, "'", "''") + "'"
		case int, int32, int64:
			literals[i] = fmt.Sprint(a)
		default:
			t.Fatalf("checkPlans: no literal for %T", a)
		}
	}
	check(planOf(t, ctx, conn, "EXECUTE generic("+strings.Join(literals, ", ")+")"))
}

// TestPurgesReadTheirBatchOnly: each periodic delete in batches finds its batch by a range scan
// of its index and deletes it by primary key, in the plan made with the call's values and in the
// generic plan a cached statement may get; as "id IN (SELECT ...)" each planned a hash join over a
// sequential scan of its whole table, in every batch of 1,000.
//   - PruneEndedIntents (the maintenance task's retention of intents that ended without an upload):
//     the partial index uploads_ended_updated_idx; however many pending and completed intents the
//     table holds, and however large the backlog of ended ones, a batch reads its own rows only;
//   - PruneEvents (the retention of archived events): events_received_at_id_idx;
//   - OutboxPurge (delivered notifications past the webhook retention, once a minute):
//     outbox_purgeable_idx.
func TestPurgesReadTheirBatchOnly(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("needs PostgreSQL")
	}
	for _, tc := range []struct {
		name, table, seed string
		cutoff            time.Duration // before now
		purge             func(context.Context, *dbq.Queries, time.Time) (int64, error)
		index, pkey       string
	}{
		{
			name: "ended intents", table: "uploads", cutoff: 500 * time.Hour,
			// 20,000 completed and pending intents, 5,000 ended ones (half past the cutoff).
			seed: `INSERT INTO uploads (id, owner, bucket, key, method, filename, content_type, size, expires_at, status, updated_at)
				SELECT gen_random_uuid(), 'o' || (g % 50), 'b', 'k/' || g, 'put', 'f', 'application/octet-stream', 1,
				       $1::timestamptz - (g % 1000) * interval '1 hour' - interval '1 hour',
				       (ARRAY['completed', 'completed', 'completed', 'pending', 'completed', 'expired'])[1 + g % 6],
				       $1::timestamptz - (g % 1000) * interval '1 hour'
				FROM generate_series(1, 30000) g`,
			purge: func(ctx context.Context, q *dbq.Queries, cutoff time.Time) (int64, error) {
				return q.PruneEndedIntents(ctx, dbq.PruneEndedIntentsParams{Cutoff: cutoff, MaxRows: 1000})
			},
			index: "uploads_ended_updated_idx", pkey: "uploads_pkey",
		},
		{
			name: "archived events", table: "events", cutoff: 500 * time.Hour,
			seed: `INSERT INTO events (message_id, received_at, bucket, key, event_name, outcome, body)
				SELECT 'm' || g, $1::timestamptz - (g % 1000) * interval '1 hour', 'b', 'k' || g, 'ObjectCreated:Put', 'recorded', repeat('x', 200)
				FROM generate_series(1, 30000) g`,
			purge: func(ctx context.Context, q *dbq.Queries, cutoff time.Time) (int64, error) {
				return q.PruneEvents(ctx, dbq.PruneEventsParams{Cutoff: cutoff, MaxRows: 1000})
			},
			index: "events_received_at_id_idx", pkey: "events_pkey",
		},
		{
			name: "delivered notifications", table: "outbox", cutoff: 500 * time.Minute,
			// 30,000 notifications relayed over 1,000 minutes, nine in ten delivered.
			seed: `INSERT INTO outbox (dedupe_key, event_type, upload_id, bucket, key, data, relayed_at, pending, delivered_at)
				SELECT 'd' || g, 'upload.valid', gen_random_uuid(), 'b', 'k' || g, '{}'::jsonb, $1::timestamptz - (g % 1000) * interval '1 minute', '{}',
				       CASE WHEN g % 10 = 0 THEN NULL ELSE $1::timestamptz - (g % 1000) * interval '1 minute' END
				FROM generate_series(1, 30000) g`,
			purge: func(ctx context.Context, q *dbq.Queries, cutoff time.Time) (int64, error) {
				return q.OutboxPurge(ctx, dbq.OutboxPurgeParams{Cutoff: cutoff, MaxRows: 1000})
			},
			index: "outbox_purgeable_idx", pkey: "outbox_pkey",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			st := testkit.DB(t)
			ctx := context.Background()
			now := time.Now().UTC()
			_, err := st.Pool.Exec(ctx, tc.seed, now)
			require.NoError(t, err)
			_, err = st.Pool.Exec(ctx, "VACUUM ANALYZE "+tc.table)
			require.NoError(t, err)

			rec := &sqlRecorder{DBTX: st.Pool}
			cutoff := now.Add(-tc.cutoff)
			n, err := tc.purge(ctx, dbq.New(rec), cutoff)
			require.NoError(t, err)
			require.Equal(t, int64(1000), n, "one batch")

			checkPlans(t, ctx, st, rec.sql, "timestamptz, int", []any{cutoff, 1000}, func(plan string) {
				t.Helper()
				require.Regexp(t, `Index Scan (on|using) `+tc.index+`\b`, plan)
				require.Regexp(t, `Index Scan (on|using) `+tc.pkey+`\b`, plan)
				require.NotContains(t, plan, "Seq Scan", plan)
				require.NotContains(t, plan, "Join", "nothing is read beyond the batch")
			})
		})
	}
}

// TestOutboxDiscardReadsItsBatchOnly: `intake outbox discard` drops given-up deliveries a batch at
// a time (OutboxDiscard): each batch is found in outbox_gave_up_idx and updated by primary key, in
// the plan made with the call's values and in the generic one; as "id IN (SELECT ...)" it scanned
// the whole outbox in every batch.
func TestOutboxDiscardReadsItsBatchOnly(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("needs PostgreSQL")
	}
	st := testkit.DB(t)
	ctx := context.Background()
	now := time.Now().UTC()
	// 30,000 delivered notifications, one in ten with a given-up delivery.
	_, err := st.Pool.Exec(ctx, `INSERT INTO outbox (dedupe_key, event_type, upload_id, bucket, key, data, relayed_at, pending, delivered_at, gave_up)
		SELECT 'd' || g, 'upload.valid', gen_random_uuid(), 'b', 'k' || g, '{}'::jsonb, $1::timestamptz, '{}', $1::timestamptz,
		       CASE WHEN g % 10 = 0 THEN ARRAY['default'] ELSE '{}' END
		FROM generate_series(1, 30000) g`, now)
	require.NoError(t, err)
	_, err = st.Pool.Exec(ctx, "VACUUM ANALYZE outbox")
	require.NoError(t, err)

	rec := &sqlRecorder{DBTX: st.Pool}
	row, err := dbq.New(rec).OutboxDiscard(ctx, dbq.OutboxDiscardParams{Endpoint: "", AfterID: 0, LastID: 1 << 40, MaxRows: 1000})
	require.NoError(t, err)
	require.Equal(t, int64(1000), row.Notifications, "one batch")

	checkPlans(t, ctx, st, rec.sql, "text, bigint, bigint, int", []any{"", int64(row.ThroughID), int64(1 << 40), 1000}, func(plan string) {
		t.Helper()
		require.Regexp(t, `Index Scan (on|using) outbox_gave_up_idx\b`, plan)
		require.Regexp(t, `Index Scan (on|using) outbox_pkey\b`, plan)
		require.NotContains(t, plan, "Seq Scan", plan)
		require.NotContains(t, plan, "Join", "nothing is read beyond the batch")
	})
}
