package store

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// LegacyLayout reports whether the pool's schema holds no intake tables yet while public holds an
// install from before intake had its own schema: run [Upgrade] (`intake migrate`) to move it, or
// set INTAKE_DB_SCHEMA=public to keep it where it is. It is false when the schema is public.
func LegacyLayout(ctx context.Context, pool *pgxpool.Pool) (bool, error) {
	schema, err := SchemaOf(pool.Config())
	if err != nil || schema == "public" {
		return false, err
	}
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return false, fmt.Errorf("look for a pre-schema install: acquire connection: %w", err)
	}
	defer conn.Release()
	return legacyLayout(ctx, conn.Conn(), schema)
}

// legacyLayout: schema has no schema_migrations table, and public.schema_migrations is intake's
// (its columns, and version 1 is 0001_init.sql): another tool's schema_migrations table in public
// (golang-migrate, Rails, …) is not taken for intake's.
func legacyLayout(ctx context.Context, conn *pgx.Conn, schema string) (bool, error) {
	const q = `SELECT to_regclass(format('%I.schema_migrations', $1::text)) IS NULL
	   AND (SELECT count(*) FROM information_schema.columns
	        WHERE table_schema = 'public' AND table_name = 'schema_migrations'
	          AND column_name IN ('version', 'name', 'applied_at')) = 3`
	var candidate bool
	if err := conn.QueryRow(ctx, q, schema).Scan(&candidate); err != nil {
		return false, fmt.Errorf("look for a pre-schema install: %w", err)
	}
	if !candidate {
		return false, nil
	}
	var name string
	err := conn.QueryRow(ctx, "SELECT name FROM public.schema_migrations WHERE version = 1").Scan(&name)
	switch {
	case err == pgx.ErrNoRows:
		return false, nil
	case err != nil:
		return false, fmt.Errorf("look for a pre-schema install: read public.schema_migrations: %w", err)
	}
	return name == "0001_init.sql", nil
}

// object is a database object intake's migrations create, as ALTER … SET SCHEMA names it.
type object struct {
	kind string // TABLE, VIEW, MATERIALIZED VIEW, SEQUENCE, FOREIGN TABLE, ROUTINE, TYPE, DOMAIN
	name string // unqualified
	args string // a routine's identity arguments
}

func (o object) String() string {
	s := fmt.Sprintf("%s %s", lowerKind[o.kind], o.name)
	if o.kind == "ROUTINE" {
		s += "(" + o.args + ")"
	}
	return s
}

var lowerKind = map[string]string{
	"TABLE": "table", "VIEW": "view", "MATERIALIZED VIEW": "materialized view", "SEQUENCE": "sequence",
	"FOREIGN TABLE": "foreign table", "ROUTINE": "function", "TYPE": "type", "DOMAIN": "domain",
}

// objectsQuery lists the objects of a schema that ALTER … SET SCHEMA moves one by one: relations
// (not indexes, not sequences owned by a column: they move with their table), routines, and types
// that are not a table's row type or an array.
const objectsQuery = `
SELECT CASE c.relkind WHEN 'r' THEN 'TABLE' WHEN 'p' THEN 'TABLE' WHEN 'v' THEN 'VIEW'
                      WHEN 'm' THEN 'MATERIALIZED VIEW' WHEN 'S' THEN 'SEQUENCE' WHEN 'f' THEN 'FOREIGN TABLE' END,
       c.relname::text, ''
FROM pg_class c
WHERE c.relnamespace = $1::regnamespace
  AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
  AND NOT c.relispartition
  AND NOT (c.relkind = 'S' AND EXISTS (SELECT 1 FROM pg_depend d
                                       WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                                         AND d.deptype IN ('a', 'i')))
UNION ALL
SELECT 'ROUTINE', p.proname::text, pg_get_function_identity_arguments(p.oid)
FROM pg_proc p
WHERE p.pronamespace = $1::regnamespace
UNION ALL
SELECT CASE t.typtype WHEN 'd' THEN 'DOMAIN' ELSE 'TYPE' END, t.typname::text, ''
FROM pg_type t
WHERE t.typnamespace = $1::regnamespace
  AND t.typtype IN ('c', 'd', 'e', 'r')
  AND t.typcategory <> 'A'
  AND (t.typrelid = 0 OR (SELECT relkind FROM pg_class WHERE oid = t.typrelid) = 'c')`

// moveLegacy moves the pre-schema install in public into schema, in one transaction, holding the
// advisory lock of binaries from before schemas as well. It returns what it moved. Each wait for a
// lock is bounded by opts.lockTimeout (SET LOCAL lock_timeout), and the transaction is run again
// as applyRetrying runs a migration; the last lock timeout wraps ErrMigrationLockTimeout.
func moveLegacy(ctx context.Context, conn *pgx.Conn, schema string, ms []Migration, opts migrateOptions) ([]string, error) {
	unlock, err := advisoryLock(ctx, conn, "SELECT pg_try_advisory_lock($1)", "SELECT pg_advisory_unlock($1)", migrationLockID)
	if err != nil {
		return nil, err
	}
	defer unlock()
	var moved []string
	err = retryLocks(ctx, opts, "of the pre-schema install in public", func() error {
		moved = nil // a run that timed out moved nothing: it was rolled back
		return pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			return moveObjects(ctx, tx, schema, ms, opts.lockTimeout, &moved)
		})
	})
	if err != nil {
		return nil, fmt.Errorf("migrate: move intake's tables from public to %s: %w", schema, err)
	}
	return moved, nil
}

