package webhook

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/intakehq/intake/internal/store"
	"github.com/intakehq/intake/internal/telemetry"
)

// Store records deliveries (*store.Outbox, which batches them) and give-ups.
type Store interface {
	// MarkDelivered records the delivery of notification (outbox row) id to endpoint.
	MarkDelivered(ctx context.Context, id int64, endpoint string) error
	// MarkGaveUp records that the delivery of notification id to endpoint was given up.
	MarkGaveUp(ctx context.Context, id int64, endpoint string) error
	// ToDeliver returns those of the notifications ids still to deliver to endpoint (neither
	// delivered to it nor given up on it), in id order.
	ToDeliver(ctx context.Context, ids []int64, endpoint string) ([]int64, error)
}

var _ Store = (*store.Outbox)(nil)

// Results of one attempt (label result of intake_webhook_attempts_total).
const (
	ResultSuccess  = "success"  // 2xx
	ResultRedirect = "http_3xx" // not followed
	Result4xx      = "http_4xx"
	Result5xx      = "http_5xx"
	ResultTimeout  = "timeout"
	ResultRefused  = "refused" // address not public (SSRF guard)
	ResultError    = "error"   // connection refused, reset, TLS, ...
)

// resultInterrupted is the result of a request cut off by the end of its task's run (the
// handler's context cancelled: see [interrupted]). It is not the endpoint's doing: it is neither
// counted (it is no label of intake_webhook_attempts_total) nor logged as a failed attempt.
const resultInterrupted = "interrupted"

// Outcomes of a delivery (label outcome of intake_webhook_deliveries_total).
const (
	// OutcomeDelivered: the endpoint answered 2xx.
	OutcomeDelivered = "delivered"
	// OutcomeGaveUp: the last retry failed (or the failure cannot be retried); the notification
	// records the endpoint as given up (`intake outbox redeliver` sends it again) and asynq
	// archives the task.
	OutcomeGaveUp = "gave_up"
)

// Metrics are the deliveries' Prometheus series.
type Metrics struct {
	attempts   *prometheus.CounterVec
	deliveries *prometheus.CounterVec
	perNotice  prometheus.Histogram
	duration   prometheus.Histogram
	deferred   *prometheus.CounterVec
}

// NewMetrics creates the metrics and registers them on reg.
func NewMetrics(reg prometheus.Registerer, endpoints []string) (*Metrics, error) {
	m := &Metrics{
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: telemetry.Namespace, Name: "webhook_attempts_total",
			Help: "Webhook requests sent, by endpoint and result (success, http_3xx, http_4xx, http_5xx, timeout, refused, error).",
		}, []string{"endpoint", "result"}),
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: telemetry.Namespace, Name: "webhook_deliveries_total",
			Help: "Webhook notifications finished, by endpoint and outcome (delivered, gave_up).",
		}, []string{"endpoint", "outcome"}),
		perNotice: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: telemetry.Namespace, Name: "webhook_delivery_attempts",
			Help:    "Attempts a delivered webhook notification took.",
			Buckets: []float64{1, 2, 3, 4, 6, 10, 16, 22},
		}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: telemetry.Namespace, Name: "webhook_attempt_duration_seconds",
			Help:    "Duration of webhook requests (until the answer's headers and up to 64 KiB of body).",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}),
		deferred: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: telemetry.Namespace, Name: "webhook_deferred_total",
			Help: "Webhook delivery task runs deferred, posting nothing, because their endpoint had its share of the workers, by endpoint.",
		}, []string{"endpoint"}),
	}
	var errs []error
	for _, c := range []prometheus.Collector{m.attempts, m.deliveries, m.perNotice, m.duration, m.deferred} {
		errs = append(errs, reg.Register(c))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("register webhook metrics: %w", err)
	}
	for _, ep := range endpoints {
		for _, r := range []string{ResultSuccess, ResultRedirect, Result4xx, Result5xx, ResultTimeout, ResultRefused, ResultError} {
			m.attempts.WithLabelValues(ep, r)
		}
		m.deliveries.WithLabelValues(ep, OutcomeDelivered)
		m.deliveries.WithLabelValues(ep, OutcomeGaveUp)
		m.deferred.WithLabelValues(ep)
	}
	return m, nil
}

// Enqueuer enqueues the tasks a failing batch splits into (*asynq.Client).
type Enqueuer interface {
	EnqueueContext(ctx context.Context, task *asynq.Task, opts ...asynq.Option) (*asynq.TaskInfo, error)
}

