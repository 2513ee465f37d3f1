package api

import (
	"net/http"
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
