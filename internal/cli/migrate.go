package cli

import (
	"fmt"
	"text/tabwriter"

	"github.com/intakehq/intake/internal/store"
)

// MigrateCmd applies (up) or lists (status) the embedded migrations.
type MigrateCmd struct {
	Up     MigrateUpCmd     `cmd:"" default:"1" help:"Apply pending migrations (safe to run from several replicas at once)."`
	Status MigrateStatusCmd `cmd:"" help:"List migrations and when they were applied."`
}

// MigrateUpCmd applies pending migrations.
type MigrateUpCmd struct{}

// Run applies pending migrations.
func (MigrateUpCmd) Run(g *Globals) error {
	if err := g.Config.ValidateDB(); err != nil {
		return fmt.Errorf("invalid configuration:\n%w", err)
	}
	st, err := store.Open(g.Ctx, g.Config.DatabaseURL)
	if err != nil {
		return err
	}
	defer st.Close()
	applied, err := store.Migrate(g.Ctx, st.Pool)
	for _, name := range applied {
		fmt.Fprintf(g.Stdout, "applied %s\n", name)
	}
	if err != nil {
		return err
	}
	if len(applied) == 0 {
		fmt.Fprintln(g.Stdout, "nothing to apply: the schema is up to date")
	}
	return nil
}

// MigrateStatusCmd lists migrations.
type MigrateStatusCmd struct{}

// Run prints every migration with its state.
func (MigrateStatusCmd) Run(g *Globals) error {
	if err := g.Config.ValidateDB(); err != nil {
		return fmt.Errorf("invalid configuration:\n%w", err)
	}
	st, err := store.Open(g.Ctx, g.Config.DatabaseURL)
	if err != nil {
		return err
	}
	defer st.Close()
	list, err := store.Status(g.Ctx, st.Pool)
	if err != nil {
		return err
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
