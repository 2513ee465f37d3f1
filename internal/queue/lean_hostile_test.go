package queue_test

// Lean against an httptest server, for what kumo cannot produce: wrong digests, error bodies and
// garbage. Where the SDK sees the same bytes, its answer is the reference.

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/middleware"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/intakehq/intake/internal/queue"
	"github.com/intakehq/intake/internal/testkit"
)

// httpServer serves h on loopback until the test ends and returns its URL.
func httpServer(t *testing.T, h http.HandlerFunc) string {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.URL
}

// clientsAt returns an SDK client for the server at url, making one attempt per call (so that its
// answer to an error is comparable), and a Lean over it.
func clientsAt(t *testing.T, url string) (*sqs.Client, *queue.Lean) {
	t.Helper()
	cfg := testkit.AWSConfig()
	cfg.RetryMaxAttempts = 1
	sdk := queue.NewClient(cfg, testkit.AWSAt("", url))
	lean, err := queue.NewLean(sdk)
	require.NoError(t, err)
	return sdk, lean
}

// answer is a canned response.
type answer struct {
	status int
	header map[string]string
	body   string
}

func (a answer) serve(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/x-amz-json-1.0")
	w.Header().Set("X-Amzn-Requestid", "req-1")
	for k, v := range a.header {
		w.Header().Set(k, v)
	}
	w.WriteHeader(a.status)
	_, _ = io.WriteString(w, a.body)
}

func hexMD5(b []byte) string {
	sum := md5.Sum(b)
	return hex.EncodeToString(sum[:])
}

