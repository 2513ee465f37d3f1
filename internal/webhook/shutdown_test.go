package webhook_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/intakehq/intake/internal/store"
	"github.com/intakehq/intake/internal/testkit"
	"github.com/intakehq/intake/internal/webhook"
	"github.com/intakehq/intake/worker/tasks"
)

// blockingReceiver answers 204 to every notification but those of hang, whose requests it holds
// until the client gives up on them (or the test ends), telling arrived of each.
func blockingReceiver(t *testing.T, hang ...string) (url string, arrived <-chan string) {
	t.Helper()
	got := make(chan string, 16)
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get(webhook.HeaderID)
		for _, h := range hang {
			if id == h {
				got <- id
				select {
				case <-r.Context().Done():
				case <-release:
				}
				return
			}
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) }) // before srv.Close, which waits for the requests
	return srv.URL, got
}

// outboxState reads a notification's pending and given-up endpoints.
func outboxState(t *testing.T, st *store.Store, id int64) (pending, gaveUp []string) {
	t.Helper()
	require.NoError(t, st.Pool.QueryRow(testkit.Context(t), "SELECT pending, gave_up FROM outbox WHERE id = $1", id).
		Scan(&pending, &gaveUp))
	return pending, gaveUp
}

// shutdownBundle is a deliverer to the endpoint "app" over the real outbox store, whose tasks an
// asynq server of its own runs (as the jobs role does, with a short ShutdownTimeout), handing
// tasks on through a real asynq client.
type shutdownBundle struct {
	st       *store.Store
	reg      *prometheus.Registry
	log      *testkit.SyncBuffer
	srv      *asynq.Server
	redis    asynq.RedisClientOpt
	client   *asynq.Client
	attempts chan attempt
}

func newShutdownBundle(t *testing.T, url string, attemptTimeout time.Duration) *shutdownBundle {
	t.Helper()
	b := &shutdownBundle{st: testkit.DB(t), reg: prometheus.NewRegistry(), log: &testkit.SyncBuffer{},
		attempts: make(chan attempt, 8)}
	outbox := store.NewOutbox(b.st, store.BatchOptions{})
	t.Cleanup(outbox.Close)
	b.redis = asynq.RedisClientOpt{Addr: testkit.RedisAddr(), DB: testkit.RedisDB(t)}
	b.client = asynq.NewClient(b.redis)
	t.Cleanup(func() { _ = b.client.Close() })
	endpoints, err := webhook.NewEndpoints([]webhook.EndpointConfig{{Name: "app", URL: url, Secret: testkit.WebhookSecret(t)}}, true)
	require.NoError(t, err)
	metrics, err := webhook.NewMetrics(b.reg, endpoints.Names())
	require.NoError(t, err)
	d, err := webhook.NewDeliverer(webhook.DelivererConfig{Store: outbox, Endpoints: endpoints, Tasks: b.client, Metrics: metrics,
		Log:    slog.New(slog.NewTextHandler(b.log, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Client: webhook.NewClient(webhook.ClientOptions{Timeout: attemptTimeout, AllowPrivate: true})})
	require.NoError(t, err)
	b.srv = asynq.NewServer(b.redis, asynq.Config{
		Concurrency: 1, Queues: map[string]int{webhook.Queue: 1}, TaskCheckInterval: webhook.TaskCheckInterval,
		DelayedTaskCheckInterval: 50 * time.Millisecond, LogLevel: asynq.FatalLevel, IsFailure: d.IsFailure,
		RetryDelayFunc:  func(int, error, *asynq.Task) time.Duration { return 10 * time.Millisecond },
		ShutdownTimeout: 100 * time.Millisecond, // INTAKE_SHUTDOWN_GRACE
	})
	require.NoError(t, b.srv.Start(asynq.HandlerFunc(func(ctx context.Context, task *asynq.Task) error {
		err := d.ProcessTask(ctx, task)
		retried, _ := asynq.GetRetryCount(ctx)
		b.attempts <- attempt{retried: retried, err: err}
		return err
	})))
	t.Cleanup(b.srv.Shutdown)
	return b
}

// TestShutdownIsNotAGiveUp: the webhook server shuts down while a delivery task's request hangs;
// once its ShutdownTimeout (INTAKE_SHUTDOWN_GRACE) is up, asynq puts the task back in its queue
// (it runs again) and cancels the run's context. The cut-off run returns the cancellation, records
// nothing in the outbox, counts no failed attempt (intake_webhook_attempts_total) and no give-up
// (intake_webhook_deliveries_total{outcome="gave_up"}), and logs no failure, even on the task's
// last attempt, for a single notification, a sequence and a batch. Before, the last attempt gave
// the delivery up (its record failed, the run's context being cancelled, but it was counted and
// logged at ERROR: an alert for a delivery asynq runs again), and an earlier one counted and
// logged a failed attempt of the endpoint.
func TestShutdownIsNotAGiveUp(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("needs PostgreSQL and Redis (the local stack)")
	}
	for _, shape := range []string{"single", "sequence", "batch"} {
		for _, last := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s/last=%t", shape, last), func(t *testing.T) {
				t.Parallel()
				url, arrived := blockingReceiver(t, "hangs")
				b := newShutdownBundle(t, url, time.Minute)
				a, c := uuid.New(), uuid.New()
				var items []webhook.Item
				switch ids := outboxRows(t, b.st, "app", 2); shape {
				case "single":
					items = []webhook.Item{{OutboxID: ids[0], Endpoint: "app", Body: verdictBody("hangs", tasks.EventUploadValid, a), Attempted: 1}}
				case "sequence":
					items = []webhook.Item{
						{OutboxID: ids[0], Endpoint: "app", Body: verdictBody("hangs", tasks.EventUploadValid, a), Attempted: 1},
						{OutboxID: ids[1], Endpoint: "app", Body: verdictBody("next", tasks.EventUploadDeleted, a)},
					}
				case "batch":
					items = []webhook.Item{
						{OutboxID: ids[0], Endpoint: "app", Body: verdictBody("hangs", tasks.EventUploadValid, a)},
						{OutboxID: ids[1], Endpoint: "app", Body: verdictBody("fine", tasks.EventUploadValid, c)},
					}
				}
				task, err := webhook.NewDeliverTask(items, time.Minute)
				require.NoError(t, err)
				maxRetry := 0 // the first attempt is the last
				if !last {
					maxRetry = webhook.MaxRetry
				}
				info, err := b.client.Enqueue(task, asynq.MaxRetry(maxRetry))
				require.NoError(t, err)

				select {
				case <-arrived:
				case <-time.After(30 * time.Second):
					t.Fatal("the request never arrived")
				}
				b.srv.Shutdown() // the grace is up: asynq puts the task back and cancels the run
				got := nextAttempt(t, b.attempts, 1)
				require.Zero(t, got.retried)
				assert.ErrorIs(t, got.err, context.Canceled, "the run's cancellation")
				assert.NotErrorIs(t, got.err, asynq.SkipRetry, "not given up")

				for _, it := range items {
					pending, gaveUp := outboxState(t, b.st, it.OutboxID)
					assert.Empty(t, gaveUp, "notification %d not given up", it.OutboxID)
					if it.OutboxID == items[0].OutboxID {
						assert.Equal(t, []string{"app"}, pending, "still to deliver")
					}
				}
				assert.Zero(t, testkit.Metric(t, b.reg, "intake_webhook_deliveries_total", "endpoint", "app", "outcome", webhook.OutcomeGaveUp),
					"no give-up counted")
				for _, result := range []string{webhook.ResultError, webhook.ResultTimeout} {
					assert.Zero(t, testkit.Metric(t, b.reg, "intake_webhook_attempts_total", "endpoint", "app", "result", result),
						"the cut-off request is not counted as the endpoint's failure (%s)", result)
				}
				logs := b.log.String()
				assert.NotContains(t, logs, "given up", "log: %s", logs)
				assert.NotContains(t, logs, "attempt failed", "log: %s", logs)
				assert.NotContains(t, logs, "level=ERROR", "log: %s", logs)
				assert.NotContains(t, logs, "level=WARN", "log: %s", logs)
				assert.Contains(t, logs, "interrupted by shutdown", "log: %s", logs)

				insp := asynq.NewInspector(b.redis)
				t.Cleanup(func() { _ = insp.Close() })
				state, err := insp.GetTaskInfo(webhook.Queue, info.ID)
				require.NoError(t, err)
				require.Equal(t, asynq.TaskStatePending, state.State, "back in the queue: asynq runs it again")
				require.Zero(t, state.Retried, "its retries untouched")
			})
		}
	}
}

