package consumer

import (
	"context"
	"errors"
	"strings"
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