var _ Enqueuer = (*asynq.Client)(nil)

// DelivererConfig configures a [Deliverer].
type DelivererConfig struct {
	// Store records deliveries (required).
	Store Store
	// Endpoints resolves endpoint names (required).
	Endpoints *Endpoints
	// Tasks enqueues the retries of a batch's failed items (required).
	Tasks Enqueuer
	// Client sends the requests (default NewClient with its defaults: private addresses refused).
	Client *http.Client
	// AttemptTimeout is the client's timeout, for the tasks of retried items (default 10 s).
	AttemptTimeout time.Duration
	// RetryDelay is the webhook server's retry schedule (default [RetryDelay]); a batch's failed
	// items are due after its first delay.
	RetryDelay asynq.RetryDelayFunc
	// Metrics, when set, counts attempts and deliveries.
	Metrics *Metrics
	// Log receives one line per failed attempt (default: discard).
	Log *slog.Logger
	// UserAgent is sent with every request (default "intake-webhooks").
	UserAgent string
	// Now is the clock of webhook-timestamp (default time.Now).
	Now func() time.Time
	// MaxPerEndpoint bounds the tasks of one endpoint run at once (0: no bound), so that a receiver
	// that does not answer holds at most that many of the server's workers and the other
	// endpoints' notifications are not held behind its tasks; one whose last [SuspectAfter]
	// attempts timed out gets one at once. A task of an endpoint that has its share is deferred
	// ([DeferredError]), and must not count as a failed attempt: the server's IsFailure must be
	// the Deliverer's [Deliverer.IsFailure] (nothing is deferred before the server has asked it
	// about an error), and its RetryDelayFunc [RetryDelay] (or one that returns a DeferredError's
	// RetryIn). Not applied with fewer than two endpoints. See the package documentation (Delivery).
	MaxPerEndpoint int
	// Workers is the server's workers (its Concurrency; 0: unknown). With MaxPerEndpoint, the
	// endpoints that lately answered their posts in half AttemptTimeout or more (at least 2 s)
	// hold at most three quarters of them together, so that slow receivers, however many, leave workers to the
	// others.
	Workers int
}

// Deliverer runs [TypeDeliver] tasks: it posts notifications to one endpoint, each signed as the
// Standard Webhooks specification says, and records the deliveries. It is an asynq.Handler.
type Deliverer struct {
	store     Store
	endpoints *Endpoints
	tasks     Enqueuer
	client    *http.Client
	timeout   time.Duration
	retry     asynq.RetryDelayFunc
	metrics   *Metrics
	log       *slog.Logger
	userAgent string
	now       func() time.Time
	share     *share
	// asked is set once the server asked IsFailure about an error: deferrals are not counted as
	// failures, and may be made.
	asked atomic.Bool
}

var _ asynq.Handler = (*Deliverer)(nil)

// NewDeliverer checks cfg and returns a Deliverer.
func NewDeliverer(cfg DelivererConfig) (*Deliverer, error) {
	if cfg.Store == nil || cfg.Endpoints == nil || cfg.Tasks == nil {
		return nil, errors.New("webhook deliverer: store, endpoints and task client required")
	}
	d := &Deliverer{
		store: cfg.Store, endpoints: cfg.Endpoints, tasks: cfg.Tasks, client: cfg.Client, metrics: cfg.Metrics,
		timeout: cmp.Or(cfg.AttemptTimeout, 10*time.Second), retry: cfg.RetryDelay,
		log: cmp.Or(cfg.Log, slog.New(slog.DiscardHandler)), userAgent: cmp.Or(cfg.UserAgent, "intake-webhooks"),
		now: cfg.Now,
	}
	if d.client == nil {
		d.client = NewClient(ClientOptions{Timeout: d.timeout})
	}
	if d.now == nil {
		d.now = time.Now
	}
	if d.retry == nil {
		d.retry = RetryDelay
	}
	d.share = newShare(cfg.MaxPerEndpoint, len(cfg.Endpoints.Names()), cfg.Workers, d.timeout, time.Now)
	return d, nil
}

// IsFailure is asynq.Config.IsFailure for the server running d: a run deferred because its
// endpoint had its share of the workers ([ErrEndpointBusy]) is not a failure, and uses up none of
// the task's retries; any other error is. Until the server has called it, d defers nothing (see
// DelivererConfig.MaxPerEndpoint).
func (d *Deliverer) IsFailure(err error) bool {
	d.asked.Store(true)
	return !errors.Is(err, ErrEndpointBusy)
}

