package outbox

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/hibiken/asynq"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/intakehq/intake/internal/store/dbq"
	"github.com/intakehq/intake/internal/telemetry"
	"github.com/intakehq/intake/internal/webhook"
	"github.com/intakehq/intake/worker/tasks"
)

// Enqueuer is the part of *asynq.Client the relay uses.
type Enqueuer interface {
	EnqueueContext(ctx context.Context, task *asynq.Task, opts ...asynq.Option) (*asynq.TaskInfo, error)
}

var _ Enqueuer = (*asynq.Client)(nil)

// Router names the endpoints that receive the notifications of a key (*webhook.Endpoints).
type Router interface {
	For(key string) []string
}

// Waker wakes the relay when rows are committed (*Listener).
type Waker interface {
	SubscribeAll() (<-chan struct{}, func())
}

// RelayConfig configures a [Relay].
type RelayConfig struct {
	// Pool runs the relay's transactions (required).
	Pool *pgxpool.Pool
	// Client enqueues the tasks (required).
	Client Enqueuer
	// Endpoints routes notifications to webhook endpoints (nil: none).
	Endpoints Router
	// AttemptTimeout is the webhook attempt timeout the delivery tasks are built with (default 10 s).
	AttemptTimeout time.Duration
	// VerdictQueue, when set, also receives every notification as a tasks.TypeUploadVerdict task.
	// That task is handed to Redis once, in the relay's transaction, and not tracked: intake is not
	// told when the app's worker runs it, so the row does not wait for it (a row with no webhook
	// endpoint is delivered as soon as it is relayed), and a verdict task Redis loses (a restart
	// without persistence, a failover to a replica that had not received it) is not enqueued again:
	// `intake outbox redeliver --stuck-for` sends webhook deliveries only.
	VerdictQueue string
	// VerdictRetention is how long asynq keeps a verdict task once the app's worker has run it
	// (asynq.Retention, given at enqueue; default [DefaultVerdictRetention]). While it is kept, its
	// ID (the notification's id) is taken: a relay that enqueued it and then rolled back (another
	// enqueue refused, PostgreSQL failing before the commit) is retried with backoff, and each retry
	// enqueues the same task again, which asynq refuses instead of running it a second time. Without
	// a retention asynq deletes a finished task at once and frees its ID. A relay still failing
	// after the retention (counted from the run) enqueues it once more. The cost is Redis memory:
	// each kept task holds its payload (about 1 KB), so about 3.6 MB per notification per second
	// with the default hour.
	VerdictRetention time.Duration
	// Waker, when set, wakes the relay at each commit of outbox rows; it also polls every
	// PollInterval (default 2 s) in case a wake-up was lost.
	Waker        Waker
	PollInterval time.Duration
	// BatchSize caps the rows of one relay transaction (default 200).
	BatchSize int
	// Retention is how long delivered notifications stay in the outbox (default 24 h).
	Retention time.Duration
	// BacklogInterval spaces the refreshes of the backlog gauges (default 15 s), PurgeInterval the
	// purges of delivered notifications past the retention (default 1 min).
	BacklogInterval, PurgeInterval time.Duration
	// PurgeBudget bounds one purge (default 10 s): it deletes batches of 5,000 rows while they come
	// back full and this time has not run out (a batch started is finished). The purge runs beside
	// the relaying, not between its transactions, so it never delays a relay; the budget keeps a
	// large backlog (a retention shortened, a long outage's deliveries all done at once) from
	// keeping PostgreSQL busy with deletes for minutes on end: what is left waits for the next
	// purge.
	PurgeBudget time.Duration
	// Timeout bounds each relay transaction (its PostgreSQL statements and its enqueues), each
	// refresh of the backlog gauges and each batch of the purge (default 30 s): a connection that
	// hangs (a network partition, a lock never released) fails the relay, which is counted and
	// retried, instead of stopping the loop and freezing the gauges the alerts read.
	Timeout time.Duration
	// Log receives the relay's logs (default: discard).
	Log *slog.Logger
	// Registerer receives the relay's metrics (required).
	Registerer prometheus.Registerer
}

