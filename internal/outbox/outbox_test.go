package outbox_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/hibiken/asynq"
	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/intakehq/intake/internal/outbox"
	"github.com/intakehq/intake/internal/store"
	"github.com/intakehq/intake/internal/store/dbq"
	"github.com/intakehq/intake/internal/testkit"
	"github.com/intakehq/intake/internal/webhook"
	"github.com/intakehq/intake/pipeline"
	"github.com/intakehq/intake/worker/jobs"
	"github.com/intakehq/intake/worker/tasks"
)

// testBundle is one test's world: a schema, a Redis database, a Standard Webhooks receiver, and
// intake's relay, listener and webhook server over them (testkit.StartNotifications).
type testBundle struct {
	ctx      context.Context
	st       *store.Store
	records  *store.Records
	redis    asynq.RedisClientOpt
	client   *asynq.Client
	recv     *testkit.WebhookReceiver
	reg      *prometheus.Registry
	listener *outbox.Listener
	relay    *outbox.Relay
	log      *slog.Logger
}

// setup starts the notifications with o (retries every 50 ms unless o says otherwise).
func setup(t *testing.T, o testkit.NotificationsOptions) *testBundle {
	t.Helper()
	if testing.Short() {
		t.Skip("needs PostgreSQL and Redis (the local stack)")
	}
	b := &testBundle{ctx: testkit.Context(t), st: testkit.DB(t)}
	b.log = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	b.records = store.NewRecords(b.st)
	o.Log = b.log
	if o.RetryDelay == 0 {
		o.RetryDelay = 50 * time.Millisecond
	}
	n := testkit.StartNotifications(t, b.st, o)
	b.redis, b.client, b.recv, b.reg, b.listener, b.relay = n.Redis, n.Client, n.Receiver, n.Registry, n.Listener, n.Relay
	return b
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}

// intent inserts an upload intent (with metadata) and returns its id.
func (b *testBundle) intent(t *testing.T, key string, mpID *string, metadata string) uuid.UUID {
	t.Helper()
	id := uuid.New()
	var meta any
	if metadata != "" {
		meta = metadata
	}
	method := "put"
	if mpID != nil {
		method = "multipart"
	}
	_, err := b.st.Pool.Exec(b.ctx, `INSERT INTO uploads (id, owner, bucket, key, method, filename, content_type, size,
		multipart_upload_id, metadata, expires_at) VALUES ($1, 'alice', 'b', $2, $3, 'f.txt', 'text/plain', 5, $4, $5, now() + interval '1 hour')`,
		id, key, method, mpID, meta)
	require.NoError(t, err)
	return id
}

// verdict commits a verdict of the intent's object, as the pipeline does.
func (b *testBundle) verdict(t *testing.T, id uuid.UUID, key, status, reason string) {
	t.Helper()
	size := int64(5)
	_, err := b.records.Record(b.ctx, pipeline.Record{
		Bucket: "b", Key: key, Status: status, Reason: reason, ETag: "etag-" + key, Size: &size,
		ContentType: "text/plain", SniffedType: "text/plain; charset=utf-8", Owner: "alice", UploadID: id,
		CompleteIntent: id, EventTime: time.Now(), Observed: true,
	})
	require.NoError(t, err)
}

// outboxRow returns the one notification of upload id.
func (b *testBundle) outboxRow(t *testing.T, id uuid.UUID) dbq.Outbox {
	t.Helper()
	rows, err := testkit.ListOutbox(b.ctx, b.st.Pool, id)
	require.NoError(t, err)
	require.Len(t, rows, 1)
	return rows[0]
}

// body is a notification's webhook body, as the relay builds it.
func body(row dbq.Outbox) []byte {
	return tasks.AppendUploadVerdict(nil, row.EventID.String(), row.EventType, row.CreatedAt, row.Data)
}

// TestDeliverEachOnce: a valid upload, a rejected one and a multipart upload aborted at its
// deadline reach the receiver as exactly those three notifications, each delivered once per
// webhook-id, signed (the receiver checks with the specification's library), with the app's
// metadata; the outbox then holds them as delivered.
func TestDeliverEachOnce(t *testing.T) {
	t.Parallel()
	b := setup(t, testkit.NotificationsOptions{})
	valid := b.intent(t, "u/valid.txt", nil, `{"order": 1}`)
	rejected := b.intent(t, "u/rejected.txt", nil, `{"order": 2}`)
	mp := "mp-upload-1"
	aborted := b.intent(t, "u/big.bin", &mp, `{"order": 3}`)

	b.verdict(t, valid, "u/valid.txt", pipeline.StatusValid, "")
	b.verdict(t, rejected, "u/rejected.txt", pipeline.StatusRejected, pipeline.ReasonSniffMismatch)
	_, err := b.st.Q.RecordMultipartAbort(b.ctx, dbq.RecordMultipartAbortParams{Bucket: "b", Key: "u/big.bin", UploadID: mp, Reason: "deadline", Outcome: "aborted", Settle: true})
	require.NoError(t, err)
	b.verdict(t, valid, "u/valid.txt", pipeline.StatusValid, "") // a duplicate changes nothing

	got := b.recv.WaitDelivered(3, 30*time.Second)
	require.Len(t, got, 3)
	want := map[uuid.UUID]struct {
		typ, reason, meta string
	}{
		valid:    {tasks.EventUploadValid, "", `{"order": 1}`},
		rejected: {tasks.EventUploadRejected, pipeline.ReasonSniffMismatch, `{"order": 2}`},
		aborted:  {tasks.EventUploadAborted, "deadline", `{"order": 3}`},
	}
	for _, w := range got {
		exp, ok := want[w.Verdict.Data.UploadID]
		require.True(t, ok, "unexpected notification %+v", w)
		delete(want, w.Verdict.Data.UploadID)
		require.Equal(t, exp.typ, w.Verdict.Type)
		require.Equal(t, exp.reason, w.Verdict.Data.Reason)
		require.JSONEq(t, exp.meta, string(w.Verdict.Data.Metadata))
		require.Equal(t, 1, w.Attempts, w.Verdict.Type)
		require.Equal(t, 1, w.Delivered, w.Verdict.Type)
		row := b.outboxRow(t, w.Verdict.Data.UploadID)
		require.Equal(t, row.EventID.String(), w.ID, "webhook-id is the notification's id")
	}
	require.Zero(t, b.recv.BadSignatures())
	require.Eventually(t, func() bool {
		for _, id := range []uuid.UUID{valid, rejected, aborted} {
			if r := b.outboxRow(t, id); r.DeliveredAt == nil || len(r.Pending) != 0 {
				return false
			}
		}
		return true
	}, 10*time.Second, 20*time.Millisecond, "the outbox records the deliveries")
	// A delivery is counted just after its row is marked, and a relay's rows just after its commit,
	// which a delivery may outrun: wait for both counts, then hold them exact.
	require.Eventually(t, func() bool {
		return testkit.Metric(t, b.reg, "intake_webhook_deliveries_total", "outcome", webhook.OutcomeDelivered) >= 3 &&
			testkit.Metric(t, b.reg, "intake_outbox_relayed_total") >= 3
	}, 10*time.Second, 20*time.Millisecond, "the deliveries and the relayed rows are counted")
	require.Equal(t, 3.0, testkit.Metric(t, b.reg, "intake_webhook_deliveries_total", "outcome", webhook.OutcomeDelivered))
	require.Equal(t, 3.0, testkit.Metric(t, b.reg, "intake_outbox_relayed_total"))
}

