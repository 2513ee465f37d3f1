package queue

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/schemas"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/middleware"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

// Lean is the consumer's SQS client: an *sqs.Client whose ReceiveMessage and DeleteMessageBatch,
// the two calls on the consumer's hot path, bypass the SDK's middleware stack.
//
// Why: a CPU profile of the consumer put that stack (endpoint rules, retry, signing and checksum
// middleware, smithy decoding) at 10–12% of the process for those two calls. Lean sends them
// itself, in the AWS JSON 1.0 protocol, and keeps the rest of the SDK's path: requests are signed
// by the SDK's SigV4 signer with the client's credentials (retrieved per request from their
// cache), sent by the client's own HTTP client (its transport and response timeout) to the
// endpoint the client resolves, and the answers are decoded by the client's own protocol into the
// SDK's output types (smithy's decoder: faster here than encoding/json). BenchmarkReceiveDelete and
// BenchmarkReceiveDeleteCanned measure the difference.
//
// What it keeps: each received message's MD5OfBody is checked as the SDK checks it, and
// MD5OfMessageAttributes too, which the SDK does not check; a mismatch fails the call. An error
// answer becomes the error the SDK returns for it (*types.QueueDoesNotExist and the other typed
// errors, the code of the x-amzn-query-error header, the fault), wrapped like the SDK's in a
// *smithy.OperationError and an *awshttp.ResponseError with the HTTP status and request ID; a
// transport failure is a *smithyhttp.RequestSendError, a cancelled or expired context a
// *smithy.CanceledError (errors.Is finds context.Canceled or context.DeadlineExceeded).
//
// What it drops: these two calls are never retried (the consumer's receive loop backs off after a
// failed receive and its acker retries failed deletes); the signing time is not corrected for a
// clock skew learnt from earlier answers; and the SDK's per-request extras (user agent,
// invocation ID, logging, tracing and metrics hooks) are not sent or run.
//
// Calls given per-call option functions, and inputs the SDK refuses before sending (a nil QueueUrl
// or Entries, an entry without Id or ReceiptHandle), go through the embedded SDK client, as do all
// other operations.
type Lean struct {
	*sqs.Client

	endpoint string
	region   string
	creds    aws.CredentialsProvider // nil: requests are not signed (anonymous credentials)
	signer   *v4.Signer
	http     aws.HTTPClient
	protocol smithyhttp.ClientProtocol
}

// NewLean returns a Lean over sdk (see NewClient), taking everything from the client's own
// options, so that both paths cannot differ: its HTTP client, credentials, region, protocol and
// endpoint (the configured one, as NewClient sets it from config.AWS.SQSEndpoint, or else the one
// the client's endpoint resolver gives for the region, resolved once here).
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
	creds := o.Credentials
	if aws.IsCredentialsProvider(creds, (*aws.AnonymousCredentials)(nil)) {
		creds = nil
	}
	return &Lean{
		Client: sdk, endpoint: u.String(), region: o.Region, creds: creds,
		signer: v4.NewSigner(), http: o.HTTPClient, protocol: o.Protocol,
	}, nil
}

// receiveRequest is ReceiveMessage's JSON request; fields not set are left out, as the SDK does.
type receiveRequest struct {
	QueueURL                    *string                            `json:"QueueUrl,omitzero"`
	AttributeNames              []types.QueueAttributeName         `json:",omitzero"`
	MessageSystemAttributeNames []types.MessageSystemAttributeName `json:",omitzero"`
	MessageAttributeNames       []string                           `json:",omitzero"`
	MaxNumberOfMessages         int32                              `json:",omitzero"`
	VisibilityTimeout           int32                              `json:",omitzero"`
	WaitTimeSeconds             int32                              `json:",omitzero"`
	ReceiveRequestAttemptID     *string                            `json:"ReceiveRequestAttemptId,omitzero"`
}

// deleteBatchRequest is DeleteMessageBatch's JSON request.
type deleteBatchRequest struct {
	QueueURL *string       `json:"QueueUrl,omitzero"`
	Entries  []deleteEntry `json:",omitzero"`
}

type deleteEntry struct {
	ID            *string `json:"Id,omitzero"`
	ReceiptHandle *string `json:",omitzero"`
}

// Operations Lean makes itself: their names and shapes (for the SDK's decoding of answers).
var (
	opReceiveMessage     = smithy.NewOperationSchema(schemas.ReceiveMessage, schemas.ReceiveMessageRequest, schemas.ReceiveMessageResult)
	opDeleteMessageBatch = smithy.NewOperationSchema(schemas.DeleteMessageBatch, schemas.DeleteMessageBatchRequest, schemas.DeleteMessageBatchResult)
)

