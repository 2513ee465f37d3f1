package consumer_test

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/intakehq/intake/internal/telemetry"
	"github.com/intakehq/intake/worker/consumer"
)

// testWriter sends log lines to the test log.
type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// started is a running consumer.
type started struct {
	c      *consumer.Consumer
	reg    *prometheus.Registry
	cancel context.CancelFunc
	done   chan struct{} // closed when Run returned
	err    error         // Run's result
}

// stop cancels the consumer's context (SIGTERM) and returns Run's result.
func (s *started) stop(t testing.TB) error {
	t.Helper()
	s.cancel()
	select {
	case <-s.done:
		return s.err
	case <-time.After(time.Minute):
		t.Fatal("consumer did not stop within a minute")
		return nil
	}
}

// start builds a consumer from cfg (with test defaults for the unset fields) and runs it until the
// test ends or stop is called.
func start(t testing.TB, cfg consumer.Config) *started {
	t.Helper()
	reg := prometheus.NewRegistry()
	if cfg.Registerer == nil {
		cfg.Registerer = reg
	}
	if cfg.Log == nil {
		cfg.Log = telemetry.NewLogger(testWriter{t}, "text", "info")
	}
	if cfg.WaitTime == 0 {
		// kumo hands a message whose visibility expired only to a receive that starts after it did:
		// short long-polls keep the tests quick.
		cfg.WaitTime = time.Second
	}
	cfg.Visibility = max(cfg.Visibility, time.Second)
	c, err := consumer.New(cfg)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	s := &started{c: c, reg: reg, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		s.err = c.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-s.done:
		case <-time.After(time.Minute):
			t.Error("consumer did not stop within a minute")
		}
	})
	return s
}

// send puts bodies on the queue and returns their message ids in order.
func send(t testing.TB, client *sqs.Client, url string, bodies ...string) []string {
	t.Helper()
	ids := make([]string, 0, len(bodies))
	for start := 0; start < len(bodies); start += 10 {
		end := min(start+10, len(bodies))
		entries := make([]types.SendMessageBatchRequestEntry, 0, end-start)
		for i, b := range bodies[start:end] {
			entries = append(entries, types.SendMessageBatchRequestEntry{Id: aws.String(strconv.Itoa(i)), MessageBody: aws.String(b)})
		}
		out, err := client.SendMessageBatch(context.Background(), &sqs.SendMessageBatchInput{QueueUrl: aws.String(url), Entries: entries})
		require.NoError(t, err)
		require.Empty(t, out.Failed)
		byID := map[string]string{}
		for _, s := range out.Successful {
			byID[aws.ToString(s.Id)] = aws.ToString(s.MessageId)
		}
		for i := range entries {
			ids = append(ids, byID[strconv.Itoa(i)])
		}
	}
	return ids
}

// depth returns the visible and in-flight counts of a queue.
func depth(t testing.TB, client *sqs.Client, url string) (visible, inflight int) {
	t.Helper()
	out, err := client.GetQueueAttributes(context.Background(), &sqs.GetQueueAttributesInput{
		QueueUrl: aws.String(url),
		AttributeNames: []types.QueueAttributeName{
			types.QueueAttributeNameApproximateNumberOfMessages,
			types.QueueAttributeNameApproximateNumberOfMessagesNotVisible,
		},
	})
	require.NoError(t, err)
	visible, _ = strconv.Atoi(out.Attributes[string(types.QueueAttributeNameApproximateNumberOfMessages)])
	inflight, _ = strconv.Atoi(out.Attributes[string(types.QueueAttributeNameApproximateNumberOfMessagesNotVisible)])
	return visible, inflight
}

// receiveAll long-polls url until a poll of wait returns nothing, deleting what it receives.
func receiveAll(t testing.TB, client *sqs.Client, url string, wait time.Duration) []types.Message {
	t.Helper()
	var all []types.Message
	for {
		out, err := client.ReceiveMessage(context.Background(), &sqs.ReceiveMessageInput{
			QueueUrl: aws.String(url), MaxNumberOfMessages: 10, WaitTimeSeconds: int32(wait / time.Second),
			VisibilityTimeout: 30, MessageAttributeNames: []string{"All"},
			MessageSystemAttributeNames: []types.MessageSystemAttributeName{types.MessageSystemAttributeNameAll},
		})
		require.NoError(t, err)
		if len(out.Messages) == 0 {
			return all
		}
		all = append(all, out.Messages...)
		for _, m := range out.Messages {
			_, err := client.DeleteMessage(context.Background(), &sqs.DeleteMessageInput{QueueUrl: aws.String(url), ReceiptHandle: m.ReceiptHandle})
			require.NoError(t, err)
		}
	}
}

// recorder is a test Processor's log of calls.
type recorder struct {
	mu        sync.Mutex
	calls     map[string]int       // body -> calls
	committed map[string]int       // body -> successful calls
	attempts  map[string][]attempt // body -> each call
	total     atomic.Int64
}

type attempt struct {
	at       time.Time
	receives int
	msgID    string
}

func newRecorder() *recorder {
	return &recorder{calls: map[string]int{}, committed: map[string]int{}, attempts: map[string][]attempt{}}
}

func (r *recorder) call(ctx context.Context, msgID string, body []byte) {
	m, _ := consumer.FromContext(ctx)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls[string(body)]++
	r.attempts[string(body)] = append(r.attempts[string(body)], attempt{at: time.Now(), receives: m.ReceiveCount, msgID: msgID})
	r.total.Add(1)
}

func (r *recorder) commit(body []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.committed[string(body)]++
}

func (r *recorder) snapshot() (calls, committed map[string]int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	calls, committed = map[string]int{}, map[string]int{}
	for k, v := range r.calls {
		calls[k] = v
	}
	for k, v := range r.committed {
		committed[k] = v
	}
	return calls, committed
}

func (r *recorder) attemptsOf(body string) []attempt {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]attempt(nil), r.attempts[body]...)
}

// countingClient decorates the real client to count ReceiveMessage calls.
type countingClient struct {
	consumer.Client
	receives atomic.Int64
}

func (c *countingClient) ReceiveMessage(ctx context.Context, in *sqs.ReceiveMessageInput, optFns ...func(*sqs.Options)) (*sqs.ReceiveMessageOutput, error) {
	c.receives.Add(1)
	return c.Client.ReceiveMessage(ctx, in, optFns...)
}