// wireMessage is a message as SQS sends it; md5Body and md5Attrs replace the right digests when set.
func wireMessage(body string, withAttrs bool, md5Body, md5Attrs string) map[string]any {
	m := map[string]any{
		"MessageId": "id-" + hexMD5([]byte(body))[:8], "ReceiptHandle": "rh", "Body": body,
		"MD5OfBody":  cmpOr(md5Body, hexMD5([]byte(body))),
		"Attributes": map[string]string{"ApproximateReceiveCount": "1", "SentTimestamp": "1700000000000"},
	}
	if withAttrs {
		bin := []byte{0, 1, 0xff}
		m["MessageAttributes"] = map[string]any{
			"s":   map[string]any{"DataType": "String", "StringValue": "välue"},
			"n":   map[string]any{"DataType": "Number", "StringValue": "12.5"},
			"bin": map[string]any{"DataType": "Binary", "BinaryValue": base64.StdEncoding.EncodeToString(bin)},
		}
		m["MD5OfMessageAttributes"] = cmpOr(md5Attrs, queue.MD5OfMessageAttributes(map[string]types.MessageAttributeValue{
			"s":   {DataType: aws.String("String"), StringValue: aws.String("välue")},
			"n":   {DataType: aws.String("Number"), StringValue: aws.String("12.5")},
			"bin": {DataType: aws.String("Binary"), BinaryValue: bin},
		}))
	}
	return m
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func messagesJSON(msgs ...map[string]any) string {
	b, _ := json.Marshal(map[string]any{"Messages": msgs})
	return string(b)
}

// sdkAnswer is what the SDK answers to a response in TestLeanHostileReceive.
type sdkAnswer int

const (
	sdkSame      sdkAnswer = iota // what Lean answers
	sdkError                      // an error too (not necessarily the same)
	sdkUnchecked                  // not compared: the Go SDK does not check attribute digests
)

var receiveInput = &sqs.ReceiveMessageInput{QueueUrl: aws.String("http://q/000000000000/q"), MaxNumberOfMessages: 10, MessageAttributeNames: []string{"All"}}

// TestLeanHostileReceive: Lean decodes what the SDK decodes, rejects what the SDK rejects, and
// rejects wrong attribute digests too.
func TestLeanHostileReceive(t *testing.T) {
	t.Parallel()
	good := messagesJSON(wireMessage(`{"a":"b"}`, true, "", ""), wireMessage("plain ü", false, "", ""))
	tests := []struct {
		name string
		a    answer
		// check judges Lean's answer; sdk is what the SDK must answer to the same bytes: sdkSame,
		// sdkError (it refuses them too) or sdkUnchecked (not compared).
		check func(t *testing.T, out *sqs.ReceiveMessageOutput, err error)
		sdk   sdkAnswer
	}{
		{"valid", answer{200, nil, good}, func(t *testing.T, out *sqs.ReceiveMessageOutput, err error) {
			require.NoError(t, err)
			require.Len(t, out.Messages, 2)
			assert.Equal(t, []byte{0, 1, 0xff}, out.Messages[0].MessageAttributes["bin"].BinaryValue)
		}, sdkSame},
		{"empty", answer{200, nil, `{}`}, func(t *testing.T, out *sqs.ReceiveMessageOutput, err error) {
			require.NoError(t, err)
			require.Empty(t, out.Messages)
		}, sdkSame},
		{"wrong MD5OfBody", answer{200, nil, messagesJSON(wireMessage("x", true, hexMD5([]byte("y")), ""))}, func(t *testing.T, out *sqs.ReceiveMessageOutput, err error) {
			require.NoError(t, err, "the message is left out, the call does not fail")
			require.Empty(t, out.Messages)
			f := queue.ChecksumFailures(out.ResultMetadata)
			require.Len(t, f, 1)
			assert.Equal(t, queue.DigestBody, f[0].Digest)
			require.ErrorIs(t, f[0].Err, queue.ErrChecksum)
			assert.Contains(t, f[0].Err.Error(), "MD5OfBody")
		}, sdkError},
		{"wrong MD5OfMessageAttributes", answer{200, nil, messagesJSON(wireMessage("x", true, "", hexMD5([]byte("y"))))}, func(t *testing.T, out *sqs.ReceiveMessageOutput, err error) {
			require.NoError(t, err)
			require.Len(t, out.Messages, 1, "kept: its body matched")
			f := queue.ChecksumFailures(out.ResultMetadata)
			require.Len(t, f, 1)
			assert.Equal(t, queue.DigestAttributes, f[0].Digest)
			require.ErrorIs(t, f[0].Err, queue.ErrChecksum)
			assert.Contains(t, f[0].Err.Error(), "MD5OfMessageAttributes")
		}, sdkUnchecked},
		{"500 with a JSON error", answer{500, nil, `{"__type":"com.amazonaws.sqs#InternalError","message":"boom"}`}, func(t *testing.T, _ *sqs.ReceiveMessageOutput, err error) {
			var apiErr smithy.APIError
			require.ErrorAs(t, err, &apiErr)
			assert.Equal(t, "InternalError", apiErr.ErrorCode())
			assert.Equal(t, "boom", apiErr.ErrorMessage())
			assert.Contains(t, err.Error(), "ReceiveMessage")
			assert.Contains(t, err.Error(), "StatusCode: 500")
			assert.False(t, queue.IsNonExistentQueue(err))
		}, sdkSame},
		{"QueueDoesNotExist, query code", answer{400, map[string]string{"X-Amzn-Query-Error": "AWS.SimpleQueueService.NonExistentQueue;Sender"},
			`{"__type":"com.amazonaws.sqs#QueueDoesNotExist","message":"The specified queue does not exist."}`}, func(t *testing.T, _ *sqs.ReceiveMessageOutput, err error) {
			var typed *types.QueueDoesNotExist
			require.ErrorAs(t, err, &typed)
			assert.Equal(t, "AWS.SimpleQueueService.NonExistentQueue", typed.ErrorCode())
			assert.True(t, queue.IsNonExistentQueue(err))
		}, sdkSame},
		{"throttled, query code", answer{400, map[string]string{"X-Amzn-Query-Error": "AWS.SimpleQueueService.RequestThrottled;Sender"},
			`{"__type":"com.amazonaws.sqs#RequestThrottled","message":"slow down"}`}, func(t *testing.T, _ *sqs.ReceiveMessageOutput, err error) {
			var apiErr smithy.APIError
			require.ErrorAs(t, err, &apiErr)
			assert.Equal(t, "AWS.SimpleQueueService.RequestThrottled", apiErr.ErrorCode())
			assert.Equal(t, smithy.FaultClient, apiErr.ErrorFault())
		}, sdkSame},
		{"unknown code, query fault", answer{503, map[string]string{"X-Amzn-Query-Error": "ServiceUnavailable;Receiver"},
			`{"__type":"com.amazonaws.sqs#ServiceUnavailable","message":"later"}`}, func(t *testing.T, _ *sqs.ReceiveMessageOutput, err error) {
			var generic *smithy.GenericAPIError
			require.ErrorAs(t, err, &generic)
			assert.Equal(t, smithy.GenericAPIError{Code: "ServiceUnavailable", Message: "later", Fault: smithy.FaultServer}, *generic)
		}, sdkSame},
		{"garbage", answer{200, nil, `{"Messages":[{"Body":`}, func(t *testing.T, out *sqs.ReceiveMessageOutput, err error) {
			var de *smithy.DeserializationError
			require.ErrorAs(t, err, &de)
			require.Nil(t, out)
		}, sdkError},
		{"garbage error", answer{400, nil, `<html>bad gateway`}, func(t *testing.T, _ *sqs.ReceiveMessageOutput, err error) {
			var de *smithy.DeserializationError
			require.ErrorAs(t, err, &de)
			assert.Contains(t, err.Error(), "StatusCode: 400")
		}, sdkError},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			url := httpServer(t, tc.a.serve)
			sdk, lean := clientsAt(t, url)
			sdkOut, sdkErr := sdk.ReceiveMessage(testkit.Context(t), receiveInput)
			// Both of Lean's paths: its connection pool and net/http (each reads the answer itself).
			for path, lean := range map[string]*queue.Lean{"pool": lean, "net/http": leanOverNetHTTP(t, url)} {
				out, err := lean.ReceiveMessage(testkit.Context(t), receiveInput)
				tc.check(t, out, err)
				switch tc.sdk {
				case sdkError:
					require.Error(t, sdkErr)
					continue
				case sdkUnchecked:
					continue
				}
				if err != nil {
					assertSameAPIError(t, sdkErr, err)
					continue
				}
				require.NoError(t, sdkErr)
				require.Equal(t, sdkOut.Messages, out.Messages, path)
				requireRequestID(t, out.ResultMetadata)
			}
		})
	}
}

