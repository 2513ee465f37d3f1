package store_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/intakehq/intake/internal/store"
	"github.com/intakehq/intake/internal/testkit"
)

// migrateLog is lockBundle.migrate with the run's waits logged to buf.
func (b *lockBundle) migrateLog(lockTimeout time.Duration, attempts int, backoff time.Duration, buf *testkit.SyncBuffer) <-chan migrateResult {
	done := make(chan migrateResult, 1)
	log := slog.New(slog.NewTextHandler(buf, nil))
	go func() {
		ctx, cancel := context.WithTimeout(b.ctx, 15*time.Second)
		defer cancel()
		start := time.Now()
		res, err := store.MigrateFSLog(ctx, b.st.Pool, b.fsys, "m", lockTimeout, attempts, backoff, log)
		done <- migrateResult{res, err, time.Since(start)}
	}()
	return done
}

// holdOld begins a transaction on a connection of its own, runs stmt in it, and returns once the
// transaction is older than age (a long transaction, as the migration sees it); the test ends it.
func (b *lockBundle) holdOld(t *testing.T, stmt string, age time.Duration) (pgx.Tx, uint32) {
	t.Helper()
	conn := b.conn(t)
	tx, err := conn.Begin(b.ctx)
	require.NoError(t, err)
	t.Cleanup(func() { _ = tx.Rollback(context.Background()) })
	_, err = tx.Exec(b.ctx, stmt)
	require.NoError(t, err)
	pid := conn.PgConn().PID()
	admin := b.conn(t)
	require.Eventually(t, func() bool {
		var old bool
		require.NoError(t, admin.QueryRow(b.ctx,
			"SELECT xact_start < clock_timestamp() - make_interval(secs => $2) FROM pg_stat_activity WHERE pid = $1",
			pid, age.Seconds()).Scan(&old))
		return old
	}, 10*time.Second, 20*time.Millisecond)
	return tx, pid
}

// insertWatch inserts into t from a connection of its own, one row after another, until stop
// returns, and counts the inserts that waited for a lock longer than wait: its session's
// lock_timeout, so an insert queued behind the migration's DDL fails with 55P03 (lock_not_available),
// whatever the machine's load (a slow insert that waits for no lock is not counted).
type insertWatch struct {
	stop    chan struct{}
	done    chan error
	inserts int
	stalled int
	longest time.Duration
}

func (b *lockBundle) watchInserts(t *testing.T, wait time.Duration) *insertWatch {
	t.Helper()
	conn := b.conn(t)
	_, err := conn.Exec(b.ctx, fmt.Sprintf("SET lock_timeout = %d", wait.Milliseconds()))
	require.NoError(t, err)
	w := &insertWatch{stop: make(chan struct{}), done: make(chan error, 1)}
	go func() {
		for {
			select {
			case <-w.stop:
				w.done <- nil
				return
			case <-time.After(2 * time.Millisecond):
			}
			ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
			start := time.Now()
			_, err := conn.Exec(ctx, "INSERT INTO t VALUES (0)")
			cancel()
			var pgErr *pgconn.PgError
			if errors.As(err, &pgErr) && pgErr.Code == "55P03" {
				w.stalled++ // queued for a lock past the session's lock_timeout
			} else if err != nil {
				w.done <- err
				return
			}
			w.inserts++
			w.longest = max(w.longest, time.Since(start))
		}
	}()
	return w
}

// end stops the inserts; the counts can be read afterwards.
func (w *insertWatch) end(t *testing.T) {
	t.Helper()
	close(w.stop)
	require.NoError(t, <-w.done)
}

