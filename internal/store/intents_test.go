package store_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/intakehq/intake/internal/store"
	"github.com/intakehq/intake/internal/store/dbq"
	"github.com/intakehq/intake/internal/testkit"
)

// intentBundle is what each IntentWriter test works with.
type intentBundle struct {
	st  *store.Store
	w   *store.IntentWriter
	reg *prometheus.Registry
	ctx context.Context
}

func setupIntents(t *testing.T, opts store.IntentWriterOptions) *intentBundle {
	t.Helper()
	if testing.Short() {
		t.Skip("needs PostgreSQL")
	}
	st := testkit.DB(t)
	w := store.NewIntentWriter(st.Pool, opts)
	t.Cleanup(w.Close) // before the pool closes (cleanups run last-in first-out)
	reg := prometheus.NewRegistry()
	require.NoError(t, reg.Register(w))
	return &intentBundle{st: st, w: w, reg: reg, ctx: testkit.Context(t)}
}

// intentArg returns a valid row, unique by n, exercising NULL and non-NULL optional columns.
func intentArg(n int) dbq.APICreateUploadParams {
	id := uuid.New()
	a := dbq.APICreateUploadParams{
		ID: id, Owner: fmt.Sprintf("owner%d", n%7), Bucket: "b", Key: fmt.Sprintf("uploads/o/%s/f%d.bin", id, n),
		Method: "put", Filename: fmt.Sprintf("f%d.bin", n), ContentType: "application/octet-stream",
		Size: int64(n), SizeDeclared: n%2 == 0,
		ExpiresAt: time.Now().Add(time.Hour).UTC().Truncate(time.Microsecond),
	}
	if n%3 == 0 {
		a.Sha256 = make([]byte, 32)
		a.Sha256[0], a.Sha256[31] = byte(n), 0xee
	}
	if n%4 == 0 {
		a.Method = "multipart"
		mp := fmt.Sprintf("mp-%d-%s", n, id)
		a.MultipartUploadID = &mp
	}
	if n%5 == 0 {
		a.Metadata = fmt.Appendf(nil, `{"n": %d, "tag": "t%d"}`, n, n) // as PostgreSQL prints jsonb
	}
	return a
}

// requireStored checks that arg's row exists with exactly arg's values.
func requireStored(t *testing.T, b *intentBundle, arg dbq.APICreateUploadParams) {
	t.Helper()
	got, err := b.st.Q.APIGetUpload(b.ctx, dbq.APIGetUploadParams{ID: arg.ID, Owner: arg.Owner})
	require.NoError(t, err, "row %s", arg.ID)
	want := dbq.APICreateUploadParams{
		ID: got.ID, Owner: got.Owner, Bucket: got.Bucket, Key: got.Key, Method: got.Method, Filename: got.Filename,
		ContentType: got.ContentType, Size: got.Size, SizeDeclared: got.SizeDeclared, Sha256: got.Sha256,
		MultipartUploadID: got.MultipartUploadID, ExpiresAt: got.ExpiresAt.UTC(), Metadata: got.Metadata,
	}
	require.Equal(t, arg, want)
	require.Equal(t, "pending", got.Status)
}

func countUploads(t *testing.T, b *intentBundle) int {
	t.Helper()
	var n int
	require.NoError(t, b.st.Pool.QueryRow(b.ctx, "SELECT count(*) FROM uploads").Scan(&n))
	return n
}

func exists(t *testing.T, b *intentBundle, id uuid.UUID) bool {
	t.Helper()
	var ok bool
	require.NoError(t, b.st.Pool.QueryRow(b.ctx, "SELECT EXISTS (SELECT 1 FROM uploads WHERE id = $1)", id).Scan(&ok))
	return ok
}

// lockUploads makes every insert into uploads wait until release is called (a SHARE lock conflicts
// with the ROW EXCLUSIVE lock INSERT takes).
func lockUploads(t *testing.T, b *intentBundle) (release func()) {
	t.Helper()
	return lockTable(t, b.ctx, b.st, "uploads", "SHARE")
}

// waitInsertBlocked waits until an insert is waiting for the lock of lockUploads: a committer is
// then inside its statement.
func waitInsertBlocked(t *testing.T, b *intentBundle) {
	t.Helper()
	waitLockWaiter(t, b.ctx, b.st, "uploads")
}

