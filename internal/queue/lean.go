package queue

import (
	"bytes"
	"cmp"
	"context"
	"crypto/md5"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/schemas"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/middleware"
	smithyhttp "github.com/aws/smithy-go/transport/http"
	"github.com/valyala/fasthttp"

	"github.com/intakehq/intake/internal/h1"
	"github.com/intakehq/intake/internal/jsonstr"
	"github.com/intakehq/intake/internal/objstore"
	"github.com/intakehq/intake/internal/redact"
	"github.com/intakehq/intake/internal/sigv4"
)

// Lean is the consumer's SQS client: an *sqs.Client whose ReceiveMessage and DeleteMessageBatch,
// the two calls on the consumer's hot path, bypass the SDK's middleware stack.
//
// Why: a CPU profile of the consumer put that stack (endpoint rules, retry, signing and checksum
// middleware, smithy decoding) at 10–12% of the process for those two calls; once they skipped
// it, net/http's transport (two goroutines per connection and their handoffs), the SDK's signer
// and encoding/json still took 12% of the consumer's CPU. Lean sends them itself, in the AWS JSON
// 1.0 protocol: the request body is written by hand, signed by sigv4.HeaderSigner (the SDK
// signer's Authorization for the same signed headers) with the client's credentials (retrieved per
// request from their cache), and sent through an h1.Pool mirroring the client's HTTP transport
// (fasthttp's writer and parser in the calling goroutine; see package h1), or through the client's
// own HTTP client when the pool cannot (a proxy, the connection limit reached, a client that is
// not the SDK's buildable one); an exchange through the pool is bounded by
// objstore.SQSResponseTimeout, as NewClient bounds the HTTP client's. Requests go to the endpoint
// the client resolves, and the answers are decoded by the client's own protocol into the SDK's
// output types (smithy's decoder: faster here than encoding/json), except successful answers in
// the plain form SQS sends, which scanReceive and scanDeleteBatch read into the same values in
// one pass. BenchmarkReceiveDelete and BenchmarkReceiveDeleteCanned measure the difference.
//
// What it keeps: each received message's MD5OfBody is checked, as the SDK checks it, and
// MD5OfMessageAttributes too, which the SDK does not check; but message by message, where a body
// mismatch fails the SDK's whole call (see ReceiveMessage and ChecksumFailures). An error answer
// becomes the error the SDK returns for it (*types.QueueDoesNotExist and the other typed
// errors, the code of the x-amzn-query-error header, the fault), wrapped like the SDK's in a
// *smithy.OperationError and an *awshttp.ResponseError with the HTTP status and request ID; a
// transport failure is a *smithyhttp.RequestSendError, a cancelled or expired context a
// *smithy.CanceledError (errors.Is finds context.Canceled or context.DeadlineExceeded).
//
// What it changes: the receipt handles of a DeleteMessageBatch request are masked wherever the
// answer repeats them, in a failed entry's Message and in the call's error (see
// DeleteMessageBatch). An answer larger than SQS can give (maxResponseBody; 1 MiB for a
// DeleteMessageBatch) fails the call, through either path.
//
// What it drops: these two calls are never retried (the consumer's receive loop backs off after a
// failed receive and its acker retries failed deletes); the signing time is not corrected for a
// clock skew learnt from earlier answers; and the SDK's per-request extras (user agent,
// invocation ID, logging, tracing and metrics hooks) are not sent or run.
//
// Calls given per-call option functions, inputs the SDK refuses before sending (a nil QueueUrl
// or Entries, an entry without Id or ReceiptHandle), and every call when the endpoint's path is
// one SigV4 would escape, go through the embedded SDK client, as do all other operations. (In the
// last case a receive's digests are still checked per message, by Lean instead of the SDK.)
type Lean struct {
	*sqs.Client

	endpoint string // the URL requests are sent to
	scheme   string // "http" or "https"
	hostport string // the endpoint's host[:port], as dialled
	host     string // the Host header sent and signed: hostport without a default port
	path     string // the endpoint's escaped path, "/" at least
	sdkOnly  bool   // the path is not one sigv4.HeaderSigner signs: every call goes through the SDK

	signer   *sigv4.HeaderSigner // nil: requests are not signed (anonymous credentials)
	pool     *h1.Pool            // nil: every request goes through http
	http     aws.HTTPClient
	protocol smithyhttp.ClientProtocol

	// The bounds of an answer's body: maxResponseBody and maxDeleteBatchAnswer (fields so that
	// tests can lower them).
	receiveLimit, deleteLimit int
}

