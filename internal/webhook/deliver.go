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
	"strconv"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/intakehq/intake/internal/store"
	"github.com/intakehq/intake/internal/telemetry"
)

// Store records deliveries (*store.Outbox, which batches them).
type Store interface {
	// MarkDelivered records the delivery of notification (outbox row) id to endpoint.
	MarkDelivered(ctx context.Context, id int64, endpoint string) error
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

// Outcomes of a delivery (label outcome of intake_webhook_deliveries_total).
const (
	// OutcomeDelivered: the endpoint answered 2xx.
	OutcomeDelivered = "delivered"
	// OutcomeGaveUp: the last retry failed (or the failure cannot be retried); asynq archives the task.
	OutcomeGaveUp = "gave_up"
)

// Metrics are the deliveries' Prometheus series.
type Metrics struct {
	attempts   *prometheus.CounterVec
	deliveries *prometheus.CounterVec
	perNotice  prometheus.Histogram
	duration   prometheus.Histogram
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
	}
	var errs []error
	for _, c := range []prometheus.Collector{m.attempts, m.deliveries, m.perNotice, m.duration} {
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
	}
	return m, nil
}

// DelivererConfig configures a [Deliverer].
type DelivererConfig struct {
	// Store reads notifications and records deliveries (required).
	Store Store
	// Endpoints resolves endpoint names (required).
	Endpoints *Endpoints
	// Client sends the requests (default NewClient with its defaults: private addresses refused).
	Client *http.Client
	// Metrics, when set, counts attempts and deliveries.
	Metrics *Metrics
	// Log receives one line per failed attempt (default: discard).
	Log *slog.Logger
	// UserAgent is sent with every request (default "intake-webhooks").
	UserAgent string
	// Now is the clock of webhook-timestamp (default time.Now).
	Now func() time.Time
}

// Deliverer runs [TypeDeliver] tasks: it posts one notification to one endpoint, signed as the
// Standard Webhooks specification says, and records the delivery. It is an asynq.Handler.
type Deliverer struct {
	store     Store
	endpoints *Endpoints
	client    *http.Client
	metrics   *Metrics
	log       *slog.Logger
	userAgent string
	now       func() time.Time
}

var _ asynq.Handler = (*Deliverer)(nil)

// NewDeliverer checks cfg and returns a Deliverer.
func NewDeliverer(cfg DelivererConfig) (*Deliverer, error) {
	if cfg.Store == nil || cfg.Endpoints == nil {
		return nil, errors.New("webhook deliverer: store and endpoints required")
	}
	d := &Deliverer{
		store: cfg.Store, endpoints: cfg.Endpoints, client: cfg.Client, metrics: cfg.Metrics,
		log: cmp.Or(cfg.Log, slog.New(slog.DiscardHandler)), userAgent: cmp.Or(cfg.UserAgent, "intake-webhooks"),
		now: cfg.Now,
	}
	if d.client == nil {
		d.client = NewClient(ClientOptions{})
	}
	if d.now == nil {
		d.now = time.Now
	}
	return d, nil
}

// maxAnswer bounds how much of an answer's body is read (the rest is dropped with the connection).
const maxAnswer = 64 << 10

// ProcessTask delivers one notification. nil: delivered. Errors wrapping asynq.SkipRetry cannot
// succeed by retrying (a bad payload, an endpoint no longer configured, an address the SSRF guard
// refuses); any other is retried. A task enqueued twice (by a relay that died before committing)
// posts twice, under the same webhook-id: delivery is at least once.
func (d *Deliverer) ProcessTask(ctx context.Context, t *asynq.Task) error {
	p, err := parseDeliver(t.Payload())
	if err != nil {
		return fmt.Errorf("%w: %w", err, asynq.SkipRetry)
	}
	ep, ok := d.endpoints.Get(p.Endpoint)
	if !ok {
		d.gaveUp(p.Endpoint)
		return fmt.Errorf("webhook endpoint %q is no longer configured: %w", p.Endpoint, asynq.SkipRetry)
	}
	id, typ := eventOf(p.Body)
	result, err := d.post(ctx, ep, id, p.Body)
	if d.metrics != nil {
		d.metrics.attempts.WithLabelValues(ep.Name, result).Inc()
	}
	retried, _ := asynq.GetRetryCount(ctx)
	if err != nil {
		last := result == ResultRefused || isLastAttempt(ctx)
		d.log.WarnContext(ctx, "webhook attempt failed", "endpoint", ep.Name, "event_id", id,
			"event", typ, "attempt", retried+1, "result", result, "last", last, "err", err)
		if result == ResultRefused {
			d.gaveUp(ep.Name)
			return fmt.Errorf("deliver %s to %q: %w: %w", id, ep.Name, err, asynq.SkipRetry)
		}
		if last {
			d.gaveUp(ep.Name)
		}
		return fmt.Errorf("deliver %s to %q: %w", id, ep.Name, err)
	}
	// A row its relay has not committed yet is waited for; see queries/outbox.sql.
	if err := d.store.MarkDelivered(ctx, p.OutboxID, ep.Name); err != nil {
		// Retrying posts again: the receiver sees the same webhook-id twice and drops the second.
		return fmt.Errorf("record delivery of %s to %q: %w", id, ep.Name, err)
	}
	if d.metrics != nil {
		d.metrics.deliveries.WithLabelValues(ep.Name, OutcomeDelivered).Inc()
		d.metrics.perNotice.Observe(float64(retried + 1))
	}
	return nil
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

// post sends one signed request and classifies its result; err is nil only for a 2xx answer.
func (d *Deliverer) post(ctx context.Context, ep Endpoint, id string, body []byte) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, ep.URL, bytes.NewReader(body))
	if err != nil {
		return ResultError, fmt.Errorf("build request: %w", err)
	}
	ts := d.now()
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", d.userAgent)
	req.Header.Set(HeaderID, id)
	req.Header.Set(HeaderTimestamp, strconv.FormatInt(ts.Unix(), 10))
	req.Header.Set(HeaderSignature, Sign(ep.key, id, ts, body))
	start := time.Now()
	resp, err := d.client.Do(req)
	if err != nil {
		if d.metrics != nil {
			d.metrics.duration.Observe(time.Since(start).Seconds())
		}
		switch {
		case errors.Is(err, ErrForbiddenAddress):
			return ResultRefused, err
		case errors.Is(err, context.DeadlineExceeded) || isTimeout(err):
			return ResultTimeout, err
		default:
			return ResultError, err
		}
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
	case code >= 400 && code < 500:
		return Result4xx, fmt.Errorf("answered %d: %q", code, head)
	default:
		return Result5xx, fmt.Errorf("answered %d: %q", code, head)
	}
}

// isTimeout reports a network timeout.
func isTimeout(err error) bool {
	var t interface{ Timeout() bool }
	return errors.As(err, &t) && t.Timeout()
}

// isLastAttempt reports whether asynq archives the task if this attempt fails.
func isLastAttempt(ctx context.Context) bool {
	retried, ok1 := asynq.GetRetryCount(ctx)
	maxRetry, ok2 := asynq.GetMaxRetry(ctx)
	return ok1 && ok2 && retried >= maxRetry
}

func (d *Deliverer) gaveUp(endpoint string) {
	if d.metrics != nil {
		d.metrics.deliveries.WithLabelValues(endpoint, OutcomeGaveUp).Inc()
	}
}
