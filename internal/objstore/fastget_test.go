package objstore_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/logging"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/intakehq/intake/internal/objstore"
	"github.com/intakehq/intake/internal/sigv4"
	"github.com/intakehq/intake/internal/testkit"
	"github.com/intakehq/intake/pipeline"
)

// fastAndNetHTTP returns two object stores on client: one whose Peek sends with fasthttp (the
// default for the SDK's own HTTP client), one with net/http.
func fastAndNetHTTP(t testing.TB, client *s3.Client) (fast, slow *objstore.Objects) {
	t.Helper()
	fast, slow = objstore.NewObjects(client), objstore.NewObjects(client)
	objstore.WithoutFast(slow)
	require.Equal(t, 0, objstore.FastIdle(fast), "Peek uses the fasthttp sender")
	require.Equal(t, -1, objstore.FastIdle(slow))
	return fast, slow
}

// s3At returns a client of endpoint (path-style) with the local stack's credentials, the SDK's
// own HTTP client and attempts tries per call.
func s3At(endpoint string, attempts int) *s3.Client {
	cfg := testkit.AWSConfig()
	cfg.RetryMaxAttempts = attempts
	return objstore.NewClient(cfg, testkit.AWSAt(endpoint, ""))
}

// class is how an error of Peek is classified.
type class struct {
	notFound, changed, unavailable, canceled, deadline bool
	code                                               string
	status                                             int
}

func classify(err error) class {
	c := class{
		notFound: errors.Is(err, pipeline.ErrNotFound), changed: errors.Is(err, pipeline.ErrChanged),
		unavailable: errors.Is(err, pipeline.ErrUnavailable),
		canceled:    errors.Is(err, context.Canceled), deadline: errors.Is(err, context.DeadlineExceeded),
	}
	if apiErr, ok := errors.AsType[smithy.APIError](err); ok {
		c.code = apiErr.ErrorCode()
	}
	var s interface{ HTTPStatusCode() int }
	if errors.As(err, &s) {
		c.status = s.HTTPStatusCode()
	}
	return c
}

// TestPeekFastMatchesNetHTTP: on MinIO, Peek through fasthttp returns what it returns through
// net/http (metadata, prefix, error classification), and the GET did go through fasthttp.
func TestPeekFastMatchesNetHTTP(t *testing.T) {
	t.Parallel()
	b := setupObjects(t)
	long := bytes.Repeat([]byte("0123456789"), 500)
	odd := "dir/a b+c é (1)~!*'.txt"
	b.put(t, odd, "text/plain; charset=utf-8", strings.NewReader("hello"))
	b.put(t, "long", "application/octet-stream", bytes.NewReader(long))
	b.put(t, "empty", "text/csv", bytes.NewReader(nil))
	b.put(t, "a/b/c/report.json", `application/json; charset="utf-8"; profile=x`, strings.NewReader(`{"a":1}`))

	for _, tc := range []struct {
		name, bucket, key string
		want              string
		wantErr           error
	}{
		{"odd key", b.bucket, odd, "hello", nil},
		{"long", b.bucket, "long", string(long[:pipeline.SniffLen]), nil},
		{"empty", b.bucket, "empty", "", nil},
		{"key under a prefix, type with parameters", b.bucket, "a/b/c/report.json", `{"a":1}`, nil},
		{"missing key", b.bucket, "absent/é+x", "", pipeline.ErrNotFound},
		{"missing bucket", testkit.Name("absent-"), "k", "", pipeline.ErrUnavailable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			fast, slow := fastAndNetHTTP(t, b.client)
			fi, fp, ferr := fast.Peek(b.ctx, tc.bucket, tc.key, pipeline.SniffLen)
			require.Equal(t, 1, objstore.FastIdle(fast), "the GET went through fasthttp, which kept its connection")
			si, sp, serr := slow.Peek(b.ctx, tc.bucket, tc.key, pipeline.SniffLen)
			require.Equal(t, -1, objstore.FastIdle(slow))

			require.Equal(t, classify(serr), classify(ferr))
			if tc.wantErr != nil {
				require.ErrorIs(t, ferr, tc.wantErr)
				return
			}
			require.NoError(t, ferr)
			require.NoError(t, serr)
			require.Equal(t, si, fi)
			require.Equal(t, string(sp), string(fp))
			require.Equal(t, tc.want, string(fp))
			head, err := b.objs.Head(b.ctx, tc.bucket, tc.key)
			require.NoError(t, err)
			require.Equal(t, head, fi)
		})
	}
}