// TestDeliverRetries: the receiver answers 500 to the first 3 attempts, then 200. The notification
// is delivered once, on the 4th attempt, with the same webhook-id each time, and the attempts are
// counted.
func TestDeliverRetries(t *testing.T) {
	t.Parallel()
	b := setup(t, testkit.NotificationsOptions{})
	b.recv.Answer(func(_ string, attempt int) int {
		if attempt <= 3 {
			return http.StatusInternalServerError
		}
		return http.StatusOK
	})
	id := b.intent(t, "u/retry.txt", nil, "")
	b.verdict(t, id, "u/retry.txt", pipeline.StatusValid, "")

	got := b.recv.WaitDelivered(1, 30*time.Second)
	require.Len(t, got, 1)
	require.Equal(t, 4, got[0].Attempts)
	require.Equal(t, 1, got[0].Delivered)
	require.Eventually(t, func() bool {
		return testkit.Metric(t, b.reg, "intake_webhook_deliveries_total", "outcome", webhook.OutcomeDelivered) == 1
	}, 10*time.Second, 20*time.Millisecond)
	require.Equal(t, 3.0, testkit.Metric(t, b.reg, "intake_webhook_attempts_total", "result", webhook.Result5xx))
	require.Equal(t, 1.0, testkit.Metric(t, b.reg, "intake_webhook_attempts_total", "result", webhook.ResultSuccess))
	require.Equal(t, 1.0, testkit.Metric(t, b.reg, "intake_webhook_delivery_attempts"), "one delivered notification observed")
	require.Zero(t, testkit.Metric(t, b.reg, "intake_webhook_deliveries_total", "outcome", webhook.OutcomeGaveUp))
}

// TestBatchSplitsFailures: notifications relayed together go out as one batch task; the receiver
// fails the first attempt of two of them, which go on as tasks of their own and are delivered on
// their retry; every notification is delivered once, and the attempts are counted per
// notification.
func TestBatchSplitsFailures(t *testing.T) {
	t.Parallel()
	b := setup(t, testkit.NotificationsOptions{NoRelay: true})
	failing := map[uuid.UUID]bool{}
	for i := range 6 {
		id := b.intent(t, fmt.Sprintf("u/batch-%d.txt", i), nil, "")
		b.verdict(t, id, fmt.Sprintf("u/batch-%d.txt", i), pipeline.StatusValid, "")
		if i%3 == 0 {
			failing[id] = true
		}
	}
	b.recv.AnswerVerdict(func(v tasks.UploadVerdict, attempt int) int {
		if failing[v.Data.UploadID] && attempt == 1 {
			return http.StatusServiceUnavailable
		}
		return http.StatusNoContent
	})
	n, err := b.relay.RelayOnce(b.ctx)
	require.NoError(t, err)
	require.Equal(t, 6, n)
	got := b.recv.WaitDelivered(6, 60*time.Second)
	for _, w := range got {
		want := 1
		if failing[w.Verdict.Data.UploadID] {
			want = 2
		}
		require.Equal(t, want, w.Attempts, "%s", w.Verdict.Data.Key)
		require.Equal(t, 1, w.Delivered)
	}
	require.Eventually(t, func() bool {
		return testkit.Metric(t, b.reg, "intake_webhook_deliveries_total", "outcome", webhook.OutcomeDelivered) == 6
	}, 10*time.Second, 20*time.Millisecond)
	require.Equal(t, 2.0, testkit.Metric(t, b.reg, "intake_webhook_attempts_total", "result", webhook.Result5xx))
}

