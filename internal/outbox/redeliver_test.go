package outbox_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/hibiken/asynq"
	"github.com/stretchr/testify/require"

	"github.com/intakehq/intake/internal/outbox"
	"github.com/intakehq/intake/internal/testkit"
	"github.com/intakehq/intake/internal/webhook"
	"github.com/intakehq/intake/pipeline"
)

// failAfter is an asynq client that fails every enqueue after the first n, as a redeliver that
// dies part-way through its batch: its transaction rolls back, the tasks already enqueued stay.
type failAfter struct {
	outbox.Enqueuer
	n atomic.Int64
}

func (f *failAfter) EnqueueContext(ctx context.Context, t *asynq.Task, opts ...asynq.Option) (*asynq.TaskInfo, error) {
	if f.n.Add(-1) < 0 {
		return nil, errors.New("redeliver died")
	}
	return f.Enqueuer.EnqueueContext(ctx, t, opts...)
}

// TestRedeliverGivenUp: a receiver that fails every attempt for the whole retry schedule (the
// production MaxRetry, short delays) makes intake give up 5 notifications. Each row then records
// the endpoint as given up and has no delivery in progress (the backlog alert's gauge reads 0),
// intake_outbox_gave_up counts them, and the purge keeps them. Once the receiver is fixed, a
// redeliver that dies after 2 enqueues changes no row; run again, it sends each notification once
// more under its webhook-id: each is delivered exactly once, the rows are delivered, the gauge
// falls to 0, and a third run finds nothing.
func TestRedeliverGivenUp(t *testing.T) {
	t.Parallel()
	b := setup(t, testkit.NotificationsOptions{BacklogInterval: 50 * time.Millisecond})
	var fixed atomic.Bool
	b.recv.Answer(func(string, int) int {
		if fixed.Load() {
			return http.StatusNoContent
		}
		return http.StatusBadGateway
	})
	const n = 5
	ids := make([]uuid.UUID, n)
	for i := range ids {
		key := fmt.Sprintf("u/gave-up-%d.txt", i)
		ids[i] = b.intent(t, key, nil, "")
		b.verdict(t, ids[i], key, pipeline.StatusValid, "")
	}
	require.Eventually(t, func() bool {
		return testkit.Metric(t, b.reg, "intake_webhook_deliveries_total", "outcome", webhook.OutcomeGaveUp) == n
	}, 120*time.Second, 50*time.Millisecond, "the deliveries were never given up")
	attempts := map[string]int{}
	for _, w := range b.recv.Received() {
		// A task's 22 attempts, and one more for a notification first tried in a batch.
		require.GreaterOrEqual(t, w.Attempts, webhook.MaxRetry+1, "the whole schedule was tried")
		require.LessOrEqual(t, w.Attempts, webhook.MaxRetry+2)
		require.Zero(t, w.Delivered)
		attempts[w.ID] = w.Attempts
	}
	for _, id := range ids {
		row := b.outboxRow(t, id)
		require.Equal(t, []string{webhook.DefaultEndpoint}, row.GaveUp)
		require.Empty(t, row.Pending)
		require.NotNil(t, row.DeliveredAt, "no delivery left in progress")
	}
	require.Eventually(t, func() bool {
		return testkit.Metric(t, b.reg, "intake_outbox_gave_up", "endpoint", webhook.DefaultEndpoint) == n
	}, 10*time.Second, 20*time.Millisecond)
	status, err := outbox.ReadStatus(b.ctx, b.st.Pool)
	require.NoError(t, err)
	require.Zero(t, status.OldestUndeliveredSeconds, "given up is not in progress: IntakeWebhooksBehind resolves")
	require.Len(t, status.GaveUp, 1)
	require.EqualValues(t, n, status.GaveUp[0].Notifications)
	_, err = b.st.Pool.Exec(b.ctx, `UPDATE outbox SET delivered_at = now() - interval '3 days'`)
	require.NoError(t, err)
	require.Zero(t, b.relay.Purge(b.ctx), "the purge keeps given-up notifications")

	fixed.Store(true)
	dry, err := outbox.Redeliver(b.ctx, b.st.Pool, b.client, outbox.RedeliverOptions{DryRun: true})
	require.NoError(t, err)
	require.Equal(t, outbox.RedeliverResult{Notifications: n, Deliveries: map[string]int{webhook.DefaultEndpoint: n}, DryRun: true}, dry)
	insp := asynq.NewInspector(b.redis)
	t.Cleanup(func() { _ = insp.Close() })
	dying := &failAfter{Enqueuer: b.client}
	dying.n.Store(2)
	_, err = outbox.Redeliver(b.ctx, b.st.Pool, dying, outbox.RedeliverOptions{Tasks: insp})
	require.ErrorContains(t, err, "redeliver died")
	for _, id := range ids {
		require.Zero(t, b.outboxRow(t, id).Redeliveries, "the dead run committed nothing")
	}
	res, err := outbox.Redeliver(b.ctx, b.st.Pool, b.client, outbox.RedeliverOptions{Tasks: insp})
	require.NoError(t, err)
	require.LessOrEqual(t, res.Notifications, n, "the 2 tasks of the dead run may have delivered theirs already")
	require.GreaterOrEqual(t, res.Notifications, n-2)

	got := b.recv.WaitDelivered(n, 30*time.Second)
	require.Len(t, got, n)
	require.Eventually(t, func() bool {
		for _, id := range ids {
			if row := b.outboxRow(t, id); row.DeliveredAt == nil || len(row.GaveUp) != 0 || len(row.Pending) != 0 {
				return false
			}
		}
		return true
	}, 10*time.Second, 20*time.Millisecond, "the redeliveries are recorded")
	// Every task has run (the rows are delivered); a duplicate would have posted by now.
	require.Eventually(t, func() bool {
		q, err := insp.GetQueueInfo(webhook.Queue)
		return err == nil && q.Pending+q.Active+q.Scheduled+q.Retry == 0
	}, 10*time.Second, 20*time.Millisecond)
	for _, w := range b.recv.Received() {
		require.Equal(t, 1, w.Delivered, "each notification delivered exactly once, under its webhook-id")
		require.Equal(t, attempts[w.ID]+1, w.Attempts, "one more attempt: the redelivery")
	}
	require.Eventually(t, func() bool {
		return testkit.Metric(t, b.reg, "intake_outbox_gave_up", "endpoint", webhook.DefaultEndpoint) == 0
	}, 10*time.Second, 20*time.Millisecond, "the gauge falls back to 0 (an alert on it resolves)")
	again, err := outbox.Redeliver(b.ctx, b.st.Pool, b.client, outbox.RedeliverOptions{Tasks: insp})
	require.NoError(t, err)
	require.Zero(t, again.Notifications)
}