// maxAnswer bounds how much of an answer's body is read (the rest is dropped with the connection).
const maxAnswer = 64 << 10

// ProcessTask delivers the notifications of one task. A single item is delivered or fails as the
// task: asynq retries it on the schedule of [RetryDelay] and archives it when the retries are spent;
// errors wrapping asynq.SkipRetry cannot succeed by retrying (a bad payload, an address the SSRF
// guard refuses). A task for an endpoint this worker does not know fails, posting nothing, and is
// retried on that schedule (a worker that knows it, once a rolling deploy that adds it is over,
// delivers it); its last attempt gives it up. A delivery given up (the last retry failed, or
// a failure retrying cannot mend) is recorded on its notification first (see [Deliverer.giveUp]).
//
// The notifications of one upload are posted in order, one at a time, each only once the one
// before it was delivered (2xx and recorded), so that a receiver never gets a later notification
// of an upload before an earlier one of the same task (see [Deliverer.batch] and
// [Deliverer.sequence]); those of different uploads go in parallel.
//
// A batch is the first attempt of its items (the relay's happy path, at a fraction of the tasks):
// when an item fails, it and the later items of its upload in the batch go on together, in order,
// as a task of their own (a single item's, or a sequence's), due after the first retry delay; one
// the address guard refused is given up at once, with the later items of its upload, as a single
// delivery is. The batch fails (and is retried) only when those tasks cannot be enqueued, or its
// endpoint is unknown; a retry posts only the items still to deliver (not those delivered or given
// up since), and on its last attempt the items whose tasks still cannot be enqueued are given up.
// A task enqueued twice (by a relay that died before committing) posts twice, under the same
// webhook-id: delivery is at least once.
//
// With DelivererConfig.MaxPerEndpoint set, a task of an endpoint that has its share of the workers
// is deferred whole before posting anything ([DeferredError]; not on its last attempt): asynq runs
// it again shortly, its retries untouched.
//
// A run cut off by the worker's shutdown (asynq's ShutdownTimeout, INTAKE_SHUTDOWN_GRACE, is up:
// asynq puts the task back in its queue, its retries untouched, and cancels the run's context) is
// not the endpoint's failure: its interrupted request is not counted as an attempt, nothing is
// handed on or given up (even on the task's last attempt: asynq runs it again), and the run
// returns the cancellation's error (see [interrupted]). A request that outlasts the client's own
// timeout (INTAKE_WEBHOOK_TIMEOUT) is the endpoint's failure, and counts as one.
func (d *Deliverer) ProcessTask(ctx context.Context, t *asynq.Task) error {
	items, err := parseDeliver(t.Payload())
	if err != nil {
		return fmt.Errorf("%w: %w", err, asynq.SkipRetry)
	}
	ep, ok := d.endpoints.Get(items[0].Endpoint)
	if !ok {
		// Not given up before the last attempt: during a rolling deploy that adds the endpoint, a
		// worker still running the old configuration gets tasks from relays running the new one,
		// and a worker of the new one retries them.
		err := fmt.Errorf("webhook endpoint %q is not configured on this worker", items[0].Endpoint)
		if isLastAttempt(ctx) {
			return d.giveUp(ctx, items[0].Endpoint, items, err)
		}
		d.log.WarnContext(ctx, "webhook endpoint not configured; retrying", "endpoint", items[0].Endpoint,
			"notifications", len(items))
		return err
	}
	retried, _ := asynq.GetRetryCount(ctx)
	last := isLastAttempt(ctx)
	id, _ := asynq.GetTaskID(ctx)
	release, err := d.share.admit(ep.Name, id, last || !d.asked.Load())
	if err != nil {
		if d.metrics != nil {
			d.metrics.deferred.WithLabelValues(ep.Name).Inc()
		}
		d.log.DebugContext(ctx, "webhook delivery deferred: its endpoint has its share of the workers",
			"endpoint", ep.Name, "notifications", len(items), "err", err)
		return err
	}
	defer release()
	switch {
	case len(items) == 1:
		it := items[0]
		result, err := d.attempt(ctx, ep, it, it.Attempted+retried+1, last)
		switch {
		case err == nil:
		case interrupted(ctx):
			return d.cutOff(ctx, ep.Name, len(items), last, err)
		case result == ResultSuccess: // posted; only its recording failed
			if last {
				d.unrecorded(ctx, ep.Name, it, err)
			}
		case givenUpAtOnce(result, err) || last:
			return d.giveUp(ctx, ep.Name, items, err)
		}
		return err
	case isSequence(items):
		return d.sequence(ctx, ep, items, retried, last)
	}
	return d.batch(ctx, ep, items, retried, last)
}

