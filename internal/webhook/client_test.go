package webhook_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/intakehq/intake/internal/webhook"
)

// TestClientRefusesNonPublicAtConnect: the attacker controls a webhook URL (or the DNS of its
// name) and aims it at the daemon's network. The client refuses at connect time, after resolution,
// so the internal service is never reached.
func TestClientRefusesNonPublicAtConnect(t *testing.T) {
	t.Parallel()
	var hits atomic.Int64
	internal := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { hits.Add(1) }))
	defer internal.Close()
	port := internal.URL[strings.LastIndex(internal.URL, ":")+1:]
	client := webhook.NewClient(webhook.ClientOptions{Timeout: 5 * time.Second})
	defer client.CloseIdleConnections()

	for _, c := range []struct {
		attacker string
		url      string
	}{
		{"URL naming a loopback address", "http://127.0.0.1:" + port + "/hook"},
		{"name resolving to loopback (checked after DNS)", "http://localhost:" + port + "/hook"},
		{"IPv6 loopback", "http://[::1]:" + port + "/hook"},
		{"IPv4-mapped loopback", "http://[::ffff:127.0.0.1]:" + port + "/hook"},
		{"IPv4-compatible loopback (deprecated ::/96)", "http://[::127.0.0.1]:" + port + "/hook"},
		{"IPv4-compatible metadata address", "http://[::a9fe:a9fe]/latest/meta-data/"},
		{"cloud metadata address", "http://169.254.169.254/latest/meta-data/"},
	} {
		resp, err := client.Post(c.url, "application/json", strings.NewReader("{}"))
		if resp != nil {
			resp.Body.Close()
		}
		require.ErrorIs(t, err, webhook.ErrForbiddenAddress, c.attacker)
	}
	require.Zero(t, hits.Load(), "no request reached the internal server")

	// With INTAKE_WEBHOOK_ALLOW_PRIVATE the same server is reached.
	open := webhook.NewClient(webhook.ClientOptions{Timeout: 5 * time.Second, AllowPrivate: true})
	defer open.CloseIdleConnections()
	resp, err := open.Post(internal.URL, "application/json", strings.NewReader("{}"))
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, int64(1), hits.Load())
}

// TestClientFollowsNoRedirect: a receiver answering 3xx cannot bounce the request elsewhere (an
// internal address, say); the answer is the attempt's result.
func TestClientFollowsNoRedirect(t *testing.T) {
	t.Parallel()
	var bounced atomic.Int64
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { bounced.Add(1) }))
	defer target.Close()
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, target.URL, http.StatusTemporaryRedirect)
	}))
	defer receiver.Close()
	client := webhook.NewClient(webhook.ClientOptions{Timeout: 5 * time.Second, AllowPrivate: true})
	defer client.CloseIdleConnections()
	resp, err := client.Post(receiver.URL, "application/json", strings.NewReader("{}"))
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusTemporaryRedirect, resp.StatusCode)
	require.Zero(t, bounced.Load())
}

// TestRetrySchedule: without jitter the delays add up to at least a day before asynq archives the
// delivery; jitter only lengthens them, by at most a quarter.
func TestRetrySchedule(t *testing.T) {
	t.Parallel()
	var total time.Duration
	for n := range webhook.MaxRetry {
		lo := webhook.NominalDelay(n)
		total += lo
		for range 50 {
			d := webhook.RetryDelay(n, nil, nil)
			require.GreaterOrEqual(t, d, lo, "retry %d", n)
			require.LessOrEqual(t, d, lo+lo/4, "retry %d", n)
		}
	}
	require.GreaterOrEqual(t, total, webhook.MinRetryWindow)
	require.Less(t, total, webhook.MinRetryWindow+4*time.Hour, "not much more than a day either")
	require.Equal(t, 10*time.Second, webhook.NominalDelay(0))
	require.Equal(t, 2*time.Hour, webhook.NominalDelay(63))
}
