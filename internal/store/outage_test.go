package store_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/intakehq/intake/internal/store"
	"github.com/intakehq/intake/internal/store/dbq"
	"github.com/intakehq/intake/internal/testkit"
	"github.com/intakehq/intake/pipeline"
)

// outageBundle is a migrated schema, an admin pool on it (the "other client" that holds locks and
// terminates backends), and helpers to open more stores on it with session settings.
type outageBundle struct {
	ctx    context.Context
	schema string
	admin  *store.Store
}

func setupOutage(t *testing.T) *outageBundle {
	t.Helper()
	r := setupRecords(t)
	return &outageBundle{ctx: r.ctx, schema: r.st.Pool.Config().ConnConfig.RuntimeParams["search_path"], admin: r.st}
}

// open returns a store on the bundle's schema whose sessions run with params (SET at connect).
func (b *outageBundle) open(t *testing.T, params map[string]string) *store.Store {
	t.Helper()
	return openOn(t, testkit.DatabaseURL(), b.schema, params)
}

func openOn(t *testing.T, url, schema string, params map[string]string) *store.Store {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(url)
	require.NoError(t, err)
	if schema != "" {
		cfg.ConnConfig.RuntimeParams["search_path"] = schema
	}
	for k, v := range params {
		cfg.ConnConfig.RuntimeParams[k] = v
	}
	cfg.MaxConns = 4
	st, err := store.OpenConfig(context.Background(), cfg)
	require.NoError(t, err)
	t.Cleanup(st.Close)
	return st
}

// lockRow inserts the row of key (committed) and returns a transaction of the admin pool that
// holds its lock; the test ends it.
func (b *outageBundle) lockRow(t *testing.T, key string) pgx.Tx {
	t.Helper()
	_, err := store.NewRecords(b.admin).Record(b.ctx, state(key, seqKey("01"), time.Time{}, "e1"))
	require.NoError(t, err)
	tx, err := b.admin.Pool.Begin(b.ctx)
	require.NoError(t, err)
	t.Cleanup(func() { _ = tx.Rollback(context.Background()) })
	_, err = tx.Exec(b.ctx, "UPDATE objects SET updated_at = now() WHERE bucket = 'b' AND key = $1", key)
	require.NoError(t, err)
	return tx
}

// waitBlocked waits until a backend of application app waits for a lock.
func (b *outageBundle) waitBlocked(t *testing.T, app string) {
	t.Helper()
	require.Eventually(t, func() bool {
		var n int
		require.NoError(t, b.admin.Pool.QueryRow(b.ctx,
			"SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 AND wait_event_type = 'Lock'", app).Scan(&n))
		return n > 0
	}, 20*time.Second, 10*time.Millisecond, "the statement of %s did not block on the lock", app)
}

// requirePostgresOutage checks that err is an outage of PostgreSQL carrying the server's code.
func requirePostgresOutage(t *testing.T, err error, codes ...string) {
	t.Helper()
	require.ErrorIs(t, err, pipeline.ErrUnavailable)
	require.Equal(t, pipeline.DependencyPostgres, pipeline.UnavailableDependency(err), "%v", err)
	if len(codes) == 0 {
		return
	}
	var pgErr *pgconn.PgError
	require.ErrorAs(t, err, &pgErr, "%v", err)
	require.Contains(t, codes, pgErr.Code, "%v", err)
}