// Relay moves outbox rows to asynq: for each row not relayed yet, one webhook delivery task per
// endpoint the row's key routes to, and the verdict task when a queue is configured; then, in the
// transaction that claimed the rows, it records them relayed with the endpoints still to deliver
// to. Tasks are enqueued before that commit, with task IDs derived from their rows, so a relay that
// dies in between leaves the rows to the next relay, whose enqueues of the same tasks conflict
// instead of duplicating them; a batch of other rows (some claimed by another relay meanwhile) has
// an ID of its own, and its rows also in the leftover batch are posted twice, under the same
// webhook-id. A leftover task may also have finished before the next relay (asynq then frees its
// ID): the endpoints it delivered or gave up are recorded on the row, and the next relay enqueues
// no delivery to them, so a relay failing again and again (one enqueue refused every time) does not
// post them again on every attempt. Relays on several replicas share the rows (FOR UPDATE SKIP
// LOCKED).
//
// The verdict task (RelayConfig.VerdictQueue) is enqueued in the same transaction, but only the
// webhook deliveries are tracked on the row: see RelayConfig.VerdictQueue. asynq keeps it, once
// run, for RelayConfig.VerdictRetention, so that the retries of a relay that rolled back do not
// enqueue it again.
//
// It also keeps intake_outbox_oldest_undelivered_seconds, intake_outbox_unrelayed and
// intake_outbox_gave_up up to date and deletes relayed rows delivered before the retention.
type Relay struct {
	pool          *pgxpool.Pool
	client        Enqueuer
	endpoints     Router
	timeout       time.Duration
	verdictQueue  string
	verdictRetain time.Duration
	waker         Waker
	poll          time.Duration
	batch         int
	retention     time.Duration
	backlogEvery  time.Duration
	purgeEvery    time.Duration
	purgeBudget   time.Duration
	opTimeout     time.Duration
	log           *slog.Logger

	relayed   prometheus.Counter
	errors    prometheus.Counter
	purged    prometheus.Counter
	oldest    prometheus.Gauge
	unrelayed prometheus.Gauge
	gaveUp    *prometheus.GaugeVec
	// gaveUpSeen names the endpoints gaveUp has shown (only Run's goroutine updates the gauges).
	gaveUpSeen map[string]bool
}

// DefaultVerdictRetention is RelayConfig.VerdictRetention's default: long enough for a relay
// failing after its enqueues (the alert IntakeOutboxRelayFailing fires after 10 minutes of it) to
// be noticed and mended without the app getting a verdict task twice.
const DefaultVerdictRetention = time.Hour

