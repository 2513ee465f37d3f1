package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/intakehq/intake/internal/store"
	"github.com/intakehq/intake/internal/store/dbq"
	"github.com/intakehq/intake/internal/testkit"
)

// TestMigrateUpgradesAPreSchemaInstall: on a database whose tables are in public (a release from
// before INTAKE_DB_SCHEMA), `intake run` refuses to start and says what to do, `intake migrate
// status` says it too, `intake migrate` moves the tables into schema intake and says so, and the
// rows are there afterwards.
func TestMigrateUpgradesAPreSchemaInstall(t *testing.T) {
	if testing.Short() {
		t.Skip("needs PostgreSQL")
	}
	ctx := testkit.Context(t)
	url := testkit.Database(t)
	old, err := store.OpenSchema(ctx, url, "public")
	require.NoError(t, err)
	_, err = store.Migrate(ctx, old.Pool)
	require.NoError(t, err)
	id := uuid.New()
	_, err = testkit.CreateUpload(ctx, old.Pool, dbq.Upload{ID: id, Owner: "alice", Bucket: "b", Key: "k", Method: "put",
		Filename: "k", ContentType: "text/plain", Size: 1, ExpiresAt: time.Now()})
	require.NoError(t, err)
	old.Close()

	run := func(args ...string) (int, string, string) {
		var out, errOut bytes.Buffer
		code := MainContext(context.Background(), append(args, "--database-url", url), &out, &errOut)
		return code, out.String(), errOut.String()
	}
	code, _, errOut := run("run", "--roles", "api", "--bucket", "b", "--api-insecure-dev-auth", "--listen", testkit.FreeAddr(t))
	require.Equal(t, 1, code)
	require.Contains(t, errOut, "intake's tables are in schema public, but intake now keeps them in schema intake: run `intake migrate`")

	code, out, _ := run("migrate", "status")
	require.Equal(t, 0, code)
	require.Contains(t, out, "still in schema public")
	status := func() migrateStatusJSON {
		code, out, errOut := run("migrate", "status", "--json")
		require.Equal(t, 0, code, errOut)
		var st migrateStatusJSON
		require.NoError(t, json.Unmarshal([]byte(out), &st), out)
		return st
	}
	all, err := store.Migrations()
	require.NoError(t, err)
	before := status()
	require.True(t, before.LegacyLayout)
	require.Equal(t, "intake", before.Schema)
	require.Len(t, before.Migrations, len(all))

	code, out, errOut = run("migrate")
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "moved intake's tables from schema public to schema intake: ")
	require.Contains(t, out, "table uploads")
	code, out, _ = run("migrate")
	require.Equal(t, 0, code)
	require.Contains(t, out, "nothing to apply: schema intake is up to date")
	// The README's `intake migrate` takes up's flags without naming up.
	code, out, errOut = run("migrate", "--wait", "10s")
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "nothing to apply: schema intake is up to date")
	after := status()
	require.False(t, after.LegacyLayout)
	require.Zero(t, after.Pending)
	require.Len(t, after.Migrations, len(all))
	for i, m := range after.Migrations {
		require.Equal(t, all[i].Version, m.Version)
		require.Equal(t, all[i].Name, m.Name)
		require.NotNil(t, m.AppliedAt, m.Name)
	}

	st, err := store.Open(ctx, url)
	require.NoError(t, err)
	defer st.Close()
	u, err := testkit.GetUpload(ctx, st.Pool, id)
	require.NoError(t, err)
	require.Equal(t, "alice", u.Owner)

	// INTAKE_DB_SCHEMA=public keeps an old layout where it is (here: an empty public, migrated fresh).
	code, out, errOut = run("migrate", "--db-schema", "public")
	require.Equal(t, 0, code, errOut)
	require.NotContains(t, out, "moved")
}
