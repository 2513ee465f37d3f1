package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/intakehq/intake/internal/config"
	"github.com/intakehq/intake/internal/testkit"
)

// TestForcedStopDoesNotWaitForTheClosers: a component ignores the end of its context and holds
// what the closers need (as a stuck query holds a pool connection that pgxpool.Close waits for).
// The drain gives up at the grace period plus the slack, and the closers get closeTimeout: the
// process exits instead of hanging until SIGKILL.
func TestForcedStopDoesNotWaitForTheClosers(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	a := &App{Cfg: &config.Config{ShutdownGrace: 50 * time.Millisecond}, Log: slog.New(slog.DiscardHandler), stopSlack: 100 * time.Millisecond}
	var closed atomic.Bool
	a.onClose(func() { closed.Store(true) }) // runs last: never reached before the exit
	a.onClose(func() { <-release })          // the pool, waiting for the stuck component's connection
	var wg sync.WaitGroup
	wg.Go(func() { <-release }) // the stuck component

	start := time.Now()
	err := a.finish(a.drain(&wg, nil, &errorList{}))
	took := time.Since(start)
	require.ErrorIs(t, err, errForcedStop)
	require.ErrorContains(t, err, "did not stop within the shutdown grace period")
	require.Less(t, took, 150*time.Millisecond+closeTimeout+2*time.Second, "bounded by the grace, the slack and closeTimeout")
	require.GreaterOrEqual(t, took, 150*time.Millisecond+closeTimeout, "it did wait for the closers first")
	require.False(t, closed.Load())
}

// TestCleanStopRunsEveryCloser: components that return within the grace period lead to every
// closer, in reverse order of registration.
func TestCleanStopRunsEveryCloser(t *testing.T) {
	t.Parallel()
	a := &App{Cfg: &config.Config{ShutdownGrace: time.Second}, Log: slog.New(slog.DiscardHandler)}
	var order []int
	a.onClose(func() { order = append(order, 1) })
	a.onClose(func() { order = append(order, 2) })
	var wg sync.WaitGroup
	wg.Go(func() { time.Sleep(10 * time.Millisecond) })
	err := a.finish(a.drain(&wg, nil, &errorList{}))
	require.NoError(t, err)
	require.False(t, errors.Is(err, errForcedStop))
	require.Equal(t, []int{2, 1}, order)
}

// TestInterruptedCommandExits130: an operator command stopped by SIGINT/SIGTERM part-way exits
// 130, whichever command it is (here `outbox status`, stopped before it could read anything), so
// that a script does not take it for success.
func TestInterruptedCommandExits130(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("needs PostgreSQL")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var stdout, stderr bytes.Buffer
	code := MainContext(ctx, []string{"outbox", "status", "--database-url", testkit.DatabaseURLFor(testkit.Schema(t))}, &stdout, &stderr)
	require.Equal(t, exitInterrupted, code, stderr.String())
	require.Contains(t, stderr.String(), "intake: interrupted")
}

// TestShutdownDelayKeepsServing: with INTAKE_SHUTDOWN_DELAY, an API process told to stop keeps
// serving for the delay while /readyz answers 503 (the started check failed, saying why), so that a
// load balancer following the health checks takes it out before its listener closes; then it
// drains and exits 0. Without the delay the listener closed at the signal, and a load balancer
// still sending requests got connections refused until its checks noticed.
func TestShutdownDelayKeepsServing(t *testing.T) {
	if testing.Short() {
		t.Skip("needs the local stack")
	}
	ctx, schema, bucket, awsc := daemonStack(t)
	const apiKey = "0123456789abcdef-alice"
	const delay = 12 * time.Second // long enough for the checks below on a loaded machine
	d := startDaemon(t, ctx, "--roles", "api",
		"--database-url", testkit.DatabaseURLFor(schema), "--migrate",
		"--redis-url", fmt.Sprintf("redis://%s/%d", testkit.RedisAddr(), testkit.RedisDB(t)),
		"--s3-endpoint", awsc.S3Endpoint, "--sqs-endpoint", awsc.SQSEndpoint, "--aws-region", awsc.Region,
		"--bucket", bucket, "--shutdown-grace", "2s", "--shutdown-delay", delay.String(), "--api-keys", apiKey+"=alice")
	presignOnce(t, ctx, d.base, apiKey)

	d.cancel() // SIGTERM
	var body string
	require.Eventually(t, func() bool {
		var code int
		code, body = httpGet(d.base + "/readyz")
		return code == http.StatusServiceUnavailable
	}, delay, 20*time.Millisecond, "readiness fails once the process is told to stop: %s", body)
	require.Contains(t, body, `"started":"failed"`)
	presignOnce(t, ctx, d.base, apiKey) // still served
	require.Contains(t, d.logs.String(), "the API serves for the shutdown delay")

	require.Equal(t, 0, d.stop(), d.logs.String())
	_, err := http.Get(d.base + "/readyz")
	require.Error(t, err, "the listener is closed once the process stopped")
}
