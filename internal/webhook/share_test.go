package webhook_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/intakehq/intake/internal/store"
	"github.com/intakehq/intake/internal/testkit"
	"github.com/intakehq/intake/internal/webhook"
	"github.com/intakehq/intake/worker/tasks"
)

// hangingReceiver answers 204 on /live (503 to the notification "warm-up"), and holds every other
// request until release is called (then answers 503), counting the requests it holds and the most
// it held at once.
type hangingReceiver struct {
	URL      string
	mu       sync.Mutex
	held     int
	mostHeld int
	live     []string // webhook-ids answered on /live, in order
	released chan struct{}
	once     sync.Once
}

func newHangingReceiver(t *testing.T) *hangingReceiver {
	r := &hangingReceiver{released: make(chan struct{})}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if strings.HasSuffix(req.URL.Path, "/live") {
			if req.Header.Get(webhook.HeaderID) == "warm-up" {
				w.WriteHeader(http.StatusServiceUnavailable)
				return
			}
			r.mu.Lock()
			r.live = append(r.live, req.Header.Get(webhook.HeaderID))
			r.mu.Unlock()
			w.WriteHeader(http.StatusNoContent)
			return
		}
		r.mu.Lock()
		r.held++
		r.mostHeld = max(r.mostHeld, r.held)
		r.mu.Unlock()
		defer func() {
			r.mu.Lock()
			r.held--
			r.mu.Unlock()
		}()
		select {
		case <-r.released:
			w.WriteHeader(http.StatusServiceUnavailable)
		case <-req.Context().Done():
		}
	}))
	t.Cleanup(srv.Close) // after release (registered later, run earlier): Close waits for the handlers
	t.Cleanup(r.release)
	r.URL = srv.URL
	return r
}

func (r *hangingReceiver) release() { r.once.Do(func() { close(r.released) }) }

func (r *hangingReceiver) state() (held, mostHeld int, live []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.held, r.mostHeld, append([]string(nil), r.live...)
}

// outboxRows inserts n relayed notifications pending for endpoint and returns their ids.
func outboxRows(t *testing.T, st *store.Store, endpoint string, n int) []int64 {
	t.Helper()
	ids := make([]int64, n)
	for i := range ids {
		require.NoError(t, st.Pool.QueryRow(context.Background(), `INSERT INTO outbox (dedupe_key, event_type, upload_id, bucket, key,
			data, relayed_at, pending) VALUES ($1, 'upload.valid', gen_random_uuid(), 'b', 'k', '{}', now(), ARRAY[$2]) RETURNING id`,
			"test:"+uuid.NewString(), endpoint).Scan(&ids[i]))
	}
	return ids
}

// deliveredTo counts those of ids delivered to endpoint, as PostgreSQL records them.
func deliveredTo(t *testing.T, st *store.Store, ids []int64, endpoint string) int {
	t.Helper()
	var n int
	require.NoError(t, st.Pool.QueryRow(context.Background(),
		`SELECT count(*) FROM outbox WHERE id = ANY($1) AND $2 = ANY(delivered)`, ids, endpoint).Scan(&n))
	return n
}

