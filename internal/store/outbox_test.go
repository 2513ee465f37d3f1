package store_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/intakehq/intake/internal/store"
	"github.com/intakehq/intake/internal/store/dbq"
	"github.com/intakehq/intake/internal/testkit"
	"github.com/intakehq/intake/pipeline"
	"github.com/intakehq/intake/worker/tasks"
)

// notifications returns the outbox rows of upload id, oldest first.
func (b *recordsBundle) notifications(t *testing.T, id uuid.UUID) []dbq.Outbox {
	t.Helper()
	rows, err := testkit.ListOutbox(b.ctx, b.st.Pool, id)
	require.NoError(t, err)
	return rows
}

// countOutbox counts every outbox row.
func (b *recordsBundle) countOutbox(t *testing.T) int {
	t.Helper()
	var n int
	require.NoError(t, b.st.Pool.QueryRow(b.ctx, "SELECT count(*) FROM outbox").Scan(&n))
	return n
}

// strictData decodes an outbox row's data into the public payload type, refusing fields the type
// does not have: the SQL that builds it and worker/tasks describe the same contract.
func strictData(t *testing.T, raw []byte) tasks.UploadVerdictData {
	t.Helper()
	var d tasks.UploadVerdictData
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	require.NoError(t, dec.Decode(&d), "%s", raw)
	return d
}

func TestRecordsNotify(t *testing.T) {
	t.Parallel()
	eachRecords(t, testRecordsNotify)
}

// testRecordsNotify: each committed verdict of an intent's object inserts exactly one notification,
// in the record's transaction; records that change nothing (duplicates, the same state again)
// insert none; objects without an intent and "missing" states notify nobody.
func testRecordsNotify(t *testing.T, b *recordsBundle) {
	id := b.addUpload(t, "k", "put", "pending", nil, nil)
	_, err := b.st.Pool.Exec(b.ctx, `UPDATE uploads SET metadata = '{"order": 42, "tags": ["a", null], "note": null}' WHERE id = $1`, id)
	require.NoError(t, err)
	t0 := time.Date(2026, 11, 26, 3, 0, 0, 0, time.UTC)
	withIntent := func(rec pipeline.Record) pipeline.Record {
		rec.Owner, rec.UploadID, rec.CompleteIntent = "alice", id, id
		return rec
	}

	steps := []struct {
		name    string
		rec     pipeline.Record
		applied bool
		want    []string // event types of every notification so far
	}{
		{"first verdict", withIntent(state("k", seqKey("01"), t0, "e1")), true, []string{tasks.EventUploadValid}},
		{"the same event again", withIntent(state("k", seqKey("01"), t0, "e1")), false, []string{tasks.EventUploadValid}},
		{"an older event", withIntent(state("k", seqKey("00"), t0, "e0")), false, []string{tasks.EventUploadValid}},
		{"a newer event, same state", withIntent(state("k", seqKey("02"), t0, "e1")), false, []string{tasks.EventUploadValid}},
		{"re-inspection changes the verdict", func() pipeline.Record {
			r := withIntent(state("k", seqKey("03"), t0, "e1"))
			r.Status, r.Reason = pipeline.StatusRejected, pipeline.ReasonSniffMismatch
			return r
		}(), true, []string{tasks.EventUploadValid, tasks.EventUploadRejected}},
		{"deleted", withIntent(state("k", seqKey("04"), t0, "")), true,
			[]string{tasks.EventUploadValid, tasks.EventUploadRejected, tasks.EventUploadDeleted}},
		{"deleted again (duplicate)", withIntent(state("k", seqKey("04"), t0, "")), false,
			[]string{tasks.EventUploadValid, tasks.EventUploadRejected, tasks.EventUploadDeleted}},
		{"uploaded again: a new verdict", withIntent(state("k", seqKey("05"), t0, "e1")), true,
			[]string{tasks.EventUploadValid, tasks.EventUploadRejected, tasks.EventUploadDeleted, tasks.EventUploadValid}},
	}
	for _, s := range steps {
		got, err := b.rs.Record(b.ctx, s.rec)
		require.NoError(t, err, s.name)
		require.Equal(t, s.applied, got.Applied, s.name)
		var types []string
		for _, n := range b.notifications(t, id) {
			types = append(types, n.EventType)
		}
		require.Equal(t, s.want, types, s.name)
	}

	rows := b.notifications(t, id)
	first := strictData(t, rows[0].Data)
	obj := b.row(t, "k")
	size := int64(2)
	require.Equal(t, tasks.UploadVerdictData{
		UploadID: id, Owner: "alice", Bucket: "b", Key: "k", Method: "put", Filename: "f.png",
		Status: "valid", ObjectID: &obj.ID, Size: &size, ETag: "e1",
		Metadata: json.RawMessage(`{"note": null, "tags": ["a", null], "order": 42}`),
	}, first, "the metadata comes back as given (nulls included), the object's nulls are left out")
	require.Equal(t, "sniff_mismatch", strictData(t, rows[1].Data).Reason)
	deleted := strictData(t, rows[2].Data)
	require.Nil(t, deleted.Size)
	require.Equal(t, "deleted", deleted.Status)
	require.NotEqual(t, rows[0].EventID, rows[3].EventID, "each notification has its own id")
	require.Equal(t, "object:"+obj.ID.String()+":1", rows[0].DedupeKey)

	// No intent, or a state no event tells: nothing.
	_, err = b.rs.Record(b.ctx, state("orphan", seqKey("01"), t0, "e9"))
	require.NoError(t, err)
	missing := withIntent(pipeline.Record{Bucket: "b", Key: "gone", Status: pipeline.StatusMissing, Reason: pipeline.ReasonNotFound, Sequencer: seqKey("01"), EventTime: t0})
	missing.CompleteIntent = uuid.Nil
	_, err = b.rs.Record(b.ctx, missing)
	require.NoError(t, err)
	require.Equal(t, 4, b.countOutbox(t))
}