// TestOutageClassificationRealServer induces each fault an operator meets on the real server and
// checks that the record store reports it as an outage of PostgreSQL (the consumer pauses and checks
// the database) rather than a failure of the message.
func TestOutageClassificationRealServer(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		fault func(t *testing.T, b *outageBundle) error // induces the fault, returns Record's error
		codes []string                                  // SQLSTATEs accepted ("" list: a connection error)
	}{
		{
			name: "statement_timeout (57014) while a lock is held",
			fault: func(t *testing.T, b *outageBundle) error {
				b.lockRow(t, "k")
				st := b.open(t, map[string]string{"statement_timeout": "200ms"})
				_, err := store.NewRecords(st).Record(b.ctx, state("k", seqKey("02"), time.Time{}, "e2"))
				return err
			},
			codes: []string{"57014"},
		},
		{
			name: "lock_timeout (55P03) while a lock is held",
			fault: func(t *testing.T, b *outageBundle) error {
				b.lockRow(t, "k")
				st := b.open(t, map[string]string{"lock_timeout": "200ms"})
				_, err := store.NewRecords(st).Record(b.ctx, state("k", seqKey("02"), time.Time{}, "e2"))
				return err
			},
			codes: []string{"55P03"},
		},
		{
			name: "pg_terminate_backend (57P01) of a busy connection",
			fault: func(t *testing.T, b *outageBundle) error {
				b.lockRow(t, "k")
				app := testkit.Name("wp1-term-")
				st := b.open(t, map[string]string{"application_name": app})
				errc := make(chan error, 1)
				go func() {
					_, err := store.NewRecords(st).Record(b.ctx, state("k", seqKey("02"), time.Time{}, "e2"))
					errc <- err
				}()
				b.waitBlocked(t, app)
				var n int
				require.NoError(t, b.admin.Pool.QueryRow(b.ctx,
					"SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1", app).Scan(&n))
				require.Equal(t, 1, n)
				return <-errc
			},
			codes: nil, // 57P01, or the lost connection when pgx reads the close first
		},
		{
			name: "read-only transaction (25006): a session set read-only, as after a failover",
			fault: func(t *testing.T, b *outageBundle) error {
				st := b.open(t, map[string]string{"default_transaction_read_only": "on"})
				require.ErrorIs(t, st.CheckWritable(b.ctx), store.ErrReadOnly, "the consumer's check sees it too")
				_, err := store.NewRecords(st).Record(b.ctx, state("k", seqKey("02"), time.Time{}, "e2"))
				return err
			},
			codes: []string{"25006"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setupOutage(t)
			err := tt.fault(t, b)
			requirePostgresOutage(t, err, tt.codes...)
		})
	}
}

// TestReadOnlyDatabase sets a database of its own read-only (ALTER DATABASE ... SET
// default_transaction_read_only, what a failover to a standby looks like to a new session): records
// fail as a PostgreSQL outage and CheckWritable fails, until the database is writable again.
func TestReadOnlyDatabase(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("needs PostgreSQL")
	}
	ctx := testkit.Context(t)
	admin := openOn(t, testkit.DatabaseURL(), "", nil)
	db := testkit.Name("wp1_ro_")
	_, err := admin.Pool.Exec(ctx, "CREATE DATABASE "+db)
	require.NoError(t, err)
	t.Cleanup(func() {
		_, err := admin.Pool.Exec(context.Background(), "DROP DATABASE IF EXISTS "+db+" WITH (FORCE)")
		require.NoError(t, err)
	})
	url := strings.Replace(testkit.DatabaseURL(), "/intake_test", "/"+db, 1)
	require.NotEqual(t, testkit.DatabaseURL(), url)

	writable := openOn(t, url, "", nil)
	_, err = store.Migrate(ctx, writable.Pool)
	require.NoError(t, err)
	require.NoError(t, writable.CheckWritable(ctx))

	setReadOnly := func(on bool) {
		_, err := admin.Pool.Exec(ctx, fmt.Sprintf("ALTER DATABASE %s SET default_transaction_read_only = %t", db, on))
		require.NoError(t, err)
	}
	setReadOnly(true)
	ro := openOn(t, url, "", nil) // new sessions see the setting
	require.ErrorIs(t, ro.CheckWritable(ctx), store.ErrReadOnly)
	for _, rs := range []*store.Records{store.NewRecords(ro), store.NewBatchedRecords(ro, store.BatchOptions{})} {
		_, err = rs.Record(ctx, state("k", seqKey("01"), time.Time{}, "e1"))
		requirePostgresOutage(t, err, "25006")
		rs.Close()
	}

	setReadOnly(false)
	rw := openOn(t, url, "", nil)
	require.NoError(t, rw.CheckWritable(ctx))
	_, err = store.NewRecords(rw).Record(ctx, state("k", seqKey("01"), time.Time{}, "e1"))
	require.NoError(t, err)
}