// TestHangingEndpointHoldsOnlyItsShare: the webhook server has 4 workers; endpoint "dead" holds
// every request it gets (a blackholed receiver, its attempt timeout a minute away) and has 6
// tasks queued before the 4 of endpoint "live". (The server has seen a failed attempt first, as
// any soon does: the Deliverer defers nothing before its server has asked it whether an error is
// a failure.) With MaxPerEndpoint 2, the dead endpoint's tasks
// hold 2 workers and the others are deferred (posting nothing, using up none of their retries:
// they wait in asynq's retry set with their retry count still 0), so every notification of live
// is posted and recorded in PostgreSQL while the dead endpoint's 2 requests are still held. Before,
// the dead endpoint's tasks took all 4 workers, and live's notifications waited behind them until
// the dead receiver let go (here: never, until the test gave up).
func TestHangingEndpointHoldsOnlyItsShare(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("needs PostgreSQL and Redis (the local stack)")
	}
	st := testkit.DB(t)
	outbox := store.NewOutbox(st, store.BatchOptions{})
	t.Cleanup(outbox.Close)
	recv := newHangingReceiver(t)
	redis := asynq.RedisClientOpt{Addr: testkit.RedisAddr(), DB: testkit.RedisDB(t)}
	client := asynq.NewClient(redis)
	t.Cleanup(func() { _ = client.Close() })
	endpoints, err := webhook.NewEndpoints([]webhook.EndpointConfig{
		{Name: "dead", URL: recv.URL + "/dead", Secret: testkit.WebhookSecret(t)},
		{Name: "live", URL: recv.URL + "/live", Secret: testkit.WebhookSecret(t)},
	}, true)
	require.NoError(t, err)
	reg := prometheus.NewRegistry()
	metrics, err := webhook.NewMetrics(reg, endpoints.Names())
	require.NoError(t, err)
	const workers, timeout = 4, time.Minute
	asked := make(chan struct{}, 1) // the server asked IsFailure
	d, err := webhook.NewDeliverer(webhook.DelivererConfig{
		Store: outbox, Endpoints: endpoints, Tasks: client, AttemptTimeout: timeout, Metrics: metrics,
		Client:         webhook.NewClient(webhook.ClientOptions{Timeout: timeout, AllowPrivate: true}),
		MaxPerEndpoint: workers / 2,
	})
	require.NoError(t, err)
	// The jobs role's webhook server: its retry schedule, and deferrals not counted as failures.
	srv := asynq.NewServer(redis, asynq.Config{
		Concurrency: workers, Queues: map[string]int{webhook.Queue: 1}, TaskCheckInterval: webhook.TaskCheckInterval,
		DelayedTaskCheckInterval: 50 * time.Millisecond, LogLevel: asynq.FatalLevel, ShutdownTimeout: 5 * time.Second,
		RetryDelayFunc: webhook.RetryDelay, IsFailure: func(err error) bool {
			select {
			case asked <- struct{}{}:
			default:
			}
			return d.IsFailure(err)
		},
	})
	require.NoError(t, srv.Start(d))
	t.Cleanup(srv.Shutdown) // runs after recv.release
	t.Cleanup(recv.release)

	enqueue := func(endpoint string, ids []int64) {
		for _, id := range ids {
			task, err := webhook.NewDeliverTask([]webhook.Item{{OutboxID: id, Endpoint: endpoint,
				Body: verdictBody(fmt.Sprintf("%s-%d", endpoint, id), tasks.EventUploadValid, uuid.New())}}, timeout)
			require.NoError(t, err)
			_, err = client.Enqueue(task)
			require.NoError(t, err)
		}
	}
	warmUp := outboxRows(t, st, "live", 1)
	task, err := webhook.NewDeliverTask([]webhook.Item{{OutboxID: warmUp[0], Endpoint: "live",
		Body: verdictBody("warm-up", tasks.EventUploadValid, uuid.New())}}, timeout)
	require.NoError(t, err)
	_, err = client.Enqueue(task)
	require.NoError(t, err)
	select {
	case <-asked:
	case <-time.After(30 * time.Second):
		t.Fatal("the warm-up's failure was not judged")
	}

	dead, live := outboxRows(t, st, "dead", 6), outboxRows(t, st, "live", 4)
	enqueue("dead", dead)
	require.Eventually(t, func() bool { held, _, _ := recv.state(); return held >= 2 }, 30*time.Second, 10*time.Millisecond,
		"the dead endpoint holds requests")
	enqueue("live", live)

	require.Eventually(t, func() bool { return deliveredTo(t, st, live, "live") == len(live) }, 30*time.Second, 20*time.Millisecond,
		"live's notifications are delivered while the dead endpoint holds its requests")
	held, mostHeld, got := recv.state()
	require.Equal(t, 2, held, "the dead endpoint's requests are still held: live did not wait for them")
	require.Equal(t, 2, mostHeld, "the dead endpoint never held more than its share")
	require.Len(t, got, len(live))
	require.Zero(t, deliveredTo(t, st, dead, "dead"))
	require.Positive(t, deferredCount(t, reg, "dead"), "the dead endpoint's other tasks were deferred")
	require.Zero(t, deferredCount(t, reg, "live"))

	insp := asynq.NewInspector(redis)
	t.Cleanup(func() { _ = insp.Close() })
	var deferred []*asynq.TaskInfo // the dead endpoint's tasks waiting in the retry set
	require.Eventually(t, func() bool {
		retrying, err := insp.ListRetryTasks(webhook.Queue)
		require.NoError(t, err)
		deferred = slices.DeleteFunc(retrying, func(ti *asynq.TaskInfo) bool { return !strings.HasSuffix(ti.ID, ":dead") })
		return len(deferred) > 0
	}, 30*time.Second, 10*time.Millisecond, "deferred tasks wait in the retry set")
	for _, ti := range deferred {
		require.Zero(t, ti.Retried, "a deferred task used up none of its retries: %s", ti.LastErr)
		require.Contains(t, ti.LastErr, "deferred, nothing posted")
	}
}