// NewLean returns a Lean over sdk (see NewClient), taking everything from the client's own
// options, so that both paths cannot differ: its HTTP client (whose transport the h1.Pool
// mirrors), credentials, region, protocol and endpoint (the configured one, as NewClient sets it
// from config.AWS.SQSEndpoint, or else the one the client's endpoint resolver gives for the
// region, resolved once here).
func NewLean(sdk *sqs.Client) (*Lean, error) {
	o := sdk.Options()
	if o.HTTPClient == nil || o.Protocol == nil {
		return nil, errors.New("lean SQS client: the SDK client has no HTTP client or protocol")
	}
	resolver := o.EndpointResolverV2
	if resolver == nil {
		resolver = sqs.NewDefaultEndpointResolverV2()
	}
	ep, err := resolver.ResolveEndpoint(context.Background(), sqs.EndpointParameters{
		Region:       aws.String(o.Region),
		UseDualStack: aws.Bool(o.EndpointOptions.UseDualStackEndpoint == aws.DualStackEndpointStateEnabled),
		UseFIPS:      aws.Bool(o.EndpointOptions.UseFIPSEndpoint == aws.FIPSEndpointStateEnabled),
		Endpoint:     o.BaseEndpoint,
	})
	if err != nil {
		return nil, fmt.Errorf("resolve SQS endpoint: %w", err)
	}
	u := ep.URI
	if u.Path == "" {
		u.Path = "/"
	}
	l := &Lean{
		Client: sdk, endpoint: u.String(), scheme: u.Scheme, hostport: u.Host, host: u.Host,
		path: u.EscapedPath(), http: o.HTTPClient, protocol: o.Protocol,
		receiveLimit: maxResponseBody, deleteLimit: maxDeleteBatchAnswer,
	}
	if p := u.Port(); (u.Scheme == "http" && p == "80") || (u.Scheme == "https" && p == "443") {
		l.host = strings.TrimSuffix(u.Host, ":"+p)
	}
	l.sdkOnly = !sigv4.CanonicalPath(l.path)
	if creds := o.Credentials; creds != nil && !aws.IsCredentialsProvider(creds, (*aws.AnonymousCredentials)(nil)) {
		if l.signer, err = sigv4.NewHeaderSigner(creds, o.Region, "sqs"); err != nil {
			return nil, fmt.Errorf("lean SQS client: %w", err)
		}
	}
	if b, ok := objstore.UnwrapHTTPClient(o.HTTPClient).(*awshttp.BuildableClient); ok && (u.Scheme == "http" || u.Scheme == "https") {
		l.pool = h1.NewPool(b, objstore.SQSResponseTimeout, objstore.DialTimeout)
	}
	return l, nil
}

// Operations Lean makes itself: their names and shapes (for the SDK's decoding of answers).
var (
	opReceiveMessage     = smithy.NewOperationSchema(schemas.ReceiveMessage, schemas.ReceiveMessageRequest, schemas.ReceiveMessageResult)
	opDeleteMessageBatch = smithy.NewOperationSchema(schemas.DeleteMessageBatch, schemas.DeleteMessageBatchRequest, schemas.DeleteMessageBatchResult)
)

// ReceiveMessage is sqs.Client.ReceiveMessage without the middleware stack (see Lean). Its
// messages' digests are checked one by one, not as the SDK checks them (a body mismatch fails the
// SDK's whole call, hiding the other messages of the answer until their visibility timeout and
// counting a receive against each):
//
//   - a message whose MD5OfBody does not match its body is left out of Messages. It stays in the
//     queue, hidden for the visibility timeout it was received with, then is received again; its
//     receive counts towards the queue's redrive policy like any other, so a message that always
//     arrives damaged ends in the dead-letter queue.
//   - a message whose MD5OfMessageAttributes does not match its attributes is kept: its body
//     matched, the SDK does not check attribute digests at all (a server, or an emulator, that
//     computes them differently must not stop every message with attributes), and nothing but the
//     body decides what a message does.
//
// Both are reported in the answer's ResultMetadata (ChecksumFailures), for the caller to log and
// count. Calls given option functions go through the SDK unchanged.
func (l *Lean) ReceiveMessage(ctx context.Context, in *sqs.ReceiveMessageInput, optFns ...func(*sqs.Options)) (*sqs.ReceiveMessageOutput, error) {
	if len(optFns) > 0 || in == nil || in.QueueUrl == nil {
		return l.Client.ReceiveMessage(ctx, in, optFns...)
	}
	if l.sdkOnly {
		// The SDK sends it, without its own check of the digests, which checkMessages does.
		out, err := l.Client.ReceiveMessage(ctx, in, func(o *sqs.Options) { o.DisableMessageChecksumValidation = true })
		if err != nil {
			return nil, err
		}
		checkMessages(out)
		return out, nil
	}
	bp := bodyPool.Get().(*[]byte)
	defer bodyPool.Put(bp)
	*bp = appendReceiveRequest((*bp)[:0], in)
	out := &sqs.ReceiveMessageOutput{}
	if err := l.call(ctx, opReceiveMessage, targetReceiveMessage, *bp, l.receiveLimit, out, &out.ResultMetadata); err != nil {
		return nil, err
	}
	checkMessages(out)
	return out, nil
}