// batch delivers the items of a batch task, retried retried times so far (see ProcessTask): the
// items of each upload in order, those of up to [BatchParallel] uploads at once.
//
// Only this run's post of an item is counted in its attempt number (and in the Attempted its own
// task carries on): an earlier run of the batch may have posted nothing (its worker did not know
// the endpoint), and nothing tells a run what the earlier ones did (asynq runs the same payload
// again). When an earlier run did post (its items' tasks could not be enqueued), those posts are
// not counted.
func (d *Deliverer) batch(ctx context.Context, ep Endpoint, items []Item, retried int, last bool) error {
	if retried > 0 {
		items = d.toDeliver(ctx, ep.Name, items)
		if len(items) == 0 {
			return nil
		}
	}
	uploads := byUpload(items)
	type outcome struct {
		delivered int // the upload's items delivered, in order
		result    string
		err       error // the failure of the next one
	}
	outcomes := make([]outcome, len(uploads))
	sem := make(chan struct{}, BatchParallel)
	var wg sync.WaitGroup
	for i, its := range uploads {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			o := &outcomes[i]
			o.delivered, o.result, o.err = d.inOrder(ctx, ep, its, func(it Item) (int, bool) { return it.Attempted + 1, false })
		})
	}
	wg.Wait()
	if interrupted(ctx) {
		// Nothing can be handed on or given up with the run's context, and asynq runs the batch
		// again (the items delivered meanwhile included: at least once).
		var errs []error
		for _, o := range outcomes {
			errs = append(errs, o.err)
		}
		if err := errors.Join(errs...); err != nil {
			return d.cutOff(ctx, ep.Name, len(items), last, err)
		}
	}
	var givenUp []Item
	var causes, unqueued []error
	for i, its := range uploads {
		o := outcomes[i]
		if o.err == nil {
			continue
		}
		// The failed item and the later items of its upload, none of them posted after it.
		rest := slices.Clone(its[o.delivered:])
		if givenUpAtOnce(o.result, o.err) {
			// Retrying cannot help: given up at once, as a single delivery is; the later items
			// too, which may not be delivered past it (and go to the same refused address or
			// gone endpoint).
			givenUp, causes = append(givenUp, rest...), append(causes, o.err)
			continue
		}
		rest[0].Attempted++
		err := d.handOn(ctx, rest, o.err)
		if err == nil {
			continue
		}
		if last {
			// No retry of the batch is left to enqueue it: asynq would archive the batch with the
			// items still pending and no task to deliver them. One its receiver took (only its
			// recording failed) is not given up.
			rest = d.notTaken(ctx, ep.Name, rest, o.result, o.err)
			givenUp, causes = append(givenUp, rest...), append(causes, o.err, err)
			continue
		}
		// With the failure, whose Retry-After (RetryAfterError) the batch's retry then waits.
		unqueued = append(unqueued, errors.Join(err, o.err))
	}
	retry := errors.Join(unqueued...)
	if len(givenUp) == 0 {
		return errors.Join(retry, errors.Join(causes...)) // causes: of notifications delivered but not recorded
	}
	cause := errors.Join(causes...)
	if err := d.markGaveUp(ctx, ep.Name, givenUp, last); err != nil && (!last || interrupted(ctx)) {
		return errors.Join(cause, err, retry)
	}
	if retry != nil {
		return errors.Join(cause, retry)
	}
	return fmt.Errorf("%w: %w", cause, asynq.SkipRetry)
}

