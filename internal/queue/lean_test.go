package queue_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/middleware"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/intakehq/intake/internal/queue"
	"github.com/intakehq/intake/internal/testkit"
	"github.com/intakehq/intake/worker/consumer"
)

var _ consumer.Client = (*queue.Lean)(nil)

// receiver is the call both clients answer.
type receiver interface {
	ReceiveMessage(ctx context.Context, in *sqs.ReceiveMessageInput, optFns ...func(*sqs.Options)) (*sqs.ReceiveMessageOutput, error)
}

// newLean returns the SDK client for the local kumo and a Lean over it.
func newLean(t testing.TB) (*sqs.Client, *queue.Lean) {
	t.Helper()
	sdk := testkit.SQS()
	lean, err := queue.NewLean(sdk)
	require.NoError(t, err)
	return sdk, lean
}

// TestMD5OfMessageAttributes checks the digest against known digests of two sample attribute sets
// (the "Amazon samples" other SQS implementations test theirs against): two string attributes out
// of order, and one binary. (kumo sends no MD5OfMessageAttributes, and the Go SDK checks none, so
// neither can serve as the reference.)
func TestMD5OfMessageAttributes(t *testing.T) {
	t.Parallel()
	str := func(v string) types.MessageAttributeValue {
		return types.MessageAttributeValue{DataType: aws.String("String"), StringValue: aws.String(v)}
	}
	assert.Equal(t, "d53f3b558fe951154770f25cb63dbba9", queue.MD5OfMessageAttributes(map[string]types.MessageAttributeValue{
		"test_attribute_name_2": str("test_attribute_value_2"),
		"test_attribute_name_1": str("test_attribute_value_1"),
	}))
	assert.Equal(t, "23f6bd27ea87aab7dfeadcc9aebee495", queue.MD5OfMessageAttributes(map[string]types.MessageAttributeValue{
		"test_attribute_name": {DataType: aws.String("Binary"), BinaryValue: []byte("test_attribute_value")},
	}))
	// Every part counts: the value, its transport type, the data type and the name.
	base := map[string]types.MessageAttributeValue{"a": str("v")}
	seen := map[string]bool{queue.MD5OfMessageAttributes(base): true}
	for _, attrs := range []map[string]types.MessageAttributeValue{
		{"a": str("w")},
		{"a": {DataType: aws.String("String"), BinaryValue: []byte("v")}},
		{"a": {DataType: aws.String("Number"), StringValue: aws.String("v")}},
		{"b": str("v")},
	} {
		sum := queue.MD5OfMessageAttributes(attrs)
		assert.False(t, seen[sum], "%v", attrs)
		seen[sum] = true
	}
}

// differentialEntries are messages with bodies that need escaping and every kind of message
// attribute: none, String, Number, Binary, and custom types of each.
func differentialEntries(n int) []types.SendMessageBatchRequestEntry {
	entries := make([]types.SendMessageBatchRequestEntry, n)
	for i := range entries {
		attrs := map[string]types.MessageAttributeValue{}
		switch i % 4 {
		case 1:
			attrs["kind"] = types.MessageAttributeValue{DataType: aws.String("String"), StringValue: aws.String(fmt.Sprintf("zeichen-ä-%d \"q\" <&>", i))}
		case 2:
			attrs["count"] = types.MessageAttributeValue{DataType: aws.String("Number"), StringValue: aws.String(fmt.Sprintf("-%d.25e3", i))}
		case 3:
			attrs["blob"] = types.MessageAttributeValue{DataType: aws.String("Binary"), BinaryValue: []byte{0, 1, 2, 0xfe, 0xff, byte(i)}}
			attrs["kind"] = types.MessageAttributeValue{DataType: aws.String("String.custom"), StringValue: aws.String("x")}
			attrs["n.int"] = types.MessageAttributeValue{DataType: aws.String("Number.int"), StringValue: aws.String(strconv.Itoa(i))}
			attrs["img_1"] = types.MessageAttributeValue{DataType: aws.String("Binary.gif"), BinaryValue: []byte("GIF89a")}
		}
		if len(attrs) == 0 {
			attrs = nil
		}
		body := fmt.Sprintf(`{"n":%d,"text":"héllo <&> \u2028 \\ \"%s\"}`, i, strings.Repeat("x", i*37))
		entries[i] = types.SendMessageBatchRequestEntry{Id: aws.String(strconv.Itoa(i)), MessageBody: aws.String(body), MessageAttributes: attrs}
	}
	return entries
}

