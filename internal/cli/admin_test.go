package cli

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/intakehq/intake/internal/api"
	"github.com/intakehq/intake/internal/config"
	"github.com/intakehq/intake/internal/gctune"
	"github.com/intakehq/intake/internal/health"
	"github.com/intakehq/intake/internal/telemetry"
	"github.com/intakehq/intake/internal/testkit"
)

// TestHealthRoutesPerListener: which listener serves what, for each admin setting. The public
// listener never serves pprof nor a readiness error; /metrics leaves it once an admin listener
// exists; pprof exists only when asked for, on the admin listener, and never its cmdline (the
// process's arguments may hold secrets). Every exchange but pprof's is checked against the OpenAPI
// document.
func TestHealthRoutesPerListener(t *testing.T) {
	t.Parallel()
	contract := testkit.NewContract(t, api.OpenAPI())
	cases := []struct {
		name                string
		adminAddr           string
		pprof               bool
		public, adminRoutes map[string]int // path -> status
	}{
		{"no admin listener", "", false,
			map[string]int{"/healthz": 200, "/readyz": 503, "/metrics": 200, "/debug/pprof/": 404},
			nil},
		{"admin listener", "127.0.0.1:9090", false,
			map[string]int{"/healthz": 200, "/readyz": 503, "/metrics": 404, "/debug/pprof/": 404},
			map[string]int{"/healthz": 200, "/readyz": 503, "/metrics": 200, "/debug/pprof/": 404}},
		{"admin listener with pprof", "127.0.0.1:9090", true,
			map[string]int{"/healthz": 200, "/readyz": 503, "/metrics": 404, "/debug/pprof/": 404, "/debug/pprof/cmdline": 404},
			map[string]int{"/healthz": 200, "/readyz": 503, "/metrics": 200, "/debug/pprof/": 200, "/debug/pprof/cmdline": 404, "/debug/pprof/goroutine?debug=1": 200}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			reg := telemetry.NewRegistry()
			a := &App{
				Cfg: &config.Config{AdminListenAddr: tc.adminAddr, AdminPprof: tc.pprof}, Registry: reg,
				Mux: http.NewServeMux(), Admin: http.NewServeMux(),
				Health: health.NewChecker(health.Config{Registerer: reg}),
			}
			a.Health.Add("postgres", func(context.Context) error { return fmt.Errorf("dial tcp 10.0.0.7:5432: refused") })
			a.mountHealth()
			for mux, want := range map[*http.ServeMux]map[string]int{a.Mux: tc.public, a.Admin: tc.adminRoutes} {
				for path, code := range want {
					rec := httptest.NewRecorder()
					req := httptest.NewRequest(http.MethodGet, path, nil)
					if strings.HasPrefix(path, "/debug/pprof/") {
						req.Header.Set(testkit.OffContract, "pprof is not in the document")
					}
					contract.Handler(t, mux).ServeHTTP(rec, req)
					require.Equal(t, code, rec.Code, "%s", path)
					if path == "/readyz" && mux == a.Mux {
						require.NotContains(t, rec.Body.String(), "10.0.0.7")
					}
					if path == "/readyz" && mux == a.Admin {
						require.Contains(t, rec.Body.String(), "10.0.0.7", "the admin listener says why")
					}
					if path == "/debug/pprof/cmdline" {
						// pprof's handler served os.Args as they are: --database-url with its
						// password, --api-jwt-secret, … (here the test binary's, os.Args[0] first).
						require.NotContains(t, rec.Body.String(), os.Args[0], "the command line is never served")
					}
				}
			}
		})
	}
}

