package objstore

import (
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"

	"github.com/intakehq/intake/internal/redact"
	"github.com/intakehq/intake/internal/sigv4"
	"github.com/intakehq/intake/pipeline"
)

// presignedExpiry is the lifetime of the URLs presignedGetter signs. They are sent at once and
// never leave the process, but S3 judges their expiry by its own clock: 15 minutes tolerates the
// clock skew S3 accepts for header-signed requests (a minute would fail every peek of a host whose
// clock runs a minute slow, as "Request has expired", which is not retried).
const presignedExpiry = 15 * time.Minute

// Limits on what a presigned GET reads besides the wanted bytes.
const (
	maxErrorBody = 64 << 10 // an S3 error document
	maxDrain     = 64 << 10 // a body left unread, drained so that the connection is reused
)

// presignedGetter sends GETs presigned by a [sigv4.Signer], through fasthttp (fastGetter) when the
// SDK client's HTTP client is the SDK's own and no proxy applies, else through that HTTP client:
// the request S3 receives is the SDK's, authenticated by query string instead of header, without
// the SDK's middleware stack (serialisation, endpoint resolution, signing, retries,
// deserialisation), which cost most of the consumer's CPU per event.
type presignedGetter struct {
	signer *sigv4.Signer
	http   s3.HTTPClient
	fast   *fastGetter // nil: every GET goes through http
}

// newPresignedGetter returns the presigned GET path of a client's options, or nil when the options
// ask for something sigv4.Signer does not do (anonymous access, an endpoint with an explicit default
// port; NewSigner refuses FIPS, dual-stack and accelerated endpoints) or it cannot be built: Objects
// then uses the SDK for every request.
func newPresignedGetter(o s3.Options) *presignedGetter {
	if o.HTTPClient == nil || o.Credentials == nil || aws.IsCredentialsProvider(o.Credentials, (*aws.AnonymousCredentials)(nil)) {
		return nil
	}
	if o.BaseEndpoint != nil {
		// The Signer signs the host without a default port but writes it into the URL, which
		// net/http would then send: leave such endpoints to the SDK.
		u, err := url.Parse(*o.BaseEndpoint)
		if err != nil || u.Port() == "80" || u.Port() == "443" {
			return nil
		}
	}
	signer, err := sigv4.NewSigner(o)
	if err != nil {
		return nil
	}
	return &presignedGetter{signer: signer, http: o.HTTPClient, fast: newFastGetter(o.HTTPClient)}
}

// handles reports whether the bucket is a plain bucket name (not an access point or S3 Express
// directory bucket, which the Signer does not address).
func (g *presignedGetter) handles(bucket string) bool {
	return g != nil && !strings.HasPrefix(bucket, "arn:") && !strings.HasSuffix(bucket, "--x-s3")
}

// rangeReply is a 200 or 206 answer to a presigned ranged GET, whichever client received it.
type rangeReply struct {
	status        int   // 200 or 206
	contentLength int64 // -1: unknown
	header        header
	body          io.ReadCloser // closed with closeBody
}

// header is a response's header fields (http.Header, fastHeader).
type header interface {
	// Get returns the first value of the named field ("" when absent).
	Get(name string) string
}

// getRange sends a presigned GET of bytes [0, n) of the object, through fasthttp when it can,
// else (a proxy applies, another HTTP client, an answer larger than fasthttp buffers) through the
// SDK client's HTTP client. The caller closes the reply's body with closeBody. A response other
// than 200 or 206 is returned as an error (its body consumed and closed) that implements
// smithy.APIError and HTTPStatusCode like the SDK's, so that [wrap] and [IsRetryable] classify it
// as they classify the SDK's. Transport errors carry the URL without its query (the signature and
// credential).
func (g *presignedGetter) getRange(ctx context.Context, bucket, key string, n int) (rangeReply, error) {
	u, err := g.signer.Presign(ctx, sigv4.Input{
		Method: http.MethodGet, Op: sigv4.OpGetObject, Bucket: bucket, Key: key,
		Now: time.Now(), Expires: presignedExpiry, ContentLength: -1,
	})
	if err != nil {
		return rangeReply{}, err
	}
	if g.fast != nil {
		if r, err := g.fast.getRange(ctx, u, n); !errors.Is(err, errNetHTTP) {
			return r, err
		}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return rangeReply{}, redact.Error(err)
	}
	// Unsigned headers are allowed with query-string authentication.
	req.Header.Set("Range", "bytes=0-"+strconv.Itoa(n-1))
	resp, err := g.http.Do(req)
	if err != nil {
		// net/http's *url.Error quotes the URL, and this one carries its signature and credential.
		return rangeReply{}, redact.Error(err)
	}
	if resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusPartialContent {
		return rangeReply{status: resp.StatusCode, contentLength: resp.ContentLength, header: resp.Header, body: resp.Body}, nil
	}
	defer closeBody(resp.Body)
	return rangeReply{}, responseError(resp.StatusCode, resp.Header, io.LimitReader(resp.Body, maxErrorBody))
}

