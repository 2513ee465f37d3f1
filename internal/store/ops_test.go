package store_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/intakehq/intake/internal/store"
	"github.com/intakehq/intake/internal/store/dbq"
	"github.com/intakehq/intake/internal/testkit"
)

// capturingDB is a pool that keeps the SQL and arguments of the last query whose text contains
// match.
type capturingDB struct {
	*pgxpool.Pool
	match string
	sql   string
	args  []any
}

func (c *capturingDB) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	if strings.Contains(sql, c.match) {
		c.sql, c.args = sql, args
	}
	return c.Pool.Query(ctx, sql, args...)
}

// sqlLiteral writes an argument of OpsListEvents as an SQL literal (for EXECUTE).
func sqlLiteral(t *testing.T, v any) string {
	t.Helper()
	switch v := v.(type) {
	case time.Time:
		return "'" + v.UTC().Format(time.RFC3339Nano) + "'::timestamptz"
	case string:
		require.NotContains(t, v, "'")
		return "'" + v + "'"
	case int64, int32:
		return fmt.Sprint(v)
	}
	t.Fatalf("no literal for %T", v)
	return ""
}

// rowsRead sums, over the plan's nodes that read the events table, the rows they produced and the
// rows their filters removed.
func rowsRead(node map[string]any) float64 {
	var n float64
	if node["Relation Name"] == "events" {
		for _, k := range []string{"Actual Rows", "Rows Removed by Filter", "Rows Removed by Index Recheck"} {
			if v, ok := node[k].(float64); ok {
				n += v
			}
		}
	}
	if plans, ok := node["Plans"].([]any); ok {
		for _, p := range plans {
			n += rowsRead(p.(map[string]any))
		}
	}
	return n
}

// TestOpsListEventsPages: `intake replay archive` pages through a window of the archive. Every page
// reads about a page of rows, with the plan PostgreSQL picks for the statement's parameters (a
// custom plan) and with the generic plan it caches for a prepared statement after five runs: paging
// by id while filtering by received_at read the rest of the window for every page under the
// generic plan (a bitmap of the window, then a sort), a replay quadratic in the window.
func TestOpsListEventsPages(t *testing.T) {
	if testing.Short() {
		t.Skip("needs PostgreSQL")
	}
	t.Parallel()
	st := testkit.DB(t)
	ctx := testkit.Context(t)
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	// 2,000 events before the window, 20,000 in it, 2,000 after, one a second.
	_, err := st.Pool.Exec(ctx, `INSERT INTO events (message_id, received_at, key, outcome, body)
		SELECT 'm' || g, $1::timestamptz + g * interval '1 second', 'k/' || g, 'created:valid', repeat('x', 200)
		FROM generate_series(1, 24000) g`, base)
	require.NoError(t, err)
	_, err = st.Pool.Exec(ctx, "ANALYZE events")
	require.NoError(t, err)
	since, until := base.Add(2000*time.Second+time.Millisecond), base.Add(22000*time.Second+time.Millisecond)

	db := &capturingDB{Pool: st.Pool, match: "name: OpsListEvents"}
	q := dbq.New(db)
	last, err := q.OpsLastEventID(ctx)
	require.NoError(t, err)
	const page = 200
	var (
		after   int64
		got     []int64
		midSQL  string
		midArgs []any
	)
	for pages := 1; ; pages++ {
		rows, err := q.OpsListEvents(ctx, dbq.OpsListEventsParams{Since: since, Until: until, AfterID: after, LastID: last, MaxRows: page})
		require.NoError(t, err)
		if pages == 50 {
			midSQL, midArgs = db.sql, db.args
		}
		for _, r := range rows {
			got = append(got, r.ID)
			after = r.ID
		}
		if len(rows) < page {
			break
		}
	}
	require.Len(t, got, 20000, "every event of the window, once")
	require.True(t, slices.IsSorted(got))
	require.NotEmpty(t, midSQL)

	conn, err := st.Pool.Acquire(ctx)
	require.NoError(t, err)
	defer conn.Release()
	lits := make([]string, len(midArgs))
	for i, a := range midArgs {
		lits[i] = sqlLiteral(t, a)
	}
	_, err = conn.Exec(ctx, "PREPARE list_events AS "+midSQL)
	require.NoError(t, err)
	defer func() {
		_, _ = conn.Exec(context.Background(), "DEALLOCATE list_events")
		_, _ = conn.Exec(context.Background(), "RESET plan_cache_mode")
	}()
	for _, mode := range []string{"force_custom_plan", "force_generic_plan"} {
		_, err = conn.Exec(ctx, "SET plan_cache_mode = "+mode)
		require.NoError(t, err)
		var out []map[string]any
		require.NoError(t, conn.QueryRow(ctx, "EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE list_events("+strings.Join(lits, ", ")+")").Scan(&out))
		plan := out[0]["Plan"].(map[string]any)
		read := rowsRead(plan)
		js, _ := json.MarshalIndent(plan, "", " ")
		require.LessOrEqual(t, read, float64(2*page), "%s: a page of %d read %v rows of events:\n%s", mode, page, read, js)
	}
}

