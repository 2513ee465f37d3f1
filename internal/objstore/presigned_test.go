package objstore_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/stretchr/testify/require"

	"github.com/intakehq/intake/internal/objstore"
	"github.com/intakehq/intake/internal/testkit"
	"github.com/intakehq/intake/pipeline"
)

// sent is one request seen by recorder.
type sent struct {
	method    string
	presigned bool // query-string authentication (Peek's lean path)
	sdk       bool // sent by the SDK's middleware stack (it adds amz-sdk-invocation-id)
	rng       string
	status    int // 0: transport error
}

// recorder is an HTTP client that records the requests it sends through next.
type recorder struct {
	next aws.HTTPClient
	mu   sync.Mutex
	reqs []sent
}

func (r *recorder) Do(req *http.Request) (*http.Response, error) {
	s := sent{
		method:    req.Method,
		presigned: req.URL.Query().Get("X-Amz-Signature") != "",
		sdk:       req.Header.Get("Amz-Sdk-Invocation-Id") != "",
		rng:       req.Header.Get("Range"),
	}
	resp, err := r.next.Do(req)
	if err == nil {
		s.status = resp.StatusCode
	}
	r.mu.Lock()
	r.reqs = append(r.reqs, s)
	r.mu.Unlock()
	return resp, err
}

func (r *recorder) sent() []sent {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]sent(nil), r.reqs...)
}

// recordedObjects returns Objects on the local MinIO whose client sends through a recorder, with
// the configuration changed by opts.
func recordedObjects(opts ...func(*aws.Config, *string)) (*objstore.Objects, *recorder) {
	rec := &recorder{next: objstore.HTTPClient(8)}
	cfg := testkit.AWSConfig()
	cfg.HTTPClient = rec
	c := testkit.AWS()
	for _, o := range opts {
		o(&cfg, &c.S3Endpoint)
	}
	return objstore.NewObjects(objstore.NewClient(cfg, c)), rec
}

// TestObjectsPeekPresigned: Peek sends one presigned ranged GET (no SDK request) and maps its
// response as the SDK path does: metadata equal to HEAD's, prefix, 404s, empty objects.
func TestObjectsPeekPresigned(t *testing.T) {
	t.Parallel()
	b := setupObjects(t)
	long := bytes.Repeat([]byte("0123456789"), 500)
	odd := "dir/a b+c é (1)~!*'.txt"
	b.put(t, odd, "text/plain; charset=utf-8", strings.NewReader("hello"))
	b.put(t, "long", "application/octet-stream", bytes.NewReader(long))
	b.put(t, "empty", "text/csv", bytes.NewReader(nil))
	lean := sent{method: http.MethodGet, presigned: true, rng: fmt.Sprintf("bytes=0-%d", pipeline.SniffLen-1)}

	for _, tc := range []struct {
		name, bucket, key string
		want              []byte
		wantErr           error
		sent              []sent
	}{
		{"odd key", b.bucket, odd, []byte("hello"), nil, []sent{withStatus(lean, http.StatusPartialContent)}},
		{"long", b.bucket, "long", long[:pipeline.SniffLen], nil, []sent{withStatus(lean, http.StatusPartialContent)}},
		{"empty falls back to HEAD", b.bucket, "empty", nil, nil, []sent{
			withStatus(lean, http.StatusRequestedRangeNotSatisfiable),
			{method: http.MethodHead, sdk: true, status: http.StatusOK},
		}},
		{"missing key", b.bucket, "absent/é+x", nil, pipeline.ErrNotFound, []sent{withStatus(lean, http.StatusNotFound)}},
		{"missing bucket is an outage", testkit.Name("absent-"), "k", nil, pipeline.ErrUnavailable, []sent{withStatus(lean, http.StatusNotFound)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			objs, rec := recordedObjects()
			info, prefix, err := objs.Peek(b.ctx, tc.bucket, tc.key, pipeline.SniffLen)
			require.Equal(t, tc.sent, rec.sent())
			if tc.wantErr != nil {
				require.ErrorIs(t, err, tc.wantErr)
				return
			}
			require.NoError(t, err)
			head, err := b.objs.Head(b.ctx, tc.bucket, tc.key)
			require.NoError(t, err)
			require.Equal(t, head, info)
			require.Equal(t, string(tc.want), string(prefix))
		})
	}
}