// TestAdminListener runs the daemon with INTAKE_ADMIN_LISTEN_ADDR and INTAKE_ADMIN_PPROF: both
// listeners serve, pprof answers on the admin one only, and both stop on shutdown.
func TestAdminListener(t *testing.T) {
	if testing.Short() {
		t.Skip("needs the local stack")
	}
	ctx, schema, bucket, awsc := daemonStack(t)
	adminAddr := testkit.FreeAddr(t)
	get := func(url string) (int, string) {
		resp, err := http.Get(url)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	d := startDaemon(t, ctx, "--roles", "api",
		"--database-url", testkit.DatabaseURLFor(schema), "--migrate",
		"--redis-url", fmt.Sprintf("redis://%s/%d", testkit.RedisAddr(), testkit.RedisDB(t)),
		"--s3-endpoint", awsc.S3Endpoint, "--aws-region", awsc.Region, "--bucket", bucket,
		"--admin-listen", adminAddr, "--admin-pprof", "--api-insecure-dev-auth", "--shutdown-grace", "2s")

	code, body := get("http://" + adminAddr + "/readyz")
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, body, `"checked_at"`)
	code, body = get("http://" + adminAddr + "/metrics")
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, body, `intake_dependency_up{dependency="postgres",required="true"} 1`)
	code, body = get("http://" + adminAddr + "/debug/pprof/")
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, body, "goroutine")
	for _, path := range []string{"/metrics", "/debug/pprof/", "/debug/pprof/heap"} {
		code, _ = get(d.base + path)
		require.Equal(t, http.StatusNotFound, code, path)
	}
	require.Equal(t, 0, d.stop(), "logs:\n%s", d.logs.String())
	require.Contains(t, d.logs.String(), `"listener":"admin"`)
	// The collector's target `intake run` sets without GOGC (internal/gctune), logged at start and
	// in effect in the process (the daemon ran in this one).
	if os.Getenv("GOGC") == "" {
		require.Contains(t, d.logs.String(), `"gc_percent":400,"gc_percent_from_gogc":false`)
		require.Equal(t, gctune.DefaultPercent, debug.SetGCPercent(gctune.DefaultPercent))
	}
}

// TestDependencyUpWithoutProbes: intake_dependency_up follows the dependencies though nothing ever
// calls /readyz (docker run's HEALTHCHECK probes /healthz, a plain VM has no probe): the daemon
// runs the checks itself every --health-interval. Before, the gauge was set only by /readyz, so the
// alerts on it saw nothing outside Kubernetes.
func TestDependencyUpWithoutProbes(t *testing.T) {
	if testing.Short() {
		t.Skip("needs the local stack")
	}
	ctx, schema, bucket, awsc := daemonStack(t)
	redisProxy := testkit.NewProxy(t, "redis", testkit.RedisAddr())
	addr, adminAddr := testkit.FreeAddr(t), testkit.FreeAddr(t)
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	var logs testkit.SyncBuffer
	done := make(chan int, 1)
	go func() {
		done <- MainContext(runCtx, []string{"run", "--roles", "api",
			"--database-url", testkit.DatabaseURLFor(schema), "--migrate",
			"--redis-url", fmt.Sprintf("redis://%s/%d", redisProxy.Addr, testkit.RedisDB(t)),
			"--s3-endpoint", awsc.S3Endpoint, "--aws-region", awsc.Region, "--bucket", bucket,
			"--listen", addr, "--admin-listen", adminAddr, "--api-insecure-dev-auth", "--shutdown-grace", "2s",
			"--health-interval", "200ms",
		}, io.Discard, &logs)
	}()
	// Only /healthz and /metrics are ever requested.
	metrics := func() string { _, body := httpGet("http://" + adminAddr + "/metrics"); return body }
	require.Eventually(t, func() bool { code, _ := httpGet("http://" + adminAddr + "/healthz"); return code == http.StatusOK },
		30*time.Second, 100*time.Millisecond, logs.String())
	for _, up := range []struct {
		series string
		then   func()
	}{
		{`intake_dependency_up{dependency="redis",required="false"} 1`, redisProxy.Down},
		{`intake_dependency_up{dependency="redis",required="false"} 0`, redisProxy.Up},
		{`intake_dependency_up{dependency="redis",required="false"} 1`, func() {}},
	} {
		require.Eventually(t, func() bool {
			m := metrics()
			return strings.Contains(m, up.series) && strings.Contains(m, `intake_dependency_up{dependency="postgres",required="true"} 1`)
		}, 30*time.Second, 100*time.Millisecond, "no %s in /metrics:\n%s\nlogs:\n%s", up.series, metrics(), logs.String())
		up.then()
	}
	cancel()
	require.Equal(t, 0, exitCode(t, done, &logs, 30*time.Second), "logs:\n%s", logs.String())
}
