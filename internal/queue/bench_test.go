package queue_test

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/intakehq/intake/internal/queue"
	"github.com/intakehq/intake/internal/testkit"
	"github.com/intakehq/intake/worker/consumer"
)

// benchMessages are preloaded for each round of BenchmarkReceiveDelete.
const benchMessages = 2000

// BenchmarkReceiveDelete measures the CPU this process spends per message on the consumer's hot
// path, against kumo: ReceiveMessage of up to 10 messages (with the attributes the consumer asks
// for) and DeleteMessageBatch of what it got, with the SDK client (sdk) and with queue.Lean (lean).
// Each round preloads benchMessages S3 event notifications (not measured), then receives and
// deletes them all; cpu-µs/msg is this process's user+system time (getrusage) over the measured
// part, per message. Run the two alternately, several times: kumo's own CPU is not counted, but it
// shares the machine.
func BenchmarkReceiveDelete(b *testing.B) {
	sdk, lean := newLean(b)
	entries := make([]types.SendMessageBatchRequestEntry, benchMessages)
	for i := range entries {
		body := testkit.S3Event("bench-bucket", fmt.Sprintf("uploads/2026/%06d.bin", i), `"d41d8cd98f00b204e9800998ecf8427e"`, 1<<20, i)
		entries[i] = types.SendMessageBatchRequestEntry{Id: aws.String(strconv.Itoa(i)), MessageBody: aws.String(body)}
	}
	for _, bc := range []struct {
		name   string
		client consumer.Client
	}{{"sdk", sdk}, {"lean", lean}} {
		b.Run(bc.name, func(b *testing.B) {
			q := testkit.Queue(b, sdk, 5, 5*time.Minute)
			var cpu time.Duration
			msgs := 0
			for range b.N {
				b.StopTimer()
				testkit.SendMessages(b, sdk, q.URL, entries)
				runtime.GC()
				b.StartTimer()
				before := cpuTime(b)
				msgs += receiveDelete(b, bc.client, q.URL, len(entries))
				cpu += cpuTime(b) - before
			}
			b.ReportMetric(float64(cpu.Microseconds())/float64(msgs), "cpu-µs/msg")
		})
	}
}

// BenchmarkReceiveDeleteCanned measures the same calls as BenchmarkReceiveDelete without a server:
// the HTTP client answers each request at once with a canned answer (ten S3 event notifications;
// all ten deleted), so that only the client's own work is measured, per message, free of the
// network and of kumo. Not a test of behaviour: the tests use kumo.
func BenchmarkReceiveDeleteCanned(b *testing.B) {
	var msgs []map[string]any
	for i := range 10 {
		body := testkit.S3Event("bench-bucket", fmt.Sprintf("uploads/2026/%06d.bin", i), `"d41d8cd98f00b204e9800998ecf8427e"`, 1<<20, i)
		msgs = append(msgs, wireMessage(body, false, "", ""))
	}
	var ids []string
	for i := range 10 {
		ids = append(ids, fmt.Sprintf(`{"Id":"%d"}`, i))
	}
	cfg := testkit.AWSConfig()
	cfg.HTTPClient = cannedClient{
		"AmazonSQS.ReceiveMessage":     []byte(messagesJSON(msgs...)),
		"AmazonSQS.DeleteMessageBatch": []byte(`{"Successful":[` + strings.Join(ids, ",") + `]}`),
	}
	sdk := queue.NewClient(cfg, testkit.AWSAt("", testkit.DefaultSQSEndpoint))
	lean, err := queue.NewLean(sdk)
	if err != nil {
		b.Fatal(err)
	}
	url := testkit.DefaultSQSEndpoint + "/000000000000/q"
	for _, bc := range []struct {
		name   string
		client consumer.Client
	}{{"sdk", sdk}, {"lean", lean}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				receiveDelete(b, bc.client, url, 10)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/1e3/float64(10*b.N), "µs/msg")
		})
	}
}

// cannedClient answers each request with the body kept for its X-Amz-Target.
type cannedClient map[string][]byte

func (c cannedClient) Do(r *http.Request) (*http.Response, error) {
	if r.Body != nil {
		_, _ = io.Copy(io.Discard, r.Body)
		_ = r.Body.Close()
	}
	body := c[r.Header.Get("X-Amz-Target")]
	return &http.Response{
		StatusCode: http.StatusOK, Header: http.Header{"Content-Type": {"application/x-amz-json-1.0"}},
		Body: io.NopCloser(bytes.NewReader(body)), ContentLength: int64(len(body)), Request: r,
	}, nil
}

// receiveDelete receives n messages from url, ten at a time, deleting each batch as it comes.
func receiveDelete(b *testing.B, c consumer.Client, url string, n int) int {
	ctx := testkit.Context(b)
	got := 0
	for got < n {
		out, err := c.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{
			QueueUrl: aws.String(url), MaxNumberOfMessages: 10, WaitTimeSeconds: 1, VisibilityTimeout: 60,
			MessageSystemAttributeNames: []types.MessageSystemAttributeName{
				types.MessageSystemAttributeNameApproximateReceiveCount, types.MessageSystemAttributeNameSentTimestamp,
			},
			MessageAttributeNames: []string{"All"},
		})
		if err != nil {
			b.Fatal(err)
		}
		if len(out.Messages) == 0 {
			b.Fatalf("queue empty after %d of %d messages", got, n)
		}
		entries := make([]types.DeleteMessageBatchRequestEntry, len(out.Messages))
		for i, m := range out.Messages {
			entries[i] = types.DeleteMessageBatchRequestEntry{Id: aws.String(strconv.Itoa(i)), ReceiptHandle: m.ReceiptHandle}
		}
		del, err := c.DeleteMessageBatch(ctx, &sqs.DeleteMessageBatchInput{QueueUrl: aws.String(url), Entries: entries})
		if err != nil {
			b.Fatal(err)
		}
		if len(del.Failed) > 0 {
			b.Fatalf("delete failed: %s", aws.ToString(del.Failed[0].Message))
		}
		got += len(out.Messages)
	}
	return got
}

// cpuTime is the user+system CPU time this process has used.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