// seen is a request an httptest server received.
type seen struct {
	sender, uri, host, rng string
}

// sender names who sent a request by its User-Agent: fasthttp (none), net/http or the SDK.
func sender(r *http.Request) string {
	switch ua := r.UserAgent(); {
	case ua == "":
		return "fast"
	case strings.HasPrefix(ua, "Go-http-client/"):
		return "net/http"
	case strings.HasPrefix(ua, "aws-sdk-go"):
		return "sdk"
	default:
		return ua
	}
}

// server is an httptest server that records the requests it receives and answers them with h.
type server struct {
	*httptest.Server
	mu   sync.Mutex
	reqs []seen
}

func newServer(t *testing.T, h http.HandlerFunc) *server {
	t.Helper()
	s := &server{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.reqs = append(s.reqs, seen{sender: sender(r), uri: r.RequestURI, host: r.Host, rng: r.Header.Get("Range")})
		s.mu.Unlock()
		h(w, r)
	}))
	t.Cleanup(s.Close)
	return s
}

// take returns the requests received since the last take.
func (s *server) take() []seen {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.reqs
	s.reqs = nil
	return r
}

func senders(reqs []seen) []string {
	var out []string
	for _, r := range reqs {
		out = append(out, r.sender)
	}
	return out
}

// TestPeekFastSendsTheSignedRequestAsIs: fasthttp sends the presigned URL's path and query byte
// for byte as net/http does (the Signer's escaping of spaces, '+', '~', unicode…), with the same
// Host and Range.
func TestPeekFastSendsTheSignedRequestAsIs(t *testing.T) {
	t.Parallel()
	srv := newServer(t, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Range", "bytes 0-4/5")
		w.WriteHeader(http.StatusPartialContent)
		_, _ = io.WriteString(w, "hello")
	})
	fast, slow := fastAndNetHTTP(t, s3At(srv.URL, 1))
	ctx := testkit.Context(t)
	for _, key := range []string{"dir/a b+c é (1)~!*'.txt", "plain", "日本語/ファイル 1.txt", "a%2Fb/c?d=e&f#g", "x//y/./z/../w"} {
		_, p, err := fast.Peek(ctx, "bkt", key, 5)
		require.NoError(t, err)
		require.Equal(t, "hello", string(p))
		_, _, err = slow.Peek(ctx, "bkt", key, 5)
		require.NoError(t, err)
		got := srv.take()
		require.Len(t, got, 2)
		require.Equal(t, []string{"fast", "net/http"}, senders(got))
		require.Equal(t, got[1].uri, got[0].uri, key)
		require.Equal(t, got[1].host, got[0].host)
		require.Equal(t, "bytes=0-4", got[0].rng)
		require.Equal(t, "bytes=0-4", got[1].rng)
		if strings.HasPrefix(key, "dir/") {
			require.True(t, strings.HasPrefix(got[0].uri, "/bkt/dir/a%20b%2Bc%20%C3%A9%20%281%29~%21%2A%27.txt?X-Amz-Algorithm="), got[0].uri)
		}
	}
}