// TestRedeliverStuck: Redis loses the delivery tasks of relayed notifications (a restart without
// persistence) while their receiver fails: the rows stay pending with no task left. A plain
// redeliver sends nothing (nothing was given up); with StuckBefore it sends the stuck deliveries
// again and each is delivered once. A notification relayed after StuckBefore is left alone.
func TestRedeliverStuck(t *testing.T) {
	t.Parallel()
	b := setup(t, testkit.NotificationsOptions{RetryDelay: time.Hour})
	var fixed atomic.Bool
	b.recv.Answer(func(string, int) int {
		if fixed.Load() {
			return http.StatusNoContent
		}
		return http.StatusServiceUnavailable
	})
	stuck := b.intent(t, "u/stuck.txt", nil, "")
	b.verdict(t, stuck, "u/stuck.txt", pipeline.StatusValid, "")
	b.recv.WaitAttempts(1, 30*time.Second)
	insp := asynq.NewInspector(b.redis)
	t.Cleanup(func() { _ = insp.Close() })
	require.Eventually(t, func() bool {
		q, err := insp.GetQueueInfo(webhook.Queue)
		return err == nil && q.Retry == 1
	}, 10*time.Second, 20*time.Millisecond)
	_, err := insp.DeleteAllRetryTasks(webhook.Queue) // Redis lost its data
	require.NoError(t, err)
	_, err = b.st.Pool.Exec(b.ctx, `UPDATE outbox SET relayed_at = now() - interval '2 hours' WHERE upload_id = $1`, stuck)
	require.NoError(t, err)
	fresh := b.intent(t, "u/fresh.txt", nil, "")
	b.verdict(t, fresh, "u/fresh.txt", pipeline.StatusValid, "")
	b.recv.WaitAttempts(2, 30*time.Second)
	fixed.Store(true)

	res, err := outbox.Redeliver(b.ctx, b.st.Pool, b.client, outbox.RedeliverOptions{Tasks: insp})
	require.NoError(t, err)
	require.Zero(t, res.Notifications, "nothing was given up")
	res, err = outbox.Redeliver(b.ctx, b.st.Pool, b.client, outbox.RedeliverOptions{Tasks: insp, StuckBefore: time.Now().Add(-time.Hour)})
	require.NoError(t, err)
	require.Equal(t, 1, res.Notifications)
	res, err = outbox.Redeliver(b.ctx, b.st.Pool, b.client, outbox.RedeliverOptions{Tasks: insp, StuckBefore: time.Now().Add(-time.Minute)})
	require.NoError(t, err)
	require.Zero(t, res.Notifications, "just redelivered: not stuck, whatever its first relay's age")
	b.recv.WaitDelivered(1, 30*time.Second)
	require.Eventually(t, func() bool { return b.outboxRow(t, stuck).DeliveredAt != nil }, 10*time.Second, 20*time.Millisecond)
	require.Nil(t, b.outboxRow(t, fresh).DeliveredAt, "relayed after StuckBefore: its task still retries it")
	for _, w := range b.recv.Received() {
		if w.Verdict.Data.UploadID == stuck {
			require.Equal(t, 1, w.Delivered)
		} else {
			require.Zero(t, w.Delivered)
		}
	}
}

