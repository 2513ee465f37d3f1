package store_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/intakehq/intake/internal/store"
	"github.com/intakehq/intake/internal/store/dbq"
	"github.com/intakehq/intake/internal/testkit"
)

// tablesIn lists the ordinary tables of a schema.
func tablesIn(t *testing.T, pool *pgxpool.Pool, schema string) []string {
	t.Helper()
	rows, err := pool.Query(context.Background(),
		"SELECT tablename::text FROM pg_tables WHERE schemaname = $1 ORDER BY tablename", schema)
	require.NoError(t, err)
	defer rows.Close()
	var out []string
	for rows.Next() {
		var n string
		require.NoError(t, rows.Scan(&n))
		out = append(out, n)
	}
	require.NoError(t, rows.Err())
	return out
}

// openIn opens a store on the database url with intake's schema set to schema.
func openIn(t *testing.T, url, schema string) *store.Store {
	t.Helper()
	st, err := store.OpenSchema(testkit.Context(t), url, schema)
	require.NoError(t, err)
	t.Cleanup(st.Close)
	return st
}

func TestSchemaOf(t *testing.T) {
	t.Parallel()
	cases := []struct {
		url, want, err string
	}{
		{"postgres://u@h/db", store.DefaultSchema, ""},
		{"postgres://u@h/db?search_path=acme_intake", "acme_intake", ""},
		{"postgres://u@h/db?search_path=acme,public", "acme", ""},
		{"postgres://u@h/db?search_path=public", "public", ""},
		{"postgres://u@h/db?search_path=Acme", "", "plain lower-case name"},
		{"postgres://u@h/db?search_path=pg_catalog", "", "not pg_"},
	}
	for _, tc := range cases {
		cfg, err := pgxpool.ParseConfig(tc.url)
		require.NoError(t, err)
		got, err := store.SchemaOf(cfg)
		if tc.err != "" {
			require.ErrorContains(t, err, tc.err, tc.url)
			continue
		}
		require.NoError(t, err, tc.url)
		require.Equal(t, tc.want, got, tc.url)
	}
}

// TestFreshInstallUsesItsOwnSchema: on a fresh database migrate creates the schema and every table
// lands there; the pool's search_path is that schema alone; INTAKE_DB_SCHEMA wins over the URL.
func TestFreshInstallUsesItsOwnSchema(t *testing.T) {
	if testing.Short() {
		t.Skip("needs PostgreSQL")
	}
	t.Parallel()
	ctx := testkit.Context(t)
	url := testkit.Database(t)
	st := openIn(t, url, "")
	require.Equal(t, store.DefaultSchema, st.Schema)
	res, err := store.Upgrade(ctx, st.Pool)
	require.NoError(t, err)
	require.Empty(t, res.Moved)
	require.NotEmpty(t, res.Applied)
	require.Empty(t, tablesIn(t, st.Pool, "public"), "nothing in public")
	require.Subset(t, tablesIn(t, st.Pool, store.DefaultSchema), []string{"uploads", "objects", "events", "multipart_aborts", "schema_migrations"})
	var sp string
	require.NoError(t, st.Pool.QueryRow(ctx, "SHOW search_path").Scan(&sp))
	require.Equal(t, store.DefaultSchema, sp)

	other := openIn(t, url+"&search_path=from_url", "tenant_b")
	require.Equal(t, "tenant_b", other.Schema, "INTAKE_DB_SCHEMA wins over the URL's search_path")
	_, err = store.Migrate(ctx, other.Pool)
	require.NoError(t, err)
	require.Contains(t, tablesIn(t, other.Pool, "tenant_b"), "uploads")
}

// seedLegacy applies every migration to public of a fresh database (the layout of releases before
// schemas) and writes one row in each table; it returns the database URL and the upload's id.
func seedLegacy(t *testing.T) (string, uuid.UUID) {
	t.Helper()
	ctx := testkit.Context(t)
	url := testkit.Database(t)
	old := openIn(t, url, "public")
	_, err := store.Migrate(ctx, old.Pool)
	require.NoError(t, err)
	id := uuid.New()
	_, err = testkit.CreateUpload(ctx, old.Pool, dbq.Upload{
		ID: id, Owner: "alice", Bucket: "b", Key: "uploads/alice/1/a.png", Method: "multipart",
		Filename: "a.png", ContentType: "image/png", Size: 42, MultipartUploadID: ptr("mpu-1"),
		ExpiresAt: time.Now().Add(time.Hour),
	})
	require.NoError(t, err)
	for _, q := range []string{
		`INSERT INTO objects (bucket, key, status, upload_id, owner) VALUES ('b', 'uploads/alice/1/a.png', 'valid', '` + id.String() + `', 'alice')`,
		`INSERT INTO events (message_id, outcome, body) VALUES ('m1', 'processed', '{}'), ('m2', 'processed', '{}')`,
		`INSERT INTO multipart_aborts (bucket, key, upload_id, reason, outcome) VALUES ('b', 'k', 'mpu-0', 'sweep', 'gone')`,
	} {
		_, err := old.Pool.Exec(ctx, q)
		require.NoError(t, err, q)
	}
	old.Close()
	return url, id
}