// TestDeadlockRetriedInPlace makes the records' transaction lose a real deadlock against another
// client: it is run again at once in the store and succeeds, instead of failing the message.
func TestDeadlockRetriedInPlace(t *testing.T) {
	t.Parallel()
	b := setupOutage(t)
	for _, k := range []string{"k1", "k2"} {
		_, err := store.NewRecords(b.admin).Record(b.ctx, state(k, seqKey("01"), time.Time{}, "e1"))
		require.NoError(t, err)
	}
	// The other client holds k2 and detects deadlocks late: our side detects it and is the victim.
	other, err := b.admin.Pool.Begin(b.ctx)
	require.NoError(t, err)
	t.Cleanup(func() { _ = other.Rollback(context.Background()) })
	_, err = other.Exec(b.ctx, "SET LOCAL deadlock_timeout = '20s'")
	require.NoError(t, err)
	_, err = other.Exec(b.ctx, "UPDATE objects SET updated_at = now() WHERE bucket = 'b' AND key = 'k2'")
	require.NoError(t, err)

	// PostgreSQL looks for a deadlock once per wait, deadlock_timeout after the wait starts: ours
	// must look after the other client has asked for k1 (which it does as soon as our wait is seen),
	// or it finds no cycle, never looks again, and the other client is the victim 20 s later. 1 s
	// leaves room for a slow machine (the race detector); a few ms did not.
	app := testkit.Name("wp1-dl-")
	st := b.open(t, map[string]string{"application_name": app, "deadlock_timeout": "1s"})
	rs := store.NewRecords(st)
	done := make(chan error, 1)
	go func() {
		// One transaction: k1 (locked), then k2 (waits for the other client).
		_, err := rs.WriteRecords(b.ctx, []pipeline.Record{state("k1", seqKey("02"), time.Time{}, "e2"), state("k2", seqKey("02"), time.Time{}, "e2")})
		done <- err
	}()
	b.waitBlocked(t, app)
	// The other client now wants k1: a deadlock, which our session detects 1 s into its wait.
	_, err = other.Exec(b.ctx, "UPDATE objects SET updated_at = now() WHERE bucket = 'b' AND key = 'k1'")
	require.NoError(t, err, "the other client got k1: our transaction was the deadlock's victim")
	require.NoError(t, other.Commit(b.ctx))

	require.NoError(t, <-done, "the deadlock was retried in place")
	for _, k := range []string{"k1", "k2"} {
		var etag string
		require.NoError(t, b.admin.Pool.QueryRow(b.ctx, "SELECT etag FROM objects WHERE bucket = 'b' AND key = $1", k).Scan(&etag))
		require.Equal(t, "e2", etag, k)
	}
}

// A conflict that persists is returned, not turned into an outage.
func TestConflictIsNotAnOutage(t *testing.T) {
	t.Parallel()
	for _, code := range []string{"40001", "40P01"} {
		err := fmt.Errorf("record: %w", &pgconn.PgError{Code: code})
		require.False(t, store.Unavailable(err), code)
		require.False(t, errors.Is(err, pipeline.ErrUnavailable), code)
	}
}

// TestConnectRefusedIsAnOutage: a server that answers but refuses the connection (wrong password,
// no such role, pg_hba, no such database, no CONNECT privilege: 28P01, 28000, 3D000, 42501) is an
// outage of PostgreSQL like one that does not answer, for the unbatched and the batched record
// store: the consumer pauses instead of spending a receive of every message until it is
// dead-lettered.
func TestConnectRefusedIsAnOutage(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("needs PostgreSQL")
	}
	for _, tc := range []struct {
		name  string
		set   func(cfg *pgxpool.Config)
		codes []string
	}{
		{"no such role", func(cfg *pgxpool.Config) { cfg.ConnConfig.User = "intake_no_such_role" }, []string{"28000", "28P01"}},
		{"no such database", func(cfg *pgxpool.Config) { cfg.ConnConfig.Database = "intake_no_such_db" }, []string{"3D000"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := testkit.Context(t)
			cfg, err := pgxpool.ParseConfig(testkit.DatabaseURL())
			require.NoError(t, err)
			tc.set(cfg)
			cfg.ConnConfig.ConnectTimeout = 5 * time.Second
			pool, err := pgxpool.NewWithConfig(ctx, cfg) // connects lazily
			require.NoError(t, err)
			t.Cleanup(pool.Close)
			st := &store.Store{Pool: pool, Q: dbq.New(pool)}
			batched := store.NewBatchedRecords(st, store.BatchOptions{})
			t.Cleanup(batched.Close)
			for _, rs := range []*store.Records{store.NewRecords(st), batched} {
				_, err = rs.Lookup(ctx, "b", "k")
				requirePostgresOutage(t, err, tc.codes...)
				_, err = rs.Record(ctx, pipeline.Record{Bucket: "b", Key: "k", Status: pipeline.StatusDeleted})
				requirePostgresOutage(t, err, tc.codes...)
			}
		})
	}
}