// TestPeekFastFallsBackWhenRangeIsIgnored: a server that ignores Range and sends a 10 MiB body is
// not buffered by fasthttp (its limit is n plus an error document): the GET is sent again through
// net/http, which reads n bytes. Sent with a Content-Length, the body is the object and its length
// the size; sent chunked, the answer gives no size, and Peek fails (an outage) rather than record
// one. Not parallel: it measures the process's allocations.
func TestPeekFastFallsBackWhenRangeIsIgnored(t *testing.T) {
	body := bytes.Repeat([]byte("0123456789abcdef"), 10<<20/16)
	for _, chunked := range []bool{false, true} {
		t.Run(fmt.Sprintf("chunked=%v", chunked), func(t *testing.T) {
			srv := newServer(t, func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Content-Type", "application/octet-stream")
				if !chunked {
					w.Header().Set("Content-Length", fmt.Sprint(len(body)))
					_, _ = w.Write(body)
					return
				}
				for rest := body; len(rest) > 0; rest = rest[64<<10:] {
					if _, err := w.Write(rest[:64<<10]); err != nil {
						return
					}
					w.(http.Flusher).Flush()
				}
			})
			fast, slow := fastAndNetHTTP(t, s3At(srv.URL, 1))
			ctx := testkit.Context(t)

			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			info, prefix, err := fast.Peek(ctx, "bkt", "big", pipeline.SniffLen)
			runtime.ReadMemStats(&after)
			require.Equal(t, []string{"fast", "net/http"}, senders(srv.take()), "fasthttp gave up, net/http sent it again")
			require.Equal(t, 0, objstore.FastIdle(fast), "fasthttp closed the connection it stopped reading")
			require.Less(t, after.TotalAlloc-before.TotalAlloc, uint64(2<<20), "nothing near 10 MiB was buffered")

			sinfo, sprefix, serr := slow.Peek(ctx, "bkt", "big", pipeline.SniffLen)
			require.Equal(t, classify(serr), classify(err))
			if chunked { // net/http knows the size only from Content-Length
				require.ErrorIs(t, err, pipeline.ErrUnavailable)
				require.Nil(t, prefix)
				require.Nil(t, sprefix)
				return
			}
			require.NoError(t, err)
			require.NoError(t, serr)
			require.Equal(t, sinfo, info)
			require.Equal(t, sprefix, prefix)
			require.Equal(t, int64(len(body)), info.Size)
			require.Equal(t, body[:pipeline.SniffLen], prefix)
		})
	}
}

// TestPeekFastServerErrors: a 500 with an S3 error document is classified as through net/http
// (unavailable, S3's code) and retried through the SDK the same way.
func TestPeekFastServerErrors(t *testing.T) {
	t.Parallel()
	srv := newServer(t, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/xml")
		w.Header().Set("X-Amz-Request-Id", "req-1")
		w.WriteHeader(http.StatusInternalServerError)
		_, _ = io.WriteString(w, `<?xml version="1.0" encoding="UTF-8"?>`+"\n"+`<Error><Code>InternalError</Code><Message>We encountered an internal error.</Message><RequestId>req-1</RequestId></Error>`)
	})
	fast, slow := fastAndNetHTTP(t, s3At(srv.URL, 2))
	ctx := testkit.Context(t)
	_, _, ferr := fast.Peek(ctx, "bkt", "k", 10)
	fsent := srv.take()
	_, _, serr := slow.Peek(ctx, "bkt", "k", 10)
	ssent := srv.take()

	require.ErrorIs(t, ferr, pipeline.ErrUnavailable)
	require.ErrorContains(t, ferr, "InternalError")
	require.Equal(t, classify(serr), classify(ferr))
	require.Equal(t, []string{"fast", "sdk", "sdk"}, senders(fsent), "the failure is retried through the SDK")
	require.Equal(t, []string{"net/http", "sdk", "sdk"}, senders(ssent))
}

// TestPeekFastSilentServer: a GET that gets no answer ends at the context's deadline, or when the
// context is cancelled, not at the response timeout; the error keeps the signature out.
func TestPeekFastSilentServer(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	srv := newServer(t, func(_ http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	})
	t.Cleanup(func() { close(release) }) // runs before srv.Close
	for _, tc := range []struct {
		name  string
		ctx   func() (context.Context, context.CancelFunc)
		class class
	}{
		{"deadline", func() (context.Context, context.CancelFunc) {
			return context.WithTimeout(context.Background(), 300*time.Millisecond)
		}, class{deadline: true, unavailable: true}},
		{"cancelled", func() (context.Context, context.CancelFunc) {
			ctx, cancel := context.WithCancel(context.Background())
			time.AfterFunc(300*time.Millisecond, cancel)
			return ctx, cancel
		}, class{canceled: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fast, _ := fastAndNetHTTP(t, s3At(srv.URL, 3))
			ctx, cancel := tc.ctx()
			defer cancel()
			start := time.Now()
			_, _, err := fast.Peek(ctx, "bkt", "secret/peek.txt", 10)
			require.Less(t, time.Since(start), 3*time.Second)
			require.Equal(t, tc.class, classify(err), "%v", err)
			require.Contains(t, err.Error(), "/secret/peek.txt")
			require.NotContains(t, err.Error(), "X-Amz-Signature")
			require.NotContains(t, err.Error(), "X-Amz-Credential")
			require.NotContains(t, err.Error(), testkit.DefaultAccessKey+"%2F")
			require.Equal(t, []string{"fast"}, senders(srv.take()), "not retried once the context is done")
		})
	}
}

