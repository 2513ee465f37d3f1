package testkit

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
)

// SendMessages sends entries to queueURL with SendMessageBatch, ten per call and eight calls at a
// time, and fails t if a call or an entry is refused. Entry ids must be unique among entries.
func SendMessages(t testing.TB, client *sqs.Client, queueURL string, entries []types.SendMessageBatchRequestEntry) {
	t.Helper()
	var next atomic.Int64
	var wg sync.WaitGroup
	var once sync.Once
	var first error
	for range 8 {
		wg.Go(func() {
			for {
				start := int(next.Add(10)) - 10
				if start >= len(entries) {
					return
				}
				batch := entries[start:min(start+10, len(entries))]
				out, err := client.SendMessageBatch(context.Background(), &sqs.SendMessageBatchInput{QueueUrl: aws.String(queueURL), Entries: batch})
				if err == nil && len(out.Failed) > 0 {
					err = fmt.Errorf("%d of %d entries refused: %s", len(out.Failed), len(batch), aws.ToString(out.Failed[0].Message))
				}
				if err != nil {
					once.Do(func() { first = err })
					return
				}
			}
		})
	}
	wg.Wait()
	if first != nil {
		t.Fatalf("testkit: send messages to %s: %v", queueURL, first)
	}
}
