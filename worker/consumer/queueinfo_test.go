package consumer

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestDLQLookupFailureWarnsOnce: when the redrive policy's dead-letter queue cannot be resolved
// (sqs:GetQueueUrl denied), the first failure is a warning, the next ones are not repeated at
// that level.
func TestDLQLookupFailureWarnsOnce(t *testing.T) {
	t.Parallel()
	client := &fakeSQS{
		attributes: func(*sqs.GetQueueAttributesInput) (*sqs.GetQueueAttributesOutput, error) {
			return &sqs.GetQueueAttributesOutput{Attributes: map[string]string{
				string(types.QueueAttributeNameRedrivePolicy): `{"deadLetterTargetArn":"arn:aws:sqs:eu-west-1:123456789012:q-dlq","maxReceiveCount":5}`,
			}}, nil
		},
		queueURL: func(in *sqs.GetQueueUrlInput) (*sqs.GetQueueUrlOutput, error) {
			return nil, errors.New("AccessDenied: not authorized to perform sqs:GetQueueUrl on " + aws.ToString(in.QueueName))
		},
	}
	c, logs := newFakeConsumer(t, client, Config{})
	for range 3 {
		c.refreshQueueInfo(context.Background())
	}
	require.Equal(t, 5, c.redrive.Load().MaxReceiveCount)
	var warn, debug int
	for line := range strings.SplitSeq(logs.String(), "\n") {
		if !strings.Contains(line, "could not resolve the dead-letter queue of the redrive policy") {
			continue
		}
		assert.Contains(t, line, "sqs:GetQueueUrl on q-dlq")
		switch {
		case strings.Contains(line, "level=WARN"):
			warn++
		case strings.Contains(line, "level=DEBUG"):
			debug++
		}
	}
	assert.Equal(t, 1, warn, "warned once")
	assert.Equal(t, 2, debug, "then at debug")
}

// TestUnparsableRedrivePolicyKeepsWhatWasKnown: a RedrivePolicy the consumer cannot parse is not
// the absence of one: what was known of the policy stays (nothing, at start: the policy is still
// unknown), the parse error is logged, as a warning the first time, and no "no redrive policy"
// warning is given.
func TestUnparsableRedrivePolicyKeepsWhatWasKnown(t *testing.T) {
	t.Parallel()
	var policy atomic.Value
	client := &fakeSQS{attributes: func(*sqs.GetQueueAttributesInput) (*sqs.GetQueueAttributesOutput, error) {
		return &sqs.GetQueueAttributesOutput{Attributes: map[string]string{
			string(types.QueueAttributeNameRedrivePolicy): policy.Load().(string)}}, nil
	}}
	c, logs := newFakeConsumer(t, client, Config{DLQURL: "https://sqs.example/000000000000/dlq"})

	policy.Store(`{"deadLetterTargetArn":"arn:aws:sqs:eu-west-1:123456789012:q-dlq","maxReceiveCount":"five"}`)
	for range 2 {
		c.refreshQueueInfo(context.Background())
		assert.False(t, c.redriveKnown.Load(), "still unknown")
		assert.Nil(t, c.redrive.Load())
	}

	policy.Store(`{"deadLetterTargetArn":"arn:aws:sqs:eu-west-1:123456789012:q-dlq","maxReceiveCount":5}`)
	c.refreshQueueInfo(context.Background())
	require.True(t, c.redriveKnown.Load())
	require.Equal(t, 5, c.redrive.Load().MaxReceiveCount)

	policy.Store(`{not json`)
	c.refreshQueueInfo(context.Background())
	assert.True(t, c.redriveKnown.Load())
	require.NotNil(t, c.redrive.Load(), "the policy read before is kept")
	assert.Equal(t, 5, c.redrive.Load().MaxReceiveCount)

	var levels []string
	for line := range strings.SplitSeq(logs.String(), "\n") {
		if !strings.Contains(line, "the queue's redrive policy cannot be parsed") {
			continue
		}
		assert.Contains(t, line, "parse redrive policy", "the parse error is logged")
		levels = append(levels, line[strings.Index(line, "level="):][:len("level=DEBUG")])
	}
	assert.Equal(t, []string{"level=WARN ", "level=DEBUG", "level=WARN "}, levels,
		"a warning, then debug while it lasts; a warning again when it breaks again")
	assert.NotContains(t, logs.String(), "no redrive policy")
}

// TestDLQInAnotherAccountIsLookedUpThere: a redrive policy naming a dead-letter queue in another
// account than the queue's is resolved in that account (QueueOwnerAWSAccountId): by its name alone,
// GetQueueUrl answers with a queue of that name in the caller's own account, and the DLQ gauges
// showed that other queue. A DLQ in the queue's own account is looked up by name, as before.
func TestDLQInAnotherAccountIsLookedUpThere(t *testing.T) {
	t.Parallel()
	for account, owner := range map[string]*string{"111111111111": aws.String("111111111111"), "222222222222": nil} {
		var asked atomic.Pointer[sqs.GetQueueUrlInput]
		client := &fakeSQS{
			attributes: func(*sqs.GetQueueAttributesInput) (*sqs.GetQueueAttributesOutput, error) {
				return &sqs.GetQueueAttributesOutput{Attributes: map[string]string{
					string(types.QueueAttributeNameRedrivePolicy): `{"deadLetterTargetArn":"arn:aws:sqs:eu-west-1:` + account + `:events-dlq","maxReceiveCount":5}`,
				}}, nil
			},
			queueURL: func(in *sqs.GetQueueUrlInput) (*sqs.GetQueueUrlOutput, error) {
				asked.Store(in)
				return &sqs.GetQueueUrlOutput{QueueUrl: aws.String("https://sqs.eu-west-1.amazonaws.com/" + account + "/events-dlq")}, nil
			},
		}
		c, _ := newFakeConsumer(t, client, Config{QueueURL: "https://sqs.eu-west-1.amazonaws.com/222222222222/events"})
		c.refreshQueueInfo(context.Background())
		in := asked.Load()
		require.NotNil(t, in, account)
		assert.Equal(t, "events-dlq", aws.ToString(in.QueueName), account)
		assert.Equal(t, owner, in.QueueOwnerAWSAccountId, account)
	}
}
