package store

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

//go:embed migrations/*.sql
var migrationFS embed.FS

// Advisory locks that serialise migrations. A schema's migrations take the two-key lock
// (migrationLockClass, hashtext(schema)), so replicas migrating one schema wait for each other while
// different schemas (tests) migrate in parallel. Moving a pre-schema install out of public also
// takes migrationLockID, the lock binaries from before schemas took around every migration.
const (
	migrationLockID    int64 = 0x696e74616b65 // "intake" in ASCII
	migrationLockClass int32 = 0x696e74       // "int"
)

// How a migration waits for the locks of the tables it changes. A statement such as ALTER TABLE
// queues for its lock behind any long transaction on the table, and while it waits every later
// read and write of the table queues behind it: a migration that waited without bound could stop
// the service. So each migration runs with lock_timeout = MigrationLockTimeout; when a lock is not
// granted in time (55P03, lock_not_available) the migration is rolled back, the tables are free
// again, and it is retried after a backoff, MigrationLockAttempts runs in all, before Migrate fails.
const (
	// MigrationLockTimeout bounds each wait for a lock, so also how long a migration can hold up
	// the queries of a table it waits for.
	MigrationLockTimeout = 5 * time.Second
	// MigrationLockAttempts is how many times a migration is run when a lock is not granted in
	// time, the first run included.
	MigrationLockAttempts = 5
	// migrationLockBackoff is the pause before the second run; it doubles, with jitter.
	migrationLockBackoff = time.Second
)

// migrateOptions are the lock waits of a migration run (tests shorten them).
type migrateOptions struct {
	lockTimeout  time.Duration
	lockAttempts int
	lockBackoff  time.Duration
}

var defaultMigrateOptions = migrateOptions{
	lockTimeout: MigrationLockTimeout, lockAttempts: MigrationLockAttempts, lockBackoff: migrationLockBackoff,
}

// NoTransactionHeader, on a line of its own in a migration's leading comments, makes the migration
// run outside a transaction: needed for CREATE INDEX CONCURRENTLY, which builds an index on a large
// table without blocking writes. Such a migration may only create, drop, alter or rebuild indexes;
// its statements run one at a time, so write each to be re-runnable (DROP INDEX CONCURRENTLY IF
// EXISTS x; CREATE INDEX CONCURRENTLY x …): a failed concurrent build leaves an invalid index behind,
// and the migration runs again from its first statement (also when a lock was not granted in time,
// see [MigrationLockTimeout]). Its statements run with the session's lock_timeout set to
// MigrationLockTimeout, except those with CONCURRENTLY, which run without one (also without one
// set in DATABASE_URL or for the role): they block no reads or writes while they wait, but they
// wait for every older snapshot in the database, whatever table its transaction reads, so a
// lock_timeout would fail them on any long transaction. No migration runs with a statement_timeout
// (see withoutTimeouts).
const NoTransactionHeader = "-- intake:no-transaction"

// Migration is one numbered schema change.
type Migration struct {
	// Version is the number the file name starts with.
	Version int
	// Name is the file name.
	Name string
	// SQL is the file's content.
	SQL string
	// NoTransaction is true when the file carries [NoTransactionHeader].
	NoTransaction bool
}

// MigrationStatus tells whether a migration has been applied, and when.
type MigrationStatus struct {
	Migration
	// AppliedAt is nil when the migration is pending.
	AppliedAt *time.Time
}

// Migrations returns the embedded migrations in order.
func Migrations() ([]Migration, error) { return parseMigrations(migrationFS, "migrations") }

// indexOnly matches the statements a no-transaction migration may hold.
var indexOnly = regexp.MustCompile(`(?is)^(create\s+(unique\s+)?index|drop\s+index|alter\s+index|reindex)\s`)

func parseMigrations(fsys fs.FS, dir string) ([]Migration, error) {
	entries, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return nil, fmt.Errorf("read embedded migrations: %w", err)
	}
	var ms []Migration
	for _, e := range entries {
		num, _, ok := strings.Cut(e.Name(), "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v <= 0 {
			return nil, fmt.Errorf("migration %q: name must start with a positive number and '_'", e.Name())
		}
		body, err := fs.ReadFile(fsys, path.Join(dir, e.Name()))
		if err != nil {
			return nil, fmt.Errorf("read migration %s: %w", e.Name(), err)
		}
		m := Migration{Version: v, Name: e.Name(), SQL: string(body), NoTransaction: hasNoTransactionHeader(string(body))}
		if m.NoTransaction {
			for _, stmt := range splitStatements(m.SQL) {
				if !indexOnly.MatchString(stmt) {
					return nil, fmt.Errorf("migration %s runs outside a transaction and may only create, drop, alter or rebuild indexes: %.60q", m.Name, stmt)
				}
			}
		}
		ms = append(ms, m)
	}
	slices.SortFunc(ms, func(a, b Migration) int { return a.Version - b.Version })
	for i := 1; i < len(ms); i++ {
		if ms[i].Version == ms[i-1].Version {
			return nil, fmt.Errorf("migrations %s and %s share version %d", ms[i-1].Name, ms[i].Name, ms[i].Version)
		}
	}
	return ms, nil
}

