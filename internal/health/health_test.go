package health_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/intakehq/intake/internal/health"
	"github.com/intakehq/intake/internal/testkit"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// clock is a fake time source the tests move by hand.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time          { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Advance(d time.Duration) { c.mu.Lock(); defer c.mu.Unlock(); c.now = c.now.Add(d) }

// counted returns a check that counts its runs, blocks until release is closed and then returns err.
func counted(n *atomic.Int64, release <-chan struct{}, err error) health.Check {
	return func(ctx context.Context) error {
		n.Add(1)
		select {
		case <-release:
		case <-ctx.Done():
			return ctx.Err()
		}
		return err
	}
}

// TestReadinessSharesOneRunPerWindow: 100 concurrent /readyz calls (public and detailed) run each
// check once; the next window runs them once more.
func TestReadinessSharesOneRunPerWindow(t *testing.T) {
	t.Parallel()
	clk := &clock{now: time.Unix(1_700_000_000, 0)}
	c := health.NewChecker(health.Config{TTL: time.Second, Now: clk.Now})
	var pg, s3 atomic.Int64
	release := make(chan struct{})
	c.Add("postgres", counted(&pg, release, nil))
	c.Add("s3", counted(&s3, release, nil))

	var wg sync.WaitGroup
	codes := make(chan int, 100)
	for i := range 100 {
		wg.Go(func() {
			h := c.Readyz
			if i%2 == 1 {
				h = c.ReadyzDetail
			}
			rec := httptest.NewRecorder()
			h(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
			codes <- rec.Code
		})
	}
	// The first caller's run is blocked in the checks: let it finish once every check has started.
	require.Eventually(t, func() bool { return pg.Load() == 1 && s3.Load() == 1 }, 10*time.Second, time.Millisecond)
	close(release)
	wg.Wait()
	close(codes)
	for code := range codes {
		require.Equal(t, http.StatusOK, code)
	}
	require.Equal(t, int64(1), pg.Load(), "100 callers, one run of each check")
	require.Equal(t, int64(1), s3.Load())

	clk.Advance(999 * time.Millisecond)
	require.True(t, c.Check(context.Background()).OK)
	require.Equal(t, int64(1), pg.Load(), "still inside the window: cached")
	clk.Advance(time.Millisecond)
	require.True(t, c.Check(context.Background()).OK)
	require.Equal(t, int64(2), pg.Load(), "a new window runs the checks again")
	require.Equal(t, int64(2), s3.Load())
}

// TestPublicReadyzHasNoErrorText: the public view names the failed dependency and says nothing of
// why; the detailed view and the log say why.
func TestPublicReadyzHasNoErrorText(t *testing.T) {
	t.Parallel()
	const reason = "dial tcp 10.20.30.40:5432: connect: connection refused (db-internal.corp)"
	var logs bytes.Buffer
	c := health.NewChecker(health.Config{Log: slog.New(slog.NewJSONHandler(&logs, nil))})
	c.Add("postgres", func(context.Context) error { return errors.New(reason) })
	c.Add("redis", func(context.Context) error { return nil })

	rec := httptest.NewRecorder()
	c.Readyz(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
	require.Equal(t, http.StatusServiceUnavailable, rec.Code)
	require.JSONEq(t, `{"status":"unavailable","checks":{"postgres":"failed","redis":"ok"}}`, rec.Body.String())
	for _, leak := range []string{"10.20.30.40", "db-internal", "refused", "error"} {
		require.NotContains(t, rec.Body.String(), leak)
	}

	rec = httptest.NewRecorder()
	c.ReadyzDetail(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
	require.Equal(t, http.StatusServiceUnavailable, rec.Code)
	require.Contains(t, rec.Body.String(), "connection refused")
	require.Contains(t, logs.String(), `"msg":"readiness check failed","dependency":"postgres"`)
	require.Contains(t, logs.String(), "connection refused")
}

// TestReadyzDetailRedacts: the admin /readyz shows each check's error, which may quote a URL with
// credentials (a queue URL with a userinfo or a token, as SQS-compatible proxies take them); they
// are masked there as in the logs.
func TestReadyzDetailRedacts(t *testing.T) {
	t.Parallel()
	c := health.NewChecker(health.Config{})
	c.Add("sqs", func(context.Context) error {
		return errors.New("get attributes of queue http://intake:pa55word-q@sqs-proxy:9324/000000000000/q?token=tok3n-abcdef123456: connection refused")
	})
	rec := httptest.NewRecorder()
	c.ReadyzDetail(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
	require.Equal(t, http.StatusServiceUnavailable, rec.Code)
	require.Contains(t, rec.Body.String(), "connection refused", "the error is still shown")
	require.Contains(t, rec.Body.String(), "sqs-proxy:9324", "and where it points")
	for _, secret := range []string{"pa55word-q", "tok3n-abcdef123456"} {
		require.NotContains(t, rec.Body.String(), secret)
	}
}

// TestReadinessRunOutlivesItsCaller: the caller that starts a run may go away (its request
// cancelled); the run completes for the others and is not reported as a failure.
func TestReadinessRunOutlivesItsCaller(t *testing.T) {
	t.Parallel()
	c := health.NewChecker(health.Config{TTL: time.Hour})
	release := make(chan struct{})
	var n atomic.Int64
	c.Add("s3", counted(&n, release, nil))

	ctx, cancel := context.WithCancel(context.Background())
	first := make(chan health.Report, 1)
	go func() { first <- c.Check(ctx) }()
	require.Eventually(t, func() bool { return n.Load() == 1 }, 10*time.Second, time.Millisecond)
	cancel()

	waiterCtx, waiterCancel := context.WithCancel(context.Background())
	waiterCancel()
	require.False(t, c.Check(waiterCtx).OK, "a waiter whose own context ends gets a failed report")

	close(release)
	require.True(t, (<-first).OK, "the run was not cancelled with its first caller's context")
	require.True(t, c.Check(context.Background()).OK)
	require.Equal(t, int64(1), n.Load())
}

// TestReadinessLogsTransitionsOnce: a failing check is logged when it starts failing and when it
// recovers, not on every run.
func TestReadinessLogsTransitionsOnce(t *testing.T) {
	t.Parallel()
	clk := &clock{now: time.Unix(1_700_000_000, 0)}
	var logs bytes.Buffer
	c := health.NewChecker(health.Config{Now: clk.Now, Log: slog.New(slog.NewTextHandler(&logs, nil))})
	var fail atomic.Bool
	fail.Store(true)
	c.Add("sqs", func(context.Context) error {
		if fail.Load() {
			return errors.New("queue gone")
		}
		return nil
	})
	for range 3 {
		require.False(t, c.Check(context.Background()).OK)
		clk.Advance(time.Hour)
	}
	fail.Store(false)
	for range 3 {
		require.True(t, c.Check(context.Background()).OK)
		clk.Advance(time.Hour)
	}
	require.Equal(t, 1, bytes.Count(logs.Bytes(), []byte("readiness check failed")))
	require.Equal(t, 1, bytes.Count(logs.Bytes(), []byte("readiness check passes again")))
}

func TestHealthz(t *testing.T) {
	t.Parallel()
	rec := httptest.NewRecorder()
	health.Healthz(rec, httptest.NewRequest(http.MethodGet, "/healthz", nil))
	body, _ := io.ReadAll(rec.Body)
	require.Equal(t, http.StatusOK, rec.Code)
	require.JSONEq(t, `{"status":"ok"}`, string(body))
}

// TestOptionalCheckIsReportedNotRequired: an optional dependency that fails is named failed in
// both views and in intake_dependency_up, but leaves the process ready; a required one that fails
// makes it unready.
func TestOptionalCheckIsReportedNotRequired(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	c := health.NewChecker(health.Config{Registerer: reg})
	c.Add("postgres", func(context.Context) error { return nil })
	c.AddOptional("redis", func(context.Context) error { return errors.New("connection refused") })

	rec := httptest.NewRecorder()
	c.Readyz(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
	require.Equal(t, http.StatusOK, rec.Code)
	require.JSONEq(t, `{"status":"ready","checks":{"postgres":"ok","redis":"failed"}}`, rec.Body.String())
	rec = httptest.NewRecorder()
	c.ReadyzDetail(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
	require.Equal(t, http.StatusOK, rec.Code)
	require.Contains(t, rec.Body.String(), `"redis":{"ok":false,"error":"connection refused"`)
	require.Contains(t, rec.Body.String(), `"optional":true`)
	require.Equal(t, 0.0, testkit.Metric(t, reg, "intake_dependency_up", "dependency", "redis", "required", "false"))
	require.Equal(t, 1.0, testkit.Metric(t, reg, "intake_dependency_up", "dependency", "postgres", "required", "true"))

	c.Add("redis", func(context.Context) error { return errors.New("connection refused") })
	rec = httptest.NewRecorder()
	c.Readyz(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
	require.Equal(t, http.StatusServiceUnavailable, rec.Code, "required again: unready")
}

// TestRunRefreshesWithoutCallers: Run keeps intake_dependency_up current with nobody calling
// /readyz (a dependency that goes down, then comes back, is seen within an interval or two), and
// returns when its context ends.
func TestRunRefreshesWithoutCallers(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	c := health.NewChecker(health.Config{TTL: time.Millisecond, Registerer: reg})
	var down atomic.Bool
	c.Add("redis", func(context.Context) error {
		if down.Load() {
			return errors.New("redis: refused")
		}
		return nil
	})
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	go func() { c.Run(ctx, 10*time.Millisecond); close(stopped) }()
	up := func() float64 {
		return testkit.Metric(t, reg, "intake_dependency_up", "dependency", "redis", "required", "true")
	}
	require.Eventually(t, func() bool { return up() == 1 }, 5*time.Second, 5*time.Millisecond)
	down.Store(true)
	require.Eventually(t, func() bool { return up() == 0 }, 5*time.Second, 5*time.Millisecond)
	down.Store(false)
	require.Eventually(t, func() bool { return up() == 1 }, 5*time.Second, 5*time.Millisecond)
	cancel()
	select {
	case <-stopped:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return when its context ended")
	}
}

// TestAddDuringRunIsNotOvertaken: an Add while a run is in flight (the daemon replaces the
// "postgres" check once connected, and adds the consumer's) must not leave that run's report, of
// the old set of checks, cached for the TTL: before, the next Check answered the stale report
// (postgres "not connected yet", no consumer) for up to the TTL. The run's own callers still get it.
func TestAddDuringRunIsNotOvertaken(t *testing.T) {
	c := health.NewChecker(health.Config{TTL: time.Hour})
	release, started := make(chan struct{}), make(chan struct{})
	c.Add("postgres", func(context.Context) error {
		close(started)
		<-release
		return errors.New("not connected yet")
	})
	first := make(chan health.Report, 1)
	go func() { first <- c.Check(context.Background()) }()
	<-started
	c.Add("postgres", func(context.Context) error { return nil })
	c.Add("consumer", func(context.Context) error { return nil })
	close(release)
	old := <-first
	require.False(t, old.OK, "the run's caller gets the run's report")
	rep := c.Check(context.Background())
	require.True(t, rep.OK, "%+v", rep)
	require.Contains(t, rep.Checks, "consumer")
}
