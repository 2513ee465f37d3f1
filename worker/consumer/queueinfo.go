package consumer

import (
	"context"
	"net/url"
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
	rp := info.Redrive
	if err != nil {
		// A policy the consumer cannot read is not the absence of one: what it knew stays (nothing,
		// at start), and it is read again at the next refresh.
		rp = c.redrive.Load()
		msg := "the queue's redrive policy cannot be parsed; keeping what was known of it"
		if c.warnedRedriveParse.CompareAndSwap(false, true) {
			c.log.Warn(msg, "err", err, "known", c.redriveKnown.Load(), "redrive_policy", rp != nil)
		} else {
			c.log.Debug(msg, "err", err)
		}
	} else {
		c.warnedRedriveParse.Store(false)
		c.redrive.Store(rp)
		c.redriveKnown.Store(true)
		c.warnNoRedrive(rp)
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

// warnNoRedrive warns, once, when the queue has no redrive policy (rp nil): without a DLQURL,
// nothing moves a poison message anywhere; with one, the consumer gives messages up itself.
func (c *Consumer) warnNoRedrive(rp *queue.RedrivePolicy) {
	if rp != nil || !c.warnedNoRedrive.CompareAndSwap(false, true) {
		return
	}
	if c.cfg.DLQURL == "" {
		c.log.Warn("the queue has no redrive policy and no dead-letter queue URL is configured: permanently failing messages are hidden for MaxBackoff again and again until the queue's retention drops them",
			"max_backoff", c.cfg.MaxBackoff.String())
		return
	}
	c.log.Warn("the queue has no redrive policy: the consumer sends to the dead-letter queue itself a message that failed for its own reason on its fifth receive or later (reason retries_exhausted; the receives an outage deferred count, but an outage alone never gives a message up); a redrive policy on the queue is preferred",
		"dlq_url", c.cfg.DLQURL, "give_up_receives", giveUpReceives)
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
	in := &sqs.GetQueueUrlInput{QueueName: aws.String(name)}
	// arn:aws:sqs:region:account:name. A DLQ in another account than the queue's is looked up
	// there: by its name alone, GetQueueUrl would find a queue of that name in the caller's own
	// account, and the gauges would show another queue.
	if parts := strings.Split(arn, ":"); len(parts) == 6 && parts[4] != "" && parts[4] != accountOf(c.cfg.QueueURL) {
		in.QueueOwnerAWSAccountId = aws.String(parts[4])
	}
	out, err := c.cfg.Client.GetQueueUrl(ctx, in)
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

// accountOf returns the account of an SQS queue URL (https://sqs.region.amazonaws.com/account/name:
// its path's first segment), "" when it has none.
func accountOf(queueURL string) string {
	u, err := url.Parse(queueURL)
	if err != nil {
		return ""
	}
	account, _, _ := strings.Cut(strings.TrimPrefix(u.Path, "/"), "/")
	return account
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