// ChecksumFailure is a message of a ReceiveMessage answer whose digest did not match. A message
// left out of the answer (DigestBody) is in flight all the same: ReceiptHandle (and Message, for a
// copy sent to a dead-letter queue) lets the caller settle it (make it visible later, dead-letter
// it, delete it), which a queue without a redrive policy needs, or the message comes back until
// the queue's retention ends.
//
// ReceiptHandle is a secret (it lets whoever holds it delete the message or hide it again): the
// forms a ChecksumFailure is logged or printed in (String, LogValue, every fmt verb, JSON) leave it
// and Message out.
type ChecksumFailure struct {
	// MessageID is the message's id.
	MessageID string
	// Digest is DigestBody (the message was left out of the answer's Messages) or DigestAttributes
	// (the message was kept).
	Digest string
	// ReceiptHandle is the message's receipt handle (never printed: see above).
	ReceiptHandle string `json:"-"`
	// ReceiveCount is the message's ApproximateReceiveCount, 0 when the receive did not ask for it
	// (MessageSystemAttributeNames: ApproximateReceiveCount or All).
	ReceiveCount int
	// Message is the message as received, its body and attributes unverified (never printed: it
	// holds the receipt handle).
	Message types.Message `json:"-"`
	// Err says what did not match; it wraps ErrChecksum.
	Err error
}

// String describes the failure: its message id, digest, receive count and Err, not its receipt
// handle.
func (f ChecksumFailure) String() string {
	return fmt.Sprintf("message %s: %s digest (receive count %d): %v", f.MessageID, f.Digest, f.ReceiveCount, f.Err)
}

// Format prints String for every verb (%q quotes it), so that no verb prints the fields one by
// one, the receipt handle among them.
func (f ChecksumFailure) Format(s fmt.State, verb rune) {
	if verb == 'q' {
		_, _ = io.WriteString(s, strconv.Quote(f.String()))
		return
	}
	_, _ = io.WriteString(s, f.String())
}

// LogValue logs the failure's message id, digest, receive count and error, not its receipt handle.
func (f ChecksumFailure) LogValue() slog.Value {
	return slog.GroupValue(slog.String("message_id", f.MessageID), slog.String("digest", f.Digest),
		slog.Int("receive_count", f.ReceiveCount), slog.Any("err", f.Err))
}

// The digests a ChecksumFailure names.
const (
	DigestBody       = "body"       // MD5OfBody
	DigestAttributes = "attributes" // MD5OfMessageAttributes
)

// checksumFailuresKey is the ResultMetadata key of a ReceiveMessage answer's checksum failures.
type checksumFailuresKey struct{}

// ChecksumFailures returns the messages of a ReceiveMessage answer from Lean (its ResultMetadata)
// whose digests did not match (see Lean.ReceiveMessage); nil when all did, or when the answer came
// from another client.
func ChecksumFailures(md middleware.Metadata) []ChecksumFailure {
	f, _ := md.Get(checksumFailuresKey{}).([]ChecksumFailure)
	return f
}

