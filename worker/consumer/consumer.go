package consumer

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/intakehq/intake/internal/queue"
)

// Processor runs one message body through the pipeline. It returns nil once the message's effect is
// committed; an error wrapping pipeline.ErrPermanent when the message can never succeed; an error
// wrapping pipeline.ErrUnavailable when a dependency is down (a pipeline.UnavailableError names
// it); any other error to be retried later. It must honour ctx: ctx ends after MessageTimeout, and
// after SIGTERM and the grace period.
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
	// (default 25 s). Run returns within Grace plus 8 s (postGraceBudget): the phases past the
	// grace period share that one deadline. Handlers still running are cancelled and get at most
	// 3 s to return; the messages of those that do not are made visible again; both end 2 s
	// (ackReserve) before the deadline, and the deletion of settled messages still pending gets
	// what remains (at most 15 s). The daemon waits 10 s past the grace period for its components.
	Grace time.Duration
	// MessageTimeout bounds each Process call: its context ends then, the heartbeat stops extending
	// the message's visibility, and the message is retried later (default 5 m; at least
	// Visibility, at most 6 h, well under SQS's 12 h visibility cap).
	MessageTimeout time.Duration
	// Dependencies are checked, instead of receiving messages, to learn when a dependency whose
	// outage paused the consumer is back (see "Outages" in the package documentation). An outage
	// of a dependency without a check ends when its pause does.
	Dependencies []Dependency
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
	maxBatch          = 10                    // SQS limit for ReceiveMessage and DeleteMessageBatch
	ackDelay          = 25 * time.Millisecond // longest wait before a partial delete batch is flushed
	defaultGatherWait = 10 * time.Millisecond // longest wait for more free workers before a receive
	ackFlushers       = 4                     // concurrent DeleteMessageBatch calls
	pauseMin          = time.Second           // first wait before checking a dependency that failed
	pauseMax          = 30 * time.Second      // longest wait between two checks
	probeTimeout      = 5 * time.Second       // bound of one dependency check
	deferMin          = 5 * time.Second       // shortest hiding of a message failed by an outage
	maxDeferDoublings = 4                     // a deferred message's hiding doubles per earlier receive, this often at most
	maxProbeRounds    = 3                     // rounds of checks of one probe, for dependencies reported during its checks
	receiveMargin     = 10 * time.Second      // bound of a ReceiveMessage call beyond its long poll
	drainTimeout      = 3 * time.Second       // after Grace, how long cancelled handlers may take at most
	postGraceBudget   = 8 * time.Second       // after Grace, when Run returns at the latest (within the daemon's 10 s slack)
	ackReserve        = 2 * time.Second       // of postGraceBudget, kept for the pending deletions
	callTimeout       = 10 * time.Second      // bound of one settling call (visibility, DLQ send)
	finalTimeout      = 5 * time.Second       // bound of the calls made after the drain
	abandonReleases   = 16                    // messages of abandoned handlers returned at once
	maxVisibility     = 12 * time.Hour        // SQS limit
	maxMessageTimeout = 6 * time.Hour         // well under maxVisibility
	redriveFastVis    = time.Second           // permanent failure left to the redrive policy
	maxReasonLen      = 1024                  // bytes of the reason kept in the DLQ attribute
	minReasonLen      = 256                   // the same, when the DLQ refused the message as too large
	maxAttributes     = 10                    // SQS limit of message attributes
	defaultReceivers  = 4                     // long-poll loops
	// unreadyReceiveFailures receives failed in a row, per receiver, make the consumer unready.
	unreadyReceiveFailures = 5
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
	gathering sync.Mutex
	// gatherWait is how long acquire waits for more free workers (defaultGatherWait; tests change it).
	gatherWait time.Duration
	// now, afterFunc and sleep are time.Now, time.AfterFunc and sleep (the heartbeat's clock and
	// timers, the receivers' backoff); tests replace them.
	now       func() time.Time
	afterFunc func(time.Duration, func()) timer
	sleep     func(ctx context.Context, d time.Duration) bool
	// receiving tracks the receivers' failed receives, for Ready.
	receiving receiveHealth
	acks      *acker
	// tasks carries received messages to the workers: Workers long-lived goroutines, each handling
	// one message at a time. (A goroutine per message grew a fresh stack for each one.) Its buffer
	// holds Workers tasks, and a receiver holds a free slot for each message it sends, so a send
	// never waits.
	tasks chan task
	// handled counts the tasks sent and not yet finished.
	handled sync.WaitGroup

	// redrive is what the consumer knows of the queue's redrive policy (nil: none or unknown).
	redrive         atomic.Pointer[queue.RedrivePolicy]
	redriveKnown    atomic.Bool // the policy was read at least once
	warnedNoRedrive atomic.Bool
	// warnedRedriveStuck is set once a permanently failing message came back past the policy's
	// maxReceiveCount (SQS could not move it) and that was logged as a warning.
	warnedRedriveStuck atomic.Bool
	// warnedRedriveParse is set while the queue's RedrivePolicy cannot be parsed, once that was
	// logged as a warning.
	warnedRedriveParse atomic.Bool
	warnedDLQLookup    atomic.Bool // the failure to resolve the redrive policy's DLQ was logged as a warning

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

