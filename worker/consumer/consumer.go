package consumer

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"runtime/debug"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/intakehq/intake/internal/telemetry"
	"github.com/intakehq/intake/pipeline"
)

// Processor runs one message body through the pipeline. It returns nil once the message's effect is
// committed; an error wrapping pipeline.ErrPermanent when the message can never succeed; an error
// wrapping pipeline.ErrUnavailable when a dependency is down; any other error to be retried later.
// It must honour ctx: after SIGTERM and the grace period, ctx is cancelled.
type Processor interface {
	Process(ctx context.Context, msgID string, body []byte) error
}

// ProcessorFunc adapts a function to a Processor.
type ProcessorFunc func(ctx context.Context, msgID string, body []byte) error

// Process calls f.
func (f ProcessorFunc) Process(ctx context.Context, msgID string, body []byte) error {
	return f(ctx, msgID, body)
}

// Client is the subset of the SQS API the consumer uses; *sqs.Client satisfies it.
type Client interface {
	ReceiveMessage(ctx context.Context, in *sqs.ReceiveMessageInput, optFns ...func(*sqs.Options)) (*sqs.ReceiveMessageOutput, error)
	DeleteMessageBatch(ctx context.Context, in *sqs.DeleteMessageBatchInput, optFns ...func(*sqs.Options)) (*sqs.DeleteMessageBatchOutput, error)
	ChangeMessageVisibility(ctx context.Context, in *sqs.ChangeMessageVisibilityInput, optFns ...func(*sqs.Options)) (*sqs.ChangeMessageVisibilityOutput, error)
	SendMessage(ctx context.Context, in *sqs.SendMessageInput, optFns ...func(*sqs.Options)) (*sqs.SendMessageOutput, error)
	GetQueueAttributes(ctx context.Context, in *sqs.GetQueueAttributesInput, optFns ...func(*sqs.Options)) (*sqs.GetQueueAttributesOutput, error)
	GetQueueUrl(ctx context.Context, in *sqs.GetQueueUrlInput, optFns ...func(*sqs.Options)) (*sqs.GetQueueUrlOutput, error)
}

var _ Client = (*sqs.Client)(nil)

// Config configures a Consumer. Zero durations and counts take the defaults shown.
type Config struct {
	// Client talks to SQS (required).
	Client Client
	// QueueURL is the queue of S3 event notifications (required).
	QueueURL string
	// DLQURL, when set, receives permanently failing messages explicitly; otherwise the queue's
	// redrive policy moves them after maxReceiveCount receives.
	DLQURL string
	// Receivers is the number of concurrent long-poll loops (default 4).
	Receivers int
	// Workers bounds the messages processed at once (default 64).
	Workers int
	// Visibility is the visibility timeout of received messages; the heartbeat extends it by the same
	// amount every Visibility/2 (default 60 s, whole seconds, at least 1 s).
	Visibility time.Duration
	// WaitTime is the long-poll wait, whole seconds up to 20 (default 20 s). Short polling is not
	// offered: it costs one request per receiver whenever the queue is empty.
	WaitTime time.Duration
	// RetryBase is the visibility given to a message failing on its first receive; it doubles with
	// each further receive (default 2 s).
	RetryBase time.Duration
	// MaxBackoff caps the retry visibility (default 15 m; SQS allows 12 h).
	MaxBackoff time.Duration
	// Grace is how long in-flight messages may still run after Run's context is cancelled
	// (default 25 s).
	Grace time.Duration
	// DepthInterval is how often the queue depth gauges are refreshed (default 30 s; negative
	// disables polling).
	DepthInterval time.Duration
	// Processor handles each message (required).
	Processor Processor
	// Log receives the consumer's logs (default: discard).
	Log *slog.Logger
	// Registerer receives the metrics (nil: not registered).
	Registerer prometheus.Registerer
}

