package testkit

import (
	"cmp"
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/intakehq/intake/internal/outbox"
	"github.com/intakehq/intake/internal/store"
	"github.com/intakehq/intake/internal/webhook"
)

// NotificationsOptions tune StartNotifications. The zero value runs everything as the jobs role
// does, with one endpoint: the Receiver.
type NotificationsOptions struct {
	// Endpoints, when set, replaces the endpoint list; it gets the Receiver's URL and secret.
	Endpoints func(url, secret string) []webhook.EndpointConfig
	// RefusePrivate makes the webhook client refuse non-public addresses (the Receiver is on
	// 127.0.0.1, so the default allows them). The endpoints' configuration check is skipped either
	// way, as for a name that only resolves to an internal address when connecting.
	RefusePrivate bool
	// NoRelay leaves the relay stopped (tests call Relay.RelayOnce themselves).
	NoRelay bool
	// VerdictQueue is INTAKE_NOTIFY_ASYNQ_QUEUE.
	VerdictQueue string
	// RetryDelay, when set, replaces the production retry schedule (webhook.RetryDelay).
	RetryDelay time.Duration
	// Concurrency is the webhook server's (default 20, INTAKE_WEBHOOK_CONCURRENCY's default).
	Concurrency int
	// BacklogInterval is the relay's (default 15 s, the production interval).
	BacklogInterval time.Duration
	// Log receives the components' logs (default: discard).
	Log *slog.Logger
}

// Notifications is what the jobs role runs for notifications, over a test's schema and a Redis
// database of its own: the outbox listener and relay, and the webhook server posting to a
// Standard Webhooks WebhookReceiver.
type Notifications struct {
	// Receiver gets the webhooks.
	Receiver *WebhookReceiver
	// Secret is the Receiver's (and the default endpoint's) secret.
	Secret string
	// Redis is the asynq database.
	Redis asynq.RedisClientOpt
	// Client enqueues into it.
	Client *asynq.Client
	// Listener, Relay and Deliveries are the running components.
	Listener   *outbox.Listener
	Relay      *outbox.Relay
	Deliveries *store.Outbox
	// Registry holds their metrics.
	Registry *prometheus.Registry
}

// StartNotifications starts the notification components over st; they stop when the test ends.
// It returns once the listener listens.
func StartNotifications(tb testing.TB, st *store.Store, o NotificationsOptions) *Notifications {
	tb.Helper()
	log := cmp.Or(o.Log, slog.New(slog.DiscardHandler))
	n := &Notifications{Secret: WebhookSecret(tb), Registry: prometheus.NewRegistry()}
	n.Redis = asynq.RedisClientOpt{Addr: RedisAddr(), DB: RedisDB(tb)}
	n.Client = asynq.NewClient(n.Redis)
	tb.Cleanup(func() { _ = n.Client.Close() })
	n.Receiver = NewWebhookReceiver(tb, n.Secret)
	cfgs := []webhook.EndpointConfig{{Name: webhook.DefaultEndpoint, URL: n.Receiver.URL, Secret: n.Secret}}
	if o.Endpoints != nil {
		cfgs = o.Endpoints(n.Receiver.URL, n.Secret)
	}
	endpoints, err := webhook.NewEndpoints(cfgs, true)
	if err != nil {
		tb.Fatalf("testkit: %v", err)
	}
	n.Listener = outbox.NewListener(st.Pool, log)
	n.Relay, err = outbox.NewRelay(outbox.RelayConfig{
		Pool: st.Pool, Client: n.Client, Endpoints: endpoints, AttemptTimeout: 5 * time.Second,
		VerdictQueue: o.VerdictQueue, Waker: n.Listener, Log: log, Registerer: n.Registry, BacklogInterval: o.BacklogInterval,
	})
	if err != nil {
		tb.Fatalf("testkit: %v", err)
	}
	metrics, err := webhook.NewMetrics(n.Registry, endpoints.Names())
	if err != nil {
		tb.Fatalf("testkit: %v", err)
	}
	retry := webhook.RetryDelay
	if o.RetryDelay > 0 {
		retry = func(int, error, *asynq.Task) time.Duration { return o.RetryDelay }
	}
	n.Deliveries = store.NewOutbox(st, store.BatchOptions{})
	deliverer, err := webhook.NewDeliverer(webhook.DelivererConfig{
		Store: n.Deliveries, Endpoints: endpoints, Tasks: n.Client, AttemptTimeout: 5 * time.Second, RetryDelay: retry,
		Metrics: metrics, Log: log,
		Client: webhook.NewClient(webhook.ClientOptions{Timeout: 5 * time.Second, AllowPrivate: !o.RefusePrivate}),
	})
	if err != nil {
		tb.Fatalf("testkit: %v", err)
	}
	// The jobs role's webhook server (worker/jobs.NewServer, which imports what imports testkit):
	// asynq with the same queue, concurrency, retry schedule and idle check.
	srv := asynq.NewServer(n.Redis, asynq.Config{
		Concurrency: cmp.Or(o.Concurrency, 20), Queues: map[string]int{webhook.Queue: 1},
		RetryDelayFunc: retry, TaskCheckInterval: webhook.TaskCheckInterval, DelayedTaskCheckInterval: 50 * time.Millisecond,
		ShutdownTimeout: 5 * time.Second, LogLevel: asynq.ErrorLevel,
	})
	serve := func(ctx context.Context) error {
		if err := srv.Start(deliverer); err != nil {
			return err
		}
		<-ctx.Done()
		srv.Shutdown()
		return nil
	}
	runs := []func(context.Context) error{n.Listener.Run, serve}
	if !o.NoRelay {
		runs = append(runs, n.Relay.Run)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	errs := make(chan error, len(runs))
	for _, run := range runs {
		wg.Go(func() { errs <- run(ctx) })
	}
	tb.Cleanup(func() {
		cancel()
		wg.Wait()
		n.Deliveries.Close() // after the deliveries stopped, before the pool closes
		close(errs)
		for err := range errs {
			if err != nil {
				tb.Errorf("testkit: notifications: %v", err)
			}
		}
	})
	select {
	case <-n.Listener.Ready():
	case <-time.After(30 * time.Second):
		tb.Fatal("testkit: the outbox listener did not listen within 30s" + hint)
	}
	return n
}