// TestTimedOutEndpointsGetOneWorkerEach: two endpoints whose receivers never answer (every
// attempt times out) and one that answers; 4 workers, MaxPerEndpoint 2. Once an endpoint's last
// SuspectAfter attempts timed out, the Deliverer runs one of its tasks at a time: a second wave
// of the dead endpoints' tasks never has two requests to one of them in flight at once, and the
// live endpoint's notifications are delivered meanwhile (two dead endpoints at their full share
// would hold all 4 workers). Before, each dead endpoint's tasks took as many workers as they found.
func TestTimedOutEndpointsGetOneWorkerEach(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("needs Redis (the local stack)")
	}
	recv := newHangingReceiver(t)
	redis := asynq.RedisClientOpt{Addr: testkit.RedisAddr(), DB: testkit.RedisDB(t)}
	client := asynq.NewClient(redis)
	t.Cleanup(func() { _ = client.Close() })
	endpoints, err := webhook.NewEndpoints([]webhook.EndpointConfig{
		{Name: "dead1", URL: recv.URL + "/dead/1", Secret: testkit.WebhookSecret(t)},
		{Name: "dead2", URL: recv.URL + "/dead/2", Secret: testkit.WebhookSecret(t)},
		{Name: "live", URL: recv.URL + "/live", Secret: testkit.WebhookSecret(t)},
	}, true)
	require.NoError(t, err)
	// Requests in flight per endpoint, counted by the client (a request whose attempt timed out
	// is over for it, whenever the receiver notices).
	flights := &inFlight{now: map[string]int{}, most: map[string]int{}}
	const timeout = 300 * time.Millisecond
	httpClient := webhook.NewClient(webhook.ClientOptions{Timeout: timeout, AllowPrivate: true})
	httpClient.Transport = flights.wrap(httpClient.Transport)
	store := &giveUps{}
	d, err := webhook.NewDeliverer(webhook.DelivererConfig{
		Store: store, Endpoints: endpoints, Tasks: client, AttemptTimeout: timeout, Client: httpClient, MaxPerEndpoint: 2,
	})
	require.NoError(t, err)
	var mu sync.Mutex
	runs := map[string]int{} // runs that ended other than deferred, by endpoint
	srv := asynq.NewServer(redis, asynq.Config{
		Concurrency: 4, Queues: map[string]int{webhook.Queue: 1}, TaskCheckInterval: webhook.TaskCheckInterval,
		DelayedTaskCheckInterval: 50 * time.Millisecond, LogLevel: asynq.FatalLevel, ShutdownTimeout: 5 * time.Second,
		// Failed attempts are not retried within the test; deferred runs are, after their RetryIn.
		RetryDelayFunc: func(n int, err error, task *asynq.Task) time.Duration {
			if errors.Is(err, webhook.ErrEndpointBusy) {
				return webhook.RetryDelay(n, err, task)
			}
			return time.Hour
		},
		IsFailure: d.IsFailure,
	})
	require.NoError(t, srv.Start(asynq.HandlerFunc(func(ctx context.Context, task *asynq.Task) error {
		err := d.ProcessTask(ctx, task)
		if !errors.Is(err, webhook.ErrEndpointBusy) {
			items, _ := webhook.ParseDeliver(task.Payload())
			mu.Lock()
			runs[items[0].Endpoint]++
			mu.Unlock()
		}
		return err
	})))
	t.Cleanup(srv.Shutdown)
	t.Cleanup(recv.release)
	ran := func(endpoint string) int {
		mu.Lock()
		defer mu.Unlock()
		return runs[endpoint]
	}
	next := int64(0)
	enqueue := func(endpoint string, n int) {
		for range n {
			next++
			task, err := webhook.NewDeliverTask([]webhook.Item{{OutboxID: next, Endpoint: endpoint,
				Body: verdictBody(fmt.Sprintf("%s-%d", endpoint, next), tasks.EventUploadValid, uuid.New())}}, timeout)
			require.NoError(t, err)
			_, err = client.Enqueue(task)
			require.NoError(t, err)
		}
	}

	// The first wave: SuspectAfter attempts (and one more) at each dead endpoint time out.
	enqueue("dead1", webhook.SuspectAfter+1)
	enqueue("dead2", webhook.SuspectAfter+1)
	require.Eventually(t, func() bool { return ran("dead1") == webhook.SuspectAfter+1 && ran("dead2") == webhook.SuspectAfter+1 },
		60*time.Second, 10*time.Millisecond, "the first wave's attempts all ran")
	flights.reset()

	// The second wave, then live's notifications behind it.
	enqueue("dead1", 4)
	enqueue("dead2", 4)
	enqueue("live", 6)
	require.Eventually(t, func() bool { _, _, live := recv.state(); return len(live) == 6 }, 60*time.Second, 10*time.Millisecond,
		"live's notifications are delivered")
	require.Eventually(t, func() bool { return ran("dead1") > webhook.SuspectAfter+1 && ran("dead2") > webhook.SuspectAfter+1 },
		60*time.Second, 10*time.Millisecond, "the second wave reached the dead endpoints")
	most := flights.mostByEndpoint()
	require.Equal(t, 1, most["/dead/1"], "one request at a time to a timed-out endpoint: %v", most)
	require.Equal(t, 1, most["/dead/2"], "one request at a time to a timed-out endpoint: %v", most)
	require.Len(t, store.deliveries(), 6)
}