// TestPeekFastErrorsKeepTheSignatureOut mirrors TestPeekErrorsKeepTheSignatureOut for the fasthttp
// sender: a cancelled context's error names the object, not the signature or credential.
func TestPeekFastErrorsKeepTheSignatureOut(t *testing.T) {
	t.Parallel()
	b := setupObjects(t)
	b.put(t, "secret/peek.txt", "text/plain", strings.NewReader("hello"))
	fast, _ := fastAndNetHTTP(t, b.client)
	ctx, cancel := context.WithCancel(b.ctx)
	cancel()
	_, _, err := fast.Peek(ctx, b.bucket, "secret/peek.txt", 3072)
	require.ErrorIs(t, err, context.Canceled)
	require.NotErrorIs(t, err, pipeline.ErrUnavailable)
	require.Contains(t, err.Error(), "/secret/peek.txt")
	require.NotContains(t, err.Error(), "X-Amz-Signature")
	require.NotContains(t, err.Error(), "X-Amz-Credential")
	require.NotContains(t, err.Error(), testkit.DefaultAccessKey+"%2F", "the credential names the access key")
}

// TestPeekFastLeavesProxiedHostsToNetHTTP: when the transport's proxy applies to the endpoint,
// Peek's GET goes through net/http (and so through the proxy).
func TestPeekFastLeavesProxiedHostsToNetHTTP(t *testing.T) {
	t.Parallel()
	proxy := newServer(t, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Range", "bytes 0-4/5")
		w.WriteHeader(http.StatusPartialContent)
		_, _ = io.WriteString(w, "hello")
	})
	proxyURL, err := url.Parse(proxy.URL)
	require.NoError(t, err)
	cfg := testkit.AWSConfig()
	cfg.HTTPClient = objstore.TuneHTTPClient(awshttp.NewBuildableClient().WithTransportOptions(func(tr *http.Transport) {
		tr.Proxy = http.ProxyURL(proxyURL)
	}), 8)
	objs := objstore.NewObjects(objstore.NewClient(cfg, testkit.AWSAt("http://s3.example.invalid:9000", "")))
	require.Equal(t, 0, objstore.FastIdle(objs), "the client is the SDK's: the fasthttp sender exists")

	_, p, err := objs.Peek(testkit.Context(t), "bkt", "k", 5)
	require.NoError(t, err)
	require.Equal(t, "hello", string(p))
	got := proxy.take()
	require.Equal(t, []string{"net/http"}, senders(got))
	require.True(t, strings.HasPrefix(got[0].uri, "http://s3.example.invalid:9000/bkt/k?"), got[0].uri)
	require.Equal(t, 0, objstore.FastIdle(objs))
}

// TestPeekFastStartsNoGoroutine: the fasthttp sender keeps its connections without goroutines
// (fasthttp.Client's idle cleaners would outlive the Objects). Not parallel: it counts goroutines.
func TestPeekFastStartsNoGoroutine(t *testing.T) {
	b := setupObjects(t)
	b.put(t, "k", "text/plain", strings.NewReader("hello"))
	fast, _ := fastAndNetHTTP(t, b.client)
	opt := goleak.IgnoreCurrent()
	for range 3 {
		_, p, err := fast.Peek(b.ctx, b.bucket, "k", 10)
		require.NoError(t, err)
		require.Equal(t, "hello", string(p))
	}
	require.Equal(t, 1, objstore.FastIdle(fast))
	goleak.VerifyNone(t, opt)
}

// TestPeekFastFallsBackOnAHugeHeader: a response header larger than fasthttp's read buffer is
// left to net/http, which reads it.
func TestPeekFastFallsBackOnAHugeHeader(t *testing.T) {
	t.Parallel()
	srv := newServer(t, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("X-Amz-Meta-Big", strings.Repeat("m", 16<<10))
		w.Header().Set("Content-Range", "bytes 0-4/5")
		w.WriteHeader(http.StatusPartialContent)
		_, _ = io.WriteString(w, "hello")
	})
	fast, _ := fastAndNetHTTP(t, s3At(srv.URL, 1))
	info, p, err := fast.Peek(testkit.Context(t), "bkt", "k", 5)
	require.NoError(t, err)
	require.Equal(t, "hello", string(p))
	require.Equal(t, int64(5), info.Size)
	require.Equal(t, []string{"fast", "net/http"}, senders(srv.take()))
}

