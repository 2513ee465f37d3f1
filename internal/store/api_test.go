package store_test

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/intakehq/intake/internal/store"
	"github.com/intakehq/intake/internal/store/dbq"
	"github.com/intakehq/intake/internal/testkit"
)

// TestCountOpenMultipartFreesAtTheDeadline: APICountOpenMultipart counts an owner's multipart
// uploads that are pending and before their deadline, up to max_rows: one past its deadline frees
// its slot at once, whether or not its abort has settled it yet (Redis lost the task, the sweep has
// not run), as INTAKE_API_MAX_OPEN_MULTIPART promises. Other owners', other methods' and settled
// uploads never count. The count reads the partial index of open uploads alone (an index-only
// scan), so that uploads past their deadline awaiting their abort cost it nothing.
func TestCountOpenMultipartFreesAtTheDeadline(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("needs PostgreSQL")
	}
	st := testkit.DB(t)
	ctx := context.Background()
	insert := func(owner, method, status string, expires time.Time) {
		t.Helper()
		id := uuid.New()
		arg := dbq.APICreateUploadParams{
			ID: id, Owner: owner, Bucket: "b", Key: fmt.Sprintf("uploads/%s/%s/f.bin", owner, id), Method: method, Filename: "f.bin",
			ContentType: "application/octet-stream", Size: 1, SizeDeclared: true, ExpiresAt: expires,
		}
		if method == "multipart" {
			mp := "mp-" + id.String()
			arg.MultipartUploadID = &mp
		}
		require.NoError(t, st.Q.APICreateUpload(ctx, arg))
		if status != "pending" {
			_, err := st.Pool.Exec(ctx, "UPDATE uploads SET status = $1 WHERE id = $2", status, id)
			require.NoError(t, err)
		}
	}
	future, past := time.Now().Add(time.Hour), time.Now().Add(-time.Second)
	for range 3 {
		insert("alice", "multipart", "pending", future)
	}
	for range 4 {
		insert("alice", "multipart", "pending", past) // past the deadline, abort not yet settled
	}
	insert("alice", "multipart", "completed", future)
	insert("alice", "multipart", "aborted", past)
	insert("alice", "put", "pending", future)
	insert("bob", "multipart", "pending", future)

	count := func(owner string, maxRows int32) int32 {
		t.Helper()
		n, err := st.Q.APICountOpenMultipart(ctx, dbq.APICountOpenMultipartParams{Owner: owner, MaxRows: maxRows})
		require.NoError(t, err)
		return n
	}
	require.EqualValues(t, 3, count("alice", 1000), "uploads past their deadline free their slot")
	require.EqualValues(t, 2, count("alice", 2), "counted up to max_rows")
	require.EqualValues(t, 1, count("bob", 1000))
	require.EqualValues(t, 0, count("carol", 1000))

	// The plan the planner would use were the table large: the partial index, without the rows.
	tx, err := st.Pool.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = tx.Rollback(ctx) }()
	_, err = tx.Exec(ctx, "SET LOCAL enable_seqscan = off; SET LOCAL enable_bitmapscan = off")
	require.NoError(t, err)
	rows, err := tx.Query(ctx, "EXPLAIN (COSTS OFF) SELECT count(*)::int AS open FROM (SELECT 1 FROM uploads "+
		"WHERE owner = $1 AND method = 'multipart' AND status = 'pending' AND expires_at > now() LIMIT $2) AS o", "alice", 1000)
	require.NoError(t, err)
	var plan []string
	for rows.Next() {
		var line string
		require.NoError(t, rows.Scan(&line))
		plan = append(plan, line)
	}
	require.NoError(t, rows.Err())
	require.Contains(t, strings.Join(plan, "\n"), "Index Only Scan using uploads_open_multipart_owner_expires_idx", strings.Join(plan, "\n"))
}

// recorder is a dbq.DBTX that keeps the SQL and arguments of the last query it ran.
type recorder struct {
	dbq.DBTX
	sql  string
	args []any
}

