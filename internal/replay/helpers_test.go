package replay

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/stretchr/testify/require"

	"github.com/intakehq/intake/internal/testkit"
)

// body returns the i-th test message body (an S3-event-like JSON document).
func body(i int) string {
	return fmt.Sprintf(`{"Records":[{"eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"b"},"object":{"key":"k/%05d","sequencer":"%016X"}}}]}`, i, i)
}

// attrs returns the i-th message's attributes: one of each data type.
func attrs(i int) map[string]types.MessageAttributeValue {
	return map[string]types.MessageAttributeValue{
		"idx":    {DataType: aws.String("Number"), StringValue: aws.String(strconv.Itoa(i))},
		"origin": {DataType: aws.String("String"), StringValue: aws.String("test-" + strconv.Itoa(i%7))},
		"blob":   {DataType: aws.String("Binary"), BinaryValue: []byte{byte(i), byte(i >> 8), 0xff}},
	}
}

// fill sends messages first..first+n-1 to url, with attributes.
func fill(t testing.TB, c *sqs.Client, url string, first, n int) {
	t.Helper()
	entries := make([]types.SendMessageBatchRequestEntry, 0, n)
	for i := first; i < first+n; i++ {
		entries = append(entries, types.SendMessageBatchRequestEntry{
			Id: aws.String(strconv.Itoa(i)), MessageBody: aws.String(body(i)), MessageAttributes: attrs(i),
		})
	}
	testkit.SendMessages(t, c, url, entries)
}

// requireSameAttrs checks that m carries the attributes of message i.
func requireSameAttrs(t testing.TB, i int, m types.Message) {
	t.Helper()
	want := attrs(i)
	require.Len(t, m.MessageAttributes, len(want), "message %d", i)
	for name, w := range want {
		g, ok := m.MessageAttributes[name]
		require.True(t, ok, "message %d lacks attribute %s", i, name)
		require.Equal(t, aws.ToString(w.DataType), aws.ToString(g.DataType), "message %d attribute %s", i, name)
		require.Equal(t, aws.ToString(w.StringValue), aws.ToString(g.StringValue), "message %d attribute %s", i, name)
		require.Equal(t, w.BinaryValue, g.BinaryValue, "message %d attribute %s", i, name)
	}
}

// faultySQS is the real SQS client with injected send failures: entries whose body is in fail get
// a Failed result without reaching the server (fails counts down per body; -1 fails forever).
// Everything else goes to the real server.
type faultySQS struct {
	SQSAPI
	mu    sync.Mutex
	fail  map[string]int
	calls int
}

func (f *faultySQS) SendMessageBatch(ctx context.Context, in *sqs.SendMessageBatchInput, opts ...func(*sqs.Options)) (*sqs.SendMessageBatchOutput, error) {
	f.mu.Lock()
	f.calls++
	var pass []types.SendMessageBatchRequestEntry
	var failed []types.BatchResultErrorEntry
	for _, e := range in.Entries {
		if n := f.fail[aws.ToString(e.MessageBody)]; n != 0 {
			if n > 0 {
				f.fail[aws.ToString(e.MessageBody)] = n - 1
			}
			failed = append(failed, types.BatchResultErrorEntry{Id: e.Id, Code: aws.String("InternalError"), Message: aws.String("injected")})
			continue
		}
		pass = append(pass, e)
	}
	f.mu.Unlock()
	out := &sqs.SendMessageBatchOutput{}
	if len(pass) > 0 {
		cp := *in
		cp.Entries = pass
		real, err := f.SQSAPI.SendMessageBatch(ctx, &cp, opts...)
		if err != nil {
			return nil, err
		}
		out = real
	}
	out.Failed = append(out.Failed, failed...)
	return out, nil
}

func fifoMessage(id string, sys map[string]string) types.Message {
	return types.Message{MessageId: aws.String(id), Body: aws.String("b"), Attributes: sys}
}

// kumoQueues returns kumo's client and a fresh queue with its dead-letter queue (redrive after 3
// receives, 30 s visibility), deleted when the test ends; it skips the test under -short.
func kumoQueues(t *testing.T) (*sqs.Client, testkit.Queues) {
	t.Helper()
	if testing.Short() {
		t.Skip("needs kumo")
	}
	c := testSQS()
	return c, testkit.Queue(t, c, 3, 30*time.Second)
}
