package testkit

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
)

// SendMessages sends entries to queueURL with SendMessageBatch, ten per call and eight calls at a
// time, and fails t if a call or an entry is refused. Entry ids must be unique among entries.
func SendMessages(t testing.TB, client *sqs.Client, queueURL string, entries []types.SendMessageBatchRequestEntry) {
	t.Helper()
	err := InParallel((len(entries)+9)/10, 8, func(call int) error {
		batch := entries[call*10 : min(call*10+10, len(entries))]
		out, err := client.SendMessageBatch(context.Background(), &sqs.SendMessageBatchInput{QueueUrl: aws.String(queueURL), Entries: batch})
		if err == nil && len(out.Failed) > 0 {
			err = fmt.Errorf("%d of %d entries refused: %s", len(out.Failed), len(batch), aws.ToString(out.Failed[0].Message))
		}
		return err
	})
	if err != nil {
		t.Fatalf("testkit: send messages to %s: %v", queueURL, err)
	}
}

// InParallel runs f(0) … f(n-1) on the given number of goroutines and returns the first error
// (the goroutine that met it stops; the others finish their work).
func InParallel(n, goroutines int, f func(i int) error) error {
	var next atomic.Int64
	var wg sync.WaitGroup
	var once sync.Once
	var first error
	for range goroutines {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				if err := f(i); err != nil {
					once.Do(func() { first = err })
					return
				}
			}
		})
	}
	wg.Wait()
	return first
}

// drainTimeout bounds DrainQueue.
const drainTimeout = 2 * time.Minute

// DrainQueue receives and deletes everything in queueURL (message and system attributes
// included); it returns the messages by body and how many were received in all (duplicates
// included). It stops after two empty receives in a row, and fails t when a call fails (a
// receive is not retried, since a retried receive whose first answer was lost would hide that
// answer's messages for their visibility timeout and the drain would end without them) or when
// the queue is still not empty after drainTimeout (something keeps sending).
func DrainQueue(t testing.TB, client *sqs.Client, queueURL string) (map[string]types.Message, int) {
	t.Helper()
	ctx := context.Background()
	got := map[string]types.Message{}
	total, empty := 0, 0
	deadline := time.Now().Add(drainTimeout)
	for empty < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("testkit: drain %s: still receiving after %s (%d messages so far)", queueURL, drainTimeout, total)
		}
		out, err := client.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{
			QueueUrl: aws.String(queueURL), MaxNumberOfMessages: 10, VisibilityTimeout: 30, WaitTimeSeconds: 1,
			MessageAttributeNames:       []string{"All"},
			MessageSystemAttributeNames: []types.MessageSystemAttributeName{types.MessageSystemAttributeNameAll},
		}, func(o *sqs.Options) { o.RetryMaxAttempts = 1 })
		if err != nil {
			t.Fatalf("testkit: drain %s: %v", queueURL, err)
		}
		if len(out.Messages) == 0 {
			empty++
			continue
		}
		empty = 0
		dels := make([]types.DeleteMessageBatchRequestEntry, 0, len(out.Messages))
		for i, m := range out.Messages {
			total++
			got[aws.ToString(m.Body)] = m
			dels = append(dels, types.DeleteMessageBatchRequestEntry{Id: aws.String(strconv.Itoa(i)), ReceiptHandle: m.ReceiptHandle})
		}
		del, err := client.DeleteMessageBatch(ctx, &sqs.DeleteMessageBatchInput{QueueUrl: aws.String(queueURL), Entries: dels})
		if err == nil && len(del.Failed) > 0 {
			err = fmt.Errorf("%d of %d deletions refused: %s", len(del.Failed), len(dels), aws.ToString(del.Failed[0].Message))
		}
		if err != nil {
			t.Fatalf("testkit: drain %s: delete: %v", queueURL, err)
		}
	}
	return got, total
}