func (r *recorder) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	r.sql, r.args = sql, args
	return r.DBTX.Query(ctx, sql, args...)
}

// planOf returns the text of the plan of EXPLAIN (COSTS OFF) stmt, run with args on q.
func planOf(t *testing.T, ctx context.Context, q interface {
	Query(context.Context, string, ...any) (pgx.Rows, error)
}, stmt string, args ...any) string {
	t.Helper()
	return explainRows(t, ctx, q, "EXPLAIN (COSTS OFF) "+stmt, args...)
}

// explainRows returns the lines of an EXPLAIN statement's answer.
func explainRows(t *testing.T, ctx context.Context, q interface {
	Query(context.Context, string, ...any) (pgx.Rows, error)
}, stmt string, args ...any) string {
	t.Helper()
	rows, err := q.Query(ctx, stmt, args...)
	require.NoError(t, err)
	lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	return strings.Join(lines, "\n")
}

// listFilter is one call of APIListObjects's filters (nil: none).
type listFilter struct {
	status *string
	upload *uuid.UUID
	prefix *string
}

func (f listFilter) params(owner string, maxRows int32) dbq.APIListObjectsParams {
	arg := dbq.APIListObjectsParams{Owner: &owner, Status: f.status, UploadID: f.upload, MaxRows: maxRows}
	if f.prefix != nil {
		end := store.PrefixEnd(*f.prefix)
		arg.Prefix, arg.PrefixEnd = f.prefix, &end
	}
	return arg
}

