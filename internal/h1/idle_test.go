package h1_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/stretchr/testify/require"
	"github.com/valyala/fasthttp"

	"github.com/intakehq/intake/internal/h1"
)

// rawServer accepts connections (over TLS with tlsConfig set) and hands each to serve with its
// number (from 1) and a reader of its requests. It returns the address and the count of
// connections accepted; the test's cleanup closes the connections still open.
func rawServer(t testing.TB, tlsConfig *tls.Config, serve func(c net.Conn, r *bufio.Reader, n int32)) (string, *atomic.Int32) {
	t.Helper()
	var ln net.Listener
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	if tlsConfig != nil {
		ln = tls.NewListener(ln, tlsConfig)
	}
	conns := &atomic.Int32{}
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		open []net.Conn
	)
	t.Cleanup(func() {
		_ = ln.Close()
		mu.Lock()
		for _, c := range open {
			_ = c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			open = append(open, c)
			mu.Unlock()
			n := conns.Add(1)
			wg.Go(func() {
				defer c.Close()
				serve(c, bufio.NewReader(c), n)
			})
		}
	})
	return ln.Addr().String(), conns
}

// testTLS returns a server TLS configuration with httptest's certificate (for 127.0.0.1) and a
// buildable client whose transport trusts it.
func testTLS(t testing.TB) (*tls.Config, *awshttp.BuildableClient) {
	t.Helper()
	srv := httptest.NewTLSServer(http.NotFoundHandler())
	t.Cleanup(srv.Close)
	roots := srv.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs
	b := awshttp.NewBuildableClient().WithTransportOptions(func(tr *http.Transport) {
		tr.TLSClientConfig.RootCAs = roots
	})
	return &tls.Config{Certificates: srv.TLS.Certificates, DynamicRecordSizingDisabled: true}, b
}

// answer writes a 200 whose body is the request's target.
func answer(w io.Writer, req *http.Request) {
	_, _ = io.WriteString(w, "HTTP/1.1 200 OK\r\nContent-Length: "+strconv.Itoa(len(req.RequestURI))+"\r\n\r\n"+req.RequestURI)
}

func get(host, target string) *fasthttp.Request {
	req := fasthttp.AcquireRequest()
	req.Header.SetHost(host)
	req.SetRequestURI(target)
	return req
}

// do sends GET target through p and returns the answer's status and body.
func do(t *testing.T, p *h1.Pool, scheme, host, target string) (int, string, error) {
	t.Helper()
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseResponse(resp)
	err := p.Do(context.Background(), scheme, host, get(host, target), resp, 1<<20)
	return resp.StatusCode(), string(resp.Body()), err
}

// TestPoolDropsAnIdleConnectionWithBytesWaiting: bytes that arrive on a pooled connection while
// it is idle (a stray response, the 408 Request Timeout load balancers send before closing, the
// rest of a body longer than its Content-Length) are no request's answer: the Pool closes that
// connection and sends the next request on a new one, over plain TCP and TLS, so that every
// request gets its own answer. Before, the next request read the stray bytes as its answer and the
// connection stayed one answer behind.
func TestPoolDropsAnIdleConnectionWithBytesWaiting(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, stray string }{
		{"stray response", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nstray"},
		{"unsolicited 408", "HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"},
		{"body beyond its length", "xx"},
	} {
		for _, secure := range []bool{false, true} {
			name := tc.name + map[bool]string{false: " http", true: " https"}[secure]
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				var serverTLS *tls.Config
				b := awshttp.NewBuildableClient()
				scheme := "http"
				if secure {
					serverTLS, b = testTLS(t)
					scheme = "https"
				}
				// Each connection answers its requests; 50 ms after its first answer, it writes
				// the stray bytes, and keeps the connection open.
				host, conns := rawServer(t, serverTLS, func(c net.Conn, r *bufio.Reader, _ int32) {
					for i := 0; ; i++ {
						req, err := http.ReadRequest(r)
						if err != nil {
							return
						}
						answer(c, req)
						if i == 0 {
							time.Sleep(50 * time.Millisecond)
							_, _ = io.WriteString(c, tc.stray)
						}
					}
				})
				p := h1.NewPool(b, 5*time.Second, time.Second)
				for _, target := range []string{"/1", "/2", "/3"} {
					status, body, err := do(t, p, scheme, host, target)
					require.NoError(t, err, target)
					require.Equal(t, http.StatusOK, status, target)
					require.Equal(t, target, body, "each request gets its own answer")
					time.Sleep(100 * time.Millisecond) // the stray bytes arrive on the idle connection
				}
				require.EqualValues(t, 3, conns.Load(), "each connection with stray bytes was closed")
			})
		}
	}
}