// TestOpsListEventsOrder: pages come in order of (received_at, id) even where ids and times
// disagree (a transaction that started earlier inserts later), with ties of received_at (one
// transaction's rows) split across pages; rows outside the window and after last_id are left out;
// when the cursor's row is pruned meanwhile, the listing starts again at since, so nothing is
// skipped.
func TestOpsListEventsOrder(t *testing.T) {
	if testing.Short() {
		t.Skip("needs PostgreSQL")
	}
	t.Parallel()
	st := testkit.DB(t)
	ctx := testkit.Context(t)
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	// message id -> received_at offset, in order of insertion (of id).
	evs := []struct {
		msg string
		at  time.Duration
	}{
		{"a", 5 * time.Second}, {"b", 3 * time.Second}, {"c", 3 * time.Second}, {"d", 3 * time.Second},
		{"before", -time.Second}, {"e", 1 * time.Second}, {"f", 7 * time.Second}, {"until", 10 * time.Second},
		{"g", 3 * time.Second}, {"h", 0},
	}
	ids := map[string]int64{}
	for _, e := range evs {
		var id int64
		require.NoError(t, st.Pool.QueryRow(ctx, "INSERT INTO events (message_id, received_at, outcome, body) VALUES ($1, $2, 'created:valid', $1) RETURNING id",
			e.msg, base.Add(e.at)).Scan(&id))
		ids[e.msg] = id
	}
	_, err := st.Pool.Exec(ctx, "INSERT INTO events (message_id, received_at, outcome, body) VALUES ('later', $1, 'created:valid', 'later')", base.Add(2*time.Second))
	require.NoError(t, err)

	list := func(after int64, n int32) []string {
		rows, err := st.Q.OpsListEvents(ctx, dbq.OpsListEventsParams{
			Since: base, Until: base.Add(10 * time.Second), AfterID: after, LastID: ids["h"], MaxRows: n,
		})
		require.NoError(t, err)
		var msgs []string
		for _, r := range rows {
			msgs = append(msgs, r.MessageID)
		}
		return msgs
	}
	var all []string
	for after := int64(0); ; {
		msgs := list(after, 2)
		all = append(all, msgs...)
		if len(msgs) < 2 {
			break
		}
		after = ids[msgs[len(msgs)-1]]
	}
	require.Equal(t, []string{"h", "e", "b", "c", "d", "g", "a", "f"}, all)

	// The cursor's row pruned between pages: the next page starts again at since.
	first := list(0, 3)
	require.Equal(t, []string{"h", "e", "b"}, first)
	_, err = st.Pool.Exec(ctx, "DELETE FROM events WHERE id = $1", ids["b"])
	require.NoError(t, err)
	require.Equal(t, []string{"h", "e", "c", "d", "g", "a", "f"}, list(ids["b"], 10))
}

