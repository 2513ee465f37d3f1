package webhook_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/intakehq/intake/internal/testkit"
	"github.com/intakehq/intake/internal/webhook"
	"github.com/intakehq/intake/worker/tasks"
)

// verdictBody is a notification's body as the relay builds it, of upload; its metadata holds an
// "upload_id" of its own, which is not the upload's.
func verdictBody(id, typ string, upload uuid.UUID) []byte {
	data := fmt.Sprintf(`{"upload_id":%q,"status":%q,"metadata":{"upload_id":"decoy"}}`, upload, typ[len("upload."):])
	return tasks.AppendUploadVerdict(nil, id, typ, time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC), []byte(data))
}

// orderReceiver records, per webhook-id, the requests it got, and the order in which it answered
// 2xx (once the answer's delay is over: what the app has taken in).
type orderReceiver struct {
	URL       string
	mu        sync.Mutex
	posts     map[string]int
	delivered []string
	// answer gives the status and the delay of post n (1, 2, ...) of id.
	answer func(id string, n int) (int, time.Duration)
}

func newOrderReceiver(t *testing.T, answer func(id string, n int) (int, time.Duration)) *orderReceiver {
	r := &orderReceiver{posts: map[string]int{}, answer: answer}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		id := req.Header.Get(webhook.HeaderID)
		r.mu.Lock()
		r.posts[id]++
		n := r.posts[id]
		r.mu.Unlock()
		code, delay := r.answer(id, n)
		time.Sleep(delay)
		if code/100 == 2 {
			r.mu.Lock()
			r.delivered = append(r.delivered, id)
			r.mu.Unlock()
		}
		w.WriteHeader(code)
	}))
	t.Cleanup(srv.Close)
	r.URL = srv.URL
	return r
}

func (r *orderReceiver) postsOf(id string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.posts[id]
}

func (r *orderReceiver) deliveries() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.delivered)
}

// queued records the tasks a deliverer hands on (failing every enqueue while refuse is set).
type queued struct {
	mu     sync.Mutex
	tasks  []*asynq.Task
	delays []time.Duration
	refuse bool
}

func (q *queued) EnqueueContext(_ context.Context, task *asynq.Task, opts ...asynq.Option) (*asynq.TaskInfo, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.refuse {
		return nil, errors.New("OOM command not allowed when used memory > 'maxmemory'")
	}
	var delay time.Duration
	for _, o := range opts {
		if o.Type() == asynq.ProcessInOpt {
			delay = o.Value().(time.Duration)
		}
	}
	q.tasks, q.delays = append(q.tasks, task), append(q.delays, delay)
	return &asynq.TaskInfo{}, nil
}

func (q *queued) all() ([]*asynq.Task, []time.Duration) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return slices.Clone(q.tasks), slices.Clone(q.delays)
}

// attemptsObserved returns the sample count and sum of intake_webhook_delivery_attempts.
func attemptsObserved(t *testing.T, reg *prometheus.Registry) (uint64, float64) {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() == "intake_webhook_delivery_attempts" {
			h := mf.GetMetric()[0].GetHistogram()
			return h.GetSampleCount(), h.GetSampleSum()
		}
	}
	t.Fatal("no intake_webhook_delivery_attempts")
	return 0, 0
}

// newOrderDeliverer returns a deliverer to the endpoint "app" at url (with endpoint false: a
// worker that does not know "app"), handing its tasks on to q, with metrics in a registry of its own.
func newOrderDeliverer(t *testing.T, url string, endpoint bool, store webhook.Store, q *queued) (*webhook.Deliverer, *prometheus.Registry) {
	t.Helper()
	cfgs := []webhook.EndpointConfig{{Name: "other", URL: url + "/other", Secret: testkit.WebhookSecret(t)}}
	if endpoint {
		cfgs = append(cfgs, webhook.EndpointConfig{Name: "app", URL: url, Secret: testkit.WebhookSecret(t)})
	}
	endpoints, err := webhook.NewEndpoints(cfgs, true)
	require.NoError(t, err)
	reg := prometheus.NewRegistry()
	metrics, err := webhook.NewMetrics(reg, endpoints.Names())
	require.NoError(t, err)
	d, err := webhook.NewDeliverer(webhook.DelivererConfig{Store: store, Endpoints: endpoints, Tasks: q, Metrics: metrics,
		Client: webhook.NewClient(webhook.ClientOptions{Timeout: 5 * time.Second, AllowPrivate: true})})
	require.NoError(t, err)
	return d, reg
}