// Tunables that are not worth a setting.
const (
	maxBatch        = 10                    // SQS limit for ReceiveMessage and DeleteMessageBatch
	ackDelay        = 25 * time.Millisecond // longest wait before a partial delete batch is flushed
	gatherWait      = 10 * time.Millisecond // longest wait for more free workers before a receive
	ackFlushers     = 4                     // concurrent DeleteMessageBatch calls
	pauseMin        = time.Second           // first pause after an outage error
	pauseMax        = 30 * time.Second      // longest pause
	drainTimeout    = 5 * time.Second       // after Grace, how long cancelled handlers may take
	callTimeout     = 10 * time.Second      // bound of one settling call (visibility, DLQ send)
	finalTimeout    = 5 * time.Second       // bound of the calls made after the drain
	maxVisibility   = 12 * time.Hour        // SQS limit
	redriveFastVis  = time.Second           // permanent failure left to the redrive policy
	reasonAttribute = "intake-dlq-reason"   // DLQ message attribute with the failure
	maxReasonLen    = 1024                  // bytes of the reason kept in the DLQ attribute
	maxAttributes   = 10                    // SQS limit of message attributes
	sourceIDAttr    = "intake-source-message-id"
	sourceRecvAttr  = "intake-receive-count"
	defaultReceives = 4
)

// Consumer receives and settles messages; see the package documentation.
type Consumer struct {
	cfg   Config
	log   *slog.Logger
	m     *metrics
	gate  *gate
	slots chan struct{}
	// gathering is held by the receiver taking worker slots, so that slots freed one by one go to
	// one receiver until it has a full batch instead of being split among all of them.
	gathering  sync.Mutex
	gatherWait time.Duration // gatherWait, but for tests
	acks       *acker
	handled    sync.WaitGroup

	// redrive is what the consumer knows of the queue's redrive policy (nil: none or unknown).
	redrive         atomic.Pointer[redrivePolicy]
	redriveKnown    atomic.Bool // the policy was read at least once
	warnedNoRedrive atomic.Bool

	inflightMu sync.Mutex
	inflight   map[string]*delivery // by receipt handle
	abandoned  atomic.Bool          // set when Run gave up waiting for handlers
	state      atomic.Int32         // stateNew, stateRunning, stateStopping
}

const (
	stateNew int32 = iota
	stateRunning
	stateStopping
)

type redrivePolicy struct {
	dlqARN          string
	maxReceiveCount int
}

// delivery is one received message while the consumer holds it.
type delivery struct {
	msg      types.Message
	id       string
	handle   string
	receives int
	sentAt   time.Time
	probe    bool
	// polled is when the receiver that got the message was admitted by the gate: results of
	// messages polled before a pause began say nothing new about the outage.
	polled time.Time
}