// TestOpsListObjectsBoundedInGenericPlan: pgx caches the statement, and after a few runs
// PostgreSQL may plan it once for any arguments (a generic plan), in which it derives no upper
// bound from starts_with. Before prefix_end, the last page of a prefix's rows then read every
// key of the bucket after the prefix (here 20,000 rows) to return nothing.
func TestOpsListObjectsBoundedInGenericPlan(t *testing.T) {
	if testing.Short() {
		t.Skip("needs PostgreSQL")
	}
	t.Parallel()
	st := testkit.DB(t)
	ctx := testkit.Context(t)
	_, err := st.Pool.Exec(ctx, `INSERT INTO objects (bucket, key, status)
		SELECT 'b', 'uploads/k' || (g % 10) || '/' || lpad(g::text, 6, '0'), 'valid' FROM generate_series(1, 22000) g`)
	require.NoError(t, err)
	_, err = st.Pool.Exec(ctx, "ANALYZE objects")
	require.NoError(t, err)

	db := &capturingDB{Pool: st.Pool, match: "name: OpsListObjects"}
	params := dbq.OpsListObjectsParams{Bucket: "b", Prefix: "uploads/k1", PrefixEnd: store.PrefixEnd("uploads/k1"), MaxRows: 500}
	var all []string
	for {
		page, err := dbq.New(db).OpsListObjects(ctx, params)
		require.NoError(t, err)
		for _, r := range page {
			all = append(all, r.Key)
		}
		if len(page) < int(params.MaxRows) {
			break
		}
		params.AfterKey = page[len(page)-1].Key
	}
	require.Len(t, all, 2200, "every row under the prefix, and none of the others")
	require.True(t, slices.IsSorted(all))

	// The last page's query, planned generically: the index scan stops at the prefix's end.
	conn, err := st.Pool.Acquire(ctx)
	require.NoError(t, err)
	defer conn.Release()
	_, err = conn.Exec(ctx, "SET plan_cache_mode = force_generic_plan")
	require.NoError(t, err)
	defer conn.Exec(context.Background(), "RESET plan_cache_mode") //nolint:errcheck
	_, err = conn.Exec(ctx, "PREPARE list_objects(text, text, text, text, int) AS "+db.sql)
	require.NoError(t, err)
	defer conn.Exec(context.Background(), "DEALLOCATE list_objects") //nolint:errcheck
	lits := make([]string, len(db.args))
	for i, a := range db.args {
		if s, ok := a.(string); ok {
			lits[i] = "'" + strings.ReplaceAll(s, "'", "''") + "'"
		} else {
			lits[i] = fmt.Sprint(a)
		}
	}
	var plan string
	require.NoError(t, conn.QueryRow(ctx, "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) EXECUTE list_objects("+strings.Join(lits, ", ")+")").Scan(&plan))
	require.Contains(t, plan, "$1", "a generic plan names its parameters")
	var out []struct {
		Plan json.RawMessage `json:"Plan"`
	}
	require.NoError(t, json.Unmarshal([]byte(plan), &out))
	require.NotContains(t, string(out[0].Plan), `"Seq Scan"`, plan)
	require.Contains(t, string(out[0].Plan), `"Index Cond"`, plan)
	var scanned func(raw json.RawMessage) float64
	scanned = func(raw json.RawMessage) float64 {
		var n struct {
			Rows     float64           `json:"Actual Rows"`
			Removed  float64           `json:"Rows Removed by Filter"`
			Type     string            `json:"Node Type"`
			Children []json.RawMessage `json:"Plans"`
		}
		require.NoError(t, json.Unmarshal(raw, &n))
		total := 0.0
		if strings.Contains(n.Type, "Index") {
			total += n.Rows + n.Removed
		}
		for _, c := range n.Children {
			total += scanned(c)
		}
		return total
	}
	require.LessOrEqual(t, scanned(out[0].Plan), 250.0, "the last page reads what lies under the prefix, not the rest of the bucket: %s", plan)
}