// checkMessages checks the digests of out's messages, leaves out those whose body does not match,
// and records every mismatch in out's ResultMetadata.
func checkMessages(out *sqs.ReceiveMessageOutput) {
	var failures []ChecksumFailure
	kept := out.Messages[:0]
	failure := func(m types.Message, digest string, err error) ChecksumFailure {
		n, _ := strconv.Atoi(m.Attributes[string(types.MessageSystemAttributeNameApproximateReceiveCount)])
		return ChecksumFailure{
			MessageID: aws.ToString(m.MessageId), Digest: digest, ReceiptHandle: aws.ToString(m.ReceiptHandle),
			ReceiveCount: n, Message: m, Err: err,
		}
	}
	for _, m := range out.Messages {
		if err := checkBody(m); err != nil {
			failures = append(failures, failure(m, DigestBody, err))
			continue
		}
		if err := checkAttributes(m); err != nil {
			failures = append(failures, failure(m, DigestAttributes, err))
		}
		kept = append(kept, m)
	}
	clear(out.Messages[len(kept):]) // no reference to a dropped message stays in the backing array
	out.Messages = kept
	if failures != nil {
		out.ResultMetadata.Set(checksumFailuresKey{}, failures)
	}
}

// DeleteMessageBatch is sqs.Client.DeleteMessageBatch without the middleware stack (see Lean).
// The receipt handles of in are masked (redact.Mask) wherever SQS repeats them, in a failed
// entry's Message and in the error of a failed call (errors.As still finds the SDK's error): SQS
// quotes the handle it refuses ("The input receipt handle "AQEB…" is not a valid receipt
// handle."), and callers log both. So on every path, the SDK's included.
func (l *Lean) DeleteMessageBatch(ctx context.Context, in *sqs.DeleteMessageBatchInput, optFns ...func(*sqs.Options)) (*sqs.DeleteMessageBatchOutput, error) {
	out, err := l.deleteMessageBatch(ctx, in, optFns...)
	if err == nil && len(out.Failed) == 0 {
		return out, nil
	}
	var handles []string
	if in != nil {
		for _, e := range in.Entries {
			handles = append(handles, aws.ToString(e.ReceiptHandle))
		}
	}
	r := redact.New(handles...)
	if err != nil {
		return out, r.Error(err)
	}
	for i, f := range out.Failed {
		if f.Message != nil {
			out.Failed[i].Message = aws.String(r.String(*f.Message))
		}
	}
	return out, nil
}

// deleteMessageBatch is DeleteMessageBatch before the handles are masked.
func (l *Lean) deleteMessageBatch(ctx context.Context, in *sqs.DeleteMessageBatchInput, optFns ...func(*sqs.Options)) (*sqs.DeleteMessageBatchOutput, error) {
	if len(optFns) > 0 || in == nil || in.QueueUrl == nil || in.Entries == nil || slices.ContainsFunc(in.Entries, func(e types.DeleteMessageBatchRequestEntry) bool {
		return e.Id == nil || e.ReceiptHandle == nil
	}) || l.sdkOnly {
		return l.Client.DeleteMessageBatch(ctx, in, optFns...)
	}
	bp := bodyPool.Get().(*[]byte)
	defer bodyPool.Put(bp)
	*bp = appendDeleteBatchRequest((*bp)[:0], in)
	out := &sqs.DeleteMessageBatchOutput{}
	if err := l.call(ctx, opDeleteMessageBatch, targetDeleteMessageBatch, *bp, l.deleteLimit, out, &out.ResultMetadata); err != nil {
		return nil, err
	}
	return out, nil
}

// RedactHandles returns err with every one of the receipt handles masked (redact.Mask) in its
// message, in the forms an error may quote them (as written, escaped by %q or for a URL), and
// with what redact.String masks; errors.Is and errors.As still see err. For the errors of SQS
// calls given receipt handles (ChangeMessageVisibility, DeleteMessage and their batches): SQS
// repeats a refused handle in its error, in shapes that change, and the error is logged. Lean's
// DeleteMessageBatch does it itself.
func RedactHandles(err error, handles ...string) error {
	return redact.New(handles...).Error(err)
}

// Headers and bounds of Lean's requests.
const (
	jsonContentType          = "application/x-amz-json-1.0"
	targetReceiveMessage     = "AmazonSQS.ReceiveMessage"
	targetDeleteMessageBatch = "AmazonSQS.DeleteMessageBatch"
	// maxResponseBody bounds a ReceiveMessage answer, on both paths (and what a caller of the
	// pool's parser may see it allocate for a claimed Content-Length: see maxDeleteBatchAnswer). It
	// must hold the largest answer SQS can give, whatever a sender put in the queue: ten messages
	// of SQS's largest size (1 MiB, attributes included), each written at up to six bytes per byte
	// by JSON's escapes (\u003c): about 60 MiB. A receive that fails after SQS sent its messages
	// hides them until their visibility timeout and counts a receive against each, so a bound
	// that a hostile message could exceed would push its innocent neighbours towards the
	// dead-letter queue.
	maxResponseBody = 256 << 20
	// maxDeleteBatchAnswer bounds a DeleteMessageBatch answer, on both paths: ten entries, each
	// an Id of up to 80 characters and, when failed, a code and a message (quoting a receipt
	// handle of up to 1 KiB at most) take a few KiB. The pool's parser allocates a claimed
	// Content-Length up to the bound before a byte of the body arrives: 1 MiB keeps that small.
	maxDeleteBatchAnswer = 1 << 20
)