// inFlight counts an http.RoundTripper's requests in flight, by URL path.
type inFlight struct {
	mu   sync.Mutex
	now  map[string]int
	most map[string]int
}

func (f *inFlight) wrap(next http.RoundTripper) http.RoundTripper {
	return roundTripper(func(req *http.Request) (*http.Response, error) {
		path := req.URL.Path
		f.mu.Lock()
		f.now[path]++
		f.most[path] = max(f.most[path], f.now[path])
		f.mu.Unlock()
		defer func() {
			f.mu.Lock()
			f.now[path]--
			f.mu.Unlock()
		}()
		return next.RoundTrip(req)
	})
}

func (f *inFlight) reset() {
	f.mu.Lock()
	defer f.mu.Unlock()
	clear(f.most)
}

func (f *inFlight) mostByEndpoint() map[string]int {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[string]int{}
	for k, v := range f.most {
		out[k] = v
	}
	return out
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(req *http.Request) (*http.Response, error) { return f(req) }

// TestDeferral: with its endpoint's share taken, a task is deferred: it posts nothing, its error
// is not a failure (Deliverer.IsFailure) and is retried after its RetryIn (RetryDelay), about a
// second; counted in intake_webhook_deferred_total. Not before the server has asked IsFailure
// about an error, though: a server that does not ask it would count each deferral as a failed
// attempt. The share is given back when a task ends. A task on its last attempt is run all the
// same (asynq would archive it, deferred or not, with its give-up unrecorded). With a single
// endpoint configured, there is no limit.
func TestDeferral(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("needs Redis (the local stack)")
	}
	recv := newHangingReceiver(t)
	newDeliverer := func(store webhook.Store, names ...string) (*webhook.Deliverer, *prometheus.Registry) {
		var cfgs []webhook.EndpointConfig
		for _, n := range names {
			cfgs = append(cfgs, webhook.EndpointConfig{Name: n, URL: recv.URL + "/" + n, Secret: testkit.WebhookSecret(t)})
		}
		endpoints, err := webhook.NewEndpoints(cfgs, true)
		require.NoError(t, err)
		reg := prometheus.NewRegistry()
		metrics, err := webhook.NewMetrics(reg, endpoints.Names())
		require.NoError(t, err)
		d, err := webhook.NewDeliverer(webhook.DelivererConfig{Store: store, Endpoints: endpoints, Tasks: noTasks{},
			AttemptTimeout: time.Minute, Metrics: metrics, MaxPerEndpoint: 1,
			Client: webhook.NewClient(webhook.ClientOptions{Timeout: time.Minute, AllowPrivate: true})})
		require.NoError(t, err)
		return d, reg
	}
	task := func(id int64, endpoint string) *asynq.Task {
		task, err := webhook.NewDeliverTask([]webhook.Item{{OutboxID: id, Endpoint: endpoint, Body: []byte(fmt.Sprintf(`{"id":"e%d"}`, id))}}, time.Minute)
		require.NoError(t, err)
		return task
	}
	heldAtLeast := func(n int) {
		require.Eventually(t, func() bool { held, _, _ := recv.state(); return held >= n }, 30*time.Second, 5*time.Millisecond)
	}

	store := &giveUps{}
	d, reg := newDeliverer(store, "dead", "live")
	run := func(id int64) <-chan error {
		done := make(chan error, 1)
		go func() { done <- d.ProcessTask(context.Background(), task(id, "dead")) }()
		return done
	}
	first := run(1)
	heldAtLeast(1)
	second := run(2)
	heldAtLeast(2) // not deferred: the server has not asked IsFailure yet
	require.Zero(t, deferredCount(t, reg, "dead"))

	require.True(t, d.IsFailure(errors.New("answered 503")))
	err := d.ProcessTask(context.Background(), task(3, "dead"))
	require.ErrorIs(t, err, webhook.ErrEndpointBusy)
	require.False(t, d.IsFailure(err), "not a failed attempt")
	var deferred *webhook.DeferredError
	require.ErrorAs(t, err, &deferred)
	require.Equal(t, webhook.DeferredError{Endpoint: "dead", Running: 2, Limit: 1, RetryIn: deferred.RetryIn}, *deferred)
	for range 20 {
		delay := webhook.RetryDelay(5, err, nil)
		require.GreaterOrEqual(t, delay, time.Second, "not retry 5's delay")
		require.LessOrEqual(t, delay, 1500*time.Millisecond)
	}
	require.Equal(t, 1.0, deferredCount(t, reg, "dead"))
	held, _, _ := recv.state()
	require.Equal(t, 2, held, "the deferred task posted nothing")
	require.NoError(t, d.ProcessTask(context.Background(), task(4, "live")), "another endpoint's share is its own")
	_, _, live := recv.state()
	require.Equal(t, []string{"e4"}, live)

	// On its last attempt (MaxRetry 0: the first), the task is run: it posts, and is given up.
	attempts, _, _ := runTask(t, d, store, task(5, "dead"), 0)
	heldAtLeast(3)
	recv.release()
	a := nextAttempt(t, attempts, 1)
	require.NotErrorIs(t, a.err, webhook.ErrEndpointBusy)
	require.ErrorIs(t, a.err, asynq.SkipRetry, "given up")
	require.ErrorContains(t, a.err, "answered 503")
	require.Equal(t, []int64{5}, store.given())
	require.ErrorContains(t, <-first, "answered 503")
	require.ErrorContains(t, <-second, "answered 503")

	// The share is given back: the next task of the endpoint runs.
	require.ErrorContains(t, d.ProcessTask(context.Background(), task(6, "dead")), "answered 503", "run, not deferred")

	// One endpoint only: nothing to leave workers to, no limit.
	solo, soloReg := newDeliverer(&giveUps{}, "dead")
	solo.IsFailure(errors.New("answered 503"))
	var wg sync.WaitGroup
	for id := range int64(3) {
		wg.Go(func() {
			require.ErrorContains(t, solo.ProcessTask(context.Background(), task(10+id, "dead")), "answered 503")
		})
	}
	wg.Wait()
	require.Zero(t, deferredCount(t, soloReg, "dead"))
}

// deferredCount reads intake_webhook_deferred_total{endpoint}.
func deferredCount(t *testing.T, reg *prometheus.Registry, endpoint string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() != "intake_webhook_deferred_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			if m.GetLabel()[0].GetValue() == endpoint {
				return m.GetCounter().GetValue()
			}
		}
	}
	t.Fatalf("no intake_webhook_deferred_total{endpoint=%q}", endpoint)
	return 0
}