// TestRecordsNotifyRollback: PostgreSQL rolls back a batch of verdicts (one record in it violates a
// constraint): neither its objects nor its notifications exist. Written again alone, the good
// record gets its notification once.
func TestRecordsNotifyRollback(t *testing.T) {
	t.Parallel()
	b := setupRecords(t)
	id := b.addUpload(t, "good", "put", "pending", nil, nil)
	t0 := time.Date(2026, 11, 26, 3, 0, 0, 0, time.UTC)
	good := state("good", seqKey("01"), t0, "e1")
	good.Owner, good.UploadID = "alice", id
	bad := pipeline.Record{Bucket: "b", Key: "bad", Status: pipeline.StatusRejected} // rejected without a reason
	bad.Owner, bad.UploadID = "alice", b.addUpload(t, "bad", "put", "pending", nil, nil)

	_, err := b.rs.WriteRecords(b.ctx, []pipeline.Record{good, bad})
	require.ErrorContains(t, err, "objects_reason_present")
	require.Equal(t, 0, b.countOutbox(t), "rolled back: no notification")
	_, err = testkit.GetObject(b.ctx, b.st.Pool, "b", "good")
	require.Error(t, err, "and no object row")

	for range 2 { // and a redelivery
		_, err := b.rs.WriteRecords(b.ctx, []pipeline.Record{good})
		require.NoError(t, err)
	}
	rows := b.notifications(t, id)
	require.Len(t, rows, 1)
	require.Equal(t, tasks.EventUploadValid, rows[0].EventType)
}

