package store

import (
	"context"
	"io/fs"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// MigrateFS is Migrate (or Upgrade, with adopt) with the migrations of dir in fsys instead of the
// embedded ones.
func MigrateFS(ctx context.Context, pool *pgxpool.Pool, fsys fs.FS, dir string, adopt bool) (UpgradeResult, error) {
	ms, err := parseMigrations(fsys, dir)
	if err != nil {
		return UpgradeResult{}, err
	}
	return migrate(ctx, pool, ms, adopt, defaultMigrateOptions)
}

// MigrateFSLocks is MigrateFS (without adopt) with the waits for locks given: lockTimeout per
// wait, attempts runs of a migration, backoff before the second run. It exercises the lock
// timeout's own path: no transaction younger than an hour is waited out before a run (the
// blocker wait has tests of its own, through MigrateFSLog), so a test's blocker is run into
// however slowly the machine runs.
func MigrateFSLocks(ctx context.Context, pool *pgxpool.Pool, fsys fs.FS, dir string, lockTimeout time.Duration, attempts int, backoff time.Duration) (UpgradeResult, error) {
	ms, err := parseMigrations(fsys, dir)
	if err != nil {
		return UpgradeResult{}, err
	}
	return migrate(ctx, pool, ms, false, migrateOptions{lockTimeout: lockTimeout, lockAttempts: attempts, lockBackoff: backoff, blockerAge: time.Hour})
}

// UpgradeLocks is Upgrade with the waits for locks given, as MigrateFSLocks.
func UpgradeLocks(ctx context.Context, pool *pgxpool.Pool, lockTimeout time.Duration, attempts int, backoff time.Duration) (UpgradeResult, error) {
	ms, err := Migrations()
	if err != nil {
		return UpgradeResult{}, err
	}
	return migrate(ctx, pool, ms, true, migrateOptions{lockTimeout: lockTimeout, lockAttempts: attempts, lockBackoff: backoff})
}

// ParseMigrations exposes parseMigrations.
var ParseMigrations = parseMigrations

// SplitStatements exposes splitStatements.
var SplitStatements = splitStatements
