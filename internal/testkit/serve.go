package testkit

import (
	"context"
	"testing"
)

// Serve runs run(ctx) in a goroutine until the test ends, as a daemon runs a component: at cleanup
// ctx is cancelled, and run must return, with nil.
func Serve(t testing.TB, run func(ctx context.Context) error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("testkit: stopping: %v", err)
		}
	})
}
