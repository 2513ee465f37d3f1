package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/intakehq/intake/internal/config"
	"github.com/intakehq/intake/internal/store"
)

// MigrateCmd applies (up) or lists (status) the embedded migrations.
type MigrateCmd struct {
	config.Database `embed:""`

	Up     MigrateUpCmd     `cmd:"" default:"withargs" help:"Apply pending migrations (safe to run from several replicas at once); moves a pre-schema install out of public first."`
	Status MigrateStatusCmd `cmd:"" help:"List migrations and when they were applied."`
}

// openStore connects to PostgreSQL with intake's schema (INTAKE_DB_SCHEMA, else DATABASE_URL's
// search_path, else intake).
func openStore(ctx context.Context, cfg *config.Config) (*store.Store, error) {
	return store.OpenSchema(ctx, cfg.DatabaseURL, cfg.DBSchema)
}

// openCheckedStore checks the command's database settings, then opens the store (see openStore).
func openCheckedStore(g *Globals) (*store.Store, error) {
	if err := g.Config.ValidateDB(); err != nil {
		return nil, fmt.Errorf("invalid configuration:\n%w", err)
	}
	return openStore(g.Ctx, g.Config)
}

// MigrateUpCmd applies pending migrations.
type MigrateUpCmd struct {
	// Wait bounds the wait for PostgreSQL (see waitStore): an init container started during a
	// failover, or beside a database still starting, waits instead of failing at once.
	Wait time.Duration `name:"wait" default:"5m" help:"How long to wait, retrying with backoff, for a PostgreSQL that does not answer (down, starting, failing over) before giving up; 0: try once. A wrong password or an unknown database fails at once."`
}

// Run waits for PostgreSQL (up to --wait), then applies pending migrations, after moving an install
// from before schemas into intake's schema.
func (c MigrateUpCmd) Run(g *Globals) error {
	if c.Wait < 0 {
		return usagef("--wait: %s is negative", c.Wait)
	}
	if err := g.Config.ValidateDB(); err != nil {
		return fmt.Errorf("invalid configuration:\n%w", err)
	}
	st, err := waitStore(g.Ctx, g.Config, g.Log, time.Now().Add(c.Wait), nil)
	if err != nil {
		return err
	}
	defer st.Close()
	res, err := store.Upgrade(g.Ctx, st.Pool, store.WithMigrationLog(g.Log))
	if len(res.Moved) > 0 {
		fmt.Fprintf(g.Stdout, "moved intake's tables from schema public to schema %s: %s\n", res.Schema, strings.Join(res.Moved, ", "))
		g.Log.Warn("moved intake's tables from schema public to intake's own schema; replicas of older releases (which look in public) must be replaced",
			"schema", res.Schema, "moved", res.Moved)
	}
	for _, name := range res.Applied {
		fmt.Fprintf(g.Stdout, "applied %s\n", name)
	}
	if err != nil {
		return err
	}
	if len(res.Applied) == 0 {
		fmt.Fprintf(g.Stdout, "nothing to apply: schema %s is up to date\n", res.Schema)
	}
	return nil
}

// MigrateStatusCmd lists migrations.
type MigrateStatusCmd struct {
	JSON bool `name:"json" help:"Print one JSON object (schema, legacy layout, every migration with its applied time) instead of a table."`
}

// migrateStatusJSON is what `intake migrate status --json` prints.
type migrateStatusJSON struct {
	// Schema is intake's schema.
	Schema string `json:"schema"`
	// LegacyLayout is true while intake's tables are still in schema public.
	LegacyLayout bool `json:"legacy_layout"`
	// Pending counts the migrations not applied yet.
	Pending int `json:"pending"`
	// Migrations lists every embedded migration in order.
	Migrations []migrationJSON `json:"migrations"`
}

// migrationJSON is one migration of migrateStatusJSON.
type migrationJSON struct {
	Version   int        `json:"version"`
	Name      string     `json:"name"`
	AppliedAt *time.Time `json:"applied_at"`
}

// Run prints every migration with its state.
func (c MigrateStatusCmd) Run(g *Globals) error {
	st, err := openCheckedStore(g)
	if err != nil {
		return err
	}
	defer st.Close()
	list, err := store.Status(g.Ctx, st.Pool)
	if err != nil {
		return err
	}
	legacy, err := store.LegacyLayout(g.Ctx, st.Pool)
	if err != nil {
		return err
	}
	if c.JSON {
		out := migrateStatusJSON{Schema: st.Schema, LegacyLayout: legacy, Migrations: make([]migrationJSON, 0, len(list))}
		for _, m := range list {
			if m.AppliedAt == nil {
				out.Pending++
			}
			out.Migrations = append(out.Migrations, migrationJSON{Version: m.Version, Name: m.Name, AppliedAt: m.AppliedAt})
		}
		enc := json.NewEncoder(g.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	}
	fmt.Fprintf(g.Stdout, "schema %s\n", st.Schema)
	if legacy {
		fmt.Fprintf(g.Stdout, "intake's tables are still in schema public: `intake migrate` moves them to schema %s (or set INTAKE_DB_SCHEMA=public)\n", st.Schema)
	}
	tw := tabwriter.NewWriter(g.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "VERSION\tNAME\tAPPLIED")
	for _, m := range list {
		at := "pending"
		if m.AppliedAt != nil {
			at = m.AppliedAt.UTC().Format("2006-01-02T15:04:05Z")
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\n", m.Version, m.Name, at)
	}
	return tw.Flush()
}
