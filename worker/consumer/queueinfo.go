package consumer

import (
	"context"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/intakehq/intake/internal/queue"
)

// refreshQueueInfo reads the main queue's redrive policy and depth, and the DLQ's depth. Failures
// are logged: the receivers report an unreachable queue on their own.
func (c *Consumer) refreshQueueInfo(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	info, err := queue.ReadInfo(ctx, c.cfg.Client, c.cfg.QueueURL, true)
	if err != nil && info.Output == nil {
		c.log.Warn("could not read the queue's attributes", "err", err)
		return
	}
	c.setDepth("main", info.Counts)
	if err != nil {
		c.log.Warn("unreadable redrive policy", "err", err)
	}
	rp := info.Redrive
	c.redrive.Store(rp)
	c.redriveKnown.Store(true)
	if rp == nil && c.cfg.DLQURL == "" && c.warnedNoRedrive.CompareAndSwap(false, true) {
		c.log.Warn("the queue has no redrive policy and no dead-letter queue URL is configured: permanently failing messages are hidden for MaxBackoff again and again until the queue's retention drops them",
			"max_backoff", c.cfg.MaxBackoff.String())
	}
	dlq := c.cfg.DLQURL
	if dlq == "" && rp != nil {
		dlq = c.dlqURLFromARN(ctx, rp.DLQARN)
	}
	if dlq == "" {
		return
	}
	dinfo, err := queue.ReadInfo(ctx, c.cfg.Client, dlq, false)
	if err != nil {
		c.log.Warn("could not read the dead-letter queue's attributes", "err", err)
		return
	}
	c.setDepth("dlq", dinfo.Counts)
}

func (c *Consumer) setDepth(queue string, n queue.Counts) {
	c.m.depth.WithLabelValues(queue, "visible").Set(float64(n.Visible))
	c.m.depth.WithLabelValues(queue, "inflight").Set(float64(n.InFlight))
}

// dlqURLFromARN resolves the DLQ named by the redrive policy (for the depth gauges only). The
// first failure is logged as a warning (sqs:GetQueueUrl denied, a DLQ in another account), the
// next ones, every DepthInterval, at debug.
func (c *Consumer) dlqURLFromARN(ctx context.Context, arn string) string {
	name := arn[strings.LastIndexByte(arn, ':')+1:]
	if name == "" {
		return ""
	}
	out, err := c.cfg.Client.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: aws.String(name)})
	if err != nil {
		msg := "could not resolve the dead-letter queue of the redrive policy: no depth gauges for it (set INTAKE_DLQ_URL, or grant sqs:GetQueueUrl)"
		if c.warnedDLQLookup.CompareAndSwap(false, true) {
			c.log.Warn(msg, "arn", arn, "err", err)
		} else {
			c.log.Debug(msg, "arn", arn, "err", err)
		}
		return ""
	}
	return aws.ToString(out.QueueUrl)
}

// pollDepth refreshes the queue information every DepthInterval until ctx ends.
func (c *Consumer) pollDepth(ctx context.Context) {
	t := time.NewTicker(c.cfg.DepthInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			c.refreshQueueInfo(ctx)
		}
	}
}
