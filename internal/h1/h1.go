// Package h1 sends HTTP/1.1 requests with fasthttp's request writer and response parser, in the
// calling goroutine, over keep-alive connections it pools itself, mirroring the transport of the
// SDK's HTTP client. intake uses it on its two hot AWS paths: the consumer's presigned ranged GETs
// (objstore's Peek) and its SQS receives and deletes (queue.Lean).
//
// # Why
//
// net/http spends two goroutines per connection (readLoop, writeLoop), channel handoffs between
// them and the caller, and header maps on every request: about a quarter of the consumer's CPU for
// the GETs, and most of what an SQS call costs beside its system calls. A [Pool] spends none of
// them.
//
// It pools its own connections rather than using fasthttp.Client because that client (and
// HostClient) starts idle-connection cleaner goroutines that sleep up to MaxIdleConnDuration and
// cannot be stopped: every test package building clients on the local stack would see them as
// leaked. A Pool starts no goroutine; an idle connection past the transport's IdleConnTimeout is
// closed when the pool next hands out or takes back a connection of its host, and
// [Pool.CloseIdleConnections] closes them all.
//
// # What it keeps of the transport
//
// Its dialer (DialContext, or Dial; a transport that dials TLS its own way, DialTLSContext or
// DialTLS, gets no Pool), its TLS configuration (which carries AWS_CA_BUNDLE's roots; always
// HTTP/1.1), its idle connections per host and idle timeout, and its limit on connections per
// host: at the limit, and for a host a proxy applies to, [Pool.Do] returns [ErrNetHTTP] and the
// caller sends the request through net/http (which waits for a connection, or goes through the
// proxy). Connections are pooled per scheme and host[:port]: an http and an https endpoint on the
// same address never share one. Dials are bounded by the dial timeout given to [NewPool], and an
// exchange by its response timeout and the context's deadline. A cancelled context aborts the
// exchange in flight (its connection's deadline is moved to the past). Redirects are not followed.
//
// # Idle connections
//
// As net/http never reuses a connection with something to read, a Pool checks an idle connection
// before it sends a request on it: one with bytes waiting (a stray or unsolicited answer such as
// the 408 Request Timeout load balancers send before closing, a body longer than its
// Content-Length), or that the server closed or reset, is closed, and the next idle one is taken
// or a new one dialled. The check costs one non-blocking recv(MSG_PEEK) on the socket; over TLS
// also a read, with the deadline in the past, of what the TLS layer buffered (which the socket no
// longer shows). It needs a socket that exposes its file descriptor (a syscall.Conn, as
// net.TCPConn is) on Linux, macOS, the BSDs or Solaris: a connection without one (on another
// system, or from a DialContext returning another kind of net.Conn) serves one exchange and is
// closed, never kept idle. Bytes still in flight when the check runs are read as the request's
// answer (a 408 excepted: see below).
//
// # Requests sent twice
//
// A request that went out on a reused connection (one taken idle from the pool) is sent once more,
// on a new connection, when the exchange failed before any byte of an answer came back (the server
// closed the connection while it was idle, before or while the request was written) or when its
// answer is a 408 Request Timeout (the server's idle timeout, not an answer to the request), as
// net/http does. That is done for every request, whatever its method, and even when its whole body
// was written, where net/http resends only idempotent ones (GET, HEAD, OPTIONS, TRACE, or with an
// Idempotency-Key) and ones of which nothing was written: callers send only requests that are safe
// to repeat (a ranged GET; an SQS delete; an SQS receive, whose repetition at worst hides messages
// until their visibility timeout ends, as the SDK's own retry of a failed receive does). A request
// is not sent again after an exchange that timed out or whose context ended, nor after any failure
// or 408 on a new connection; when the host has as many connections as the transport allows, Do
// returns ErrNetHTTP instead of sending it again (it may then have reached the server once).
package h1

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/valyala/fasthttp"
)

// ErrNetHTTP says that a request is for net/http, not a Pool: a proxy applies to its host, or the
// host has as many connections as the transport allows.
var ErrNetHTTP = errors.New("h1: request left to net/http")

// errIdle408 is a 408 Request Timeout read as the first answer on a reused connection: the server
// closing it for idleness, not an answer to the request.
var errIdle408 = errors.New("h1: 408 Request Timeout on a reused connection")