// NewRelay checks cfg, registers the metrics and returns the relay. Run starts it.
func NewRelay(cfg RelayConfig) (*Relay, error) {
	if cfg.Pool == nil || cfg.Client == nil || cfg.Registerer == nil {
		return nil, errors.New("outbox relay: pool, client and registerer required")
	}
	r := &Relay{
		pool: cfg.Pool, client: cfg.Client, endpoints: cfg.Endpoints, verdictQueue: cfg.VerdictQueue,
		timeout: cmp.Or(cfg.AttemptTimeout, 10*time.Second), waker: cfg.Waker,
		poll: cmp.Or(cfg.PollInterval, 2*time.Second), batch: cmp.Or(cfg.BatchSize, 200),
		retention: cmp.Or(cfg.Retention, 24*time.Hour), log: cmp.Or(cfg.Log, slog.New(slog.DiscardHandler)),
		backlogEvery: cmp.Or(cfg.BacklogInterval, 15*time.Second), purgeEvery: cmp.Or(cfg.PurgeInterval, time.Minute),
		verdictRetain: cmp.Or(cfg.VerdictRetention, DefaultVerdictRetention), purgeBudget: cmp.Or(cfg.PurgeBudget, 10*time.Second),
		opTimeout:  cmp.Or(cfg.Timeout, 30*time.Second),
		gaveUpSeen: map[string]bool{},
		relayed: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: telemetry.Namespace, Name: "outbox_relayed_total",
			Help: "Notifications moved from the outbox to asynq tasks.",
		}),
		errors: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: telemetry.Namespace, Name: "outbox_relay_errors_total",
			Help: "Relay transactions that failed (PostgreSQL or Redis unavailable); their rows are relayed later.",
		}),
		purged: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: telemetry.Namespace, Name: "outbox_purged_total",
			Help: "Delivered notifications deleted from the outbox after the retention.",
		}),
		oldest: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: telemetry.Namespace, Name: "outbox_oldest_undelivered_seconds",
			Help: "Age of the oldest notification not yet delivered to every webhook endpoint (0: none).",
		}),
		unrelayed: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: telemetry.Namespace, Name: "outbox_unrelayed",
			Help: "Notifications committed but not yet moved to asynq.",
		}),
		gaveUp: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: telemetry.Namespace, Name: "outbox_gave_up",
			Help: "Notifications whose delivery to the endpoint was given up and not sent again since (intake outbox redeliver) nor discarded.",
		}, []string{"endpoint"}),
	}
	var errs []error
	for _, c := range []prometheus.Collector{r.relayed, r.errors, r.purged, r.oldest, r.unrelayed, r.gaveUp} {
		errs = append(errs, cfg.Registerer.Register(c))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("outbox relay: register metrics: %w", err)
	}
	return r, nil
}

// purgeBatch is the rows of one statement of the purge.
const purgeBatch = 5000

// Run relays until ctx ends, then returns nil. A failing relay (PostgreSQL or Redis down) is
// retried with backoff (1 s doubling to 30 s); the backlog gauges keep their schedule meanwhile,
// as during a long drain. The purge runs on its own schedule beside the relaying (its own
// goroutine and connection), so that a long purge does not hold the relay up.
func (r *Relay) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() { r.purgeLoop(ctx) })
	var wake <-chan struct{}
	if r.waker != nil {
		ch, stop := r.waker.SubscribeAll()
		defer stop()
		wake = ch
	}
	poll := time.NewTicker(r.poll)
	defer poll.Stop()
	backlog := time.NewTicker(r.backlogEvery)
	defer backlog.Stop()
	r.updateBacklog(ctx)

	backoff := time.Duration(0)
	for ctx.Err() == nil {
		n, err := r.RelayOnce(ctx)
		switch {
		case err != nil && ctx.Err() == nil:
			r.errors.Inc()
			backoff = min(max(2*backoff, time.Second), 30*time.Second)
			r.log.WarnContext(ctx, "outbox relay failed; retrying", "err", err, "in", backoff)
			// Redis refusing writes (out of memory, a read-only replica) fails every relay for as
			// long as it lasts: the gauges must still move, or IntakeWebhooksBehind never fires.
			r.pause(ctx, backoff, backlog.C)
			continue
		case n == r.batch:
			backoff = 0
			// More may be waiting; the gauges still refresh on their schedule, or a long drain
			// would freeze the backlog alert's gauge.
			select {
			case <-backlog.C:
				r.updateBacklog(ctx)
			default:
			}
			continue
		}
		backoff = 0
		select {
		case <-ctx.Done():
		case <-wake:
		case <-poll.C:
		case <-backlog.C:
			r.updateBacklog(ctx)
		}
	}
	return nil
}

// purgeLoop purges every purgeEvery until ctx ends.
func (r *Relay) purgeLoop(ctx context.Context) {
	t := time.NewTicker(r.purgeEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			r.Purge(ctx)
		}
	}
}

// pause waits d, or until ctx ends, refreshing the backlog gauges when backlog ticks meanwhile.
func (r *Relay) pause(ctx context.Context, d time.Duration, backlog <-chan time.Time) {
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			return
		case <-backlog:
			r.updateBacklog(ctx)
		}
	}
}