// receiveAll receives n messages from url the way the consumer does (with every attribute), by
// body.
func receiveAll(t *testing.T, c receiver, url string, n int) map[string]types.Message {
	t.Helper()
	got := map[string]types.Message{}
	deadline := time.Now().Add(30 * time.Second)
	for len(got) < n && time.Now().Before(deadline) {
		out, err := c.ReceiveMessage(testkit.Context(t), &sqs.ReceiveMessageInput{
			QueueUrl: aws.String(url), MaxNumberOfMessages: 10, WaitTimeSeconds: 1, VisibilityTimeout: 60,
			MessageSystemAttributeNames: []types.MessageSystemAttributeName{types.MessageSystemAttributeNameAll},
			MessageAttributeNames:       []string{"All"},
		})
		require.NoError(t, err)
		for _, m := range out.Messages {
			_, dup := got[aws.ToString(m.Body)]
			require.False(t, dup, "received twice: %s", aws.ToString(m.Body))
			got[aws.ToString(m.Body)] = m
		}
	}
	require.Len(t, got, n)
	return got
}

// normalized clears what differs between two receives of equal messages: ids, receipt handles
// and timestamps (checked to be numbers).
func normalized(t *testing.T, m types.Message) types.Message {
	t.Helper()
	require.NotEmpty(t, aws.ToString(m.MessageId))
	require.NotEmpty(t, aws.ToString(m.ReceiptHandle))
	m.MessageId, m.ReceiptHandle = nil, nil
	attrs := map[string]string{}
	for k, v := range m.Attributes {
		if strings.HasSuffix(k, "Timestamp") {
			_, err := strconv.ParseInt(v, 10, 64)
			require.NoError(t, err, "%s=%q", k, v)
			v = "<timestamp>"
		}
		attrs[k] = v
	}
	m.Attributes = attrs
	return m
}

// TestLeanMatchesSDK: two queues filled alike; what Lean receives from one equals what the SDK
// receives from the other, and Lean's deletes empty its queue.
func TestLeanMatchesSDK(t *testing.T) {
	if testing.Short() {
		t.Skip("needs kumo")
	}
	t.Parallel()
	sdk, lean := newLean(t)
	const n = 24
	qa := testkit.Queue(t, sdk, 5, time.Minute)
	qb := testkit.Queue(t, sdk, 5, time.Minute)
	entries := differentialEntries(n)
	testkit.SendMessages(t, sdk, qa.URL, entries)
	testkit.SendMessages(t, sdk, qb.URL, entries)

	viaLean := receiveAll(t, lean, qa.URL, n)
	viaSDK := receiveAll(t, sdk, qb.URL, n)
	for _, e := range entries {
		body := aws.ToString(e.MessageBody)
		l, s := viaLean[body], viaSDK[body]
		require.Equal(t, normalized(t, s), normalized(t, l), "message %s", aws.ToString(e.Id))
		// And both are what was sent.
		require.Equal(t, body, aws.ToString(l.Body))
		require.Len(t, l.MessageAttributes, len(e.MessageAttributes))
		for name, v := range e.MessageAttributes {
			got := l.MessageAttributes[name]
			assert.Equal(t, aws.ToString(v.DataType), aws.ToString(got.DataType), name)
			assert.Equal(t, aws.ToString(v.StringValue), aws.ToString(got.StringValue), name)
			assert.Equal(t, v.BinaryValue, got.BinaryValue, name)
		}
		require.Equal(t, "1", l.Attributes[string(types.MessageSystemAttributeNameApproximateReceiveCount)])
		require.NoError(t, queue.CheckMessage(l))
	}

	info, err := queue.ReadInfo(testkit.Context(t), sdk, qa.URL, false)
	require.NoError(t, err)
	require.Equal(t, queue.Counts{InFlight: n}, info.Counts)

	handles := make([]string, 0, n)
	for _, m := range viaLean {
		handles = append(handles, aws.ToString(m.ReceiptHandle))
	}
	for start := 0; start < n; start += 10 {
		batch := handles[start:min(start+10, n)]
		in := &sqs.DeleteMessageBatchInput{QueueUrl: aws.String(qa.URL)}
		for i, h := range batch {
			in.Entries = append(in.Entries, types.DeleteMessageBatchRequestEntry{Id: aws.String(strconv.Itoa(i)), ReceiptHandle: aws.String(h)})
		}
		out, err := lean.DeleteMessageBatch(testkit.Context(t), in)
		require.NoError(t, err)
		require.Empty(t, out.Failed)
		require.Len(t, out.Successful, len(batch))
	}
	info, err = queue.ReadInfo(testkit.Context(t), sdk, qa.URL, false)
	require.NoError(t, err)
	require.Equal(t, queue.Counts{}, info.Counts)
	// Nothing comes back once the visibility timeout would have ended either: the messages are gone,
	// not hidden (the counts above say so already; this asks the queue itself).
	out, err := lean.ReceiveMessage(testkit.Context(t), &sqs.ReceiveMessageInput{QueueUrl: aws.String(qa.URL), MaxNumberOfMessages: 10})
	require.NoError(t, err)
	require.Empty(t, out.Messages)
}

