package h1_test

import (
	"bufio"
	"net"
	"net/http"
	"testing"
	"time"

	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/stretchr/testify/require"

	"github.com/intakehq/intake/internal/h1"
)

// TestPoolCloseIdleConnections: CloseIdleConnections closes the idle connections (the server sees
// them end); the Pool dials a new one for the next request.
func TestPoolCloseIdleConnections(t *testing.T) {
	t.Parallel()
	closed := make(chan struct{}, 1)
	host, conns := rawServer(t, nil, func(c net.Conn, r *bufio.Reader, _ int32) {
		defer func() { closed <- struct{}{} }()
		for {
			req, err := http.ReadRequest(r)
			if err != nil {
				return
			}
			answer(c, req)
		}
	})
	p := h1.NewPool(awshttp.NewBuildableClient(), 5*time.Second, time.Second)
	_, _, err := do(t, p, "http", host, "/1")
	require.NoError(t, err)
	require.Equal(t, 1, p.Idle())
	p.CloseIdleConnections()
	require.Zero(t, p.Idle())
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("the idle connection is still open")
	}
	_, body, err := do(t, p, "http", host, "/2")
	require.NoError(t, err)
	require.Equal(t, "/2", body)
	require.EqualValues(t, 2, conns.Load())
}