// TestPeekFastRedialsWhenAnIdleConnectionWasClosed: a pooled connection the server closed while
// it was idle fails before any answer; the GET is sent again on a new connection.
func TestPeekFastRedialsWhenAnIdleConnectionWasClosed(t *testing.T) {
	t.Parallel()
	var dials atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Range", "bytes 0-4/5")
		w.WriteHeader(http.StatusPartialContent)
		_, _ = io.WriteString(w, "hello")
	}))
	srv.Config.IdleTimeout = 50 * time.Millisecond
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			dials.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	fast, _ := fastAndNetHTTP(t, s3At(srv.URL, 1))
	ctx := testkit.Context(t)
	for i := range 2 {
		_, p, err := fast.Peek(ctx, "bkt", "k", 5)
		require.NoError(t, err)
		require.Equal(t, "hello", string(p))
		require.Equal(t, 1, objstore.FastIdle(fast))
		if i == 0 {
			time.Sleep(300 * time.Millisecond) // the server closes the idle connection
		}
	}
	require.Equal(t, int32(2), dials.Load())
}

// TestPeekFastOverTLS: over https the fasthttp sender trusts what the SDK client trusts (its TLS
// configuration, which carries AWS_CA_BUNDLE) and speaks HTTP/1.1 even to a server offering HTTP/2.
func TestPeekFastOverTLS(t *testing.T) {
	t.Parallel()
	var protos []string
	var mu sync.Mutex
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		protos = append(protos, sender(r)+" "+r.Proto)
		mu.Unlock()
		w.Header().Set("Content-Range", "bytes 0-4/5")
		w.WriteHeader(http.StatusPartialContent)
		_, _ = io.WriteString(w, "hello")
	}))
	srv.EnableHTTP2 = true
	srv.StartTLS()
	t.Cleanup(srv.Close)
	roots := srv.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs
	cfg := testkit.AWSConfig()
	cfg.HTTPClient = objstore.TuneHTTPClient(awshttp.NewBuildableClient().WithTransportOptions(func(tr *http.Transport) {
		tr.TLSClientConfig.RootCAs = roots
	}), 8)
	objs := objstore.NewObjects(objstore.NewClient(cfg, testkit.AWSAt(srv.URL, "")))

	for range 2 {
		_, p, err := objs.Peek(testkit.Context(t), "bkt", "k", 5)
		require.NoError(t, err)
		require.Equal(t, "hello", string(p))
		require.Equal(t, 1, objstore.FastIdle(objs))
	}
	require.Equal(t, []string{"fast HTTP/1.1", "fast HTTP/1.1"}, protos)
}