// ErrAnswerTooLarge is wrapped by the error of a call whose answer's body exceeds the bound of its
// operation (maxResponseBody, maxDeleteBatchAnswer).
var ErrAnswerTooLarge = errors.New("SQS answer exceeds its size bound")

// bodyPool holds request body buffers.
var bodyPool = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// call sends body, the JSON request of op (X-Amz-Target target), signed, and decodes the answer,
// whose body may hold up to limit bytes, into out with the SDK's own protocol, recording its
// request ID in md. body may be a pooled buffer: it is not read once call returns.
func (l *Lean) call(ctx context.Context, op *smithy.OperationSchema, target string, body []byte, limit int, out smithy.Deserializable, md *middleware.Metadata) error {
	var auth sigv4.HeaderAuth
	if l.signer != nil {
		var err error
		auth, err = l.signer.SignJSON(ctx, sigv4.JSONRequest{
			Host: l.host, Path: l.path, ContentType: jsonContentType, Target: target, Body: body, Now: time.Now(),
		})
		if err != nil {
			return operationError(op, err)
		}
	}
	if l.pool != nil {
		if err := l.callPool(ctx, op, target, body, auth, limit, out, md); !errors.Is(err, h1.ErrNetHTTP) {
			return err
		}
	}
	// net/http's transport may still read a request's body after Do returned (a server that
	// answered before reading it all), when body's pooled buffer serves another request: it gets
	// a copy of its own.
	return l.callHTTP(ctx, op, target, bytes.Clone(body), auth, limit, out, md)
}

// callPool sends the signed request through the pool; h1.ErrNetHTTP says that the request is for
// the HTTP client. It may have been sent already: on a pooled connection the server closed without
// answering, when the host's connection limit left no place to send it again (h1.Pool.Do); the
// HTTP client then sends it once more, as the pool would have on a new connection (Lean's requests
// are safe to repeat: see package h1).
func (l *Lean) callPool(ctx context.Context, op *smithy.OperationSchema, target string, body []byte, auth sigv4.HeaderAuth, limit int, out smithy.Deserializable, md *middleware.Metadata) error {
	if err := ctx.Err(); err != nil {
		return operationError(op, sendError(ctx, err))
	}
	req := fasthttp.AcquireRequest()
	defer fasthttp.ReleaseRequest(req)
	req.Header.SetMethod(http.MethodPost)
	req.Header.SetHost(l.host)
	req.SetRequestURI(l.path)
	setHeaders(req.Header.Set, target, auth)
	req.SetBodyRaw(body)
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseResponse(resp)
	resp.Header.SetNoDefaultContentType(true)
	if err := l.pool.Do(ctx, l.scheme, l.hostport, req, resp, limit); err != nil {
		if errors.Is(err, h1.ErrNetHTTP) {
			return err
		}
		if errors.Is(err, fasthttp.ErrBodyTooLarge) {
			err = fmt.Errorf("%w (%d bytes): %w", ErrAnswerTooLarge, limit, err)
		}
		return operationError(op, sendError(ctx, err))
	}
	reqID := requestID(func(k string) string { return string(resp.Header.Peek(k)) })
	status := resp.StatusCode()
	if status >= 200 && status <= 299 && scanned(out, resp.Body()) { // copies what it keeps
		if reqID != "" {
			awsmiddleware.SetRequestIDMetadata(md, reqID)
		}
		return nil
	}
	hr := &http.Response{
		Status: strconv.Itoa(status) + " " + http.StatusText(status), StatusCode: status,
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1, Header: http.Header{},
	}
	respBody := resp.Body()
	pooled := true
	if status < 200 || status > 299 {
		// An error keeps the response (awshttp.ResponseError): it must not share the pooled one.
		respBody, pooled = bytes.Clone(respBody), false
		for k, v := range resp.Header.All() {
			hr.Header.Add(string(k), string(v))
		}
	}
	hr.Body, hr.ContentLength = io.NopCloser(bytes.NewReader(respBody)), int64(len(respBody))
	err := l.decode(ctx, op, hr, reqID, out, md)
	if err != nil {
		// The error keeps hr (awshttp.ResponseError). A 2xx answer the decoder refused was read
		// from the pooled response, which ReleaseResponse hands to the next exchange: the error
		// gets a copy, and the whole answer to read, not the decoder's leftovers.
		if pooled {
			respBody = bytes.Clone(respBody)
		}
		hr.Body = io.NopCloser(bytes.NewReader(respBody))
	}
	return err
}

