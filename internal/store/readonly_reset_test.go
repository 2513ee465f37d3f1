package store_test

import (
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/intakehq/intake/internal/store"
	"github.com/intakehq/intake/internal/testkit"
)

// TestCheckWritableDropsReadOnlySessions opens every connection of a pool while its database is
// read-only (the sessions a pool opens on the old primary once it is a standby, DNS not yet moved),
// then makes the database writable again without ending those sessions (the DNS name moving to
// the new primary): a new session can write, but each pooled session keeps the read-only setting
// it started with. CheckWritable's first answer comes from such a stale session; it must drop the
// pool's connections, so that the next check, and every query after it, dials a new session (the
// pool would otherwise keep asking the most recently used stale session, read-only until
// MaxConnLifetime). A connection checked out during the reset is dropped when released. The
// database is the test's own: ALTER DATABASE would change the sessions of every other test.
func TestCheckWritableDropsReadOnlySessions(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("needs PostgreSQL")
	}
	ctx := testkit.Context(t)
	url := testkit.Database(t)
	admin := openOn(t, testkit.DatabaseURL(), "", nil)
	cfg, err := pgxpool.ParseConfig(url)
	require.NoError(t, err)
	db := cfg.ConnConfig.Database
	setReadOnly := func(on bool) {
		t.Helper()
		stmt := "ALTER DATABASE " + db + " RESET default_transaction_read_only"
		if on {
			stmt = "ALTER DATABASE " + db + " SET default_transaction_read_only = on"
		}
		_, err := admin.Pool.Exec(ctx, stmt)
		require.NoError(t, err)
	}
	readOnly := func(c *pgxpool.Conn) string {
		t.Helper()
		var ro string
		require.NoError(t, c.QueryRow(ctx, "SHOW transaction_read_only").Scan(&ro))
		return ro
	}

	setReadOnly(true)
	st := openOn(t, url, "", nil) // MaxConns 4, every session opened read-only
	maxConns := int(st.Pool.Config().MaxConns)
	conns := make([]*pgxpool.Conn, maxConns)
	acquire := func(i int) {
		t.Helper()
		c, err := st.Pool.Acquire(ctx)
		require.NoError(t, err)
		t.Cleanup(c.Release) // before the pool's Close, which waits for every connection (Release is idempotent)
		conns[i] = c
	}
	for i := range conns {
		acquire(i)
		require.Equal(t, "on", readOnly(conns[i]))
	}
	held := conns[0] // checked out while the check resets the pool
	for _, c := range conns[1:] {
		c.Release()
	}

	// While the database really is read-only, every check says so, the sessions it dials after
	// each reset being read-only again.
	other := openOn(t, url, "", nil)
	for range 3 {
		require.ErrorIs(t, other.CheckWritable(ctx), store.ErrReadOnly)
	}

	setReadOnly(false) // new sessions write; the pool's keep their read-only setting
	fresh := openOn(t, url, "", nil)
	require.NoError(t, fresh.CheckWritable(ctx), "a new session is writable")

	require.ErrorIs(t, st.CheckWritable(ctx), store.ErrReadOnly, "the pool's most recently used session is a stale one")
	require.NoError(t, st.CheckWritable(ctx), "the check after a read-only answer dials a new session")
	require.NoError(t, other.CheckWritable(ctx))
	held.Release()

	// Every connection of the pool is writable now, the one held during the reset included.
	for i := range conns {
		acquire(i)
		require.Equal(t, "off", readOnly(conns[i]), "connection %d of the pool", i)
	}
	for _, c := range conns {
		c.Release()
	}
	_, err = st.Pool.Exec(ctx, "CREATE TABLE public.written_after_reset (id int)")
	require.NoError(t, err)
}