// New validates cfg, applies the defaults and registers the metrics.
func New(cfg Config) (*Consumer, error) {
	var errs []error
	if cfg.Client == nil {
		errs = append(errs, errors.New("consumer: Client is required"))
	}
	if cfg.QueueURL == "" {
		errs = append(errs, errors.New("consumer: QueueURL is required"))
	}
	if cfg.Processor == nil {
		errs = append(errs, errors.New("consumer: Processor is required"))
	}
	cfg.Receivers = cmp.Or(cfg.Receivers, defaultReceives)
	cfg.Workers = cmp.Or(cfg.Workers, 64)
	cfg.Visibility = cmp.Or(cfg.Visibility, 60*time.Second)
	cfg.WaitTime = cmp.Or(cfg.WaitTime, 20*time.Second)
	cfg.RetryBase = cmp.Or(cfg.RetryBase, 2*time.Second)
	cfg.MaxBackoff = cmp.Or(cfg.MaxBackoff, 15*time.Minute)
	cfg.Grace = cmp.Or(cfg.Grace, 25*time.Second)
	cfg.DepthInterval = cmp.Or(cfg.DepthInterval, 30*time.Second)
	if cfg.Receivers < 1 || cfg.Workers < 1 {
		errs = append(errs, fmt.Errorf("consumer: Receivers (%d) and Workers (%d) must be positive", cfg.Receivers, cfg.Workers))
	}
	if cfg.Visibility < time.Second || cfg.Visibility > maxVisibility {
		errs = append(errs, fmt.Errorf("consumer: Visibility %s not in 1s..12h", cfg.Visibility))
	}
	if cfg.WaitTime < time.Second || cfg.WaitTime > 20*time.Second {
		errs = append(errs, fmt.Errorf("consumer: WaitTime %s not in 1s..20s", cfg.WaitTime))
	}
	if cfg.RetryBase < 0 || cfg.MaxBackoff < time.Second || cfg.MaxBackoff > maxVisibility {
		errs = append(errs, fmt.Errorf("consumer: RetryBase %s must not be negative and MaxBackoff %s must be in 1s..12h", cfg.RetryBase, cfg.MaxBackoff))
	}
	if cfg.Grace < 0 {
		errs = append(errs, fmt.Errorf("consumer: Grace %s must not be negative", cfg.Grace))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	c := &Consumer{
		cfg:        cfg,
		log:        cfg.Log,
		m:          m,
		gate:       newGate(pauseMin, pauseMax, m.paused, cfg.Log),
		slots:      make(chan struct{}, cfg.Workers),
		gatherWait: gatherWait,
		inflight:   map[string]*delivery{},
	}
	return c, nil
}

// Run receives and processes messages until ctx is cancelled, then drains as described in the
// package documentation and returns nil. It returns an error only if it could not start. A
// Consumer runs once.
func (c *Consumer) Run(ctx context.Context) error {
	if !c.state.CompareAndSwap(stateNew, stateRunning) {
		return errors.New("consumer: Run called twice")
	}
	// settleCtx outlives ctx: it carries the visibility changes, DLQ sends and deletes made while
	// draining. It ends when Run returns.
	settleCtx, cancelSettle := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelSettle()
	// workCtx is what Process and the heartbeat see; it ends when the grace period is over.
	workCtx, cancelWork := context.WithCancel(settleCtx)
	defer cancelWork()

	c.acks = newAcker(settleCtx, c.cfg.Client, c.cfg.QueueURL, c.log, c.m)
	c.refreshQueueInfo(ctx)

	var bg sync.WaitGroup
	if c.cfg.DepthInterval > 0 {
		bg.Go(func() { c.pollDepth(ctx) })
	}
	var receivers sync.WaitGroup
	for i := range c.cfg.Receivers {
		receivers.Go(func() { c.receive(ctx, workCtx, i) })
	}
	c.log.Info("consumer started", "queue_url", c.cfg.QueueURL, "dlq_url", c.cfg.DLQURL,
		"receivers", c.cfg.Receivers, "workers", c.cfg.Workers, "visibility", c.cfg.Visibility.String())

	<-ctx.Done()
	c.state.Store(stateStopping)
	receivers.Wait()
	bg.Wait()
	c.gate.close()

	n := c.inflightCount()
	c.log.Info("consumer stopping: receiving stopped, waiting for in-flight messages", "inflight", n, "grace", c.cfg.Grace.String())
	if !waitTimeout(&c.handled, c.cfg.Grace) {
		c.log.Warn("grace period over: cancelling in-flight messages and returning them to the queue", "inflight", c.inflightCount())
		cancelWork()
		if !waitTimeout(&c.handled, drainTimeout) {
			c.abandon(settleCtx)
		}
	}
	c.acks.close()
	c.log.Info("consumer stopped")
	return nil
}

// Ready is a readiness check: it fails until Run started and once it is stopping. A pause caused
// by a dependency outage does not make the consumer unready (the dependency's own check does).
func (c *Consumer) Ready(context.Context) error {
	switch c.state.Load() {
	case stateRunning:
		return nil
	case stateNew:
		return errors.New("consumer: not started")
	default:
		return errors.New("consumer: stopping")
	}
}

// abandon returns the messages of handlers that ignore their cancelled context to the queue, so
// Run can return. Those handlers, when they finally return, settle nothing.
func (c *Consumer) abandon(ctx context.Context) {
	c.abandoned.Store(true)
	c.inflightMu.Lock()
	left := make([]*delivery, 0, len(c.inflight))
	for _, d := range c.inflight {
		left = append(left, d)
	}
	c.inflightMu.Unlock()
	c.log.Error("handlers did not return after cancellation; returning their messages to the queue", "count", len(left))
	for _, d := range left {
		c.release(ctx, d)
	}
}

func waitTimeout(wg *sync.WaitGroup, d time.Duration) bool {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-done:
		return true
	case <-t.C:
		return false
	}
}