// sequence delivers the items of a sequence task (the notifications of one upload left when the
// first of them failed; see [isSequence]), retried retried times so far, in order. A failure of the
// first item still to deliver fails the task, which asynq retries as a whole on the schedule of
// [RetryDelay] (its last attempt gives up every item left: the later ones may not be delivered
// past it; a refused one gives them up at once). A failure after this run delivered some hands the
// failed item and those after it on as a task of their own, due after the first retry delay (as a
// batch does), so that each item's attempts can be counted: the first item of a sequence is
// posted by each of its runs until delivered (counted as a single item's are, a run by a worker
// that did not know the endpoint included), another only by the run that delivered those before
// it. (When that hand-off cannot be enqueued, the task is retried and the posts of its earlier
// runs are not counted for the items after the first, as in a batch.)
func (d *Deliverer) sequence(ctx context.Context, ep Endpoint, items []Item, retried int, last bool) error {
	first := items[0].OutboxID
	if retried > 0 {
		items = d.toDeliver(ctx, ep.Name, items)
		if len(items) == 0 {
			return nil
		}
	}
	delivered, result, err := d.inOrder(ctx, ep, items, func(it Item) (int, bool) {
		if it.OutboxID == first {
			return it.Attempted + retried + 1, last
		}
		return it.Attempted + 1, false
	})
	if err == nil {
		return nil
	}
	if interrupted(ctx) {
		return d.cutOff(ctx, ep.Name, len(items)-delivered, last, err)
	}
	rest := slices.Clone(items[delivered:])
	switch {
	case givenUpAtOnce(result, err):
		return d.giveUp(ctx, ep.Name, rest, err)
	case result == ResultSuccess && last && delivered == 0:
		// Its receiver took rest[0], on its own last attempt; only its recording failed. It is not
		// given up, and the later ones may follow it: they go on as a task of their own. (Past the
		// first, rest[0] was on its first attempt: it goes on with the rest, below.)
		if rest = d.notTaken(ctx, ep.Name, rest, result, err); len(rest) == 0 {
			return err
		}
		if qerr := d.handOn(ctx, rest, err); qerr != nil {
			return d.giveUp(ctx, ep.Name, rest, errors.Join(err, qerr))
		}
		return err
	case delivered == 0:
		if last {
			return d.giveUp(ctx, ep.Name, rest, err)
		}
		return err
	}
	rest[0].Attempted++
	qerr := d.handOn(ctx, rest, err)
	if qerr == nil {
		return nil
	}
	if last {
		return d.giveUp(ctx, ep.Name, d.notTaken(ctx, ep.Name, rest, result, err), errors.Join(err, qerr))
	}
	// Retried: the items delivered are not posted again (toDeliver).
	return errors.Join(err, qerr)
}

// inOrder posts items (notifications of one upload, in order) one after the other, each once the one
// before it was delivered, and stops at the first that fails: it returns how many were delivered,
// and the result and error of the one that failed (err nil: all were delivered). number gives an
// item's attempt number, and whether its failure is the last attempt (for the log).
func (d *Deliverer) inOrder(ctx context.Context, ep Endpoint, items []Item, number func(Item) (int, bool)) (int, string, error) {
	for i, it := range items {
		attempt, last := number(it)
		if result, err := d.attempt(ctx, ep, it, attempt, last); err != nil {
			return i, result, err
		}
	}
	return len(items), ResultSuccess, nil
}

// handOn enqueues items (the failed notification of an upload first, then the later ones of the
// same upload, in order) as a task of their own, due after the first retry delay for cause, the
// first one's failure (at least its receiver's Retry-After: [RetryAfterError]): a single item's,
// or a sequence. A task of the same ID already there (enqueued by an earlier run) is not an error.
func (d *Deliverer) handOn(ctx context.Context, items []Item, cause error) error {
	task, err := NewDeliverTask(items, d.timeout)
	if err == nil {
		_, err = d.tasks.EnqueueContext(ctx, task, asynq.ProcessIn(d.retry(0, cause, task)))
	}
	if err == nil || errors.Is(err, asynq.ErrTaskIDConflict) {
		return nil
	}
	if len(items) == 1 {
		return fmt.Errorf("enqueue the retry of notification %d: %w", items[0].OutboxID, err)
	}
	return fmt.Errorf("enqueue the retry of notification %d and the %d after it: %w", items[0].OutboxID, len(items)-1, err)
}

// toDeliver returns those of a batch's items still to deliver: a batch is run again when some of
// its items' own tasks could not be enqueued, and the items delivered (or given up) since its
// first run are not posted again. When that cannot be read, every item is posted (delivery is at
// least once).
func (d *Deliverer) toDeliver(ctx context.Context, endpoint string, items []Item) []Item {
	ids := make([]int64, len(items))
	for i, it := range items {
		ids[i] = it.OutboxID
	}
	left, err := d.store.ToDeliver(ctx, ids, endpoint)
	if err != nil {
		d.log.WarnContext(ctx, "webhook batch retried: posting every notification again", "endpoint", endpoint,
			"notifications", len(items), "err", err)
		return items
	}
	return slices.DeleteFunc(slices.Clone(items), func(it Item) bool {
		_, found := slices.BinarySearch(left, it.OutboxID)
		return !found
	})
}

