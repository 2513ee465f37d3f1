package store_test

import (
	"testing"
	"testing/fstest"

	"github.com/stretchr/testify/require"

	"github.com/intakehq/intake/internal/store"
)

// probeMigration parses sql as migration 0100_probe.sql (so that its no-transaction header is
// read as Migrations reads it).
func probeMigration(t *testing.T, sql string) store.Migration {
	t.Helper()
	ms, err := store.ParseMigrations(fstest.MapFS{"m/0100_probe.sql": {Data: []byte(sql)}}, "m")
	require.NoError(t, err)
	require.Len(t, ms, 1)
	return ms[0]
}

// TestLockHazardsProbes: the rule TestMigrationsHoldNoLockWhileScanning holds every migration to
// catches each statement that holds a table's lock while it scans, rewrites or indexes the table
// or changes its rows, whatever its spelling, and lets the safe forms through.
func TestLockHazardsProbes(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ sql, want string }{
		// Before: an index built in a transaction, a CHECK without NOT VALID, a new column's CHECK.
		{"CREATE INDEX uploads_filename_idx ON uploads (filename);", "index built in a transaction on uploads"},
		{"CREATE INDEX ON uploads (filename);", "index built in a transaction on uploads"},
		{"CREATE UNIQUE INDEX IF NOT EXISTS u ON public.uploads (filename);", "index built in a transaction on uploads"},
		{"ALTER TABLE objects ADD CONSTRAINT c CHECK (size > 0);", "CHECK without NOT VALID scans objects"},
		{"ALTER TABLE uploads ADD COLUMN n int CHECK (n > 0);", "a new column's CHECK scans uploads"},

		// A volatile default rewrites the table.
		{"ALTER TABLE uploads ADD COLUMN x uuid NOT NULL DEFAULT gen_random_uuid();", "a new column's volatile DEFAULT rewrites uploads"},
		{"ALTER TABLE uploads ADD x uuid DEFAULT gen_random_uuid() NOT NULL;", "a new column's volatile DEFAULT rewrites uploads"},
		{"ALTER TABLE uploads ADD COLUMN IF NOT EXISTS r float8 DEFAULT random();", "a new column's volatile DEFAULT rewrites uploads"},
		{"ALTER TABLE uploads ADD COLUMN seen timestamptz NOT NULL DEFAULT clock_timestamp();", "a new column's volatile DEFAULT rewrites uploads"},
		{"ALTER TABLE uploads ADD COLUMN n bigint DEFAULT nextval('uploads_n_seq');", "a new column's volatile DEFAULT rewrites uploads"},
		{"ALTER TABLE uploads ADD COLUMN n bigserial;", "a new serial, identity or stored generated column rewrites uploads"},
		{"ALTER TABLE uploads ADD COLUMN n bigint GENERATED ALWAYS AS IDENTITY;", "a new serial, identity or stored generated column rewrites uploads"},
		{"ALTER TABLE uploads ADD COLUMN k text GENERATED ALWAYS AS (lower(key)) STORED;", "a new serial, identity or stored generated column rewrites uploads"},

		// SET NOT NULL scans the table.
		{"ALTER TABLE uploads ALTER COLUMN filename SET NOT NULL;", "SET NOT NULL scans uploads"},
		{"ALTER TABLE ONLY uploads ALTER filename SET NOT NULL;", "SET NOT NULL scans uploads"},
		{`ALTER TABLE "uploads" ADD COLUMN a int, ALTER COLUMN "owner" SET NOT NULL;`, "SET NOT NULL scans uploads"},

		// A FOREIGN KEY without NOT VALID scans; UNIQUE or PRIMARY KEY without USING INDEX builds an index.
		{"ALTER TABLE objects ADD CONSTRAINT objects_upload_fk FOREIGN KEY (upload_id) REFERENCES uploads (id);", "FOREIGN KEY without NOT VALID scans objects"},
		{"ALTER TABLE objects ADD FOREIGN KEY (upload_id) REFERENCES uploads (id) ON DELETE SET NULL;", "FOREIGN KEY without NOT VALID scans objects"},
		{"ALTER TABLE uploads ADD CONSTRAINT uploads_key_key UNIQUE (key);", "UNIQUE without USING INDEX builds an index of uploads"},
		{"ALTER TABLE multipart_aborts ADD PRIMARY KEY (bucket, upload_id);", "PRIMARY KEY without USING INDEX builds an index of multipart_aborts"},
		{"ALTER TABLE uploads ADD CONSTRAINT e EXCLUDE USING gist (owner WITH =);", "EXCLUDE constraint builds an index of uploads"},
		{"ALTER TABLE objects ADD COLUMN parent uuid REFERENCES objects (id);", "a new column's REFERENCES scans objects"},
		{"ALTER TABLE uploads ADD COLUMN token text UNIQUE;", "a new column's UNIQUE or PRIMARY KEY builds an index of uploads"},

		// A column's type change rewrites (or scans) the table.
		{"ALTER TABLE uploads ALTER COLUMN size TYPE numeric;", "ALTER COLUMN … TYPE rewrites uploads"},
		{"ALTER TABLE uploads ALTER size SET DATA TYPE numeric USING size::numeric;", "ALTER COLUMN … TYPE rewrites uploads"},
		{"ALTER TABLE events SET UNLOGGED;", "SET LOGGED, UNLOGGED or TABLESPACE rewrites events"},

		// An UPDATE or DELETE holds the rows it changes until the migration commits.
		{"UPDATE uploads SET size_declared = true;", "UPDATE in the migration's transaction locks the rows it changes in uploads"},
		{"UPDATE ONLY public.uploads SET size = 0 WHERE size < 0;", "UPDATE in the migration's transaction locks the rows it changes in uploads"},
		{"DELETE FROM events;", "DELETE in the migration's transaction locks the rows it changes in events"},
		{"-- old rows\ndelete from events where received_at < now() - interval '1 year';", "DELETE in the migration's transaction locks the rows it changes in events"},

		// Outside a transaction, an index statement without CONCURRENTLY.
		{"-- intake:no-transaction\nCREATE INDEX uploads_filename_idx ON uploads (filename);", "index statement without CONCURRENTLY locks uploads"},
		{"-- intake:no-transaction\nDROP INDEX IF EXISTS uploads_filename_idx;", "index statement without CONCURRENTLY locks its table: DROP INDEX IF EXISTS uploads_filename_idx"},
	} {
		t.Run(tc.sql, func(t *testing.T) {
			require.Equal(t, []string{"0100_probe.sql: " + tc.want}, lockHazards(probeMigration(t, tc.sql)))
		})
	}
}

