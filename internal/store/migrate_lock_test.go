package store_test

import (
	"context"
	"testing"
	"testing/fstest"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/intakehq/intake/internal/store"
	"github.com/intakehq/intake/internal/testkit"
)

// lockBundle is a throwaway schema holding table t (1,000 rows, migrated by 0001_t.sql), a store on
// it whose pool has one connection (so the migration's connection is the one looked at afterwards),
// and the migrations fsys, to which a test adds its own.
type lockBundle struct {
	ctx    context.Context
	schema string
	st     *store.Store
	fsys   fstest.MapFS
}

func setupLockBundle(t *testing.T) *lockBundle {
	t.Helper()
	if testing.Short() {
		t.Skip("needs PostgreSQL")
	}
	ctx := testkit.Context(t)
	schema := testkit.Schema(t)
	cfg, err := pgxpool.ParseConfig(testkit.DatabaseURLFor(schema))
	require.NoError(t, err)
	cfg.MaxConns = 1
	cfg.ConnConfig.RuntimeParams["application_name"] = testkit.Name("migrate-lock-")
	st, err := store.OpenConfig(ctx, cfg)
	require.NoError(t, err)
	t.Cleanup(st.Close)
	b := &lockBundle{ctx: ctx, schema: schema, st: st, fsys: fstest.MapFS{
		"m/0001_t.sql": {Data: []byte("CREATE TABLE t (a int);\nINSERT INTO t SELECT g FROM generate_series(1, 1000) g;")},
	}}
	res, err := store.MigrateFS(ctx, st.Pool, b.fsys, "m", false)
	require.NoError(t, err)
	require.Equal(t, []string{"0001_t.sql"}, res.Applied)
	return b
}

// conn opens a connection of its own on the schema ("another client").
func (b *lockBundle) conn(t *testing.T) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(b.ctx, testkit.DatabaseURLFor(b.schema))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	return conn
}

// hold begins a transaction on a connection of its own and runs stmt in it; the test ends it.
func (b *lockBundle) hold(t *testing.T, stmt string) pgx.Tx {
	t.Helper()
	tx, err := b.conn(t).Begin(b.ctx)
	require.NoError(t, err)
	t.Cleanup(func() { _ = tx.Rollback(context.Background()) })
	_, err = tx.Exec(b.ctx, stmt)
	require.NoError(t, err)
	return tx
}

// waitMigrationBlocked waits until the store's connection waits for a lock.
func (b *lockBundle) waitMigrationBlocked(t *testing.T) {
	t.Helper()
	app := b.st.Pool.Config().ConnConfig.RuntimeParams["application_name"]
	admin := b.conn(t)
	require.Eventually(t, func() bool {
		var n int
		require.NoError(t, admin.QueryRow(b.ctx,
			"SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 AND wait_event_type = 'Lock'", app).Scan(&n))
		return n > 0
	}, 20*time.Second, 5*time.Millisecond, "the migration did not wait for a lock")
}

type migrateResult struct {
	res     store.UpgradeResult
	err     error
	elapsed time.Duration
}

// migrate runs the bundle's migrations in the background with the given lock waits, bounded by
// 15 s (a migration that waits without bound fails the test instead of hanging it).
func (b *lockBundle) migrate(lockTimeout time.Duration, attempts int, backoff time.Duration) <-chan migrateResult {
	done := make(chan migrateResult, 1)
	go func() {
		ctx, cancel := context.WithTimeout(b.ctx, 15*time.Second)
		defer cancel()
		start := time.Now()
		res, err := store.MigrateFSLocks(ctx, b.st.Pool, b.fsys, "m", lockTimeout, attempts, backoff)
		done <- migrateResult{res, err, time.Since(start)}
	}()
	return done
}

func (b *lockBundle) hasColumn(t *testing.T, column string) bool {
	t.Helper()
	var n int
	require.NoError(t, b.st.Pool.QueryRow(b.ctx,
		"SELECT count(*) FROM information_schema.columns WHERE table_schema = $1 AND table_name = 't' AND column_name = $2",
		b.schema, column).Scan(&n))
	return n == 1
}

// requireAddedX waits for the migration of done and checks that it applied 0002_x.sql, whose
// column x the table then has, and left no lock_timeout behind.
func (b *lockBundle) requireAddedX(t *testing.T, done <-chan migrateResult) {
	t.Helper()
	r := <-done
	require.NoError(t, r.err)
	require.Equal(t, []string{"0002_x.sql"}, r.res.Applied)
	require.True(t, b.hasColumn(t, "x"))
	b.requireNoLockTimeoutLeft(t)
}

// requireNoLockTimeoutLeft checks that the migration left no lock_timeout on the pool's (only)
// connection.
func (b *lockBundle) requireNoLockTimeoutLeft(t *testing.T) {
	t.Helper()
	var lt string
	require.NoError(t, b.st.Pool.QueryRow(b.ctx, "SHOW lock_timeout").Scan(&lt))
	require.Equal(t, "0", lt)
}