// ReceiveMessage is sqs.Client.ReceiveMessage without the middleware stack (see Lean). A message
// whose MD5OfBody or MD5OfMessageAttributes does not match fails the whole call, as a body
// mismatch does in the SDK.
func (l *Lean) ReceiveMessage(ctx context.Context, in *sqs.ReceiveMessageInput, optFns ...func(*sqs.Options)) (*sqs.ReceiveMessageOutput, error) {
	if len(optFns) > 0 || in == nil || in.QueueUrl == nil {
		return l.Client.ReceiveMessage(ctx, in, optFns...)
	}
	req := receiveRequest{
		QueueURL: in.QueueUrl,
		//lint:ignore SA1019 deprecated, still sent as the SDK sends it
		AttributeNames:              in.AttributeNames,
		MessageSystemAttributeNames: in.MessageSystemAttributeNames,
		MessageAttributeNames:       in.MessageAttributeNames,
		MaxNumberOfMessages:         in.MaxNumberOfMessages,
		VisibilityTimeout:           in.VisibilityTimeout,
		WaitTimeSeconds:             in.WaitTimeSeconds,
		ReceiveRequestAttemptID:     in.ReceiveRequestAttemptId,
	}
	out := &sqs.ReceiveMessageOutput{}
	if err := l.call(ctx, opReceiveMessage, req, out, &out.ResultMetadata); err != nil {
		return nil, err
	}
	for _, m := range out.Messages {
		if err := CheckMessage(m); err != nil {
			return nil, operationError(opReceiveMessage, fmt.Errorf("message checksum validation failed, %w", err))
		}
	}
	return out, nil
}

// DeleteMessageBatch is sqs.Client.DeleteMessageBatch without the middleware stack (see Lean).
func (l *Lean) DeleteMessageBatch(ctx context.Context, in *sqs.DeleteMessageBatchInput, optFns ...func(*sqs.Options)) (*sqs.DeleteMessageBatchOutput, error) {
	if len(optFns) > 0 || in == nil || in.QueueUrl == nil || in.Entries == nil || slices.ContainsFunc(in.Entries, func(e types.DeleteMessageBatchRequestEntry) bool {
		return e.Id == nil || e.ReceiptHandle == nil
	}) {
		return l.Client.DeleteMessageBatch(ctx, in, optFns...)
	}
	req := deleteBatchRequest{QueueURL: in.QueueUrl, Entries: make([]deleteEntry, len(in.Entries))}
	for i, e := range in.Entries {
		req.Entries[i] = deleteEntry{ID: e.Id, ReceiptHandle: e.ReceiptHandle}
	}
	out := &sqs.DeleteMessageBatchOutput{}
	if err := l.call(ctx, opDeleteMessageBatch, req, out, &out.ResultMetadata); err != nil {
		return nil, err
	}
	return out, nil
}

// call sends in, encoded as JSON, as the request of op, and decodes the answer into out with the
// SDK's own protocol (also faster than encoding/json), recording its request ID in md.
func (l *Lean) call(ctx context.Context, op *smithy.OperationSchema, in any, out smithy.Deserializable, md *middleware.Metadata) error {
	body, err := json.Marshal(in)
	if err != nil {
		return operationError(op, &smithy.SerializationError{Err: err})
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, l.endpoint, bytes.NewReader(body))
	if err != nil {
		return operationError(op, err)
	}
	req.Header.Set("Content-Type", "application/x-amz-json-1.0")
	req.Header.Set("X-Amz-Target", "AmazonSQS."+op.ID().Name)
	req.Header.Set("X-Amzn-Query-Mode", "true") // as the SDK: errors carry their query-protocol code too
	if l.creds != nil {
		creds, err := l.creds.Retrieve(ctx)
		if err != nil {
			return operationError(op, fmt.Errorf("retrieve credentials: %w", err))
		}
		sum := sha256.Sum256(body)
		if err := l.signer.SignHTTP(ctx, creds, req, hex.EncodeToString(sum[:]), "sqs", l.region, time.Now()); err != nil {
			return operationError(op, fmt.Errorf("sign request: %w", err))
		}
	}
	resp, err := l.http.Do(req)
	if err != nil {
		return operationError(op, sendError(ctx, err))
	}
	defer resp.Body.Close()
	reqID := resp.Header.Get("X-Amzn-Requestid")
	if reqID == "" {
		reqID = resp.Header.Get("X-Amz-RequestId")
	}
	if reqID != "" {
		awsmiddleware.SetRequestIDMetadata(md, reqID)
	}
	// An error status is decoded into the error the SDK returns for it.
	err = l.protocol.DeserializeResponse(ctx, op, sqs.TypeRegistry, &smithyhttp.Response{Response: resp}, out)
	if err != nil {
		return operationError(op, &awshttp.ResponseError{
			ResponseError: &smithyhttp.ResponseError{Response: &smithyhttp.Response{Response: resp}, Err: err},
			RequestID:     reqID,
		})
	}
	return nil
}

// sendError is the SDK's error for a request that got no (whole) answer.
func sendError(ctx context.Context, err error) error {
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
	if m.Body != nil && m.MD5OfBody != nil {
		if sum := md5.Sum([]byte(*m.Body)); hex.EncodeToString(sum[:]) != *m.MD5OfBody {
			return fmt.Errorf("message %s: MD5OfBody %s, body's %x: %w", aws.ToString(m.MessageId), *m.MD5OfBody, sum, ErrChecksum)
		}
	}
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
