package consumer

import (
	"context"
	"sync"
	"time"
)

// heartbeatRetryMax is the longest wait before retrying an extension that failed.
const heartbeatRetryMax = 2 * time.Second

// timer is what the heartbeat uses of a *time.Timer (tests drive a fake one).
type timer interface {
	Reset(d time.Duration) bool
	Stop() bool
}

// heartbeat extends a message's visibility by Visibility every Visibility/2 (the first time, half
// the visibility after the message's receipt) while it is processed,
// until its context ends (MessageTimeout, shutdown): a message whose processing hangs past its
// deadline is not kept invisible. A message that finishes sooner costs one timer and no call.
//
// An extension that fails is retried soon (a quarter of the interval, at most heartbeatRetryMax),
// as long as the visibility it would have extended still runs (visibleUntil: the message's receipt
// or its last successful extension, plus Visibility): waiting a whole interval would retry just
// as the message becomes visible again and another consumer receives it. Each call is bounded by
// half the interval (and callTimeout), so that a call that hangs leaves time for retries. Once the
// visibility has run out, the heartbeat goes back to the interval: the message may be delivered
// again, and an extension that succeeds still shortens that window. An extension refused for good
// (MessageNotInflight, ReceiptHandleIsInvalid, InvalidParameterValue) ends the heartbeat.
type heartbeat struct {
	c     *Consumer
	ctx   context.Context
	d     *delivery
	every time.Duration // the interval between extensions
	retry time.Duration // the wait before retrying a failed extension
	bound time.Duration // the bound of one call

	mu           sync.Mutex
	timer        timer
	stopped      bool
	beating      sync.WaitGroup
	visibleUntil time.Time // when the visibility runs out, as far as the consumer knows
	failures     int       // extensions failed since the last success
	lapsed       bool      // the lapse of the visibility was logged
}

func (c *Consumer) startHeartbeat(ctx context.Context, d *delivery) *heartbeat {
	every := c.cfg.Visibility / 2
	h := &heartbeat{
		c: c, ctx: ctx, d: d, every: every,
		retry: min(every/4, heartbeatRetryMax), bound: min(every/2, callTimeout),
	}
	// The visibility runs from the receive, not from now: a message whose processing began late
	// (its batch's receive settled other messages first, its worker was slow to take it) is
	// extended as soon as half of it has run, at once if that is past.
	now := c.now()
	received := d.received
	if received.IsZero() || received.After(now) {
		received = now // unknown: count from now
	}
	first := max(received.Add(every).Sub(now), 0)
	h.mu.Lock()
	h.visibleUntil = received.Add(c.cfg.Visibility)
	h.timer = c.afterFunc(first, h.beat)
	h.mu.Unlock()
	return h
}

func (h *heartbeat) beat() {
	h.mu.Lock()
	if h.stopped || h.ctx.Err() != nil {
		h.mu.Unlock()
		return
	}
	h.beating.Add(1)
	h.mu.Unlock()
	defer h.beating.Done()

	err := h.c.changeVisibility(h.ctx, h.d, h.c.cfg.Visibility, h.bound)
	now := h.c.now()

	h.mu.Lock()
	defer h.mu.Unlock()
	next := h.every
	switch {
	case err == nil:
		// SQS extended it at some moment during the call: counting from its end errs on the late
		// side, which only prolongs the quick retries of a later failure.
		h.visibleUntil = now.Add(h.c.cfg.Visibility)
		h.c.m.heartbeats.Inc()
		if h.failures > 0 {
			h.c.log.InfoContext(h.ctx, "heartbeat: visibility extended again after failed attempts", "failed_attempts", h.failures)
		} else {
			h.c.log.DebugContext(h.ctx, "heartbeat: visibility extended", "by", h.c.cfg.Visibility.String())
		}
		h.failures, h.lapsed = 0, false
	case h.ctx.Err() != nil:
		return // processing ended (settled, timed out, shut down): nothing to extend any more
	case visibilityGone(err):
		// The handle can no longer extend anything (the message was received again elsewhere after
		// its visibility ran out, or the handle is refused): retrying would fail the same way for
		// as long as the message is processed.
		h.failures++
		h.c.log.WarnContext(h.ctx, "heartbeat: the message's visibility can no longer be extended; it may be delivered again while it is processed",
			"err", err, "failed_attempts", h.failures)
		return
	case now.Before(h.visibleUntil):
		h.failures++
		next = h.retry
		left := h.visibleUntil.Sub(now)
		if h.failures == 1 {
			h.c.log.WarnContext(h.ctx, "heartbeat failed; retrying before the message's visibility runs out",
				"err", err, "retry_in", next.String(), "visible_for", left.String())
		} else {
			h.c.log.DebugContext(h.ctx, "heartbeat failed again", "err", err, "failed_attempts", h.failures,
				"retry_in", next.String(), "visible_for", left.String())
		}
	default:
		h.failures++
		if !h.lapsed {
			h.lapsed = true
			h.c.log.WarnContext(h.ctx, "heartbeat failed and the message's visibility has run out: it may be delivered again while it is processed",
				"err", err, "failed_attempts", h.failures)
		}
	}
	if !h.stopped && h.ctx.Err() == nil {
		h.timer.Reset(next)
	}
}

// stop stops the heartbeat and waits for an extension in progress, so that nothing extends the
// visibility after the message is settled.
func (h *heartbeat) stop() {
	h.mu.Lock()
	h.stopped = true
	h.timer.Stop()
	h.mu.Unlock()
	h.beating.Wait()
}