// call runs APICreateUpload in a goroutine; its error arrives on the returned channel.
func call(ctx context.Context, w *store.IntentWriter, arg dbq.APICreateUploadParams) <-chan error {
	ch := make(chan error, 1)
	go func() { ch <- w.APICreateUpload(ctx, arg) }()
	return ch
}

// batches returns how many batches the writer took from its queue, their total rows, and how many
// batches it split.
func batches(t *testing.T, b *intentBundle) (count uint64, rows float64, splits float64) {
	t.Helper()
	mfs, err := b.reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		switch mf.GetName() {
		case "intake_intent_batch_rows":
			h := mf.GetMetric()[0].GetHistogram()
			count, rows = h.GetSampleCount(), h.GetSampleSum()
		case "intake_intent_batch_splits_total":
			splits = mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	return count, rows, splits
}

func TestIntentWriterConcurrentCallers(t *testing.T) {
	t.Parallel()
	b := setupIntents(t, store.IntentWriterOptions{})
	const callers = 500
	args := make([]dbq.APICreateUploadParams, callers)
	errs := make([]error, callers)
	var wg sync.WaitGroup
	for i := range callers {
		args[i] = intentArg(i)
		wg.Go(func() { errs[i] = b.w.APICreateUpload(b.ctx, args[i]) })
	}
	wg.Wait()
	for i, err := range errs {
		require.NoError(t, err, "caller %d", i)
	}
	require.Equal(t, callers, countUploads(t, b), "every row exactly once")
	for _, a := range args {
		requireStored(t, b, a)
	}
	count, rows, splits := batches(t, b)
	require.Equal(t, float64(callers), rows)
	require.LessOrEqual(t, count, uint64(callers))
	require.Zero(t, splits)
}

// TestIntentWriterBatchesQueuedRows holds the table so that rows queue up behind a committing
// statement: they go out together, in one statement.
func TestIntentWriterBatchesQueuedRows(t *testing.T) {
	t.Parallel()
	b := setupIntents(t, store.IntentWriterOptions{Committers: 1, MaxBatch: 16})
	release := lockUploads(t, b)
	first := call(b.ctx, b.w, intentArg(0))
	waitInsertBlocked(t, b)
	const queued = 32 // the queue's capacity: two batches of MaxBatch rows
	args := make([]dbq.APICreateUploadParams, queued)
	results := make([]<-chan error, queued)
	for i := range queued {
		args[i] = intentArg(i + 1)
		results[i] = call(b.ctx, b.w, args[i])
	}
	require.Eventually(t, func() bool { return b.w.Queued() == queued }, 30*time.Second, time.Millisecond)
	release()
	require.NoError(t, <-first)
	for i, ch := range results {
		require.NoError(t, <-ch, "caller %d", i)
		requireStored(t, b, args[i])
	}
	count, rows, _ := batches(t, b)
	require.Equal(t, uint64(1+2), count, "1 blocked row, then 16+16")
	require.Equal(t, float64(1+queued), rows)
}

// TestIntentWriterBadRows puts rows that violate a constraint in a batch of good ones: only their
// callers get an error, which names the constraint as the unbatched insert does.
func TestIntentWriterBadRows(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		// bad returns the offending rows given a committed row, and the constraint each violates.
		bad func(committed dbq.APICreateUploadParams) ([]dbq.APICreateUploadParams, []string)
	}{
		{"duplicate id", func(c dbq.APICreateUploadParams) ([]dbq.APICreateUploadParams, []string) {
			a := intentArg(100)
			a.ID = c.ID
			return []dbq.APICreateUploadParams{a}, []string{"uploads_pkey"}
		}},
		{"duplicate bucket and key", func(c dbq.APICreateUploadParams) ([]dbq.APICreateUploadParams, []string) {
			a := intentArg(100)
			a.Key = c.Key
			return []dbq.APICreateUploadParams{a}, []string{"uploads_bucket_key_key"}
		}},
		{"duplicate multipart upload id", func(c dbq.APICreateUploadParams) ([]dbq.APICreateUploadParams, []string) {
			a := intentArg(100)
			a.MultipartUploadID = c.MultipartUploadID
			return []dbq.APICreateUploadParams{a}, []string{"uploads_multipart_upload_id_idx"}
		}},
		{"check violations", func(dbq.APICreateUploadParams) ([]dbq.APICreateUploadParams, []string) {
			neg, method, sum := intentArg(101), intentArg(102), intentArg(103)
			neg.Size = -1
			method.Method = "ftp"
			sum.Sha256 = []byte{1, 2, 3}
			return []dbq.APICreateUploadParams{neg, method, sum},
				[]string{"uploads_size_check", "uploads_method_check", "uploads_sha256_check"}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := setupIntents(t, store.IntentWriterOptions{Committers: 1})
			committed := intentArg(0) // n=0: has a sha256 and a multipart upload id
			require.NoError(t, b.w.APICreateUpload(b.ctx, committed))
			bad, constraints := tc.bad(committed)

			release := lockUploads(t, b)
			blocker := intentArg(1)
			first := call(b.ctx, b.w, blocker)
			waitInsertBlocked(t, b)
			// Good rows around the bad ones, all queued behind the blocked statement: one batch.
			var args []dbq.APICreateUploadParams
			want := map[uuid.UUID]string{}
			for i := range 20 {
				args = append(args, intentArg(10+i))
				if i%7 == 3 && len(bad) > 0 {
					args = append(args, bad[0])
					want[bad[0].ID] = constraints[0]
					bad, constraints = bad[1:], constraints[1:]
				}
			}
			require.Empty(t, bad)
			results := make([]<-chan error, len(args))
			for i, a := range args {
				results[i] = call(b.ctx, b.w, a)
			}
			require.Eventually(t, func() bool { return b.w.Queued() == len(args) }, 30*time.Second, time.Millisecond)
			release()
			require.NoError(t, <-first)

			for i, ch := range results {
				err := <-ch
				constraint, isBad := want[args[i].ID] // a bad row's id appears once in args
				if !isBad {
					require.NoError(t, err, "good row %d", i)
					requireStored(t, b, args[i])
					continue
				}
				var pgErr *pgconn.PgError
				require.ErrorAs(t, err, &pgErr, "bad row %d", i)
				require.Equal(t, constraint, pgErr.ConstraintName)
				require.ErrorContains(t, err, constraint)
			}
			require.Equal(t, 2+len(args)-len(want), countUploads(t, b))
			requireStored(t, b, committed) // untouched by the duplicate
			count, rows, splits := batches(t, b)
			require.Equal(t, uint64(3), count, "committed row, blocker, then one batch")
			require.Equal(t, float64(2+len(args)), rows)
			require.NotZero(t, splits)
		})
	}
}