// TestBatchPostsAnUploadsNotificationsInOrder: a batch holds two notifications of upload one
// (valid, then deleted), two of upload two, and one of upload three. The first of upload two is
// answered slowly: the second of upload two is posted only once the first was answered, so the app
// takes them in in order. The first of upload one fails: the second of upload one is not posted
// past it; both go on together, in order, as one sequence task, due after the first retry delay,
// whose run posts them in order. Before, the batch posted all five at once (four at a time): the
// app took "deleted" in before "valid" (upload two), and "deleted" of upload one was delivered at
// once while its "valid" waited 10 s for its own task.
func TestBatchPostsAnUploadsNotificationsInOrder(t *testing.T) {
	t.Parallel()
	one, two, three := uuid.New(), uuid.New(), uuid.New()
	recv := newOrderReceiver(t, func(id string, n int) (int, time.Duration) {
		switch {
		case id == "one-valid" && n == 1:
			return http.StatusServiceUnavailable, 0
		case id == "two-valid":
			return http.StatusNoContent, 300 * time.Millisecond
		}
		return http.StatusNoContent, 0
	})
	q := &queued{}
	store := &giveUps{}
	d, reg := newOrderDeliverer(t, recv.URL, true, store, q)
	items := []webhook.Item{
		{OutboxID: 1, Endpoint: "app", Body: verdictBody("one-valid", tasks.EventUploadValid, one)},
		{OutboxID: 2, Endpoint: "app", Body: verdictBody("two-valid", tasks.EventUploadValid, two)},
		{OutboxID: 3, Endpoint: "app", Body: verdictBody("one-deleted", tasks.EventUploadDeleted, one)},
		{OutboxID: 4, Endpoint: "app", Body: verdictBody("two-deleted", tasks.EventUploadDeleted, two)},
		{OutboxID: 5, Endpoint: "app", Body: verdictBody("three-valid", tasks.EventUploadValid, three)},
	}
	batch, err := webhook.NewDeliverTask(items, time.Second)
	require.NoError(t, err)

	require.NoError(t, d.ProcessTask(context.Background(), batch), "the failed notification is handed on")
	require.Zero(t, recv.postsOf("one-deleted"), "not posted past the failed notification of its upload")
	got := recv.deliveries()
	require.Less(t, slices.Index(got, "two-valid"), slices.Index(got, "two-deleted"), "upload two in order: %v", got)
	require.ElementsMatch(t, []string{"two-valid", "two-deleted", "three-valid"}, got)

	handed, delays := q.all()
	require.Len(t, handed, 1, "one task: the failed notification and the later one of its upload")
	require.Positive(t, delays[0], "due after the first retry delay")
	seq, err := webhook.ParseDeliver(handed[0].Payload())
	require.NoError(t, err)
	require.Equal(t, []webhook.Item{
		{OutboxID: 1, Endpoint: "app", Body: items[0].Body, Attempted: 1},
		{OutboxID: 3, Endpoint: "app", Body: items[2].Body},
	}, seq)
	require.Regexp(t, `^webhook:seq:1-3/2\.[0-9a-f]{16}:app$`, webhook.TaskID(seq), "not the ID of a batch of the same rows")

	require.NoError(t, d.ProcessTask(context.Background(), handed[0]))
	require.Equal(t, []string{"one-valid", "one-deleted"}, recv.deliveries()[3:], "upload one in order")
	require.Equal(t, 2, recv.postsOf("one-valid"))
	require.Equal(t, 1, recv.postsOf("one-deleted"))
	n, sum := attemptsObserved(t, reg)
	require.Equal(t, uint64(5), n)
	require.Equal(t, 6.0, sum, "one attempt each, two for one-valid")
	require.Empty(t, store.given())
}