// TestLeanDeleteBogusHandle: a batch with one bogus receipt handle gets the same answer from Lean as
// from the SDK: the good entry deleted, the bogus one in Failed.
func TestLeanDeleteBogusHandle(t *testing.T) {
	if testing.Short() {
		t.Skip("needs kumo")
	}
	t.Parallel()
	sdk, lean := newLean(t)
	q := testkit.Queue(t, sdk, 5, time.Minute)
	testkit.SendMessages(t, sdk, q.URL, differentialEntries(2))
	var handles []string
	for _, m := range receiveAll(t, lean, q.URL, 2) {
		handles = append(handles, aws.ToString(m.ReceiptHandle))
	}
	deleteWith := func(c consumer.Client, handle string) *sqs.DeleteMessageBatchOutput {
		out, err := c.DeleteMessageBatch(testkit.Context(t), &sqs.DeleteMessageBatchInput{
			QueueUrl: aws.String(q.URL),
			Entries: []types.DeleteMessageBatchRequestEntry{
				{Id: aws.String("good"), ReceiptHandle: aws.String(handle)},
				{Id: aws.String("bogus"), ReceiptHandle: aws.String("bogus-" + handle[:len(handle)/2])},
			},
		})
		require.NoError(t, err)
		out.ResultMetadata = middleware.Metadata{} // the request IDs differ
		return out
	}
	viaLean, viaSDK := deleteWith(lean, handles[0]), deleteWith(sdk, handles[1])
	require.Equal(t, []types.DeleteMessageBatchResultEntry{{Id: aws.String("good")}}, viaLean.Successful)
	require.Len(t, viaLean.Failed, 1)
	assert.Equal(t, "bogus", aws.ToString(viaLean.Failed[0].Id))
	assert.True(t, viaLean.Failed[0].SenderFault)
	assert.NotEmpty(t, aws.ToString(viaLean.Failed[0].Code))
	assert.Equal(t, viaSDK.Successful, viaLean.Successful)
	assert.Equal(t, viaSDK.Failed, viaLean.Failed)

	info, err := queue.ReadInfo(testkit.Context(t), sdk, q.URL, false)
	require.NoError(t, err)
	require.Equal(t, queue.Counts{}, info.Counts)
}