// TestLockHazardsSafeForms: the forms that hold no lock while scanning pass the rule.
func TestLockHazardsSafeForms(t *testing.T) {
	t.Parallel()
	for _, sql := range []string{
		"ALTER TABLE uploads ADD COLUMN a int;",
		"ALTER TABLE uploads ADD COLUMN b boolean NOT NULL DEFAULT true, ADD COLUMN c text[] NOT NULL DEFAULT '{}';",
		"ALTER TABLE uploads ADD COLUMN d timestamptz NOT NULL DEFAULT now();",
		"ALTER TABLE uploads ADD COLUMN e text NOT NULL DEFAULT 'f(x) unique check';",
		"ALTER TABLE uploads ADD COLUMN f numeric(10, 2) DEFAULT 0::numeric(10, 2);",
		"ALTER TABLE uploads ADD COLUMN g text COLLATE \"C\";",
		"ALTER TABLE objects ADD CONSTRAINT c CHECK (size > 0) NOT VALID;",
		"ALTER TABLE objects ADD CONSTRAINT fk FOREIGN KEY (upload_id) REFERENCES uploads (id) NOT VALID;",
		"ALTER TABLE objects VALIDATE CONSTRAINT fk;",
		"ALTER TABLE uploads ADD CONSTRAINT uploads_token_key UNIQUE USING INDEX uploads_token_idx;",
		"ALTER TABLE uploads ALTER COLUMN a SET DEFAULT gen_random_uuid();",
		"ALTER TABLE uploads ALTER COLUMN a DROP NOT NULL, DROP CONSTRAINT c, DROP COLUMN z;",
		"ALTER TABLE uploads RENAME COLUMN a TO b;",
		"DROP INDEX uploads_pending_multipart_created_idx;",
		"INSERT INTO uploads_archive SELECT * FROM uploads WHERE false;",
		"CREATE FUNCTION f() RETURNS void LANGUAGE sql AS $$ UPDATE uploads SET size = 0; DELETE FROM events $$;",
		// A table the migration creates is empty.
		`CREATE TABLE things (id int);
ALTER TABLE things ADD COLUMN u uuid NOT NULL DEFAULT gen_random_uuid(), ALTER COLUMN id SET NOT NULL;
ALTER TABLE things ADD PRIMARY KEY (id), ALTER COLUMN id TYPE bigint;
CREATE INDEX ON things (u);
INSERT INTO things (id) VALUES (1);
UPDATE things SET id = 2;
DELETE FROM things;`,
		"-- intake:no-transaction\nDROP INDEX CONCURRENTLY IF EXISTS x;\nCREATE UNIQUE INDEX CONCURRENTLY x ON uploads (a);\nREINDEX INDEX CONCURRENTLY x;",
	} {
		t.Run(sql, func(t *testing.T) {
			require.Empty(t, lockHazards(probeMigration(t, sql)))
		})
	}
}