// ReadBuffer is a connection's read buffer, which must hold a response's whole header: a larger
// header fails Do with a *fasthttp.ErrSmallBuffer (AWS's are under 4 KiB, S3 user metadata
// included).
const ReadBuffer = 8 << 10

// Pool sends requests over pooled keep-alive connections; see the package documentation. It is
// safe for concurrent use.
type Pool struct {
	dial             func(ctx context.Context, network, addr string) (net.Conn, error) // the transport's
	dialTimeout      time.Duration                                                     // bound of a dial (0: none)
	tlsConfig        *tls.Config                                                       // for https endpoints; ServerName set per host
	proxy            func(*http.Request) (*url.URL, error)                             // the transport's (nil: none)
	handshakeTimeout time.Duration
	maxIdle          int           // idle connections kept per host
	maxConns         int           // connections per host (0: no limit)
	idleTimeout      time.Duration // 0: none
	responseTimeout  time.Duration // bound of one exchange

	mu    sync.Mutex
	hosts map[hostKey]*host
}

// hostKey names a host's pool: the URL's scheme and host[:port].
type hostKey struct{ scheme, name string }

// host is a host's pool (guarded by Pool.mu).
type host struct {
	direct bool        // no proxy applies: the Pool sends the host's requests
	addr   string      // host:port dialled
	tls    *tls.Config // nil: plain HTTP
	idle   []*conn     // least recently used first
	open   int         // connections open or being dialled
}

// conn is a pooled connection with its buffers.
type conn struct {
	net.Conn
	r        *bufio.Reader
	w        *bufio.Writer
	lastUsed time.Time
	tls      bool // Conn is a *tls.Conn over the socket
	// socket is the connection's socket, whose receive queue quiet peeks at (nil: it cannot be
	// checked, and the connection is never kept idle); peek is the function that does it, peekErr
	// its result and peekBuf its buffer (fields, so that a check allocates nothing).
	socket  syscall.RawConn
	peek    func(fd uintptr)
	peekErr error
	peekBuf [1]byte
}

// NewPool returns a Pool mirroring the transport of the SDK's buildable HTTP client b, whose
// exchanges last at most responseTimeout and dials at most dialTimeout (0: the transport's dialer
// alone bounds them). It dials with the transport's DialContext (or Dial), as net/http does, or
// else with b's dialer. It returns nil when the transport dials TLS its own way (DialTLSContext or
// DialTLS), which a Pool cannot mirror: callers then send every request through net/http.
func NewPool(b *awshttp.BuildableClient, responseTimeout, dialTimeout time.Duration) *Pool {
	tr := b.GetTransport() // a clone
	//lint:ignore SA1019 a transport may still set DialTLS, which a Pool cannot mirror either
	if tr.DialTLSContext != nil || tr.DialTLS != nil {
		return nil
	}
	dial := tr.DialContext
	//lint:ignore SA1019 net/http dials with Dial when DialContext is unset, and so does a Pool
	if d := tr.Dial; dial == nil && d != nil {
		dial = func(_ context.Context, network, addr string) (net.Conn, error) { return d(network, addr) }
	}
	if dial == nil {
		dial = b.GetDialer().DialContext
	}
	cfg := tr.TLSClientConfig // a clone too: it carries AWS_CA_BUNDLE's roots
	if cfg == nil {
		cfg = &tls.Config{}
	}
	cfg.NextProtos = []string{"http/1.1"} // never HTTP/2, which net/http may have offered
	maxIdle := tr.MaxIdleConnsPerHost
	if maxIdle <= 0 {
		maxIdle = http.DefaultMaxIdleConnsPerHost
	}
	return &Pool{
		dial: dial, dialTimeout: dialTimeout, tlsConfig: cfg, proxy: tr.Proxy, handshakeTimeout: tr.TLSHandshakeTimeout,
		maxIdle: maxIdle, maxConns: tr.MaxConnsPerHost, idleTimeout: tr.IdleConnTimeout,
		responseTimeout: responseTimeout, hosts: map[hostKey]*host{},
	}
}

