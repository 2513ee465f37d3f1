package h1_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/stretchr/testify/require"
	"github.com/valyala/fasthttp"
	"go.uber.org/goleak"

	"github.com/intakehq/intake/internal/h1"
)

// server echoes a request's method, target and body, counting the connections it accepts.
func server(t *testing.T, delay time.Duration) (host string, conns *atomic.Int32) {
	t.Helper()
	conns = &atomic.Int32{}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		select {
		case <-time.After(delay):
		case <-r.Context().Done():
			return
		}
		_, _ = io.WriteString(w, r.Method+" "+r.URL.RequestURI()+" "+string(body))
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://"), conns
}

func post(host, target, body string) *fasthttp.Request {
	req := fasthttp.AcquireRequest()
	req.Header.SetMethod(http.MethodPost)
	req.Header.SetHost(host)
	req.SetRequestURI(target)
	req.SetBodyString(body)
	return req
}

// TestPoolReusesItsConnection: requests go out on one keep-alive connection, answered in full,
// and the pool starts no goroutine of its own.
func TestPoolReusesItsConnection(t *testing.T) {
	host, conns := server(t, 0)
	opt := goleak.IgnoreCurrent()
	p := h1.NewPool(awshttp.NewBuildableClient(), 10*time.Second, time.Second)
	for i := range 3 {
		resp := fasthttp.AcquireResponse()
		err := p.Do(context.Background(), "http", host, post(host, "/q?x=1", "body"), resp, 1<<10)
		require.NoError(t, err, i)
		require.Equal(t, "POST /q?x=1 body", string(resp.Body()))
		require.Equal(t, 1, p.Idle())
	}
	require.Equal(t, int32(1), conns.Load())
	goleak.VerifyNone(t, opt, goleak.IgnoreAnyFunction("net/http.(*conn).serve")) // the server's side of the connection
}

// TestPoolLeavesProxiedHostsToNetHTTP: a host the transport's proxy applies to gets nothing from
// the pool: ErrNetHTTP, no connection.
func TestPoolLeavesProxiedHostsToNetHTTP(t *testing.T) {
	host, conns := server(t, 0)
	proxied := awshttp.NewBuildableClient().WithTransportOptions(func(tr *http.Transport) {
		tr.Proxy = func(*http.Request) (*url.URL, error) { return url.Parse("http://proxy.invalid:3128") }
	})
	p := h1.NewPool(proxied, 10*time.Second, time.Second)
	err := p.Do(context.Background(), "http", host, post(host, "/", ""), fasthttp.AcquireResponse(), 1<<10)
	require.ErrorIs(t, err, h1.ErrNetHTTP)
	require.Zero(t, conns.Load())
}

// TestPoolBoundsAnExchange: a server slower than the response timeout, or a cancelled context,
// ends the exchange with an error, and its connection is not kept.
func TestPoolBoundsAnExchange(t *testing.T) {
	host, _ := server(t, 5*time.Second)
	p := h1.NewPool(awshttp.NewBuildableClient(), 200*time.Millisecond, time.Second)
	began := time.Now()
	err := p.Do(context.Background(), "http", host, post(host, "/", ""), fasthttp.AcquireResponse(), 1<<10)
	require.True(t, h1.IsTimeout(err), "%v", err)
	require.Less(t, time.Since(began), 3*time.Second)
	require.Zero(t, p.Idle())

	p = h1.NewPool(awshttp.NewBuildableClient(), time.Minute, time.Second)
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(200*time.Millisecond, cancel)
	began = time.Now()
	err = p.Do(ctx, "http", host, post(host, "/", ""), fasthttp.AcquireResponse(), 1<<10)
	require.Error(t, err)
	require.True(t, errors.Is(ctx.Err(), context.Canceled))
	require.Less(t, time.Since(began), 3*time.Second)
	require.Zero(t, p.Idle())
}

// TestPoolRefusesALargerBody: an answer beyond the limit fails the exchange.
func TestPoolRefusesALargerBody(t *testing.T) {
	host, _ := server(t, 0)
	p := h1.NewPool(awshttp.NewBuildableClient(), 10*time.Second, time.Second)
	err := p.Do(context.Background(), "http", host, post(host, "/", strings.Repeat("x", 100)), fasthttp.AcquireResponse(), 50)
	require.ErrorIs(t, err, fasthttp.ErrBodyTooLarge)
}