// RelayOnce relays up to BatchSize rows in one transaction and returns how many it relayed. The
// transaction, enqueues included, is bounded by the relay's Timeout; PostgreSQL ends it should it
// sit idle longer than that (its client gone without closing the connection: see
// beginIdleBounded).
func (r *Relay) RelayOnce(ctx context.Context) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, r.opTimeout)
	defer cancel()
	tx, err := beginIdleBounded(ctx, r.pool, r.opTimeout+idleMargin)
	if err != nil {
		return 0, fmt.Errorf("relay: begin: %w", err)
	}
	defer func() {
		// Also after ctx expired; bounded, as a hung connection would hang it too.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.opTimeout)
		defer cancel()
		_ = tx.Rollback(rctx)
	}()
	q := dbq.New(tx)
	rows, err := q.OutboxClaim(ctx, int32(r.batch))
	if err != nil {
		return 0, fmt.Errorf("relay: claim: %w", err)
	}
	if len(rows) == 0 {
		return 0, nil
	}
	ids := make([]int64, len(rows))
	pendings := make([]string, len(rows))
	ts, err := r.tasks(rows, ids, pendings)
	if err != nil {
		return 0, fmt.Errorf("relay: %w", err)
	}
	if err := enqueueAll(ctx, r.client, ts, nil, nil, r.enqueueOptions); err != nil {
		return 0, fmt.Errorf("relay: %w", err)
	}
	if err := q.OutboxMarkRelayed(ctx, dbq.OutboxMarkRelayedParams{Ids: ids, Pendings: pendings}); err != nil {
		return 0, fmt.Errorf("relay: mark relayed: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return 0, fmt.Errorf("relay: commit: %w", err)
	}
	r.relayed.Add(float64(len(rows)))
	return len(rows), nil
}

// tasks builds the tasks of rows (filling ids and each row's endpoints, comma-separated): per
// endpoint, the deliveries in batches ([batches]), and with a verdict queue one
// tasks.TypeUploadVerdict task per row. An endpoint a leftover task of a relay that rolled back
// already delivered or gave up gets no delivery (OutboxMarkRelayed leaves it out of pending too).
func (r *Relay) tasks(rows []dbq.OutboxClaimRow, ids []int64, pendings []string) ([]*asynq.Task, error) {
	byEndpoint := map[string][]delivery{}
	var order []string
	var ts []*asynq.Task
	for i, row := range rows {
		ids[i] = row.ID
		var names []string
		if r.endpoints != nil {
			names = r.endpoints.For(row.Key)
		}
		pendings[i] = strings.Join(names, ",")
		if len(names) == 0 && r.verdictQueue == "" {
			continue
		}
		body := tasks.AppendUploadVerdict(nil, row.EventID.String(), row.EventType, row.CreatedAt, row.Data)
		for _, n := range names {
			if slices.Contains(row.Delivered, n) || slices.Contains(row.GaveUp, n) {
				continue
			}
			if _, ok := byEndpoint[n]; !ok {
				order = append(order, n)
			}
			byEndpoint[n] = append(byEndpoint[n], delivery{upload: row.UploadID,
				item: webhook.Item{OutboxID: row.ID, Endpoint: n, Body: body}})
		}
		if r.verdictQueue != "" {
			t, err := tasks.NewUploadVerdictTask(r.verdictQueue, body)
			if err != nil {
				return nil, fmt.Errorf("notification %d: %w", row.ID, err)
			}
			ts = append(ts, t)
		}
	}
	for _, n := range order {
		for _, b := range batches(byEndpoint[n]) {
			t, err := webhook.NewDeliverTask(b, r.timeout)
			if err != nil {
				return nil, err
			}
			ts = append(ts, t)
		}
	}
	return ts, nil
}

// enqueueOptions are the options the relay enqueues t with, besides its own: a verdict task is
// kept for the verdict retention once run (see RelayConfig.VerdictRetention).
func (r *Relay) enqueueOptions(t *asynq.Task) []asynq.Option {
	if t.Type() == tasks.TypeUploadVerdict {
		return []asynq.Option{asynq.Retention(r.verdictRetain)}
	}
	return nil
}

