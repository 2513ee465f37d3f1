package webhook_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/stretchr/testify/require"

	"github.com/intakehq/intake/internal/testkit"
	"github.com/intakehq/intake/internal/webhook"
)

// giveUps records deliveries and give-ups (of one endpoint), failing the give-ups while down is
// set (PostgreSQL unavailable).
type giveUps struct {
	mu        sync.Mutex
	down      bool
	got       []int64
	delivered []int64
}

func (s *giveUps) MarkDelivered(_ context.Context, id int64, _ string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.delivered = append(s.delivered, id)
	return nil
}

func (s *giveUps) ToDeliver(_ context.Context, ids []int64, _ string) ([]int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	left := slices.DeleteFunc(slices.Clone(ids), func(id int64) bool {
		return slices.Contains(s.delivered, id) || slices.Contains(s.got, id)
	})
	slices.Sort(left)
	return left, nil
}

func (s *giveUps) deliveries() []int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.delivered)
}

func (s *giveUps) given() []int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.got)
}

func (s *giveUps) setDown(down bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.down = down
}

func (s *giveUps) MarkGaveUp(_ context.Context, id int64, _ string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.down {
		return errors.New("connection refused")
	}
	s.got = append(s.got, id)
	return nil
}

type noTasks struct{}

func (noTasks) EnqueueContext(context.Context, *asynq.Task, ...asynq.Option) (*asynq.TaskInfo, error) {
	return nil, errors.New("no enqueue expected")
}

// TestGiveUpIsRecordedBeforeArchiving: a batch for an endpoint this worker does not know (a
// rolling deploy adding it: relays of the new configuration, a worker of the old one) is retried,
// posting nothing and recording nothing, and given up only on its last attempt: every item is
// recorded as given up and the task is archived. Before, the first attempt gave it up.
func TestGiveUpIsRecordedBeforeArchiving(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("needs Redis (the local stack)")
	}
	endpoints, err := webhook.NewEndpoints([]webhook.EndpointConfig{
		{Name: "kept", URL: "https://hooks.example.com/intake", Secret: testkit.WebhookSecret(t)},
	}, false)
	require.NoError(t, err)
	store := &giveUps{}
	d, err := webhook.NewDeliverer(webhook.DelivererConfig{Store: store, Endpoints: endpoints, Tasks: noTasks{}})
	require.NoError(t, err)
	task, err := webhook.NewDeliverTask([]webhook.Item{
		{OutboxID: 3, Endpoint: "added", Body: []byte(`{"id":"a"}`)},
		{OutboxID: 4, Endpoint: "added", Body: []byte(`{"id":"b"}`)},
	}, time.Second)
	require.NoError(t, err)

	// Outside asynq (no retry count): not the last attempt.
	err = d.ProcessTask(context.Background(), task)
	require.NotErrorIs(t, err, asynq.SkipRetry, "retried, not archived")
	require.Empty(t, store.given(), "not given up")
	require.ErrorContains(t, err, `"added" is not configured`)

	// In asynq, with 2 retries: the third attempt is the last.
	attempts := make(chan attempt, 8)
	redis := asynq.RedisClientOpt{Addr: testkit.RedisAddr(), DB: testkit.RedisDB(t)}
	srv := asynq.NewServer(redis, asynq.Config{
		Concurrency: 1, Queues: map[string]int{webhook.Queue: 1}, TaskCheckInterval: webhook.TaskCheckInterval,
		DelayedTaskCheckInterval: 50 * time.Millisecond, LogLevel: asynq.FatalLevel,
		RetryDelayFunc: func(int, error, *asynq.Task) time.Duration { return 10 * time.Millisecond },
	})
	require.NoError(t, srv.Start(asynq.HandlerFunc(func(ctx context.Context, t *asynq.Task) error {
		err := d.ProcessTask(ctx, t)
		retried, _ := asynq.GetRetryCount(ctx)
		attempts <- attempt{retried, err, len(store.given())}
		return err
	})))
	t.Cleanup(srv.Shutdown)
	client := asynq.NewClient(redis)
	t.Cleanup(func() { _ = client.Close() })
	info, err := client.Enqueue(task, asynq.MaxRetry(2))
	require.NoError(t, err)
	for retried := range 3 {
		a := nextAttempt(t, attempts, retried+1)
		require.Equal(t, retried, a.retried)
		require.ErrorContains(t, a.err, `"added" is not configured`)
		if retried < 2 {
			require.NotErrorIs(t, a.err, asynq.SkipRetry, "attempt %d: retried", retried+1)
			require.Zero(t, a.recorded, "attempt %d: nothing given up", retried+1)
		} else {
			require.ErrorIs(t, a.err, asynq.SkipRetry, "the last attempt gives up")
			require.Equal(t, 2, a.recorded)
		}
	}
	require.Equal(t, []int64{3, 4}, store.given())
	insp := asynq.NewInspector(redis)
	t.Cleanup(func() { _ = insp.Close() })
	require.Eventually(t, func() bool {
		got, err := insp.GetTaskInfo(webhook.Queue, info.ID)
		return err == nil && got.State == asynq.TaskStateArchived
	}, 10*time.Second, 20*time.Millisecond, "archived after the last attempt")
}