// callHTTP sends the signed request through the client's HTTP client, which may read body after
// callHTTP returned (call gives it a copy).
func (l *Lean) callHTTP(ctx context.Context, op *smithy.OperationSchema, target string, body []byte, auth sigv4.HeaderAuth, limit int, out smithy.Deserializable, md *middleware.Metadata) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, l.endpoint, bytes.NewReader(body))
	if err != nil {
		return operationError(op, err)
	}
	req.Host = l.host
	setHeaders(req.Header.Set, target, auth)
	resp, err := l.http.Do(req)
	if err != nil {
		return operationError(op, sendError(ctx, err))
	}
	defer resp.Body.Close()
	reqID := requestID(resp.Header.Get)
	// The answer is read up to limit bytes, as through the pool: an error's by the SDK's decoder,
	// which then fails with ErrAnswerTooLarge.
	capped := &cappedReader{r: resp.Body, left: int64(limit), limit: limit}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		resp.Body = struct {
			io.Reader
			io.Closer
		}{capped, resp.Body}
		return l.decode(ctx, op, resp, reqID, out, md)
	}
	// A receive's or a delete's answer (see scanned): read whole, as the SDK's decoder would;
	// sized by the announced length (up to 1 MiB).
	buf := bytes.NewBuffer(make([]byte, 0, min(max(resp.ContentLength, 0), 1<<20)+bytes.MinRead))
	_, err = buf.ReadFrom(capped)
	if errors.Is(err, ErrAnswerTooLarge) {
		return operationError(op, sendError(ctx, err))
	}
	answer := buf.Bytes()
	if err == nil && scanned(out, answer) {
		if reqID != "" {
			awsmiddleware.SetRequestIDMetadata(md, reqID)
		}
		return nil
	}
	// The SDK's decoder reads what was read, and the read's error if there was one.
	resp.Body = io.NopCloser(io.MultiReader(bytes.NewReader(answer), errorReader{err}))
	if derr := l.decode(ctx, op, resp, reqID, out, md); derr != nil {
		if err == nil { // the error keeps resp: the whole answer to read, as through the pool
			resp.Body = io.NopCloser(bytes.NewReader(answer))
		}
		return derr
	}
	return nil
}

// cappedReader reads r, failing with ErrAnswerTooLarge once more than limit bytes would come.
type cappedReader struct {
	r     io.Reader
	left  int64 // bytes still allowed; -1 once the bound was passed
	limit int
}

func (c *cappedReader) Read(p []byte) (int, error) {
	if c.left < 0 {
		return 0, c.tooLarge()
	}
	if int64(len(p)) > c.left+1 {
		p = p[:c.left+1] // one byte more than allowed tells a body at the bound from a larger one
	}
	n, err := c.r.Read(p)
	if int64(n) > c.left {
		n, c.left = int(c.left), -1
		return n, c.tooLarge()
	}
	c.left -= int64(n)
	return n, err
}

func (c *cappedReader) tooLarge() error {
	return fmt.Errorf("%w (%d bytes)", ErrAnswerTooLarge, c.limit)
}

// scanned reads body, a successful answer, into out with the one-pass decoders (scanReceive,
// scanDeleteBatch) when out is theirs and body has their form; false leaves out untouched and the
// answer to the SDK's decoder.
func scanned(out smithy.Deserializable, body []byte) bool {
	switch out := out.(type) {
	case *sqs.ReceiveMessageOutput:
		msgs, ok := scanReceive(body)
		if ok {
			out.Messages = msgs
		}
		return ok
	case *sqs.DeleteMessageBatchOutput:
		d, ok := scanDeleteBatch(body)
		if ok {
			out.Successful, out.Failed = d.Successful, d.Failed
		}
		return ok
	}
	return false
}