// TestLeanNonExistentQueue: a receive from a missing queue fails as the SDK's does, recognisably.
// (kumo answers a DeleteMessageBatch on a missing queue with failed entries, where SQS fails the
// call; both clients must then read the same entries.)
func TestLeanNonExistentQueue(t *testing.T) {
	if testing.Short() {
		t.Skip("needs kumo")
	}
	t.Parallel()
	sdk, lean := newLean(t)
	q := testkit.Queue(t, sdk, 5, time.Minute)
	missing := aws.String(q.URL + "-missing")
	receive := &sqs.ReceiveMessageInput{QueueUrl: missing, WaitTimeSeconds: 1}
	_, leanErr := lean.ReceiveMessage(testkit.Context(t), receive)
	_, sdkErr := sdk.ReceiveMessage(testkit.Context(t), receive)
	require.Error(t, leanErr)
	require.Error(t, sdkErr)
	assert.True(t, queue.IsNonExistentQueue(leanErr), "%v", leanErr)
	assertSameAPIError(t, sdkErr, leanErr)
	assert.Contains(t, leanErr.Error(), "ReceiveMessage")

	del := &sqs.DeleteMessageBatchInput{QueueUrl: missing, Entries: []types.DeleteMessageBatchRequestEntry{{Id: aws.String("0"), ReceiptHandle: aws.String("h")}}}
	leanOut, leanErr := lean.DeleteMessageBatch(testkit.Context(t), del)
	sdkOut, sdkErr := sdk.DeleteMessageBatch(testkit.Context(t), del)
	if sdkErr != nil {
		require.Error(t, leanErr)
		assert.True(t, queue.IsNonExistentQueue(leanErr), "%v", leanErr)
		assertSameAPIError(t, sdkErr, leanErr)
		return
	}
	require.NoError(t, leanErr)
	require.Len(t, leanOut.Failed, 1)
	assert.Equal(t, sdkOut.Failed, leanOut.Failed)
	assert.Equal(t, sdkOut.Successful, leanOut.Successful)
}

// assertSameAPIError checks that two errors carry the same operation, HTTP status and API error
// (type, code, message and fault).
func assertSameAPIError(t *testing.T, want, got error) {
	t.Helper()
	var wantOp, gotOp *smithy.OperationError
	require.ErrorAs(t, want, &wantOp)
	require.ErrorAs(t, got, &gotOp)
	assert.Equal(t, wantOp.OperationName, gotOp.OperationName)
	assert.Equal(t, wantOp.ServiceID, gotOp.ServiceID)
	var wantResp, gotResp *awshttp.ResponseError
	require.ErrorAs(t, want, &wantResp)
	require.ErrorAs(t, got, &gotResp)
	assert.Equal(t, wantResp.HTTPStatusCode(), gotResp.HTTPStatusCode())
	assert.Equal(t, wantResp.ServiceRequestID() == "", gotResp.ServiceRequestID() == "", "request IDs %q and %q", wantResp.ServiceRequestID(), gotResp.ServiceRequestID())
	var wantAPI, gotAPI smithy.APIError
	require.ErrorAs(t, want, &wantAPI)
	require.ErrorAs(t, got, &gotAPI)
	assert.Equal(t, fmt.Sprintf("%T", wantAPI), fmt.Sprintf("%T", gotAPI))
	assert.Equal(t, wantAPI.ErrorCode(), gotAPI.ErrorCode())
	assert.Equal(t, wantAPI.ErrorMessage(), gotAPI.ErrorMessage())
	assert.Equal(t, wantAPI.ErrorFault(), gotAPI.ErrorFault())
}

// TestLeanCancelLongPoll: cancelling the context ends a long poll at once.
func TestLeanCancelLongPoll(t *testing.T) {
	if testing.Short() {
		t.Skip("needs kumo")
	}
	t.Parallel()
	sdk, lean := newLean(t)
	q := testkit.Queue(t, sdk, 5, time.Minute)
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(300*time.Millisecond, cancel)
	start := time.Now()
	out, err := lean.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: aws.String(q.URL), WaitTimeSeconds: 20, MaxNumberOfMessages: 10})
	require.Error(t, err)
	require.Nil(t, out)
	assert.ErrorIs(t, err, context.Canceled)
	assert.Less(t, time.Since(start), 3*time.Second)
	var opErr *smithy.OperationError
	assert.ErrorAs(t, err, &opErr)
	assert.False(t, errors.Is(err, context.DeadlineExceeded))
}

// TestLeanOptionsFallBack: a call with option functions, or an input the SDK refuses, goes through
// the SDK.
func TestLeanOptionsFallBack(t *testing.T) {
	t.Parallel()
	_, lean := newLean(t)
	// The SDK's own validation, before any request.
	_, err := lean.ReceiveMessage(testkit.Context(t), &sqs.ReceiveMessageInput{})
	var invalid smithy.InvalidParamsError
	require.ErrorAs(t, err, &invalid)
	_, err = lean.DeleteMessageBatch(testkit.Context(t), &sqs.DeleteMessageBatchInput{QueueUrl: aws.String("u"), Entries: []types.DeleteMessageBatchRequestEntry{{Id: aws.String("0")}}})
	require.ErrorAs(t, err, &invalid)

	// Options reach the SDK: here, another endpoint.
	var hits int
	other := httpServer(t, func(w http.ResponseWriter, r *http.Request) {
		hits++
		w.Header().Set("Content-Type", "application/x-amz-json-1.0")
		_, _ = w.Write([]byte(`{"Messages":[]}`))
	})
	out, err := lean.ReceiveMessage(testkit.Context(t), &sqs.ReceiveMessageInput{QueueUrl: aws.String("http://q/1/q")},
		func(o *sqs.Options) { o.BaseEndpoint = aws.String(other) })
	require.NoError(t, err)
	require.Empty(t, out.Messages)
	require.Equal(t, 1, hits)
}