// moveObjects is moveLegacy's transaction: it appends what it moves to moved. lockTimeout is in
// whole milliseconds; 0 means no bound.
func moveObjects(ctx context.Context, tx pgx.Tx, schema string, ms []Migration, lockTimeout time.Duration, moved *[]string) error {
	if _, err := tx.Exec(ctx, fmt.Sprintf("SET LOCAL lock_timeout = %d", lockTimeout.Milliseconds())); err != nil {
		return fmt.Errorf("set lock_timeout: %w", err)
	}
	// Checked again under the old binaries' lock: one of them may have been migrating.
	if legacy, err := legacyLayout(ctx, tx.Conn(), schema); err != nil || !legacy {
		return err
	}
	objs, err := legacyObjects(ctx, tx, ms)
	if err != nil {
		return err
	}
	for _, o := range objs {
		exists, err := existsInPublic(ctx, tx, o)
		if err != nil {
			return err
		}
		if !exists {
			continue // created by a migration this install never applied
		}
		if _, err := tx.Exec(ctx, alterSetSchema(o, schema)); err != nil {
			return fmt.Errorf("move %s from public to %s: %w", o, schema, err)
		}
		*moved = append(*moved, o.String())
	}
	return nil
}

// legacyObjects applies the migrations public.schema_migrations records to a scratch schema (inside
// tx, dropped before returning) and lists what they created, plus schema_migrations itself.
// Migrations that run outside a transaction only touch indexes, which move with their tables: they
// are skipped.
func legacyObjects(ctx context.Context, tx pgx.Tx, ms []Migration) ([]object, error) {
	rows, err := tx.Query(ctx, "SELECT version FROM public.schema_migrations")
	if err != nil {
		return nil, fmt.Errorf("read public.schema_migrations: %w", err)
	}
	versions, err := pgx.CollectRows(rows, pgx.RowTo[int])
	if err != nil {
		return nil, fmt.Errorf("read public.schema_migrations: %w", err)
	}
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	scratch := "intake_upgrade_" + hex.EncodeToString(b)
	ident := pgx.Identifier{scratch}.Sanitize()
	if _, err := tx.Exec(ctx, "CREATE SCHEMA "+ident); err != nil {
		return nil, fmt.Errorf("create scratch schema: %w", err)
	}
	if _, err := tx.Exec(ctx, "SET LOCAL search_path TO "+ident); err != nil {
		return nil, fmt.Errorf("use scratch schema: %w", err)
	}
	for _, m := range ms {
		if m.NoTransaction || !slices.Contains(versions, m.Version) {
			continue
		}
		if _, err := tx.Exec(ctx, m.SQL); err != nil {
			return nil, fmt.Errorf("replay %s in a scratch schema: %w", m.Name, err)
		}
	}
	rows, err = tx.Query(ctx, objectsQuery, scratch)
	if err != nil {
		return nil, fmt.Errorf("list the objects of the migrations: %w", err)
	}
	objs, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (object, error) {
		var o object
		return o, row.Scan(&o.kind, &o.name, &o.args)
	})
	if err != nil {
		return nil, fmt.Errorf("list the objects of the migrations: %w", err)
	}
	if _, err := tx.Exec(ctx, "DROP SCHEMA "+ident+" CASCADE"); err != nil {
		return nil, fmt.Errorf("drop scratch schema: %w", err)
	}
	if _, err := tx.Exec(ctx, "RESET search_path"); err != nil {
		return nil, fmt.Errorf("reset search_path: %w", err)
	}
	return append(objs, object{kind: "TABLE", name: "schema_migrations"}), nil
}

// existsInPublic reports whether public holds o.
func existsInPublic(ctx context.Context, tx pgx.Tx, o object) (bool, error) {
	var row pgx.Row
	switch o.kind {
	case "ROUTINE":
		row = tx.QueryRow(ctx, `SELECT to_regprocedure(format('public.%I(%s)', $1::text, $2::text)) IS NOT NULL`, o.name, o.args)
	case "TYPE", "DOMAIN":
		row = tx.QueryRow(ctx, `SELECT to_regtype(format('public.%I', $1::text)) IS NOT NULL`, o.name)
	default:
		row = tx.QueryRow(ctx, `SELECT to_regclass(format('public.%I', $1::text)) IS NOT NULL`, o.name)
	}
	var ok bool
	if err := row.Scan(&ok); err != nil {
		return false, fmt.Errorf("look up %s in public: %w", o, err)
	}
	return ok, nil
}

// alterSetSchema is the statement that moves o from public to schema.
func alterSetSchema(o object, schema string) string {
	name := pgx.Identifier{"public", o.name}.Sanitize()
	if o.kind == "ROUTINE" {
		name += "(" + o.args + ")"
	}
	return fmt.Sprintf("ALTER %s %s SET SCHEMA %s", o.kind, name, pgx.Identifier{schema}.Sanitize())
}
