package cli

import (
	"context"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/intakehq/intake/internal/config"
	"github.com/intakehq/intake/internal/testkit"
)

// daemon is `intake run` started in-process by a test, logging into a buffer.
type daemon struct {
	t      *testing.T
	base   string // http://<public listener>
	logs   *testkit.SyncBuffer
	cancel context.CancelFunc
	done   chan int
}

// startDaemon runs `intake run` with args and --listen on a free address, and waits until the
// public /readyz answers 200. The daemon is stopped when the test ends if stop was not called.
func startDaemon(t *testing.T, ctx context.Context, args ...string) *daemon {
	t.Helper()
	addr := testkit.FreeAddr(t)
	runCtx, cancel := context.WithCancel(ctx)
	d := &daemon{t: t, base: "http://" + addr, logs: &testkit.SyncBuffer{}, cancel: cancel, done: make(chan int, 1)}
	go func() {
		d.done <- MainContext(runCtx, append([]string{"run", "--listen", addr}, args...), io.Discard, d.logs)
	}()
	t.Cleanup(func() { _ = d.stop() })
	require.Eventually(t, func() bool {
		resp, err := http.Get(d.base + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, 60*time.Second, 200*time.Millisecond, "not ready; logs:\n%s", d.logs.String())
	return d
}

// daemonStack is what a test running `intake run` against the local stack needs: its context, a
// schema of its own, a bucket of its own, the stack's endpoints, and the stack's credentials in
// the environment (t.Setenv: the test cannot be parallel).
func daemonStack(t *testing.T) (ctx context.Context, schema, bucket string, awsc config.AWS) {
	t.Helper()
	ctx = testkit.Context(t)
	schema = testkit.Schema(t)
	bucket = testkit.Bucket(t, testkit.S3())
	awsc = testkit.AWS()
	t.Setenv("AWS_ACCESS_KEY_ID", testkit.DefaultAccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", testkit.DefaultSecretKey)
	return ctx, schema, bucket, awsc
}

// stop cancels the daemon's context (what SIGTERM does) and returns its exit code.
func (d *daemon) stop() int {
	d.t.Helper()
	d.cancel()
	select {
	case code := <-d.done:
		d.done <- code // stop may be called again (test cleanup)
		return code
	case <-time.After(60 * time.Second):
		d.t.Fatalf("daemon did not stop; logs:\n%s", d.logs.String())
		return -1
	}
}

// exitCode waits up to within for the exit code of an `intake` run started in-process (sent on
// done), failing the test with the logs if it does not come.
func exitCode(t *testing.T, done <-chan int, logs *testkit.SyncBuffer, within time.Duration) int {
	t.Helper()
	select {
	case code := <-done:
		return code
	case <-time.After(within):
		t.Fatalf("intake did not exit within %s; logs:\n%s", within, logs.String())
		return -1
	}
}