// hasNoTransactionHeader reports whether the leading comment lines of sql hold NoTransactionHeader.
func hasNoTransactionHeader(sql string) bool {
	for line := range strings.Lines(sql) {
		line = strings.TrimSpace(line)
		switch {
		case line == NoTransactionHeader:
			return true
		case line == "" || strings.HasPrefix(line, "--"):
			continue
		default:
			return false
		}
	}
	return false
}

const createMigrationsTable = `CREATE TABLE IF NOT EXISTS schema_migrations (
    version    integer     PRIMARY KEY,
    name       text        NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)`

// UpgradeResult says what [Upgrade] did.
type UpgradeResult struct {
	// Schema holds intake's tables.
	Schema string
	// Moved names the objects moved from public into Schema ("table uploads", "function f()"),
	// empty unless a pre-schema install was found there.
	Moved []string
	// Applied names the migrations applied, in order.
	Applied []string
}

// Migrate applies every pending migration to the pool's schema (see [SchemaOf]), creating the
// schema when it does not exist, and returns the names it applied. It holds the schema's advisory
// lock for the whole run, so concurrent callers wait and then find nothing left to do. It never
// looks at public: use [Upgrade] to also move a pre-schema install.
func Migrate(ctx context.Context, pool *pgxpool.Pool) ([]string, error) {
	ms, err := Migrations()
	if err != nil {
		return nil, err
	}
	res, err := migrate(ctx, pool, ms, false, defaultMigrateOptions)
	return res.Applied, err
}

// Upgrade is [Migrate] for `intake migrate` and INTAKE_MIGRATE: before applying migrations, when
// the pool's schema holds no intake tables yet while public holds a pre-schema install (intake's
// schema_migrations, starting with 0001_init.sql), it moves that install's tables, functions and
// types into the schema with ALTER … SET SCHEMA, in one transaction, under the schema's advisory
// lock and the lock of older binaries. Each ALTER needs its object's ACCESS EXCLUSIVE lock, and
// waits for it at most [MigrationLockTimeout] (a replica still running an older release may hold
// a transaction on public's tables, and every query of a table queues behind the ALTER waiting for
// it); the move is then rolled back and retried like a migration, up to [MigrationLockAttempts]
// runs, before Upgrade fails with [ErrMigrationLockTimeout]. Nothing is copied; rows, indexes,
// constraints, identity sequences and triggers move with their tables. Which objects are intake's is found by applying
// the migrations recorded in public.schema_migrations to a scratch schema inside the same
// transaction (then dropped): only objects those migrations create are moved, so another
// application's tables in public stay where they are.
func Upgrade(ctx context.Context, pool *pgxpool.Pool) (UpgradeResult, error) {
	ms, err := Migrations()
	if err != nil {
		return UpgradeResult{}, err
	}
	return migrate(ctx, pool, ms, true, defaultMigrateOptions)
}

func migrate(ctx context.Context, pool *pgxpool.Pool, ms []Migration, adopt bool, opts migrateOptions) (UpgradeResult, error) {
	schema, err := SchemaOf(pool.Config())
	if err != nil {
		return UpgradeResult{}, err
	}
	res := UpgradeResult{Schema: schema}
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return res, fmt.Errorf("migrate: acquire connection: %w", err)
	}
	defer conn.Release()
	restore, err := withoutTimeouts(ctx, conn.Conn())
	if err != nil {
		return res, err
	}
	defer restore()
	if done, err := upToDate(ctx, conn.Conn(), schema, ms); err != nil || done {
		return res, err
	}
	unlock, err := advisoryLock(ctx, conn.Conn(), "SELECT pg_try_advisory_lock($1, hashtext($2))", "SELECT pg_advisory_unlock($1, hashtext($2))", migrationLockClass, schema)
	if err != nil {
		return res, err
	}
	defer unlock()
	if err := ensureSchema(ctx, conn.Conn(), schema); err != nil {
		return res, err
	}
	if adopt && schema != "public" {
		legacy, err := legacyLayout(ctx, conn.Conn(), schema)
		if err != nil {
			return res, err
		}
		if legacy {
			if res.Moved, err = moveLegacy(ctx, conn.Conn(), schema, ms, opts); err != nil {
				return res, err
			}
		}
	}
	if _, err := conn.Exec(ctx, createMigrationsTable); err != nil {
		return res, fmt.Errorf("migrate: create schema_migrations: %w", err)
	}
	applied, err := appliedVersions(ctx, conn.Conn())
	if err != nil {
		return res, err
	}
	for _, m := range ms {
		if _, ok := applied[m.Version]; ok {
			continue
		}
		if err := applyRetrying(ctx, conn, m, opts); err != nil {
			return res, fmt.Errorf("migrate: apply %s: %w", m.Name, err)
		}
		res.Applied = append(res.Applied, m.Name)
	}
	return res, nil
}