// TestMigrationLockTimeout: a migration whose ALTER TABLE waits behind a long transaction on the
// table gives up its place in the lock queue after the lock timeout (the table's reads, queued
// behind it, go on), is retried a bounded number of times, and then fails with
// ErrMigrationLockTimeout instead of holding up the table until the transaction ends.
func TestMigrationLockTimeout(t *testing.T) {
	t.Parallel()
	b := setupLockBundle(t)
	b.fsys["m/0002_x.sql"] = &fstest.MapFile{Data: []byte("ALTER TABLE t ADD COLUMN x int;")}
	b.hold(t, "SELECT 1 FROM t LIMIT 1") // ACCESS SHARE until the test ends

	const lockTimeout = 300 * time.Millisecond
	done := b.migrate(lockTimeout, 3, 100*time.Millisecond)
	b.waitMigrationBlocked(t)

	// A read of the table queues behind the ALTER's ACCESS EXCLUSIVE request: it waits at most
	// until the migration gives up its wait.
	readCtx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
	defer cancel()
	start := time.Now()
	var n int
	require.NoError(t, b.conn(t).QueryRow(readCtx, "SELECT count(*) FROM t").Scan(&n), "the read waited for the migration")
	require.Equal(t, 1000, n)
	require.Less(t, time.Since(start), lockTimeout+2*time.Second, "the read waited longer than the lock timeout")

	r := <-done
	require.ErrorIs(t, r.err, store.ErrMigrationLockTimeout)
	var pgErr *pgconn.PgError
	require.ErrorAs(t, r.err, &pgErr)
	require.Equal(t, "55P03", pgErr.Code)
	require.ErrorContains(t, r.err, "0002_x.sql")
	require.Less(t, r.elapsed, 5*time.Second, "3 waits of 300 ms and 2 backoffs")
	require.Empty(t, r.res.Applied)
	require.False(t, b.hasColumn(t, "x"))
	b.requireNoLockTimeoutLeft(t)
}

// TestMigrationLockTimeoutRetried: when the long transaction ends while the migration is still
// being retried, the migration succeeds.
func TestMigrationLockTimeoutRetried(t *testing.T) {
	t.Parallel()
	b := setupLockBundle(t)
	b.fsys["m/0002_x.sql"] = &fstest.MapFile{Data: []byte("ALTER TABLE t ADD COLUMN x int;")}
	blocker := b.hold(t, "SELECT 1 FROM t LIMIT 1")

	done := b.migrate(200*time.Millisecond, 20, 50*time.Millisecond)
	b.waitMigrationBlocked(t)
	time.Sleep(300 * time.Millisecond) // past the first lock timeout: the migration is being retried
	require.NoError(t, blocker.Commit(b.ctx))

	b.requireAddedX(t, done)
}

// TestNoTransactionMigrationLockTimeout: outside a transaction, a statement that blocks writes
// (a plain CREATE INDEX waits for SHARE behind an open write) runs under the session's
// lock_timeout, which is reset afterwards; a CREATE INDEX CONCURRENTLY does not (it blocks no
// reads or writes, but waits for every older snapshot, here one of a transaction on another table,
// which a lock_timeout would fail).
func TestNoTransactionMigrationLockTimeout(t *testing.T) {
	t.Parallel()
	t.Run("plain", func(t *testing.T) {
		t.Parallel()
		b := setupLockBundle(t)
		b.fsys["m/0002_idx.sql"] = &fstest.MapFile{Data: []byte("-- intake:no-transaction\nDROP INDEX IF EXISTS t_a_idx;\nCREATE INDEX t_a_idx ON t (a);")}
		b.hold(t, "UPDATE t SET a = a WHERE a = 1") // ROW EXCLUSIVE until the test ends

		r := <-b.migrate(300*time.Millisecond, 2, 100*time.Millisecond)
		require.ErrorIs(t, r.err, store.ErrMigrationLockTimeout)
		require.Less(t, r.elapsed, 5*time.Second)
		b.requireNoLockTimeoutLeft(t)
	})
	t.Run("concurrently", func(t *testing.T) {
		t.Parallel()
		b := setupLockBundle(t)
		_, err := b.st.Pool.Exec(b.ctx, "CREATE TABLE other (a int)")
		require.NoError(t, err)
		b.fsys["m/0002_idx.sql"] = &fstest.MapFile{Data: []byte("-- intake:no-transaction\nDROP INDEX CONCURRENTLY IF EXISTS t_a_idx;\nCREATE INDEX CONCURRENTLY t_a_idx ON t (a);")}
		// An old snapshot, on another table: the build waits for it to end.
		blocker, err := b.conn(t).BeginTx(b.ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead})
		require.NoError(t, err)
		t.Cleanup(func() { _ = blocker.Rollback(context.Background()) })
		_, err = blocker.Exec(b.ctx, "SELECT count(*) FROM other")
		require.NoError(t, err)

		done := b.migrate(100*time.Millisecond, 1, time.Millisecond)
		b.waitMigrationBlocked(t)
		time.Sleep(500 * time.Millisecond) // five lock timeouts
		require.NoError(t, blocker.Commit(b.ctx))

		r := <-done
		require.NoError(t, r.err)
		var valid bool
		require.NoError(t, b.st.Pool.QueryRow(b.ctx, "SELECT indisvalid FROM pg_index WHERE indexrelid = 't_a_idx'::regclass").Scan(&valid))
		require.True(t, valid)
		b.requireNoLockTimeoutLeft(t)
	})
}