// TestPoolDropsATLSConnectionWithDecryptedBytesLeft: over TLS, bytes beyond an answer's
// Content-Length that came in the answer's own TLS record are held by the TLS layer, not the
// socket: the Pool finds them there too.
func TestPoolDropsATLSConnectionWithDecryptedBytesLeft(t *testing.T) {
	t.Parallel()
	serverTLS, b := testTLS(t)
	body := strings.Repeat("b", 9000)
	host, conns := rawServer(t, serverTLS, func(c net.Conn, r *bufio.Reader, _ int32) {
		for {
			if _, err := http.ReadRequest(r); err != nil {
				return
			}
			// The header in a TLS record, then the body and a stray answer in another: the
			// client's read buffer takes the header, the body is read past it (larger than
			// the buffer), and the stray answer stays in the TLS layer.
			_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 9000\r\n\r\n")
			_, _ = io.WriteString(c, body+"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nstray")
		}
	})
	p := h1.NewPool(b, 5*time.Second, time.Second)
	for _, target := range []string{"/1", "/2"} {
		status, got, err := do(t, p, "https", host, target)
		require.NoError(t, err, target)
		require.Equal(t, http.StatusOK, status, target)
		require.True(t, got == body, "%s: answered %d bytes starting %.10q", target, len(got), got)
	}
	require.EqualValues(t, 2, conns.Load())
}

// TestPoolKeepsQuietConnections: the check of an idle connection does not close a sound one, over
// plain TCP and TLS (where the session tickets of TLS 1.3 come after the handshake).
func TestPoolKeepsQuietConnections(t *testing.T) {
	t.Parallel()
	for _, secure := range []bool{false, true} {
		t.Run(map[bool]string{false: "http", true: "https"}[secure], func(t *testing.T) {
			t.Parallel()
			var serverTLS *tls.Config
			b := awshttp.NewBuildableClient()
			scheme := "http"
			if secure {
				serverTLS, b = testTLS(t)
				scheme = "https"
			}
			host, conns := rawServer(t, serverTLS, func(c net.Conn, r *bufio.Reader, _ int32) {
				for {
					req, err := http.ReadRequest(r)
					if err != nil {
						return
					}
					answer(c, req)
				}
			})
			p := h1.NewPool(b, 5*time.Second, time.Second)
			for _, target := range []string{"/1", "/2", "/3", "/4"} {
				_, body, err := do(t, p, scheme, host, target)
				require.NoError(t, err)
				require.Equal(t, target, body)
				time.Sleep(20 * time.Millisecond)
			}
			require.EqualValues(t, 1, conns.Load())
			require.Equal(t, 1, p.Idle())
		})
	}
}

// TestPoolResendsWhenAReusedConnectionDoesNotAnswer: a request sent on a reused connection that
// the server closes without answering (its idle timeout raced the request: here it reads the
// request, then closes, with a FIN or a reset), or answers with a 408 Request Timeout (the idle
// timeout of HAProxy or an ALB), is sent once more on a new connection, and gets that one's
// answer; a request on a new connection is never sent twice (a 408 there is the answer).
func TestPoolResendsWhenAReusedConnectionDoesNotAnswer(t *testing.T) {
	t.Parallel()
	const timeout408 = "HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
	for _, tc := range []struct {
		name string
		// second is what the first connection does with its second request.
		second func(c net.Conn)
		// firstOfOthers is what the other connections answer to their first request.
		firstOfOthers string
		status        int
		requests      int32 // requests the server read
	}{
		{"closed", func(net.Conn) {}, "", http.StatusOK, 3},
		{"reset", func(c net.Conn) { _ = c.(*net.TCPConn).SetLinger(0) }, "", http.StatusOK, 3},
		{"408", func(c net.Conn) { _, _ = io.WriteString(c, timeout408) }, "", http.StatusOK, 3},
		{"408 again on the new connection", func(c net.Conn) { _, _ = io.WriteString(c, timeout408) }, timeout408, http.StatusRequestTimeout, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var requests atomic.Int32
			host, conns := rawServer(t, nil, func(c net.Conn, r *bufio.Reader, n int32) {
				for i := 0; ; i++ {
					req, err := http.ReadRequest(r)
					if err != nil {
						return
					}
					requests.Add(1)
					switch {
					case n == 1 && i == 1:
						tc.second(c)
						return
					case n > 1 && i == 0 && tc.firstOfOthers != "":
						_, _ = io.WriteString(c, tc.firstOfOthers)
						return
					}
					answer(c, req)
				}
			})
			p := h1.NewPool(awshttp.NewBuildableClient(), 5*time.Second, time.Second)
			_, body, err := do(t, p, "http", host, "/1")
			require.NoError(t, err)
			require.Equal(t, "/1", body)
			status, body, err := do(t, p, "http", host, "/2")
			require.NoError(t, err)
			require.Equal(t, tc.status, status)
			if status == http.StatusOK {
				require.Equal(t, "/2", body)
			}
			require.EqualValues(t, 2, conns.Load(), "sent once more, on one new connection")
			require.Equal(t, tc.requests, requests.Load())
		})
	}

	t.Run("408 on a new connection", func(t *testing.T) {
		t.Parallel()
		var requests atomic.Int32
		host, _ := rawServer(t, nil, func(c net.Conn, r *bufio.Reader, _ int32) {
			if _, err := http.ReadRequest(r); err == nil {
				requests.Add(1)
				_, _ = io.WriteString(c, timeout408)
			}
		})
		p := h1.NewPool(awshttp.NewBuildableClient(), 5*time.Second, time.Second)
		status, _, err := do(t, p, "http", host, "/1")
		require.NoError(t, err)
		require.Equal(t, http.StatusRequestTimeout, status)
		require.EqualValues(t, 1, requests.Load())
	})
}

