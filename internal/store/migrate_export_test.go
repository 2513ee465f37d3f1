package store

import (
	"context"
	"io/fs"

	"github.com/jackc/pgx/v5/pgxpool"
)

// MigrateFS is Migrate (or Upgrade, with adopt) with the migrations of dir in fsys instead of the
// embedded ones.
func MigrateFS(ctx context.Context, pool *pgxpool.Pool, fsys fs.FS, dir string, adopt bool) (UpgradeResult, error) {
	ms, err := parseMigrations(fsys, dir)
	if err != nil {
		return UpgradeResult{}, err
	}
	return migrate(ctx, pool, ms, adopt)
}

// ParseMigrations exposes parseMigrations.
var ParseMigrations = parseMigrations

// SplitStatements exposes splitStatements.
var SplitStatements = splitStatements