func withStatus(s sent, status int) sent {
	s.status = status
	return s
}

// TestObjectsPeekPresignedErrors: failures of the presigned GET get the SDK path's
// classification; retryable ones are repeated through the SDK (and its retryer).
func TestObjectsPeekPresignedErrors(t *testing.T) {
	t.Parallel()
	b := setupObjects(t)
	b.put(t, "k", "text/plain", strings.NewReader("hello"))

	t.Run("bad signature is an outage with S3's code, not retried at once", func(t *testing.T) {
		t.Parallel()
		objs, rec := recordedObjects(func(c *aws.Config, _ *string) {
			c.Credentials = credentials.NewStaticCredentialsProvider(testkit.DefaultAccessKey, "wrong-secret", "")
		})
		_, _, err := objs.Peek(b.ctx, b.bucket, "k", 10)
		require.ErrorContains(t, err, "SignatureDoesNotMatch")
		require.ErrorIs(t, err, pipeline.ErrUnavailable, "credentials S3 refuses fail every request alike")
		for _, s := range []error{pipeline.ErrNotFound, pipeline.ErrChanged} {
			require.NotErrorIs(t, err, s)
		}
		require.Equal(t, []sent{{method: http.MethodGet, presigned: true, rng: "bytes=0-9", status: http.StatusForbidden}}, rec.sent())
	})
	t.Run("refused connection is unavailable after the SDK's retries", func(t *testing.T) {
		t.Parallel()
		objs, rec := recordedObjects(func(c *aws.Config, endpoint *string) {
			*endpoint = "http://127.0.0.1:1"
			c.RetryMaxAttempts = 2
		})
		_, _, err := objs.Peek(b.ctx, b.bucket, "k", 10)
		require.ErrorIs(t, err, pipeline.ErrUnavailable)
		require.Equal(t, []sent{
			{method: http.MethodGet, presigned: true, rng: "bytes=0-9"},
			{method: http.MethodGet, sdk: true, rng: "bytes=0-9"},
			{method: http.MethodGet, sdk: true, rng: "bytes=0-9"},
		}, rec.sent())
	})
	t.Run("cancelled context is neither retried nor unavailable", func(t *testing.T) {
		t.Parallel()
		objs, rec := recordedObjects()
		ctx, cancel := context.WithCancel(b.ctx)
		cancel()
		_, _, err := objs.Peek(ctx, b.bucket, "k", 10)
		require.ErrorIs(t, err, context.Canceled)
		require.NotErrorIs(t, err, pipeline.ErrUnavailable)
		require.Equal(t, []sent{{method: http.MethodGet, presigned: true, rng: "bytes=0-9"}}, rec.sent())
	})
	t.Run("anonymous access goes through the SDK", func(t *testing.T) {
		t.Parallel()
		objs, rec := recordedObjects(func(c *aws.Config, _ *string) { c.Credentials = aws.AnonymousCredentials{} })
		_, _, err := objs.Peek(b.ctx, b.bucket, "k", 10)
		require.ErrorContains(t, err, "AccessDenied")
		require.ErrorIs(t, err, pipeline.ErrUnavailable, "the HeadBucket is refused too: the store's refusal")
		require.Equal(t, []sent{
			{method: http.MethodGet, sdk: true, rng: "bytes=0-9", status: http.StatusForbidden},
			{method: http.MethodHead, sdk: true, status: http.StatusForbidden},
		}, rec.sent())
	})
}