// TestRelayAfterCrash: a relay that enqueued a delivery and died before committing (simulated by
// enqueueing the task by hand) leaves the row unrelayed. The delivery runs, posts and records
// itself; the row stays unrelayed and undelivered (its other deliveries may never have been
// enqueued: see OutboxMarkDeliveredBatch), with the endpoint noted as delivered. The next relay
// enqueues no delivery to that endpoint (the first task is gone, so asynq would have taken a new
// one, posting a second time) and relays the row without it (OutboxMarkRelayed): the row is then
// delivered. Before, the relay wrote the endpoint back as pending until a second delivery, and
// when the first task was still there (asynq refusing the same task id, so no second task), for
// ever: store's TestOutboxRelayAfterLeftoverDelivery.
func TestRelayAfterCrash(t *testing.T) {
	t.Parallel()
	b := setup(t, testkit.NotificationsOptions{NoRelay: true})
	id := b.intent(t, "u/crash.txt", nil, "")
	b.verdict(t, id, "u/crash.txt", pipeline.StatusValid, "")
	row := b.outboxRow(t, id)
	task, err := webhook.NewDeliverTask([]webhook.Item{{OutboxID: row.ID, Endpoint: webhook.DefaultEndpoint, Body: body(row)}}, 5*time.Second)
	require.NoError(t, err)
	_, err = b.client.EnqueueContext(b.ctx, task)
	require.NoError(t, err)
	first := b.recv.WaitDelivered(1, 30*time.Second)

	insp := asynq.NewInspector(b.redis)
	t.Cleanup(func() { _ = insp.Close() })
	require.Eventually(t, func() bool {
		_, err := insp.GetTaskInfo(webhook.Queue, webhook.DeliverTaskID(row.ID, webhook.DefaultEndpoint))
		return errors.Is(err, asynq.ErrTaskNotFound)
	}, 30*time.Second, 10*time.Millisecond, "the first task is done")
	// The task ends after its record (webhook.Deliverer.attempt), so the record has landed.
	after := b.outboxRow(t, id)
	require.Nil(t, after.RelayedAt, "the delivery does not relay the row")
	require.Equal(t, []string{webhook.DefaultEndpoint}, after.Delivered, "the delivery recorded itself on the unrelayed row")
	require.Nil(t, after.DeliveredAt, "not delivered before a relay has committed it")
	n, err := b.relay.RelayOnce(b.ctx)
	require.NoError(t, err)
	require.Equal(t, 1, n)
	relayed := b.outboxRow(t, id)
	require.NotNil(t, relayed.RelayedAt)
	require.NotNil(t, relayed.DeliveredAt, "delivered once relayed")
	require.Empty(t, relayed.Pending)
	_, err = insp.GetTaskInfo(webhook.Queue, webhook.DeliverTaskID(row.ID, webhook.DefaultEndpoint))
	require.ErrorIs(t, err, asynq.ErrTaskNotFound, "the relay enqueued no second delivery")
	got := b.recv.Received()
	require.Len(t, got, 1, "one webhook-id")
	require.Equal(t, first[0].ID, got[0].ID)
	require.Equal(t, 1, got[0].Delivered, "delivered once")
	require.NotNil(t, b.outboxRow(t, id).DeliveredAt)
	n, err = b.relay.RelayOnce(b.ctx)
	require.NoError(t, err)
	require.Zero(t, n, "nothing left to relay")
}

// TestDeliveryWaitsForRelayCommit: a delivery that starts while its relay has not committed yet
// (it holds the row) posts, then records itself once the relay commits: delivered once.
func TestDeliveryWaitsForRelayCommit(t *testing.T) {
	t.Parallel()
	b := setup(t, testkit.NotificationsOptions{NoRelay: true})
	id := b.intent(t, "u/early.txt", nil, "")
	b.verdict(t, id, "u/early.txt", pipeline.StatusValid, "")
	row := b.outboxRow(t, id)

	// A relay's transaction: the row claimed, the task enqueued, not committed yet.
	tx, err := b.st.Pool.Begin(b.ctx)
	require.NoError(t, err)
	defer func() { _ = tx.Rollback(context.Background()) }()
	claimed, err := dbq.New(tx).OutboxClaim(b.ctx, 10)
	require.NoError(t, err)
	require.Len(t, claimed, 1)
	task, err := webhook.NewDeliverTask([]webhook.Item{{OutboxID: row.ID, Endpoint: webhook.DefaultEndpoint, Body: body(row)}}, 5*time.Second)
	require.NoError(t, err)
	_, err = b.client.EnqueueContext(b.ctx, task)
	require.NoError(t, err)
	b.recv.WaitDelivered(1, 30*time.Second)
	waitLocked(t, b)
	require.NoError(t, dbq.New(tx).OutboxMarkRelayed(b.ctx, dbq.OutboxMarkRelayedParams{Ids: []int64{row.ID}, Pendings: []string{webhook.DefaultEndpoint}}))
	require.NoError(t, tx.Commit(b.ctx))

	require.Eventually(t, func() bool { return b.outboxRow(t, id).DeliveredAt != nil }, 30*time.Second, 20*time.Millisecond)
	require.Equal(t, 1, b.recv.Received()[0].Delivered)
}

// waitLocked waits until a statement waits for a row lock of the outbox (the delivery's record,
// behind the relay's transaction).
func waitLocked(t *testing.T, b *testBundle) {
	t.Helper()
	require.Eventually(t, func() bool {
		var n int
		err := b.st.Pool.QueryRow(b.ctx, `SELECT count(*) FROM pg_stat_activity
			WHERE wait_event_type = 'Lock' AND query LIKE '%UPDATE outbox%' AND datname = current_database()`).Scan(&n)
		return err == nil && n > 0
	}, 30*time.Second, 10*time.Millisecond, "the delivery's record waits for the relay")
}

// TestVerdictTask: with a notify queue, every notification is also a tasks.TypeUploadVerdict task
// on the app's queue, which an app's own asynq server handles with tasks.ParseUploadVerdict.
func TestVerdictTask(t *testing.T) {
	t.Parallel()
	b := setup(t, testkit.NotificationsOptions{VerdictQueue: "app-uploads", Endpoints: func(string, string) []webhook.EndpointConfig { return nil }})
	id := b.intent(t, "u/app.txt", nil, `{"user": 7}`)

	got := make(chan tasks.UploadVerdict, 4)
	mux := asynq.NewServeMux()
	mux.HandleFunc(tasks.TypeUploadVerdict, func(_ context.Context, t *asynq.Task) error {
		v, err := tasks.ParseUploadVerdict(t.Payload())
		if err != nil {
			return err
		}
		got <- v
		return nil
	})
	app := asynq.NewServer(b.redis, asynq.Config{Queues: map[string]int{"app-uploads": 1}, Concurrency: 1,
		Logger: jobs.NewAsynqLogger(b.log), LogLevel: asynq.WarnLevel})
	require.NoError(t, app.Start(mux))
	t.Cleanup(app.Shutdown)

	b.verdict(t, id, "u/app.txt", pipeline.StatusValid, "")
	var v tasks.UploadVerdict
	select {
	case v = <-got:
	case <-b.ctx.Done():
		t.Fatal("no verdict task")
	}
	require.Equal(t, tasks.EventUploadValid, v.Type)
	require.Equal(t, id, v.Data.UploadID)
	require.JSONEq(t, `{"user": 7}`, string(v.Data.Metadata))
	require.Equal(t, b.outboxRow(t, id).EventID.String(), v.ID)
	require.Eventually(t, func() bool { return b.outboxRow(t, id).DeliveredAt != nil }, 10*time.Second, 20*time.Millisecond,
		"without webhook endpoints the row is done once relayed")
}