// receive is one long-poll loop. Messages it receives are processed under workCtx.
func (c *Consumer) receive(ctx, workCtx context.Context, id int) {
	log := c.log.With("receiver", id)
	errBackoff := pauseMin
	for ctx.Err() == nil {
		pass, err := c.gate.wait(ctx)
		if err != nil {
			return
		}
		probe := pass.probe
		n := c.acquire(ctx, pass.limit)
		if n == 0 {
			if probe {
				c.gate.probeDone()
			}
			return
		}
		if !c.gate.valid(pass) {
			// A pause began while this receiver waited for free workers.
			c.releaseSlots(n)
			continue
		}
		out, err := c.cfg.Client.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{
			QueueUrl:            aws.String(c.cfg.QueueURL),
			MaxNumberOfMessages: int32(n),
			WaitTimeSeconds:     int32(c.cfg.WaitTime / time.Second),
			VisibilityTimeout:   int32(c.cfg.Visibility / time.Second),
			MessageSystemAttributeNames: []types.MessageSystemAttributeName{
				types.MessageSystemAttributeNameApproximateReceiveCount,
				types.MessageSystemAttributeNameSentTimestamp,
			},
			MessageAttributeNames: []string{"All"},
		})
		if err != nil {
			c.releaseSlots(n)
			if probe {
				c.gate.probeDone()
			}
			if ctx.Err() != nil {
				return
			}
			c.m.receiveErrors.Inc()
			d := jitter(errBackoff)
			log.Warn("receive failed; backing off", "err", err, "backoff", d.String())
			errBackoff = min(errBackoff*2, pauseMax)
			if !sleep(ctx, d) {
				return
			}
			continue
		}
		errBackoff = pauseMin
		c.releaseSlots(n - len(out.Messages))
		if probe && len(out.Messages) == 0 {
			c.gate.probeDone()
		}
		c.m.received.Add(float64(len(out.Messages)))
		if len(out.Messages) > 0 {
			c.m.receiveSize.Observe(float64(len(out.Messages)))
		}
		for _, msg := range out.Messages {
			d := newDelivery(msg, probe, pass.at)
			c.track(d)
			c.handled.Go(func() { c.handle(workCtx, d) })
		}
	}
}

// acquire blocks for one free worker slot, then takes up to limit-1 more: those free now, then
// those freed within gatherWait. It returns how many it took, 0 when ctx ended first.
//
// When the workers are idle the slots are all free and nothing waits. When they are all busy,
// slots free up one at a time; receiving at once for each would cost one ReceiveMessage (and later
// one DeleteMessageBatch entry group) per message or two, so the receiver waits briefly to fill its
// batch: it costs at most gatherWait of latency on a saturated consumer, where a message waits for
// a worker anyway.
func (c *Consumer) acquire(ctx context.Context, limit int) int {
	c.gathering.Lock()
	defer c.gathering.Unlock()
	select {
	case c.slots <- struct{}{}:
	case <-ctx.Done():
		return 0
	}
	n := 1
	for n < limit && c.tryAcquire() {
		n++
	}
	if n == limit {
		return n
	}
	timer := time.NewTimer(c.gatherWait)
	defer timer.Stop()
	for n < limit {
		select {
		case c.slots <- struct{}{}:
			n++
		case <-timer.C:
			return n
		case <-ctx.Done():
			return n // the receive fails at once and releases them
		}
	}
	return n
}

// tryAcquire takes a free worker slot if there is one.
func (c *Consumer) tryAcquire() bool {
	select {
	case c.slots <- struct{}{}:
		return true
	default:
		return false
	}
}

func (c *Consumer) releaseSlots(n int) {
	for range n {
		<-c.slots
	}
}

func newDelivery(msg types.Message, probe bool, polled time.Time) *delivery {
	d := &delivery{
		msg:    msg,
		id:     aws.ToString(msg.MessageId),
		handle: aws.ToString(msg.ReceiptHandle),
		probe:  probe,
		polled: polled,
	}
	d.receives, _ = strconv.Atoi(msg.Attributes[string(types.MessageSystemAttributeNameApproximateReceiveCount)])
	if ms, err := strconv.ParseInt(msg.Attributes[string(types.MessageSystemAttributeNameSentTimestamp)], 10, 64); err == nil {
		d.sentAt = time.UnixMilli(ms)
	}
	return d
}

func (c *Consumer) track(d *delivery) {
	c.inflightMu.Lock()
	c.inflight[d.handle] = d
	c.inflightMu.Unlock()
	c.m.inflight.Inc()
}

func (c *Consumer) untrack(d *delivery) {
	c.inflightMu.Lock()
	delete(c.inflight, d.handle)
	c.inflightMu.Unlock()
	c.m.inflight.Dec()
}

func (c *Consumer) inflightCount() int {
	c.inflightMu.Lock()
	defer c.inflightMu.Unlock()
	return len(c.inflight)
}