// TestLeanChecksumPerMessage: one damaged message does not fail the receive of its neighbours. A
// message whose body does not match its MD5OfBody is left out of the answer (it stays in the queue
// and is received again after its visibility timeout); one whose attributes do not match their
// digest is kept (the SDK checks no attribute digests, and only the body is processed); both are
// reported, with their ids, through ChecksumFailures. So on each of Lean's paths, including the one
// through the SDK (an endpoint path SigV4 would escape), where the SDK alone fails the whole call.
// A failure carries the message's receipt handle and receive count, for the caller to settle the
// message it did not get (its handle in no printed form of the failure: TestChecksumFailureHidesHandle).
func TestLeanChecksumPerMessage(t *testing.T) {
	t.Parallel()
	badBody := wireMessage("damaged", false, hexMD5([]byte("not it")), "")
	badBody["MessageId"] = "bad-body"
	badBody["ReceiptHandle"] = secretHandle
	badBody["Attributes"] = map[string]string{"ApproximateReceiveCount": "3", "SentTimestamp": "1700000000000"}
	badAttrs := wireMessage("attrs", true, "", hexMD5([]byte("not them")))
	badAttrs["MessageId"] = "bad-attrs"
	msgs := []map[string]any{wireMessage("good 1", true, "", ""), badBody, wireMessage("good 2", false, "", ""), badAttrs}
	for i := 3; i <= 8; i++ {
		msgs = append(msgs, wireMessage("good "+strconv.Itoa(i), i%2 == 0, "", ""))
	}
	url := httpServer(t, answer{200, nil, messagesJSON(msgs...)}.serve)
	sdk, lean := clientsAt(t, url)
	_, err := sdk.ReceiveMessage(testkit.Context(t), receiveInput)
	require.ErrorContains(t, err, "checksum", "the SDK fails the whole call")

	sdkOnly, err := queue.NewLean(queue.NewClient(testkit.AWSConfig(), testkit.AWSAt("", url+"/sqs:escaped")))
	require.NoError(t, err)
	for path, lean := range map[string]*queue.Lean{"pool": lean, "net/http": leanOverNetHTTP(t, url), "sdk": sdkOnly} {
		out, err := lean.ReceiveMessage(testkit.Context(t), receiveInput)
		require.NoError(t, err, path)
		var bodies []string
		for _, m := range out.Messages {
			bodies = append(bodies, aws.ToString(m.Body))
			require.NotEqual(t, "bad-body", aws.ToString(m.MessageId), path)
		}
		require.Equal(t, []string{"good 1", "good 2", "attrs", "good 3", "good 4", "good 5", "good 6", "good 7", "good 8"}, bodies, path)
		f := queue.ChecksumFailures(out.ResultMetadata)
		require.Len(t, f, 2, path)
		assert.Equal(t, "bad-body", f[0].MessageID, path)
		assert.Equal(t, queue.DigestBody, f[0].Digest, path)
		assert.ErrorIs(t, f[0].Err, queue.ErrChecksum, path)
		assert.Equal(t, secretHandle, f[0].ReceiptHandle, path)
		assert.Equal(t, 3, f[0].ReceiveCount, path)
		assert.Equal(t, "damaged", aws.ToString(f[0].Message.Body), path)
		assert.Equal(t, "bad-body", aws.ToString(f[0].Message.MessageId), path)
		assert.Equal(t, "bad-attrs", f[1].MessageID, path)
		assert.Equal(t, queue.DigestAttributes, f[1].Digest, path)
		assert.ErrorIs(t, f[1].Err, queue.ErrChecksum, path)
		assert.Equal(t, "rh", f[1].ReceiptHandle, path)
		assert.Equal(t, 1, f[1].ReceiveCount, path)
	}

	// A receive that did not ask for ApproximateReceiveCount: the count is 0.
	delete(badBody, "Attributes")
	url = httpServer(t, answer{200, nil, messagesJSON(badBody)}.serve)
	_, lean = clientsAt(t, url)
	for path, lean := range map[string]*queue.Lean{"pool": lean, "net/http": leanOverNetHTTP(t, url)} {
		out, err := lean.ReceiveMessage(testkit.Context(t), receiveInput)
		require.NoError(t, err, path)
		require.Empty(t, out.Messages, path)
		f := queue.ChecksumFailures(out.ResultMetadata)
		require.Len(t, f, 1, path)
		assert.Equal(t, secretHandle, f[0].ReceiptHandle, path)
		assert.Zero(t, f[0].ReceiveCount, path)
	}

	// A clean answer reports nothing.
	clean := httpServer(t, answer{200, nil, messagesJSON(wireMessage("fine", true, "", ""))}.serve)
	_, lean = clientsAt(t, clean)
	out, err := lean.ReceiveMessage(testkit.Context(t), receiveInput)
	require.NoError(t, err)
	require.Len(t, out.Messages, 1)
	require.Nil(t, queue.ChecksumFailures(out.ResultMetadata))
}

// secretHandle is a receipt handle as AWS writes them, which must reach no printed text.
const secretHandle = "AQEBwJnKyrHigUMZj6rYigCgxlaS3SLy0a+Pf/nbDHDnsQ8eFZ0TAFrOTxXMCj1zv=="

// TestChecksumFailureHidesHandle: no form a ChecksumFailure is printed or logged in shows its
// receipt handle (a secret: it lets whoever reads it delete the message), alone or in a slice.
func TestChecksumFailureHidesHandle(t *testing.T) {
	t.Parallel()
	f := queue.ChecksumFailure{MessageID: "m-1", Digest: queue.DigestBody, ReceiptHandle: secretHandle, ReceiveCount: 2,
		Message: types.Message{MessageId: aws.String("m-1"), ReceiptHandle: aws.String(secretHandle), Body: aws.String("b")},
		Err:     fmt.Errorf("message m-1: MD5OfBody 00, body's 11: %w", queue.ErrChecksum)}
	list := []queue.ChecksumFailure{f, f}
	var texts []string
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%d"} {
		texts = append(texts, fmt.Sprintf(verb, f), fmt.Sprintf(verb, &f), fmt.Sprintf(verb, list))
	}
	texts = append(texts, f.String())
	for _, newHandler := range []func(io.Writer) slog.Handler{
		func(w io.Writer) slog.Handler { return slog.NewTextHandler(w, nil) },
		func(w io.Writer) slog.Handler { return slog.NewJSONHandler(w, nil) },
	} {
		var buf bytes.Buffer
		slog.New(newHandler(&buf)).Warn("checksum", "failure", f, "failures", list, "ptr", &f)
		texts = append(texts, buf.String())
	}
	b, err := json.Marshal(list)
	require.NoError(t, err)
	texts = append(texts, string(b))
	for _, text := range texts {
		require.NotContains(t, text, secretHandle[:12], text)
		require.NotContains(t, text, "ReceiptHandle", text)
	}
	// What is printed still says which message failed, and why.
	require.Equal(t, "message m-1: body digest (receive count 2): message m-1: MD5OfBody 00, body's 11: checksum mismatch", fmt.Sprint(f))
	require.Contains(t, texts[len(texts)-2], `"message_id":"m-1"`)
}