// TestAbortNotifies: RecordMultipartAbort, which settles the intents of aborted uploads (by the
// deadline task, the sweep and the API), inserts one upload.aborted notification per intent it
// settles aborted, in its own transaction; recording again, a call that does not settle, and an
// upload S3 shows completed insert none.
func TestAbortNotifies(t *testing.T) {
	t.Parallel()
	b := setupRecords(t)
	mp1, mp2, mp3, mp4 := "mp-1", "mp-2", "mp-3", "mp-4"
	byDeadline := b.addUpload(t, "k1", "multipart", "pending", nil, &mp1)
	gone := b.addUpload(t, "k2", "multipart", "pending", nil, &mp2)
	byAPI := b.addUpload(t, "k3", "multipart", "pending", nil, &mp3)
	completed := b.addUpload(t, "k4", "multipart", "pending", nil, &mp4)
	_, err := b.st.Pool.Exec(b.ctx, `UPDATE uploads SET metadata = '{"ticket": "T-1"}' WHERE id = $1`, byDeadline)
	require.NoError(t, err)

	for range 2 {
		for _, p := range []dbq.RecordMultipartAbortParams{
			{Bucket: "b", Key: "k1", UploadID: mp1, Reason: "deadline", Outcome: "aborted", Settle: true},
			{Bucket: "b", Key: "k2", UploadID: mp2, Reason: "sweep", Outcome: "gone"},
			{Bucket: "b", Key: "k3", UploadID: mp3, Reason: "api", Outcome: "aborted", Settle: true},
			{Bucket: "b", Key: "k4", UploadID: mp4, Reason: "deadline", Outcome: "gone", Settle: true, ObjectExists: true},
		} {
			_, err := b.st.Q.RecordMultipartAbort(b.ctx, p)
			require.NoError(t, err)
		}
	}

	rows := b.notifications(t, byDeadline)
	require.Len(t, rows, 1)
	require.Equal(t, tasks.EventUploadAborted, rows[0].EventType)
	require.Equal(t, tasks.UploadVerdictData{
		UploadID: byDeadline, Owner: "alice", Bucket: "b", Key: "k1", Method: "multipart", Filename: "f.png",
		Status: "aborted", Reason: "deadline", MultipartUploadID: "mp-1", Metadata: json.RawMessage(`{"ticket": "T-1"}`),
	}, strictData(t, rows[0].Data))
	require.Empty(t, b.notifications(t, gone), "not settled: the intent is left alone")
	rows = b.notifications(t, byAPI)
	require.Len(t, rows, 1)
	require.Equal(t, "api", strictData(t, rows[0].Data).Reason)
	require.Empty(t, b.notifications(t, completed), "S3 showed the object: completed, not aborted")
	require.Equal(t, "aborted", b.uploadStatus(t, byAPI))
	require.Equal(t, "completed", b.uploadStatus(t, completed))
}

// TestOutboxDeliveries: the deliveries' store reads notifications and records deliveries in
// batches; deliveries of several endpoints of one row, recorded at once, lose none of them, and a
// row is delivered only when every endpoint is.
func TestOutboxDeliveries(t *testing.T) {
	t.Parallel()
	b := setupRecords(t)
	o := store.NewOutbox(b.st, store.BatchOptions{})
	t.Cleanup(o.Close)
	const rows = 20
	ids := make([]int64, rows)
	for i := range rows {
		require.NoError(t, b.st.Pool.QueryRow(b.ctx, `INSERT INTO outbox (dedupe_key, event_type, upload_id, bucket, key, data,
			relayed_at, pending) VALUES ($1, 'upload.valid', gen_random_uuid(), 'b', 'k', '{}', now(), '{a,b,c}') RETURNING id`,
			fmt.Sprintf("test:%d", i)).Scan(&ids[i]))
	}
	var wg sync.WaitGroup
	for _, id := range ids {
		for _, ep := range []string{"a", "b", "c", "a"} { // "a" twice: recording again is harmless
			wg.Go(func() { require.NoError(t, o.MarkDelivered(b.ctx, id, ep)) })
		}
	}
	wg.Wait()
	for _, id := range ids {
		pending, delivered := deliveryState(t, b, id)
		require.Empty(t, pending)
		require.True(t, delivered)
	}

	var partial int64
	require.NoError(t, b.st.Pool.QueryRow(b.ctx, `INSERT INTO outbox (dedupe_key, event_type, upload_id, bucket, key, data,
		relayed_at, pending) VALUES ('test:partial', 'upload.valid', gen_random_uuid(), 'b', 'k', '{}', now(), '{a,b}') RETURNING id`).Scan(&partial))
	require.NoError(t, o.MarkDelivered(b.ctx, partial, "b"))
	pending, delivered := deliveryState(t, b, partial)
	require.Equal(t, []string{"a"}, pending)
	require.False(t, delivered, "a is still pending")
	require.NoError(t, o.MarkDelivered(b.ctx, 1<<40, "a"), "a row purged meanwhile: nothing to record")
}