// handle processes one message and settles it.
func (c *Consumer) handle(workCtx context.Context, d *delivery) {
	defer c.releaseSlots(1)
	defer c.untrack(d)
	ctx := telemetry.WithAttrs(workCtx, slog.String("message_id", d.id))
	ctx = context.WithValue(ctx, messageKey{}, Message{ID: d.id, ReceiveCount: d.receives, SentAt: d.sentAt})

	began := time.Now()
	hb := c.startHeartbeat(ctx, d)
	err := c.process(ctx, d)
	hb.stop()
	c.m.processing.Observe(time.Since(began).Seconds())

	if c.abandoned.Load() {
		c.log.WarnContext(ctx, "handler returned after its message was given back to the queue", "err", err)
		return
	}
	// Settling calls must survive the cancellation of workCtx.
	sctx := context.WithoutCancel(ctx)
	switch {
	case err == nil:
		c.gate.success(d.polled, d.probe)
		c.acks.add(sctx, d, false)
	case errors.Is(err, pipeline.ErrPermanent):
		c.gate.neutral(d.probe)
		c.deadLetter(sctx, d, err)
	case workCtx.Err() != nil:
		c.gate.neutral(d.probe)
		c.log.InfoContext(ctx, "processing cancelled at shutdown; returning the message to the queue", "err", err)
		c.release(sctx, d)
	default:
		if errors.Is(err, pipeline.ErrUnavailable) {
			c.gate.unavailable(d.polled, d.probe)
		} else {
			c.gate.neutral(d.probe)
		}
		c.retry(sctx, d, err)
	}
}

// process calls the Processor, turning a panic into a retryable error.
func (c *Consumer) process(ctx context.Context, d *delivery) (err error) {
	defer func() {
		if r := recover(); r != nil {
			c.log.ErrorContext(ctx, "processor panicked", "panic", r, "stack", string(debug.Stack()))
			err = fmt.Errorf("processor panicked: %v", r)
		}
	}()
	return c.cfg.Processor.Process(ctx, d.id, []byte(aws.ToString(d.msg.Body)))
}

// retry hides the message for a backoff that grows with its receive count.
func (c *Consumer) retry(ctx context.Context, d *delivery, cause error) {
	delay := retryDelay(d.receives, c.cfg.RetryBase, c.cfg.MaxBackoff, rand.Int64N)
	c.m.retried.Inc()
	c.log.WarnContext(ctx, "processing failed; will retry", "err", cause,
		"receive_count", d.receives, "retry_in", delay.String())
	if err := c.setVisibility(ctx, d, delay); err != nil {
		c.log.WarnContext(ctx, "could not set the retry backoff; the message returns after its visibility timeout", "err", err)
	}
}

// release makes the message visible again at once (shutdown).
func (c *Consumer) release(ctx context.Context, d *delivery) {
	cctx, cancel := context.WithTimeout(ctx, finalTimeout)
	defer cancel()
	if err := c.setVisibility(cctx, d, 0); err != nil {
		c.log.WarnContext(ctx, "could not return the message to the queue; it returns after its visibility timeout", "err", err)
		return
	}
	c.m.released.Inc()
}

func (c *Consumer) setVisibility(ctx context.Context, d *delivery, v time.Duration) error {
	cctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	_, err := c.cfg.Client.ChangeMessageVisibility(cctx, &sqs.ChangeMessageVisibilityInput{
		QueueUrl:          aws.String(c.cfg.QueueURL),
		ReceiptHandle:     aws.String(d.handle),
		VisibilityTimeout: visibilitySeconds(v),
	})
	if err != nil {
		return fmt.Errorf("change visibility of message %s to %s: %w", d.id, v, err)
	}
	return nil
}

