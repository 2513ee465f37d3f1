package objstore

import (
	"io"
	"net"
	"net/http"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
)

// Timeouts of intake's AWS clients. A request waits at most its client's response timeout for the
// server's answer once it is sent, so a half-open connection (accepted, then silent: a dead load
// balancer, a frozen server) fails the call instead of hanging its caller forever. Reading a body
// (a GetObject being hashed) is bounded by the caller's context instead.
const (
	// SQSResponseTimeout exceeds SQS's longest long poll (20 s) by a margin.
	SQSResponseTimeout = 30 * time.Second
	// S3ResponseTimeout leaves room for a CopyObject of up to 5 GiB, which some servers (MinIO)
	// answer only once the copy is done.
	S3ResponseTimeout = time.Minute
	// DialTimeout bounds establishing a connection (the SDK's default is 30 s).
	DialTimeout = 5 * time.Second
)

// HTTPClient is the HTTP client every intake AWS client uses: the SDK's default transport with
// room for idle connections per host (the consumer's workers call S3 and SQS concurrently; the
// default keeps 10 and redials the rest), wrapped by WrapHTTPClient. NewClient, NewPresignClient
// and queue.NewClient add their service's response timeout (WithResponseTimeout).
func HTTPClient(idleConns int) aws.HTTPClient {
	return TuneHTTPClient(awshttp.NewBuildableClient(), idleConns)
}

// WithResponseTimeout returns c with its transport's ResponseHeaderTimeout set to d and its dial
// timeout to DialTimeout, when c is (a wrapped) SDK buildable client; any other client, or nil, is
// returned as it is.
func WithResponseTimeout(c aws.HTTPClient, d time.Duration) aws.HTTPClient {
	b, ok := UnwrapHTTPClient(c).(*awshttp.BuildableClient)
	if !ok {
		return c
	}
	return WrapHTTPClient(b.
		WithTransportOptions(func(tr *http.Transport) { tr.ResponseHeaderTimeout = d }).
		WithDialerOptions(func(dl *net.Dialer) { dl.Timeout = DialTimeout }))
}

// TuneHTTPClient gives c (the SDK's buildable client, possibly already carrying a custom CA
// bundle from AWS_CA_BUNDLE) room for idleConns idle connections per host, and wraps it with
// WrapHTTPClient. A client of another type is only wrapped.
func TuneHTTPClient(c aws.HTTPClient, idleConns int) aws.HTTPClient {
	if b, ok := c.(*awshttp.BuildableClient); ok {
		idle := max(idleConns, 10)
		c = b.WithTransportOptions(func(tr *http.Transport) {
			tr.MaxIdleConns, tr.MaxIdleConnsPerHost = idle, idle
		})
	}
	return WrapHTTPClient(c)
}

// WrapHTTPClient returns an SDK HTTP client that hides the io.WriterTo method of request bodies
// from net/http (nil c: the SDK's default client).
//
// Why: smithy-go wraps each request body in a "safe" closer whose WriteTo returns io.EOF once
// closed, and closes it as soon as client.Do returns. net/http's writer, after sending
// ContentLength bytes, copies the rest of the body (normally nothing) with io.Copy, which uses
// WriteTo. When the server answers before that last copy (kumo does on a busy machine), the copy
// fails with io.EOF, net/http closes the connection, and reading the response body fails with
// "use of closed network connection": the call fails after the server did it. For ReceiveMessage
// that hides received messages until their visibility timeout ends. With Read only, io.Copy treats
// the closed body's io.EOF as a normal end.
func WrapHTTPClient(c aws.HTTPClient) aws.HTTPClient {
	if c == nil {
		c = awshttp.NewBuildableClient()
	}
	return readOnlyBodies{c}
}

// UnwrapHTTPClient returns the client WrapHTTPClient wrapped (c itself when it is not wrapped).
func UnwrapHTTPClient(c aws.HTTPClient) aws.HTTPClient {
	if r, ok := c.(readOnlyBodies); ok {
		return r.next
	}
	return c
}

type readOnlyBodies struct{ next aws.HTTPClient }

// readOnlyBody exposes only Read and Close.
type readOnlyBody struct{ io.ReadCloser }

// Do sends req with its body stripped of WriteTo.
func (c readOnlyBodies) Do(req *http.Request) (*http.Response, error) {
	if req.Body != nil && req.Body != http.NoBody {
		if _, ok := req.Body.(io.WriterTo); ok {
			r := *req
			r.Body = readOnlyBody{req.Body}
			req = &r
		}
	}
	return c.next.Do(req)
}