// TestOutboxRelayAfterLeftoverDelivery: relay A enqueues a row's delivery tasks and rolls back;
// its tasks deliver the row before any relay committed (recorded on the unrelayed row). Relay B
// claims the row again, and its enqueue finds A's task still there (asynq refuses the same task
// id: no new task). Marking it relayed must not write the delivered endpoints back as pending: no
// task is left to deliver them, and the row would stay undelivered for ever.
func TestOutboxRelayAfterLeftoverDelivery(t *testing.T) {
	t.Parallel()
	b := setupRecords(t)
	o := store.NewOutbox(b.st, store.BatchOptions{})
	t.Cleanup(o.Close)
	insert := func(key string) int64 {
		var id int64
		require.NoError(t, b.st.Pool.QueryRow(b.ctx, `INSERT INTO outbox (dedupe_key, event_type, upload_id, bucket, key, data)
			VALUES ($1, 'upload.valid', gen_random_uuid(), 'b', 'k', '{}') RETURNING id`, key).Scan(&id))
		return id
	}
	one, two, fresh := insert("test:one"), insert("test:two"), insert("test:fresh")
	// A's leftover tasks: row one delivered to its only endpoint, row two to one of its two.
	require.NoError(t, o.MarkDelivered(b.ctx, one, "a"))
	require.NoError(t, o.MarkDelivered(b.ctx, two, "a"))
	// B marks the three rows relayed with their endpoints.
	require.NoError(t, b.st.Q.OutboxMarkRelayed(b.ctx, dbq.OutboxMarkRelayedParams{
		Ids: []int64{one, two, fresh}, Pendings: []string{"a", "a,b", "a,b"},
	}))
	pending, delivered := deliveryState(t, b, one)
	require.Empty(t, pending, "a was delivered by A's task")
	require.True(t, delivered)
	pending, delivered = deliveryState(t, b, two)
	require.Equal(t, []string{"b"}, pending)
	require.False(t, delivered)
	pending, delivered = deliveryState(t, b, fresh)
	require.Equal(t, []string{"a", "b"}, pending, "a row nothing delivered yet keeps every endpoint")
	require.False(t, delivered)

	require.NoError(t, o.MarkDelivered(b.ctx, two, "b"))
	pending, delivered = deliveryState(t, b, two)
	require.Empty(t, pending)
	require.True(t, delivered)
}

// TestOutboxUnrelayedIsNotDelivered: a relay enqueued some tasks of its rows, then another
// enqueue failed and it rolled back; its tasks deliver (or give up on) rows no relay committed,
// whose other endpoints and verdict task were never enqueued. Such a row is not delivered until a
// relay commits it: the backlog gauge counts it and the purge leaves it. Before, the record set
// delivered_at (pending was NULL, so no endpoint looked left): the gauge read 0 while the row was
// unrelayed, and the purge deleted it after the retention. A row an earlier release left that way
// is counted and kept too, and the next relay settles it.
func TestOutboxUnrelayedIsNotDelivered(t *testing.T) {
	t.Parallel()
	b := setupRecords(t)
	o := store.NewOutbox(b.st, store.BatchOptions{})
	t.Cleanup(o.Close)
	insert := func(key string) int64 {
		var id int64
		require.NoError(t, b.st.Pool.QueryRow(b.ctx, `INSERT INTO outbox (dedupe_key, event_type, upload_id, bucket, key, data, created_at)
			VALUES ($1, 'upload.valid', gen_random_uuid(), 'b', 'k', '{}', now() - interval '1 hour') RETURNING id`, key).Scan(&id))
		return id
	}
	delivered, gaveUp, legacy := insert("test:delivered"), insert("test:gave-up"), insert("test:legacy")
	require.NoError(t, o.MarkDelivered(b.ctx, delivered, "a"))
	require.NoError(t, o.MarkGaveUp(b.ctx, gaveUp, "a"))
	_, err := b.st.Pool.Exec(b.ctx, `UPDATE outbox SET delivered = '{a}', pending = '{}', delivered_at = now() - interval '2 hours' WHERE id = $1`, legacy)
	require.NoError(t, err)
	for _, id := range []int64{delivered, gaveUp} {
		_, done := deliveryState(t, b, id)
		require.False(t, done, "notification %d: not relayed, so not every delivery was enqueued", id)
	}

	backlog, err := b.st.Q.OutboxBacklog(b.ctx)
	require.NoError(t, err)
	require.EqualValues(t, 3, backlog.Unrelayed)
	require.InDelta(t, time.Hour.Seconds(), backlog.OldestAgeSeconds, 60, "the unrelayed notifications are undelivered")
	n, err := b.st.Q.OutboxPurge(b.ctx, dbq.OutboxPurgeParams{Cutoff: time.Now().Add(time.Hour), MaxRows: 100})
	require.NoError(t, err)
	require.Zero(t, n, "nothing unrelayed is purged")

	// A relay commits them, leaving out the endpoints already settled.
	require.NoError(t, b.st.Q.OutboxMarkRelayed(b.ctx, dbq.OutboxMarkRelayedParams{
		Ids: []int64{delivered, gaveUp, legacy}, Pendings: []string{"a,b", "a", "a"},
	}))
	pending, done := deliveryState(t, b, delivered)
	require.Equal(t, []string{"b"}, pending)
	require.False(t, done)
	for _, id := range []int64{gaveUp, legacy} {
		pending, done := deliveryState(t, b, id)
		require.Empty(t, pending)
		require.True(t, done, "notification %d: nothing left to deliver once relayed", id)
	}
	require.NoError(t, o.MarkDelivered(b.ctx, delivered, "b"))
	_, done = deliveryState(t, b, delivered)
	require.True(t, done)
	backlog, err = b.st.Q.OutboxBacklog(b.ctx)
	require.NoError(t, err)
	require.Zero(t, backlog.Unrelayed)
	require.Zero(t, backlog.OldestAgeSeconds)
	n, err = b.st.Q.OutboxPurge(b.ctx, dbq.OutboxPurgeParams{Cutoff: time.Now().Add(time.Hour), MaxRows: 100})
	require.NoError(t, err)
	require.EqualValues(t, 2, n, "relayed and delivered: purged; the given-up one stays")
}

