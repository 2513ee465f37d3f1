package objstore

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/valyala/fasthttp"

	"github.com/intakehq/intake/internal/redact"
)

// errNetHTTP says that a GET is for net/http, not fastGetter: a proxy applies to its host, the host
// has as many connections as the transport allows, or the answer is larger than fastGetter buffers
// (a body beyond the Range, which the server ignored; a header beyond fastReadBuffer).
var errNetHTTP = errors.New("objstore: presigned GET left to net/http")

// fastReadBuffer is a connection's read buffer, which must hold a response's whole header (S3's
// are under 4 KiB, user metadata included).
const fastReadBuffer = 8 << 10

// fastGetter sends Peek's presigned ranged GETs with fasthttp's HTTP/1.1 request writer and
// response parser, in the calling goroutine, over keep-alive connections it pools itself. net/http
// spends two goroutines per connection (readLoop, writeLoop), channel handoffs and header maps on
// every request, about a quarter of the consumer's CPU; this path spends none of them.
//
// It pools its own connections rather than using fasthttp.Client because that client (and
// HostClient) starts idle-connection cleaner goroutines that sleep up to MaxIdleConnDuration and
// cannot be stopped: every test package building Objects on the local stack would see them as
// leaked. fastGetter starts no goroutine; an idle connection past the transport's IdleConnTimeout
// is closed when the pool next hands out or takes back a connection of its host.
//
// It mirrors the SDK client's transport (see newFastGetter): its TLS configuration, its idle
// connections per host and idle timeout, and its limit on connections per host (at the limit, a GET
// goes through net/http, which waits for a connection); no proxy may apply. Dials are bounded by
// dialTimeout, and an exchange by S3ResponseTimeout and the context's deadline. A
// cancelled context aborts the exchange in flight (its connection's deadline is moved to the past).
// A GET that went out on a pooled connection and got no byte back (the server closed it while
// idle) is sent once more on a new connection, as net/http does. Redirects are not followed.
type fastGetter struct {
	dialer           *net.Dialer
	tlsConfig        *tls.Config                           // for https endpoints; ServerName set per host
	proxy            func(*http.Request) (*url.URL, error) // the transport's (nil: none)
	handshakeTimeout time.Duration
	maxIdle          int           // idle connections kept per host
	maxConns         int           // connections per host (0: no limit)
	idleTimeout      time.Duration // 0: none

	mu    sync.Mutex
	hosts map[string]*fastHost // by the URL's host[:port]
}

// fastHost is a host's pool (guarded by fastGetter.mu).
type fastHost struct {
	direct bool        // no proxy applies: fastGetter sends the host's GETs
	addr   string      // host:port dialled
	tls    *tls.Config // nil: plain HTTP
	idle   []*fastConn // least recently used first
	open   int         // connections open or being dialled
}

// fastConn is a pooled connection with its buffers.
type fastConn struct {
	net.Conn
	r        *bufio.Reader
	w        *bufio.Writer
	lastUsed time.Time
}

// newFastGetter returns the fasthttp sender for an S3 client's HTTP client, or nil when that is not
// the SDK's buildable client (possibly wrapped: see UnwrapHTTPClient), whose transport it can
// mirror, or the transport dials TLS its own way. Any other client keeps every presigned GET on
// net/http.
func newFastGetter(c aws.HTTPClient) *fastGetter {
	b, ok := UnwrapHTTPClient(c).(*awshttp.BuildableClient)
	if !ok {
		return nil
	}
	tr := b.GetTransport() // a clone
	if tr.DialTLSContext != nil {
		return nil
	}
	cfg := tr.TLSClientConfig // a clone too: it carries AWS_CA_BUNDLE's roots
	if cfg == nil {
		cfg = &tls.Config{}
	}
	cfg.NextProtos = []string{"http/1.1"} // never HTTP/2, which net/http may have offered
	dialer := b.GetDialer()
	dialer.Timeout = dialTimeout
	maxIdle := tr.MaxIdleConnsPerHost
	if maxIdle <= 0 {
		maxIdle = http.DefaultMaxIdleConnsPerHost
	}
	return &fastGetter{
		dialer: dialer, tlsConfig: cfg, proxy: tr.Proxy, handshakeTimeout: tr.TLSHandshakeTimeout,
		maxIdle: maxIdle, maxConns: tr.MaxConnsPerHost, idleTimeout: tr.IdleConnTimeout,
		hosts: map[string]*fastHost{},
	}
}

