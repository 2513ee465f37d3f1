package api

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestInflight: wait returns at once with nothing running, waits for every goroutine counted
// (one added while it waits included), and gives up with ctx's error.
func TestInflight(t *testing.T) {
	t.Parallel()
	var f inflight
	require.NoError(t, f.wait(context.Background()))

	f.add()
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	require.ErrorIs(t, f.wait(cancelled), context.Canceled, "one is running")

	waited := make(chan error, 1)
	go func() { waited <- f.wait(context.Background()) }()
	f.add() // a second one starts while wait waits
	f.done()
	// One still runs: wait must not have returned. (Checked again after the last done, through
	// the order of the channel's values.)
	order := make(chan string, 2)
	go func() { <-waited; order <- "wait returned" }()
	order <- "second done"
	f.done()
	require.Equal(t, "second done", <-order)
	require.Equal(t, "wait returned", <-order)
	require.NoError(t, f.wait(context.Background()))
}
