package webhook_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/hibiken/asynq"
	"github.com/stretchr/testify/require"

	"github.com/intakehq/intake/internal/testkit"
	"github.com/intakehq/intake/internal/webhook"
)

// statusReceiver answers each notification (by webhook-id) with the status and Retry-After of
// answers, counting the posts; an id it does not list is answered 204.
type statusReceiver struct {
	URL     string
	mu      sync.Mutex
	posts   map[string]int
	answers map[string]func(h http.Header) int
}

func newStatusReceiver(t *testing.T, answers map[string]func(h http.Header) int) *statusReceiver {
	t.Helper()
	r := &statusReceiver{posts: map[string]int{}, answers: answers}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		id := req.Header.Get(webhook.HeaderID)
		r.mu.Lock()
		r.posts[id]++
		r.mu.Unlock()
		code := http.StatusNoContent
		if answer, ok := r.answers[id]; ok {
			code = answer(w.Header())
		}
		w.WriteHeader(code)
	}))
	t.Cleanup(srv.Close)
	r.URL = srv.URL
	return r
}

func (r *statusReceiver) postsOf(id string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.posts[id]
}

// retryAfter answers status with Retry-After set to value (computed at each answer).
func retryAfter(status int, value func() string) func(http.Header) int {
	return func(h http.Header) int {
		h.Set("Retry-After", value())
		return status
	}
}

func constant(s string) func() string { return func() string { return s } }

// TestRetryAfterValue: delay-seconds and HTTP-dates (relative to the answer's Date, else to now)
// give their delay, capped at the schedule's longest; anything else, and a date not in the
// future, none.
func TestRetryAfterValue(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC)
	date := now.Add(-time.Hour) // the receiver's clock, an hour behind ours
	for _, c := range []struct {
		value, date string
		want        time.Duration
	}{
		{"120", "", 2 * time.Minute},
		{" 30 ", "", 30 * time.Second},
		{"0", "", 0},
		{"7200", "", 2 * time.Hour},
		{"86400", "", webhook.MaxDelay},
		{"99999999999999999999999999", "", webhook.MaxDelay},
		{now.Add(3 * time.Minute).Format(http.TimeFormat), "", 3 * time.Minute},
		{date.Add(90 * time.Second).Format(http.TimeFormat), date.Format(http.TimeFormat), 90 * time.Second},
		{now.Add(3 * time.Minute).Format(time.RFC850), "", 3 * time.Minute},
		{now.Add(3 * time.Minute).Format(time.ANSIC), "", 3 * time.Minute},
		{now.Add(48 * time.Hour).Format(http.TimeFormat), "", webhook.MaxDelay},
		{now.Add(-time.Minute).Format(http.TimeFormat), "", 0},
		{now.Add(3 * time.Minute).Format(http.TimeFormat), "not a date", 3 * time.Minute},
		{"", "", 0},
		{"soon", "", 0},
		{"-5", "", 0},
		{"+5", "", 0},
		{"1.5", "", 0},
		{"5 s", "", 0},
		{"0x10", "", 0},
		{now.Add(3 * time.Minute).Format(time.RFC3339), "", 0},
	} {
		require.Equal(t, c.want, webhook.RetryAfterValue(c.value, c.date, now), "Retry-After %q, Date %q", c.value, c.date)
	}
}

// TestRetryDelayHonoursRetryAfter: a failure carrying a Retry-After longer than the schedule's
// delay waits at least that long (plus the jitter), however it is wrapped or joined (a batch joins
// several: the longest counts), and at most the schedule's longest delay; a shorter one leaves the
// schedule's delay.
func TestRetryDelayHonoursRetryAfter(t *testing.T) {
	t.Parallel()
	five := &webhook.RetryAfterError{After: 5 * time.Minute}
	for name, c := range map[string]struct {
		n    int
		err  error
		want time.Duration
	}{
		"longer than the schedule's":  {0, five, 5 * time.Minute},
		"wrapped":                     {0, fmt.Errorf("deliver a to %q: %w", "app", five), 5 * time.Minute},
		"joined: the longest":         {1, errors.Join(&webhook.RetryAfterError{After: time.Minute}, errors.New("enqueue"), five), 5 * time.Minute},
		"shorter than the schedule's": {6, five, webhook.NominalDelay(6)},
		"past the longest delay":      {0, &webhook.RetryAfterError{After: 10 * time.Hour}, webhook.MaxDelay},
		"none":                        {0, errors.New("answered 503"), webhook.NominalDelay(0)},
	} {
		for range 20 {
			d := webhook.RetryDelay(c.n, c.err, nil)
			require.GreaterOrEqual(t, d, c.want, name)
			require.LessOrEqual(t, d, c.want+c.want/4, name)
		}
	}
}