// upToDate reports, without taking the schema's advisory lock, whether schema's own
// schema_migrations records every one of ms. A replica whose migrations are all applied then has
// nothing to wait for: while an operator runs the next release's long migration (an index built
// over a large table) under the lock, the running release's new pods (a scale-out, an evicted pod)
// would otherwise wait in their `migrate up` until it ends. A version is recorded once its
// migration is complete (a no-transaction one records it last), and migrations are only added, so
// what is recorded stays applied. The table is read qualified by schema: an unqualified read could
// find a pre-schema install's public.schema_migrations, which Upgrade must move under the lock.
func upToDate(ctx context.Context, conn *pgx.Conn, schema string, ms []Migration) (bool, error) {
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT to_regclass(format('%I.schema_migrations', $1::text)) IS NOT NULL", schema).Scan(&exists); err != nil {
		return false, fmt.Errorf("migrate: look for schema_migrations: %w", err)
	}
	if !exists {
		return false, nil
	}
	rows, err := conn.Query(ctx, "SELECT version FROM "+pgx.Identifier{schema, "schema_migrations"}.Sanitize())
	if err != nil {
		return false, fmt.Errorf("migrate: read schema_migrations: %w", err)
	}
	versions, err := pgx.CollectRows(rows, pgx.RowTo[int])
	if err != nil {
		return false, fmt.Errorf("migrate: read schema_migrations: %w", err)
	}
	recorded := make(map[int]bool, len(versions))
	for _, v := range versions {
		recorded[v] = true
	}
	for _, m := range ms {
		if !recorded[m.Version] {
			return false, nil
		}
	}
	return true, nil
}

// sessionTimeouts are the settings that would end a migration that runs long: statement_timeout,
// and transaction_timeout where the server has it (PostgreSQL 17).
const sessionTimeouts = "('statement_timeout', 'transaction_timeout')"

// withoutTimeouts turns off the connection's statement_timeout (and transaction_timeout) for the
// migration run, and returns what gives the connection its session's own values back before it
// returns to the pool. A timeout set in DATABASE_URL (options=-c statement_timeout=…), for the role
// or for the database, which suits the service's queries, would otherwise cancel a migration that
// takes longer (57014): a transactional one rolls back, and an index built CONCURRENTLY is left
// INVALID; either fails again on every run, and the rollout never finishes. Waits for locks stay
// bounded by lock_timeout (see [MigrationLockTimeout]). A connection whose settings cannot be given
// back is closed (the pool drops it).
func withoutTimeouts(ctx context.Context, conn *pgx.Conn) (func(), error) {
	// statement_timeout first, on its own: the statement reading pg_settings could itself outlast a
	// very short one.
	if _, err := conn.Exec(ctx, "SET statement_timeout = 0"); err != nil {
		return nil, fmt.Errorf("migrate: turn off statement_timeout: %w", err)
	}
	restore := func() {
		resetCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if _, err := conn.Exec(resetCtx, "SELECT set_config(name, reset_val, false) FROM pg_settings WHERE name IN "+sessionTimeouts); err != nil {
			_ = conn.Close(resetCtx)
		}
	}
	if _, err := conn.Exec(ctx, "SELECT set_config(name, '0', false) FROM pg_settings WHERE name IN "+sessionTimeouts); err != nil {
		restore()
		return nil, fmt.Errorf("migrate: turn off transaction_timeout: %w", err)
	}
	return restore, nil
}