// TestPoolKeysHostsByScheme: an http and an https endpoint on the same address have pools of their
// own: an https request never goes out in clear text on the http endpoint's connection.
func TestPoolKeysHostsByScheme(t *testing.T) {
	t.Parallel()
	firstBytes := make(chan byte, 4)
	host, conns := rawServer(t, nil, func(c net.Conn, r *bufio.Reader, _ int32) {
		for {
			b, err := r.Peek(1)
			if err != nil {
				return
			}
			firstBytes <- b[0]
			req, err := http.ReadRequest(r)
			if err != nil {
				return
			}
			answer(c, req)
		}
	})
	p := h1.NewPool(awshttp.NewBuildableClient(), 2*time.Second, time.Second)
	_, _, err := do(t, p, "http", host, "/plain")
	require.NoError(t, err)
	require.Equal(t, byte('G'), <-firstBytes)
	_, _, err = do(t, p, "https", host, "/secure")
	require.Error(t, err, "the server speaks plain HTTP")
	require.Equal(t, byte(0x16), <-firstBytes, "a TLS handshake record")
	require.EqualValues(t, 2, conns.Load())
	_, body, err := do(t, p, "http", host, "/plain")
	require.NoError(t, err)
	require.Equal(t, "/plain", body)
}

// TestPoolDialsWithTheTransportsDialer: the Pool dials with the transport's DialContext, as
// net/http does, rather than a dialer of its own; a connection that is not a socket it can peek at
// serves its request and is not kept idle. A transport that dials TLS its own way gets no Pool.
func TestPoolDialsWithTheTransportsDialer(t *testing.T) {
	t.Parallel()
	host, _ := server(t, 0)
	var dials atomic.Int32
	b := awshttp.NewBuildableClient().WithTransportOptions(func(tr *http.Transport) {
		tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
			dials.Add(1)
			c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
			return struct{ net.Conn }{c}, err // hides the socket
		}
	})
	p := h1.NewPool(b, 5*time.Second, time.Second)
	for range 2 {
		resp := fasthttp.AcquireResponse()
		require.NoError(t, p.Do(context.Background(), "http", host, post(host, "/", "x"), resp, 1<<10))
		require.Equal(t, "POST / x", string(resp.Body()))
		require.Zero(t, p.Idle(), "a connection the Pool cannot check is not kept")
	}
	require.EqualValues(t, 2, dials.Load())

	for name, opt := range map[string]func(*http.Transport){
		"DialTLSContext": func(tr *http.Transport) {
			tr.DialTLSContext = func(context.Context, string, string) (net.Conn, error) { return nil, errors.New("no") }
		},
		"DialTLS": func(tr *http.Transport) {
			//lint:ignore SA1019 a transport may still set it
			tr.DialTLS = func(string, string) (net.Conn, error) { return nil, errors.New("no") }
		},
	} {
		require.Nil(t, h1.NewPool(awshttp.NewBuildableClient().WithTransportOptions(opt), time.Second, time.Second), name)
	}
}

// BenchmarkPoolDo: one GET with a small answer on a kept-alive loopback connection, over plain
// HTTP and TLS: the client's cost of an exchange, the check of the idle connection included.
func BenchmarkPoolDo(b *testing.B) {
	for _, secure := range []bool{false, true} {
		b.Run(map[bool]string{false: "http", true: "https"}[secure], func(b *testing.B) {
			var serverTLS *tls.Config
			client := awshttp.NewBuildableClient()
			scheme := "http"
			if secure {
				serverTLS, client = testTLS(b)
				scheme = "https"
			}
			host, _ := rawServer(b, serverTLS, func(c net.Conn, r *bufio.Reader, _ int32) {
				w := bufio.NewWriter(c)
				for {
					req, err := http.ReadRequest(r)
					if err != nil {
						return
					}
					answer(w, req)
					_ = w.Flush()
				}
			})
			p := h1.NewPool(client, 5*time.Second, time.Second)
			req := get(host, "/bench")
			resp := fasthttp.AcquireResponse()
			b.ReportAllocs()
			for b.Loop() {
				if err := p.Do(context.Background(), scheme, host, req, resp, 1<<10); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