// attempt posts one notification and records its delivery; err is nil only when both succeeded.
func (d *Deliverer) attempt(ctx context.Context, ep Endpoint, it Item, attempt int, last bool) (string, error) {
	id, typ := eventOf(it.Body)
	start := time.Now()
	result, err := d.post(ctx, ep, id, it.Body)
	if result == resultInterrupted {
		// Not the endpoint's failure: neither counted nor logged as one (see cutOff).
		return result, fmt.Errorf("deliver %s to %q: %w", id, ep.Name, err)
	}
	d.share.observe(ep.Name, result, time.Since(start))
	if d.metrics != nil {
		d.metrics.attempts.WithLabelValues(ep.Name, result).Inc()
	}
	if err != nil {
		d.log.WarnContext(ctx, "webhook attempt failed", "endpoint", ep.Name, "event_id", id,
			"event", typ, "attempt", attempt, "result", result, "last", last || givenUpAtOnce(result, err), "err", err)
		return result, fmt.Errorf("deliver %s to %q: %w", id, ep.Name, err)
	}
	// A row its relay has not committed yet is waited for; see queries/outbox.sql.
	if err := d.store.MarkDelivered(ctx, it.OutboxID, ep.Name); err != nil {
		// Retrying posts again: the receiver sees the same webhook-id twice and drops the second.
		return result, fmt.Errorf("record delivery of %s to %q: %w", id, ep.Name, err)
	}
	if d.metrics != nil {
		// The attempts first: whoever sees the delivery counted sees its attempts observed.
		d.metrics.perNotice.Observe(float64(attempt))
		d.metrics.deliveries.WithLabelValues(ep.Name, OutcomeDelivered).Inc()
	}
	return result, nil
}

// eventOf reads the id and type at the start of a body built by tasks.AppendUploadVerdict
// ({"id":"…","type":"…",…}), without decoding the rest.
func eventOf(body []byte) (id, typ string) {
	field := func(b []byte, name string) (string, []byte) {
		_, rest, ok := bytes.Cut(b, []byte(`"`+name+`":"`))
		if !ok {
			return "", b
		}
		v, rest, _ := bytes.Cut(rest, []byte{'"'})
		return string(v), rest
	}
	id, rest := field(body, "id")
	typ, _ = field(rest, "type")
	return id, typ
}

// withoutURL rewrites net/http's error (*url.Error: `Post "<the whole URL>": <cause>`) to name the
// endpoint's scheme and host only: a webhook URL often holds its credential in its path or query
// (Slack's /services/T/B/<token>, Azure's ?code=), and the error goes where logs' redaction does
// not reach (asynq keeps it in Redis, `intake jobs list` and asynqmon show it).
func withoutURL(err error, endpointURL string) error {
	var ue *url.Error
	if !errors.As(err, &ue) {
		return err
	}
	where := "the endpoint"
	if u, perr := url.Parse(endpointURL); perr == nil && u.Host != "" {
		where = u.Scheme + "://" + u.Host + "/…"
	}
	return fmt.Errorf("%s %s: %w", ue.Op, where, ue.Err)
}

// post sends one signed request and classifies its result; err is nil only for a 2xx answer.
func (d *Deliverer) post(ctx context.Context, ep Endpoint, id string, body []byte) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, ep.URL, bytes.NewReader(body))
	if err != nil {
		return ResultError, fmt.Errorf("build request: %w", withoutURL(err, ep.URL))
	}
	ts := d.now()
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", d.userAgent)
	req.Header.Set(HeaderID, id)
	req.Header.Set(HeaderTimestamp, strconv.FormatInt(ts.Unix(), 10))
	req.Header.Set(HeaderSignature, SignAll(ep.keys, id, ts, body))
	start := time.Now()
	resp, err := d.client.Do(req)
	if err != nil {
		if interrupted(ctx) && errors.Is(err, context.Canceled) {
			return resultInterrupted, withoutURL(err, ep.URL)
		}
		if d.metrics != nil {
			d.metrics.duration.Observe(time.Since(start).Seconds())
		}
		result := ResultError
		switch {
		case errors.Is(err, ErrForbiddenAddress):
			result = ResultRefused
		case errors.Is(err, context.DeadlineExceeded) || isTimeout(err):
			result = ResultTimeout
		}
		return result, withoutURL(err, ep.URL)
	}
	head, _ := io.ReadAll(io.LimitReader(resp.Body, 256))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxAnswer))
	_ = resp.Body.Close()
	if d.metrics != nil {
		d.metrics.duration.Observe(time.Since(start).Seconds())
	}
	switch code := resp.StatusCode; {
	case code >= 200 && code < 300:
		return ResultSuccess, nil
	case code >= 300 && code < 400:
		return ResultRedirect, fmt.Errorf("answered %d (redirects are not followed): %q", code, head)
	case code == http.StatusGone:
		return Result4xx, fmt.Errorf("%w: answered %d: %q", ErrGone, code, head)
	case code >= 400 && code < 500:
		return Result4xx, retryAfterError(resp, fmt.Errorf("answered %d: %q", code, head))
	default:
		return Result5xx, retryAfterError(resp, fmt.Errorf("answered %d: %q", code, head))
	}
}

