package outbox_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/intakehq/intake/internal/outbox"
	"github.com/intakehq/intake/internal/store"
	"github.com/intakehq/intake/internal/store/dbq"
	"github.com/intakehq/intake/internal/testkit"
	"github.com/intakehq/intake/pipeline"
)

// doneBundle is a schema of its own with a listener on it, and the writers of the consumer, the
// reconcile and the multipart completion.
type doneBundle struct {
	ctx    context.Context
	st     *store.Store
	l      *outbox.Listener
	rec    *store.Records
	bucket string
}

func doneSetup(t *testing.T) *doneBundle {
	t.Helper()
	if testing.Short() {
		t.Skip("needs PostgreSQL")
	}
	st := testkit.DB(t)
	b := &doneBundle{ctx: testkit.Context(t), st: st, l: outbox.NewListener(st.Pool, nil), rec: store.NewRecords(st), bucket: "b"}
	testkit.Serve(t, b.l.Run)
	select {
	case <-b.l.Ready():
	case <-b.ctx.Done():
		t.Fatal("listener not ready")
	}
	// The listener wakes every subscriber once listening, right after Ready: the first round trip
	// may be answered by that wake-up, the second no longer (see synced).
	b.synced(t)
	b.synced(t)
	return b
}

// synced returns once every notification committed before it was dispatched by the listener: it
// commits a notification of an id of its own and waits for it. PostgreSQL delivers the
// notifications of different transactions in the order they committed, and the listener dispatches
// them in order, so a wake-up an earlier commit sent has been sent when this one arrives.
func (b *doneBundle) synced(t *testing.T) {
	t.Helper()
	sentinel := uuid.New()
	ch, stop := b.l.Subscribe(sentinel)
	defer stop()
	_, err := b.st.Pool.Exec(b.ctx, "SELECT pg_notify(current_schema() || $1, $2::text)", outbox.ChannelSuffix, sentinel)
	require.NoError(t, err)
	select {
	case <-ch:
	case <-b.ctx.Done():
		t.Fatal("the listener never dispatched a notification")
	}
}