// TestOutboxToDeliver: a batch delivery task run again learns which of its notifications are
// still to deliver to its endpoint: not those delivered to it or given up on it, nor those purged.
func TestOutboxToDeliver(t *testing.T) {
	t.Parallel()
	b := setupRecords(t)
	o := store.NewOutbox(b.st, store.BatchOptions{})
	t.Cleanup(o.Close)
	ids := make([]int64, 5)
	for i := range ids {
		require.NoError(t, b.st.Pool.QueryRow(b.ctx, `INSERT INTO outbox (dedupe_key, event_type, upload_id, bucket, key, data,
			relayed_at, pending) VALUES ($1, 'upload.valid', gen_random_uuid(), 'b', 'k', '{}', now(), '{a,b}') RETURNING id`,
			fmt.Sprintf("test:%d", i)).Scan(&ids[i]))
	}
	require.NoError(t, o.MarkDelivered(b.ctx, ids[0], "a"))
	require.NoError(t, o.MarkDelivered(b.ctx, ids[1], "b"))
	require.NoError(t, o.MarkGaveUp(b.ctx, ids[2], "a"))
	_, err := b.st.Pool.Exec(b.ctx, `DELETE FROM outbox WHERE id = $1`, ids[3])
	require.NoError(t, err)
	left, err := o.ToDeliver(b.ctx, ids, "a")
	require.NoError(t, err)
	require.Equal(t, []int64{ids[1], ids[4]}, left, "delivered to b only, and untouched")
}

// deliveryState reads an outbox row's pending endpoints and whether it is delivered.
func deliveryState(t *testing.T, b *recordsBundle, id int64) (pending []string, delivered bool) {
	t.Helper()
	require.NoError(t, b.st.Pool.QueryRow(b.ctx, "SELECT pending, delivered_at IS NOT NULL FROM outbox WHERE id = $1", id).Scan(&pending, &delivered))
	return pending, delivered
}