// leanOverNetHTTP is a Lean for the server at url over an HTTP client that is not the SDK's
// buildable one: no h1.Pool mirrors it, so its requests go through net/http.
func leanOverNetHTTP(t *testing.T, url string) *queue.Lean {
	t.Helper()
	cfg := testkit.AWSConfig()
	cfg.RetryMaxAttempts = 1
	cfg.HTTPClient = &http.Client{}
	lean, err := queue.NewLean(queue.NewClient(cfg, testkit.AWSAt("", url)))
	require.NoError(t, err)
	return lean
}

// truncated answers 200 with a Content-Length beyond the body it sends, then closes the
// connection: the answer ends early.
func truncated(w http.ResponseWriter, _ *http.Request) {
	body := messagesJSON(wireMessage("cut short", false, "", ""))
	w.Header().Set("Content-Type", "application/x-amz-json-1.0")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)+100))
	w.WriteHeader(http.StatusOK)
	_, _ = io.WriteString(w, body)
	rc := http.NewResponseController(w)
	_ = rc.Flush() // the whole answer's JSON reaches the client
	if conn, _, err := rc.Hijack(); err == nil {
		_ = conn.Close()
	}
}

// TestLeanTruncatedReceive: an answer cut short fails the receive on both of Lean's paths, as it
// fails the SDK's, though the part that came holds a whole, valid answer.
func TestLeanTruncatedReceive(t *testing.T) {
	t.Parallel()
	url := httpServer(t, truncated)
	sdk, lean := clientsAt(t, url)
	_, err := sdk.ReceiveMessage(testkit.Context(t), receiveInput)
	require.Error(t, err, "the SDK")
	for path, lean := range map[string]*queue.Lean{"pool": lean, "net/http": leanOverNetHTTP(t, url)} {
		out, err := lean.ReceiveMessage(testkit.Context(t), receiveInput)
		require.Error(t, err, path)
		require.Nil(t, out, path)
	}
}

// TestLeanHostileDelete: Lean decodes DeleteMessageBatch's answers as the SDK does, through its
// pool and through net/http.
func TestLeanHostileDelete(t *testing.T) {
	t.Parallel()
	in := &sqs.DeleteMessageBatchInput{QueueUrl: aws.String("http://q/000000000000/q"), Entries: []types.DeleteMessageBatchRequestEntry{
		{Id: aws.String("0"), ReceiptHandle: aws.String("a")}, {Id: aws.String("1"), ReceiptHandle: aws.String("b")},
	}}
	for _, a := range []answer{
		{200, nil, `{"Successful":[{"Id":"0"}],"Failed":[{"Id":"1","Code":"ReceiptHandleIsInvalid","Message":"bad handle","SenderFault":true}]}`},
		{200, nil, `{"Successful":[{"Id":"0"},{"Id":"1"}],"Failed":[]}`},
		{400, map[string]string{"X-Amzn-Query-Error": "AWS.SimpleQueueService.BatchEntryIdsNotDistinct;Sender"}, `{"__type":"com.amazonaws.sqs#BatchEntryIdsNotDistinct","message":"dup"}`},
	} {
		url := httpServer(t, a.serve)
		sdk, lean := clientsAt(t, url)
		sdkOut, sdkErr := sdk.DeleteMessageBatch(testkit.Context(t), in)
		for path, lean := range map[string]*queue.Lean{"pool": lean, "net/http": leanOverNetHTTP(t, url)} {
			out, err := lean.DeleteMessageBatch(testkit.Context(t), in)
			if a.status != 200 {
				require.Error(t, err, path)
				assertSameAPIError(t, sdkErr, err)
				continue
			}
			require.NoError(t, err, path)
			require.NoError(t, sdkErr)
			require.Equal(t, sdkOut.Successful, out.Successful, path)
			require.Equal(t, sdkOut.Failed, out.Failed, path)
			require.NotEmpty(t, out.Successful)
			requireRequestID(t, out.ResultMetadata)
		}
	}
}

// requireRequestID checks that md carries the request ID answer sends, as the SDK's does.
func requireRequestID(t *testing.T, md middleware.Metadata) {
	t.Helper()
	id, ok := awsmiddleware.GetRequestIDMetadata(md)
	require.True(t, ok)
	require.Equal(t, "req-1", id)
}

// recorded is a request as the server saw it.
type recorded struct {
	header http.Header
	host   string
	path   string
	body   []byte
}

// recorder is a server that answers every request with an empty JSON object and records it.
type recorder struct {
	mu   sync.Mutex
	reqs []recorded
}

func (rec *recorder) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	rec.mu.Lock()
	rec.reqs = append(rec.reqs, recorded{r.Header.Clone(), r.Host, r.URL.RequestURI(), body})
	rec.mu.Unlock()
	answer{200, nil, `{}`}.serve(w, r)
}

// take returns the requests recorded since the last take.
func (rec *recorder) take() []recorded {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	reqs := rec.reqs
	rec.reqs = nil
	return reqs
}