// errorReader is a reader that fails with err, or ends if err is nil.
type errorReader struct{ err error }

func (r errorReader) Read([]byte) (int, error) { return 0, cmp.Or(r.err, io.EOF) }

// setHeaders sets the headers of a request of the JSON protocol signed with auth, through the
// header setter of the request's client (fasthttp's or net/http's).
func setHeaders(set func(name, value string), target string, auth sigv4.HeaderAuth) {
	set("Content-Type", jsonContentType)
	set("X-Amz-Target", target)
	set("X-Amzn-Query-Mode", "true") // as the SDK: errors carry their query-protocol code too
	if auth.Authorization != "" {
		set("X-Amz-Date", auth.Date)
		if auth.SecurityToken != "" {
			set("X-Amz-Security-Token", auth.SecurityToken)
		}
		set("Authorization", auth.Authorization)
	}
}

// requestID is an answer's request ID, from its header getter: X-Amzn-RequestId, or else the older
// X-Amz-RequestId.
func requestID(get func(name string) string) string {
	if id := get("X-Amzn-Requestid"); id != "" {
		return id
	}
	return get("X-Amz-Requestid")
}

// decode records the request ID in md and decodes resp into out, an error status into the error
// the SDK returns for it.
func (l *Lean) decode(ctx context.Context, op *smithy.OperationSchema, resp *http.Response, reqID string, out smithy.Deserializable, md *middleware.Metadata) error {
	if reqID != "" {
		awsmiddleware.SetRequestIDMetadata(md, reqID)
	}
	err := l.protocol.DeserializeResponse(ctx, op, sqs.TypeRegistry, &smithyhttp.Response{Response: resp}, out)
	if err != nil {
		return operationError(op, &awshttp.ResponseError{
			ResponseError: &smithyhttp.ResponseError{Response: &smithyhttp.Response{Response: resp}, Err: err},
			RequestID:     reqID,
		})
	}
	return nil
}

// appendReceiveRequest appends ReceiveMessage's JSON request: fields not set are left out, as the
// SDK does (a list is sent when it is not nil, even empty).
func appendReceiveRequest(dst []byte, in *sqs.ReceiveMessageInput) []byte {
	dst = append(dst, `{"QueueUrl":`...)
	dst = jsonstr.Append(dst, *in.QueueUrl)
	//lint:ignore SA1019 deprecated, still sent as the SDK sends it
	if names := in.AttributeNames; names != nil {
		dst = append(dst, `,"AttributeNames":`...)
		dst = appendJSONStrings(dst, names)
	}
	if names := in.MessageSystemAttributeNames; names != nil {
		dst = append(dst, `,"MessageSystemAttributeNames":`...)
		dst = appendJSONStrings(dst, names)
	}
	if names := in.MessageAttributeNames; names != nil {
		dst = append(dst, `,"MessageAttributeNames":`...)
		dst = appendJSONStrings(dst, names)
	}
	dst = appendJSONInt(dst, "MaxNumberOfMessages", in.MaxNumberOfMessages)
	dst = appendJSONInt(dst, "VisibilityTimeout", in.VisibilityTimeout)
	dst = appendJSONInt(dst, "WaitTimeSeconds", in.WaitTimeSeconds)
	if in.ReceiveRequestAttemptId != nil {
		dst = append(dst, `,"ReceiveRequestAttemptId":`...)
		dst = jsonstr.Append(dst, *in.ReceiveRequestAttemptId)
	}
	return append(dst, '}')
}

// appendDeleteBatchRequest appends DeleteMessageBatch's JSON request (every entry has an Id and a
// ReceiptHandle: DeleteMessageBatch checked).
func appendDeleteBatchRequest(dst []byte, in *sqs.DeleteMessageBatchInput) []byte {
	dst = append(dst, `{"QueueUrl":`...)
	dst = jsonstr.Append(dst, *in.QueueUrl)
	dst = append(dst, `,"Entries":[`...)
	for i, e := range in.Entries {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, `{"Id":`...)
		dst = jsonstr.Append(dst, *e.Id)
		dst = append(dst, `,"ReceiptHandle":`...)
		dst = jsonstr.Append(dst, *e.ReceiptHandle)
		dst = append(dst, '}')
	}
	return append(dst, ']', '}')
}