// TestRetryAfterIsTheLeastDelay: receivers that rate-limit (429) or are in maintenance (503) say
// when to come back (Retry-After, in seconds or as an HTTP-date). The delivery was retried on the
// schedule regardless (10 s, 20 s, ...). Now a delivery's retry (asynq's RetryDelayFunc:
// RetryDelay) is due no sooner than the receiver asked; a Retry-After that means nothing is
// ignored.
func TestRetryAfterIsTheLeastDelay(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("needs Redis (the local stack)")
	}
	recv := newStatusReceiver(t, map[string]func(http.Header) int{
		"limited":     retryAfter(http.StatusTooManyRequests, constant("120")),
		"maintenance": retryAfter(http.StatusServiceUnavailable, func() string { return time.Now().Add(3 * time.Minute).UTC().Format(http.TimeFormat) }),
		"garbage":     retryAfter(http.StatusServiceUnavailable, constant("soon")),
	})
	redis, client, insp, store, d := retryAfterDeliverer(t, recv.URL)

	// Single deliveries, retried by an asynq server on the webhook schedule.
	srv := asynq.NewServer(redis, asynq.Config{
		Concurrency: 3, Queues: map[string]int{webhook.Queue: 1}, TaskCheckInterval: webhook.TaskCheckInterval,
		LogLevel: asynq.FatalLevel, RetryDelayFunc: webhook.RetryDelay, IsFailure: d.IsFailure,
	})
	require.NoError(t, srv.Start(d))
	t.Cleanup(srv.Shutdown)
	before := time.Now().Truncate(time.Second) // asynq keeps whole seconds
	ids := map[string]string{}                 // webhook-id → task ID
	for i, id := range []string{"limited", "maintenance", "garbage"} {
		task, err := webhook.NewDeliverTask([]webhook.Item{{OutboxID: int64(10 + i), Endpoint: "app", Body: []byte(`{"id":"` + id + `","type":"upload.valid"}`)}}, time.Second)
		require.NoError(t, err)
		info, err := client.Enqueue(task)
		require.NoError(t, err)
		ids[id] = info.ID
	}
	retrying := map[string]*asynq.TaskInfo{}
	require.Eventually(t, func() bool {
		for id, taskID := range ids {
			if info, err := insp.GetTaskInfo(webhook.Queue, taskID); err == nil && info.State == asynq.TaskStateRetry {
				retrying[id] = info
			}
		}
		return len(retrying) == len(ids)
	}, 30*time.Second, 20*time.Millisecond, "each delivery failed once and waits for its retry")
	after := time.Now()
	for id := range ids {
		require.Equal(t, 1, recv.postsOf(id), id)
	}
	require.GreaterOrEqual(t, retrying["limited"].NextProcessAt, before.Add(120*time.Second), "429, Retry-After: 120")
	require.LessOrEqual(t, retrying["limited"].NextProcessAt, after.Add(150*time.Second), "429, Retry-After: 120, plus the jitter")
	require.GreaterOrEqual(t, retrying["maintenance"].NextProcessAt, before.Add(178*time.Second), "503, Retry-After: an HTTP-date 3 minutes on")
	require.LessOrEqual(t, retrying["maintenance"].NextProcessAt, after.Add(226*time.Second), "503, Retry-After: an HTTP-date 3 minutes on, plus the jitter")
	require.LessOrEqual(t, retrying["garbage"].NextProcessAt, after.Add(webhook.NominalDelay(0)*5/4), "503, Retry-After: soon (ignored): the schedule's first delay")
	require.Empty(t, store.given())
}

// TestBatchHandsOnAfterRetryAfter: a batch's notification that its receiver rate-limits (429,
// Retry-After: 300) goes on as a task of its own. That task was due after the schedule's first
// delay (10 s) whatever the receiver asked, so that splitting a batch into one task per upload
// raised the rate at the receiver that asked for less; now it is due no sooner than asked. The
// batch's other notification is delivered.
func TestBatchHandsOnAfterRetryAfter(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("needs Redis (the local stack)")
	}
	recv := newStatusReceiver(t, map[string]func(http.Header) int{
		"batched": retryAfter(http.StatusTooManyRequests, constant("300")),
	})
	_, _, insp, store, d := retryAfterDeliverer(t, recv.URL)

	batch, err := webhook.NewDeliverTask([]webhook.Item{
		{OutboxID: 20, Endpoint: "app", Body: verdictBody("fine", "upload.valid", uuid.New())},
		{OutboxID: 21, Endpoint: "app", Body: verdictBody("batched", "upload.valid", uuid.New())},
	}, time.Second)
	require.NoError(t, err)
	before := time.Now().Truncate(time.Second) // asynq keeps whole seconds
	require.NoError(t, d.ProcessTask(context.Background(), batch))
	after := time.Now()
	require.Equal(t, []int64{20}, store.deliveries())
	handed, err := insp.GetTaskInfo(webhook.Queue, webhook.DeliverTaskID(21, "app"))
	require.NoError(t, err, "the failed notification went on as a task of its own")
	require.Equal(t, asynq.TaskStateScheduled, handed.State)
	require.GreaterOrEqual(t, handed.NextProcessAt, before.Add(300*time.Second), "429, Retry-After: 300")
	require.LessOrEqual(t, handed.NextProcessAt, after.Add(375*time.Second), "429, Retry-After: 300, plus the jitter")
}