// TestListObjectsReadsAnIndexPerFilter: GET /v1/objects reads an index range for each shape of
// filters (?status=, ?upload_id=, ?prefix=, together or not, first page or later), on a table
// large enough that a sequential scan would otherwise be chosen, both in the plan made with the
// call's values and in the generic plan a cached statement may get (before, the filters were
// (@x IS NULL OR col = @x) conditions no index served: ?prefix= read every row of the owner or of
// the table, ?status= walked the owner's rows newest first until it had a page, and in a generic
// plan ?upload_id= too, and every later page read the ones before it).
func TestListObjectsReadsAnIndexPerFilter(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("needs PostgreSQL")
	}
	st := testkit.DB(t)
	ctx := testkit.Context(t)
	// 50,000 objects, one upload each: 90% alice's, 10% bob's; 1 in 500 rejected, 1 in 50
	// pending, the rest valid; keys uploads/<owner>/<n>/f.bin.
	_, err := st.Pool.Exec(ctx, `
INSERT INTO uploads (id, owner, bucket, key, method, filename, content_type, size, expires_at)
SELECT gen_random_uuid(), CASE WHEN g % 10 = 0 THEN 'bob' ELSE 'alice' END, 'b',
       format('uploads/%s/%s/f.bin', CASE WHEN g % 10 = 0 THEN 'bob' ELSE 'alice' END, lpad(g::text, 6, '0')),
       'put', 'f.bin', 'application/octet-stream', 1, now() + interval '1 hour'
FROM generate_series(1, 50000) g;
INSERT INTO objects (bucket, key, owner, upload_id, status, reason, created_at)
SELECT u.bucket, u.key, u.owner, u.id, s.status, CASE WHEN s.status = 'rejected' THEN 'too_large' END,
       timestamptz '2026-01-01' + (split_part(u.key, '/', 3)::int * interval '1 second')
FROM uploads u, LATERAL (SELECT CASE WHEN split_part(u.key, '/', 3)::int % 500 = 1 THEN 'rejected'
                                     WHEN split_part(u.key, '/', 3)::int % 50 = 2 THEN 'pending'
                                     ELSE 'valid' END AS status) s;
ANALYZE uploads;
ANALYZE objects;`)
	require.NoError(t, err)
	var upload uuid.UUID
	var cursorAt time.Time
	var cursorID uuid.UUID
	require.NoError(t, st.Pool.QueryRow(ctx, "SELECT upload_id FROM objects WHERE key = 'uploads/alice/025001/f.bin'").Scan(&upload))
	require.NoError(t, st.Pool.QueryRow(ctx, "SELECT created_at, id FROM objects WHERE key = 'uploads/alice/030001/f.bin'").Scan(&cursorAt, &cursorID))

	rejected, valid := "rejected", "valid"
	noMatch, narrow, broad, aliceAll := "nomatch/", "uploads/alice/0250", "uploads/", "uploads/alice/"
	cases := []struct {
		name   string
		filter listFilter
		index  string // the index the plan made with the values reads ("": one of them)
		wide   bool   // WidePrefix: the prefix covers the owner's namespace
	}{
		{"no filter", listFilter{}, "objects_owner_created_idx", false},
		{"status", listFilter{status: &rejected}, "objects_owner_status_created_idx", false},
		{"frequent status", listFilter{status: &valid}, "", false},
		{"upload", listFilter{upload: &upload}, "objects_upload_id_idx", false},
		{"prefix without match", listFilter{prefix: &noMatch}, "objects_owner_key_c_idx", false},
		{"narrow prefix", listFilter{prefix: &narrow}, "objects_owner_key_c_idx", false},
		{"prefix of every key", listFilter{prefix: &broad}, "", false},
		{"prefix of the owner's keys", listFilter{prefix: &aliceAll}, "", false},
		// The owner's namespace (or a prefix of it) holds nearly all of the owner's rows: they are
		// walked newest first from the cursor, a page read, instead of the whole range read and
		// sorted for every page (100,000 rows for a page of 50 in a review's measurement).
		{"the owner's namespace", listFilter{prefix: &aliceAll}, "objects_owner_created_idx", true},
		{"a prefix of every key, wide", listFilter{prefix: &broad}, "objects_owner_created_idx", true},
		{"status and the owner's namespace", listFilter{status: &rejected, prefix: &aliceAll}, "objects_owner_status_created_idx", true},
		{"status and prefix", listFilter{status: &rejected, prefix: &narrow}, "", false},
		{"status and upload", listFilter{status: &valid, upload: &upload}, "objects_upload_id_idx", false},
		{"prefix and upload", listFilter{prefix: &narrow, upload: &upload}, "objects_upload_id_idx", false},
		{"every filter", listFilter{status: &valid, prefix: &narrow, upload: &upload}, "objects_upload_id_idx", false},
	}
	var stmt string
	for _, tc := range cases {
		for _, later := range []bool{false, true} {
			name := tc.name
			arg := tc.filter.params("alice", 50)
			arg.WidePrefix = tc.wide
			if later {
				name += ", later page"
				arg.CursorCreatedAt, arg.CursorID = &cursorAt, &cursorID
			}
			rec := &recorder{DBTX: st.Pool}
			_, err := dbq.New(rec).APIListObjects(ctx, arg)
			require.NoError(t, err, name)
			stmt = rec.sql
			plan := planOf(t, ctx, st.Pool, rec.sql, rec.args...)
			require.NotContains(t, plan, "Seq Scan on objects", "%s:\n%s", name, plan)
			require.Contains(t, plan, "Index", "%s:\n%s", name, plan)
			if tc.index != "" {
				require.True(t, strings.Contains(plan, "Index Scan using "+tc.index+" ") || strings.Contains(plan, "Bitmap Index Scan on "+tc.index+"\n"),
					"%s: reads %s:\n%s", name, tc.index, plan)
			}
		}
	}

	// The generic plan (one for every call): each shape's branch reads its index, from the
	// cursor on where the index is in the listing's order, and is skipped unless its shape is the
	// call's.
	c, err := st.Pool.Acquire(ctx)
	require.NoError(t, err)
	conn := c.Hijack()
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	_, err = conn.Prepare(ctx, "list_objects", stmt)
	require.NoError(t, err)
	_, err = conn.Exec(ctx, "SET plan_cache_mode = force_generic_plan")
	require.NoError(t, err)
	plan := planOf(t, ctx, conn, "EXECUTE list_objects(NULL, 'alice', 'rejected', NULL, NULL, NULL, 50, false, NULL)")
	require.NotContains(t, plan, "Seq Scan on objects", plan)
	for _, want := range []string{
		"Index Scan (using|on) objects_upload_id_idx.*\n.*Index Cond: \\(upload_id = \\$1\\)",
		"Index Scan (using|on) objects_owner_key_c_idx.*\n" +
			".*Index Cond: \\(\\(owner = \\$2\\) AND \\(\\(key\\)::text >= \\$4\\) AND \\(\\(key\\)::text < \\$9\\)\\)",
		// In the listing's order: the page is read from the cursor on, and no further.
		"One-Time Filter: \\(\\(\\$1 IS NULL\\) AND \\(\\$4 IS NULL\\)\\)\n.*Index Scan using objects_owner_status_created_idx on objects by_status\n" +
			".*Index Cond: \\(\\(owner = \\$2\\) AND \\(status = \\$3\\) AND \\(ROW\\(created_at, id\\) < ",
		"One-Time Filter: \\(\\(\\$1 IS NULL\\) AND \\(\\$4 IS NULL\\) AND \\(\\$3 IS NULL\\)\\)\n.*Index Scan using objects_owner_created_idx on objects by_owner\n" +
			".*Index Cond: \\(\\(owner = \\$2\\) AND \\(ROW\\(created_at, id\\) < ",
		// The owner's namespace as the prefix: the owner's rows from the cursor on, the prefix a filter.
		"Index Scan using objects_owner_created_idx on objects by_wide\n" +
			".*Index Cond: \\(\\(owner = \\$2\\) AND \\(ROW\\(created_at, id\\) < ",
		"Index Scan using objects_owner_status_created_idx on objects by_wide_status\n" +
			".*Index Cond: \\(\\(owner = \\$2\\) AND \\(status = \\$3\\) AND \\(ROW\\(created_at, id\\) < ",
	} {
		require.Regexp(t, want, plan)
	}
}

