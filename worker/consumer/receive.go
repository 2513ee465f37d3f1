package consumer

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/intakehq/intake/internal/queue"
	"github.com/intakehq/intake/internal/telemetry"
)

// receive is one long-poll loop; the workers process the messages it receives. It starts no poll
// once ctx has ended; a poll runs under pollCtx, which outlives ctx by Run's pollBound.
func (c *Consumer) receive(ctx, pollCtx context.Context, id int) {
	log := c.log.With("receiver", id)
	errBackoff := pauseMin
	for ctx.Err() == nil {
		pass, err := c.gate.wait(ctx)
		if err != nil {
			return
		}
		n := c.acquire(ctx, maxBatch)
		if n == 0 {
			return
		}
		if ctx.Err() != nil {
			// acquire may hand out slots as ctx ends (the gather wait, or select's choice): no
			// poll starts after the shutdown began.
			c.releaseSlots(n)
			return
		}
		if !c.gate.valid(pass) {
			// A pause began while this receiver waited for free workers.
			c.releaseSlots(n)
			continue
		}
		out, err := c.receiveMessages(pollCtx, n)
		if err != nil {
			c.releaseSlots(n)
			if ctx.Err() != nil {
				return
			}
			c.m.receiveErrors.Inc()
			c.receiving.failure(c.now(), err)
			d := jitter(errBackoff)
			log.Warn("receive failed; backing off", "err", err, "backoff", d.String())
			errBackoff = min(errBackoff*2, pauseMax)
			if !c.sleep(ctx, d) {
				return
			}
			continue
		}
		received := c.now()
		c.receiving.success()
		errBackoff = pauseMin
		// A server that returns more messages than asked for: only n worker slots are held, so the
		// extra ones are returned to the queue at once.
		msgs, extra := out.Messages, []types.Message(nil)
		if len(msgs) > n {
			msgs, extra = msgs[:n], msgs[n:]
		}
		c.releaseSlots(n - len(msgs))
		c.m.received.Add(float64(len(msgs)))
		if len(msgs) > 0 {
			c.m.receiveSize.Observe(float64(len(msgs)))
		}
		// A pause under way, begun during the long poll: these messages would fail too. They are
		// hidden until the next check of the dependency instead of being processed. A pause that
		// began and ended during the poll does not stop them.
		admitted, ok := c.gate.readmit(pass)
		for _, msg := range msgs {
			d := newDelivery(msg, admitted.at, received)
			d.epoch = admitted.epoch
			c.track(d)
			c.dispatch(d, !ok)
		}
		// Only then the messages to settle without processing them: the dispatched ones' visibility
		// is running, and their heartbeat counts from the receive.
		settling := c.reportChecksumFailures(ctx, log, out)
		if len(extra) > 0 {
			c.returnExtra(ctx, log, n, extra)
		}
		settling.Wait()
	}
}

// reportChecksumFailures logs and counts the messages of a receive whose digests did not match
// (queue.ChecksumFailures: reported by queue.Lean, the daemon's client). A message whose body did
// not match is not in the answer, and is not processed: it is retried like a failed message (its
// visibility set to the retry backoff, so that a body damaged on every receive does not come back
// at once), and its receives count towards the redrive policy. With INTAKE_DLQ_URL and a queue
// known to have no redrive policy, one damaged on giveUpReceives receives is not a network
// accident: it is sent to the dead-letter queue with the reason checksum_mismatch (the queue would
// otherwise keep it until its retention ends). With a redrive policy (or while the consumer does
// not know whether there is one) it is left to the policy, which moves the message as stored
// rather than the damaged copy received. A message whose attributes alone did not match is
// processed: its body matched, and the body is all the Processor gets (its attributes are only
// copied into the dead-letter queue when it fails for good).
//
// The damaged messages are settled concurrently, each within 2 × callTimeout, and within 2 ×
// shutdownCallTimeout of the shutdown's beginning; the returned group ends when they all are.
func (c *Consumer) reportChecksumFailures(ctx context.Context, log *slog.Logger, out *sqs.ReceiveMessageOutput) *sync.WaitGroup {
	var settling sync.WaitGroup
	bound := 2 * callTimeout
	if ctx.Err() != nil {
		bound = 2 * shutdownCallTimeout // the shutdown's budget is short
	}
	for _, f := range queue.ChecksumFailures(out.ResultMetadata) {
		c.m.checksumMismatch.WithLabelValues(f.Digest).Inc()
		if f.Digest != queue.DigestBody {
			log.Warn("received a message whose attributes do not match their MD5OfMessageAttributes; processing it (its body matched)",
				"message_id", f.MessageID, "err", f.Err)
			continue
		}
		now := time.Now()
		d := newDelivery(f.Message, now, now)
		// Settled by the receiver, after the batch's other messages were dispatched: not cut at once
		// by a shutdown that began during the poll, and bounded, so that a full delete queue
		// (deletes failing) or a slow SQS cannot hold the receiver, or the shutdown, for long.
		mctx, cancel := context.WithTimeout(telemetry.WithAttrs(context.WithoutCancel(ctx), slog.String("message_id", d.id)), bound)
		// A shutdown that begins meanwhile leaves it 2 × shutdownCallTimeout at most.
		stopCut := context.AfterFunc(ctx, func() { time.AfterFunc(2*shutdownCallTimeout, cancel) })
		cause := checksumError{f.Err}
		giveUp := c.cfg.DLQURL != "" && d.receives >= giveUpReceives && c.noRedrive()
		if !giveUp {
			log.Warn("received a message whose body does not match its MD5OfBody; not processing it",
				"message_id", f.MessageID, "receive_count", d.receives, "err", f.Err)
		}
		settling.Go(func() {
			defer cancel()
			defer stopCut()
			if giveUp {
				c.deadLetter(mctx, d, cause)
				return
			}
			c.retry(mctx, d, cause)
		})
	}
	return &settling
}