// TestLeanRequests: Lean's requests carry the SDK's protocol headers and a JSON body equal to the
// SDK's for the same input, and are signed correctly (checked by signing the received request
// again, over the headers it names as signed).
func TestLeanRequests(t *testing.T) {
	t.Parallel()
	rec := &recorder{}
	url := httpServer(t, rec.serve)
	sdk, lean := clientsAt(t, url)
	// The same Lean over an HTTP client that is not the SDK's buildable one: no h1.Pool mirrors
	// it, so requests go through net/http.
	cfg := testkit.AWSConfig()
	cfg.RetryMaxAttempts = 1
	cfg.HTTPClient = &http.Client{}
	leanHTTP, err := queue.NewLean(queue.NewClient(cfg, testkit.AWSAt("", url)))
	require.NoError(t, err)
	inputs := []any{
		&sqs.ReceiveMessageInput{QueueUrl: aws.String("http://q/000000000000/q")},
		&sqs.ReceiveMessageInput{
			QueueUrl: aws.String("http://q/000000000000/q"), MaxNumberOfMessages: 7, WaitTimeSeconds: 20, VisibilityTimeout: 45,
			//lint:ignore SA1019 deprecated, still sent as the SDK sends it
			AttributeNames:              []types.QueueAttributeName{types.QueueAttributeNameAll},
			MessageSystemAttributeNames: []types.MessageSystemAttributeName{types.MessageSystemAttributeNameApproximateReceiveCount, types.MessageSystemAttributeNameSentTimestamp},
			MessageAttributeNames:       []string{"All"}, ReceiveRequestAttemptId: aws.String("attempt-ü"),
		},
		&sqs.ReceiveMessageInput{QueueUrl: aws.String("http://q/000000000000/q"), MessageAttributeNames: []string{}},
		&sqs.DeleteMessageBatchInput{QueueUrl: aws.String("http://q/000000000000/q"), Entries: []types.DeleteMessageBatchRequestEntry{
			{Id: aws.String("0"), ReceiptHandle: aws.String("a+b/c==")}, {Id: aws.String("1"), ReceiptHandle: aws.String("<&>")},
		}},
	}
	ctx := testkit.Context(t)
	creds, err := testkit.AWSConfig().Credentials.Retrieve(ctx)
	require.NoError(t, err)
	for _, in := range inputs {
		for _, c := range []interface {
			ReceiveMessage(context.Context, *sqs.ReceiveMessageInput, ...func(*sqs.Options)) (*sqs.ReceiveMessageOutput, error)
			DeleteMessageBatch(context.Context, *sqs.DeleteMessageBatchInput, ...func(*sqs.Options)) (*sqs.DeleteMessageBatchOutput, error)
		}{sdk, lean, leanHTTP} {
			switch in := in.(type) {
			case *sqs.ReceiveMessageInput:
				_, err = c.ReceiveMessage(ctx, in)
			case *sqs.DeleteMessageBatchInput:
				_, err = c.DeleteMessageBatch(ctx, in)
			}
			require.NoError(t, err)
		}
		reqs := rec.take()
		require.Len(t, reqs, 3)
		viaSDK := reqs[0]
		assert.True(t, strings.HasPrefix(viaSDK.header.Get("User-Agent"), "aws-sdk-go"), viaSDK.header.Get("User-Agent"))
		assert.Empty(t, reqs[1].header.Get("User-Agent"), "Lean sends through its h1.Pool (fasthttp sends no User-Agent)")
		assert.True(t, strings.HasPrefix(reqs[2].header.Get("User-Agent"), "Go-http-client/"), "Lean over another HTTP client sends through it")
		for _, viaLean := range reqs[1:] {
			assert.Equal(t, viaSDK.path, viaLean.path)
			assert.Equal(t, viaSDK.host, viaLean.host)
			for _, h := range []string{"Content-Type", "X-Amz-Target", "X-Amzn-Query-Mode"} {
				assert.Equal(t, viaSDK.header.Get(h), viaLean.header.Get(h), h)
			}
			var sdkBody, leanBody any
			require.NoError(t, json.Unmarshal(viaSDK.body, &sdkBody))
			require.NoError(t, json.Unmarshal(viaLean.body, &leanBody))
			assert.Equal(t, sdkBody, leanBody)
			assert.Contains(t, viaLean.header.Get("Authorization"), "/"+testkit.Region+"/sqs/aws4_request")
		}
		for _, r := range reqs {
			assert.Equal(t, r.header.Get("Authorization"), resign(t, creds, r, r.body))
			// The check can fail: another body gives another signature.
			assert.NotEqual(t, r.header.Get("Authorization"), resign(t, creds, r, append(r.body, ' ')))
		}
	}
}

// resign signs, with the SDK's signer at the received request's X-Amz-Date, a request made of the
// headers r names as signed and body, and returns its Authorization header.
func resign(t *testing.T, creds aws.Credentials, r recorded, body []byte) string {
	t.Helper()
	auth := r.header.Get("Authorization")
	_, signed, ok := strings.Cut(auth, "SignedHeaders=")
	require.True(t, ok, auth)
	signed, _, _ = strings.Cut(signed, ",")
	at, err := time.Parse("20060102T150405Z", r.header.Get("X-Amz-Date"))
	require.NoError(t, err)
	req, err := http.NewRequest(http.MethodPost, "http://"+r.host+r.path, bytes.NewReader(body))
	require.NoError(t, err)
	req.ContentLength = 0
	for _, h := range strings.Split(signed, ";") {
		switch h {
		case "host":
		case "content-length":
			req.ContentLength = int64(len(body))
		default:
			req.Header[http.CanonicalHeaderKey(h)] = r.header.Values(h)
		}
	}
	req.Header.Del("Authorization")
	sum := sha256.Sum256(body)
	require.NoError(t, v4.NewSigner().SignHTTP(context.Background(), creds, req, hex.EncodeToString(sum[:]), "sqs", testkit.Region, at))
	return req.Header.Get("Authorization")
}