// TestSequenceIsRetriedAsAWhole: a sequence (the notifications of one upload handed on by a batch,
// the first of which failed there) is retried as one task while its first notification fails,
// posting nothing past it; once that one is delivered, the next is posted, and when it fails it
// goes on with the one after it as a sequence of their own, due after the first retry delay, the
// one attempt it had counted. The attempts of the first are counted: one in the batch, three in
// the sequence. Before, the sequence was run as a batch: all three posted at once.
func TestSequenceIsRetriedAsAWhole(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("needs Redis (the local stack)")
	}
	upload := uuid.New()
	recv := newOrderReceiver(t, func(id string, n int) (int, time.Duration) {
		if (id == "a" && n <= 2) || (id == "b" && n == 1) {
			return http.StatusBadGateway, 0
		}
		return http.StatusNoContent, 0
	})
	q := &queued{}
	store := &giveUps{}
	d, reg := newOrderDeliverer(t, recv.URL, true, store, q)
	items := []webhook.Item{
		{OutboxID: 7, Endpoint: "app", Body: verdictBody("a", tasks.EventUploadValid, upload), Attempted: 1},
		{OutboxID: 8, Endpoint: "app", Body: verdictBody("b", tasks.EventUploadRejected, upload)},
		{OutboxID: 9, Endpoint: "app", Body: verdictBody("c", tasks.EventUploadDeleted, upload)},
	}
	task, err := webhook.NewDeliverTask(items, time.Second)
	require.NoError(t, err)

	attempts, _, _ := runTask(t, d, store, task, 5)
	for run := range 3 {
		a := nextAttempt(t, attempts, run+1)
		require.Equal(t, run, a.retried)
		if run < 2 {
			require.ErrorContains(t, a.err, "answered 502", "run %d: retried", run+1)
			require.Zero(t, recv.postsOf("b"), "run %d: nothing posted past the first", run+1)
			continue
		}
		require.NoError(t, a.err, "the rest is handed on")
	}
	require.Equal(t, []string{"a"}, recv.deliveries())
	require.Equal(t, 3, recv.postsOf("a"))
	require.Equal(t, 1, recv.postsOf("b"))
	require.Zero(t, recv.postsOf("c"))
	handed, delays := q.all()
	require.Len(t, handed, 1)
	require.Positive(t, delays[0])
	rest, err := webhook.ParseDeliver(handed[0].Payload())
	require.NoError(t, err)
	require.Equal(t, []webhook.Item{
		{OutboxID: 8, Endpoint: "app", Body: items[1].Body, Attempted: 1},
		{OutboxID: 9, Endpoint: "app", Body: items[2].Body},
	}, rest)
	n, sum := attemptsObserved(t, reg)
	require.Equal(t, uint64(1), n)
	require.Equal(t, 4.0, sum, "a: one attempt in the batch, three in the sequence")
}