// advisoryLock takes a session advisory lock with tryLock (a pg_try_advisory_lock call), polling
// until it is granted or ctx ends, and returns its release, which runs even when ctx has been
// cancelled. It polls rather than block in pg_advisory_lock: a replica blocked in that call holds a
// snapshot for as long as it waits, and CREATE INDEX CONCURRENTLY, run by the replica holding the
// lock, waits for every snapshot older than its build, so PostgreSQL would report a deadlock.
func advisoryLock(ctx context.Context, conn *pgx.Conn, tryLock, unlock string, args ...any) (func(), error) {
	for wait := 20 * time.Millisecond; ; wait = min(2*wait, time.Second) {
		var got bool
		if err := conn.QueryRow(ctx, tryLock, args...).Scan(&got); err != nil {
			return nil, fmt.Errorf("migrate: take advisory lock: %w", err)
		}
		if got {
			break
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("migrate: wait for advisory lock (another replica is migrating): %w", ctx.Err())
		case <-time.After(wait):
		}
	}
	return func() {
		unlockCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_, _ = conn.Exec(unlockCtx, unlock, args...)
	}, nil
}

// ensureSchema creates schema unless it exists (so that a database user without CREATE on the
// database can use a schema an administrator created for it).
func ensureSchema(ctx context.Context, conn *pgx.Conn, schema string) error {
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)", schema).Scan(&exists); err != nil {
		return fmt.Errorf("migrate: look up schema %s: %w", schema, err)
	}
	if exists {
		return nil
	}
	if _, err := conn.Exec(ctx, "CREATE SCHEMA IF NOT EXISTS "+pgx.Identifier{schema}.Sanitize()); err != nil {
		return fmt.Errorf("migrate: create schema %s (or have an administrator create it for intake's user): %w", schema, err)
	}
	return nil
}

// ErrMigrationLockTimeout is wrapped by Migrate and Upgrade when a migration (or Upgrade's move of
// a pre-schema install) could not get the locks it needs within [MigrationLockTimeout] in any of
// its [MigrationLockAttempts] runs.
var ErrMigrationLockTimeout = errors.New("lock not granted in time")

// lockNotAvailable reports whether err is 55P03 (lock_not_available: lock_timeout expired).
func lockNotAvailable(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "55P03"
}

// applyRetrying runs apply, again after a jittered, doubling backoff when a lock was not granted
// within opts.lockTimeout, up to opts.lockAttempts runs; the last such failure wraps
// ErrMigrationLockTimeout.
func applyRetrying(ctx context.Context, conn *pgxpool.Conn, m Migration, opts migrateOptions) error {
	return retryLocks(ctx, opts, "the migration changes", func() error { return apply(ctx, conn.Conn(), m, opts.lockTimeout) })
}

// retryLocks runs run, a whole transaction (or a migration run outside one) whose waits for locks
// are bounded by opts.lockTimeout, again after a jittered, doubling backoff when a lock was not
// granted in time, up to opts.lockAttempts runs; the last such failure wraps
// ErrMigrationLockTimeout. what completes "a long transaction holds a lock on a table …" in that
// error.
func retryLocks(ctx context.Context, opts migrateOptions, what string, run func() error) error {
	backoff := opts.lockBackoff
	for attempt := 1; ; attempt++ {
		err := run()
		if err == nil || !lockNotAvailable(err) {
			return err
		}
		if attempt >= opts.lockAttempts {
			return fmt.Errorf("%w: %d run(s), each waiting at most %s for a lock (a long transaction holds a lock on a table %s: find it in pg_stat_activity and pg_locks, end it, and migrate again): %w",
				ErrMigrationLockTimeout, attempt, opts.lockTimeout, what, err)
		}
		t := time.NewTimer(backoff/2 + rand.N(backoff/2+1))
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%w (waiting to retry: %w)", err, ctx.Err())
		}
		backoff *= 2
	}
}

// concurrently matches a statement that runs CONCURRENTLY.
var concurrently = regexp.MustCompile(`(?i)\bconcurrently\b`)