// TestPresignedErrorClassification: S3 error responses of the presigned GET wrap the sentinels
// the SDK path's errors wrap (see objstore.Objects and IsRetryable). Only NoSuchKey and
// NoSuchVersion say the object is gone: NoSuchBucket (MinIO back on an empty volume, a wrong
// endpoint) and a 404 without S3's code (a proxy's page) are outages, retried later rather than
// recorded as removals; credentials S3 refuses (SignatureDoesNotMatch, ExpiredToken…) are outages
// too; a 409 conflict is the one object's, retried later with its message; NoSuchUpload (an aborted
// multipart copy) is neither the object missing nor an outage; neither is an AccessDenied here (only
// Objects' HeadBucket tells whether it is the store's: TestAccessDeniedIsConfirmedByHeadBucket).
// Only what IsRetryable accepts is repeated at once through the SDK: of the 5xx, those the SDK's
// retryer retries (500, 502, 503, 504), and 507 (a full disk, until an operator frees it); a 501
// NotImplemented or a 505 answers the request itself.
func TestPresignedErrorClassification(t *testing.T) {
	t.Parallel()
	doc := func(code string) string {
		return "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>" + code + "</Code><Message>m</Message><RequestId>r</RequestId></Error>"
	}
	for _, tc := range []struct {
		status  int
		body    string
		want    error // nil: none of the sentinels
		code    string
		retried bool // repeated through the SDK
	}{
		{404, doc("NoSuchKey"), pipeline.ErrNotFound, "NoSuchKey", false},
		{404, doc("NoSuchVersion"), pipeline.ErrNotFound, "NoSuchVersion", false},
		{404, doc("NoSuchBucket"), pipeline.ErrUnavailable, "NoSuchBucket", false},
		{404, "", pipeline.ErrUnavailable, "UnknownError", false},
		{404, "<html><body>404 Not Found</body></html>", pipeline.ErrUnavailable, "UnknownError", false},
		{404, doc("NoSuchUpload"), nil, "NoSuchUpload", false},
		{412, doc("PreconditionFailed"), pipeline.ErrChanged, "PreconditionFailed", false},
		{409, doc("ConditionalRequestConflict"), nil, "ConditionalRequestConflict", false},
		{409, doc("OperationAborted"), nil, "OperationAborted", false},
		{400, doc("ExpiredToken"), pipeline.ErrUnavailable, "ExpiredToken", false},
		{403, doc("SignatureDoesNotMatch"), pipeline.ErrUnavailable, "SignatureDoesNotMatch", false},
		{403, doc("InvalidAccessKeyId"), pipeline.ErrUnavailable, "InvalidAccessKeyId", false},
		{500, doc("InternalError"), pipeline.ErrUnavailable, "InternalError", true},
		{502, "<html>bad gateway</html>", pipeline.ErrUnavailable, "UnknownError", true},
		{503, doc("SlowDown"), pipeline.ErrUnavailable, "SlowDown", true},
		{504, "", pipeline.ErrUnavailable, "UnknownError", true},
		{501, doc("NotImplemented"), nil, "NotImplemented", false},
		{505, "", nil, "UnknownError", false},
		{507, doc("XMinioStorageFull"), pipeline.ErrUnavailable, "XMinioStorageFull", true},
		{429, "", pipeline.ErrUnavailable, "UnknownError", true},
		{400, doc("RequestTimeout"), pipeline.ErrUnavailable, "RequestTimeout", true},
		{403, doc("RequestTimeTooSkewed"), pipeline.ErrUnavailable, "RequestTimeTooSkewed", true},
		{403, doc("AccessDenied"), nil, "AccessDenied", false},
		{400, doc("InvalidArgument"), nil, "InvalidArgument", false},
		{301, doc("PermanentRedirect"), nil, "PermanentRedirect", false},
	} {
		t.Run(fmt.Sprintf("%d %s", tc.status, tc.code), func(t *testing.T) {
			t.Parallel()
			err, retried := objstore.ClassifyPresignedError(tc.status, tc.body)
			require.ErrorContains(t, err, "api error "+tc.code)
			for _, s := range []error{pipeline.ErrNotFound, pipeline.ErrChanged, pipeline.ErrUnavailable} {
				require.Equal(t, s == tc.want, errors.Is(err, s), "%d %s: %v", tc.status, tc.code, s)
			}
			require.Equal(t, tc.retried, retried, "retried through the SDK")
		})
	}
}