func ptr[T any](v T) *T { return &v }

// TestUpgradeMovesAPreSchemaInstall: an install whose tables are in public is moved into intake's
// schema by Upgrade (one transaction, nothing copied): rows, constraints, identity sequences come
// along, public is left without intake's tables, and a second run moves nothing.
func TestUpgradeMovesAPreSchemaInstall(t *testing.T) {
	if testing.Short() {
		t.Skip("needs PostgreSQL")
	}
	t.Parallel()
	ctx := testkit.Context(t)
	url, id := seedLegacy(t)
	st := openIn(t, url, "")

	legacy, err := store.LegacyLayout(ctx, st.Pool)
	require.NoError(t, err)
	require.True(t, legacy)
	plain, err := store.Migrate(ctx, openIn(t, url, "scratch_other").Pool)
	require.NoError(t, err)
	require.NotEmpty(t, plain, "Migrate alone never adopts public: it made fresh tables in its schema")

	res, err := store.Upgrade(ctx, st.Pool)
	require.NoError(t, err)
	require.Equal(t, store.DefaultSchema, res.Schema)
	require.Subset(t, res.Moved, []string{"table uploads", "table objects", "table events", "table multipart_aborts", "table schema_migrations"})
	require.Empty(t, res.Applied, "every migration was already applied in public")
	require.Empty(t, tablesIn(t, st.Pool, "public"), "public no longer holds intake's tables")

	got, err := testkit.GetUpload(ctx, st.Pool, id)
	require.NoError(t, err)
	require.Equal(t, "alice", got.Owner)
	obj, err := testkit.GetObject(ctx, st.Pool, "b", "uploads/alice/1/a.png")
	require.NoError(t, err)
	require.Equal(t, &id, obj.UploadID, "the foreign key came along")
	var nextID int64
	require.NoError(t, st.Pool.QueryRow(ctx, "INSERT INTO events (message_id, outcome, body) VALUES ('m3', 'processed', '{}') RETURNING id").Scan(&nextID))
	require.Equal(t, int64(3), nextID, "the identity sequence moved with its table")
	_, err = st.Pool.Exec(ctx, "INSERT INTO uploads (id, owner, bucket, key, method, filename, content_type, size, expires_at) VALUES ($1, 'bob', 'b', 'uploads/alice/1/a.png', 'put', 'a', 'text/plain', 1, now())", uuid.New())
	require.ErrorContains(t, err, "uploads_bucket_key_key", "constraints came along")
	status, err := store.Status(ctx, st.Pool)
	require.NoError(t, err)
	for _, s := range status {
		require.NotNil(t, s.AppliedAt, "%s recorded as applied in the new schema", s.Name)
	}

	legacy, err = store.LegacyLayout(ctx, st.Pool)
	require.NoError(t, err)
	require.False(t, legacy)
	again, err := store.Upgrade(ctx, st.Pool)
	require.NoError(t, err)
	require.Empty(t, again.Moved)
	require.Empty(t, again.Applied)
}