// appendJSONInt appends `,"name":v` unless v is 0 (left out, as the SDK does).
func appendJSONInt(dst []byte, name string, v int32) []byte {
	if v == 0 {
		return dst
	}
	dst = append(dst, ',', '"')
	dst = append(dst, name...)
	dst = append(dst, '"', ':')
	return strconv.AppendInt(dst, int64(v), 10)
}

// appendJSONStrings appends a JSON array of strings.
func appendJSONStrings[S ~string](dst []byte, list []S) []byte {
	dst = append(dst, '[')
	for i, v := range list {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = jsonstr.Append(dst, string(v))
	}
	return append(dst, ']')
}

// sendError is the SDK's error for a request that got no (whole) answer: a *smithy.CanceledError
// of ctx's error when ctx ended, else a *smithyhttp.RequestSendError. An exchange through the pool
// is bounded by ctx's deadline too: its read times out at about the moment ctx's timer fires, maybe
// just before. A timeout once the deadline has passed is the deadline's, so sendError waits for
// the timer (at once due) instead of reporting an i/o timeout.
func sendError(ctx context.Context, err error) error {
	if d, ok := ctx.Deadline(); ok && h1.IsTimeout(err) && !time.Now().Before(d) {
		<-ctx.Done()
	}
	if ctx.Err() != nil {
		return &smithy.CanceledError{Err: ctx.Err()}
	}
	return &smithyhttp.RequestSendError{Err: err}
}

func operationError(op *smithy.OperationSchema, err error) error {
	return &smithy.OperationError{ServiceID: sqs.ServiceID, OperationName: op.ID().Name, Err: err}
}

// ErrChecksum is wrapped by the errors CheckMessage returns.
var ErrChecksum = errors.New("checksum mismatch")

// CheckMessage verifies a received message's MD5OfBody against its body and its
// MD5OfMessageAttributes against the message attributes received (MD5OfMessageAttributes), as the
// AWS SDKs that check attributes (Java, .NET, PHP, Ruby) do. Like the Go SDK for bodies, it checks
// only what the server sent: a digest without its value, or a value without its digest, is not
// checked.
func CheckMessage(m types.Message) error {
	if err := checkBody(m); err != nil {
		return err
	}
	return checkAttributes(m)
}

// checkBody checks a message's MD5OfBody, when it has a body and the digest (see CheckMessage).
func checkBody(m types.Message) error {
	if m.Body != nil && m.MD5OfBody != nil {
		if sum := md5.Sum([]byte(*m.Body)); hex.EncodeToString(sum[:]) != *m.MD5OfBody {
			return fmt.Errorf("message %s: MD5OfBody %s, body's %x: %w", aws.ToString(m.MessageId), *m.MD5OfBody, sum, ErrChecksum)
		}
	}
	return nil
}

// checkAttributes checks a message's MD5OfMessageAttributes, when it has attributes and the digest
// (see CheckMessage).
func checkAttributes(m types.Message) error {
	if len(m.MessageAttributes) > 0 && m.MD5OfMessageAttributes != nil {
		if sum := MD5OfMessageAttributes(m.MessageAttributes); sum != *m.MD5OfMessageAttributes {
			return fmt.Errorf("message %s: MD5OfMessageAttributes %s, attributes' %s: %w", aws.ToString(m.MessageId), *m.MD5OfMessageAttributes, sum, ErrChecksum)
		}
	}
	return nil
}

// MD5OfMessageAttributes is the hex MD5 digest SQS gives of message attributes: over the
// attributes sorted by name, each encoded as its name, its data type and, after one byte for the
// transport type (1 for a string value: String and Number; 2 for a binary value), its value; each
// of the three preceded by its length as 4 bytes, big-endian. (SQS accepts no list values.)
func MD5OfMessageAttributes(attrs map[string]types.MessageAttributeValue) string {
	h := md5.New()
	var n [4]byte
	put := func(b []byte) {
		binary.BigEndian.PutUint32(n[:], uint32(len(b)))
		h.Write(n[:])
		h.Write(b)
	}
	for _, name := range slices.Sorted(maps.Keys(attrs)) {
		v := attrs[name]
		put([]byte(name))
		put([]byte(aws.ToString(v.DataType)))
		if v.StringValue != nil {
			h.Write([]byte{1})
			put([]byte(*v.StringValue))
		} else {
			h.Write([]byte{2})
			put(v.BinaryValue)
		}
	}
	return hex.EncodeToString(h.Sum(nil))
}