// getRange sends the presigned GET u of bytes [0, n). It returns errNetHTTP when net/http must
// send it instead; other results are as presignedGetter.getRange's.
func (g *fastGetter) getRange(ctx context.Context, u string, n int) (rangeReply, error) {
	scheme, rest, _ := strings.Cut(u, "://")
	name, target := rest, "/"
	if i := strings.IndexByte(rest, '/'); i >= 0 {
		name, target = rest[:i], rest[i:]
	}
	h := g.host(scheme, name)
	if !h.direct {
		return rangeReply{}, errNetHTTP
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
	if err := g.do(ctx, h, req, resp, n+maxErrorBody); err != nil {
		fasthttp.ReleaseResponse(resp)
		var small *fasthttp.ErrSmallBuffer // a header larger than fastReadBuffer
		if errors.Is(err, fasthttp.ErrBodyTooLarge) || errors.As(err, &small) || errors.Is(err, errNetHTTP) {
			return rangeReply{}, errNetHTTP
		}
		if d, ok := ctx.Deadline(); ok && isTimeout(err) && !time.Now().Before(d) {
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
	body := &fastBody{resp: resp}
	body.Reset(resp.Body())
	return rangeReply{contentLength: int64(resp.Header.ContentLength()), header: fastHeader{&resp.Header}, body: body}, nil
}

// host returns the pool of a host, deciding once whether a proxy applies to it.
func (g *fastGetter) host(scheme, name string) *fastHost {
	g.mu.Lock()
	defer g.mu.Unlock()
	if h := g.hosts[name]; h != nil {
		return h
	}
	h := &fastHost{}
	if g.proxy == nil {
		h.direct = true
	} else {
		p, err := g.proxy(&http.Request{Method: http.MethodGet, URL: &url.URL{Scheme: scheme, Host: name}, Header: http.Header{}})
		h.direct = err == nil && p == nil
	}
	hostname, port := name, ""
	if hp, pt, err := net.SplitHostPort(name); err == nil {
		hostname, port = hp, pt
	}
	hostname = strings.TrimSuffix(strings.TrimPrefix(hostname, "["), "]")
	switch {
	case port != "":
	case scheme == "https":
		port = "443"
	default:
		port = "80"
	}
	h.addr = net.JoinHostPort(hostname, port)
	if scheme == "https" {
		h.tls = g.tlsConfig.Clone()
		if h.tls.ServerName == "" {
			h.tls.ServerName = hostname
		}
	}
	g.hosts[name] = h
	return h
}

// do sends req and reads its response into resp (a body up to limit bytes), on a pooled
// connection when there is one. It returns errNetHTTP when the host has maxConns connections.
func (g *fastGetter) do(ctx context.Context, h *fastHost, req *fasthttp.Request, resp *fasthttp.Response, limit int) error {
	deadline := time.Now().Add(S3ResponseTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	c, ok := g.take(h)
	reused := c != nil
	for {
		if !ok {
			return errNetHTTP
		}
		if c == nil {
			var err error
			if c, err = g.dial(ctx, h, deadline); err != nil {
				g.release(h, nil)
				return err
			}
		}
		answered, reusable, err := exchange(ctx, c, req, resp, deadline, limit)
		if err == nil && reusable {
			g.put(h, c)
		} else {
			g.release(h, c)
		}
		if err == nil || answered || !reused || ctx.Err() != nil || isTimeout(err) {
			return err
		}
		// The server closed this pooled connection while it was idle: once more on a new one.
		c, reused, ok = nil, false, g.reserve(h)
	}
}

// exchange writes req on c and reads the response. answered reports whether any byte of the
// response arrived; reusable whether c can serve another request.
func exchange(ctx context.Context, c *fastConn, req *fasthttp.Request, resp *fasthttp.Response, deadline time.Time, limit int) (answered, reusable bool, err error) {
	if err := c.SetDeadline(deadline); err != nil {
		return false, false, err
	}
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Unix(1, 0)) })
	defer func() {
		if !stop() { // the deadline was moved: the connection is done
			reusable = false
		}
	}()
	if err := req.Write(c.w); err != nil {
		return false, false, err
	}
	if err := c.w.Flush(); err != nil {
		return false, false, err
	}
	if _, err := c.r.Peek(1); err != nil {
		return false, false, err
	}
	if err := resp.ReadLimitBody(c.r, limit); err != nil {
		return true, false, err
	}
	c.lastUsed = time.Now()
	return true, !resp.ConnectionClose() && c.r.Buffered() == 0, nil
}

// isTimeout reports whether err is a deadline's (not worth a second attempt).
func isTimeout(err error) bool {
	var t interface{ Timeout() bool }
	return errors.As(err, &t) && t.Timeout()
}

// take returns the host's most recently used idle connection, or nil with ok when a new one may
// be dialled (its place reserved), or ok false when the host has maxConns connections. It closes
// the connections idle past the idle timeout.
func (g *fastGetter) take(h *fastHost) (c *fastConn, ok bool) {
	g.mu.Lock()
	expired := g.expiredLocked(h)
	if n := len(h.idle); n > 0 {
		c, ok = h.idle[n-1], true
		h.idle[n-1] = nil
		h.idle = h.idle[:n-1]
	} else {
		ok = g.reserveLocked(h)
	}
	g.mu.Unlock()
	closeAll(expired)
	return c, ok
}

// reserve reserves a place for a new connection of the host (false: it has maxConns).
func (g *fastGetter) reserve(h *fastHost) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.reserveLocked(h)
}

