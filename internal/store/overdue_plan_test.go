package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/intakehq/intake/internal/store/dbq"
	"github.com/intakehq/intake/internal/testkit"
)

// TestOverdueMultipartReadsMultipartOnly: the sweep's look for intake's multipart uploads past
// their deadline (OverdueMultipart) reads the index of pending multipart intents, not every pending
// intent past its deadline: PUT and POST intents stay pending up to the expiry grace (an hour) and
// the maintenance period after their deadline, and at the API's rate they number millions, which
// the sweep read and filtered out every period. Checked on the rows it touches (EXPLAIN ANALYZE's
// "Rows Removed by Filter" and the index), in the plan of one call and in that of a statement
// prepared and run as often as a pass runs it.
func TestOverdueMultipartReadsMultipartOnly(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("needs PostgreSQL")
	}
	st := testkit.DB(t)
	ctx := context.Background()
	now := time.Now().UTC()
	// 20,000 PUT intents past their deadline, still pending (not yet expired by the maintenance
	// task); 20,000 completed multipart ones (every multipart upload intake ever made stays in
	// uploads_multipart_upload_id_idx); 50 pending multipart ones past their deadline.
	_, err := st.Pool.Exec(ctx, `INSERT INTO uploads (id, owner, bucket, key, method, filename, content_type, size, expires_at, status, multipart_upload_id)
		SELECT gen_random_uuid(), 'o' || (g % 50), 'b', 'uploads/o/' || g, CASE WHEN g <= 20050 THEN 'multipart' ELSE 'put' END,
		       'f', 'application/octet-stream', 1, $1::timestamptz - (g % 3000) * interval '1 second',
		       CASE WHEN g BETWEEN 51 AND 20050 THEN 'completed' ELSE 'pending' END,
		       CASE WHEN g <= 20050 THEN 'mp-' || g END
		FROM generate_series(1, 40050) g`, now.Add(-time.Minute))
	require.NoError(t, err)
	_, err = st.Pool.Exec(ctx, "ANALYZE uploads")
	require.NoError(t, err)

	rec := &sqlRecorder{DBTX: st.Pool}
	rows, err := dbq.New(rec).OverdueMultipart(ctx, dbq.OverdueMultipartParams{Bucket: "b", Now: now, Prefix: "uploads/", MaxRows: 500})
	require.NoError(t, err)
	require.Len(t, rows, 50)
	args := []any{"b", now, "uploads/", time.Time{}, uuid.Nil, 500}

	check := func(plan string) {
		t.Helper()
		require.Contains(t, plan, "uploads_pending_multipart_expires_idx", plan)
		require.NotContains(t, plan, "Seq Scan on uploads", plan)
		require.NotRegexp(t, `Rows Removed by Filter: [1-9]\d{2,}`, plan, "pending PUT intents read and dropped")
	}
	explain := "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) "
	check(explainRows(t, ctx, st.Pool, explain+rec.sql, args...))

	// A statement pgx prepared (its default mode) and ran more than five times may get a generic
	// plan when PostgreSQL finds it no dearer than the custom ones: the plan of the sixth run and
	// after is what the sweep gets.
	conn, err := st.Pool.Acquire(ctx)
	require.NoError(t, err)
	defer conn.Release()
	_, err = conn.Exec(ctx, "PREPARE overdue(text, timestamptz, text, timestamptz, uuid, int) AS "+rec.sql)
	require.NoError(t, err)
	defer func() { _, _ = conn.Exec(context.Background(), "DEALLOCATE overdue") }()
	execute := "EXECUTE overdue('b', '" + now.Format(time.RFC3339Nano) + "', 'uploads/', '0001-01-01T00:00:00Z', '00000000-0000-0000-0000-000000000000', 500)"
	for range 6 {
		_, err = conn.Exec(ctx, execute)
		require.NoError(t, err)
	}
	check(explainRows(t, ctx, conn, explain+execute))
}
