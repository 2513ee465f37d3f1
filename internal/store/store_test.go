package store_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/intakehq/intake/internal/store"
	"github.com/intakehq/intake/internal/store/dbq"
	"github.com/intakehq/intake/internal/testkit"
)

func TestMigrationsAreNumbered(t *testing.T) {
	t.Parallel()
	ms, err := store.Migrations()
	require.NoError(t, err)
	require.NotEmpty(t, ms)
	for i, m := range ms {
		require.Equal(t, i+1, m.Version, "migrations are numbered 1..N without gaps: %s", m.Name)
		require.NotEmpty(t, m.SQL)
	}
}

func TestMigrateInsertSelect(t *testing.T) {
	if testing.Short() {
		t.Skip("needs PostgreSQL")
	}
	t.Parallel()
	st := testkit.DB(t)
	ctx := testkit.Context(t)

	// Migrating again applies nothing.
	applied, err := store.Migrate(ctx, st.Pool)
	require.NoError(t, err)
	require.Empty(t, applied)
	status, err := store.Status(ctx, st.Pool)
	require.NoError(t, err)
	for _, s := range status {
		require.NotNil(t, s.AppliedAt, "%s applied", s.Name)
	}

	id := uuid.New()
	sum := make([]byte, 32)
	sum[0] = 0xab
	expires := time.Now().Add(5 * time.Minute).UTC().Truncate(time.Microsecond)
	created, err := testkit.CreateUpload(ctx, st.Pool, dbq.Upload{
		ID: id, Owner: "alice", Bucket: "b", Key: "uploads/alice/x/a.png", Method: "put",
		Filename: "a.png", ContentType: "image/png", Size: 42, Sha256: sum, ExpiresAt: expires,
	})
	require.NoError(t, err)
	require.Equal(t, "pending", created.Status)

	got, err := testkit.GetUpload(ctx, st.Pool, id)
	require.NoError(t, err)
	require.Equal(t, created.ID, got.ID)
	require.Equal(t, int64(42), got.Size)
	require.Equal(t, sum, got.Sha256)
	require.True(t, expires.Equal(got.ExpiresAt))

	byKey, err := testkit.GetUploadByKey(ctx, st.Pool, "b", "uploads/alice/x/a.png")
	require.NoError(t, err)
	require.Equal(t, id, byKey.ID)

	_, err = testkit.GetUpload(ctx, st.Pool, uuid.New())
	require.ErrorIs(t, err, pgx.ErrNoRows)

	// Constraints hold: a second intent for the same key and a bad method are refused.
	_, err = testkit.CreateUpload(ctx, st.Pool, dbq.Upload{
		ID: uuid.New(), Owner: "bob", Bucket: "b", Key: "uploads/alice/x/a.png", Method: "put",
		Filename: "a.png", ContentType: "image/png", Size: 1, ExpiresAt: expires,
	})
	require.ErrorContains(t, err, "uploads_bucket_key_key")
	_, err = testkit.CreateUpload(ctx, st.Pool, dbq.Upload{
		ID: uuid.New(), Owner: "bob", Bucket: "b", Key: "k2", Method: "ftp",
		Filename: "a.png", ContentType: "image/png", Size: 1, ExpiresAt: expires,
	})
	require.ErrorContains(t, err, "uploads_method_check")
}

// TestMigrateConcurrently runs migrations from several "replicas" at once on an empty schema: the
// advisory lock makes exactly one of them apply each migration.
func TestMigrateConcurrently(t *testing.T) {
	if testing.Short() {
		t.Skip("needs PostgreSQL")
	}
	t.Parallel()
	ctx := testkit.Context(t)
	schema, admin := emptySchema(t, ctx)

	const replicas = 4
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		total []string
	)
	for range replicas {
		wg.Go(func() {
			st, err := store.Open(ctx, testkit.DatabaseURLFor(schema))
			if !assertNoErr(t, err) {
				return
			}
			defer st.Close()
			applied, err := store.Migrate(ctx, st.Pool)
			if !assertNoErr(t, err) {
				return
			}
			mu.Lock()
			total = append(total, applied...)
			mu.Unlock()
		})
	}
	wg.Wait()
	ms, err := store.Migrations()
	require.NoError(t, err)
	require.Len(t, total, len(ms), "each migration applied exactly once across replicas: %v", total)
	var n int
	require.NoError(t, admin.QueryRow(ctx, "SELECT count(*) FROM "+schema+".schema_migrations").Scan(&n))
	require.Equal(t, len(ms), n)
}

// TestMigrateUpToDateSkipsLock: an operator runs the next release's long migration (an index
// built over a large table) from a one-off pod, under the schema's advisory lock. A new pod of the
// running release (a scale-out, an evicted pod) runs `migrate up` with nothing to apply: it used to
// wait for the lock, silently, until the other migration ended; it now returns at once.
func TestMigrateUpToDateSkipsLock(t *testing.T) {
	if testing.Short() {
		t.Skip("needs PostgreSQL")
	}
	t.Parallel()
	ctx := testkit.Context(t)
	schema, admin := emptySchema(t, ctx)
	st, err := store.Open(ctx, testkit.DatabaseURLFor(schema))
	require.NoError(t, err)
	t.Cleanup(st.Close)
	_, err = store.Migrate(ctx, st.Pool)
	require.NoError(t, err)

	holder, err := admin.Acquire(ctx)
	require.NoError(t, err)
	t.Cleanup(holder.Release)
	_, err = holder.Exec(ctx, "SELECT pg_advisory_lock(x'696e74'::int, hashtext($1))", schema)
	require.NoError(t, err)
	t.Cleanup(func() { _, _ = holder.Exec(context.Background(), "SELECT pg_advisory_unlock_all()") })

	bounded, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	applied, err := store.Migrate(bounded, st.Pool)
	require.NoError(t, err, "migrate up with nothing to apply waited for the lock another session holds")
	require.Empty(t, applied)
	res, err := store.Upgrade(bounded, st.Pool)
	require.NoError(t, err, "migrate up with nothing to apply waited for the lock another session holds")
	require.Empty(t, res.Applied)
	require.Empty(t, res.Moved)
}

// emptySchema creates an empty schema, dropped when the test ends, and returns its name and a pool
// on the database (not confined to the schema).
func emptySchema(t *testing.T, ctx context.Context) (string, *pgxpool.Pool) {
	t.Helper()
	schema := testkit.Name("t_")
	admin, err := pgxpool.New(ctx, testkit.DatabaseURL())
	require.NoError(t, err)
	t.Cleanup(admin.Close)
	_, err = admin.Exec(ctx, "CREATE SCHEMA "+schema)
	require.NoError(t, err)
	t.Cleanup(func() { _, _ = admin.Exec(context.Background(), "DROP SCHEMA "+schema+" CASCADE") })
	return schema, admin
}

func assertNoErr(t *testing.T, err error) bool {
	t.Helper()
	if err != nil {
		t.Errorf("unexpected error: %v", err)
		return false
	}
	return true
}