// TestMigrationWaitsOutLongTransaction: a migration whose ALTER TABLE would queue behind a long
// transaction on its table (here idle in transaction after reading it) does not run while the
// transaction is there: the table's inserts go on, none waiting (before, each run of the migration
// queued for the lock timeout, and every insert queued behind it), and when the transaction is
// still there once the runs' time is spent, the migration fails with ErrMigrationLockTimeout naming
// the transaction's pid, state and query, on the log too. The DDL never ran: the error holds no
// lock timeout (55P03).
func TestMigrationWaitsOutLongTransaction(t *testing.T) {
	t.Parallel()
	b := setupLockBundle(t)
	b.fsys["m/0002_x.sql"] = &fstest.MapFile{Data: []byte("ALTER TABLE t ADD COLUMN x int;")}
	const lockTimeout = 1500 * time.Millisecond
	_, pid := b.holdOld(t, "SELECT 1 FROM t LIMIT 1", lockTimeout)

	// Below the migration's lock timeout: an insert queued behind the ALTER waits until the ALTER
	// gives up, up to the lock timeout, and so fails its own lock_timeout.
	const stall = 500 * time.Millisecond
	inserts := b.watchInserts(t, stall)
	var log testkit.SyncBuffer
	r := <-b.migrateLog(lockTimeout, 2, 100*time.Millisecond, &log)
	inserts.end(t)
	t.Logf("error: %v\nlog: %s", r.err, log.String())

	require.Positive(t, inserts.inserts)
	require.Zero(t, inserts.stalled, "%d of %d inserts waited for a lock longer than %s (the longest took %s): the migration stalled the table's writes",
		inserts.stalled, inserts.inserts, stall, inserts.longest)
	require.ErrorIs(t, r.err, store.ErrMigrationLockTimeout)
	require.ErrorContains(t, r.err, "0002_x.sql")
	require.ErrorContains(t, r.err, fmt.Sprintf("pid %d ", pid))
	require.ErrorContains(t, r.err, "state idle in transaction")
	require.ErrorContains(t, r.err, `"SELECT 1 FROM t LIMIT 1"`)
	var pgErr *pgconn.PgError
	require.False(t, errors.As(r.err, &pgErr), "the migration ran: %v", r.err)
	require.Empty(t, r.res.Applied)
	require.False(t, b.hasColumn(t, "x"))
	require.Contains(t, log.String(), fmt.Sprintf("pid=%d ", pid))
	require.Contains(t, log.String(), `query="SELECT 1 FROM t LIMIT 1"`)
	b.requireNoLockTimeoutLeft(t)
}

// TestMigrationRunsOnceLongTransactionEnds: a migration held back by a long transaction on its
// table logs it, and runs once it has ended.
func TestMigrationRunsOnceLongTransactionEnds(t *testing.T) {
	t.Parallel()
	b := setupLockBundle(t)
	b.fsys["m/0002_x.sql"] = &fstest.MapFile{Data: []byte("ALTER TABLE t ADD COLUMN x int;")}
	const lockTimeout = 500 * time.Millisecond
	blocker, pid := b.holdOld(t, "SELECT 1 FROM t LIMIT 1", lockTimeout)

	var log testkit.SyncBuffer
	done := b.migrateLog(lockTimeout, 5, time.Second, &log) // 2.5 s of lock timeouts, 15 s of backoffs: room for a slow machine
	require.Eventually(t, func() bool { return strings.Contains(log.String(), fmt.Sprintf("pid=%d ", pid)) },
		5*time.Second, 10*time.Millisecond, "the blocker was not logged: %s", log.String())
	require.Contains(t, log.String(), "level=WARN")
	require.Contains(t, log.String(), "state=\"idle in transaction\"")
	require.NoError(t, blocker.Commit(b.ctx))

	b.requireAddedX(t, done)
}

// TestNoTransactionMigrationWaitsOutLongTransaction: outside a transaction, a statement without
// CONCURRENTLY (a plain CREATE INDEX, which waits for SHARE behind an open write) is not run while
// a long transaction holds a lock on a table of the schema; the error names it.
func TestNoTransactionMigrationWaitsOutLongTransaction(t *testing.T) {
	t.Parallel()
	b := setupLockBundle(t)
	b.fsys["m/0002_idx.sql"] = &fstest.MapFile{Data: []byte("-- intake:no-transaction\nDROP INDEX IF EXISTS t_a_idx;\nCREATE INDEX t_a_idx ON t (a);")}
	const lockTimeout = 300 * time.Millisecond
	_, pid := b.holdOld(t, "UPDATE t SET a = a WHERE a = 1", lockTimeout) // ROW EXCLUSIVE until the test ends

	var log testkit.SyncBuffer
	r := <-b.migrateLog(lockTimeout, 2, 100*time.Millisecond, &log)
	require.ErrorIs(t, r.err, store.ErrMigrationLockTimeout)
	require.ErrorContains(t, r.err, fmt.Sprintf("pid %d ", pid))
	var pgErr *pgconn.PgError
	require.False(t, errors.As(r.err, &pgErr), "the migration ran: %v", r.err)
	b.requireNoLockTimeoutLeft(t)
}