// TestDiscard: dropping the given-up deliveries of one endpoint leaves the other's; the dropped
// ones are no longer counted and their rows are purged after the retention.
func TestDiscard(t *testing.T) {
	t.Parallel()
	b := setup(t, testkit.NotificationsOptions{NoRelay: true})
	id := b.intent(t, "u/discard.txt", nil, "")
	b.verdict(t, id, "u/discard.txt", pipeline.StatusValid, "")
	_, err := b.st.Pool.Exec(b.ctx, `UPDATE outbox SET relayed_at = now(), pending = '{}', gave_up = '{gone,kept}',
		delivered_at = now() - interval '3 days' WHERE upload_id = $1`, id)
	require.NoError(t, err)
	n, err := outbox.Discard(b.ctx, b.st.Pool, "gone")
	require.NoError(t, err)
	require.EqualValues(t, 1, n)
	require.Equal(t, []string{"kept"}, b.outboxRow(t, id).GaveUp)
	require.Zero(t, b.relay.Purge(b.ctx))
	n, err = outbox.Discard(b.ctx, b.st.Pool, "")
	require.NoError(t, err)
	require.EqualValues(t, 1, n)
	status, err := outbox.ReadStatus(b.ctx, b.st.Pool)
	require.NoError(t, err)
	require.Empty(t, status.GaveUp)
	require.EqualValues(t, 1, b.relay.Purge(b.ctx))
}

