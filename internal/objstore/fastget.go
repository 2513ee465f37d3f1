package objstore

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/valyala/fasthttp"

	"github.com/intakehq/intake/internal/h1"
	"github.com/intakehq/intake/internal/redact"
)

// errNetHTTP says that a GET is for net/http, not fastGetter: h1.ErrNetHTTP (a proxy applies to its
// host, the host has as many connections as the transport allows), the answer is larger than
// fastGetter buffers (a body beyond the Range, which the server ignored; a header beyond
// h1.ReadBuffer), or it is a 200 without Content-Range on a connection the server closes, whose
// size fasthttp cannot tell (see fastGetter.getRange).
var errNetHTTP = errors.New("objstore: presigned GET left to net/http")

// fastGetter sends Peek's presigned ranged GETs through an h1.Pool: fasthttp's HTTP/1.1 request
// writer and response parser, in the calling goroutine, over keep-alive connections mirroring the
// SDK client's transport (see package h1). net/http spends two goroutines per connection and
// channel handoffs on every request, about a quarter of the consumer's CPU; this path spends none.
// Exchanges are bounded by S3ResponseTimeout and the context's deadline.
type fastGetter struct{ pool *h1.Pool }

// newFastGetter returns the fasthttp sender for an S3 client's HTTP client, or nil when that is not
// the SDK's buildable client (possibly wrapped: see UnwrapHTTPClient), whose transport it can
// mirror, or the transport dials TLS its own way. Any other client keeps every presigned GET on
// net/http.
func newFastGetter(c aws.HTTPClient) *fastGetter {
	b, ok := UnwrapHTTPClient(c).(*awshttp.BuildableClient)
	if !ok {
		return nil
	}
	pool := h1.NewPool(b, S3ResponseTimeout, DialTimeout)
	if pool == nil {
		return nil
	}
	return &fastGetter{pool: pool}
}

// getRange sends the presigned GET u of bytes [0, n). It returns errNetHTTP when net/http must
// send it instead (sending it again when the answer was one fastGetter cannot read: see
// errNetHTTP); other results are as presignedGetter.getRange's.
func (g *fastGetter) getRange(ctx context.Context, u string, n int) (rangeReply, error) {
	scheme, rest, _ := strings.Cut(u, "://")
	name, target := rest, "/"
	if i := strings.IndexByte(rest, '/'); i >= 0 {
		name, target = rest[:i], rest[i:]
	}
	if err := ctx.Err(); err != nil {
		return rangeReply{}, redact.Error(&url.Error{Op: "Get", URL: u, Err: err})
	}
	req := fasthttp.AcquireRequest()
	defer fasthttp.ReleaseRequest(req)
	// With the Host header set and req.URI() never called, Request.Write sends the request target
	// as it is: the Signer's escaping, neither parsed nor normalised.
	req.Header.SetHost(name)
	req.SetRequestURI(target)
	req.Header.Set("Range", "bytes=0-"+strconv.Itoa(n-1))
	resp := fasthttp.AcquireResponse()
	resp.Header.SetNoDefaultContentType(true) // no Content-Type is "", as in net/http
	if err := g.pool.Do(ctx, scheme, name, req, resp, n+maxErrorBody); err != nil {
		fasthttp.ReleaseResponse(resp)
		var small *fasthttp.ErrSmallBuffer // a header larger than h1.ReadBuffer
		if errors.Is(err, fasthttp.ErrBodyTooLarge) || errors.As(err, &small) || errors.Is(err, h1.ErrNetHTTP) {
			return rangeReply{}, errNetHTTP
		}
		if d, ok := ctx.Deadline(); ok && h1.IsTimeout(err) && !time.Now().Before(d) {
			<-ctx.Done() // the exchange ended at the context's deadline, whose timer fires now
		}
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		// The URL goes into the error as net/http's would, redacted.
		return rangeReply{}, redact.Error(&url.Error{Op: "Get", URL: u, Err: err})
	}
	if status := resp.StatusCode(); status != http.StatusOK && status != http.StatusPartialContent {
		defer fasthttp.ReleaseResponse(resp)
		return rangeReply{}, responseError(status, fastHeader{&resp.Header}, io.LimitReader(bytes.NewReader(resp.Body()), maxErrorBody))
	}
	length := int64(resp.Header.ContentLength()) // -1: chunked
	if length >= 0 && resp.StatusCode() == http.StatusOK && resp.Header.ConnectionClose() && len(resp.Header.Peek("Content-Range")) == 0 {
		// The size of this answer is its Content-Length (see objectSize), but fasthttp reads a body
		// sent without Content-Length or Transfer-Encoding up to the connection's close, which it
		// takes for a normal end, and then sets the Content-Length to what it read: such an answer,
		// whose size is unknown (and whose body may be cut off), looks like one announcing its
		// length. Only connections the server closes end that way: net/http, which tells them
		// apart, gets the GET.
		fasthttp.ReleaseResponse(resp)
		return rangeReply{}, errNetHTTP
	}
	body := &fastBody{resp: resp}
	body.Reset(resp.Body())
	return rangeReply{status: resp.StatusCode(), contentLength: length, header: fastHeader{&resp.Header}, body: body}, nil
}

// fastHeader reads a fasthttp response's header fields as http.Header.Get does.
type fastHeader struct{ h *fasthttp.ResponseHeader }

// Get returns the first value of the field (the name is normalised as http.Header canonicalises it).
func (f fastHeader) Get(name string) string { return string(f.h.Peek(name)) }

// fastBody is a fasthttp response's buffered body; Close releases the response.
type fastBody struct {
	bytes.Reader
	resp *fasthttp.Response
}

// Close releases the response to fasthttp's pool.
func (b *fastBody) Close() error {
	fasthttp.ReleaseResponse(b.resp)
	b.resp = nil
	return nil
}