// TestDeliverRefusesPrivate: without INTAKE_WEBHOOK_ALLOW_PRIVATE, an endpoint whose name resolves
// to loopback when the request is made (the attacker controls the name's DNS, or the endpoint in
// the policy file) gets no request: the delivery is refused at connect time, recorded as given up
// and archived at once, not retried.
func TestDeliverRefusesPrivate(t *testing.T) {
	t.Parallel()
	b := setup(t, testkit.NotificationsOptions{RefusePrivate: true, Endpoints: func(recv, secret string) []webhook.EndpointConfig {
		port := recv[len("http://127.0.0.1:"):]
		return []webhook.EndpointConfig{{Name: "internal", URL: "http://localhost:" + port, Secret: secret}}
	}})
	id := b.intent(t, "u/ssrf.txt", nil, "")
	b.verdict(t, id, "u/ssrf.txt", pipeline.StatusValid, "")
	require.Eventually(t, func() bool {
		return testkit.Metric(t, b.reg, "intake_webhook_deliveries_total", "endpoint", "internal", "outcome", webhook.OutcomeGaveUp) == 1
	}, 30*time.Second, 20*time.Millisecond)
	require.Equal(t, 1.0, testkit.Metric(t, b.reg, "intake_webhook_attempts_total", "result", webhook.ResultRefused))
	insp := asynq.NewInspector(b.redis)
	t.Cleanup(func() { _ = insp.Close() })
	archived, err := insp.ListArchivedTasks(webhook.Queue)
	require.NoError(t, err)
	require.Len(t, archived, 1, "archived: `intake jobs run` re-runs it once the URL is fixed")
	require.Empty(t, b.recv.Received(), "the receiver on loopback got nothing")
	row := b.outboxRow(t, id)
	require.Equal(t, []string{"internal"}, row.GaveUp, "the notification records the give-up: `intake outbox redeliver` sends it again")
	require.Empty(t, row.Pending)
}

// TestListenerWakesOnCommit: a subscriber is woken by the commit of its upload's notification and
// not by a rolled-back one (notifications reach listeners in commit order, so once a later commit
// was seen, the rolled-back one would have been seen first).
func TestListenerWakesOnCommit(t *testing.T) {
	t.Parallel()
	b := setup(t, testkit.NotificationsOptions{NoRelay: true})
	rolledBack, later := b.intent(t, "u/rb.txt", nil, ""), b.intent(t, "u/later.txt", nil, "")
	rbWake, stopRB := b.listener.Subscribe(rolledBack)
	defer stopRB()
	laterWake, stopLater := b.listener.Subscribe(later)
	defer stopLater()

	tx, err := b.st.Pool.Begin(b.ctx)
	require.NoError(t, err)
	_, err = tx.Exec(b.ctx, `INSERT INTO outbox (dedupe_key, event_type, upload_id, bucket, key, data)
		VALUES ('test:rb', 'upload.valid', $1, 'b', 'u/rb.txt', '{}')`, rolledBack)
	require.NoError(t, err)
	require.NoError(t, tx.Rollback(b.ctx))
	b.verdict(t, later, "u/later.txt", pipeline.StatusValid, "")

	select {
	case <-laterWake:
	case <-b.ctx.Done():
		t.Fatal("the committed notification woke nobody")
	}
	select {
	case <-rbWake:
		t.Fatal("a rolled-back notification woke its subscriber")
	default:
	}
}

// TestBacklogAndPurge: the backlog gauges show undelivered notifications; delivered ones older
// than the retention are purged, undelivered ones never.
func TestBacklogAndPurge(t *testing.T) {
	t.Parallel()
	b := setup(t, testkit.NotificationsOptions{NoRelay: true})
	old := b.intent(t, "u/old.txt", nil, "")
	pending := b.intent(t, "u/pending.txt", nil, "")
	b.verdict(t, old, "u/old.txt", pipeline.StatusValid, "")
	b.verdict(t, pending, "u/pending.txt", pipeline.StatusValid, "")
	_, err := b.st.Pool.Exec(b.ctx, `UPDATE outbox SET created_at = now() - interval '3 days', relayed_at = now(), pending = '{}',
		delivered_at = now() - interval '2 days' WHERE upload_id = $1`, old)
	require.NoError(t, err)
	_, err = b.st.Pool.Exec(b.ctx, `UPDATE outbox SET created_at = now() - interval '3 days' WHERE upload_id = $1`, pending)
	require.NoError(t, err)

	backlog, err := b.st.Q.OutboxBacklog(b.ctx)
	require.NoError(t, err)
	require.InDelta(t, (72 * time.Hour).Seconds(), backlog.OldestAgeSeconds, 60)
	require.Equal(t, int64(1), backlog.Unrelayed)
	require.Equal(t, int64(1), b.relay.Purge(b.ctx))
	rows, err := testkit.ListOutbox(b.ctx, b.st.Pool, old)
	require.NoError(t, err)
	require.Empty(t, rows)
	b.outboxRow(t, pending)
}