// TestLeanSignsWithASessionToken: with temporary credentials (an IRSA or STS session), Lean sends
// the session token and signs it, through the pool and through net/http: the server receives the
// token, and the SDK's signer, given the same credentials, reproduces the signature.
func TestLeanSignsWithASessionToken(t *testing.T) {
	t.Parallel()
	rec := &recorder{}
	url := httpServer(t, rec.serve)
	creds := aws.Credentials{AccessKeyID: "ASIATEMP", SecretAccessKey: "temp/secret+key", SessionToken: "session/token+with=padding=="}
	for _, httpClient := range []aws.HTTPClient{testkit.AWSConfig().HTTPClient, &http.Client{}} {
		cfg := testkit.AWSConfig()
		cfg.Credentials = credentials.StaticCredentialsProvider{Value: creds}
		cfg.HTTPClient = httpClient
		lean, err := queue.NewLean(queue.NewClient(cfg, testkit.AWSAt("", url)))
		require.NoError(t, err)
		_, err = lean.ReceiveMessage(testkit.Context(t), receiveInput)
		require.NoError(t, err)
	}
	reqs := rec.take()
	require.Len(t, reqs, 2)
	assert.Empty(t, reqs[0].header.Get("User-Agent"), "the first went through the h1.Pool")
	assert.NotEmpty(t, reqs[1].header.Get("User-Agent"), "the second through net/http")
	for _, r := range reqs {
		assert.Equal(t, creds.SessionToken, r.header.Get("X-Amz-Security-Token"))
		assert.Contains(t, r.header.Get("Authorization"), "x-amz-security-token")
		assert.Equal(t, r.header.Get("Authorization"), resign(t, creds, r, r.body))
		// The check can fail: another token gives another signature.
		other := r
		other.header = r.header.Clone()
		other.header.Set("X-Amz-Security-Token", "another")
		assert.NotEqual(t, r.header.Get("Authorization"), resign(t, aws.Credentials{AccessKeyID: creds.AccessKeyID, SecretAccessKey: creds.SecretAccessKey, SessionToken: "another"}, other, r.body))
	}
}

// TestLeanReceivesTheLargestAnswers: an answer as large as SQS can give, written with JSON's longest
// escapes (1 MiB bodies of '<', each byte sent as \u003c: 36 MiB for six), is read whole through
// the pool and through net/http, decoded and checked. A smaller bound would fail such a receive
// after SQS had sent its messages, and every message in it, hostile or not, would count a receive
// towards the dead-letter queue.
func TestLeanReceivesTheLargestAnswers(t *testing.T) {
	t.Parallel()
	body := strings.Repeat("<", 1<<20)
	var msgs []map[string]any
	for range 6 {
		msgs = append(msgs, wireMessage(body, false, "", ""))
	}
	answerJSON := messagesJSON(msgs...) // encoding/json escapes '<' as \u003c
	require.Greater(t, len(answerJSON), 32<<20)
	url := httpServer(t, answer{200, nil, answerJSON}.serve)
	_, lean := clientsAt(t, url)
	for path, lean := range map[string]*queue.Lean{"pool": lean, "net/http": leanOverNetHTTP(t, url)} {
		out, err := lean.ReceiveMessage(testkit.Context(t), receiveInput)
		require.NoError(t, err, path)
		require.Len(t, out.Messages, 6, path)
		for _, m := range out.Messages {
			require.Equal(t, body, aws.ToString(m.Body), path)
		}
	}
}

// TestLeanDeleteMasksHandles: SQS repeats the receipt handle it refuses, in a failed entry's
// Message and in a failed call's error, which callers log: Lean masks the batch's handles there,
// on each of its paths (the SDK's included), and the error still unwraps to the SDK's. The shapes
// here are ones redact.String does not know: only the handles' being known masks them.
func TestLeanDeleteMasksHandles(t *testing.T) {
	t.Parallel()
	const uuidHandle = "0b6a2b56-7c1f-4d0e-9a54-3f2d8f1e6c7a"
	in := &sqs.DeleteMessageBatchInput{QueueUrl: aws.String("http://q/000000000000/q"), Entries: []types.DeleteMessageBatchRequestEntry{
		{Id: aws.String("0"), ReceiptHandle: aws.String(secretHandle)}, {Id: aws.String("1"), ReceiptHandle: aws.String(uuidHandle)},
		{Id: aws.String("2"), ReceiptHandle: aws.String("a")},
	}}
	failed := answer{200, nil, `{"Successful":[{"Id":"2"}],"Failed":[` +
		`{"Id":"0","Code":"ReceiptHandleIsInvalid","Message":"handle ` + secretHandle + ` refused","SenderFault":true},` +
		`{"Id":"1","Code":"InternalError","Message":"gone: ` + uuidHandle + `; a ok","SenderFault":false}]}`}
	refused := answer{400, map[string]string{"X-Amzn-Query-Error": "AWS.SimpleQueueService.InvalidParameterValue;Sender"},
		`{"__type":"com.amazonaws.sqs#InvalidParameterValue","message":"bad entries [` + secretHandle + `,` + uuidHandle + `]"}`}
	noOption := func(*sqs.Options) {}
	for _, a := range []answer{failed, refused} {
		url := httpServer(t, a.serve)
		_, lean := clientsAt(t, url)
		for path, call := range map[string]func() (*sqs.DeleteMessageBatchOutput, error){
			"pool": func() (*sqs.DeleteMessageBatchOutput, error) { return lean.DeleteMessageBatch(testkit.Context(t), in) },
			"net/http": func() (*sqs.DeleteMessageBatchOutput, error) {
				return leanOverNetHTTP(t, url).DeleteMessageBatch(testkit.Context(t), in)
			},
			"sdk": func() (*sqs.DeleteMessageBatchOutput, error) {
				return lean.DeleteMessageBatch(testkit.Context(t), in, noOption)
			},
		} {
			out, err := call()
			if a.status != 200 {
				require.Error(t, err, path)
				assert.NotContains(t, err.Error(), secretHandle[:12], path)
				assert.NotContains(t, err.Error(), uuidHandle, path)
				assert.Contains(t, err.Error(), "bad entries [REDACTED,REDACTED]", path)
				var apiErr smithy.APIError
				require.ErrorAs(t, err, &apiErr, path)
				assert.Equal(t, "AWS.SimpleQueueService.InvalidParameterValue", apiErr.ErrorCode(), path)
				var opErr *smithy.OperationError
				require.ErrorAs(t, err, &opErr, path)
				continue
			}
			require.NoError(t, err, path)
			require.Len(t, out.Failed, 2, path)
			assert.Equal(t, "handle REDACTED refused", aws.ToString(out.Failed[0].Message), path)
			assert.Equal(t, "gone: REDACTED; a ok", aws.ToString(out.Failed[1].Message), path, "a handle under 6 bytes is not searched for")
			assert.Equal(t, "ReceiptHandleIsInvalid", aws.ToString(out.Failed[0].Code), path)
			assert.True(t, out.Failed[0].SenderFault, path)
			assert.Equal(t, []types.DeleteMessageBatchResultEntry{{Id: aws.String("2")}}, out.Successful, path)
		}
	}
}

