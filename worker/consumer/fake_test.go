package consumer

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/require"
)

// fakeSQS is a Client for the package's own tests, whose answers the test scripts: for what kumo
// cannot be made to do (fail a call on demand, return more messages than asked for). Unscripted
// calls fail, except ChangeMessageVisibility and DeleteMessageBatch, which succeed.
type fakeSQS struct {
	mu sync.Mutex
	// receive answers ReceiveMessage (nil: wait for ctx to end).
	receive func(ctx context.Context, in *sqs.ReceiveMessageInput) (*sqs.ReceiveMessageOutput, error)
	// visibility answers ChangeMessageVisibility (nil: success).
	visibility func(ctx context.Context, in *sqs.ChangeMessageVisibilityInput) error
	// attributes answers GetQueueAttributes (nil: an error).
	attributes func(in *sqs.GetQueueAttributesInput) (*sqs.GetQueueAttributesOutput, error)
	// queueURL answers GetQueueUrl (nil: an error).
	queueURL func(in *sqs.GetQueueUrlInput) (*sqs.GetQueueUrlOutput, error)
	// deleteBatch answers DeleteMessageBatch (nil: every entry deleted). Only the entries it
	// reports successful are recorded as deleted.
	deleteBatch func(ctx context.Context, in *sqs.DeleteMessageBatchInput) (*sqs.DeleteMessageBatchOutput, error)
	// send answers SendMessage (nil: an error).
	send func(in *sqs.SendMessageInput) (*sqs.SendMessageOutput, error)

	visibilities []visibilityCall
	deleted      []string // receipt handles
}

// visibilityCall is one ChangeMessageVisibility call.
type visibilityCall struct {
	handle  string
	seconds int32
	bound   time.Duration // from the call's start to its context's deadline (0: none)
}

var errFake = errors.New("fake SQS: not scripted")

func (f *fakeSQS) ReceiveMessage(ctx context.Context, in *sqs.ReceiveMessageInput, _ ...func(*sqs.Options)) (*sqs.ReceiveMessageOutput, error) {
	f.mu.Lock()
	receive := f.receive
	f.mu.Unlock()
	if receive == nil {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	return receive(ctx, in)
}

func (f *fakeSQS) DeleteMessageBatch(ctx context.Context, in *sqs.DeleteMessageBatchInput, _ ...func(*sqs.Options)) (*sqs.DeleteMessageBatchOutput, error) {
	f.mu.Lock()
	deleteBatch := f.deleteBatch
	f.mu.Unlock()
	out := &sqs.DeleteMessageBatchOutput{}
	if deleteBatch != nil {
		var err error
		if out, err = deleteBatch(ctx, in); err != nil {
			return nil, err
		}
	} else {
		for _, e := range in.Entries {
			out.Successful = append(out.Successful, types.DeleteMessageBatchResultEntry{Id: e.Id})
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, s := range out.Successful {
		for _, e := range in.Entries {
			if aws.ToString(e.Id) == aws.ToString(s.Id) {
				f.deleted = append(f.deleted, aws.ToString(e.ReceiptHandle))
			}
		}
	}
	return out, nil
}

func (f *fakeSQS) ChangeMessageVisibility(ctx context.Context, in *sqs.ChangeMessageVisibilityInput, _ ...func(*sqs.Options)) (*sqs.ChangeMessageVisibilityOutput, error) {
	call := visibilityCall{handle: aws.ToString(in.ReceiptHandle), seconds: in.VisibilityTimeout}
	if dl, ok := ctx.Deadline(); ok {
		call.bound = time.Until(dl)
	}
	f.mu.Lock()
	f.visibilities = append(f.visibilities, call)
	visibility := f.visibility
	f.mu.Unlock()
	if visibility != nil {
		if err := visibility(ctx, in); err != nil {
			return nil, err
		}
	}
	return &sqs.ChangeMessageVisibilityOutput{}, nil
}

func (f *fakeSQS) SendMessage(_ context.Context, in *sqs.SendMessageInput, _ ...func(*sqs.Options)) (*sqs.SendMessageOutput, error) {
	if f.send == nil {
		return nil, errFake
	}
	return f.send(in)
}

func (f *fakeSQS) GetQueueAttributes(_ context.Context, in *sqs.GetQueueAttributesInput, _ ...func(*sqs.Options)) (*sqs.GetQueueAttributesOutput, error) {
	if f.attributes == nil {
		return nil, errFake
	}
	return f.attributes(in)
}

func (f *fakeSQS) GetQueueUrl(_ context.Context, in *sqs.GetQueueUrlInput, _ ...func(*sqs.Options)) (*sqs.GetQueueUrlOutput, error) {
	if f.queueURL == nil {
		return nil, errFake
	}
	return f.queueURL(in)
}

func (f *fakeSQS) visibilityCalls() []visibilityCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]visibilityCall(nil), f.visibilities...)
}

func (f *fakeSQS) deletedHandles() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.deleted...)
}

// syncBuffer is a bytes.Buffer safe for concurrent writers (the log of a running consumer).
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// newFakeConsumer builds a consumer over client with cfg's other settings (a Processor that
// succeeds, and a discarded log, when unset), logging at debug into the returned buffer.
func newFakeConsumer(t *testing.T, client *fakeSQS, cfg Config) (*Consumer, *syncBuffer) {
	t.Helper()
	logs := &syncBuffer{}
	cfg.Client = client
	if cfg.QueueURL == "" {
		cfg.QueueURL = "http://sqs.test/000000000000/q"
	}
	if cfg.Processor == nil {
		cfg.Processor = ProcessorFunc(func(context.Context, string, []byte) error { return nil })
	}
	cfg.Log = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	cfg.Registerer = prometheus.NewRegistry()
	c, err := New(cfg)
	require.NoError(t, err)
	return c, logs
}

// runFake runs c until the test ends, and waits for Run to return then.
func runFake(t *testing.T, c *Consumer) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			require.NoError(t, err)
		case <-time.After(time.Minute):
			t.Error("consumer did not stop within a minute")
		}
	})
}

// closeAcker closes a with the bound Run gives it when it has its whole budget.
func closeAcker(a *acker) { a.close(time.Now().Add(callTimeout + finalTimeout)) }

func counterValue(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	require.NoError(t, c.Write(&m))
	return m.GetCounter().GetValue()
}