// TestHousekeepingDuringALongDrain: while every relay batch comes back full (a long drain), the
// purge and the backlog gauges still run on their schedule; before, the loop went straight back
// to relaying and reached neither until the drain ended, freezing the gauge IntakeWebhooksBehind
// reads.
func TestHousekeepingDuringALongDrain(t *testing.T) {
	t.Parallel()
	b := setup(t, testkit.NotificationsOptions{NoRelay: true})
	// 20,000 rows to relay one per transaction (no endpoint, no verdict queue: nothing to enqueue),
	// and one delivered notification past the retention.
	_, err := b.st.Pool.Exec(b.ctx, `INSERT INTO outbox (dedupe_key, event_type, upload_id, bucket, key, data)
		SELECT 'drain:' || g, 'upload.valid', gen_random_uuid(), 'b', 'k' || g, '{}' FROM generate_series(1, 20000) AS g`)
	require.NoError(t, err)
	_, err = b.st.Pool.Exec(b.ctx, `INSERT INTO outbox (dedupe_key, event_type, upload_id, bucket, key, data, relayed_at, pending, delivered_at)
		VALUES ('old', 'upload.valid', gen_random_uuid(), 'b', 'old', '{}', now() - interval '3 days', '{}', now() - interval '2 days')`)
	require.NoError(t, err)
	reg := prometheus.NewRegistry()
	relay, err := outbox.NewRelay(outbox.RelayConfig{
		Pool: b.st.Pool, Client: b.client, BatchSize: 1, Retention: 24 * time.Hour,
		BacklogInterval: 50 * time.Millisecond, PurgeInterval: 50 * time.Millisecond, Registerer: reg, Log: b.log,
	})
	require.NoError(t, err)
	unrelayed := func() int {
		var n int
		require.NoError(t, b.st.Pool.QueryRow(b.ctx, `SELECT count(*) FROM outbox WHERE relayed_at IS NULL`).Scan(&n))
		return n
	}
	testkit.Serve(t, relay.Run)
	// Run reads the gauges once before relaying (20,000); a refresh during the drain reads fewer.
	// Both ticks may be due at the drain's first full batch, and one runs per batch: wait for both.
	var gauge float64
	require.Eventually(t, func() bool {
		gauge = testkit.Metric(t, reg, "intake_outbox_unrelayed")
		return testkit.Metric(t, reg, "intake_outbox_purged_total") >= 1 && gauge < 20000
	}, 60*time.Second, 20*time.Millisecond, "the old notification was never purged, or the gauge never refreshed")
	left := unrelayed()
	t.Logf("purged, and the gauge read %v, with %d rows still to relay", gauge, left)
	require.Positive(t, left, "the purge and the refresh ran only once the drain was over")
}

// refusingRedis is an asynq client whose every enqueue fails, as Redis refusing writes (out of
// memory with noeviction, a read-only replica) while its reads, and the readiness check, pass.
type refusingRedis struct{}

func (refusingRedis) EnqueueContext(context.Context, *asynq.Task, ...asynq.Option) (*asynq.TaskInfo, error) {
	return nil, errors.New("OOM command not allowed when used memory > 'maxmemory'")
}

// routeAll routes every key to the same endpoints.
type routeAll []string

func (r routeAll) For(string) []string { return r }

// TestHousekeepingWhileRelayFails: while every relay fails (Redis refusing writes), the backlog
// gauges and the purge still run on their schedule during the backoff. Before, the loop went from
// the backoff straight back to relaying: the oldest-undelivered gauge kept its value from before
// the outage (IntakeWebhooksBehind never fired) and nothing was purged.
func TestHousekeepingWhileRelayFails(t *testing.T) {
	t.Parallel()
	b := setup(t, testkit.NotificationsOptions{NoRelay: true})
	// One notification to relay, and one delivered notification past the retention.
	_, err := b.st.Pool.Exec(b.ctx, `INSERT INTO outbox (dedupe_key, event_type, upload_id, bucket, key, data)
		VALUES ('stuck', 'upload.valid', gen_random_uuid(), 'b', 'stuck', '{}')`)
	require.NoError(t, err)
	_, err = b.st.Pool.Exec(b.ctx, `INSERT INTO outbox (dedupe_key, event_type, upload_id, bucket, key, data, relayed_at, pending, delivered_at)
		VALUES ('old', 'upload.valid', gen_random_uuid(), 'b', 'old', '{}', now() - interval '3 days', '{}', now() - interval '2 days')`)
	require.NoError(t, err)
	reg := prometheus.NewRegistry()
	relay, err := outbox.NewRelay(outbox.RelayConfig{
		Pool: b.st.Pool, Client: refusingRedis{}, Endpoints: routeAll{webhook.DefaultEndpoint}, Retention: 24 * time.Hour,
		BacklogInterval: 50 * time.Millisecond, PurgeInterval: 50 * time.Millisecond, Registerer: reg, Log: b.log,
	})
	require.NoError(t, err)
	testkit.Serve(t, relay.Run)
	// Run reads the gauges once before relaying; once a relay has failed, the notification ages an
	// hour, which only a refresh during the outage can show.
	require.Eventually(t, func() bool { return testkit.Metric(t, reg, "intake_outbox_relay_errors_total") >= 1 },
		30*time.Second, 10*time.Millisecond, "the relay never failed")
	_, err = b.st.Pool.Exec(b.ctx, `UPDATE outbox SET created_at = now() - interval '1 hour' WHERE dedupe_key = 'stuck'`)
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		return testkit.Metric(t, reg, "intake_outbox_oldest_undelivered_seconds") >= 3000 &&
			testkit.Metric(t, reg, "intake_outbox_purged_total") >= 1
	}, 10*time.Second, 20*time.Millisecond, "the gauge froze, or nothing was purged, while the relay failed")
	require.EqualValues(t, 1, testkit.Metric(t, reg, "intake_outbox_unrelayed"))
	var relayed bool
	require.NoError(t, b.st.Pool.QueryRow(b.ctx, `SELECT relayed_at IS NOT NULL FROM outbox WHERE dedupe_key = 'stuck'`).Scan(&relayed))
	require.False(t, relayed, "a failed relay commits nothing")
}

