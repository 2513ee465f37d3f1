package outbox

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

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
// webhook deliveries are tracked on the row: see RelayConfig.VerdictQueue.
//
// It also keeps intake_outbox_oldest_undelivered_seconds, intake_outbox_unrelayed and
// intake_outbox_gave_up up to date and deletes relayed rows delivered before the retention.
type Relay struct {
	pool         *pgxpool.Pool
	client       Enqueuer
	endpoints    Router
	timeout      time.Duration
	verdictQueue string
	waker        Waker
	poll         time.Duration
	batch        int
	retention    time.Duration
	backlogEvery time.Duration
	purgeEvery   time.Duration
	opTimeout    time.Duration
	log          *slog.Logger

	relayed   prometheus.Counter
	errors    prometheus.Counter
	purged    prometheus.Counter
	oldest    prometheus.Gauge
	unrelayed prometheus.Gauge
	gaveUp    *prometheus.GaugeVec
	// gaveUpSeen names the endpoints gaveUp has shown (only Run's goroutine updates the gauges).
	gaveUpSeen map[string]bool
}

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

// Bounds of the relay's purge.
const (
	purgeBatch   = 5000
	purgeBatches = 20 // per purge: at most 100,000 rows
)

// Run relays until ctx ends, then returns nil. A failing relay (PostgreSQL or Redis down) is
// retried with backoff (1 s doubling to 30 s); the backlog gauges and the purge keep their
// schedule meanwhile, as during a long drain.
func (r *Relay) Run(ctx context.Context) error {
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
	purge := time.NewTicker(r.purgeEvery)
	defer purge.Stop()
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
			r.pause(ctx, backoff, backlog.C, purge.C)
			continue
		case n == r.batch:
			backoff = 0
			// More may be waiting; the gauges and the purge still run on their schedule, or a
			// long drain would freeze the backlog alert's gauge and stop the purge.
			select {
			case <-backlog.C:
				r.updateBacklog(ctx)
			case <-purge.C:
				r.Purge(ctx)
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
		case <-purge.C:
			r.Purge(ctx)
		}
	}
	return nil
}

// pause waits d, or until ctx ends, refreshing the backlog gauges and purging when backlog and
// purge tick meanwhile.
func (r *Relay) pause(ctx context.Context, d time.Duration, backlog, purge <-chan time.Time) {
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
		case <-purge:
			r.Purge(ctx)
		}
	}
}

// RelayOnce relays up to BatchSize rows in one transaction and returns how many it relayed. The
// transaction, enqueues included, is bounded by the relay's Timeout.
func (r *Relay) RelayOnce(ctx context.Context) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, r.opTimeout)
	defer cancel()
	tx, err := r.pool.Begin(ctx)
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
	if err := enqueueAll(ctx, r.client, ts, nil, nil); err != nil {
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
// endpoint, the deliveries in batches of webhook.BatchSize in claim order, and with a verdict queue
// one tasks.TypeUploadVerdict task per row. An endpoint a leftover task of a relay that rolled back
// already delivered or gave up gets no delivery (OutboxMarkRelayed leaves it out of pending too).
func (r *Relay) tasks(rows []dbq.OutboxClaimRow, ids []int64, pendings []string) ([]*asynq.Task, error) {
	byEndpoint := map[string][]webhook.Item{}
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
			byEndpoint[n] = append(byEndpoint[n], webhook.Item{OutboxID: row.ID, Endpoint: n, Body: body})
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
		items := byEndpoint[n]
		for len(items) > 0 {
			k := min(len(items), webhook.BatchSize)
			t, err := webhook.NewDeliverTask(items[:k], r.timeout)
			if err != nil {
				return nil, err
			}
			ts, items = append(ts, t), items[k:]
		}
	}
	return ts, nil
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

// Purge deletes relayed notifications delivered before the retention (at most purgeBatches
// batches of purgeBatch rows, each within the relay's Timeout) and returns how many it deleted.
func (r *Relay) Purge(ctx context.Context) int64 {
	q := dbq.New(r.pool)
	var total int64
	for range purgeBatches {
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
		if n < purgeBatch {
			break
		}
	}
	r.purged.Add(float64(total))
	return total
}