// TestExpiryNotifies: each intent the maintenance task expires gets one upload.expired
// notification in the expiry's transaction; one that is not expired (not due, or completed) none.
func TestExpiryNotifies(t *testing.T) {
	t.Parallel()
	b := setupRecords(t)
	due := b.addUpload(t, "due", "put", "pending", nil, nil)
	notDue := b.addUpload(t, "later", "put", "pending", nil, nil)
	done := b.addUpload(t, "done", "put", "completed", nil, nil)
	_, err := b.st.Pool.Exec(b.ctx, `UPDATE uploads SET expires_at = now() - interval '2 hours', metadata = '{"cart": 9}' WHERE id = ANY($1)`,
		[]uuid.UUID{due, done})
	require.NoError(t, err)
	for range 2 {
		_, err := b.st.Q.ExpireIntents(b.ctx, dbq.ExpireIntentsParams{Cutoff: time.Now().Add(-time.Hour), MaxRows: 100})
		require.NoError(t, err)
	}
	rows := b.notifications(t, due)
	require.Len(t, rows, 1)
	require.Equal(t, tasks.EventUploadExpired, rows[0].EventType)
	require.Equal(t, tasks.UploadVerdictData{
		UploadID: due, Owner: "alice", Bucket: "b", Key: "due", Method: "put", Filename: "f.png", Status: "expired",
		Metadata: json.RawMessage(`{"cart": 9}`),
	}, strictData(t, rows[0].Data))
	require.Empty(t, b.notifications(t, notDue))
	require.Empty(t, b.notifications(t, done))
}

// TestOutboxPurge: the purge deletes relayed notifications delivered before the cutoff, oldest
// delivery first, up to its limit; undelivered, unrelayed and recent ones stay. Its plan can read
// the partial index of purgeable rows instead of the whole table.
func TestOutboxPurge(t *testing.T) {
	t.Parallel()
	b := setupRecords(t)
	now := time.Now()
	insert := func(key string, deliveredAgo time.Duration) {
		var at *time.Time
		if deliveredAgo > 0 {
			v := now.Add(-deliveredAgo)
			at = &v
		}
		_, err := b.st.Pool.Exec(b.ctx, `INSERT INTO outbox (dedupe_key, event_type, upload_id, bucket, key, data, relayed_at, pending, delivered_at)
			VALUES ($1, 'upload.valid', gen_random_uuid(), 'b', $1, '{}', now(), '{}', $2)`, key, at)
		require.NoError(t, err)
	}
	// Inserted in an order unlike their deliveries'.
	insert("gave-up-5h", 5*time.Hour)
	_, err := b.st.Pool.Exec(b.ctx, `UPDATE outbox SET gave_up = '{crm}' WHERE key = 'gave-up-5h'`)
	require.NoError(t, err)
	insert("old-2h", 2*time.Hour)
	insert("undelivered", 0)
	insert("old-3h", 3*time.Hour)
	insert("recent", time.Minute)
	insert("old-4h", 4*time.Hour)
	// A row an earlier release marked delivered although no relay had committed it (a task of a
	// relay that rolled back delivered it): its other deliveries may never have been enqueued.
	insert("unrelayed-6h", 6*time.Hour)
	_, err = b.st.Pool.Exec(b.ctx, `UPDATE outbox SET relayed_at = NULL, pending = NULL WHERE key = 'unrelayed-6h'`)
	require.NoError(t, err)
	cutoff := now.Add(-time.Hour)
	n, err := b.st.Q.OutboxPurge(b.ctx, dbq.OutboxPurgeParams{Cutoff: cutoff, MaxRows: 2})
	require.NoError(t, err)
	require.EqualValues(t, 2, n)
	left := func() []string {
		rows, err := b.st.Pool.Query(b.ctx, `SELECT key FROM outbox ORDER BY key`)
		require.NoError(t, err)
		keys, err := pgx.CollectRows(rows, pgx.RowTo[string])
		require.NoError(t, err)
		return keys
	}
	require.Equal(t, []string{"gave-up-5h", "old-2h", "recent", "undelivered", "unrelayed-6h"}, left(),
		"the two oldest deliveries went first; the given-up and the unrelayed ones stay")
	n, err = b.st.Q.OutboxPurge(b.ctx, dbq.OutboxPurgeParams{Cutoff: cutoff, MaxRows: 10})
	require.NoError(t, err)
	require.EqualValues(t, 1, n)
	require.Equal(t, []string{"gave-up-5h", "recent", "undelivered", "unrelayed-6h"}, left())

	tx, err := b.st.Pool.Begin(b.ctx)
	require.NoError(t, err)
	defer func() { _ = tx.Rollback(b.ctx) }()
	_, err = tx.Exec(b.ctx, "SET LOCAL enable_seqscan = off")
	require.NoError(t, err)
	var plan strings.Builder
	rows, err := tx.Query(b.ctx, `EXPLAIN SELECT o.id FROM outbox o
		WHERE o.delivered_at < $1::timestamptz AND o.gave_up = '{}' AND o.relayed_at IS NOT NULL
		ORDER BY o.delivered_at LIMIT 5000`, cutoff)
	require.NoError(t, err)
	for rows.Next() {
		var line string
		require.NoError(t, rows.Scan(&line))
		plan.WriteString(line + "\n")
	}
	require.NoError(t, rows.Err())
	require.Contains(t, plan.String(), "outbox_purgeable_idx", plan.String())
	require.NotContains(t, plan.String(), "Filter", "the index holds only purgeable rows: none is read to be dropped")
}

