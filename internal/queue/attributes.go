package queue

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
)

// Message attributes intake's consumer adds to a message it dead-letters itself (with
// INTAKE_DLQ_URL); `intake replay dlq` reads AttrSourceMessageID to recognise a message it moved.
const (
	// AttrDLQReason holds why the message failed for good.
	AttrDLQReason = "intake-dlq-reason"
	// AttrSourceMessageID holds the id of the message the consumer received.
	AttrSourceMessageID = "intake-source-message-id"
	// AttrReceiveCount holds how many times the consumer had received it.
	AttrReceiveCount = "intake-receive-count"
)

// AttributesGetter is the SQS call the helpers below make (*sqs.Client satisfies it).
type AttributesGetter interface {
	GetQueueAttributes(ctx context.Context, in *sqs.GetQueueAttributesInput, optFns ...func(*sqs.Options)) (*sqs.GetQueueAttributesOutput, error)
}

var _ AttributesGetter = (*sqs.Client)(nil)

// Counts are a queue's approximate message counts.
type Counts struct {
	// Visible messages can be received now.
	Visible int
	// InFlight messages were received and not yet deleted (not visible).
	InFlight int
	// Delayed messages are not visible yet because of a delay.
	Delayed int
}

// countAttributes are the attributes Counts reads.
var countAttributes = []types.QueueAttributeName{
	types.QueueAttributeNameApproximateNumberOfMessages,
	types.QueueAttributeNameApproximateNumberOfMessagesNotVisible,
	types.QueueAttributeNameApproximateNumberOfMessagesDelayed,
}

// Info is what one GetQueueAttributes call tells about a queue: its counts and, when asked for,
// its redrive policy.
type Info struct {
	Counts
	// Redrive is the queue's redrive policy (nil: none, or not asked for).
	Redrive *RedrivePolicy
	// Output is the call's output (for its metadata, e.g. the server's Date).
	Output *sqs.GetQueueAttributesOutput
}

// ReadInfo reads the counts of the queue at url and, with redrive, its redrive policy, in one
// GetQueueAttributes call.
func ReadInfo(ctx context.Context, c AttributesGetter, url string, redrive bool) (Info, error) {
	names := countAttributes
	if redrive {
		names = append(names[:len(names):len(names)], types.QueueAttributeNameRedrivePolicy)
	}
	out, err := c.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: aws.String(url), AttributeNames: names})
	if err != nil {
		return Info{}, fmt.Errorf("get attributes of queue %s: %w", url, err)
	}
	n := func(name types.QueueAttributeName) int {
		v, _ := strconv.Atoi(out.Attributes[string(name)])
		return v
	}
	info := Info{Output: out, Counts: Counts{
		Visible:  n(types.QueueAttributeNameApproximateNumberOfMessages),
		InFlight: n(types.QueueAttributeNameApproximateNumberOfMessagesNotVisible),
		Delayed:  n(types.QueueAttributeNameApproximateNumberOfMessagesDelayed),
	}}
	if redrive {
		info.Redrive, err = ParseRedrivePolicy(out.Attributes[string(types.QueueAttributeNameRedrivePolicy)])
		if err != nil {
			return info, fmt.Errorf("queue %s: %w", url, err)
		}
	}
	return info, nil
}

// RedrivePolicy is a queue's RedrivePolicy attribute: after MaxReceiveCount receives, SQS moves a
// message to the queue DLQARN.
type RedrivePolicy struct {
	// DLQARN is the dead-letter queue's ARN.
	DLQARN string
	// MaxReceiveCount is the receive count at which a message is moved.
	MaxReceiveCount int
}

// ParseRedrivePolicy reads a RedrivePolicy attribute; "" is no policy (nil). maxReceiveCount may be
// a number or a string (AWS writes a number, some emulators a string).
func ParseRedrivePolicy(raw string) (*RedrivePolicy, error) {
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
	return &RedrivePolicy{DLQARN: p.DeadLetterTargetArn, MaxReceiveCount: n}, nil
}

// redrivePolicyJSON is the RedrivePolicy attribute Ensure sets.
func redrivePolicyJSON(p RedrivePolicy) string {
	b, _ := json.Marshal(map[string]any{
		"deadLetterTargetArn": p.DLQARN,
		"maxReceiveCount":     strconv.Itoa(p.MaxReceiveCount),
	})
	return string(b)
}