// TestRelayBesideALeftoverBatch: relay P claimed r1, r2 and r4 (r3 was not committed yet),
// enqueued their batch and failed to commit; the task stays queued (here due in an hour). r3
// commits; relay Q holds r2, so P's retry claims r1, r3 and r4: the same first and last row and
// size as the leftover batch. Before, the two batches had the same task ID, the enqueue's conflict
// was taken for "already there", and r3 was recorded relayed with no task to deliver it.
func TestRelayBesideALeftoverBatch(t *testing.T) {
	t.Parallel()
	b := setup(t, testkit.NotificationsOptions{NoRelay: true})
	ups := make([]uuid.UUID, 4)
	rows := make([]dbq.Outbox, 4)
	for i := range ups {
		key := fmt.Sprintf("u/leftover-%d.txt", i+1)
		ups[i] = b.intent(t, key, nil, "")
		b.verdict(t, ups[i], key, pipeline.StatusValid, "")
		rows[i] = b.outboxRow(t, ups[i])
	}
	item := func(row dbq.Outbox) webhook.Item {
		return webhook.Item{OutboxID: row.ID, Endpoint: webhook.DefaultEndpoint, Body: body(row)}
	}
	leftover, err := webhook.NewDeliverTask([]webhook.Item{item(rows[0]), item(rows[1]), item(rows[3])}, 5*time.Second)
	require.NoError(t, err)
	_, err = b.client.EnqueueContext(b.ctx, leftover, asynq.ProcessIn(time.Hour))
	require.NoError(t, err)

	q, err := b.st.Pool.Begin(b.ctx) // relay Q, holding r2
	require.NoError(t, err)
	defer func() { _ = q.Rollback(context.Background()) }()
	_, err = q.Exec(b.ctx, `SELECT 1 FROM outbox WHERE id = $1 FOR UPDATE`, rows[1].ID)
	require.NoError(t, err)
	n, err := b.relay.RelayOnce(b.ctx)
	require.NoError(t, err)
	require.Equal(t, 3, n, "r1, r3 and r4")
	require.NoError(t, q.Rollback(b.ctx))
	n, err = b.relay.RelayOnce(b.ctx)
	require.NoError(t, err)
	require.Equal(t, 1, n, "r2")

	require.Eventually(t, func() bool {
		for _, id := range ups {
			if b.outboxRow(t, id).DeliveredAt == nil {
				return false
			}
		}
		return true
	}, 30*time.Second, 20*time.Millisecond, "a notification was relayed without a task to deliver it")
	got := b.recv.Received()
	require.Len(t, got, 4)
	for _, w := range got {
		require.Equal(t, 1, w.Delivered, "%s: the leftover batch is not due yet", w.Verdict.Data.Key)
	}
}

// refusingVerdicts enqueues through an asynq client, except the tasks.TypeUploadVerdict tasks while
// refuse is set (the app's queue refusing writes): every relay then fails after enqueueing the
// webhook deliveries.
type refusingVerdicts struct {
	client *asynq.Client
	refuse atomic.Bool
}

func (r *refusingVerdicts) EnqueueContext(ctx context.Context, t *asynq.Task, opts ...asynq.Option) (*asynq.TaskInfo, error) {
	if t.Type() == tasks.TypeUploadVerdict && r.refuse.Load() {
		return nil, errors.New("the verdict queue refuses writes")
	}
	return r.client.EnqueueContext(ctx, t, opts...)
}

// TestRelayFailingAfterSomeEnqueues: every relay enqueues the row's webhook delivery, then fails
// to enqueue its verdict task and rolls back. The first delivery posts and records itself on the
// unrelayed row; the relays after it enqueue no delivery to that endpoint again. The row stays
// undelivered while unrelayed (the app's verdict task was never enqueued): the backlog gauge shows
// its age, and the purge keeps it. Once the verdict queue takes writes again, the relay commits
// the row, which is then delivered. Before, every failing relay enqueued a new task (asynq frees a
// finished task's ID) and posted the same webhook-id again, every delivery set delivered_at on the
// unrelayed row, the gauge read 0, and the purge deleted the row after the retention: its verdict
// task was never sent.
func TestRelayFailingAfterSomeEnqueues(t *testing.T) {
	t.Parallel()
	b := setup(t, testkit.NotificationsOptions{NoRelay: true})
	id := b.intent(t, "u/partial.txt", nil, "")
	b.verdict(t, id, "u/partial.txt", pipeline.StatusValid, "")
	row := b.outboxRow(t, id)
	client := &refusingVerdicts{client: b.client}
	client.refuse.Store(true)
	const verdicts = "app-partial"
	relay, err := outbox.NewRelay(outbox.RelayConfig{
		Pool: b.st.Pool, Client: client, Endpoints: routeAll{webhook.DefaultEndpoint}, VerdictQueue: verdicts,
		Retention: time.Nanosecond, Registerer: prometheus.NewRegistry(), Log: b.log,
	})
	require.NoError(t, err)
	insp := asynq.NewInspector(b.redis)
	t.Cleanup(func() { _ = insp.Close() })
	noDelivery := func() bool {
		_, err := insp.GetTaskInfo(webhook.Queue, webhook.DeliverTaskID(row.ID, webhook.DefaultEndpoint))
		return errors.Is(err, asynq.ErrTaskNotFound)
	}

	for i := range 4 {
		_, err := relay.RelayOnce(b.ctx)
		require.ErrorContains(t, err, "the verdict queue refuses writes", "relay %d", i+1)
		// A task's record lands before it ends (webhook.Deliverer.attempt).
		require.Eventually(t, noDelivery, 30*time.Second, 10*time.Millisecond, "relay %d: its delivery is done", i+1)
	}
	got := b.recv.Received()
	require.Len(t, got, 1)
	require.Equal(t, 1, got[0].Delivered, "posted once, not once per failed relay")
	left := b.outboxRow(t, id)
	require.Nil(t, left.RelayedAt)
	require.Equal(t, []string{webhook.DefaultEndpoint}, left.Delivered)
	require.Nil(t, left.DeliveredAt, "not delivered: the verdict task was never enqueued")

	_, err = b.st.Pool.Exec(b.ctx, `UPDATE outbox SET created_at = now() - interval '1 hour' WHERE id = $1`, row.ID)
	require.NoError(t, err)
	status, err := outbox.ReadStatus(b.ctx, b.st.Pool)
	require.NoError(t, err)
	require.EqualValues(t, 1, status.Unrelayed)
	require.Greater(t, status.OldestUndeliveredSeconds, 3000.0, "the backlog gauge shows the unrelayed notification")
	require.Zero(t, relay.Purge(b.ctx), "an unrelayed notification is not purged")
	b.outboxRow(t, id)

	client.refuse.Store(false)
	n, err := relay.RelayOnce(b.ctx)
	require.NoError(t, err)
	require.Equal(t, 1, n)
	relayed := b.outboxRow(t, id)
	require.NotNil(t, relayed.RelayedAt)
	require.Empty(t, relayed.Pending)
	require.NotNil(t, relayed.DeliveredAt, "relayed, with nothing left to deliver")
	_, err = insp.GetTaskInfo(verdicts, row.EventID.String())
	require.NoError(t, err, "the verdict task is enqueued")
	require.True(t, noDelivery(), "no delivery enqueued again")
	require.Equal(t, 1, b.recv.Received()[0].Delivered)
}