// paddedAnswer serves body with status, padded with trailing blanks (which JSON allows) to size
// bytes, with a Content-Length or, chunked, without one.
func paddedAnswer(status int, body string, size int, chunked bool) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/x-amz-json-1.0")
		w.Header().Set("X-Amzn-Requestid", "req-1")
		if !chunked {
			w.Header().Set("Content-Length", strconv.Itoa(size))
		}
		w.WriteHeader(status)
		if chunked {
			_ = http.NewResponseController(w).Flush() // the header goes without a length: chunked
		}
		_, _ = io.WriteString(w, body)
		_, _ = io.WriteString(w, strings.Repeat(" ", size-len(body)))
	}
}

// TestLeanAnswerBounds: an answer past its operation's bound (a DeleteMessageBatch's 1 MiB; a
// receive's, lowered here) fails the call with ErrAnswerTooLarge on both of Lean's paths, whether
// it announces its length or comes chunked, an error's as well as a success's; an answer at the
// bound is read.
func TestLeanAnswerBounds(t *testing.T) {
	t.Parallel()
	const receiveLimit, deleteLimit = 64 << 10, 1 << 20
	del := &sqs.DeleteMessageBatchInput{QueueUrl: aws.String("http://q/000000000000/q"), Entries: []types.DeleteMessageBatchRequestEntry{
		{Id: aws.String("0"), ReceiptHandle: aws.String("h")},
	}}
	calls := []struct {
		name    string
		limit   int
		success string
		call    func(*queue.Lean) error
	}{
		{"receive", receiveLimit, messagesJSON(wireMessage("x", true, "", "")), func(l *queue.Lean) error {
			out, err := l.ReceiveMessage(testkit.Context(t), receiveInput)
			if err == nil && len(out.Messages) != 1 {
				return fmt.Errorf("%d messages", len(out.Messages))
			}
			return err
		}},
		{"delete", deleteLimit, `{"Successful":[{"Id":"0"}],"Failed":[]}`, func(l *queue.Lean) error {
			out, err := l.DeleteMessageBatch(testkit.Context(t), del)
			if err == nil && len(out.Successful) != 1 {
				return fmt.Errorf("%d deleted", len(out.Successful))
			}
			return err
		}},
	}
	const errorBody = `{"__type":"com.amazonaws.sqs#InternalError","message":"boom"}`
	for _, c := range calls {
		for _, chunked := range []bool{false, true} {
			for _, tc := range []struct {
				status int
				body   string
				size   int
			}{
				{200, c.success, c.limit},
				{200, c.success, c.limit + 1},
				{500, errorBody, c.limit + 1},
			} {
				name := fmt.Sprintf("%s %d %d bytes chunked=%t", c.name, tc.status, tc.size, chunked)
				url := httpServer(t, paddedAnswer(tc.status, tc.body, tc.size, chunked))
				_, pool := clientsAt(t, url)
				for path, lean := range map[string]*queue.Lean{"pool": pool, "net/http": leanOverNetHTTP(t, url)} {
					queue.SetAnswerLimits(lean, receiveLimit, deleteLimit)
					err := c.call(lean)
					if tc.size <= c.limit {
						require.NoError(t, err, "%s %s", name, path)
						continue
					}
					require.ErrorIs(t, err, queue.ErrAnswerTooLarge, "%s %s", name, path)
					var opErr *smithy.OperationError
					require.ErrorAs(t, err, &opErr, "%s %s", name, path)
				}
			}
		}
	}
}

// TestLeanDecodeErrorKeepsAnswer: a successful answer that neither Lean's scanner nor the SDK's
// decoder reads fails the call with an error that keeps the response (awshttp.ResponseError), as
// the SDK's does. Its body holds the whole answer, in memory of its own: later calls through the
// pool, whose response buffers are reused, leave it as it was.
func TestLeanDecodeErrorKeepsAnswer(t *testing.T) {
	t.Parallel()
	const bad = `{"Messages":"not a list of messages, but a string"}`
	good := messagesJSON(wireMessage(strings.Repeat("y", len(bad)), false, "", ""))
	var calls atomic.Int32
	url := httpServer(t, func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) == 1 {
			answer{200, nil, bad}.serve(w, r)
			return
		}
		answer{200, nil, good}.serve(w, r)
	})
	_, pool := clientsAt(t, url)
	for _, path := range []string{"pool", "net/http"} {
		lean := pool
		if path == "net/http" {
			lean = leanOverNetHTTP(t, url)
		}
		calls.Store(0)
		_, err := lean.ReceiveMessage(testkit.Context(t), receiveInput)
		require.Error(t, err, path)
		var respErr *awshttp.ResponseError
		require.ErrorAs(t, err, &respErr, path)
		for range 20 {
			out, err := lean.ReceiveMessage(testkit.Context(t), receiveInput)
			require.NoError(t, err, path)
			require.Len(t, out.Messages, 1, path)
		}
		kept, err := io.ReadAll(respErr.Response.Body)
		require.NoError(t, err, path)
		require.Equal(t, bad, string(kept), path)
	}
}

