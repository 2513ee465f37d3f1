package store_test

import (
	"context"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/intakehq/intake/internal/store"
	"github.com/intakehq/intake/internal/testkit"
)

// timeoutStore opens a store on a fresh schema through a DATABASE_URL whose options set session
// timeouts (options=-c …, as an operator sets one for the service's queries), with one connection,
// so that the connection a migration used is the one looked at afterwards. admin is a connection
// to the schema without those options, for the test's own checks.
func timeoutStore(t *testing.T, options string) (ctx context.Context, schema string, st *store.Store, admin *pgx.Conn) {
	t.Helper()
	if testing.Short() {
		t.Skip("needs PostgreSQL")
	}
	ctx = testkit.Context(t)
	schema = testkit.Schema(t)
	cfg, err := pgxpool.ParseConfig(testkit.DatabaseURLFor(schema) + "&options=" + strings.NewReplacer(" ", "%20", "=", "%3D").Replace(options))
	require.NoError(t, err)
	cfg.MaxConns = 1
	cfg.ConnConfig.RuntimeParams["application_name"] = testkit.Name("migrate-timeout-")
	st, err = store.OpenConfig(ctx, cfg)
	require.NoError(t, err)
	t.Cleanup(st.Close)
	admin, err = pgx.Connect(ctx, testkit.DatabaseURLFor(schema))
	require.NoError(t, err)
	t.Cleanup(func() { _ = admin.Close(context.Background()) })
	return ctx, schema, st, admin
}

// show reads a setting on the store's (only) connection.
func show(t *testing.T, ctx context.Context, st *store.Store, setting string) string {
	t.Helper()
	var v string
	require.NoError(t, st.Pool.QueryRow(ctx, "SELECT current_setting($1)", setting).Scan(&v))
	return v
}

// invalidIndexes counts the schema's INVALID indexes (what a cancelled CREATE INDEX CONCURRENTLY
// leaves).
func invalidIndexes(t *testing.T, ctx context.Context, admin *pgx.Conn, schema string) int {
	t.Helper()
	var n int
	require.NoError(t, admin.QueryRow(ctx, `SELECT count(*) FROM pg_index i
		JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = $1 AND NOT i.indisvalid`, schema).Scan(&n))
	return n
}

// TestMigrationIgnoresSessionStatementTimeout: a statement_timeout in DATABASE_URL (or set for the
// role or database), which suits the service's queries, does not apply to migrations: a
// transactional migration and a CREATE INDEX CONCURRENTLY that each take longer than it complete
// (before, they were cancelled with 57014, the concurrent build leaving an INVALID index behind,
// and every later run failed the same way). The connection goes back to the pool with the
// session's own timeout. The embedded migrations also apply through such a URL.
func TestMigrationIgnoresSessionStatementTimeout(t *testing.T) {
	t.Parallel()
	// Long enough for the statements before the migration turns it off (a fresh backend's first
	// statement may take a millisecond or more loading catalog caches), shorter than each
	// migration below.
	const options = "-c statement_timeout=50ms"
	t.Run("transaction", func(t *testing.T) {
		t.Parallel()
		ctx, _, st, _ := timeoutStore(t, options)
		fsys := fstest.MapFS{
			"m/0001_t.sql": {Data: []byte("CREATE TABLE t (a int);\nSELECT pg_sleep(0.2);\nINSERT INTO t VALUES (1);")},
		}
		res, err := store.MigrateFS(ctx, st.Pool, fsys, "m", false)
		require.NoError(t, err)
		require.Equal(t, []string{"0001_t.sql"}, res.Applied)
		require.Equal(t, "50ms", show(t, ctx, st, "statement_timeout"), "the connection has its session's timeout back")
	})
	t.Run("concurrently", func(t *testing.T) {
		t.Parallel()
		ctx, schema, st, admin := timeoutStore(t, options)
		fsys := fstest.MapFS{
			// slow takes 10 ms a row: the index below takes at least 200 ms to build.
			"m/0001_t.sql": {Data: []byte(`CREATE TABLE t (a int);
INSERT INTO t SELECT g FROM generate_series(1, 20) g;
CREATE FUNCTION slow(a int) RETURNS int IMMUTABLE LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_sleep(0.01); RETURN a; END $$;
`)},
			"m/0002_idx.sql": {Data: []byte(`-- intake:no-transaction
DROP INDEX CONCURRENTLY IF EXISTS t_slow_idx;
CREATE INDEX CONCURRENTLY t_slow_idx ON t (slow(a));
`)},
		}
		res, err := store.MigrateFS(ctx, st.Pool, fsys, "m", false)
		require.NoError(t, err)
		require.Equal(t, []string{"0001_t.sql", "0002_idx.sql"}, res.Applied)
		require.Zero(t, invalidIndexes(t, ctx, admin, schema))
		var valid bool
		require.NoError(t, admin.QueryRow(ctx, "SELECT indisvalid FROM pg_index WHERE indexrelid = 't_slow_idx'::regclass").Scan(&valid))
		require.True(t, valid)
		require.Equal(t, "50ms", show(t, ctx, st, "statement_timeout"), "the connection has its session's timeout back")
	})
	t.Run("embedded", func(t *testing.T) {
		t.Parallel()
		ctx, schema, st, admin := timeoutStore(t, options)
		ms, err := store.Migrations()
		require.NoError(t, err)
		applied, err := store.Migrate(ctx, st.Pool)
		require.NoError(t, err)
		require.Len(t, applied, len(ms))
		require.Zero(t, invalidIndexes(t, ctx, admin, schema))
		require.Equal(t, "50ms", show(t, ctx, st, "statement_timeout"))
	})
}