// apply runs one migration and records it: in one transaction, or statement by statement when the
// migration must run outside one. Waits for locks are bounded by lockTimeout: SET LOCAL in the
// transaction; outside one, the session's setting around each statement, none for those with
// CONCURRENTLY (see [NoTransactionHeader]), reset before returning. lockTimeout is in whole
// milliseconds; 0 means no bound.
func apply(ctx context.Context, conn *pgx.Conn, m Migration, lockTimeout time.Duration) error {
	const record = "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)"
	ms := lockTimeout.Milliseconds()
	if !m.NoTransaction {
		return pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, fmt.Sprintf("SET LOCAL lock_timeout = %d", ms)); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, m.SQL); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, record, m.Version, m.Name)
			return err
		})
	}
	defer func() {
		// The connection goes back to the pool: leave no lock_timeout on it. A connection that
		// cannot be reset is closed, and the pool drops it.
		resetCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if _, err := conn.Exec(resetCtx, "RESET lock_timeout"); err != nil {
			_ = conn.Close(resetCtx)
		}
	}()
	for _, stmt := range splitStatements(m.SQL) {
		set := fmt.Sprintf("SET lock_timeout = %d", ms)
		if concurrently.MatchString(stmt) {
			// Not RESET: that would give it the session's own lock_timeout, one set in
			// DATABASE_URL or for the role.
			set = "SET lock_timeout = 0"
		}
		if _, err := conn.Exec(ctx, set); err != nil {
			return err
		}
		if _, err := conn.Exec(ctx, stmt); err != nil {
			return fmt.Errorf("%.60q: %w", stmt, err)
		}
	}
	_, err := conn.Exec(ctx, record, m.Version, m.Name)
	return err
}

// Status lists every embedded migration with the time it was applied to the pool's schema, if it
// was.
func Status(ctx context.Context, pool *pgxpool.Pool) ([]MigrationStatus, error) {
	ms, err := Migrations()
	if err != nil {
		return nil, err
	}
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("migration status: acquire connection: %w", err)
	}
	defer conn.Release()
	applied, err := appliedVersions(ctx, conn.Conn())
	if err != nil {
		return nil, err
	}
	out := make([]MigrationStatus, 0, len(ms))
	for _, m := range ms {
		st := MigrationStatus{Migration: m}
		if at, ok := applied[m.Version]; ok {
			st.AppliedAt = &at
		}
		out = append(out, st)
	}
	return out, nil
}

func appliedVersions(ctx context.Context, conn *pgx.Conn) (map[int]time.Time, error) {
	applied := map[int]time.Time{}
	rows, err := conn.Query(ctx, "SELECT version, applied_at FROM schema_migrations")
	if err != nil {
		var pgErr interface{ SQLState() string }
		if errors.As(err, &pgErr) && pgErr.SQLState() == "42P01" { // undefined_table: nothing applied yet
			return applied, nil
		}
		return nil, fmt.Errorf("read schema_migrations: %w", err)
	}
	var v int
	var at time.Time
	_, err = pgx.ForEachRow(rows, []any{&v, &at}, func() error {
		applied[v] = at
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read schema_migrations: %w", err)
	}
	return applied, nil
}

// splitStatements splits SQL into its statements at semicolons outside comments, quoted strings,
// quoted identifiers and dollar-quoted bodies. Empty statements (comments only) are dropped.
func splitStatements(sql string) []string {
	var out []string
	start := 0
	flush := func(end int) {
		if stmt := strings.TrimSpace(stripComments(sql[start:end])); stmt != "" {
			out = append(out, stmt)
		}
		start = end + 1
	}
	for i := 0; i < len(sql); i++ {
		switch c := sql[i]; {
		case c == '-' && strings.HasPrefix(sql[i:], "--"):
			if j := strings.IndexByte(sql[i:], '\n'); j >= 0 {
				i += j
			} else {
				i = len(sql)
			}
		case c == '/' && strings.HasPrefix(sql[i:], "/*"):
			if j := strings.Index(sql[i+2:], "*/"); j >= 0 {
				i += j + 3
			} else {
				i = len(sql)
			}
		case c == '\'' || c == '"':
			for i++; i < len(sql) && sql[i] != c; i++ {
			}
		case c == '$':
			tag := dollarTag(sql[i:])
			if tag == "" {
				continue
			}
			if j := strings.Index(sql[i+len(tag):], tag); j >= 0 {
				i += len(tag) + j + len(tag) - 1
			} else {
				i = len(sql)
			}
		case c == ';':
			flush(i)
		}
	}
	if start < len(sql) {
		flush(len(sql))
	}
	return out
}

// dollarTag returns the dollar-quote opening s starts with ("$$", "$body$"), or "".
func dollarTag(s string) string {
	for j := 1; j < len(s); j++ {
		c := s[j]
		switch {
		case c == '$':
			return s[:j+1]
		case c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || j > 1 && c >= '0' && c <= '9':
		default:
			return ""
		}
	}
	return ""
}

// stripComments removes whole-line "--" comments, so that a statement's first word is its verb.
func stripComments(stmt string) string {
	var b strings.Builder
	for line := range strings.Lines(stmt) {
		if strings.HasPrefix(strings.TrimSpace(line), "--") {
			continue
		}
		b.WriteString(line)
	}
	return b.String()
}