// TestListObjectsPagesLikeTheFilters: APIListObjects, paged through with each page's last row as
// the cursor, returns exactly the owner's rows its filters select (status equal, upload equal,
// key starting with prefix byte by byte: also prefixes with LIKE's wildcards, multi-byte
// characters and U+10FFFF), newest first by (created_at, id), each once, for every shape of
// filters and page size, created_at ties included; other owners' rows and rows without an owner
// never.
func TestListObjectsPagesLikeTheFilters(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("needs PostgreSQL")
	}
	st := testkit.DB(t)
	ctx := testkit.Context(t)
	type row struct {
		id      uuid.UUID
		owner   *string
		upload  *uuid.UUID
		status  string
		key     string
		created time.Time
	}
	alice, bob := "alice", "bob"
	owners := []*string{&alice, &alice, &alice, &bob, nil}
	statuses := []string{"valid", "valid", "rejected", "pending", "deleted", "missing"}
	segments := []string{"a", "ab", "b", "_x", "%y", "é", "éa", "\U0010FFFF", "\U0010FFFFa", "z"}
	base := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	var uploads []uuid.UUID
	for i := range 4 {
		u := uuid.New()
		uploads = append(uploads, u)
		_, err := st.Pool.Exec(ctx, `INSERT INTO uploads (id, owner, bucket, key, method, filename, content_type, size, expires_at)
			VALUES ($1, 'alice', 'b', $2, 'put', 'f', 'text/plain', 1, now() + interval '1 hour')`, u, fmt.Sprintf("u/%d", i))
		require.NoError(t, err)
	}
	var rows []row
	for i := range 400 {
		r := row{
			id: uuid.New(), owner: owners[i%len(owners)], status: statuses[i%len(statuses)],
			created: base.Add(time.Duration(i%37) * time.Second), // ties on created_at
		}
		owner := "none"
		if r.owner != nil {
			owner = *r.owner
		}
		r.key = fmt.Sprintf("uploads/%s/%s/%d", owner, segments[i%len(segments)], i)
		if i%3 != 0 {
			r.upload = &uploads[i%len(uploads)]
		}
		var reason *string
		if r.status == "rejected" || r.status == "missing" {
			reason = ptr("why")
		}
		_, err := st.Pool.Exec(ctx, `INSERT INTO objects (id, bucket, key, owner, upload_id, status, reason, created_at)
			VALUES ($1, 'b', $2, $3, $4, $5, $6, $7)`, r.id, r.key, r.owner, r.upload, r.status, reason, r.created)
		require.NoError(t, err)
		rows = append(rows, r)
	}
	// Newest first, id breaking ties, as PostgreSQL orders uuids (byte by byte).
	slices.SortFunc(rows, func(a, b row) int {
		if c := b.created.Compare(a.created); c != 0 {
			return c
		}
		return bytes.Compare(b.id[:], a.id[:])
	})

	var statusFilters = []*string{nil, ptr("valid"), ptr("rejected"), ptr("deleted"), ptr("lost")}
	var uploadFilters = []*uuid.UUID{nil, &uploads[1], &uploads[2], ptr(uuid.New())}
	var prefixFilters = []*string{nil, ptr(""), ptr("uploads/"), ptr("uploads/alice/"), ptr("uploads/alice/a"),
		ptr("uploads/alice/_"), ptr("uploads/alice/%"), ptr("uploads/alice/%y/"), ptr("uploads/al%"),
		ptr("uploads/alice/é"), ptr("uploads/alice/\U0010FFFF"), ptr("uploads/bob/"), ptr("uploads/none/"), ptr("nomatch/")}
	selections := 0
	for _, sf := range statusFilters {
		for _, uf := range uploadFilters {
			for _, pf := range prefixFilters {
				f := listFilter{status: sf, upload: uf, prefix: pf}
				for _, owner := range []string{"alice", "bob", "carol"} {
					var want []uuid.UUID
					for _, r := range rows {
						if r.owner != nil && *r.owner == owner && (sf == nil || r.status == *sf) &&
							(uf == nil || r.upload != nil && *r.upload == *uf) && (pf == nil || strings.HasPrefix(r.key, *pf)) {
							want = append(want, r.id)
						}
					}
					for _, size := range []int32{1, 7, 500} {
						if size == 1 && len(want) > 40 {
							continue // one page a row: enough for the small selections
						}
						for _, wide := range []bool{false, true} {
							if wide && pf == nil {
								continue // wide_prefix is set with a prefix only
							}
							name := fmt.Sprintf("owner %s, status %v, upload %v, prefix %q (wide %t), pages of %d", owner, deref(sf), deref(uf), deref(pf), wide, size)
							var got []uuid.UUID
							arg := f.params(owner, size)
							arg.WidePrefix = wide // a hint of the prefix's extent: the rows are the same either way
							for page := 0; ; page++ {
								require.Less(t, page, 500, name)
								objs, err := st.Q.APIListObjects(ctx, arg)
								require.NoError(t, err, name)
								for _, o := range objs {
									got = append(got, o.ID)
								}
								if len(objs) < int(size) {
									break
								}
								last := objs[len(objs)-1]
								arg.CursorCreatedAt, arg.CursorID = &last.CreatedAt, &last.ID
							}
							require.Equal(t, want, got, name)
						}
					}
					if len(want) > 0 {
						selections++
					}
				}
			}
		}
	}
	t.Logf("%d selections of rows (not empty)", selections)
	require.Greater(t, selections, 50, "the filters select rows in many combinations")
}

func deref[T any](p *T) any {
	if p == nil {
		return nil
	}
	return *p
}