// deadLetter sends a permanently failing message to the DLQ and deletes it, or leaves it to the
// redrive policy.
func (c *Consumer) deadLetter(ctx context.Context, d *delivery, cause error) {
	reason := cause.Error()
	label := reasonLabel(cause)
	if c.cfg.DLQURL == "" {
		rp := c.redrive.Load()
		var vis time.Duration
		switch {
		case rp != nil:
			vis = redriveFastVis // let the receive count reach maxReceiveCount soon
		case c.redriveKnown.Load():
			vis = c.cfg.MaxBackoff // no policy: do not spin on a poison message
		default:
			vis = retryDelay(d.receives, c.cfg.RetryBase, c.cfg.MaxBackoff, rand.Int64N)
		}
		last := rp != nil && d.receives >= rp.maxReceiveCount
		if last {
			c.m.deadLettered.WithLabelValues(label).Inc()
		}
		c.log.ErrorContext(ctx, "permanent failure; leaving the message to the queue's redrive policy",
			"err", cause, "reason", label, "receive_count", d.receives, "redrive_policy", rp != nil,
			"last_receive", last, "visibility", vis.String())
		if err := c.setVisibility(ctx, d, vis); err != nil {
			c.log.WarnContext(ctx, "could not shorten the visibility of a permanently failing message", "err", err)
		}
		return
	}
	cctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	_, err := c.cfg.Client.SendMessage(cctx, &sqs.SendMessageInput{
		QueueUrl:          aws.String(c.cfg.DLQURL),
		MessageBody:       d.msg.Body,
		MessageAttributes: dlqAttributes(d, reason),
	})
	if err != nil {
		c.log.ErrorContext(ctx, "permanent failure, but the dead-letter queue refused the message; will retry",
			"err", cause, "dlq_err", err)
		c.retry(ctx, d, fmt.Errorf("send to dead-letter queue: %w", err))
		return
	}
	c.m.deadLettered.WithLabelValues(label).Inc()
	c.log.ErrorContext(ctx, "permanent failure; message moved to the dead-letter queue",
		"err", cause, "reason", label, "receive_count", d.receives)
	c.acks.add(ctx, d, true)
}

// dlqAttributes copies the message's attributes and adds the failure reason, the source message id
// and the receive count, within SQS's limit of ten attributes.
func dlqAttributes(d *delivery, reason string) map[string]types.MessageAttributeValue {
	if len(reason) > maxReasonLen {
		reason = reason[:maxReasonLen]
	}
	attrs := map[string]types.MessageAttributeValue{
		reasonAttribute: {DataType: aws.String("String"), StringValue: aws.String(reason)},
		sourceIDAttr:    {DataType: aws.String("String"), StringValue: aws.String(d.id)},
		sourceRecvAttr:  {DataType: aws.String("Number"), StringValue: aws.String(strconv.Itoa(d.receives))},
	}
	for k, v := range d.msg.MessageAttributes {
		if len(attrs) >= maxAttributes {
			break
		}
		if _, ours := attrs[k]; !ours {
			attrs[k] = v
		}
	}
	return attrs
}

// reasonLabel is the low-cardinality reason of a permanent failure, for the metric label.
func reasonLabel(err error) string {
	var r interface{ DeadLetterReason() string }
	if errors.As(err, &r) {
		if s := r.DeadLetterReason(); s != "" {
			return s
		}
	}
	return "permanent"
}

// retryDelay is the visibility given to a message failing on its receives-th receive: base doubled
// per receive, capped at max, with equal jitter (between half and all of it), at least 1 s.
func retryDelay(receives int, base, maxDelay time.Duration, randN func(int64) int64) time.Duration {
	d := base
	for i := 1; i < receives && d < maxDelay; i++ {
		d *= 2
	}
	d = min(d, maxDelay)
	if half := d / 2; half > 0 {
		d = half + time.Duration(randN(int64(half)+1))
	}
	return max(min(d, maxDelay), time.Second)
}

// visibilitySeconds rounds a duration up to whole seconds within SQS's 0..12h.
func visibilitySeconds(d time.Duration) int32 {
	d = min(max(d, 0), maxVisibility)
	return int32((d + time.Second - 1) / time.Second)
}

func jitter(d time.Duration) time.Duration {
	if d <= 1 {
		return d
	}
	return d/2 + time.Duration(rand.Int64N(int64(d/2)+1))
}

// sleep waits d or until ctx ends; it reports whether the full time passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// Message describes the SQS message being processed; Processors read it with FromContext.
type Message struct {
	// ID is the SQS message id.
	ID string
	// ReceiveCount is ApproximateReceiveCount: 1 on the first delivery.
	ReceiveCount int
	// SentAt is when the message was sent to the queue (zero when unknown).
	SentAt time.Time
}

type messageKey struct{}

// FromContext returns the message being processed, when ctx is a Process context.
func FromContext(ctx context.Context) (Message, bool) {
	m, ok := ctx.Value(messageKey{}).(Message)
	return m, ok
}