// TestDaemonClientUsesFast: the S3 client the daemon builds (LoadAWS, NewClient) qualifies for
// the fasthttp sender.
func TestDaemonClientUsesFast(t *testing.T) {
	t.Parallel()
	cfg, err := objstore.LoadAWS(testkit.Context(t), testkit.AWS(), slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	require.Equal(t, 0, objstore.FastIdle(objstore.NewObjects(objstore.NewClient(cfg, testkit.AWS()))))
}

// TestLoadAWSGivesSignersACacheOfTheirOwn: the clients LoadAWS's configuration builds share one
// credentials cache, and intake's SigV4 signers find a second one, over a chain of its own, which
// they may empty near a session's end without emptying the clients' (see sigv4.SigningSource).
func TestLoadAWSGivesSignersACacheOfTheirOwn(t *testing.T) {
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIDTEST")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "secret")
	ctx := testkit.Context(t)
	cfg, err := objstore.LoadAWS(ctx, testkit.AWS(), slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	for _, client := range []*s3.Client{objstore.NewClient(cfg, testkit.AWS()), objstore.NewPresignClient(cfg, testkit.AWS())} {
		creds, ok := client.Options().Credentials.(*objstore.Credentials)
		require.True(t, ok, "%T", client.Options().Credentials)
		var src sigv4.SigningSource = creds
		own := src.SigningCredentials()
		require.NotNil(t, own)
		require.NotSame(t, creds.CredentialsCache, own)
		shared, err := creds.Retrieve(ctx)
		require.NoError(t, err)
		own.Invalidate()
		signing, err := own.Retrieve(ctx)
		require.NoError(t, err)
		require.Equal(t, shared.AccessKeyID, signing.AccessKeyID, "the same chain, resolved twice")
	}
}

// TestLoadAWSLogsThroughSlog: what the SDK logs (its checksum warnings, retries when asked) is a
// structured line of the daemon's logger, not the SDK's default plain line on stderr; debug
// lines are dropped at the info level.
func TestLoadAWSLogsThroughSlog(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&buf, nil))
	cfg, err := objstore.LoadAWS(testkit.Context(t), testkit.AWS(), log)
	require.NoError(t, err)
	cfg.Logger.Logf(logging.Warn, "Response has no supported checksum. Not validating response payload. %d", 1)
	cfg.Logger.Logf(logging.Debug, "request %s", "dropped")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	require.Len(t, lines, 1, buf.String())
	var line map[string]any
	require.NoError(t, json.Unmarshal([]byte(lines[0]), &line))
	require.Equal(t, "WARN", line["level"])
	require.Equal(t, "aws-sdk", line["component"])
	require.Equal(t, "Response has no supported checksum. Not validating response payload. 1", line["msg"])
}

// TestPeekFastKeepsTheTransportsConnectionLimit: past the transport's MaxConnsPerHost, a GET goes
// through net/http (which waits for a connection) instead of opening one more.
func TestPeekFastKeepsTheTransportsConnectionLimit(t *testing.T) {
	t.Parallel()
	srv := newServer(t, func(w http.ResponseWriter, _ *http.Request) {
		time.Sleep(200 * time.Millisecond)
		w.Header().Set("Content-Range", "bytes 0-4/5")
		w.WriteHeader(http.StatusPartialContent)
		_, _ = io.WriteString(w, "hello")
	})
	cfg := testkit.AWSConfig()
	cfg.HTTPClient = objstore.TuneHTTPClient(awshttp.NewBuildableClient().WithTransportOptions(func(tr *http.Transport) {
		tr.MaxConnsPerHost = 1
	}), 8)
	objs := objstore.NewObjects(objstore.NewClient(cfg, testkit.AWSAt(srv.URL, "")))
	ctx := testkit.Context(t)
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			_, p, err := objs.Peek(ctx, "bkt", "k", 5)
			require.NoError(t, err)
			require.Equal(t, "hello", string(p))
		})
	}
	wg.Wait()
	require.ElementsMatch(t, []string{"fast", "net/http"}, senders(srv.take()))
	require.Equal(t, 1, objstore.FastIdle(objs))
}

// TestPeekRefusesACutOffBody: S3's answer announces 4,096 bytes of a 10,000-byte object and the
// connection breaks after 100. Peek through fasthttp, net/http and the SDK (the fallback of both)
// fails as S3 being unavailable (the message is retried), never returning the 100 bytes as the
// object's prefix: a type sniffed from a fragment could reject a valid upload for good.
func TestPeekRefusesACutOffBody(t *testing.T) {
	t.Parallel()
	srv := newServer(t, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Range", "bytes 0-4095/10000")
		w.Header().Set("Content-Length", "4096")
		w.WriteHeader(http.StatusPartialContent)
		_, _ = w.Write(bytes.Repeat([]byte{0x89}, 100))
		w.(http.Flusher).Flush()
		conn, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			_ = conn.Close()
		}
	})
	fast, slow := fastAndNetHTTP(t, s3At(srv.URL, 1))
	ctx := testkit.Context(t)
	for name, o := range map[string]*objstore.Objects{"fast": fast, "net/http": slow} {
		_, prefix, err := o.Peek(ctx, "bkt", "k.png", 4096)
		require.Error(t, err, name)
		require.ErrorIs(t, err, pipeline.ErrUnavailable, name)
		require.Nil(t, prefix, name)
	}
	got := senders(srv.take())
	require.Contains(t, got, "sdk", "the cut-off presigned GET was retried through the SDK: %v", got)
}