// TestBatchCountsOnlyTheRunsThatPosted: a batch is run twice by workers that do not know its
// endpoint (a rolling deploy adding it), posting nothing, then by one that does. Its first real
// posts are attempt 1 (intake_webhook_delivery_attempts), and the notification that failed goes on
// with one attempt counted. Before, every earlier run counted as an attempt: the delivered
// notification was observed as attempt 3, and the failed one went on as attempted 3 times.
func TestBatchCountsOnlyTheRunsThatPosted(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("needs Redis (the local stack)")
	}
	recv := newOrderReceiver(t, func(id string, _ int) (int, time.Duration) {
		if id == "failing" {
			return http.StatusInternalServerError, 0
		}
		return http.StatusNoContent, 0
	})
	q := &queued{}
	store := &giveUps{}
	old, _ := newOrderDeliverer(t, recv.URL, false, store, q)
	d, reg := newOrderDeliverer(t, recv.URL, true, store, q)
	task, err := webhook.NewDeliverTask([]webhook.Item{
		{OutboxID: 3, Endpoint: "app", Body: verdictBody("fine", tasks.EventUploadValid, uuid.New())},
		{OutboxID: 4, Endpoint: "app", Body: verdictBody("failing", tasks.EventUploadValid, uuid.New())},
	}, time.Second)
	require.NoError(t, err)
	deploy := asynq.HandlerFunc(func(ctx context.Context, t *asynq.Task) error {
		if retried, _ := asynq.GetRetryCount(ctx); retried < 2 {
			return old.ProcessTask(ctx, t)
		}
		return d.ProcessTask(ctx, t)
	})

	attempts, _, _ := runTask(t, deploy, store, task, 5)
	for run := range 3 {
		a := nextAttempt(t, attempts, run+1)
		if run < 2 {
			require.ErrorContains(t, a.err, `"app" is not configured`)
			continue
		}
		require.NoError(t, a.err)
	}
	require.Equal(t, 1, recv.postsOf("fine"))
	require.Equal(t, 1, recv.postsOf("failing"))
	n, sum := attemptsObserved(t, reg)
	require.Equal(t, uint64(1), n)
	require.Equal(t, 1.0, sum, "the first post is attempt 1")
	handed, _ := q.all()
	require.Len(t, handed, 1)
	rest, err := webhook.ParseDeliver(handed[0].Payload())
	require.NoError(t, err)
	require.Len(t, rest, 1)
	require.Equal(t, 1, rest[0].Attempted, "one request posted it")
}

// TestByUpload: a task's items are grouped by the upload of their body's data (not an
// "upload_id" of the app's metadata), each group in order, the groups in the order of their first
// item; an item whose body names no upload is alone.
func TestByUpload(t *testing.T) {
	t.Parallel()
	one, two := uuid.New(), uuid.New()
	item := func(id int64, body []byte) webhook.Item {
		return webhook.Item{OutboxID: id, Endpoint: "app", Body: body}
	}
	items := []webhook.Item{
		item(1, verdictBody("a", tasks.EventUploadValid, one)),
		item(2, []byte(`{"id":"x","type":"upload.valid"}`)),
		item(3, verdictBody("b", tasks.EventUploadValid, two)),
		item(4, verdictBody("c", tasks.EventUploadDeleted, one)),
		item(5, []byte(`{"id":"y","type":"upload.valid"}`)),
		item(6, verdictBody("d", tasks.EventUploadDeleted, two)),
	}
	var got [][]int64
	for _, g := range webhook.ByUpload(items) {
		var ids []int64
		for _, it := range g {
			ids = append(ids, it.OutboxID)
		}
		got = append(got, ids)
	}
	require.Equal(t, [][]int64{{1, 4}, {2}, {3, 6}, {5}}, got)

	// The attempts one after the other a run makes at most: a sequence's all; a batch's as its
	// uploads allow, BatchParallel at once.
	many := func(n int, sameUpload bool, attempted int) []webhook.Item {
		out := make([]webhook.Item, n)
		for i := range out {
			u := uuid.New()
			if sameUpload {
				u = one
			}
			out[i] = item(int64(i+1), verdictBody(fmt.Sprint(i), tasks.EventUploadValid, u))
		}
		out[0].Attempted = attempted
		return out
	}
	require.Equal(t, 4, webhook.Rounds(many(webhook.BatchSize, false, 0)), "16 uploads, 4 at once")
	require.Equal(t, 16, webhook.Rounds(many(webhook.BatchSize, true, 0)), "one upload: in order")
	require.Equal(t, 3, webhook.Rounds(many(3, true, 1)), "a sequence")
	require.Equal(t, 1, webhook.Rounds(many(1, false, 2)))
	require.Equal(t, 7, webhook.Rounds(append(many(4, true, 0), many(12, false, 0)...)), "12/4 + 4")
	require.Equal(t, 2, webhook.Rounds(many(5, false, 0)))
}