// TestUpgradeMoveLockTimeout: a replica of an older release holding a transaction on
// public.uploads does not make Upgrade wait without bound for the ACCESS EXCLUSIVE lock of its
// ALTER … SET SCHEMA, with every query of the table queued behind it: the move waits at most the
// lock timeout each run, is rolled back and retried, then fails with ErrMigrationLockTimeout,
// leaving the install in public; once the transaction ends, Upgrade moves it.
func TestUpgradeMoveLockTimeout(t *testing.T) {
	if testing.Short() {
		t.Skip("needs PostgreSQL")
	}
	t.Parallel()
	ctx := testkit.Context(t)
	url, _ := seedLegacy(t)
	st := openIn(t, url, "")
	connect := func() *pgx.Conn {
		conn, err := pgx.Connect(ctx, url)
		require.NoError(t, err)
		t.Cleanup(func() { _ = conn.Close(context.Background()) })
		return conn
	}
	blocker, err := connect().Begin(ctx)
	require.NoError(t, err)
	t.Cleanup(func() { _ = blocker.Rollback(context.Background()) })
	_, err = blocker.Exec(ctx, "SELECT 1 FROM public.uploads LIMIT 1") // ACCESS SHARE until it ends
	require.NoError(t, err)

	const lockTimeout = 300 * time.Millisecond
	type result struct {
		res     store.UpgradeResult
		err     error
		elapsed time.Duration
	}
	done := make(chan result, 1)
	go func() {
		ctx, cancel := context.WithTimeout(ctx, 15*time.Second) // fails the test instead of hanging it
		defer cancel()
		start := time.Now()
		res, err := store.UpgradeLocks(ctx, st.Pool, lockTimeout, 3, 100*time.Millisecond)
		done <- result{res, err, time.Since(start)}
	}()
	admin := connect()
	require.Eventually(t, func() bool {
		var n int
		require.NoError(t, admin.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND wait_event_type = 'Lock'`).Scan(&n))
		return n > 0
	}, 20*time.Second, 5*time.Millisecond, "the move did not wait for a lock")

	// A read of the table queues behind the ALTER's request: it waits at most until the move gives
	// up its wait.
	readCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	start := time.Now()
	var n int
	require.NoError(t, connect().QueryRow(readCtx, "SELECT count(*) FROM public.uploads").Scan(&n), "the read waited for the move")
	require.Equal(t, 1, n)
	require.Less(t, time.Since(start), lockTimeout+2*time.Second, "the read waited longer than the lock timeout")

	r := <-done
	require.ErrorIs(t, r.err, store.ErrMigrationLockTimeout)
	var pgErr *pgconn.PgError
	require.ErrorAs(t, r.err, &pgErr)
	require.Equal(t, "55P03", pgErr.Code)
	require.Less(t, r.elapsed, 5*time.Second, "3 waits of 300 ms and 2 backoffs")
	require.Empty(t, r.res.Moved)
	require.Empty(t, r.res.Applied)
	legacy, err := store.LegacyLayout(ctx, st.Pool)
	require.NoError(t, err)
	require.True(t, legacy, "nothing moved: the install is still in public")
	require.Contains(t, tablesIn(t, st.Pool, "public"), "uploads")

	require.NoError(t, blocker.Rollback(ctx))
	res, err := store.Upgrade(ctx, st.Pool)
	require.NoError(t, err)
	require.Subset(t, res.Moved, []string{"table uploads", "table objects", "table schema_migrations"})
	require.Equal(t, len(res.Moved), len(slices.Compact(slices.Sorted(slices.Values(res.Moved)))), "each object moved once")
}

// TestUpgradeMovesOnlyIntakesObjects: the objects to move are those intake's recorded migrations
// create (functions and types included), not everything in public.
func TestUpgradeMovesOnlyIntakesObjects(t *testing.T) {
	if testing.Short() {
		t.Skip("needs PostgreSQL")
	}
	t.Parallel()
	ctx := testkit.Context(t)
	url := testkit.Database(t)
	fsys := fstest.MapFS{
		"m/0001_init.sql": {Data: []byte(`CREATE TABLE widgets (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, s text);
CREATE TYPE mood AS ENUM ('ok', 'sad');
CREATE FUNCTION widgets_touch() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$;
CREATE TRIGGER widgets_touch BEFORE INSERT ON widgets FOR EACH ROW EXECUTE FUNCTION widgets_touch();
CREATE VIEW widget_names AS SELECT s FROM widgets;`)},
		"m/0002_more.sql": {Data: []byte(`CREATE TABLE gadgets (w bigint REFERENCES widgets (id), m mood);`)},
	}
	old := openIn(t, url, "public")
	_, err := store.MigrateFS(ctx, old.Pool, fsys, "m", false)
	require.NoError(t, err)
	_, err = old.Pool.Exec(ctx, `CREATE TABLE public.app_users (id int); CREATE FUNCTION public.app_fn() RETURNS int LANGUAGE sql AS 'SELECT 1'`)
	require.NoError(t, err)

	st := openIn(t, url, "moved")
	res, err := store.MigrateFS(ctx, st.Pool, fsys, "m", true)
	require.NoError(t, err)
	require.ElementsMatch(t, []string{"table widgets", "type mood", "function widgets_touch()", "view widget_names", "table gadgets", "table schema_migrations"}, res.Moved)
	require.Equal(t, []string{"app_users"}, tablesIn(t, st.Pool, "public"), "another application's table stays")
	var fnSchema string
	require.NoError(t, st.Pool.QueryRow(ctx, "SELECT pronamespace::regnamespace::text FROM pg_proc WHERE proname = 'app_fn'").Scan(&fnSchema))
	require.Equal(t, "public", fnSchema)
	_, err = st.Pool.Exec(ctx, "INSERT INTO gadgets (w, m) SELECT id, 'ok' FROM widgets")
	require.NoError(t, err)
}

// TestSchemaClashWithAnotherApplication: a database whose public schema holds another
// application's uploads and schema_migrations (golang-migrate's shape, and one shaped like
// intake's that is not intake's): intake's migrate leaves both untouched, and intake's queries use
// its own tables.
func TestSchemaClashWithAnotherApplication(t *testing.T) {
	if testing.Short() {
		t.Skip("needs PostgreSQL")
	}
	t.Parallel()
	for _, other := range []string{
		`CREATE TABLE public.schema_migrations (version bigint PRIMARY KEY, dirty boolean NOT NULL);
		 INSERT INTO public.schema_migrations VALUES (20240101, false)`,
		`CREATE TABLE public.schema_migrations (version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now());
		 INSERT INTO public.schema_migrations (version, name) VALUES (1, '001_create_uploads.sql')`,
	} {
		t.Run("", func(t *testing.T) {
			t.Parallel()
			ctx := testkit.Context(t)
			url := testkit.Database(t)
			app := openIn(t, url, "public")
			_, err := app.Pool.Exec(ctx, `CREATE TABLE public.uploads (id serial PRIMARY KEY, path text NOT NULL);
				INSERT INTO public.uploads (path) VALUES ('/srv/a.png'), ('/srv/b.png');`+other)
			require.NoError(t, err)
			fingerprint := func() string {
				var s string
				require.NoError(t, app.Pool.QueryRow(ctx, `SELECT (SELECT string_agg(path, ',' ORDER BY id) FROM public.uploads) || '|' ||
					(SELECT count(*) FROM public.schema_migrations) || '|' ||
					(SELECT string_agg(column_name, ',' ORDER BY ordinal_position) FROM information_schema.columns
					 WHERE table_schema = 'public' AND table_name = 'uploads')`).Scan(&s))
				return s
			}
			before := fingerprint()

			st := openIn(t, url, "")
			legacy, err := store.LegacyLayout(ctx, st.Pool)
			require.NoError(t, err)
			require.False(t, legacy, "another tool's schema_migrations is not intake's")
			res, err := store.Upgrade(ctx, st.Pool)
			require.NoError(t, err)
			require.Empty(t, res.Moved)
			require.NotEmpty(t, res.Applied)
			_, err = testkit.CreateUpload(ctx, st.Pool, dbq.Upload{
				ID: uuid.New(), Owner: "alice", Bucket: "b", Key: "k", Method: "put", Filename: "k",
				ContentType: "text/plain", Size: 1, ExpiresAt: time.Now().Add(time.Hour),
			})
			require.NoError(t, err)
			var n int
			require.NoError(t, st.Pool.QueryRow(ctx, "SELECT count(*) FROM intake.uploads").Scan(&n))
			require.Equal(t, 1, n, "intake's queries write intake's table")
			require.Equal(t, before, fingerprint(), "the other application's tables are untouched")
		})
	}
}

// TestNoTransactionMigration: a migration with the no-transaction header runs outside a
// transaction, so CREATE INDEX CONCURRENTLY works (inside one PostgreSQL refuses it); it is
// recorded once; such a migration may hold only index statements.
func TestNoTransactionMigration(t *testing.T) {
	if testing.Short() {
		t.Skip("needs PostgreSQL")
	}
	t.Parallel()
	ctx := testkit.Context(t)
	schema := testkit.Schema(t)
	st, err := store.Open(ctx, testkit.DatabaseURLFor(schema))
	require.NoError(t, err)
	t.Cleanup(st.Close)
	fsys := fstest.MapFS{
		"m/0001_t.sql": {Data: []byte("CREATE TABLE big (id bigint PRIMARY KEY, at timestamptz);\nINSERT INTO big SELECT g, now() FROM generate_series(1, 1000) g;")},
		"m/0002_idx.sql": {Data: []byte(`-- 0002_idx: an index on a large table, built without blocking writes.
-- intake:no-transaction
DROP INDEX CONCURRENTLY IF EXISTS big_at_idx;
CREATE INDEX CONCURRENTLY big_at_idx ON big (at);
`)},
	}
	res, err := store.MigrateFS(ctx, st.Pool, fsys, "m", false)
	require.NoError(t, err)
	require.Equal(t, []string{"0001_t.sql", "0002_idx.sql"}, res.Applied)
	var valid bool
	require.NoError(t, st.Pool.QueryRow(ctx, "SELECT indisvalid FROM pg_index WHERE indexrelid = 'big_at_idx'::regclass").Scan(&valid))
	require.True(t, valid)
	res, err = store.MigrateFS(ctx, st.Pool, fsys, "m", false)
	require.NoError(t, err)
	require.Empty(t, res.Applied)

	_, err = store.ParseMigrations(fstest.MapFS{"m/0001_x.sql": {Data: []byte("-- intake:no-transaction\nCREATE INDEX CONCURRENTLY a ON t (c);\nDELETE FROM t;")}}, "m")
	require.ErrorContains(t, err, "may only create, drop, alter or rebuild indexes")
	ms, err := store.ParseMigrations(fstest.MapFS{"m/0001_x.sql": {Data: []byte("CREATE TABLE t (c int);\n-- intake:no-transaction\n")}}, "m")
	require.NoError(t, err)
	require.False(t, ms[0].NoTransaction, "the header counts only among the leading comments")
}

func TestSplitStatements(t *testing.T) {
	t.Parallel()
	sql := `-- a comment; with a semicolon
CREATE INDEX CONCURRENTLY a ON t (c); /* block; comment */
CREATE FUNCTION f() RETURNS text LANGUAGE sql AS $body$ SELECT 'x;y' $body$;
SELECT 'it''s; fine', "odd;name" FROM t;
DROP INDEX b`
	got := store.SplitStatements(sql)
	require.Equal(t, []string{
		"CREATE INDEX CONCURRENTLY a ON t (c)",
		"/* block; comment */\nCREATE FUNCTION f() RETURNS text LANGUAGE sql AS $body$ SELECT 'x;y' $body$",
		`SELECT 'it''s; fine', "odd;name" FROM t`,
		"DROP INDEX b",
	}, got)
	require.Empty(t, store.SplitStatements("-- only a comment\n;;\n"))
}

// TestSchemaNameLength: the outbox's trigger notifies the channel "<schema>.intake_outbox", and
// PostgreSQL refuses channel names of 64 bytes or more, so a longer schema name would make every
// verdict of an intent fail. Such a name is refused when the store opens; the longest accepted
// one opens, migrates, and records a verdict with its notification.
func TestSchemaNameLength(t *testing.T) {
	if testing.Short() {
		t.Skip("needs PostgreSQL")
	}
	t.Parallel()
	ctx := testkit.Context(t)
	name := func(n int) string {
		s := testkit.Name("t_")
		return s + strings.Repeat("x", n-len(s))
	}

	long := name(store.MaxSchemaLen + 1)
	_, err := store.OpenSchema(ctx, testkit.DatabaseURL(), long)
	require.ErrorContains(t, err, "at most 49")
	cfg, err := pgxpool.ParseConfig(testkit.DatabaseURLFor(long))
	require.NoError(t, err)
	_, err = store.SchemaOf(cfg)
	require.ErrorContains(t, err, "at most 49")

	schema := name(store.MaxSchemaLen)
	require.Len(t, schema, 49)
	st := openIn(t, testkit.DatabaseURL(), schema)
	t.Cleanup(func() { _, _ = st.Pool.Exec(context.Background(), "DROP SCHEMA "+schema+" CASCADE") })
	_, err = store.Migrate(ctx, st.Pool)
	require.NoError(t, err)
	require.Equal(t, schema, st.Schema)

	b := &recordsBundle{ctx: ctx, st: st, rs: store.NewRecords(st)}
	id := b.addUpload(t, "k", "put", "pending", nil, nil)
	rec := state("k", seqKey("01"), time.Time{}, "e1")
	rec.UploadID, rec.CompleteIntent = id, id
	got, err := b.rs.Record(ctx, rec)
	require.NoError(t, err)
	require.True(t, got.Applied)
	var n int
	require.NoError(t, st.Pool.QueryRow(ctx, "SELECT count(*) FROM outbox WHERE upload_id = $1 AND event_type = 'upload.valid'", id).Scan(&n))
	require.Equal(t, 1, n, "the verdict's notification")
}