// TestConcurrentIndexIgnoresSessionLockTimeout: a CREATE INDEX CONCURRENTLY runs without a
// lock_timeout also when DATABASE_URL sets one: it blocks no reads or writes while it waits, but
// waits for every older snapshot (here one of a transaction on another table), which a
// lock_timeout would fail (before, the statement's RESET lock_timeout gave it the URL's). The
// connection goes back to the pool with the URL's lock_timeout.
func TestConcurrentIndexIgnoresSessionLockTimeout(t *testing.T) {
	t.Parallel()
	ctx, _, st, admin := timeoutStore(t, "-c lock_timeout=100ms")
	fsys := fstest.MapFS{
		"m/0001_t.sql":   {Data: []byte("CREATE TABLE t (a int);\nCREATE TABLE other (a int);\nINSERT INTO t SELECT g FROM generate_series(1, 1000) g;")},
		"m/0002_idx.sql": {Data: []byte("-- intake:no-transaction\nDROP INDEX CONCURRENTLY IF EXISTS t_a_idx;\nCREATE INDEX CONCURRENTLY t_a_idx ON t (a);")},
	}
	fsys1 := fstest.MapFS{"m/0001_t.sql": fsys["m/0001_t.sql"]}
	_, err := store.MigrateFS(ctx, st.Pool, fsys1, "m", false)
	require.NoError(t, err)

	// An old snapshot, on another table: the build waits for it to end.
	blocker, err := admin.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead})
	require.NoError(t, err)
	t.Cleanup(func() { _ = blocker.Rollback(context.Background()) })
	_, err = blocker.Exec(ctx, "SELECT count(*) FROM other")
	require.NoError(t, err)

	type result struct {
		res store.UpgradeResult
		err error
	}
	done := make(chan result, 1)
	go func() {
		runCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		// One run: a lock timeout is not retried into success after the blocker ends.
		res, err := store.MigrateFSLocks(runCtx, st.Pool, fsys, "m", store.MigrationLockTimeout, 1, time.Millisecond)
		done <- result{res, err}
	}()
	watch, err := pgx.Connect(ctx, testkit.DatabaseURL())
	require.NoError(t, err)
	t.Cleanup(func() { _ = watch.Close(context.Background()) })
	app := st.Pool.Config().ConnConfig.RuntimeParams["application_name"]
	blocked := func() bool {
		var n int
		require.NoError(t, watch.QueryRow(ctx,
			"SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 AND wait_event_type = 'Lock'", app).Scan(&n))
		return n > 0
	}
	for !blocked() {
		select {
		case r := <-done:
			t.Fatalf("the build ended before waiting for the old snapshot: %v", r.err)
		case <-time.After(5 * time.Millisecond):
		}
	}
	select {
	case r := <-done:
		t.Fatalf("the build gave up waiting for the old snapshot: %v", r.err)
	case <-time.After(500 * time.Millisecond): // five of the URL's lock timeouts
	}
	require.NoError(t, blocker.Commit(ctx))

	r := <-done
	require.NoError(t, r.err)
	require.Equal(t, []string{"0002_idx.sql"}, r.res.Applied)
	var valid bool
	require.NoError(t, admin.QueryRow(ctx, "SELECT indisvalid FROM pg_index WHERE indexrelid = 't_a_idx'::regclass").Scan(&valid))
	require.True(t, valid)
	require.Equal(t, "100ms", show(t, ctx, st, "lock_timeout"), "the connection has its session's lock_timeout back")
}