// closeBody drains what is left of a body (up to maxDrain) so that its connection is reused, and
// closes it.
func closeBody(body io.ReadCloser) {
	_, _ = io.Copy(io.Discard, io.LimitReader(body, maxDrain))
	_ = body.Close()
}

// peekPresigned is Peek with a presigned ranged GET. retry is true when the failure is worth
// repeating through the SDK, whose retryer then backs off and retries as for any other call.
func (o *Objects) peekPresigned(ctx context.Context, bucket, key string, n int) (info pipeline.ObjectInfo, prefix []byte, retry bool, err error) {
	r, err := o.presigned.getRange(ctx, bucket, key, n)
	if isInvalidRange(err) { // an empty object has no byte 0
		info, err := o.emptyObject(ctx, bucket, key, err)
		return info, nil, false, err
	}
	if err != nil {
		return pipeline.ObjectInfo{}, nil, ctx.Err() == nil && IsRetryable(err), o.classify(ctx, "peek", bucket, key, err)
	}
	defer closeBody(r.body)
	h := r.header
	size, err := objectSize(r.status, r.contentLength, h.Get("Content-Range"))
	if err != nil {
		// Not worth repeating through the SDK: the server answered, without the size.
		return pipeline.ObjectInfo{}, nil, false, pipeline.Unavailable(pipeline.DependencyS3, fmt.Errorf("peek %s/%s: %w", bucket, key, err))
	}
	info = pipeline.ObjectInfo{
		Size:            size,
		ContentType:     h.Get("Content-Type"),
		ETag:            unquote(h.Get("ETag")),
		VersionID:       h.Get("X-Amz-Version-Id"),
		ContentEncoding: h.Get("Content-Encoding"),
	}
	if lm := h.Get("Last-Modified"); lm != "" {
		t, err := http.ParseTime(lm)
		if err != nil {
			return pipeline.ObjectInfo{}, nil, false, fmt.Errorf("peek %s/%s: Last-Modified %q: %w", bucket, key, lm, err)
		}
		info.LastModified = t.UTC()
	}
	// Peek reads exactly what the answer announced (its range, or the whole object when it is
	// shorter): reading less means the body was cut off, and a prefix sniffed from a fragment
	// would give a wrong verdict. It is retried (through the SDK) like any broken connection.
	buf, err := readPrefix(r.body, n, size)
	if err != nil {
		return pipeline.ObjectInfo{}, nil, ctx.Err() == nil, wrap(ctx, "peek", bucket, key, err)
	}
	return info, buf, false, nil
}

// s3Error is an S3 error response: an smithy.APIError with the response's status, as the SDK's
// errors are (a smithy.GenericAPIError inside an awshttp.ResponseError).
type s3Error struct {
	status                   int
	code, message, requestID string
	etag                     string // the response's ETag header, if any (see errorETag)
}

var _ smithy.APIError = (*s3Error)(nil)

// responseError reads the S3 error document of a failed response (the code is "UnknownError"
// without one, as in the SDK).
func responseError(status int, h header, body io.Reader) *s3Error {
	e := &s3Error{status: status, code: "UnknownError", requestID: h.Get("X-Amz-Request-Id"), etag: h.Get("ETag")}
	var doc struct {
		Code, Message string
		RequestID     string `xml:"RequestId"`
	}
	if b, err := io.ReadAll(body); err == nil && xml.Unmarshal(b, &doc) == nil {
		if doc.Code != "" {
			e.code = doc.Code
		}
		e.message = doc.Message
		if doc.RequestID != "" {
			e.requestID = doc.RequestID
		}
	}
	return e
}

func (e *s3Error) Error() string {
	return fmt.Sprintf("presigned GET: StatusCode: %d, RequestID: %s, api error %s: %s", e.status, e.requestID, e.code, e.message)
}

// ErrorCode is S3's error code (NoSuchKey, AccessDenied, SlowDown…).
func (e *s3Error) ErrorCode() string { return e.code }

// ErrorMessage is S3's error message.
func (e *s3Error) ErrorMessage() string { return e.message }

// ErrorFault is unknown, as for the SDK's generic S3 errors.
func (e *s3Error) ErrorFault() smithy.ErrorFault { return smithy.FaultUnknown }

// HTTPStatusCode is the response's status.
func (e *s3Error) HTTPStatusCode() int { return e.status }