// checksumError is the failure of a message whose body did not match its MD5OfBody.
type checksumError struct{ err error }

func (e checksumError) Error() string { return "body checksum: " + e.err.Error() }
func (e checksumError) Unwrap() error { return e.err }

// DeadLetterReason labels it in intake_messages_dead_lettered_total.
func (checksumError) DeadLetterReason() string { return "checksum_mismatch" }

// returnExtra makes visible again at once the messages a receive returned beyond the asked-for
// count (ChangeMessageVisibility 0), within callTimeout in all, even if ctx has ended.
func (c *Consumer) returnExtra(ctx context.Context, log *slog.Logger, asked int, extra []types.Message) {
	ids := make([]string, len(extra))
	for i, m := range extra {
		ids[i] = aws.ToString(m.MessageId)
	}
	log.Warn("the queue returned more messages than asked for; returning the extra ones to it unprocessed",
		"asked", asked, "returned", asked+len(extra), "extra_message_ids", ids)
	timeout := callTimeout
	if ctx.Err() != nil {
		timeout = shutdownCallTimeout // the shutdown's budget is short
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
	defer cancel()
	for _, m := range extra {
		d := newDelivery(m, time.Time{}, time.Time{})
		mctx := telemetry.WithAttrs(cctx, slog.String("message_id", d.id))
		c.lastReceiveLogged(mctx, d, "returned unprocessed (received beyond the asked-for count)", errReleased, "visible_in", 0)
		if err := c.setVisibility(mctx, d, 0); err != nil {
			log.Warn("could not return an extra message to the queue; it returns after its visibility timeout",
				"message_id", d.id, "err", err)
		}
	}
}

// receiveMessages calls ReceiveMessage for up to n messages, bounded by the long poll plus
// receiveMargin so that a server that never answers does not hold the receiver.
func (c *Consumer) receiveMessages(ctx context.Context, n int) (*sqs.ReceiveMessageOutput, error) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.WaitTime+receiveMargin)
	defer cancel()
	return c.cfg.Client.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{
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

func newDelivery(msg types.Message, polled, received time.Time) *delivery {
	d := &delivery{
		msg:      msg,
		id:       aws.ToString(msg.MessageId),
		handle:   aws.ToString(msg.ReceiptHandle),
		polled:   polled,
		received: received,
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

// receiveHealth counts the receives that failed in a row, across the receivers, for Ready.
type receiveHealth struct {
	mu     sync.Mutex
	failed int       // receives failed since the last one that succeeded
	since  time.Time // when the first of them failed
	last   error     // the last one's error
}

func (r *receiveHealth) failure(now time.Time, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.failed == 0 {
		r.since = now
	}
	r.failed++
	r.last = err
}

func (r *receiveHealth) success() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.failed, r.last = 0, nil
}

// check fails once at least limit receives failed in a row.
func (r *receiveHealth) check(limit int) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.failed < limit {
		return nil
	}
	return fmt.Errorf("consumer: the last %d receives failed, since %s: %w", r.failed, r.since.UTC().Format(time.RFC3339), r.last)
}