// task is one received message for a worker: processed, or only hidden when it was received as a
// pause began (deferOnly).
type task struct {
	d         *delivery
	deferOnly bool
}

// delivery is one received message while the consumer holds it.
type delivery struct {
	msg      types.Message
	id       string
	handle   string
	receives int
	sentAt   time.Time
	// polled is when the receiver that got the message was admitted by the gate: a success of a
	// message polled after a resume confirms it.
	polled time.Time
	// epoch is the gate's epoch at that admission: a pause begun since (gate.valid) may be what
	// failed the message.
	epoch uint64
	// received is when the ReceiveMessage call that returned it ended: its visibility timeout
	// started a little before.
	received time.Time
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
	cfg.Receivers = cmp.Or(cfg.Receivers, defaultReceivers)
	cfg.Workers = cmp.Or(cfg.Workers, 64)
	cfg.Visibility = cmp.Or(cfg.Visibility, 60*time.Second)
	cfg.WaitTime = cmp.Or(cfg.WaitTime, 20*time.Second)
	cfg.RetryBase = cmp.Or(cfg.RetryBase, 2*time.Second)
	cfg.MaxBackoff = cmp.Or(cfg.MaxBackoff, 15*time.Minute)
	cfg.Grace = cmp.Or(cfg.Grace, 25*time.Second)
	cfg.DepthInterval = cmp.Or(cfg.DepthInterval, 30*time.Second)
	cfg.MessageTimeout = cmp.Or(cfg.MessageTimeout, 5*time.Minute)
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
	if cfg.MessageTimeout < cfg.Visibility || cfg.MessageTimeout > maxMessageTimeout {
		errs = append(errs, fmt.Errorf("consumer: MessageTimeout %s not in Visibility (%s)..%s", cfg.MessageTimeout, cfg.Visibility, maxMessageTimeout))
	}
	for i, d := range cfg.Dependencies {
		if d.Name == "" || d.Check == nil {
			errs = append(errs, fmt.Errorf("consumer: Dependencies[%d] needs a Name and a Check", i))
		}
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
		gate:       newGate(cfg.Dependencies, pauseMin, pauseMax, probeTimeout, m.paused, cfg.Log),
		slots:      make(chan struct{}, cfg.Workers),
		tasks:      make(chan task, cfg.Workers),
		gatherWait: defaultGatherWait,
		now:        time.Now,
		afterFunc:  func(d time.Duration, f func()) timer { return time.AfterFunc(d, f) },
		sleep:      sleep,
		inflight:   map[string]*delivery{},
	}
	c.gate.checks[dependencySQS] = c.checkSQS(c.gate.checks[dependencySQS])
	return c, nil
}

// checkSQS is the gate's check of dependencySQS, whose outage the acker reports when deletions keep
// failing: the acker's probe (the failed deletions again), then configured, the Dependency named
// "sqs" of the configuration, if any.
func (c *Consumer) checkSQS(configured func(context.Context) error) func(context.Context) error {
	return func(ctx context.Context) error {
		if c.acks != nil { // set by Run before the gate runs
			if err := c.acks.probe(ctx); err != nil {
				return err
			}
		}
		if configured != nil {
			return configured(ctx)
		}
		return nil
	}
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

	c.acks = newAcker(settleCtx, c.cfg.Client, c.cfg.QueueURL, c.log, c.m, c.gate)
	c.refreshQueueInfo(ctx)

	var workers sync.WaitGroup
	for range c.cfg.Workers {
		workers.Go(func() { c.work(ctx, workCtx) })
	}
	var bg sync.WaitGroup
	if c.cfg.DepthInterval > 0 {
		bg.Go(func() { c.pollDepth(ctx) })
	}
	bg.Go(func() { c.gate.run(ctx) })
	// pollCtx carries the long polls: a poll in flight when ctx ends is not cut (SQS may already
	// have handed it messages, which would stay hidden for the visibility timeout and lose a
	// receive each) but finishes, within pollBound, and what it returns is processed in the grace
	// period like the rest. No poll starts after ctx ends.
	pollCtx, cancelPoll := context.WithCancel(settleCtx)
	defer cancelPoll()
	var receivers sync.WaitGroup
	for i := range c.cfg.Receivers {
		receivers.Go(func() { c.receive(ctx, pollCtx, i) })
	}
	c.log.Info("consumer started", "queue_url", c.cfg.QueueURL, "dlq_url", c.cfg.DLQURL,
		"receivers", c.cfg.Receivers, "workers", c.cfg.Workers, "visibility", c.cfg.Visibility.String(),
		"message_timeout", c.cfg.MessageTimeout.String(), "dependencies", len(c.cfg.Dependencies))

	<-ctx.Done()
	stopping := time.Now()
	c.state.Store(stateStopping)
	cutPolls := time.AfterFunc(c.pollBound(), cancelPoll)
	defer cutPolls.Stop()
	receivers.Wait()
	bg.Wait()

	n := c.inflightCount()
	grace := max(c.cfg.Grace-time.Since(stopping), 0) // the polls' end came out of it
	// What follows the grace period shares one deadline (see Config.Grace): the cancelled
	// handlers and the return of the abandoned ones' messages end ackReserve before it, the
	// pending deletions at it.
	deadline := stopping.Add(c.cfg.Grace + postGraceBudget)
	c.log.Info("consumer stopping: receiving stopped, waiting for in-flight messages", "inflight", n, "grace", grace.String())
	drained := c.inflightCount() == 0 || waitTimeout(&c.handled, grace)
	if !drained {
		c.log.Warn("grace period over: cancelling in-flight messages and returning them to the queue", "inflight", c.inflightCount())
		cancelWork()
		wait := min(drainTimeout, time.Until(deadline.Add(-ackReserve)))
		if drained = waitTimeout(&c.handled, max(wait, 0)); !drained {
			c.abandon(settleCtx, deadline.Add(-ackReserve))
		}
	}
	// No task is sent after the receivers stopped. The workers of abandoned handlers end when
	// those return; the others end now.
	close(c.tasks)
	if drained {
		workers.Wait()
	}
	c.acks.close(deadline)
	// Last: a handler that reported an outage during the grace period, or deletions that failed
	// while flushing, set a paused gauge that no probe will clear.
	c.gate.close()
	c.log.Info("consumer stopped")
	return nil
}