// TestIntentWriterDuplicateInOneBatch sends two rows with the same key in one batch: one wins.
func TestIntentWriterDuplicateInOneBatch(t *testing.T) {
	t.Parallel()
	b := setupIntents(t, store.IntentWriterOptions{Committers: 1})
	release := lockUploads(t, b)
	first := call(b.ctx, b.w, intentArg(0))
	waitInsertBlocked(t, b)
	x, y := intentArg(1), intentArg(2)
	y.Key = x.Key
	good := intentArg(3)
	rx, ry, rg := call(b.ctx, b.w, x), call(b.ctx, b.w, y), call(b.ctx, b.w, good)
	require.Eventually(t, func() bool { return b.w.Queued() == 3 }, 30*time.Second, time.Millisecond)
	release()
	require.NoError(t, <-first)
	require.NoError(t, <-rg)
	errX, errY := <-rx, <-ry
	require.True(t, (errX == nil) != (errY == nil), "exactly one of the two fails: %v / %v", errX, errY)
	loser, winner := errors.Join(errX, errY), x
	if errX != nil {
		winner = y
	}
	require.ErrorContains(t, loser, "uploads_bucket_key_key")
	requireStored(t, b, winner)
	requireStored(t, b, good)
	require.Equal(t, 3, countUploads(t, b))
}