func (g *fastGetter) reserveLocked(h *fastHost) bool {
	if g.maxConns > 0 && h.open >= g.maxConns {
		return false
	}
	h.open++
	return true
}

// release closes c (nil: a dial that failed) and frees its place.
func (g *fastGetter) release(h *fastHost, c *fastConn) {
	if c != nil {
		_ = c.Close()
	}
	g.mu.Lock()
	h.open--
	g.mu.Unlock()
}

// put returns c to the host's pool, or closes it when the pool is full.
func (g *fastGetter) put(h *fastHost, c *fastConn) {
	g.mu.Lock()
	expired := g.expiredLocked(h)
	if len(h.idle) < g.maxIdle {
		h.idle, c = append(h.idle, c), nil
	}
	g.mu.Unlock()
	closeAll(expired)
	if c != nil {
		g.release(h, c)
	}
}

// expiredLocked removes the host's connections idle past the idle timeout, frees their places
// and returns them to be closed.
func (g *fastGetter) expiredLocked(h *fastHost) []*fastConn {
	if g.idleTimeout <= 0 || len(h.idle) == 0 || time.Since(h.idle[0].lastUsed) <= g.idleTimeout {
		return nil
	}
	i := 1
	for i < len(h.idle) && time.Since(h.idle[i].lastUsed) > g.idleTimeout {
		i++
	}
	expired := append([]*fastConn(nil), h.idle[:i]...)
	h.idle = append(h.idle[:0], h.idle[i:]...)
	h.open -= i
	return expired
}

func closeAll(conns []*fastConn) {
	for _, c := range conns {
		_ = c.Close()
	}
}

// dial connects to the host (TLS handshake included).
func (g *fastGetter) dial(ctx context.Context, h *fastHost, deadline time.Time) (*fastConn, error) {
	raw, err := g.dialer.DialContext(ctx, "tcp", h.addr)
	if err != nil {
		return nil, err
	}
	conn := raw
	if h.tls != nil {
		hs := deadline
		if g.handshakeTimeout > 0 && time.Now().Add(g.handshakeTimeout).Before(hs) {
			hs = time.Now().Add(g.handshakeTimeout)
		}
		tc := tls.Client(raw, h.tls)
		err := raw.SetDeadline(hs)
		if err == nil {
			err = tc.HandshakeContext(ctx)
		}
		if err != nil {
			_ = raw.Close()
			return nil, err
		}
		conn = tc
	}
	return &fastConn{Conn: conn, r: bufio.NewReaderSize(conn, fastReadBuffer), w: bufio.NewWriter(conn)}, nil
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
