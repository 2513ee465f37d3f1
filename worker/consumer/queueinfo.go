package consumer

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
)

// refreshQueueInfo reads the main queue's redrive policy and depth, and the DLQ's depth. Failures
// are logged: the receivers report an unreachable queue on their own.
func (c *Consumer) refreshQueueInfo(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	attrs, err := c.queueAttributes(ctx, c.cfg.QueueURL, types.QueueAttributeNameRedrivePolicy)
	if err != nil {
		c.log.Warn("could not read the queue's attributes", "err", err)
		return
	}
	c.setDepth("main", attrs)
	rp, err := parseRedrive(attrs[string(types.QueueAttributeNameRedrivePolicy)])
	if err != nil {
		c.log.Warn("unreadable redrive policy", "err", err)
	}
	c.redrive.Store(rp)
	c.redriveKnown.Store(true)
	if rp == nil && c.cfg.DLQURL == "" && c.warnedNoRedrive.CompareAndSwap(false, true) {
		c.log.Warn("the queue has no redrive policy and no dead-letter queue URL is configured: permanently failing messages are hidden for MaxBackoff again and again until the queue's retention drops them",
			"max_backoff", c.cfg.MaxBackoff.String())
	}
	dlq := c.cfg.DLQURL
	if dlq == "" && rp != nil {
		dlq = c.dlqURLFromARN(ctx, rp.dlqARN)
	}
	if dlq == "" {
		return
	}
	attrs, err = c.queueAttributes(ctx, dlq)
	if err != nil {
		c.log.Warn("could not read the dead-letter queue's attributes", "err", err)
		return
	}
	c.setDepth("dlq", attrs)
}

func (c *Consumer) queueAttributes(ctx context.Context, url string, extra ...types.QueueAttributeName) (map[string]string, error) {
	names := append([]types.QueueAttributeName{
		types.QueueAttributeNameApproximateNumberOfMessages,
		types.QueueAttributeNameApproximateNumberOfMessagesNotVisible,
	}, extra...)
	out, err := c.cfg.Client.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: aws.String(url), AttributeNames: names})
	if err != nil {
		return nil, fmt.Errorf("get attributes of queue %s: %w", url, err)
	}
	return out.Attributes, nil
}

func (c *Consumer) setDepth(queue string, attrs map[string]string) {
	for state, name := range map[string]types.QueueAttributeName{
		"visible":  types.QueueAttributeNameApproximateNumberOfMessages,
		"inflight": types.QueueAttributeNameApproximateNumberOfMessagesNotVisible,
	} {
		if v, err := strconv.ParseFloat(attrs[string(name)], 64); err == nil {
			c.m.depth.WithLabelValues(queue, state).Set(v)
		}
	}
}

// dlqURLFromARN resolves the DLQ named by the redrive policy (for the depth gauges only).
func (c *Consumer) dlqURLFromARN(ctx context.Context, arn string) string {
	name := arn[strings.LastIndexByte(arn, ':')+1:]
	if name == "" {
		return ""
	}
	out, err := c.cfg.Client.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: aws.String(name)})
	if err != nil {
		c.log.Debug("could not resolve the dead-letter queue of the redrive policy", "arn", arn, "err", err)
		return ""
	}
	return aws.ToString(out.QueueUrl)
}

// parseRedrive reads a RedrivePolicy attribute; "" is no policy. maxReceiveCount may be a number
// or a string.
func parseRedrive(raw string) (*redrivePolicy, error) {
	if raw == "" {
		return nil, nil
	}
	var p struct {
		DeadLetterTargetArn string      `json:"deadLetterTargetArn"`
		MaxReceiveCount     json.Number `json:"maxReceiveCount"`
	}
	if err := json.Unmarshal([]byte(raw), &p); err != nil {
		return nil, fmt.Errorf("parse redrive policy %q: %w", raw, err)
	}
	n, err := strconv.Atoi(p.MaxReceiveCount.String())
	if err != nil || n < 1 || p.DeadLetterTargetArn == "" {
		return nil, fmt.Errorf("redrive policy %q: want deadLetterTargetArn and a positive maxReceiveCount", raw)
	}
	return &redrivePolicy{dlqARN: p.DeadLetterTargetArn, maxReceiveCount: n}, nil
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