// TestOutboxGiveUp: a give-up moves its endpoint from pending to gave_up, and the row has no
// delivery left once the others are delivered; a give-up of an endpoint already delivered to (a
// stale task) records nothing; a later delivery (an archived task run again) clears the give-up;
// and a relay that claims a row a leftover task gave up on leaves that endpoint out of pending.
func TestOutboxGiveUp(t *testing.T) {
	t.Parallel()
	b := setupRecords(t)
	o := store.NewOutbox(b.st, store.BatchOptions{})
	t.Cleanup(o.Close)
	insert := func(key string, relayed bool) int64 {
		var id int64
		q := `INSERT INTO outbox (dedupe_key, event_type, upload_id, bucket, key, data) VALUES ($1, 'upload.valid', gen_random_uuid(), 'b', 'k', '{}') RETURNING id`
		if relayed {
			q = `INSERT INTO outbox (dedupe_key, event_type, upload_id, bucket, key, data, relayed_at, pending)
				VALUES ($1, 'upload.valid', gen_random_uuid(), 'b', 'k', '{}', now(), '{a,b}') RETURNING id`
		}
		require.NoError(t, b.st.Pool.QueryRow(b.ctx, q, key).Scan(&id))
		return id
	}
	gaveUp := func(id int64) []string {
		var g []string
		require.NoError(t, b.st.Pool.QueryRow(b.ctx, "SELECT gave_up FROM outbox WHERE id = $1", id).Scan(&g))
		return g
	}

	row := insert("test:row", true)
	require.NoError(t, o.MarkGaveUp(b.ctx, row, "a"))
	pending, settled := deliveryState(t, b, row)
	require.Equal(t, []string{"b"}, pending)
	require.False(t, settled, "b is still being delivered")
	require.Equal(t, []string{"a"}, gaveUp(row))
	require.NoError(t, o.MarkGaveUp(b.ctx, row, "a"), "recording twice is harmless")
	require.Equal(t, []string{"a"}, gaveUp(row))
	require.NoError(t, o.MarkDelivered(b.ctx, row, "b"))
	require.NoError(t, o.MarkGaveUp(b.ctx, row, "b"), "a stale task of b fails after b was delivered")
	pending, settled = deliveryState(t, b, row)
	require.Empty(t, pending)
	require.True(t, settled, "no delivery left to try")
	require.Equal(t, []string{"a"}, gaveUp(row), "b was delivered: not given up")
	require.NoError(t, o.MarkDelivered(b.ctx, row, "a"))
	require.Empty(t, gaveUp(row), "an archived task run again delivered a")

	// A relay's leftover task gave up on "a" before any relay committed the row.
	leftover := insert("test:leftover", false)
	require.NoError(t, o.MarkGaveUp(b.ctx, leftover, "a"))
	require.NoError(t, b.st.Q.OutboxMarkRelayed(b.ctx, dbq.OutboxMarkRelayedParams{Ids: []int64{leftover}, Pendings: []string{"a,b"}}))
	pending, settled = deliveryState(t, b, leftover)
	require.Equal(t, []string{"b"}, pending, "no task is left for a: pending it would be pending for ever")
	require.False(t, settled)
	require.Equal(t, []string{"a"}, gaveUp(leftover))
	require.NoError(t, o.MarkGaveUp(b.ctx, 1<<40, "a"), "a row purged meanwhile: nothing to record")
}
