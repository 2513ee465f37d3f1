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