// BenchmarkPeek: one Peek of a small object on MinIO through the presigned GET sent with fasthttp
// (fast) and with net/http (presigned), and through the SDK's GetObject (wall time includes
// MinIO's; allocations are the client's).
func BenchmarkPeek(b *testing.B) {
	if testing.Short() {
		b.Skip("needs MinIO")
	}
	ctx := context.Background()
	client := testkit.S3()
	bucket := testkit.Bucket(b, client)
	_, err := client.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String("k"), Body: strings.NewReader(strings.Repeat("x", 5000))})
	require.NoError(b, err)
	for _, name := range []string{"fast", "presigned", "sdk"} {
		b.Run(name, func(b *testing.B) {
			objs := objstore.NewObjects(client)
			switch name {
			case "presigned":
				objstore.WithoutFast(objs)
			case "sdk":
				objstore.WithoutPresigned(objs)
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, _, err := objs.Peek(ctx, bucket, "k", pipeline.SniffLen); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkPeekCPU: the client's CPU per Peek when 64 goroutines peek small objects on MinIO at
// once, as the consumer's workers do, with the presigned GET sent through net/http and through
// fasthttp. An iteration is 4,000 Peeks; cpu-µs/GET is the process's user and system time
// (getrusage; MinIO is another process) over them, garbage collection included.
func BenchmarkPeekCPU(b *testing.B) {
	if testing.Short() {
		b.Skip("needs MinIO")
	}
	const workers, gets = 64, 4000
	ctx := context.Background()
	client := testkit.S3()
	bucket := testkit.Bucket(b, client)
	keys := make([]string, workers)
	for i := range keys {
		keys[i] = fmt.Sprintf("small/%02d.txt", i)
		_, err := client.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(keys[i]), Body: strings.NewReader(strings.Repeat("x", 5000))})
		require.NoError(b, err)
	}
	for _, name := range []string{"nethttp", "fast"} {
		b.Run(name, func(b *testing.B) {
			objs := objstore.NewObjects(client)
			if name == "nethttp" {
				objstore.WithoutFast(objs)
			}
			peekAll := func() {
				var next atomic.Int64
				var wg sync.WaitGroup
				for range workers {
					wg.Go(func() {
						for i := next.Add(1); i <= gets; i = next.Add(1) {
							if _, _, err := objs.Peek(ctx, bucket, keys[i%workers], pipeline.SniffLen); err != nil {
								b.Error(err)
								return
							}
						}
					})
				}
				wg.Wait()
			}
			peekAll() // opens the connections
			var cpu time.Duration
			rounds := 0
			for b.Loop() {
				before := processCPU(b)
				peekAll()
				cpu += processCPU(b) - before
				rounds++
			}
			b.ReportMetric(float64(cpu.Microseconds())/float64(rounds*gets), "cpu-µs/GET")
		})
	}
}

// processCPU returns the process's user and system CPU time.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	require.NoError(b, syscall.Getrusage(syscall.RUSAGE_SELF, &ru))
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// TestPeekErrorsKeepTheSignatureOut: a presigned GET that fails in transport (here: the caller's
// context is cancelled, as at shutdown) returns net/http's *url.Error, which quotes the URL; the
// error Peek returns (and the consumer logs) keeps the object's path but not the signature or the
// credential.
func TestPeekErrorsKeepTheSignatureOut(t *testing.T) {
	t.Parallel()
	b := setupObjects(t)
	objs, rec := recordedObjects()
	b.put(t, "secret/peek.txt", "text/plain", strings.NewReader("hello"))
	ctx, cancel := context.WithCancel(b.ctx)
	cancel()
	_, _, err := objs.Peek(ctx, b.bucket, "secret/peek.txt", 3072)
	require.ErrorIs(t, err, context.Canceled)
	require.True(t, slices.ContainsFunc(rec.sent(), func(s sent) bool { return s.presigned }), "the presigned path was taken")
	require.Contains(t, err.Error(), "/secret/peek.txt")
	require.NotContains(t, err.Error(), "X-Amz-Signature")
	require.NotContains(t, err.Error(), "X-Amz-Credential")
	require.NotContains(t, err.Error(), testkit.DefaultAccessKey+"%2F", "the credential names the access key")
}
