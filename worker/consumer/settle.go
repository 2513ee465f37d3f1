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
	"strings"
	"time"
	"unicode/utf8"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/intakehq/intake/internal/queue"
	"github.com/intakehq/intake/internal/telemetry"
	"github.com/intakehq/intake/pipeline"
)

// handle processes one message, within MessageTimeout, and settles it.
func (c *Consumer) handle(workCtx context.Context, d *delivery) {
	defer c.releaseSlots(1)
	defer c.untrack(d)
	ctx := telemetry.WithAttrs(workCtx, slog.String("message_id", d.id))
	ctx = withMessage(ctx, Message{ID: d.id, ReceiveCount: d.receives, SentAt: d.sentAt})
	msgCtx, cancel := context.WithTimeout(ctx, c.cfg.MessageTimeout)
	defer cancel()

	began := time.Now()
	hb := c.startHeartbeat(msgCtx, d) // ends with msgCtx: no extension past MessageTimeout
	err := c.process(msgCtx, d)
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
		c.gate.success(d.polled)
		c.acks.add(sctx, d)
	case errors.Is(err, pipeline.ErrPermanent):
		c.deadLetter(sctx, d, err)
	case workCtx.Err() != nil:
		c.log.InfoContext(ctx, "processing cancelled at shutdown; returning the message to the queue", "err", err)
		c.release(sctx, d)
	case errors.Is(msgCtx.Err(), context.DeadlineExceeded):
		c.m.timedOut.Inc()
		err = fmt.Errorf("processing exceeded the message timeout (%s): %w", c.cfg.MessageTimeout, err)
		// A dependency that hangs rather than refuses (S3 accepting requests but stalling every
		// body) shows as message timeouts wrapping its outage error: when its check fails too, it
		// is an outage, which pauses the receivers and spends no receive.
		if dep, cerr := c.timeoutOutage(sctx, err); cerr != nil {
			c.log.WarnContext(ctx, "message timed out and its dependency fails its check: an outage, not the message",
				"dependency", dep, "check_err", cerr)
			c.deferMessage(sctx, d, c.gate.unavailable(dep, d.polled, deferMin), err)
			return
		}
		// Else the message's own deadline: a stalled read of one object. Retried like any
		// failure, so an object that always stalls ends in the dead-letter queue.
		c.retryOrGiveUp(sctx, d, err)
	case errors.Is(err, pipeline.ErrUnavailable):
		dep := pipeline.UnavailableDependency(err)
		c.deferMessage(sctx, d, c.gate.unavailable(dep, d.polled, deferMin), err)
	default:
		c.retryOrGiveUp(sctx, d, err)
	}
}