// TestRelayTimesOutOnAHungDatabase: while PostgreSQL does not answer the relay's statements (here,
// a transaction holds the outbox locked), the relay's transactions and the gauges' queries time
// out: the relay counts its failures and keeps its schedule, and relays once PostgreSQL answers
// again. Before, nothing bounded them: the relay's loop waited for ever on its first query, and
// the gauges IntakeWebhooksBehind reads froze.
func TestRelayTimesOutOnAHungDatabase(t *testing.T) {
	t.Parallel()
	b := setup(t, testkit.NotificationsOptions{NoRelay: true})
	id := b.intent(t, "u/hung.txt", nil, "")
	b.verdict(t, id, "u/hung.txt", pipeline.StatusValid, "")
	lock, err := b.st.Pool.Begin(b.ctx)
	require.NoError(t, err)
	defer func() { _ = lock.Rollback(context.Background()) }()
	_, err = lock.Exec(b.ctx, "LOCK TABLE outbox IN ACCESS EXCLUSIVE MODE")
	require.NoError(t, err)

	reg := prometheus.NewRegistry()
	relay, err := outbox.NewRelay(outbox.RelayConfig{
		Pool: b.st.Pool, Client: b.client, Endpoints: routeAll{webhook.DefaultEndpoint}, Timeout: 200 * time.Millisecond,
		BacklogInterval: 50 * time.Millisecond, PurgeInterval: 50 * time.Millisecond, PollInterval: 50 * time.Millisecond,
		Registerer: reg, Log: b.log,
	})
	require.NoError(t, err)
	testkit.Serve(t, relay.Run)
	require.Eventually(t, func() bool { return testkit.Metric(t, reg, "intake_outbox_relay_errors_total") >= 2 },
		20*time.Second, 20*time.Millisecond, "the relay waits on the locked outbox")
	require.NoError(t, lock.Rollback(b.ctx))
	require.Eventually(t, func() bool { return b.outboxRow(t, id).RelayedAt != nil }, 30*time.Second, 20*time.Millisecond,
		"relayed once PostgreSQL answers")
	b.recv.WaitDelivered(1, 30*time.Second)
}

