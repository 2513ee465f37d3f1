package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/intakehq/intake/internal/testkit"
)

// pgProxy is a toxiproxy proxy in front of the test PostgreSQL and the URL of schema through it.
func pgProxy(t *testing.T, schema string) (*testkit.Proxy, string) {
	t.Helper()
	u, err := url.Parse(testkit.DatabaseURLFor(schema))
	require.NoError(t, err)
	p := testkit.NewProxy(t, "pg", u.Host)
	u.Host = p.Addr
	return p, u.String()
}

// httpGet returns the status and body of GET url (0 and the error when it cannot connect).
func httpGet(url string) (int, string) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestRunWaitsForPostgres: `intake run` started while PostgreSQL cannot be reached (a failover, a
// database still starting) waits for it instead of exiting 1 (and crash-looping): it answers
// /healthz 200 and /readyz 503 naming postgres (and started) failed, refuses the API's routes with
// 503 saying it waits for PostgreSQL, logs why it waits, and becomes ready once PostgreSQL
// answers. Before, build's ping failed after 5 s and the process exited 1. (The api role: the
// scheduler does not use PostgreSQL, see TestSchedulerNeedsNoPostgres.)
func TestRunWaitsForPostgres(t *testing.T) {
	if testing.Short() {
		t.Skip("needs the local stack")
	}
	ctx := testkit.Context(t)
	proxy, dbURL := pgProxy(t, testkit.Schema(t))
	proxy.Down()
	awsc := testkit.AWS()
	t.Setenv("AWS_ACCESS_KEY_ID", testkit.DefaultAccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", testkit.DefaultSecretKey)
	addr, adminAddr := testkit.FreeAddr(t), testkit.FreeAddr(t)
	base := "http://" + addr
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	var logs testkit.SyncBuffer
	done := make(chan int, 1)
	started := time.Now()
	go func() {
		done <- MainContext(runCtx, []string{"run", "--roles", "api", "--api-keys", "0123456789abcdef-alice=alice",
			"--database-url", dbURL, "--migrate",
			"--redis-url", fmt.Sprintf("redis://%s/%d", testkit.RedisAddr(), testkit.RedisDB(t)),
			"--s3-endpoint", awsc.S3Endpoint, "--aws-region", awsc.Region, "--bucket", "unused",
			"--listen", addr, "--admin-listen", adminAddr, "--shutdown-grace", "2s",
		}, io.Discard, &logs)
	}()

	require.Eventually(t, func() bool { code, _ := httpGet(base + "/healthz"); return code == http.StatusOK },
		30*time.Second, 100*time.Millisecond, "the listener answers while PostgreSQL is waited for; logs:\n%s", logs.String())
	code, body := httpGet(base + "/readyz")
	require.Equal(t, http.StatusServiceUnavailable, code, body)
	var ready struct{ Checks map[string]string }
	require.NoError(t, json.Unmarshal([]byte(body), &ready), body)
	require.Equal(t, "failed", ready.Checks["postgres"], body)
	require.Equal(t, "failed", ready.Checks["started"], body)
	require.Eventually(t, func() bool {
		code, body = httpGet("http://" + adminAddr + "/readyz")
		return code == http.StatusServiceUnavailable && strings.Contains(body, proxy.Addr)
	}, 10*time.Second, 100*time.Millisecond, "the admin listener says why: %s", body)
	code, body = httpGet(base + "/v1/uploads")
	require.Equal(t, http.StatusServiceUnavailable, code, body)
	require.Contains(t, body, "database-unavailable")
	require.Contains(t, body, "intake is starting (waiting for PostgreSQL)")

	time.Sleep(time.Until(started.Add(4 * time.Second)))
	select {
	case code := <-done:
		t.Fatalf("intake run exited %d while PostgreSQL was down; logs:\n%s", code, logs.String())
	default:
	}
	require.Contains(t, logs.String(), "postgres does not answer; waiting for it")

	proxy.Up()
	require.Eventually(t, func() bool { code, _ := httpGet(base + "/readyz"); return code == http.StatusOK },
		60*time.Second, 200*time.Millisecond, "ready once PostgreSQL answers; logs:\n%s", logs.String())
	require.Contains(t, logs.String(), "postgres answers")
	require.Contains(t, logs.String(), "migrations applied")
	code, body = httpGet(base + "/v1/uploads/0190c5b4-7d43-7b5e-9f2a-4c1d2e3f4a5b")
	require.Equal(t, http.StatusUnauthorized, code, "the API's routes answer: %s", body)

	cancel()
	require.Equal(t, 0, exitCode(t, done, &logs, 30*time.Second), "logs:\n%s", logs.String())
}

// TestRunStopsWhileWaitingForPostgres: SIGTERM ends the wait for PostgreSQL at once, and the
// process exits 0 (nothing was started); a permanent error (a database that does not exist) is not
// waited for: the process exits 1 at once, saying why.
func TestRunStopsWhileWaitingForPostgres(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("needs the local stack")
	}
	proxy, dbURL := pgProxy(t, testkit.Schema(t))
	proxy.Down()
	args := func(dbURL string) []string {
		return []string{"run", "--roles", "api", "--api-keys", "0123456789abcdef-alice=alice", "--database-url", dbURL, "--bucket", "unused",
			"--redis-url", "redis://" + testkit.RedisAddr() + "/0", "--listen", testkit.FreeAddr(t), "--shutdown-grace", "2s"}
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var logs testkit.SyncBuffer
	done := make(chan int, 1)
	go func() { done <- MainContext(ctx, args(dbURL), io.Discard, &logs) }()
	require.Eventually(t, func() bool { return strings.Contains(logs.String(), "postgres does not answer") },
		30*time.Second, 50*time.Millisecond, logs.String())
	stopped := time.Now()
	cancel()
	require.Equal(t, 0, exitCode(t, done, &logs, 30*time.Second), "logs:\n%s", logs.String())
	require.Less(t, time.Since(stopped), 5*time.Second)

	u, err := url.Parse(testkit.DatabaseURL())
	require.NoError(t, err)
	u.Path = "/" + testkit.Name("no_such_db_")
	var stderr bytes.Buffer
	began := time.Now()
	code := MainContext(context.Background(), args(u.String()), io.Discard, &stderr)
	require.Equal(t, 1, code, stderr.String())
	require.Less(t, time.Since(began), 10*time.Second, "not waited for")
	require.Contains(t, stderr.String(), "does not exist")
	require.NotContains(t, stderr.String(), "waiting for it")
}

// TestMigrateWaitsForPostgres: `intake migrate up` (the init container) waits for a PostgreSQL
// that does not answer, up to --wait, and applies the migrations once it does; past --wait it
// fails, saying how long it waited. Before, it exited 1 at once.
func TestMigrateWaitsForPostgres(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("needs PostgreSQL")
	}
	proxy, dbURL := pgProxy(t, testkit.Schema(t))
	proxy.Down()

	var stdout, stderr bytes.Buffer
	began := time.Now()
	code := MainContext(context.Background(), []string{"migrate", "up", "--database-url", dbURL, "--wait", "2s"}, &stdout, &stderr)
	require.Equal(t, 1, code, stderr.String())
	require.GreaterOrEqual(t, time.Since(began), 2*time.Second, "waited --wait")
	require.Contains(t, stderr.String(), "postgres did not answer within 2s")

	var out, logs testkit.SyncBuffer
	done := make(chan int, 1)
	go func() {
		done <- MainContext(context.Background(), []string{"migrate", "up", "--database-url", dbURL}, &out, &logs)
	}()
	time.Sleep(3 * time.Second)
	select {
	case code := <-done:
		t.Fatalf("migrate exited %d while PostgreSQL was down:\n%s", code, logs.String())
	default:
	}
	require.Contains(t, logs.String(), "postgres does not answer; waiting for it")
	proxy.Up()
	select {
	case code := <-done:
		require.Equal(t, 0, code, logs.String())
		require.Contains(t, out.String(), "applied ")
	case <-time.After(60 * time.Second):
		t.Fatalf("migrate did not finish once PostgreSQL answered:\n%s", logs.String())
	}
}

// TestPGTransient: what the wait for PostgreSQL waits out, and what fails at once.
func TestPGTransient(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{&net.OpError{Op: "dial", Err: syscall.ECONNREFUSED}, true},
		{fmt.Errorf("ping: %w", context.DeadlineExceeded), true},
		{&pgconn.PgError{Code: "57P03"}, true},                             // the database system is starting up
		{&pgconn.PgError{Code: "53300"}, true},                             // too many connections
		{&pgconn.PgError{Code: "28P01"}, false},                            // wrong password
		{&pgconn.PgError{Code: "28000"}, false},                            // no such role, no pg_hba.conf entry
		{fmt.Errorf("connect: %w", &pgconn.PgError{Code: "3D000"}), false}, // no such database
		{&pgconn.PgError{Code: "42501"}, false},                            // no CONNECT privilege
		{errors.New("parse DATABASE_URL: bad"), false},
	} {
		require.Equal(t, tc.want, pgTransient(tc.err), "%v", tc.err)
	}
}