// TestRedeliverAfterADeadRunWhoseTaskGaveUp: the endpoint is refused (its name resolves to
// loopback), so every delivery to it is given up at once. A redeliver dies after enqueueing one
// row's task and before committing; that task runs, is refused and archived (the row still
// says given up). Run again, the redeliver meets the archived task's ID: it must enqueue the task
// anew, or the row would say "pending" with no task left to deliver or give it up, for ever.
func TestRedeliverAfterADeadRunWhoseTaskGaveUp(t *testing.T) {
	t.Parallel()
	b := setup(t, testkit.NotificationsOptions{RefusePrivate: true, Endpoints: func(recv, secret string) []webhook.EndpointConfig {
		port := recv[len("http://127.0.0.1:"):]
		return []webhook.EndpointConfig{{Name: "internal", URL: "http://localhost:" + port, Secret: secret}}
	}})
	ids := []uuid.UUID{b.intent(t, "u/refused-1.txt", nil, ""), b.intent(t, "u/refused-2.txt", nil, "")}
	b.verdict(t, ids[0], "u/refused-1.txt", pipeline.StatusValid, "")
	b.verdict(t, ids[1], "u/refused-2.txt", pipeline.StatusValid, "")
	givenUp := func(id uuid.UUID) bool {
		row := b.outboxRow(t, id)
		return len(row.GaveUp) == 1 && len(row.Pending) == 0
	}
	require.Eventually(t, func() bool { return givenUp(ids[0]) && givenUp(ids[1]) }, 30*time.Second, 20*time.Millisecond)
	insp := asynq.NewInspector(b.redis)
	t.Cleanup(func() { _ = insp.Close() })
	// The enqueues run in parallel: either row's task may be the one that got through.
	r1 := []string{webhook.RedeliverTaskID(b.outboxRow(t, ids[0]).ID, "internal", 1), webhook.RedeliverTaskID(b.outboxRow(t, ids[1]).ID, "internal", 1)}

	dying := &failAfter{Enqueuer: b.client}
	dying.n.Store(1)
	_, err := outbox.Redeliver(b.ctx, b.st.Pool, dying, outbox.RedeliverOptions{Tasks: insp})
	require.ErrorContains(t, err, "redeliver died")
	require.Eventually(t, func() bool {
		archived := 0
		for _, id := range r1 {
			if info, err := insp.GetTaskInfo(webhook.Queue, id); err == nil && info.State == asynq.TaskStateArchived {
				archived++
			}
		}
		return archived == 1
	}, 30*time.Second, 20*time.Millisecond, "the dead run's one task was refused and archived")

	res, err := outbox.Redeliver(b.ctx, b.st.Pool, b.client, outbox.RedeliverOptions{Tasks: insp})
	require.NoError(t, err)
	require.Equal(t, 2, res.Notifications)
	require.Eventually(t, func() bool { return givenUp(ids[0]) && givenUp(ids[1]) }, 30*time.Second, 20*time.Millisecond,
		"each redelivery ran and was given up again; none is left pending without a task")
	for _, id := range ids {
		require.EqualValues(t, 1, b.outboxRow(t, id).Redeliveries)
	}
	require.Empty(t, b.recv.Received(), "the receiver on loopback got nothing")
}

// TestRedeliverKeepsAnotherEndpointStuck: a row gave up on endpoint a and still waits for b,
// relayed 30 hours ago, b's task lost with Redis. Redelivering a must not make the row look freshly
// relayed: a redeliver with StuckBefore then still finds b.
func TestRedeliverKeepsAnotherEndpointStuck(t *testing.T) {
	t.Parallel()
	b := setup(t, testkit.NotificationsOptions{NoRelay: true})
	id := b.intent(t, "u/two-endpoints.txt", nil, "")
	b.verdict(t, id, "u/two-endpoints.txt", pipeline.StatusValid, "")
	_, err := b.st.Pool.Exec(b.ctx, `UPDATE outbox SET relayed_at = now() - interval '30 hours', pending = '{b}', gave_up = '{a}'
		WHERE upload_id = $1`, id)
	require.NoError(t, err)
	insp := asynq.NewInspector(b.redis)
	t.Cleanup(func() { _ = insp.Close() })
	res, err := outbox.Redeliver(b.ctx, b.st.Pool, b.client, outbox.RedeliverOptions{Tasks: insp, Endpoint: "a"})
	require.NoError(t, err)
	require.Equal(t, map[string]int{"a": 1}, res.Deliveries)
	res, err = outbox.Redeliver(b.ctx, b.st.Pool, b.client, outbox.RedeliverOptions{Tasks: insp, Endpoint: "b", DryRun: true,
		StuckBefore: time.Now().Add(-time.Hour)})
	require.NoError(t, err)
	require.Equal(t, map[string]int{"b": 1}, res.Deliveries, "b is still stuck")
}