// TestListenerReconnectsPromptly: the listener's connection is cut again and again (PostgreSQL
// restarts, a proxy dropping connections); each time the previous connection had listened, so the
// listener reconnects after the first backoff step and wakes its subscribers within moments.
// Before, the backoff kept doubling across connections that had worked: the sixth loss waited
// 3.2 s, and every later one 5 s, delaying the relay's and the long polls' wake-ups.
func TestListenerReconnectsPromptly(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("needs PostgreSQL (the local stack)")
	}
	ctx := testkit.Context(t)
	st := testkit.DB(t)
	l := outbox.NewListener(st.Pool, nil)
	wake, stop := l.SubscribeAll()
	defer stop()
	testkit.Serve(t, l.Run)
	woken := func(what string) time.Duration {
		start := time.Now()
		select {
		case <-wake:
		case <-time.After(30 * time.Second):
			t.Fatalf("%s: not woken", what)
		}
		return time.Since(start)
	}
	woken("first connection")
	for i := range 7 {
		var cut int
		require.NoError(t, st.Pool.QueryRow(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
			WHERE query = $1 AND pid <> pg_backend_pid()`, "LISTEN "+pgx.Identifier{l.Channel()}.Sanitize()).Scan(&cut))
		require.Positive(t, cut, "the listening connection")
		took := woken(fmt.Sprintf("reconnection %d", i+1))
		require.Less(t, took, 2*time.Second, "reconnection %d", i+1)
	}
}

// refusingDeliveries enqueues through an asynq client, except the webhook delivery tasks while
// refuse is set: every relay then fails after enqueueing the verdict task.
type refusingDeliveries struct {
	client *asynq.Client
	refuse atomic.Bool
}

func (r *refusingDeliveries) EnqueueContext(ctx context.Context, t *asynq.Task, opts ...asynq.Option) (*asynq.TaskInfo, error) {
	if t.Type() == webhook.TypeDeliver && r.refuse.Load() {
		return nil, errors.New("the webhook queue refuses writes")
	}
	return r.client.EnqueueContext(ctx, t, opts...)
}

// TestVerdictTaskEnqueuedOnceAcrossFailedRelays: a relay enqueues a notification's verdict task,
// fails to enqueue its webhook delivery and rolls back; the app's worker runs the verdict task.
// The relay's retries (one failing again, one committing) do not enqueue it again: asynq keeps the
// task run, under its ID, for the verdict retention, and refuses the same task. Before, asynq
// deleted the task once run (no retention), its ID was free, and every retry of the relay enqueued
// it anew: the app ran the same verdict once per relay attempt.
func TestVerdictTaskEnqueuedOnceAcrossFailedRelays(t *testing.T) {
	t.Parallel()
	b := setup(t, testkit.NotificationsOptions{NoRelay: true})
	id := b.intent(t, "u/verdict-once.txt", nil, "")
	b.verdict(t, id, "u/verdict-once.txt", pipeline.StatusValid, "")
	row := b.outboxRow(t, id)
	const queue = "app-once"
	client := &refusingDeliveries{client: b.client}
	client.refuse.Store(true)
	relay, err := outbox.NewRelay(outbox.RelayConfig{
		Pool: b.st.Pool, Client: client, Endpoints: routeAll{webhook.DefaultEndpoint}, VerdictQueue: queue,
		Registerer: prometheus.NewRegistry(), Log: b.log,
	})
	require.NoError(t, err)

	var runs atomic.Int32
	mux := asynq.NewServeMux()
	mux.HandleFunc(tasks.TypeUploadVerdict, func(context.Context, *asynq.Task) error {
		runs.Add(1)
		return nil
	})
	app := asynq.NewServer(b.redis, asynq.Config{Queues: map[string]int{queue: 1}, Concurrency: 1,
		Logger: jobs.NewAsynqLogger(b.log), LogLevel: asynq.WarnLevel})
	require.NoError(t, app.Start(mux))
	var stopApp sync.Once
	t.Cleanup(func() { stopApp.Do(app.Shutdown) })
	insp := asynq.NewInspector(b.redis)
	t.Cleanup(func() { _ = insp.Close() })

	_, err = relay.RelayOnce(b.ctx)
	require.ErrorContains(t, err, "the webhook queue refuses writes")
	require.Eventually(t, func() bool {
		if runs.Load() == 0 {
			return false
		}
		info, err := insp.GetTaskInfo(queue, row.EventID.String())
		return errors.Is(err, asynq.ErrTaskNotFound) || (err == nil && info.State == asynq.TaskStateCompleted)
	}, 30*time.Second, 10*time.Millisecond, "the app ran the verdict task")
	// From here a verdict task enqueued again would wait, pending, for all to see.
	stopApp.Do(app.Shutdown)

	_, err = relay.RelayOnce(b.ctx)
	require.ErrorContains(t, err, "the webhook queue refuses writes", "a second failing relay")
	client.refuse.Store(false)
	n, err := relay.RelayOnce(b.ctx)
	require.NoError(t, err)
	require.Equal(t, 1, n)
	require.NotNil(t, b.outboxRow(t, id).RelayedAt)

	info, err := insp.GetTaskInfo(queue, row.EventID.String())
	require.NoError(t, err, "the verdict task run is kept")
	require.Equal(t, asynq.TaskStateCompleted, info.State, "the verdict task was not enqueued again")
	require.Equal(t, outbox.DefaultVerdictRetention, info.Retention)
	pending, err := insp.ListPendingTasks(queue)
	require.NoError(t, err)
	require.Empty(t, pending)
	require.EqualValues(t, 1, runs.Load())
	b.recv.WaitDelivered(1, 30*time.Second)
}

// purgeable inserts n notifications relayed and delivered two days ago (one statement).
func purgeable(t *testing.T, b *testBundle, n int) {
	t.Helper()
	_, err := b.st.Pool.Exec(b.ctx, `INSERT INTO outbox (dedupe_key, event_type, upload_id, bucket, key, data, relayed_at, pending, delivered_at)
		SELECT 'old:' || g, 'upload.valid', gen_random_uuid(), 'b', 'k' || g, '{}', now() - interval '2 days', '{}', now() - interval '2 days'
		FROM generate_series(1, $1::int) AS g`, n)
	require.NoError(t, err)
}

// outboxRows counts the outbox's rows.
func outboxRows(t *testing.T, b *testBundle) int {
	t.Helper()
	var n int
	require.NoError(t, b.st.Pool.QueryRow(b.ctx, `SELECT count(*) FROM outbox`).Scan(&n))
	return n
}

// TestPurgeClearsABacklogPastTheOldCap: 105,001 delivered notifications past the retention are
// all deleted by one purge, which goes on while its batches come back full (here with a budget
// it does not reach). Before, a purge stopped after 20 batches of 5,000 rows: at most 100,000 a
// minute, about 1,667 a second, less than the relay can deliver.
func TestPurgeClearsABacklogPastTheOldCap(t *testing.T) {
	t.Parallel()
	b := setup(t, testkit.NotificationsOptions{NoRelay: true})
	const backlog = 105_001
	purgeable(t, b, backlog)
	reg := prometheus.NewRegistry()
	relay, err := outbox.NewRelay(outbox.RelayConfig{
		Pool: b.st.Pool, Client: b.client, Retention: 24 * time.Hour, PurgeBudget: time.Hour, Registerer: reg, Log: b.log,
	})
	require.NoError(t, err)
	start := time.Now()
	require.EqualValues(t, backlog, relay.Purge(b.ctx))
	t.Logf("purged %d rows in %s", backlog, time.Since(start))
	require.Zero(t, outboxRows(t, b))
	require.EqualValues(t, backlog, testkit.Metric(t, reg, "intake_outbox_purged_total"))
}

// TestPurgeStopsAtItsBudget: a purge whose budget has run out after its first batch stops there
// (a batch started is finished): the next purges take the rest, and the last, finding fewer rows
// than a batch, stops on its own.
func TestPurgeStopsAtItsBudget(t *testing.T) {
	t.Parallel()
	b := setup(t, testkit.NotificationsOptions{NoRelay: true})
	purgeable(t, b, 12_000)
	relay, err := outbox.NewRelay(outbox.RelayConfig{
		Pool: b.st.Pool, Client: b.client, Retention: 24 * time.Hour, PurgeBudget: time.Nanosecond,
		Registerer: prometheus.NewRegistry(), Log: b.log,
	})
	require.NoError(t, err)
	require.EqualValues(t, 5000, relay.Purge(b.ctx))
	require.Equal(t, 7000, outboxRows(t, b))
	require.EqualValues(t, 5000, relay.Purge(b.ctx))
	require.EqualValues(t, 2000, relay.Purge(b.ctx))
	require.Zero(t, outboxRows(t, b))
}
