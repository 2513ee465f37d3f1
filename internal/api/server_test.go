package api

import (
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// A long poll (GET /v1/uploads/{id}?wait=) answers after waiting up to MaxWait and then reading the
// upload again: the public listener's write timeout must leave room for that read, or the longest
// poll's answer would be cut off.
func TestLongPollFitsTheWriteTimeout(t *testing.T) {
	require.Less(t, MaxWait+10*time.Second, WriteTimeout)
	srv := NewHTTPServer(http.NotFoundHandler(), WriteTimeout, nil)
	require.Equal(t, WriteTimeout, srv.WriteTimeout)
	require.Positive(t, srv.ReadHeaderTimeout)
	require.LessOrEqual(t, srv.ReadHeaderTimeout, srv.ReadTimeout)
	require.Positive(t, srv.IdleTimeout)
}

// A complete request is answered within CompleteBudget of its handler's start; the write timeout
// runs from the end of its headers (a little earlier), so the budget leaves it a margin.
func TestCompleteFitsTheWriteTimeout(t *testing.T) {
	require.LessOrEqual(t, CompleteBudget+5*time.Second, WriteTimeout)
}

// TestHeadersBounded: a client without credentials sends a request whose headers hold 512 KiB (a
// junk bearer token). Go's default let headers reach 1 MiB, all read and handed to the handler;
// the daemon's server answers 431 without running a handler, while headers of a realistic size
// (a token at auth.MaxTokenBytes) still reach it.
func TestHeadersBounded(t *testing.T) {
	var ran atomic.Int32
	srv := NewHTTPServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { ran.Add(1) }), WriteTimeout, nil)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	get := func(token string) int {
		req, err := http.NewRequest(http.MethodGet, "http://"+ln.Addr().String()+"/v1/objects", nil)
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		_ = resp.Body.Close()
		return resp.StatusCode
	}
	require.Equal(t, http.StatusRequestHeaderFieldsTooLarge, get(strings.Repeat("a", 512<<10)))
	require.Zero(t, ran.Load(), "the handler ran for oversized headers")
	require.Equal(t, http.StatusOK, get(strings.Repeat("a", 16<<10)))
	require.Equal(t, int32(1), ran.Load())
}