// TestGoneIsGivenUpAtOnce: a receiver answering 410 Gone says the endpoint is gone for good. Its
// deliveries were retried for a day (22 attempts each) before they were given up; now they are
// given up at once, as the address guard's refusals are (the outbox records them in gave_up, for
// `intake outbox redeliver` once the endpoint is fixed, or `intake outbox discard`): a single
// delivery, and in a batch the gone notification with the later ones of its upload (not posted
// past it), while the batch's other uploads are delivered. Another 4xx (404) is still retried.
func TestGoneIsGivenUpAtOnce(t *testing.T) {
	t.Parallel()
	gone := func(http.Header) int { return http.StatusGone }
	recv := newStatusReceiver(t, map[string]func(http.Header) int{
		"gone": gone, "gone-first": gone,
		"missing": func(http.Header) int { return http.StatusNotFound },
	})
	endpoints, err := webhook.NewEndpoints([]webhook.EndpointConfig{{Name: "app", URL: recv.URL, Secret: testkit.WebhookSecret(t)}}, true)
	require.NoError(t, err)
	store := &giveUps{}
	d, err := webhook.NewDeliverer(webhook.DelivererConfig{Store: store, Endpoints: endpoints, Tasks: noTasks{},
		Client: webhook.NewClient(webhook.ClientOptions{Timeout: 5 * time.Second, AllowPrivate: true})})
	require.NoError(t, err)

	single, err := webhook.NewDeliverTask([]webhook.Item{{OutboxID: 3, Endpoint: "app", Body: []byte(`{"id":"gone","type":"upload.valid"}`)}}, time.Second)
	require.NoError(t, err)
	err = d.ProcessTask(context.Background(), single)
	require.ErrorIs(t, err, asynq.SkipRetry, "given up: archived, not retried")
	require.ErrorIs(t, err, webhook.ErrGone)
	require.Equal(t, []int64{3}, store.given())

	missing, err := webhook.NewDeliverTask([]webhook.Item{{OutboxID: 4, Endpoint: "app", Body: []byte(`{"id":"missing","type":"upload.valid"}`)}}, time.Second)
	require.NoError(t, err)
	err = d.ProcessTask(context.Background(), missing)
	require.ErrorContains(t, err, "answered 404")
	require.NotErrorIs(t, err, asynq.SkipRetry, "a 404 is retried")
	require.Equal(t, []int64{3}, store.given())

	upload := uuid.New()
	batch, err := webhook.NewDeliverTask([]webhook.Item{
		{OutboxID: 5, Endpoint: "app", Body: verdictBody("gone-first", "upload.valid", upload)},
		{OutboxID: 6, Endpoint: "app", Body: verdictBody("behind", "upload.deleted", upload)},
		{OutboxID: 7, Endpoint: "app", Body: verdictBody("other", "upload.valid", uuid.New())},
	}, time.Second)
	require.NoError(t, err)
	err = d.ProcessTask(context.Background(), batch)
	require.ErrorIs(t, err, asynq.SkipRetry)
	require.ErrorIs(t, err, webhook.ErrGone)
	require.ElementsMatch(t, []int64{3, 5, 6}, store.given())
	require.Equal(t, []int64{7}, store.deliveries())
	require.Zero(t, recv.postsOf("behind"), "not posted past the gone one")
}

// retryAfterDeliverer is a Deliverer posting to url (endpoint "app") on a Redis database of the
// test's own, with its client, inspector and give-up store.
func retryAfterDeliverer(t *testing.T, url string) (asynq.RedisClientOpt, *asynq.Client, *asynq.Inspector, *giveUps, *webhook.Deliverer) {
	t.Helper()
	endpoints, err := webhook.NewEndpoints([]webhook.EndpointConfig{{Name: "app", URL: url, Secret: testkit.WebhookSecret(t)}}, true)
	require.NoError(t, err)
	redis := asynq.RedisClientOpt{Addr: testkit.RedisAddr(), DB: testkit.RedisDB(t)}
	client := asynq.NewClient(redis)
	t.Cleanup(func() { _ = client.Close() })
	insp := asynq.NewInspector(redis)
	t.Cleanup(func() { _ = insp.Close() })
	store := &giveUps{}
	d, err := webhook.NewDeliverer(webhook.DelivererConfig{Store: store, Endpoints: endpoints, Tasks: client,
		Client: webhook.NewClient(webhook.ClientOptions{Timeout: 5 * time.Second, AllowPrivate: true})})
	require.NoError(t, err)
	return redis, client, insp, store, d
}