// answerRecorder is an HTTP client that keeps the body of the last ReceiveMessage or
// DeleteMessageBatch answer it passes on.
type answerRecorder struct {
	next aws.HTTPClient
	mu   sync.Mutex
	last []byte
}

func (r *answerRecorder) Do(req *http.Request) (*http.Response, error) {
	resp, err := r.next.Do(req)
	if target := req.Header.Get("X-Amz-Target"); err != nil || target != "AmazonSQS.ReceiveMessage" && target != "AmazonSQS.DeleteMessageBatch" {
		return resp, err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	r.last = body
	r.mu.Unlock()
	resp.Body = io.NopCloser(bytes.NewReader(body))
	return resp, nil
}

// answer is the last answer recorded.
func (r *answerRecorder) answer() []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.last
}

// TestKumoAnswersAreScanned: the answers a real SQS server (kumo) gives to the consumer's receive,
// over messages with hostile bodies and every kind of message attribute, and to its batch deletes,
// are read by Lean's one-pass decoders (scanReceive, scanDeleteBatch), not left to the SDK's, and
// into what the SDK decodes from them. (TestLeanMatchesSDK compares what Lean and the SDK receive
// end to end; FuzzScanAnswers holds the decoders to the SDK's on any input.)
func TestKumoAnswersAreScanned(t *testing.T) {
	if testing.Short() {
		t.Skip("needs kumo")
	}
	t.Parallel()
	rec := &answerRecorder{next: testkit.AWSConfig().HTTPClient}
	cfg := testkit.AWSConfig()
	cfg.HTTPClient = rec
	sdk := queue.NewClient(cfg, testkit.AWS())
	const n = 24
	q := testkit.Queue(t, sdk, 5, time.Minute)
	testkit.SendMessages(t, sdk, q.URL, differentialEntries(n))

	var received []types.Message
	deadline := time.Now().Add(30 * time.Second)
	for len(received) < n && time.Now().Before(deadline) {
		out, err := sdk.ReceiveMessage(testkit.Context(t), &sqs.ReceiveMessageInput{
			QueueUrl: aws.String(q.URL), MaxNumberOfMessages: 10, WaitTimeSeconds: 1, VisibilityTimeout: 60,
			MessageSystemAttributeNames: []types.MessageSystemAttributeName{types.MessageSystemAttributeNameAll},
			MessageAttributeNames:       []string{"All"},
		})
		require.NoError(t, err)
		if len(out.Messages) == 0 {
			continue
		}
		scanned, ok := queue.ScanReceive(rec.answer())
		require.True(t, ok, "kumo's answer left to the SDK's decoder: %s", rec.answer())
		require.Equal(t, out.Messages, scanned)
		received = append(received, scanned...)

		in := &sqs.DeleteMessageBatchInput{QueueUrl: aws.String(q.URL)}
		for i, m := range out.Messages {
			in.Entries = append(in.Entries, types.DeleteMessageBatchRequestEntry{Id: aws.String(strconv.Itoa(i)), ReceiptHandle: m.ReceiptHandle})
		}
		deleted, err := sdk.DeleteMessageBatch(testkit.Context(t), in)
		require.NoError(t, err)
		require.Len(t, deleted.Successful, len(out.Messages))
		scannedDelete, ok := queue.ScanDeleteBatch(rec.answer())
		require.True(t, ok, "kumo's answer left to the SDK's decoder: %s", rec.answer())
		require.Equal(t, deleted.Successful, scannedDelete.Successful)
		require.Equal(t, deleted.Failed, scannedDelete.Failed)
	}
	require.Len(t, received, n)
}