// Do sends req to the host (host[:port]) of scheme ("http" or "https") and reads its response into
// resp, a body up to limit bytes (a larger one fails with fasthttp.ErrBodyTooLarge). The caller
// sets req's Host header and request URI. It returns ErrNetHTTP when net/http must send the
// request instead: nothing was sent, or the request was to be sent again (see the package
// documentation) and the host had no place for a new connection, when it may have reached the
// server once. A failed exchange returns the connection's error; when ctx ended, the caller
// should report ctx.Err().
func (p *Pool) Do(ctx context.Context, scheme, hostport string, req *fasthttp.Request, resp *fasthttp.Response, limit int) error {
	h := p.host(scheme, hostport)
	if !h.direct {
		return ErrNetHTTP
	}
	deadline := time.Now().Add(p.responseTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	c, ok := p.take(h)
	reused := c != nil
	for {
		if !ok {
			return ErrNetHTTP
		}
		if c == nil {
			var err error
			if c, err = p.dialConn(ctx, h, deadline); err != nil {
				p.release(h, nil)
				return err
			}
		}
		answered, reusable, err := exchange(ctx, c, req, resp, deadline, limit)
		if err == nil && reused && resp.StatusCode() == fasthttp.StatusRequestTimeout {
			// The server's idle timeout, not an answer to req (net/http's rule): the connection
			// is closing, and req goes once more on a new one.
			answered, reusable, err = false, false, errIdle408
		}
		if err == nil && reusable && c.socket != nil {
			p.put(h, c)
		} else {
			p.release(h, c)
		}
		if err == nil || answered || !reused || ctx.Err() != nil || IsTimeout(err) {
			return err
		}
		// No answer (the server closed this pooled connection while it was idle), or its idle
		// 408: once more on a new one.
		c, reused, ok = nil, false, p.reserve(h)
	}
}

// Idle returns the number of connections the Pool holds idle. Only a request the Pool completed
// puts a connection there, so a count that grows proves a request went through it.
func (p *Pool) Idle() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, h := range p.hosts {
		n += len(h.idle)
	}
	return n
}

// CloseIdleConnections closes the connections the Pool holds idle, as http.Transport's method of
// the name does. Connections in use are not affected: they are pooled again when their exchange
// ends. The Pool stays usable.
func (p *Pool) CloseIdleConnections() {
	var idle []*conn
	p.mu.Lock()
	for _, h := range p.hosts {
		idle = append(idle, h.idle...)
		h.open -= len(h.idle)
		clear(h.idle)
		h.idle = h.idle[:0]
	}
	p.mu.Unlock()
	closeAll(idle)
}

// host returns the pool of a scheme's host, deciding once whether a proxy applies to it.
func (p *Pool) host(scheme, name string) *host {
	key := hostKey{scheme, name}
	p.mu.Lock()
	defer p.mu.Unlock()
	if h := p.hosts[key]; h != nil {
		return h
	}
	h := &host{}
	if p.proxy == nil {
		h.direct = true
	} else {
		u, err := p.proxy(&http.Request{Method: http.MethodGet, URL: &url.URL{Scheme: scheme, Host: name}, Header: http.Header{}})
		h.direct = err == nil && u == nil
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
		h.tls = p.tlsConfig.Clone()
		if h.tls.ServerName == "" {
			h.tls.ServerName = hostname
		}
	}
	p.hosts[key] = h
	return h
}

// exchange writes req on c and reads the response. answered reports whether any byte of the
// response arrived; reusable whether c can serve another request.
func exchange(ctx context.Context, c *conn, req *fasthttp.Request, resp *fasthttp.Response, deadline time.Time, limit int) (answered, reusable bool, err error) {
	if err := c.SetDeadline(deadline); err != nil {
		return false, false, err
	}
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(pastDeadline) })
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

// IsTimeout reports whether err is a deadline's (not worth a second attempt).
func IsTimeout(err error) bool {
	var t interface{ Timeout() bool }
	return errors.As(err, &t) && t.Timeout()
}