// woken reports whether the subscription was woken by what was committed so far (and forgets it).
func (b *doneBundle) woken(t *testing.T, ch <-chan struct{}) bool {
	t.Helper()
	b.synced(t)
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// intent creates a pending multipart intent of alice's at key and subscribes to its wake-ups.
func (b *doneBundle) intent(t *testing.T, key string) (uuid.UUID, <-chan struct{}) {
	t.Helper()
	id := uuid.New()
	mpu := "mpu-" + id.String()
	_, err := testkit.CreateUpload(b.ctx, b.st.Pool, dbq.Upload{
		ID: id, Owner: "alice", Bucket: b.bucket, Key: key, Method: "multipart", Filename: "a.txt",
		ContentType: "text/plain", Size: 5, MultipartUploadID: &mpu, ExpiresAt: time.Now().Add(time.Hour),
	})
	require.NoError(t, err)
	ch, stop := b.l.Subscribe(id)
	t.Cleanup(stop)
	return id, ch
}

// complete completes the intent as POST /v1/uploads/{id}/complete does once S3 completed it.
func (b *doneBundle) complete(t *testing.T, id uuid.UUID) {
	t.Helper()
	n, err := dbq.New(b.st.Pool).MultipartCompleted(b.ctx, dbq.MultipartCompletedParams{Bucket: b.bucket, UploadID: "mpu-" + id.String()})
	require.NoError(t, err)
	require.EqualValues(t, 1, n)
}

// lookup is the consumer's lookup of key: the database's time, which stamps its observation.
func (b *doneBundle) lookup(t *testing.T, key string) time.Time {
	t.Helper()
	l, err := b.rec.Lookup(b.ctx, b.bucket, key)
	require.NoError(t, err)
	return l.At
}

// record writes the consumer's record of the intent's object, observed at at.
func (b *doneBundle) record(t *testing.T, id uuid.UUID, key, status string, at time.Time) pipeline.Recorded {
	t.Helper()
	r := pipeline.Record{
		Bucket: b.bucket, Key: key, Status: status, Owner: "alice", UploadID: id,
		EventTime: at, ObservedAt: at, Observed: true,
	}
	switch status {
	case pipeline.StatusMissing:
		r.Reason = pipeline.ReasonNotFound
	case pipeline.StatusValid:
		size := int64(5)
		r.ETag, r.Size, r.ContentType = "e-"+key, &size, "text/plain"
	}
	got, err := b.rec.Record(b.ctx, r)
	require.NoError(t, err)
	return got
}

// markMissing marks key's row missing as the reconcile does (OpsMarkMissing), observed a second
// after the database's now.
func (b *doneBundle) markMissing(t *testing.T, key string) {
	t.Helper()
	var now time.Time
	require.NoError(t, b.st.Pool.QueryRow(b.ctx, "SELECT now() + interval '1 second'").Scan(&now))
	marked, err := dbq.New(b.st.Pool).OpsMarkMissing(b.ctx, dbq.OpsMarkMissingParams{
		ObservedAt: now, Bucket: b.bucket, Keys: []string{key}, ChangedBefore: now,
	})
	require.NoError(t, err)
	require.Equal(t, []string{key}, marked)
}

// noNotification: the wake-up came from no outbox row.
func (b *doneBundle) noNotification(t *testing.T, id uuid.UUID) {
	t.Helper()
	rows, err := testkit.ListOutbox(b.ctx, b.st.Pool, id)
	require.NoError(t, err)
	require.Empty(t, rows, "no notification row: the outbox's trigger sent nothing")
}

// TestDoneWakesWithoutANotification: every change that makes an upload done (status.go's
// uploadStatus) wakes its long polls' subscription, on the outbox channel, with no outbox row
// written; a change that leaves its done-ness as it was sends nothing. Before migration 0027 none of
// these woke anyone: a long poll answered them only when its wait ended.
func TestDoneWakesWithoutANotification(t *testing.T) {
	t.Parallel()
	b := doneSetup(t)

	t.Run("record: the completed upload's object seen gone since", func(t *testing.T) {
		const key = "u/gone-since.txt"
		id, wake := b.intent(t, key)
		early := b.lookup(t, key)
		b.record(t, id, key, pipeline.StatusMissing, early)
		require.False(t, b.woken(t, wake), "an absence seen before the upload completed is no answer")
		b.complete(t, id)
		require.False(t, b.woken(t, wake), "completed, its object seen gone only before: not done")
		b.record(t, id, key, pipeline.StatusMissing, early)
		require.False(t, b.woken(t, wake), "the same observation again changes nothing")

		b.record(t, id, key, pipeline.StatusMissing, b.lookup(t, key))
		require.True(t, b.woken(t, wake), "seen gone after the completion: done")
		b.noNotification(t, id)

		b.record(t, id, key, pipeline.StatusMissing, b.lookup(t, key))
		require.False(t, b.woken(t, wake), "seen gone once more: done before, done still")
	})

	t.Run("record: first seen gone after the completion", func(t *testing.T) {
		const key = "u/first-gone.txt"
		id, wake := b.intent(t, key)
		b.complete(t, id)
		require.False(t, b.woken(t, wake))
		b.record(t, id, key, pipeline.StatusMissing, b.lookup(t, key))
		require.True(t, b.woken(t, wake), "the row is created missing after the completion: done")
		b.noNotification(t, id)
	})

	t.Run("record: a late sighting of a missing object", func(t *testing.T) {
		const key = "u/late.txt"
		id, wake := b.intent(t, key)
		seen := b.lookup(t, key)
		b.record(t, id, key, pipeline.StatusMissing, b.lookup(t, key))
		require.False(t, b.woken(t, wake))
		got := b.record(t, id, key, pipeline.StatusValid, seen) // observed before the absence: it loses
		require.Equal(t, pipeline.StatusMissing, got.Status)
		require.True(t, b.woken(t, wake), "seen present, then gone: a verdict (isVerdict), done")
		b.noNotification(t, id)
	})

	t.Run("reconcile: an uninspected object marked missing", func(t *testing.T) {
		const key = "u/uninspected.txt"
		id, wake := b.intent(t, key)
		// A row known but not inspected (pending: the schema's, not the Processor's).
		_, err := b.st.Pool.Exec(b.ctx, `INSERT INTO objects (bucket, key, status, upload_id, owner, observed_at)
			VALUES ($1, $2, 'pending', $3, 'alice', now())`, b.bucket, key, id)
		require.NoError(t, err)
		b.complete(t, id)
		require.False(t, b.woken(t, wake), "pending object: not done")

		b.markMissing(t, key)
		require.True(t, b.woken(t, wake), "marked missing after the completion: done")
		b.noNotification(t, id)
	})

	t.Run("record: an uninspected object recorded missing", func(t *testing.T) {
		const key = "u/uninspected-record.txt"
		id, wake := b.intent(t, key)
		_, err := b.st.Pool.Exec(b.ctx, `INSERT INTO objects (bucket, key, status, upload_id, owner)
			VALUES ($1, $2, 'pending', $3, 'alice')`, b.bucket, key, id)
		require.NoError(t, err)
		require.False(t, b.woken(t, wake))
		b.record(t, id, key, pipeline.StatusMissing, b.lookup(t, key))
		require.True(t, b.woken(t, wake), "a pending row turned missing: verdict_at set, a verdict")
		b.noNotification(t, id)
	})

	t.Run("a session on another search_path", func(t *testing.T) {
		// An operator's psql, say: the function reads the intent in the trigger's schema.
		cfg := b.st.Pool.Config().ConnConfig.Copy()
		cfg.RuntimeParams["search_path"] = "pg_catalog"
		conn, err := pgx.ConnectConfig(b.ctx, cfg)
		require.NoError(t, err)
		defer conn.Close(context.WithoutCancel(b.ctx))
		schema := pgx.Identifier{b.st.Schema}.Sanitize()

		const key = "u/elsewhere.txt"
		id, wake := b.intent(t, key)
		_, err = b.st.Pool.Exec(b.ctx, `INSERT INTO objects (bucket, key, status, upload_id, owner, observed_at)
			VALUES ($1, $2, 'pending', $3, 'alice', now())`, b.bucket, key, id)
		require.NoError(t, err)
		_, err = conn.Exec(b.ctx, "UPDATE "+schema+".uploads SET status = 'completed', updated_at = now() WHERE id = $1", id)
		require.NoError(t, err)
		require.False(t, b.woken(t, wake), "pending object: not done")
		_, err = conn.Exec(b.ctx, "UPDATE "+schema+".objects SET status = 'missing', reason = 'reconcile', observed_at = now() + interval '1 second' WHERE upload_id = $1", id)
		require.NoError(t, err)
		require.True(t, b.woken(t, wake), "marked missing after the completion: done")
	})

	t.Run("record: an object becomes the upload's", func(t *testing.T) {
		const key = "u/adopted.txt"
		id, wake := b.intent(t, key)
		seen := b.lookup(t, key)
		// Recorded with no intent (looked up before the intent existed, say): valid, nobody's.
		_, err := b.st.Pool.Exec(b.ctx, `INSERT INTO objects (bucket, key, status, etag, size, content_type, owner,
				observed_at, event_time, verdict_at)
			VALUES ($1, $2, 'valid', $3, 5, 'text/plain', 'alice', $4, $4, now())`, b.bucket, key, "e-"+key, seen)
		require.NoError(t, err)
		require.False(t, b.woken(t, wake))
		b.record(t, id, key, pipeline.StatusValid, b.lookup(t, key)) // the same object, now the upload's
		require.True(t, b.woken(t, wake), "its verdict is the upload's now: done")
		b.noNotification(t, id)
	})

	t.Run("ordinary records change nothing", func(t *testing.T) {
		const key = "u/ordinary.txt"
		id, wake := b.intent(t, key)
		b.complete(t, id)
		at := b.lookup(t, key)
		b.record(t, id, key, pipeline.StatusValid, at)
		require.True(t, b.woken(t, wake), "the verdict (its outbox row notifies it too: one wake-up)")
		b.record(t, id, key, pipeline.StatusValid, at)
		require.False(t, b.woken(t, wake), "the same observation again")
		b.record(t, id, key, pipeline.StatusValid, b.lookup(t, key))
		require.False(t, b.woken(t, wake), "a later observation of the same object")

		// The reconcile marks the verdict's object missing: done before (a verdict), done still.
		b.markMissing(t, key)
		require.False(t, b.woken(t, wake), "missing after its verdict: it was done already")
	})
}

// TestDoneWakesOnALateSightingThatCompletes: one record both completes the intent and loses to a
// tombstone observed after the completing transaction began (a late sighting: verdict_at set), so
// the upload turns done in that statement. The trigger must not judge the row's state before by
// the intent as the same statement left it (completed, at its start): it did, saw the tombstone
// as done already, and sent nothing (a review's case).
func TestDoneWakesOnALateSightingThatCompletes(t *testing.T) {
	t.Parallel()
	b := doneSetup(t)
	const key = "u/late-completes.txt"
	id, wake := b.intent(t, key)
	seen := b.lookup(t, key)
	b.record(t, id, key, pipeline.StatusMissing, b.lookup(t, key).Add(time.Second))
	require.False(t, b.woken(t, wake), "a tombstone of a pending intent is no verdict")
	size := int64(5)
	got, err := b.rec.Record(b.ctx, pipeline.Record{Bucket: b.bucket, Key: key, Status: pipeline.StatusValid, Owner: "alice",
		UploadID: id, CompleteIntent: id, ETag: "e", Size: &size, ContentType: "text/plain",
		EventTime: seen, ObservedAt: seen, Observed: true})
	require.NoError(t, err)
	require.Equal(t, pipeline.StatusMissing, got.Status, "the older sighting loses to the tombstone, and sets its verdict_at")
	require.True(t, b.woken(t, wake), "not done before, done now")
}
