package store

import (
	"cmp"
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
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
//
// Even a bounded wait stops the table's reads and writes for MigrationLockTimeout, on every run,
// and again when the next replica's `migrate up` gets the advisory lock. So before each run of a
// migration (and, outside a transaction, before each of its statements without CONCURRENTLY)
// Migrate looks, without queueing for any lock, for other sessions whose transaction is older
// than MigrationLockTimeout and holds a lock on a relation of the schema (an idle-in-transaction
// session that read a table, a long report, a pg_dump). While there are any, it does not run the
// migration's DDL: it waits for them to end, looking again every second, for as long as its runs
// and backoffs could have taken (40 s), naming them on the log (see [WithMigrationLog]), and then
// fails with [ErrMigrationLockTimeout] naming them (pid, age of the transaction, state, query), so
// that the operator knows what to end, without having stalled anybody. The lock_timeout still
// bounds a wait behind a younger transaction.
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

// migrateOptions are the lock waits of a migration run (tests shorten them) and where it reports
// what it waits for.
type migrateOptions struct {
	lockTimeout  time.Duration
	lockAttempts int
	lockBackoff  time.Duration
	// log is where waits are reported (see [WithMigrationLog]); nil discards them.
	log *slog.Logger
	// blockerAge is how old a transaction holding a lock on the schema must be for a migration to
	// wait it out rather than run (0: lockTimeout). Tests of the lock timeout's own path raise it,
	// so that no transaction of theirs is waited out however slowly the machine runs.
	blockerAge time.Duration
}

var defaultMigrateOptions = migrateOptions{
	lockTimeout: MigrationLockTimeout, lockAttempts: MigrationLockAttempts, lockBackoff: migrationLockBackoff,
}

// MigrateOption configures [Migrate] and [Upgrade].
type MigrateOption func(*migrateOptions)

// WithMigrationLog makes [Migrate] and [Upgrade] report on log, at level WARN, what they wait
// for: the session holding the schema's advisory lock (another replica migrating, or the orphaned
// session of a killed migrator), at once and then every 30 s; and the long transactions holding
// locks on the schema's tables that keep a migration from running (see [MigrationLockTimeout]),
// at once, when they change, and then every 10 s. Without it nothing is logged (the errors still
// name what was waited for).
func WithMigrationLog(log *slog.Logger) MigrateOption {
	return func(o *migrateOptions) { o.log = log }
}

func (o migrateOptions) with(opts []MigrateOption) migrateOptions {
	for _, opt := range opts {
		opt(&o)
	}
	return o
}

func (o migrateOptions) logger() *slog.Logger {
	if o.log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return o.log
}

// lockBudget is how long a migration may wait in all for its locks: the lock timeouts of its runs
// and the backoffs between them at their longest (with the defaults 5 × 5 s + 1 + 2 + 4 + 8 s =
// 40 s). A migration held back by long transactions (see [MigrationLockTimeout]) waits for them
// that long at most.
func (o migrateOptions) lockBudget() time.Duration {
	d := time.Duration(max(o.lockAttempts, 1)) * o.lockTimeout
	for i, b := 1, o.lockBackoff; i < o.lockAttempts && d < 24*time.Hour; i, b = i+1, 2*b {
		d += b
	}
	return d
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
// looks at public: use [Upgrade] to also move a pre-schema install. Pass [WithMigrationLog] to have
// what it waits for logged.
func Migrate(ctx context.Context, pool *pgxpool.Pool, opts ...MigrateOption) ([]string, error) {
	ms, err := Migrations()
	if err != nil {
		return nil, err
	}
	res, err := migrate(ctx, pool, ms, false, defaultMigrateOptions.with(opts))
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
// application's tables in public stay where they are. Pass [WithMigrationLog] to have what it waits
// for logged.
func Upgrade(ctx context.Context, pool *pgxpool.Pool, opts ...MigrateOption) (UpgradeResult, error) {
	ms, err := Migrations()
	if err != nil {
		return UpgradeResult{}, err
	}
	return migrate(ctx, pool, ms, true, defaultMigrateOptions.with(opts))
}

func migrate(ctx context.Context, pool *pgxpool.Pool, ms []Migration, adopt bool, opts migrateOptions) (UpgradeResult, error) {
	schema, err := SchemaOf(pool.Config())
	if err != nil {
		return UpgradeResult{}, err
	}
	res := UpgradeResult{Schema: schema}
	// advisoryLock, also called by moveLegacy, finds the log in ctx.
	ctx = context.WithValue(ctx, migrationLogKey{}, opts.logger())
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
	unlock, err := advisoryLock(ctx, conn.Conn(), schemaTryLock, schemaUnlock, migrationLockClass, schema)
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
		if err := applyRetrying(ctx, conn, schema, m, opts); err != nil {
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

// sessionRestored are the settings withoutTimeouts changes and gives back.
const sessionRestored = "('statement_timeout', 'transaction_timeout', 'client_connection_check_interval')"

// migrationConnectionCheck is the migration session's client_connection_check_interval
// (PostgreSQL 14): how often a running statement checks that the migrator is still connected.
const migrationConnectionCheck = 5 * time.Second

// withoutTimeouts turns off the connection's statement_timeout (and transaction_timeout) for the
// migration run, and returns what gives the connection its session's own values back before it
// returns to the pool. A timeout set in DATABASE_URL (options=-c statement_timeout=…), for the role
// or for the database, which suits the service's queries, would otherwise cancel a migration that
// takes longer (57014): a transactional one rolls back, and an index built CONCURRENTLY is left
// INVALID; either fails again on every run, and the rollout never finishes. Waits for locks stay
// bounded by lock_timeout (see [MigrationLockTimeout]). It also sets client_connection_check_interval
// to migrationConnectionCheck: a statement whose client is gone (a migrator killed during a CREATE
// INDEX CONCURRENTLY of an hour, its pod deleted) then ends within seconds, and its session with
// it, releasing the schema's advisory lock; without it the statement runs on to its end and
// the session holds the lock for that long, while the next migrator waits for it. A server that
// does not know the setting (before PostgreSQL 14) or cannot check on its platform is left as it
// is. A connection whose settings cannot be given back is closed (the pool drops it).
func withoutTimeouts(ctx context.Context, conn *pgx.Conn) (func(), error) {
	// statement_timeout first, on its own: the statement reading pg_settings could itself outlast a
	// very short one.
	if _, err := conn.Exec(ctx, "SET statement_timeout = 0"); err != nil {
		return nil, fmt.Errorf("migrate: turn off statement_timeout: %w", err)
	}
	restore := func() {
		resetCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if _, err := conn.Exec(resetCtx, "SELECT set_config(name, reset_val, false) FROM pg_settings WHERE name IN "+sessionRestored); err != nil {
			_ = conn.Close(resetCtx)
		}
	}
	if _, err := conn.Exec(ctx, "SELECT set_config(name, '0', false) FROM pg_settings WHERE name IN "+sessionTimeouts); err != nil {
		restore()
		return nil, fmt.Errorf("migrate: turn off transaction_timeout: %w", err)
	}
	var pgErr *pgconn.PgError
	set := fmt.Sprintf("SET client_connection_check_interval = %d", migrationConnectionCheck.Milliseconds())
	if _, err := conn.Exec(ctx, set); err != nil && !errors.As(err, &pgErr) {
		// A PgError is an unknown setting (42704) or a platform that cannot check (22023): the
		// migration runs without the check. Anything else is the connection failing.
		restore()
		return nil, fmt.Errorf("migrate: set client_connection_check_interval: %w", err)
	}
	return restore, nil
}

// How the schema's advisory lock (migrationLockClass, hashtext(schema)) is taken and released.
const (
	schemaTryLock = "SELECT pg_try_advisory_lock($1, hashtext($2))"
	schemaUnlock  = "SELECT pg_advisory_unlock($1, hashtext($2))"
)

// advisoryKind describes the lock an advisoryLock call's tryLock takes, for finding and naming its
// holder.
type advisoryKind struct {
	// held is a condition on pg_locks (as l) that matches the lock, with tryLock's arguments: a
	// lock on two int4 keys shows as classid = the first, objid = the second, objsubid = 2; one on
	// an int8 key as classid = its high 32 bits, objid = its low 32 bits, objsubid = 1.
	held string
	// name names the lock, from tryLock's arguments.
	name func(args []any) string
}

// advisoryKinds are the locks advisoryLock takes, by tryLock: the schema's, and (moveLegacy's)
// the one of binaries from before schemas.
var advisoryKinds = map[string]advisoryKind{
	schemaTryLock: {
		held: "l.classid = $1::integer::oid AND l.objid = hashtext($2)::oid AND l.objsubid = 2",
		name: func(args []any) string { return fmt.Sprintf("the migration lock of schema %v", args[1]) },
	},
	"SELECT pg_try_advisory_lock($1)": {
		held: "l.classid = ($1::bigint >> 32)::oid AND l.objid = ($1::bigint & 4294967295)::oid AND l.objsubid = 1",
		name: func([]any) string { return "the migration lock of releases from before schemas" },
	},
}

// advisoryLogEvery is how often a wait for an advisory lock logs its holder again.
const advisoryLogEvery = 30 * time.Second

// migrationLogKey is the context key of the log migrate passes to advisoryLock.
type migrationLogKey struct{}

// migrationLog is the log migrate put in ctx, or one that discards.
func migrationLog(ctx context.Context) *slog.Logger {
	if log, ok := ctx.Value(migrationLogKey{}).(*slog.Logger); ok {
		return log
	}
	return slog.New(slog.DiscardHandler)
}

// lockHolder is a session holding an advisory lock, as pg_stat_activity shows it.
type lockHolder struct {
	pid      uint32
	app      string
	state    string
	client   string
	queryAge time.Duration
	query    string
}

func (h lockHolder) String() string {
	return fmt.Sprintf("pid %d (application %q, client %s, state %s, its last query started %s ago: %q)",
		h.pid, h.app, h.client, h.state, h.queryAge, h.query)
}

// advisoryHolders returns the sessions holding the advisory lock tryLock takes with args (at most
// one: the locks are exclusive). It reads pg_locks and pg_stat_activity, taking no lock.
func advisoryHolders(ctx context.Context, conn *pgx.Conn, tryLock string, args ...any) ([]lockHolder, error) {
	kind, ok := advisoryKinds[tryLock]
	if !ok {
		return nil, fmt.Errorf("no holder query for %q", tryLock)
	}
	rows, err := conn.Query(ctx, `SELECT a.pid::bigint, coalesce(a.application_name, ''), coalesce(a.state, ''),
       coalesce(host(a.client_addr), 'local'),
       coalesce(extract(epoch FROM clock_timestamp() - a.query_start), 0)::float8, coalesce(a.query, '')
FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'advisory' AND l.granted
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND `+kind.held+`
ORDER BY a.pid`, args...)
	if err != nil {
		return nil, err
	}
	var out []lockHolder
	var h lockHolder
	var pid int64
	var age float64
	_, err = pgx.ForEachRow(rows, []any{&pid, &h.app, &h.state, &h.client, &age, &h.query}, func() error {
		h.pid, h.queryAge, h.query = uint32(pid), seconds(age), shortQuery(h.query)
		out = append(out, h)
		return nil
	})
	return out, err
}

// seconds is s seconds, to the tenth.
func seconds(s float64) time.Duration {
	return time.Duration(s * float64(time.Second)).Round(100 * time.Millisecond)
}

// shortQuery is q on one line, cut to its first 100 characters.
func shortQuery(q string) string {
	q = strings.Join(strings.Fields(q), " ")
	if r := []rune(q); len(r) > 100 {
		q = string(r[:100]) + "…"
	}
	return q
}

// advisoryLock takes a session advisory lock with tryLock (a pg_try_advisory_lock call, one of
// advisoryKinds), polling until it is granted or ctx ends, and returns its release, which runs
// even when ctx has been cancelled. It polls rather than block in pg_advisory_lock: a replica
// blocked in that call holds a snapshot for as long as it waits, and CREATE INDEX CONCURRENTLY, run
// by the replica holding the lock, waits for every snapshot older than its build, so PostgreSQL
// would report a deadlock. While it waits it logs, on the log of ctx (see [WithMigrationLog]), who
// holds the lock: at the first refusal, then every advisoryLogEvery.
func advisoryLock(ctx context.Context, conn *pgx.Conn, tryLock, unlock string, args ...any) (func(), error) {
	log := migrationLog(ctx)
	start := time.Now()
	var logged time.Time
	var holders []lockHolder
	for wait := 20 * time.Millisecond; ; wait = min(2*wait, time.Second) {
		var got bool
		if err := conn.QueryRow(ctx, tryLock, args...).Scan(&got); err != nil {
			return nil, fmt.Errorf("migrate: take advisory lock: %w", err)
		}
		if got {
			break
		}
		if logged.IsZero() || time.Since(logged) >= advisoryLogEvery {
			logged = time.Now()
			holders = logHolders(ctx, log, conn, time.Since(start), tryLock, args)
		}
		select {
		case <-ctx.Done():
			held := ""
			if len(holders) > 0 {
				held = ", held by " + holders[0].String()
			}
			return nil, fmt.Errorf("migrate: wait for advisory lock (another replica is migrating%s): %w", held, ctx.Err())
		case <-time.After(wait):
		}
	}
	return func() {
		unlockCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_, _ = conn.Exec(unlockCtx, unlock, args...)
	}, nil
}

// logHolders logs who holds the advisory lock advisoryLock waits for, and returns them.
func logHolders(ctx context.Context, log *slog.Logger, conn *pgx.Conn, waited time.Duration, tryLock string, args []any) []lockHolder {
	const msg = "migrate: waiting for an advisory lock held by another session: another replica migrating " +
		"(it ends by itself), or, when no migration is running, the orphaned session of a killed migrator " +
		"(end it: SELECT pg_terminate_backend(pid))"
	name := tryLock
	if kind, ok := advisoryKinds[tryLock]; ok {
		name = kind.name(args)
	}
	holders, err := advisoryHolders(ctx, conn, tryLock, args...)
	switch {
	case err != nil:
		log.Warn(msg, "lock", name, "waited", waited.Round(time.Second), "holder_error", err.Error())
	case len(holders) == 0: // released since: the next try takes it
		log.Warn(msg, "lock", name, "waited", waited.Round(time.Second), "pid", "unknown (it was just released)")
	}
	for _, h := range holders {
		log.Warn(msg, "lock", name, "waited", waited.Round(time.Second), "pid", h.pid,
			"application_name", h.app, "client_addr", h.client, "state", h.state,
			"query_age", h.queryAge, "query", h.query)
	}
	return holders
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
// its [MigrationLockAttempts] runs, or when long transactions holding locks on the schema's tables
// did not end within the time those runs could have taken (the error then names them, and the
// migration was not run meanwhile).
var ErrMigrationLockTimeout = errors.New("lock not granted in time")

// lockNotAvailable reports whether err is 55P03 (lock_not_available: lock_timeout expired).
func lockNotAvailable(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "55P03"
}

// applyRetrying runs apply, again after a jittered, doubling backoff when a lock was not granted
// within opts.lockTimeout, up to opts.lockAttempts runs; the last such failure wraps
// ErrMigrationLockTimeout. Before each run (and each statement without CONCURRENTLY of a
// no-transaction migration) it waits while long transactions hold locks on schema's tables, for
// opts.lockBudget() in all (see [MigrationLockTimeout]).
func applyRetrying(ctx context.Context, conn *pgxpool.Conn, schema string, m Migration, opts migrateOptions) error {
	w := &blockerWait{conn: conn.Conn(), schema: schema, migration: m.Name, opts: opts, start: time.Now()}
	w.deadline = w.start.Add(opts.lockBudget())
	return retryLocks(ctx, opts, "the migration changes", func() error {
		err := apply(ctx, conn.Conn(), m, opts.lockTimeout, w)
		if lockNotAvailable(err) {
			w.lastLockErr = err
		}
		return err
	})
}

// blockerPoll is how often a migration held back by long transactions looks for them again.
const blockerPoll = time.Second

// blockerLogEvery is how often the same long transactions are logged again.
const blockerLogEvery = 10 * time.Second

// blocker is a transaction older than the lock timeout that holds a lock on a relation of the
// migration's schema: a statement such as ALTER TABLE would queue behind it, and the table's reads
// and writes behind the statement.
type blocker struct {
	pid       uint32
	xactAge   time.Duration
	state     string
	app       string
	relations []string
	query     string
}

func (b blocker) String() string {
	return fmt.Sprintf("pid %d (transaction %s old, state %s, application %q, holding a lock on %s, query %q)",
		b.pid, b.xactAge, b.state, b.app, strings.Join(b.relations, ", "), b.query)
}

// findBlockers returns the other sessions whose transaction is older than lockTimeout and holds a
// granted lock on a relation of schema, oldest first. It reads pg_locks, pg_class and
// pg_stat_activity, and queues for no lock. An autovacuum worker is left out (it cancels itself
// when a lock it holds is waited for), unless it runs to prevent wraparound (it does not).
func findBlockers(ctx context.Context, conn *pgx.Conn, schema string, lockTimeout time.Duration) ([]blocker, error) {
	rows, err := conn.Query(ctx, `SELECT a.pid::bigint,
       extract(epoch FROM clock_timestamp() - a.xact_start)::float8,
       coalesce(a.state, ''), coalesce(a.application_name, ''),
       array_agg(DISTINCT c.relname::text ORDER BY c.relname::text), coalesce(a.query, '')
FROM pg_locks l
JOIN pg_class c ON c.oid = l.relation
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'relation' AND l.granted
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND n.nspname = $1
  AND a.pid <> pg_backend_pid()
  AND a.xact_start < clock_timestamp() - make_interval(secs => $2)
  AND NOT (a.backend_type = 'autovacuum worker' AND a.query NOT LIKE '%to prevent wraparound%')
GROUP BY a.pid, a.xact_start, a.state, a.application_name, a.query
ORDER BY a.xact_start, a.pid`, schema, lockTimeout.Seconds())
	if err != nil {
		return nil, fmt.Errorf("look for long transactions holding locks on schema %s: %w", schema, err)
	}
	var out []blocker
	var b blocker
	var pid int64
	var age float64
	_, err = pgx.ForEachRow(rows, []any{&pid, &age, &b.state, &b.app, &b.relations, &b.query}, func() error {
		b.pid, b.xactAge, b.query = uint32(pid), seconds(age), shortQuery(b.query)
		out = append(out, b)
		b.relations = nil
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("look for long transactions holding locks on schema %s: %w", schema, err)
	}
	return out, nil
}

// blockerWait holds a migration back while long transactions hold locks on its schema's tables
// (see [MigrationLockTimeout]), until deadline, the same for all of its runs (moved on by the time
// its statements ran, see worked).
type blockerWait struct {
	conn      *pgx.Conn
	schema    string
	migration string
	opts      migrateOptions
	start     time.Time
	deadline  time.Time
	// lastLockErr is the last run's lock timeout (55P03), wrapped by wait's error.
	lastLockErr error
}

// wait returns once no blocker is found, or an error wrapping ErrMigrationLockTimeout naming the
// blockers when they are still there at w.deadline. It logs them when first seen, when they
// change, and every blockerLogEvery.
func (w *blockerWait) wait(ctx context.Context) error {
	const msg = "migrate: a long transaction holds a lock on a table of the schema: the migration waits for it to end " +
		"before running (its DDL would queue behind it, and the table's reads and writes behind the DDL)"
	log := w.opts.logger()
	var logged time.Time
	var loggedPids string
	for {
		bs, err := findBlockers(ctx, w.conn, w.schema, cmp.Or(w.opts.blockerAge, w.opts.lockTimeout))
		if err != nil {
			return fmt.Errorf("migrate: %w", err)
		}
		if len(bs) == 0 {
			return nil
		}
		left := time.Until(w.deadline)
		if left <= 0 {
			return w.giveUp(bs)
		}
		pids := fmt.Sprint(pidsOf(bs))
		if pids != loggedPids || time.Since(logged) >= blockerLogEvery {
			logged, loggedPids = time.Now(), pids
			for _, b := range bs {
				log.Warn(msg, "schema", w.schema, "migration", w.migration, "pid", b.pid, "xact_age", b.xactAge,
					"state", b.state, "application_name", b.app, "relations", b.relations, "query", b.query,
					"waited", time.Since(w.start).Round(100*time.Millisecond), "gives_up_in", left.Round(100*time.Millisecond))
			}
		}
		t := time.NewTimer(min(blockerPoll, left))
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("migrate: wait for long transactions holding locks on schema %s to end (%s): %w", w.schema, describeBlockers(bs), ctx.Err())
		}
	}
}

// worked takes d, the time a statement of a no-transaction migration ran (a CREATE INDEX
// CONCURRENTLY may take an hour), out of the wait's budget: the budget is for waiting.
func (w *blockerWait) worked(d time.Duration) {
	w.start, w.deadline = w.start.Add(d), w.deadline.Add(d)
}

// giveUp is wait's error once its time is spent.
func (w *blockerWait) giveUp(bs []blocker) error {
	err := fmt.Errorf("%w: waited %s for %d transaction(s) older than %s holding locks on tables of schema %s, without running the migration (its DDL would have queued behind them, and their tables' reads and writes behind it): %s; end them (SELECT pg_terminate_backend(pid)) or let them finish, and migrate again",
		ErrMigrationLockTimeout, time.Since(w.start).Round(100*time.Millisecond), len(bs), w.opts.lockTimeout, w.schema, describeBlockers(bs))
	if w.lastLockErr != nil {
		err = fmt.Errorf("%w (last run: %w)", err, w.lastLockErr)
	}
	return err
}

func describeBlockers(bs []blocker) string {
	s := make([]string, len(bs))
	for i, b := range bs {
		s[i] = b.String()
	}
	return strings.Join(s, "; ")
}

func pidsOf(bs []blocker) []uint32 {
	pids := make([]uint32, len(bs))
	for i, b := range bs {
		pids[i] = b.pid
	}
	return pids
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
		if err == nil || !lockNotAvailable(err) || errors.Is(err, ErrMigrationLockTimeout) {
			return err // an ErrMigrationLockTimeout of run's own is final
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
// milliseconds; 0 means no bound. Before the transaction, and outside one before each statement
// without CONCURRENTLY, blockers.wait holds it back while long transactions hold locks on the
// schema's tables.
func apply(ctx context.Context, conn *pgx.Conn, m Migration, lockTimeout time.Duration, blockers *blockerWait) error {
	const record = "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)"
	ms := lockTimeout.Milliseconds()
	if !m.NoTransaction {
		if err := blockers.wait(ctx); err != nil {
			return err
		}
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
		} else if err := blockers.wait(ctx); err != nil {
			return fmt.Errorf("%.60q: %w", stmt, err)
		}
		if _, err := conn.Exec(ctx, set); err != nil {
			return err
		}
		began := time.Now()
		if _, err := conn.Exec(ctx, stmt); err != nil {
			return fmt.Errorf("%.60q: %w", stmt, err)
		}
		blockers.worked(time.Since(began))
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