// ErrGone is the error of a delivery its endpoint answered 410 Gone: the receiver says the
// endpoint is gone for good, so retrying cannot help and the delivery is given up at once (as one
// the address guard refuses), with the later notifications of its upload; `intake outbox
// redeliver` sends them again once the endpoint is fixed, `intake outbox discard` drops them.
var ErrGone = errors.New("the endpoint is gone (410): given up without retrying")

// givenUpAtOnce reports whether a failed attempt (result, err) is given up without retrying: the
// address guard refused it, or the endpoint answered 410 Gone.
func givenUpAtOnce(result string, err error) bool {
	return result == ResultRefused || errors.Is(err, ErrGone)
}

// RetryAfterError is the error of an attempt whose endpoint answered 429 Too Many Requests or 503
// Service Unavailable with a usable Retry-After: [RetryDelay] waits at least After before the
// retry, and the task a failed notification of a batch goes on as is due no sooner either.
type RetryAfterError struct {
	// After is the Retry-After's delay, at most the retry schedule's longest delay (2 h).
	After time.Duration
	err   error
}

func (e *RetryAfterError) Error() string {
	return fmt.Sprintf("%v (Retry-After: %s)", e.err, e.After)
}

// Unwrap returns the answer's error.
func (e *RetryAfterError) Unwrap() error { return e.err }

// retryAfterError returns err, as a *RetryAfterError when resp is a 429 or a 503 whose Retry-After
// gives a delay (see retryAfter).
func retryAfterError(resp *http.Response, err error) error {
	if resp.StatusCode != http.StatusTooManyRequests && resp.StatusCode != http.StatusServiceUnavailable {
		return err
	}
	after := retryAfter(resp.Header.Get("Retry-After"), resp.Header.Get("Date"), time.Now())
	if after <= 0 {
		return err
	}
	return &RetryAfterError{After: after, err: err}
}

// retryAfter is the delay a Retry-After value asks for (RFC 9110 section 10.2.3): delay-seconds,
// or an HTTP-date, taken relative to the answer's Date when it has a valid one (the receiver's
// clock on both sides), else to now. It is at most maxDelay (a longer one, up to any number of
// digits, is cut to it), and 0 for a value that is empty, malformed or not in the future.
func retryAfter(value, date string, now time.Time) time.Duration {
	value = strings.TrimSpace(value)
	if value == "" {
		return 0
	}
	if strings.Trim(value, "0123456789") == "" {
		secs, err := strconv.ParseUint(value, 10, 64)
		if err != nil || secs > uint64(maxDelay/time.Second) { // err: too many digits to hold
			return maxDelay
		}
		return time.Duration(secs) * time.Second
	}
	at, err := http.ParseTime(value)
	if err != nil {
		return 0
	}
	if d, err := http.ParseTime(date); err == nil {
		now = d
	}
	return min(max(at.Sub(now), 0), maxDelay)
}

// isTimeout reports a network timeout.
func isTimeout(err error) bool {
	var t interface{ Timeout() bool }
	return errors.As(err, &t) && t.Timeout()
}

// interrupted reports whether the run of ctx, a task's handler's context, was cut off: cancelled
// (asynq's ShutdownTimeout is up: the task is back in its queue, and runs again), not past its
// deadline (the task's timeout: asynq fails the run, as the endpoint's failure). The client's own
// timeout (INTAKE_WEBHOOK_TIMEOUT) ends a request's context derived from ctx, never ctx.
func interrupted(ctx context.Context) bool {
	return errors.Is(ctx.Err(), context.Canceled)
}