// TestRefusedGiveUpIsRecordedBeforeArchiving: a delivery the address guard refuses is given up at
// once. While its record fails (PostgreSQL unavailable), the task fails without SkipRetry (asynq
// retries it, and a retry records the give-up); once recorded, the task is archived (SkipRetry).
func TestRefusedGiveUpIsRecordedBeforeArchiving(t *testing.T) {
	t.Parallel()
	endpoints, err := webhook.NewEndpoints([]webhook.EndpointConfig{
		{Name: "internal", URL: "http://127.0.0.1:1/intake", Secret: testkit.WebhookSecret(t)},
	}, true)
	require.NoError(t, err)
	store := &giveUps{down: true}
	d, err := webhook.NewDeliverer(webhook.DelivererConfig{Store: store, Endpoints: endpoints, Tasks: noTasks{},
		Client: webhook.NewClient(webhook.ClientOptions{Timeout: 5 * time.Second})})
	require.NoError(t, err)
	task, err := webhook.NewDeliverTask([]webhook.Item{{OutboxID: 3, Endpoint: "internal", Body: []byte(`{"id":"a"}`)}}, time.Second)
	require.NoError(t, err)

	err = d.ProcessTask(context.Background(), task)
	require.ErrorIs(t, err, webhook.ErrForbiddenAddress)
	require.NotErrorIs(t, err, asynq.SkipRetry, "not recorded: retried, not archived")
	require.Empty(t, store.given())

	store.setDown(false)
	err = d.ProcessTask(context.Background(), task)
	require.ErrorIs(t, err, asynq.SkipRetry)
	require.Equal(t, []int64{3}, store.given())
}

