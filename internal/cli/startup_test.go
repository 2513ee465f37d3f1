package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/intakehq/intake/internal/store"
	"github.com/intakehq/intake/internal/testkit"
)

// runUntilExit runs `intake run` with args (and --listen on a free address) and returns its exit code and logs once it exits; the
// test fails when it is still running after wait (it is then stopped).
func runUntilExit(t *testing.T, wait time.Duration, args ...string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var logs testkit.SyncBuffer
	done := make(chan int, 1)
	args = append([]string{"run", "--listen", testkit.FreeAddr(t)}, args...)
	go func() { done <- MainContext(ctx, args, io.Discard, &logs) }()
	select {
	case code := <-done:
		return code, logs.String()
	case <-time.After(wait):
		cancel()
		<-done
		t.Fatalf("intake run still running after %s; logs:\n%s", wait, logs.String())
		return -1, ""
	}
}

// TestRunRefusesPendingMigrations: without INTAKE_MIGRATE, `intake run` on a schema that lacks
// migrations of the binary exits 1, naming the schema, how many are pending, the latest applied,
// the binary's latest and what to run. Migrations applied that the binary does not know (a newer
// release's, during a rollout) are no obstacle. Before, an empty schema (INTAKE_DB_SCHEMA naming
// the wrong one) gave a ready process whose every query failed on a missing table.
func TestRunRefusesPendingMigrations(t *testing.T) {
	if testing.Short() {
		t.Skip("needs PostgreSQL")
	}
	ctx := testkit.Context(t)
	schema := testkit.Schema(t)
	all, err := store.Migrations()
	require.NoError(t, err)
	last := all[len(all)-1]
	args := []string{"--roles", "api", "--database-url", testkit.DatabaseURLFor(schema), "--bucket", "b",
		"--redis-url", fmt.Sprintf("redis://%s/%d", testkit.RedisAddr(), testkit.RedisDB(t)),
		"--api-insecure-dev-auth", "--shutdown-grace", "2s"}

	code, logs := runUntilExit(t, 30*time.Second, args...)
	require.Equal(t, 1, code, logs)
	require.Contains(t, logs, fmt.Sprintf("schema %s has %d pending migrations (latest applied none, binary has %s): run `intake migrate up`",
		schema, len(all), last.Name))

	st, err := store.OpenSchema(ctx, testkit.DatabaseURLFor(schema), schema)
	require.NoError(t, err)
	defer st.Close()
	_, err = store.Migrate(ctx, st.Pool)
	require.NoError(t, err)
	_, err = st.Pool.Exec(ctx, "DELETE FROM schema_migrations WHERE version = $1", last.Version)
	require.NoError(t, err)
	code, logs = runUntilExit(t, 30*time.Second, args...)
	require.Equal(t, 1, code, logs)
	require.Contains(t, logs, fmt.Sprintf("schema %s has 1 pending migration (latest applied %s, binary has %s)",
		schema, all[len(all)-2].Name, last.Name))

	// Every migration of the binary applied, and one of a newer release: it starts.
	_, err = st.Pool.Exec(ctx, "INSERT INTO schema_migrations (version, name) VALUES ($1, $2), (99999, '99999_next_release.sql')",
		last.Version, last.Name)
	require.NoError(t, err)
	d := startDaemon(t, ctx, args...)
	require.Equal(t, 0, d.stop(), d.logs.String())
}