// cutOff logs a run of a task (n notifications to endpoint left) cut off by its context's end (see
// [interrupted]) and returns its error, err: nothing is handed on, given up or counted, for asynq
// runs the task again. (asynq cancels a run's context otherwise only when the run's lease expired,
// Redis unreachable for long, or an operator cancelled the run (asynqmon): a last attempt is then
// archived without its give-up recorded, as its record would fail with the cancelled context
// anyway, and its notifications stay pending, which `intake outbox redeliver --stuck-for` finds.)
func (d *Deliverer) cutOff(ctx context.Context, endpoint string, n int, last bool, err error) error {
	d.log.InfoContext(ctx, "webhook delivery interrupted by shutdown; asynq runs it again", "endpoint", endpoint,
		"notifications", n, "last", last, "err", err)
	return err
}

// isLastAttempt reports whether asynq archives the task if this attempt fails.
func isLastAttempt(ctx context.Context) bool {
	retried, ok1 := asynq.GetRetryCount(ctx)
	maxRetry, ok2 := asynq.GetMaxRetry(ctx)
	return ok1 && ok2 && retried >= maxRetry
}

// giveUp records that the deliveries of items to endpoint are given up, because of cause, and
// returns the task's error. Once recorded, that is cause with asynq.SkipRetry: asynq archives the
// task, and the notification holds the endpoint as given up until `intake outbox redeliver` sends
// it again. A record that fails (PostgreSQL unavailable) makes the task fail without SkipRetry, so
// that a retry records it, unless this attempt was the last: the notification then stays pending
// with no task left, which `intake outbox redeliver --stuck-for` finds.
//
// A run cut off (see [interrupted]) gives up nothing: asynq runs the task again.
func (d *Deliverer) giveUp(ctx context.Context, endpoint string, items []Item, cause error) error {
	last := isLastAttempt(ctx)
	if interrupted(ctx) {
		return d.cutOff(ctx, endpoint, len(items), last, cause)
	}
	if err := d.markGaveUp(ctx, endpoint, items, last); err != nil && (!last || interrupted(ctx)) {
		return fmt.Errorf("%w; %w", cause, err)
	}
	return fmt.Errorf("%w: %w", cause, asynq.SkipRetry)
}

// unrecorded logs a notification its receiver took (answered 2xx) on the last attempt of its task,
// whose delivery could not be recorded (err): it is not given up, for it was delivered; it stays
// pending with no task left, and `intake outbox redeliver --stuck-for` posts it again (the same
// webhook-id: a receiver that keeps the ids it saw drops it).
func (d *Deliverer) unrecorded(ctx context.Context, endpoint string, it Item, err error) {
	d.log.ErrorContext(ctx, "webhook delivered on its last attempt but not recorded: it stays pending (intake outbox redeliver --stuck-for posts it again)",
		"endpoint", endpoint, "outbox_id", it.OutboxID, "err", err)
}

// notTaken returns rest (the items of a task's last attempt about to be given up, the failed one
// first) without its first item when its receiver took it (result ResultSuccess: only its
// recording failed, err), which is logged (unrecorded) and never given up.
func (d *Deliverer) notTaken(ctx context.Context, endpoint string, rest []Item, result string, err error) []Item {
	if result != ResultSuccess || len(rest) == 0 {
		return rest
	}
	d.unrecorded(ctx, endpoint, rest[0], err)
	return rest[1:]
}

// markGaveUp records the give-ups of items to endpoint and counts them once recorded, or on the
// last attempt (when no retry can record them: the failure is logged), unless the run was cut
// off meanwhile (see [interrupted]: asynq runs the task again; the error is returned).
func (d *Deliverer) markGaveUp(ctx context.Context, endpoint string, items []Item, last bool) error {
	var errs []error
	for _, it := range items {
		if err := d.store.MarkGaveUp(ctx, it.OutboxID, endpoint); err != nil {
			errs = append(errs, err)
		}
	}
	err := errors.Join(errs...)
	if err != nil && interrupted(ctx) {
		return d.cutOff(ctx, endpoint, len(items), last, err)
	}
	if err != nil {
		d.log.ErrorContext(ctx, "webhook delivery given up but not recorded", "endpoint", endpoint,
			"notifications", len(items), "last", last, "err", err)
		if !last {
			return err
		}
	}
	if d.metrics != nil {
		d.metrics.deliveries.WithLabelValues(endpoint, OutcomeGaveUp).Add(float64(len(items)))
	}
	return err
}