// delivery is one item to deliver, with the upload its notification is about.
type delivery struct {
	upload uuid.UUID
	item   webhook.Item
}

// batches cuts the deliveries to one endpoint (in claim order, which is the order intake recorded
// them) into tasks of up to webhook.BatchSize items without splitting an upload's: the deliverer
// posts an upload's items in one task one after the other, in order, each once the one before it
// was delivered, while separate tasks run in parallel, so an upload's later notification in
// another task could arrive first. Each upload's items (in claim order) go to the first batch with
// room for all of them, a new one when none has. An upload with more than webhook.BatchSize items
// in one claim (a rare, long history of verdicts relayed at once) fills batches of its own, in
// order, its remainder then placed as above: those batches run in parallel like any two tasks, so
// its notifications are ordered within each of them only. The result depends on the deliveries
// alone, so that a relay retried over the same rows enqueues the same tasks (task IDs name rows).
func batches(ds []delivery) [][]webhook.Item {
	var groups [][]webhook.Item
	index := map[uuid.UUID]int{}
	for _, d := range ds {
		if g, ok := index[d.upload]; ok && d.upload != uuid.Nil {
			groups[g] = append(groups[g], d.item)
			continue
		}
		index[d.upload] = len(groups)
		groups = append(groups, []webhook.Item{d.item})
	}
	var out [][]webhook.Item
	for _, g := range groups {
		for len(g) > webhook.BatchSize {
			out = append(out, g[:webhook.BatchSize:webhook.BatchSize])
			g = g[webhook.BatchSize:]
		}
		at := slices.IndexFunc(out, func(b []webhook.Item) bool { return len(b)+len(g) <= webhook.BatchSize })
		if at < 0 {
			out = append(out, slices.Clip(g))
			continue
		}
		out[at] = append(out[at], g...)
	}
	return out
}

// updateBacklog refreshes the backlog gauges, within the relay's Timeout.
func (r *Relay) updateBacklog(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, r.opTimeout)
	defer cancel()
	b, err := dbq.New(r.pool).OutboxBacklog(ctx)
	if err != nil {
		if ctx.Err() == nil {
			r.log.WarnContext(ctx, "read outbox backlog", "err", err)
		}
		return
	}
	r.oldest.Set(b.OldestAgeSeconds)
	r.unrelayed.Set(float64(b.Unrelayed))
	given, err := dbq.New(r.pool).OutboxGaveUp(ctx)
	if err != nil {
		if ctx.Err() == nil {
			r.log.WarnContext(ctx, "read outbox give-ups", "err", err)
		}
		return
	}
	// An endpoint with none left reads 0 rather than vanishing, so that an alert on it resolves.
	for ep := range r.gaveUpSeen {
		r.gaveUp.WithLabelValues(ep).Set(0)
	}
	for _, g := range given {
		r.gaveUpSeen[g.Endpoint] = true
		r.gaveUp.WithLabelValues(g.Endpoint).Set(float64(g.Notifications))
	}
}

// Purge deletes relayed notifications delivered before the retention, in batches of purgeBatch
// rows (each within the relay's Timeout) while they come back full, until the purge budget
// (RelayConfig.PurgeBudget) has run out, and returns how many it deleted.
func (r *Relay) Purge(ctx context.Context) int64 {
	q := dbq.New(r.pool)
	var total int64
	deadline := time.Now().Add(r.purgeBudget)
	for {
		bctx, cancel := context.WithTimeout(ctx, r.opTimeout)
		n, err := q.OutboxPurge(bctx, dbq.OutboxPurgeParams{Cutoff: time.Now().Add(-r.retention), MaxRows: purgeBatch})
		cancel()
		if err != nil {
			if ctx.Err() == nil {
				r.log.WarnContext(ctx, "purge outbox", "err", err)
			}
			break
		}
		total += n
		if n < purgeBatch || !time.Now().Before(deadline) {
			break
		}
	}
	r.purged.Add(float64(total))
	return total
}