// TestReadyzWaitsForTheRoles: /readyz fails until the roles serve. With a JWKS URL that answers
// slowly, the API role's start waits for the first fetch while PostgreSQL is already connected:
// /readyz answers 503 with "started" failed (the admin /readyz says the process is starting role
// api), and the routes' 503 says that too, not "waiting for PostgreSQL". Before, /readyz answered
// 200 as soon as PostgreSQL did, while every route still answered 503.
func TestReadyzWaitsForTheRoles(t *testing.T) {
	if testing.Short() {
		t.Skip("needs the local stack")
	}
	ctx := testkit.Context(t)
	release := make(chan struct{})
	var once sync.Once
	free := func() { once.Do(func() { close(release) }) }
	jwks := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"keys":[]}`))
	}))
	defer jwks.Close()
	defer free()

	awsc := testkit.AWS()
	t.Setenv("AWS_ACCESS_KEY_ID", testkit.DefaultAccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", testkit.DefaultSecretKey)
	addr, adminAddr := testkit.FreeAddr(t), testkit.FreeAddr(t)
	base, admin := "http://"+addr, "http://"+adminAddr
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	var logs testkit.SyncBuffer
	done := make(chan int, 1)
	go func() {
		done <- MainContext(runCtx, []string{"run", "--roles", "api",
			"--database-url", testkit.DatabaseURLFor(testkit.Schema(t)), "--migrate",
			"--redis-url", fmt.Sprintf("redis://%s/%d", testkit.RedisAddr(), testkit.RedisDB(t)),
			"--s3-endpoint", awsc.S3Endpoint, "--aws-region", awsc.Region, "--bucket", "unused",
			"--api-jwks-url", jwks.URL + "/jwks.json", "--api-jwt-issuer", "https://idp.example.com", "--api-jwt-audience", "intake",
			"--listen", addr, "--admin-listen", adminAddr, "--shutdown-grace", "2s",
		}, io.Discard, &logs)
	}()

	var detail struct {
		Checks map[string]struct {
			OK    bool   `json:"ok"`
			Error string `json:"error"`
		} `json:"checks"`
	}
	require.Eventually(t, func() bool {
		_, body := httpGet(admin + "/readyz")
		detail.Checks = nil
		return json.Unmarshal([]byte(body), &detail) == nil && detail.Checks["postgres"].OK
	}, 60*time.Second, 100*time.Millisecond, "PostgreSQL connected; logs:\n%s", logs.String())

	// PostgreSQL answers, the JWKS does not yet: not ready, and saying why.
	time.Sleep(1100 * time.Millisecond) // past the report's cache
	code, body := httpGet(base + "/readyz")
	require.Equal(t, http.StatusServiceUnavailable, code, "ready while the API role is still starting: %s", body)
	var ready struct{ Checks map[string]string }
	require.NoError(t, json.Unmarshal([]byte(body), &ready), body)
	require.Equal(t, "failed", ready.Checks["started"], body)
	require.Equal(t, "ok", ready.Checks["postgres"], body)
	_, body = httpGet(admin + "/readyz")
	require.Contains(t, body, "intake is starting: starting role api", body)
	code, body = httpGet(base + "/v1/uploads/0190c5b4-7d43-7b5e-9f2a-4c1d2e3f4a5b")
	require.Equal(t, http.StatusServiceUnavailable, code, body)
	require.Contains(t, body, "intake is starting (starting role api)")
	require.NotContains(t, body, "PostgreSQL")

	free()
	require.Eventually(t, func() bool { code, _ := httpGet(base + "/readyz"); return code == http.StatusOK },
		30*time.Second, 100*time.Millisecond, "ready once the role started; logs:\n%s", logs.String())
	code, body = httpGet(base + "/v1/uploads/0190c5b4-7d43-7b5e-9f2a-4c1d2e3f4a5b")
	require.Equal(t, http.StatusUnauthorized, code, "the API's routes answer: %s", body)

	cancel()
	require.Equal(t, 0, exitCode(t, done, &logs, 30*time.Second), "logs:\n%s", logs.String())
}

// TestSchedulerNeedsNoPostgres: a process that runs only the scheduler (which enqueues into Redis)
// neither waits for PostgreSQL nor checks it or S3: with PostgreSQL unreachable, or no
// DATABASE_URL at all, it is ready, its readiness naming started and redis only. Before, it waited
// for PostgreSQL (503, postgres failed) like the roles that use it, and IntakeNotReady paged for it
// during a PostgreSQL outage.
func TestSchedulerNeedsNoPostgres(t *testing.T) {
	if testing.Short() {
		t.Skip("needs the local stack")
	}
	ctx := testkit.Context(t)
	proxy, dbURL := pgProxy(t, testkit.Schema(t))
	proxy.Down()
	redisURL := fmt.Sprintf("redis://%s/%d", testkit.RedisAddr(), testkit.RedisDB(t))
	for _, db := range [][]string{{"--database-url", dbURL, "--migrate"}, nil} {
		adminAddr := testkit.FreeAddr(t)
		args := append([]string{"--roles", "scheduler", "--redis-url", redisURL, "--bucket", "unused",
			"--s3-endpoint", "http://127.0.0.1:1", "--admin-listen", adminAddr, "--shutdown-grace", "2s"}, db...)
		scheduled := "intake_reconcile_scheduled 1"
		if db == nil {
			t.Setenv("DATABASE_URL", "")
			args = append(args, "--jobs-reconcile-cron", "off")
			scheduled = "intake_reconcile_scheduled 0"
		}
		d := startDaemon(t, ctx, args...)
		code, body := httpGet(d.base + "/readyz")
		require.Equal(t, http.StatusOK, code, body)
		var ready struct{ Checks map[string]string }
		require.NoError(t, json.Unmarshal([]byte(body), &ready), body)
		require.Equal(t, map[string]string{"started": "ok", "redis": "ok"}, ready.Checks, body)
		_, metrics := httpGet("http://" + adminAddr + "/metrics")
		require.NotContains(t, metrics, `dependency="postgres"`)
		require.NotContains(t, metrics, `dependency="s3"`)
		require.Contains(t, metrics, scheduled, "IntakeReconcileNotRunning is silenced by a scheduler that has it off")
		require.Equal(t, 0, d.stop(), d.logs.String())
		require.NotContains(t, d.logs.String(), "postgres does not answer")
		if db != nil {
			require.Contains(t, d.logs.String(), "INTAKE_MIGRATE ignored")
		}
	}
}

// TestJobsExportReconcileOutcomes: a jobs process exports intake_tasks_total for every outcome of
// objects:reconcile at 0 from the start, so that IntakeReconcileFailing's increase() sees its first
// failure. Before, the series was born at 1 with the first failure, which increase() never counts.
func TestJobsExportReconcileOutcomes(t *testing.T) {
	if testing.Short() {
		t.Skip("needs the local stack")
	}
	ctx := testkit.Context(t)
	awsc := testkit.AWS()
	t.Setenv("AWS_ACCESS_KEY_ID", testkit.DefaultAccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", testkit.DefaultSecretKey)
	adminAddr := testkit.FreeAddr(t)
	d := startDaemon(t, ctx, "--roles", "jobs",
		"--database-url", testkit.DatabaseURLFor(testkit.Schema(t)), "--migrate",
		"--redis-url", fmt.Sprintf("redis://%s/%d", testkit.RedisAddr(), testkit.RedisDB(t)),
		"--s3-endpoint", awsc.S3Endpoint, "--aws-region", awsc.Region, "--bucket", testkit.Bucket(t, testkit.S3()),
		"--admin-listen", adminAddr, "--shutdown-grace", "2s")
	_, metrics := httpGet("http://" + adminAddr + "/metrics")
	for _, outcome := range []string{"success", "retry", "failed"} {
		require.Contains(t, metrics, `intake_tasks_total{outcome="`+outcome+`",type="objects:reconcile"} 0`)
	}
	require.Equal(t, 0, d.stop(), d.logs.String())
}

// TestStartingAnswers: while intake starts (here: waiting for a PostgreSQL that never answers),
// every route is answered 503 database-unavailable with Retry-After and an X-Request-Id (the
// client's own when valid), in the route's shape: an RFC 9457 problem whose instance is the
// request id on /v1, Companion's {"error", "type"} as application/json on Uppy's /s3/ routes.
// Before, every route got the problem+json without X-Request-Id, Uppy's routes included.
func TestStartingAnswers(t *testing.T) {
	addr := testkit.FreeAddr(t)
	base := "http://" + addr
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var logs testkit.SyncBuffer
	done := make(chan int, 1)
	go func() {
		done <- MainContext(ctx, []string{"run", "--roles", "api", "--api-insecure-dev-auth",
			"--database-url", "postgres://intake@" + testkit.FreeAddr(t) + "/intake", "--bucket", "b",
			"--aws-region", "us-east-1", "--listen", addr, "--shutdown-grace", "2s",
			"--api-cors-origins", "https://app.example",
		}, io.Discard, &logs)
	}()
	require.Eventually(t, func() bool { code, _ := httpGet(base + "/healthz"); return code == http.StatusOK },
		30*time.Second, 50*time.Millisecond, "logs:\n%s", logs.String())

	do := func(method, path string, header ...string) (*http.Response, []byte) {
		t.Helper()
		req, err := http.NewRequest(method, base+path, nil)
		require.NoError(t, err)
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, "%s %s: %s", method, path, body)
		require.Equal(t, "5", resp.Header.Get("Retry-After"), "%s %s", method, path)
		require.NotEmpty(t, resp.Header.Get("X-Request-Id"), "%s %s", method, path)
		return resp, body
	}
	const dbUnavailable = "https://intake.dev/problems/database-unavailable"

	for _, path := range []string{"/v1/uploads/0190c5b4-7d43-7b5e-9f2a-4c1d2e3f4a5b", "/v1/objects", "/nowhere"} {
		resp, body := do(http.MethodGet, path)
		require.Equal(t, "application/problem+json", resp.Header.Get("Content-Type"), path)
		var p struct{ Type, Detail, Instance string }
		require.NoError(t, json.Unmarshal(body, &p), string(body))
		require.Equal(t, dbUnavailable, p.Type)
		require.Contains(t, p.Detail, "intake is starting (waiting for PostgreSQL)")
		require.Equal(t, "urn:request:"+resp.Header.Get("X-Request-Id"), p.Instance)
	}
	resp, _ := do(http.MethodPost, "/v1/uploads", "X-Request-Id", "client-id-42")
	require.Equal(t, "client-id-42", resp.Header.Get("X-Request-Id"), "the client's id is kept")
	resp, _ = do(http.MethodGet, "/v1/objects", "X-Request-Id", "has space")
	require.NotEqual(t, "has space", resp.Header.Get("X-Request-Id"), "an invalid id is replaced")
	first, _ := do(http.MethodGet, "/v1/objects")
	second, _ := do(http.MethodGet, "/v1/objects")
	require.NotEqual(t, first.Header.Get("X-Request-Id"), second.Header.Get("X-Request-Id"), "each answer has its own id")

	for _, rq := range []struct{ method, path string }{
		{http.MethodGet, "/s3/params?filename=a.txt"}, {http.MethodPost, "/s3/multipart"},
		{http.MethodGet, "/s3/multipart/u1/1?key=k"}, {http.MethodDelete, "/s3/multipart/u1?key=k"},
	} {
		resp, body := do(rq.method, rq.path)
		require.Equal(t, "application/json", resp.Header.Get("Content-Type"), rq.path)
		var e map[string]string
		require.NoError(t, json.Unmarshal(body, &e), string(body))
		require.Equal(t, dbUnavailable, e["type"], rq.path)
		require.Contains(t, e["error"], "intake is starting (waiting for PostgreSQL)", rq.path)
		require.Len(t, e, 2, "Uppy's error shape, {error, type}: %s", body)
	}
	// The API's CORS holds from the first answer: a listed origin's preflight is granted as the
	// API's routes grant it, and its script can read the 503 (before, the preflight got the 503
	// without CORS headers and the browser reported a network error); another origin gets nothing.
	pre, err := http.NewRequest(http.MethodOptions, base+"/s3/multipart", nil)
	require.NoError(t, err)
	pre.Header.Set("Origin", "https://app.example")
	pre.Header.Set("Access-Control-Request-Method", "POST")
	presp, err := http.DefaultClient.Do(pre)
	require.NoError(t, err)
	presp.Body.Close()
	require.Equal(t, http.StatusNoContent, presp.StatusCode)
	require.Equal(t, "https://app.example", presp.Header.Get("Access-Control-Allow-Origin"))
	require.Contains(t, presp.Header.Get("Access-Control-Allow-Methods"), "POST")
	resp, _ = do(http.MethodPost, "/s3/multipart", "Origin", "https://app.example")
	require.Equal(t, "https://app.example", resp.Header.Get("Access-Control-Allow-Origin"))
	require.Contains(t, resp.Header.Get("Access-Control-Expose-Headers"), "X-Request-Id")
	require.Contains(t, resp.Header.Get("Access-Control-Expose-Headers"), "Retry-After",
		"a browser's script must read the 503's Retry-After")
	resp, _ = do(http.MethodPost, "/s3/multipart", "Origin", "https://evil.example")
	require.Empty(t, resp.Header.Get("Access-Control-Allow-Origin"), "an origin not listed gets no grant")
	pre.Header.Set("Origin", "https://evil.example")
	presp, err = http.DefaultClient.Do(pre)
	require.NoError(t, err)
	presp.Body.Close()
	require.Empty(t, presp.Header.Get("Access-Control-Allow-Origin"), "an origin not listed gets no grant")

	cancel()
	require.Equal(t, 0, exitCode(t, done, &logs, 30*time.Second), "logs:\n%s", logs.String())
}