// pollBound is how long long polls in flight at shutdown may still take: the poll's wait and a
// margin, within four fifths of the grace period (the last fifth is for what they return).
func (c *Consumer) pollBound() time.Duration {
	return min(c.cfg.WaitTime+2*time.Second, c.cfg.Grace-c.cfg.Grace/5)
}

// shutdownCallTimeout bounds the calls a receiver makes once the shutdown began.
const shutdownCallTimeout = 2 * time.Second

// work is one worker: it handles the tasks the receivers send until tasks is closed. Messages are
// processed under workCtx; those only deferred, under ctx.
func (c *Consumer) work(ctx, workCtx context.Context) {
	for t := range c.tasks {
		if t.deferOnly {
			c.deferUnprocessed(ctx, t.d)
		} else {
			c.handle(workCtx, t.d)
		}
		c.handled.Done()
	}
}

// dispatch hands a tracked message, whose worker slot the caller holds, to a worker.
func (c *Consumer) dispatch(d *delivery, deferOnly bool) {
	c.handled.Add(1)
	c.tasks <- task{d: d, deferOnly: deferOnly}
}

// Ready is a readiness check: it fails until Run started, while receiving is paused by a
// dependency outage ("paused: postgres unavailable since …"), while receiving fails (the last
// 5 × Receivers ReceiveMessage calls of all the receivers failed: "the last 20 receives failed,
// since …", with the last error; a receive that succeeds ends it), and once it is stopping.
func (c *Consumer) Ready(context.Context) error {
	switch c.state.Load() {
	case stateRunning:
		if err := c.gate.pausedBy(); err != nil {
			return err
		}
		return c.receiving.check(c.cfg.Receivers * unreadyReceiveFailures)
	case stateNew:
		return errors.New("consumer: not started")
	default:
		return errors.New("consumer: stopping")
	}
}

// abandon returns the messages of handlers that ignore their cancelled context to the queue, so
// Run can return. Those handlers, when they finally return, settle nothing. The messages are
// returned a few at a time and within finalTimeout in all, and by deadline: one by one, a slow SQS
// would hold shutdown for finalTimeout per message, past any orchestrator's grace period.
func (c *Consumer) abandon(ctx context.Context, deadline time.Time) {
	c.abandoned.Store(true)
	c.inflightMu.Lock()
	left := make([]*delivery, 0, len(c.inflight))
	for _, d := range c.inflight {
		left = append(left, d)
	}
	c.inflightMu.Unlock()
	c.log.Error("handlers did not return after cancellation; returning their messages to the queue", "count", len(left))
	ctx, cancel := context.WithDeadline(ctx, earliest(time.Now().Add(finalTimeout), deadline))
	defer cancel()
	var wg sync.WaitGroup
	slots := make(chan struct{}, abandonReleases)
	for _, d := range left {
		slots <- struct{}{}
		wg.Go(func() {
			defer func() { <-slots }()
			c.release(ctx, d)
		})
	}
	wg.Wait()
}

// earliest returns the earlier of a and b.
func earliest(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
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
		select {
		case <-done: // both ready: a zero wait must not pass for a timeout
			return true
		default:
			return false
		}
	}
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
