package consumer

import (
	"context"
	"sync"
	"time"
)

// heartbeat extends a message's visibility by Visibility every Visibility/2 while it is processed,
// until its context ends (MessageTimeout, shutdown): a message whose processing hangs past its
// deadline is not kept invisible. A message that finishes sooner costs one timer and no call.
type heartbeat struct {
	c     *Consumer
	ctx   context.Context
	d     *delivery
	every time.Duration

	mu      sync.Mutex
	timer   *time.Timer
	stopped bool
	beating sync.WaitGroup
}

func (c *Consumer) startHeartbeat(ctx context.Context, d *delivery) *heartbeat {
	h := &heartbeat{c: c, ctx: ctx, d: d, every: c.cfg.Visibility / 2}
	h.mu.Lock()
	h.timer = time.AfterFunc(h.every, h.beat)
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

	if err := h.c.setVisibility(h.ctx, h.d, h.c.cfg.Visibility); err != nil {
		if h.ctx.Err() == nil {
			h.c.log.WarnContext(h.ctx, "heartbeat failed; the message may be delivered again while it is processed", "err", err)
		}
	} else {
		h.c.m.heartbeats.Inc()
		h.c.log.DebugContext(h.ctx, "heartbeat: visibility extended", "by", h.c.cfg.Visibility.String())
	}

	h.mu.Lock()
	if !h.stopped && h.ctx.Err() == nil {
		h.timer.Reset(h.every)
	}
	h.mu.Unlock()
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