// TestDeliveryErrorsHoldNoURLCredential: a webhook URL often carries its credential in its path
// or query (Slack's /services/T/B/<token>, ?token=, Azure's ?code=). A failed attempt's error
// goes where the log's redaction does not reach: asynq keeps it in Redis with the task, and
// `intake jobs list` and asynqmon show it. It names the endpoint's scheme and host only, and still
// classifies (a refused address is still ErrForbiddenAddress).
func TestDeliveryErrorsHoldNoURLCredential(t *testing.T) {
	t.Parallel()
	const pathToken, queryToken = "pathsecret0123456789", "querysecret0123456789"
	for name, tt := range map[string]struct {
		url          string
		allowPrivate bool
		refused      bool
	}{
		"connection refused": {url: "http://127.0.0.1:1/services/T0/B0/" + pathToken + "?code=" + queryToken, allowPrivate: true},
		"address refused":    {url: "http://127.0.0.1:1/services/T0/B0/" + pathToken + "?code=" + queryToken, refused: true},
	} {
		endpoints, err := webhook.NewEndpoints([]webhook.EndpointConfig{
			{Name: "hook", URL: tt.url, Secret: testkit.WebhookSecret(t)},
		}, true) // the client's dial guard refuses it (as for a name rebound to a private address)
		require.NoError(t, err, name)
		d, err := webhook.NewDeliverer(webhook.DelivererConfig{Store: &giveUps{}, Endpoints: endpoints, Tasks: noTasks{},
			Client: webhook.NewClient(webhook.ClientOptions{Timeout: 5 * time.Second, AllowPrivate: tt.allowPrivate})})
		require.NoError(t, err, name)
		task, err := webhook.NewDeliverTask([]webhook.Item{{OutboxID: 3, Endpoint: "hook", Body: []byte(`{"id":"a"}`)}}, time.Second)
		require.NoError(t, err, name)
		err = d.ProcessTask(context.Background(), task)
		require.Error(t, err, name)
		require.NotContains(t, err.Error(), pathToken, name)
		require.NotContains(t, err.Error(), queryToken, name)
		require.Contains(t, err.Error(), "http://127.0.0.1:1/", name)
		require.Equal(t, tt.refused, errors.Is(err, webhook.ErrForbiddenAddress), name)
	}
}

// attempt is one run of a task by runTask's asynq server.
type attempt struct {
	retried  int
	err      error
	recorded int
}

// nextAttempt returns the n-th run of runTask's task, failing the test when it does not come
// within 30 s.
func nextAttempt(t *testing.T, attempts <-chan attempt, n int) attempt {
	t.Helper()
	select {
	case a := <-attempts:
		return a
	case <-time.After(30 * time.Second):
		t.Fatalf("no run %d", n)
		return attempt{}
	}
}

// runTask runs task with d on an asynq server of its own (retries after 10 ms, maxRetry retries)
// and returns its runs, with the give-ups store held after each, and the task's ID.
func runTask(t *testing.T, d asynq.Handler, store *giveUps, task *asynq.Task, maxRetry int) (<-chan attempt, asynq.RedisClientOpt, string) {
	t.Helper()
	attempts := make(chan attempt, 8)
	redis := asynq.RedisClientOpt{Addr: testkit.RedisAddr(), DB: testkit.RedisDB(t)}
	srv := asynq.NewServer(redis, asynq.Config{
		Concurrency: 1, Queues: map[string]int{webhook.Queue: 1}, TaskCheckInterval: webhook.TaskCheckInterval,
		DelayedTaskCheckInterval: 50 * time.Millisecond, LogLevel: asynq.FatalLevel,
		RetryDelayFunc: func(int, error, *asynq.Task) time.Duration { return 10 * time.Millisecond },
	})
	require.NoError(t, srv.Start(asynq.HandlerFunc(func(ctx context.Context, t *asynq.Task) error {
		err := d.ProcessTask(ctx, t)
		retried, _ := asynq.GetRetryCount(ctx)
		attempts <- attempt{retried, err, len(store.given())}
		return err
	})))
	t.Cleanup(srv.Shutdown)
	client := asynq.NewClient(redis)
	t.Cleanup(func() { _ = client.Close() })
	info, err := client.Enqueue(task, asynq.MaxRetry(maxRetry))
	require.NoError(t, err)
	return attempts, redis, info.ID
}

