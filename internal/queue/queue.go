// Package queue builds intake's SQS client (NewClient: endpoint and response timeout) and holds the
// SQS knowledge shared by the consumer, `intake replay` and the local stack's bootstrap: creating a
// queue with its redrive policy (Ensure), reading a queue's counts and redrive policy (ReadInfo,
// ParseRedrivePolicy), the message attributes the consumer adds to what it dead-letters (Attr*),
// and recognising a missing queue (IsNonExistentQueue). The ingress only sends messages and needs
// none of it.
package queue

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/smithy-go"

	"github.com/intakehq/intake/internal/config"
	"github.com/intakehq/intake/internal/objstore"
)

// NewClient returns an SQS client for the configured endpoint; its requests wait at most
// objstore.SQSResponseTimeout for an answer (longer than any long poll).
func NewClient(awsCfg aws.Config, c config.AWS) *sqs.Client {
	return sqs.NewFromConfig(awsCfg, func(o *sqs.Options) {
		o.HTTPClient = objstore.WithResponseTimeout(o.HTTPClient, objstore.SQSResponseTimeout)
		if c.SQSEndpoint != "" {
			o.BaseEndpoint = aws.String(c.SQSEndpoint)
		}
	})
}

// CheckQueue verifies that the queue exists (GetQueueAttributes).
func CheckQueue(ctx context.Context, client *sqs.Client, url string) error {
	_, err := client.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{
		QueueUrl:       aws.String(url),
		AttributeNames: []types.QueueAttributeName{types.QueueAttributeNameApproximateNumberOfMessages},
	})
	if err != nil {
		return fmt.Errorf("get attributes of queue %s: %w", url, err)
	}
	return nil
}

// IsNonExistentQueue reports whether err says the queue does not exist, in either of the forms
// servers use (the typed error, or the legacy AWS.SimpleQueueService.NonExistentQueue code).
func IsNonExistentQueue(err error) bool {
	var typed *types.QueueDoesNotExist
	if errors.As(err, &typed) {
		return true
	}
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) {
		code := apiErr.ErrorCode()
		return code == "AWS.SimpleQueueService.NonExistentQueue" || strings.HasSuffix(code, "QueueDoesNotExist")
	}
	return false
}

// Spec describes a queue to create.
type Spec struct {
	// Name is the queue name.
	Name string
	// Visibility is the default visibility timeout (0: the server's default).
	Visibility time.Duration
	// DLQARN, when set, adds a redrive policy to that dead-letter queue.
	DLQARN string
	// MaxReceiveCount is the redrive threshold (default 5).
	MaxReceiveCount int
}

// Ensure creates the queue if it does not exist (CreateQueue is idempotent for equal attributes)
// and returns its URL and ARN.
func Ensure(ctx context.Context, client *sqs.Client, s Spec) (url, arn string, err error) {
	attrs := map[string]string{}
	if s.Visibility > 0 {
		attrs[string(types.QueueAttributeNameVisibilityTimeout)] = strconv.Itoa(int(s.Visibility / time.Second))
	}
	if s.DLQARN != "" {
		attrs[string(types.QueueAttributeNameRedrivePolicy)] = redrivePolicyJSON(RedrivePolicy{DLQARN: s.DLQARN, MaxReceiveCount: cmp.Or(s.MaxReceiveCount, 5)})
	}
	out, err := client.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(s.Name), Attributes: attrs})
	if err != nil {
		return "", "", fmt.Errorf("create queue %s: %w", s.Name, err)
	}
	url = aws.ToString(out.QueueUrl)
	got, err := client.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{
		QueueUrl:       out.QueueUrl,
		AttributeNames: []types.QueueAttributeName{types.QueueAttributeNameQueueArn},
	})
	if err != nil {
		return "", "", fmt.Errorf("get arn of queue %s: %w", s.Name, err)
	}
	return url, got.Attributes[string(types.QueueAttributeNameQueueArn)], nil
}
