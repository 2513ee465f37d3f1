package store

import (
	"context"
	"io/fs"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// MigrateFSLog is MigrateFSLocks with what the run waits for reported on log
// ([WithMigrationLog]).
func MigrateFSLog(ctx context.Context, pool *pgxpool.Pool, fsys fs.FS, dir string, lockTimeout time.Duration, attempts int, backoff time.Duration, log *slog.Logger) (UpgradeResult, error) {
	ms, err := parseMigrations(fsys, dir)
	if err != nil {
		return UpgradeResult{}, err
	}
	opts := migrateOptions{lockTimeout: lockTimeout, lockAttempts: attempts, lockBackoff: backoff}
	return migrate(ctx, pool, ms, false, opts.with([]MigrateOption{WithMigrationLog(log)}))
}

// MigrationLockClass exposes migrationLockClass: a schema's migrations take the advisory lock
// (MigrationLockClass, hashtext(schema)).
const MigrationLockClass = migrationLockClass

// MigrationLockID exposes migrationLockID, the advisory lock of releases from before schemas.
const MigrationLockID = migrationLockID

// AdvisoryLockHolders returns the pids advisoryLock names as holding the schema's migration lock,
// or, with legacy, the lock of releases from before schemas.
func AdvisoryLockHolders(ctx context.Context, conn *pgx.Conn, schema string, legacy bool) ([]uint32, error) {
	tryLock, args := schemaTryLock, []any{migrationLockClass, schema}
	if legacy {
		tryLock, args = "SELECT pg_try_advisory_lock($1)", []any{migrationLockID}
	}
	hs, err := advisoryHolders(ctx, conn, tryLock, args...)
	pids := make([]uint32, len(hs))
	for i, h := range hs {
		pids[i] = h.pid
	}
	return pids, err
}