// take returns the host's most recently used idle connection that has nothing to read (see
// quiet; it closes the others), or nil with ok when a new one may be dialled (its place
// reserved), or ok false when the host has maxConns connections. It closes the connections idle
// past the idle timeout.
func (p *Pool) take(h *host) (c *conn, ok bool) {
	for {
		p.mu.Lock()
		expired := p.expiredLocked(h)
		c = nil
		if n := len(h.idle); n > 0 {
			c = h.idle[n-1]
			h.idle[n-1] = nil
			h.idle = h.idle[:n-1]
		} else {
			ok = p.reserveLocked(h)
		}
		p.mu.Unlock()
		closeAll(expired)
		if c == nil {
			return nil, ok
		}
		if c.quiet() {
			return c, true
		}
		p.release(h, c) // a stray answer, a closed or reset connection: not for this request
	}
}

// pastDeadline is a deadline long past: a read under it returns what is buffered, or a timeout.
var pastDeadline = time.Unix(1, 0)

// quiet reports whether the idle connection c has nothing to read and is still open: its socket
// holds no byte, end of stream or error (one non-blocking recv with MSG_PEEK), and over TLS, the
// TLS layer holds nothing either (a read under a past deadline returns what the layer holds
// decrypted or as a whole record, if anything, else times out without reading the socket). The
// read buffer is empty: exchange pools no connection with bytes left in it.
func (c *conn) quiet() bool {
	if c.r.Buffered() != 0 || !c.socketQuiet() {
		return false
	}
	if !c.tls {
		return true
	}
	if err := c.SetReadDeadline(pastDeadline); err != nil {
		return false
	}
	_, err := c.r.Peek(1)
	return errors.Is(err, os.ErrDeadlineExceeded)
}

// reserve reserves a place for a new connection of the host (false: it has maxConns).
func (p *Pool) reserve(h *host) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.reserveLocked(h)
}

func (p *Pool) reserveLocked(h *host) bool {
	if p.maxConns > 0 && h.open >= p.maxConns {
		return false
	}
	h.open++
	return true
}

// release closes c (nil: a dial that failed) and frees its place.
func (p *Pool) release(h *host, c *conn) {
	if c != nil {
		_ = c.Close()
	}
	p.mu.Lock()
	h.open--
	p.mu.Unlock()
}

// put returns c to the host's pool, or closes it when the pool is full.
func (p *Pool) put(h *host, c *conn) {
	p.mu.Lock()
	expired := p.expiredLocked(h)
	if len(h.idle) < p.maxIdle {
		h.idle, c = append(h.idle, c), nil
	}
	p.mu.Unlock()
	closeAll(expired)
	if c != nil {
		p.release(h, c)
	}
}

// expiredLocked removes the host's connections idle past the idle timeout, frees their places
// and returns them to be closed.
func (p *Pool) expiredLocked(h *host) []*conn {
	if p.idleTimeout <= 0 || len(h.idle) == 0 || time.Since(h.idle[0].lastUsed) <= p.idleTimeout {
		return nil
	}
	i := 1
	for i < len(h.idle) && time.Since(h.idle[i].lastUsed) > p.idleTimeout {
		i++
	}
	expired := append([]*conn(nil), h.idle[:i]...)
	h.idle = append(h.idle[:0], h.idle[i:]...)
	h.open -= i
	return expired
}

func closeAll(conns []*conn) {
	for _, c := range conns {
		_ = c.Close()
	}
}

// dialConn connects to the host (TLS handshake included) with the transport's dialer, within the
// dial timeout.
func (p *Pool) dialConn(ctx context.Context, h *host, deadline time.Time) (*conn, error) {
	dctx := ctx
	if p.dialTimeout > 0 {
		var cancel context.CancelFunc
		dctx, cancel = context.WithTimeout(ctx, p.dialTimeout)
		defer cancel()
	}
	raw, err := p.dial(dctx, "tcp", h.addr)
	if err != nil {
		return nil, err
	}
	c := &conn{Conn: raw}
	c.setSocket(raw)
	if h.tls != nil {
		hs := deadline
		if p.handshakeTimeout > 0 && time.Now().Add(p.handshakeTimeout).Before(hs) {
			hs = time.Now().Add(p.handshakeTimeout)
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
		c.Conn, c.tls = tc, true
	}
	c.r, c.w = bufio.NewReaderSize(c.Conn, ReadBuffer), bufio.NewWriter(c.Conn)
	return c, nil
}