func TestIntentWriterCancel(t *testing.T) {
	t.Parallel()

	t.Run("before the call", func(t *testing.T) {
		t.Parallel()
		b := setupIntents(t, store.IntentWriterOptions{})
		ctx, cancel := context.WithCancel(b.ctx)
		cancel()
		a := intentArg(1)
		require.ErrorIs(t, b.w.APICreateUpload(ctx, a), context.Canceled)
		b.w.Close()
		require.False(t, exists(t, b, a.ID))
	})

	t.Run("while its statement runs", func(t *testing.T) {
		t.Parallel()
		b := setupIntents(t, store.IntentWriterOptions{Committers: 1})
		release := lockUploads(t, b)
		ctx, cancel := context.WithCancel(b.ctx)
		a := intentArg(1)
		res := call(ctx, b.w, a)
		waitInsertBlocked(t, b)
		cancel()
		// The caller returns while the table is still locked: it did not wait for the commit.
		select {
		case err := <-res:
			require.ErrorIs(t, err, context.Canceled)
		case <-time.After(30 * time.Second):
			t.Fatal("the cancelled caller did not return")
		}
		release()
		b.w.Close()
		// The statement was already running: the row committed, an orphaned (harmless) intent.
		require.True(t, exists(t, b, a.ID))
	})

	t.Run("while queued", func(t *testing.T) {
		t.Parallel()
		b := setupIntents(t, store.IntentWriterOptions{Committers: 1})
		release := lockUploads(t, b)
		blocker := intentArg(0)
		first := call(b.ctx, b.w, blocker)
		waitInsertBlocked(t, b)
		ctx, cancel := context.WithCancel(b.ctx)
		a := intentArg(1)
		res := call(ctx, b.w, a)
		require.Eventually(t, func() bool { return b.w.Queued() == 1 }, 30*time.Second, time.Millisecond)
		cancel()
		select {
		case err := <-res:
			require.ErrorIs(t, err, context.Canceled)
		case <-time.After(30 * time.Second):
			t.Fatal("the cancelled caller did not return")
		}
		release()
		require.NoError(t, <-first)
		b.w.Close()
		// Not yet taken when its caller left: skipped.
		require.False(t, exists(t, b, a.ID))
		require.True(t, exists(t, b, blocker.ID))
	})
}

// TestIntentWriterCloseDrains closes the writer with rows queued behind a blocked statement: Close
// commits them all before returning; later calls insert directly.
func TestIntentWriterCloseDrains(t *testing.T) {
	t.Parallel()
	b := setupIntents(t, store.IntentWriterOptions{Committers: 1, MaxBatch: 8})
	release := lockUploads(t, b)
	first := call(b.ctx, b.w, intentArg(0))
	waitInsertBlocked(t, b)
	const queued = 16 // the queue's capacity: two batches
	args := make([]dbq.APICreateUploadParams, queued)
	results := make([]<-chan error, queued)
	for i := range queued {
		args[i] = intentArg(i + 1)
		results[i] = call(b.ctx, b.w, args[i])
	}
	require.Eventually(t, func() bool { return b.w.Queued() == queued }, 30*time.Second, time.Millisecond)

	closed := make(chan struct{})
	go func() { b.w.Close(); close(closed) }()
	require.Eventually(t, b.w.Closing, 30*time.Second, time.Millisecond)
	select {
	case <-closed:
		t.Fatal("Close returned while rows were still queued")
	default:
	}
	release()
	<-closed
	require.NoError(t, <-first)
	for i, ch := range results {
		require.NoError(t, <-ch, "caller %d", i)
		requireStored(t, b, args[i])
	}

	// After Close: a direct insert, with the same errors.
	late := intentArg(99)
	require.NoError(t, b.w.APICreateUpload(b.ctx, late))
	requireStored(t, b, late)
	dup := intentArg(98)
	dup.ID = late.ID
	require.ErrorContains(t, b.w.APICreateUpload(b.ctx, dup), "uploads_pkey")
	b.w.Close() // idempotent
	require.Equal(t, 1+queued+1, countUploads(t, b))
}

// TestIntentWriterUnreachable points the pool at a closed port: every caller gets the connection
// error, none is dropped.
func TestIntentWriterUnreachable(t *testing.T) {
	t.Parallel()
	cfg, err := pgxpool.ParseConfig(fmt.Sprintf("postgres://postgres@%s/intake_test?connect_timeout=5", testkit.FreeAddr(t)))
	require.NoError(t, err)
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg) // connects lazily
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	w := store.NewIntentWriter(pool, store.IntentWriterOptions{})
	t.Cleanup(w.Close)

	const callers = 100
	errs := make([]error, callers)
	var wg sync.WaitGroup
	for i := range callers {
		wg.Go(func() { errs[i] = w.APICreateUpload(testkit.Context(t), intentArg(i)) })
	}
	wg.Wait()
	for i, err := range errs {
		require.Error(t, err, "caller %d", i)
		require.True(t, store.Unavailable(err), "caller %d: %v", i, err)
	}
}
