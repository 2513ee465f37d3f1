package consumer

import (
	"context"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
)

// receive is one long-poll loop; the workers process the messages it receives.
func (c *Consumer) receive(ctx context.Context, id int) {
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
		if !c.gate.valid(pass) {
			// A pause began while this receiver waited for free workers.
			c.releaseSlots(n)
			continue
		}
		out, err := c.receiveMessages(ctx, n)
		if err != nil {
			c.releaseSlots(n)
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
		c.m.received.Add(float64(len(out.Messages)))
		if len(out.Messages) > 0 {
			c.m.receiveSize.Observe(float64(len(out.Messages)))
		}
		// A pause that began during the long poll: these messages would fail too. They are hidden
		// until the next check of the dependency instead of being processed.
		paused := !c.gate.valid(pass)
		for _, msg := range out.Messages {
			d := newDelivery(msg, pass.at)
			c.track(d)
			c.dispatch(d, paused)
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

func newDelivery(msg types.Message, polled time.Time) *delivery {
	d := &delivery{
		msg:    msg,
		id:     aws.ToString(msg.MessageId),
		handle: aws.ToString(msg.ReceiptHandle),
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