// TestAttemptTimeoutOnLastAttemptGivesUp: a request that outlasts the client's own timeout
// (INTAKE_WEBHOOK_TIMEOUT, the end of a context derived from the run's) is the endpoint's failure,
// not an interruption: on the task's last attempt the delivery is given up (recorded in the
// outbox, counted, the task archived), for a single notification and a sequence (with the one
// after it). The counterpart of TestShutdownIsNotAGiveUp.
func TestAttemptTimeoutOnLastAttemptGivesUp(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("needs PostgreSQL and Redis (the local stack)")
	}
	for _, shape := range []string{"single", "sequence"} {
		t.Run(shape, func(t *testing.T) {
			t.Parallel()
			url, _ := blockingReceiver(t, "hangs")
			b := newShutdownBundle(t, url, 200*time.Millisecond)
			ids := outboxRows(t, b.st, "app", 2)
			upload := uuid.New()
			items := []webhook.Item{{OutboxID: ids[0], Endpoint: "app", Body: verdictBody("hangs", tasks.EventUploadValid, upload), Attempted: 1}}
			if shape == "sequence" {
				items = append(items, webhook.Item{OutboxID: ids[1], Endpoint: "app", Body: verdictBody("next", tasks.EventUploadDeleted, upload)})
			}
			task, err := webhook.NewDeliverTask(items, 200*time.Millisecond)
			require.NoError(t, err)
			_, err = b.client.Enqueue(task, asynq.MaxRetry(0))
			require.NoError(t, err)

			got := nextAttempt(t, b.attempts, 1)
			require.ErrorIs(t, got.err, context.DeadlineExceeded, "the client's timeout")
			require.ErrorIs(t, got.err, asynq.SkipRetry, "given up: archived")
			for _, it := range items {
				pending, gaveUp := outboxState(t, b.st, it.OutboxID)
				require.Equal(t, []string{"app"}, gaveUp, "notification %d given up", it.OutboxID)
				require.Empty(t, pending)
			}
			require.Equal(t, float64(len(items)), testkit.Metric(t, b.reg, "intake_webhook_deliveries_total", "endpoint", "app",
				"outcome", webhook.OutcomeGaveUp))
			require.Equal(t, 1.0, testkit.Metric(t, b.reg, "intake_webhook_attempts_total", "endpoint", "app", "result", webhook.ResultTimeout))
			require.NotContains(t, b.log.String(), "interrupted")
		})
	}
}