// TestBatchGivesUpOnItsLastAttempt: a batch posts two notifications; one is delivered, the other
// fails, and its own task cannot be enqueued (Redis refusing that write), so the batch is retried.
// Its retries post only the notification not delivered yet, and its last attempt, still unable
// to enqueue it, gives it up (recorded, then the task is archived). Before, every run posted both
// again, and the last one returned the enqueue's error: asynq archived the batch with nothing
// given up, leaving the notification pending with no task to deliver it and no alert.
func TestBatchGivesUpOnItsLastAttempt(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("needs Redis (the local stack)")
	}
	var mu sync.Mutex
	posts := map[string]int{}
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get(webhook.HeaderID)
		mu.Lock()
		posts[id]++
		mu.Unlock()
		if id == "failing" {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(recv.Close)
	endpoints, err := webhook.NewEndpoints([]webhook.EndpointConfig{{Name: "app", URL: recv.URL, Secret: testkit.WebhookSecret(t)}}, true)
	require.NoError(t, err)
	store := &giveUps{}
	d, err := webhook.NewDeliverer(webhook.DelivererConfig{Store: store, Endpoints: endpoints, Tasks: noTasks{},
		Client: webhook.NewClient(webhook.ClientOptions{Timeout: 5 * time.Second, AllowPrivate: true})})
	require.NoError(t, err)
	task, err := webhook.NewDeliverTask([]webhook.Item{
		{OutboxID: 3, Endpoint: "app", Body: []byte(`{"id":"fine","type":"upload.valid"}`)},
		{OutboxID: 4, Endpoint: "app", Body: []byte(`{"id":"failing","type":"upload.valid"}`)},
	}, time.Second)
	require.NoError(t, err)

	attempts, redis, id := runTask(t, d, store, task, 2)
	for retried := range 3 {
		a := nextAttempt(t, attempts, retried+1)
		require.Equal(t, retried, a.retried)
		require.ErrorContains(t, a.err, "enqueue the retry of notification 4")
		if retried < 2 {
			require.NotErrorIs(t, a.err, asynq.SkipRetry, "attempt %d: retried", retried+1)
			require.Zero(t, a.recorded, "attempt %d: nothing given up", retried+1)
		} else {
			require.ErrorIs(t, a.err, asynq.SkipRetry, "the last attempt gives up")
			require.Equal(t, 1, a.recorded)
		}
	}
	require.Equal(t, []int64{4}, store.given())
	mu.Lock()
	require.Equal(t, map[string]int{"fine": 1, "failing": 3}, posts, "the delivered notification is not posted again")
	mu.Unlock()
	insp := asynq.NewInspector(redis)
	t.Cleanup(func() { _ = insp.Close() })
	require.Eventually(t, func() bool {
		got, err := insp.GetTaskInfo(webhook.Queue, id)
		return err == nil && got.State == asynq.TaskStateArchived
	}, 10*time.Second, 20*time.Millisecond, "archived after the give-up is recorded")
}

// TestBatchRefusedIsGivenUpAtOnce: in a batch, notifications the address guard refuses are given
// up at once and the task is archived, as for a single delivery (retrying cannot help). Before,
// each went on as a task of its own, retried for a day.
func TestBatchRefusedIsGivenUpAtOnce(t *testing.T) {
	t.Parallel()
	endpoints, err := webhook.NewEndpoints([]webhook.EndpointConfig{
		{Name: "internal", URL: "http://127.0.0.1:1/intake", Secret: testkit.WebhookSecret(t)},
	}, true)
	require.NoError(t, err)
	store := &giveUps{}
	d, err := webhook.NewDeliverer(webhook.DelivererConfig{Store: store, Endpoints: endpoints, Tasks: noTasks{},
		Client: webhook.NewClient(webhook.ClientOptions{Timeout: 5 * time.Second})})
	require.NoError(t, err)
	task, err := webhook.NewDeliverTask([]webhook.Item{
		{OutboxID: 3, Endpoint: "internal", Body: []byte(`{"id":"a"}`)},
		{OutboxID: 4, Endpoint: "internal", Body: []byte(`{"id":"b"}`)},
	}, time.Second)
	require.NoError(t, err)
	err = d.ProcessTask(context.Background(), task)
	require.ErrorIs(t, err, webhook.ErrForbiddenAddress)
	require.ErrorIs(t, err, asynq.SkipRetry, "archived, not retried")
	require.ElementsMatch(t, []int64{3, 4}, store.given())
}