// TestMigrationLogsAdvisoryLockHolder: `migrate up` waiting for the schema's advisory lock (another
// replica migrating, or the orphaned session of a killed migrator) logs who holds it: its pid and
// application_name. It migrates once the lock is released.
func TestMigrationLogsAdvisoryLockHolder(t *testing.T) {
	t.Parallel()
	b := setupLockBundle(t)
	b.fsys["m/0002_x.sql"] = &fstest.MapFile{Data: []byte("ALTER TABLE t ADD COLUMN x int;")}
	cfg, err := pgx.ParseConfig(testkit.DatabaseURLFor(b.schema))
	require.NoError(t, err)
	app := testkit.Name("lock-holder-")
	cfg.RuntimeParams["application_name"] = app
	holder, err := pgx.ConnectConfig(b.ctx, cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = holder.Close(context.Background()) })
	// The lock as Migrate takes it.
	_, err = holder.Exec(b.ctx, "SELECT pg_advisory_lock($1, hashtext($2))", store.MigrationLockClass, b.schema)
	require.NoError(t, err)

	var log testkit.SyncBuffer
	done := b.migrateLog(time.Second, 1, time.Millisecond, &log)
	pid := holder.PgConn().PID()
	require.Eventually(t, func() bool { return strings.Contains(log.String(), fmt.Sprintf("pid=%d ", pid)) },
		10*time.Second, 10*time.Millisecond, "the holder was not logged: %s", log.String())
	require.Contains(t, log.String(), "application_name="+app)
	require.Contains(t, log.String(), "lock=\"the migration lock of schema "+b.schema+"\"")
	select {
	case r := <-done:
		t.Fatalf("migrated while the lock was held: %v", r.err)
	default:
	}
	_, err = holder.Exec(b.ctx, "SELECT pg_advisory_unlock($1, hashtext($2))", store.MigrationLockClass, b.schema)
	require.NoError(t, err)

	r := <-done
	t.Logf("log: %s", log.String())
	require.NoError(t, r.err)
	require.Equal(t, []string{"0002_x.sql"}, r.res.Applied)
	require.Equal(t, 1, strings.Count(log.String(), "\n"), "logged once (then every 30 s): %s", log.String())
}

// TestAdvisoryLockHolders: the holder of each advisory lock migrations take (the schema's, and
// that of releases from before schemas) is found in pg_locks.
func TestAdvisoryLockHolders(t *testing.T) {
	t.Parallel()
	b := setupLockBundle(t)
	look := b.conn(t)
	for _, tc := range []struct {
		legacy       bool
		lock, unlock string
		args         []any
		perSchema    bool
	}{
		{false, "SELECT pg_try_advisory_lock($1, hashtext($2))", "SELECT pg_advisory_unlock($1, hashtext($2))", []any{store.MigrationLockClass, b.schema}, true},
		{true, "SELECT pg_try_advisory_lock($1)", "SELECT pg_advisory_unlock($1)", []any{store.MigrationLockID}, false},
	} {
		holder := b.conn(t)
		require.Eventually(t, func() bool { // the legacy lock is shared with other tests' Upgrade
			var got bool
			require.NoError(t, holder.QueryRow(b.ctx, tc.lock, tc.args...).Scan(&got))
			return got
		}, 10*time.Second, 10*time.Millisecond)
		pids, err := store.AdvisoryLockHolders(b.ctx, look, b.schema, tc.legacy)
		require.NoError(t, err)
		require.Equal(t, []uint32{holder.PgConn().PID()}, pids, "legacy %v", tc.legacy)
		if tc.perSchema {
			pids, err := store.AdvisoryLockHolders(b.ctx, look, b.schema+"_other", tc.legacy)
			require.NoError(t, err)
			require.Empty(t, pids, "another schema's lock")
		}
		_, err = holder.Exec(b.ctx, tc.unlock, tc.args...)
		require.NoError(t, err)
	}
}

// TestMigrationSessionChecksClientConnection: migrations run with client_connection_check_interval
// set (PostgreSQL 14), so that a statement whose migrator was killed (a CREATE INDEX CONCURRENTLY
// of an hour) ends, and its session with it, releasing the schema's advisory lock, instead of
// running on; the connection goes back to the pool with its own setting.
func TestMigrationSessionChecksClientConnection(t *testing.T) {
	t.Parallel()
	b := setupLockBundle(t)
	var version int
	require.NoError(t, b.st.Pool.QueryRow(b.ctx, "SELECT current_setting('server_version_num')::int").Scan(&version))
	if version < 140000 {
		t.Skip("client_connection_check_interval is PostgreSQL 14's")
	}
	b.fsys["m/0002_seen.sql"] = &fstest.MapFile{Data: []byte("CREATE TABLE seen AS SELECT current_setting('client_connection_check_interval') AS v;")}
	res, err := store.MigrateFS(b.ctx, b.st.Pool, b.fsys, "m", false)
	require.NoError(t, err)
	require.Equal(t, []string{"0002_seen.sql"}, res.Applied)
	var seen string
	require.NoError(t, b.st.Pool.QueryRow(b.ctx, "SELECT v FROM seen").Scan(&seen))
	require.Equal(t, "5s", seen)
	require.Equal(t, "0", show(t, b.ctx, b.st, "client_connection_check_interval"), "the connection has its session's setting back")
}