// lateReader is an HTTP client that answers every request at once and leaves its body to be read
// later, as net/http's transport may: it can still be writing a request's body after Do returned,
// when the server answered before reading it all.
type lateReader struct {
	mu     sync.Mutex
	bodies []io.ReadCloser
}

func (c *lateReader) Do(req *http.Request) (*http.Response, error) {
	c.mu.Lock()
	c.bodies = append(c.bodies, req.Body)
	c.mu.Unlock()
	const answer = `{"Successful":[{"Id":"0"}]}`
	return &http.Response{
		Status: "200 OK", StatusCode: http.StatusOK, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header:        http.Header{"Content-Type": {"application/x-amz-json-1.0"}, "X-Amzn-Requestid": {"req-1"}},
		Body:          io.NopCloser(strings.NewReader(answer)),
		ContentLength: int64(len(answer)), Request: req,
	}, nil
}

// TestLeanNetHTTPOwnsRequestBody: a request sent through net/http keeps its body after the call
// returned: Lean's next requests, written into its pooled buffers, do not change it.
func TestLeanNetHTTPOwnsRequestBody(t *testing.T) {
	t.Parallel()
	client := &lateReader{}
	cfg := testkit.AWSConfig()
	cfg.RetryMaxAttempts = 1
	cfg.HTTPClient = client
	lean, err := queue.NewLean(queue.NewClient(cfg, testkit.AWSAt("", "http://127.0.0.1:1")))
	require.NoError(t, err)
	var handles []string
	for i := range 40 {
		h := fmt.Sprintf("handle-%02d-%s", i, strings.Repeat("x", 100))
		handles = append(handles, h)
		_, err := lean.DeleteMessageBatch(testkit.Context(t), &sqs.DeleteMessageBatchInput{QueueUrl: aws.String("http://q/000000000000/q"),
			Entries: []types.DeleteMessageBatchRequestEntry{{Id: aws.String("0"), ReceiptHandle: aws.String(h)}}})
		require.NoError(t, err)
	}
	require.Len(t, client.bodies, len(handles))
	for i, body := range client.bodies {
		b, err := io.ReadAll(body)
		require.NoError(t, err)
		var req struct {
			Entries []struct{ ReceiptHandle string }
		}
		require.NoError(t, json.Unmarshal(b, &req), "%s", b)
		require.Len(t, req.Entries, 1)
		require.Equal(t, handles[i], req.Entries[0].ReceiptHandle, "request %d", i)
	}
}

// TestRedactHandles: the error of an SQS call given a receipt handle (here the SDK's own
// ChangeMessageVisibility, refused with the handle quoted) loses the handle, whatever its shape,
// and keeps its chain (the API error and its code).
func TestRedactHandles(t *testing.T) {
	t.Parallel()
	url := httpServer(t, answer{400, map[string]string{"X-Amzn-Query-Error": "AWS.SimpleQueueService.InvalidParameterValue;Sender"},
		`{"__type":"com.amazonaws.sqs#InvalidParameterValue","message":"Value ` + secretHandle + ` for parameter ReceiptHandle is invalid. Reason: expired; see <` + secretHandle + `>"}`}.serve)
	sdk, _ := clientsAt(t, url)
	_, err := sdk.ChangeMessageVisibility(testkit.Context(t), &sqs.ChangeMessageVisibilityInput{
		QueueUrl: aws.String("http://q/000000000000/q"), ReceiptHandle: aws.String(secretHandle), VisibilityTimeout: 0,
	})
	require.ErrorContains(t, err, secretHandle, "SQS repeats the handle")
	red := queue.RedactHandles(err, secretHandle)
	require.NotContains(t, red.Error(), secretHandle[:12])
	require.Contains(t, red.Error(), "Value REDACTED for parameter ReceiptHandle is invalid. Reason: expired; see <REDACTED>")
	var apiErr smithy.APIError
	require.ErrorAs(t, red, &apiErr)
	require.Equal(t, "AWS.SimpleQueueService.InvalidParameterValue", apiErr.ErrorCode())
	require.NoError(t, queue.RedactHandles(nil, secretHandle))
}

// TestLeanDeadlineIsCanceledError: a receive that gets no answer before its context's deadline
// fails with the SDK's *smithy.CanceledError, which errors.Is finds context.DeadlineExceeded in,
// on both of Lean's paths. Through the pool, the connection's read times out at the deadline, at
// about the moment the context's timer fires: before, Lean looked at the context first and, most
// times, returned a *smithyhttp.RequestSendError of the i/o timeout, which the consumer took for an
// SQS failure rather than its own deadline.
func TestLeanDeadlineIsCanceledError(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	url := httpServer(t, func(_ http.ResponseWriter, r *http.Request) {
		select { // silent until the client leaves or the test ends
		case <-r.Context().Done():
		case <-release:
		}
	})
	t.Cleanup(func() { close(release) }) // runs before the server's Close, which waits for handlers
	_, pooled := clientsAt(t, url)
	for path, tc := range map[string]struct {
		lean     *queue.Lean
		receives int
	}{
		"pool":     {pooled, 200},
		"net/http": {leanOverNetHTTP(t, url), 20},
	} {
		failed := 0
		for i := range tc.receives {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Millisecond)
			out, err := tc.lean.ReceiveMessage(ctx, receiveInput)
			cancel()
			require.Nil(t, out, path)
			var canceled *smithy.CanceledError
			if !errors.Is(err, context.DeadlineExceeded) || !errors.As(err, &canceled) {
				failed++
				if failed == 1 {
					t.Errorf("%s: receive %d: %T %v: not a *smithy.CanceledError of the deadline", path, i, errors.Unwrap(err), err)
				}
			}
		}
		assert.Zero(t, failed, "%s: receives of %d failing otherwise than with the deadline", path, tc.receives)
	}
}