// timeoutOutage runs, for a message that timed out with an error wrapping a dependency's outage
// error (pipeline.ErrUnavailable), that dependency's check once (bounded like a probe's). It returns
// the dependency and the check's error: nil when the check passes, or when err wraps no outage (the
// message alone is at fault).
func (c *Consumer) timeoutOutage(ctx context.Context, err error) (string, error) {
	if !errors.Is(err, pipeline.ErrUnavailable) {
		return "", nil
	}
	dep := cmp.Or(pipeline.UnavailableDependency(err), unknownDependency)
	return dep, c.gate.check(ctx, dep)
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

// deferMessage hides a message that failed because a dependency is down until the gate's next
// check of it (pause, at least deferMin), doubled per earlier receive (deferDelay). It is not a
// retry: the message did nothing wrong.
func (c *Consumer) deferMessage(ctx context.Context, d *delivery, pause time.Duration, cause error) {
	delay := deferDelay(d.receives, pause, c.cfg.MaxBackoff)
	c.m.deferred.Inc()
	if !c.lastReceiveLogged(ctx, d, "dependency unavailable", cause, "hidden_for", delay) {
		c.log.InfoContext(ctx, "dependency unavailable; message hidden until it is back", "err", cause,
			"receive_count", d.receives, "hidden_for", delay.String())
	}
	if err := c.setVisibility(ctx, d, delay); err != nil {
		c.log.WarnContext(ctx, "could not hide the message; it returns after its visibility timeout", "err", err)
	}
}

// deferUnprocessed hides, without processing it, a message received by a long poll that was under
// way when a pause began. It holds the message's worker slot until its visibility is set.
func (c *Consumer) deferUnprocessed(ctx context.Context, d *delivery) {
	defer c.releaseSlots(1)
	defer c.untrack(d)
	sctx := telemetry.WithAttrs(context.WithoutCancel(ctx), slog.String("message_id", d.id))
	c.deferMessage(sctx, d, c.gate.remaining(deferMin), errors.New("received as the consumer paused"))
}

// retryOrGiveUp retries a message that failed for its own reason (not an outage), or sends it to
// the explicit dead-letter queue, with the reason retries_exhausted, once exhausted says so.
func (c *Consumer) retryOrGiveUp(ctx context.Context, d *delivery, cause error) {
	if c.exhausted(d, cause) {
		c.deadLetter(ctx, d, retriesExhaustedError{err: cause, receives: d.receives})
		return
	}
	c.retry(ctx, d, cause)
}

// giveUpReceives is the receive from which the consumer itself sends to the explicit dead-letter
// queue (DLQURL) a message that keeps failing for its own reason where no redrive policy would ever
// move it: a body damaged on every receive (checksum_mismatch), a Processor that fails or panics on
// it, an object that always stalls past MessageTimeout (retries_exhausted).
const giveUpReceives = 5

// exhausted reports whether a message that failed (cause) on this receive for its own reason is to
// be given up rather than retried: with a DLQURL, a queue known to have no redrive policy (the
// message would otherwise be retried, hidden up to MaxBackoff each time, until the queue's
// retention drops it) and from its giveUpReceives-th receive. An outage never gives a message up:
// messages failed by one are deferred, not retried (deferMessage), and a failure wrapping
// pipeline.ErrUnavailable (a message timeout caused by a dependency that hangs), or one of a
// message during whose processing the receivers paused (the outage may be what failed it), is
// retried however many receives the message had.
func (c *Consumer) exhausted(d *delivery, cause error) bool {
	return c.cfg.DLQURL != "" && d.receives >= giveUpReceives && c.noRedrive() &&
		!errors.Is(cause, pipeline.ErrUnavailable) && c.gate.valid(pass{at: d.polled, epoch: d.epoch})
}

// noRedrive reports whether the queue is known to have no redrive policy: its attributes were read
// and named none.
func (c *Consumer) noRedrive() bool { return c.redriveKnown.Load() && c.redrive.Load() == nil }

// retriesExhaustedError is the failure of a message given up by exhausted.
type retriesExhaustedError struct {
	err      error
	receives int
}

func (e retriesExhaustedError) Error() string {
	return fmt.Sprintf("retries exhausted: failed on receive %d, and the queue has no redrive policy: %v", e.receives, e.err)
}

func (e retriesExhaustedError) Unwrap() error { return e.err }

// DeadLetterReason labels it in intake_messages_dead_lettered_total.
func (retriesExhaustedError) DeadLetterReason() string { return reasonRetriesExhausted }

// retry hides the message for a backoff that grows with its receive count.
func (c *Consumer) retry(ctx context.Context, d *delivery, cause error) {
	delay := retryDelay(d.receives, c.cfg.RetryBase, c.cfg.MaxBackoff, rand.Int64N)
	c.m.retried.Inc()
	if !c.lastReceiveLogged(ctx, d, "processing failed", cause, "visible_in", delay) {
		c.log.WarnContext(ctx, "processing failed; will retry", "err", cause,
			"receive_count", d.receives, "retry_in", delay.String())
	}
	if err := c.setVisibility(ctx, d, delay); err != nil {
		c.log.WarnContext(ctx, "could not set the retry backoff; the message returns after its visibility timeout", "err", err)
	}
}

// reasonRetriesExhausted is the intake_messages_dead_lettered_total reason of a message that failed
// without failing for good on the last receive the redrive policy allows, or, without a redrive
// policy, that the consumer sent to the explicit dead-letter queue after giveUpReceives receives
// (exhausted).
const reasonRetriesExhausted = "retries_exhausted"

// lastReceiveLogged counts in intake_messages_dead_lettered_total and logs, at error, a message
// that failed (what) on the last receive the queue's redrive policy allows: the queue, not intake,
// moves it to the dead-letter queue. It reports whether this was that receive (else the caller logs
// its retry). delayKey names how long the message is hidden.
func (c *Consumer) lastReceiveLogged(ctx context.Context, d *delivery, what string, cause error, delayKey string, delay time.Duration) bool {
	rp := c.lastReceive(d)
	if rp == nil {
		return false
	}
	c.m.deadLettered.WithLabelValues(reasonRetriesExhausted).Inc()
	c.log.ErrorContext(ctx, what+" on the last receive the queue's redrive policy allows; the queue will move the message to its dead-letter queue",
		"err", cause, "reason", reasonRetriesExhausted, "receive_count", d.receives,
		"max_receive_count", rp.MaxReceiveCount, delayKey, delay.String())
	return true
}

// lastReceive returns the queue's redrive policy when d's receive is the last one it allows (the
// next receive moves the message to the dead-letter queue), else nil. The consumer knows the
// policy once it has read the queue's attributes (at start, then every DepthInterval); until then,
// or without a policy, it returns nil.
func (c *Consumer) lastReceive(d *delivery) *queue.RedrivePolicy {
	// == rather than >=: a message SQS fails to move (its DLQ deleted, KMS denied) comes back with
	// higher counts, and is counted once.
	if rp := c.redrive.Load(); rp != nil && d.receives == rp.MaxReceiveCount {
		return rp
	}
	return nil
}

// release makes the message visible again at once (shutdown). On the last receive the redrive
// policy allows, the queue moves it to the dead-letter queue at its next receive: counted and
// logged as such (lastReceiveLogged), as a retry on that receive is.
func (c *Consumer) release(ctx context.Context, d *delivery) {
	c.lastReceiveLogged(ctx, d, "returned unprocessed (shutdown)", errReleased, "visible_in", 0)
	cctx, cancel := context.WithTimeout(ctx, finalTimeout)
	defer cancel()
	if err := c.setVisibility(cctx, d, 0); err != nil {
		c.log.WarnContext(ctx, "could not return the message to the queue; it returns after its visibility timeout", "err", err)
		return
	}
	c.m.released.Inc()
}

// errReleased is the cause logged for a message returned to the queue unprocessed.
var errReleased = errors.New("returned to the queue unprocessed: the consumer stopped before processing it to the end")

func (c *Consumer) setVisibility(ctx context.Context, d *delivery, v time.Duration) error {
	return c.changeVisibility(ctx, d, v, callTimeout)
}

// changeVisibility sets the message's visibility to v, in a call bounded by timeout.
func (c *Consumer) changeVisibility(ctx context.Context, d *delivery, v, timeout time.Duration) error {
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	_, err := c.cfg.Client.ChangeMessageVisibility(cctx, &sqs.ChangeMessageVisibilityInput{
		QueueUrl:          aws.String(c.cfg.QueueURL),
		ReceiptHandle:     aws.String(d.handle),
		VisibilityTimeout: visibilitySeconds(v),
	})
	if err != nil {
		return fmt.Errorf("change visibility of message %s to %s: %w", d.id, v, queue.RedactHandles(err, d.handle))
	}
	return nil
}

// deadLetter sends a permanently failing message (or one given up by exhausted) to the DLQ and
// deletes it, or leaves it to the redrive policy. It is counted in
// intake_messages_dead_lettered_total once deleted (the acker counts it), or, left to the redrive
// policy, on the last receive the policy allows.
func (c *Consumer) deadLetter(ctx context.Context, d *delivery, cause error) {
	reason := cause.Error()
	label := reasonLabel(cause)
	if c.cfg.DLQURL == "" {
		rp := c.redrive.Load()
		var vis time.Duration
		switch {
		case rp != nil && d.receives > rp.MaxReceiveCount:
			// SQS should have moved it at this receive and did not (its dead-letter queue deleted,
			// KMS denied): hidden briefly again, it would come back every second for as long as
			// that lasts.
			vis = c.cfg.MaxBackoff
			if c.warnedRedriveStuck.CompareAndSwap(false, true) {
				c.log.WarnContext(ctx, "a permanently failing message came back past the redrive policy's maxReceiveCount: SQS could not move it to the dead-letter queue (deleted? KMS or permission denied?); such messages are hidden for MaxBackoff each receive instead",
					"receive_count", d.receives, "max_receive_count", rp.MaxReceiveCount, "dlq_arn", rp.DLQARN,
					"max_backoff", c.cfg.MaxBackoff.String())
			}
		case rp != nil:
			vis = redriveFastVis // let the receive count reach maxReceiveCount soon
		case c.redriveKnown.Load():
			vis = c.cfg.MaxBackoff // no policy: do not spin on a poison message
		default:
			vis = retryDelay(d.receives, c.cfg.RetryBase, c.cfg.MaxBackoff, rand.Int64N)
		}
		// The rule of lastReceive: a message SQS fails to move comes back with higher counts and
		// is counted once.
		last := rp != nil && d.receives == rp.MaxReceiveCount
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
	err := c.sendDLQ(ctx, d, dlqAttributes(d, reason, maxReasonLen, true))
	if refusedForContent(err) {
		// SQS counts attributes toward the message size: a body near the limit, plus the copied
		// attributes and a long reason, is refused where the body alone fits. Once more with
		// intake's attributes alone and a short reason.
		c.log.WarnContext(ctx, "the dead-letter queue refused the message with its attributes; sending it with fewer",
			"dlq_err", err)
		err = c.sendDLQ(ctx, d, dlqAttributes(d, reason, minReasonLen, false))
	}
	if err != nil {
		c.log.ErrorContext(ctx, failure(cause)+", but the dead-letter queue refused the message; will retry",
			"err", cause, "reason", label, "dlq_err", err)
		c.retry(ctx, d, fmt.Errorf("send to dead-letter queue: %w", err))
		return
	}
	c.log.ErrorContext(ctx, failure(cause)+"; message copied to the dead-letter queue, deleting it",
		"err", cause, "reason", label, "receive_count", d.receives)
	c.acks.addDeadLettered(ctx, d, label)
}

// failure names what sends a message to the dead-letter queue, for the logs.
func failure(cause error) string {
	var ex retriesExhaustedError
	if errors.As(cause, &ex) {
		return "retries exhausted"
	}
	return "permanent failure"
}

// sendDLQ sends the message's body to the dead-letter queue with attrs.
func (c *Consumer) sendDLQ(ctx context.Context, d *delivery, attrs map[string]types.MessageAttributeValue) error {
	cctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	_, err := c.cfg.Client.SendMessage(cctx, &sqs.SendMessageInput{
		QueueUrl:          aws.String(c.cfg.DLQURL),
		MessageBody:       d.msg.Body,
		MessageAttributes: attrs,
	})
	return err
}

// dlqAttributes adds to the message's attributes (when withCopies is set) the failure reason (cut to
// reasonLen bytes, as text SQS accepts), the source message id and the receive count, within SQS's
// limit of ten attributes.
func dlqAttributes(d *delivery, reason string, reasonLen int, withCopies bool) map[string]types.MessageAttributeValue {
	attrs := map[string]types.MessageAttributeValue{
		queue.AttrDLQReason:       {DataType: aws.String("String"), StringValue: aws.String(sqsText(reason, reasonLen))},
		queue.AttrSourceMessageID: {DataType: aws.String("String"), StringValue: aws.String(d.id)},
		queue.AttrReceiveCount:    {DataType: aws.String("Number"), StringValue: aws.String(strconv.Itoa(d.receives))},
	}
	if !withCopies {
		return attrs
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

// sqsText is s as SQS accepts a message's text (valid UTF-8 of #x9, #xA, #xD, #x20-#xD7FF,
// #xE000-#xFFFD and #x10000-#x10FFFF; anything else becomes U+FFFD), cut to at most n bytes on a
// character boundary. A reason quotes object keys and library errors: a key with a control
// character, or a cut inside a character, would make SQS refuse the dead-lettering.
func sqsText(s string, n int) string {
	var b strings.Builder
	for _, r := range s {
		if !(r == '\t' || r == '\n' || r == '\r' || r >= 0x20 && r <= 0xD7FF || r >= 0xE000 && r <= 0xFFFD || r >= 0x10000 && r <= 0x10FFFF) {
			r = utf8.RuneError
		}
		if b.Len()+utf8.RuneLen(r) > n {
			break
		}
		b.WriteRune(r)
	}
	return b.String()
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

// deferDelay is the visibility given to a message failing on its receives-th receive because a
// dependency is down. On a first receive it is the gate's pause (until its next check): the
// message returns as soon as the dependency may be back.
//
// From the second receive on, the outage has failed the message before, and the pause is no
// measure of it. The dependency may flap (its check passes, the work fails), or fail for some
// messages only (S3 throttling one hot prefix, a lock on some rows making their statements time
// out): the check of the dependency as a whole passes, the other messages succeed, which confirms
// every resume, so the pauses stay at their 1 s minimum; hidden until the next check (deferMin),
// doubled per receive, the message would spend its five receives in about two and a half minutes.
// So the hiding starts from pauseMax (or the pause, if longer) and doubles per earlier receive, at
// most maxDeferDoublings times: 1 m, 2 m, 4 m, then 8 m. A message failed by an outage on every
// receive thus reaches its fifth receive at least 7 minutes after its first, and its sixth (where
// the default redrive policy dead-letters it) at least 15 minutes after it, whatever the pauses.
// That schedule is not capped by maxDelay (MaxBackoff, which bounds retries), only by SQS's
// 12 h; a longer pause, doubled, is capped by maxDelay.
func deferDelay(receives int, pause, maxDelay time.Duration) time.Duration {
	d := pause
	for i := 1; i < receives && i <= maxDeferDoublings && d < maxDelay; i++ {
		d *= 2
	}
	d = min(d, maxDelay)
	if receives > 1 {
		floor := pauseMax
		for i := 1; i < receives && i <= maxDeferDoublings; i++ {
			floor *= 2
		}
		d = max(d, min(floor, maxVisibility))
	}
	return d
}

// visibilitySeconds rounds a duration up to whole seconds within SQS's 0..12h.
func visibilitySeconds(d time.Duration) int32 {
	d = min(max(d, 0), maxVisibility)
	return int32((d + time.Second - 1) / time.Second)
}
