// Package health serves intake's liveness (/healthz) and readiness (/readyz) endpoints. Readiness runs
// every registered dependency check concurrently, each with its own timeout, and answers 200 only
// when all pass; the body says which failed and why.
package health

import (
	"context"
	"encoding/json"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Check reports whether one dependency is reachable.
type Check func(ctx context.Context) error

// Checker holds the named readiness checks.
type Checker struct {
	timeout time.Duration
	mu      sync.RWMutex
	checks  map[string]Check
	up      *prometheus.GaugeVec
}

// NewChecker returns a Checker whose checks each get timeout. reg may be nil.
func NewChecker(timeout time.Duration, reg prometheus.Registerer) *Checker {
	c := &Checker{
		timeout: timeout,
		checks:  map[string]Check{},
		up: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "intake", Name: "dependency_up",
			Help: "1 when the last readiness check of a dependency passed, else 0.",
		}, []string{"dependency"}),
	}
	if reg != nil {
		reg.MustRegister(c.up)
	}
	return c
}

// Add registers a named check; a later Add with the same name replaces it.
func (c *Checker) Add(name string, check Check) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.checks[name] = check
}

// Result is the outcome of one check.
type Result struct {
	// OK is true when the check passed.
	OK bool `json:"ok"`
	// Error is the failure, if any.
	Error string `json:"error,omitempty"`
	// Millis is how long the check took.
	Millis int64 `json:"ms"`
}

// Run runs all checks concurrently and reports each, and whether all passed.
func (c *Checker) Run(ctx context.Context) (map[string]Result, bool) {
	c.mu.RLock()
	checks := make(map[string]Check, len(c.checks))
	for k, v := range c.checks {
		checks[k] = v
	}
	c.mu.RUnlock()

	var (
		mu      sync.Mutex
		wg      sync.WaitGroup
		results = make(map[string]Result, len(checks))
		allOK   = true
	)
	for name, check := range checks {
		wg.Go(func() {
			cctx, cancel := context.WithTimeout(ctx, c.timeout)
			defer cancel()
			start := time.Now()
			err := check(cctx)
			r := Result{OK: err == nil, Millis: time.Since(start).Milliseconds()}
			if err != nil {
				r.Error = err.Error()
			}
			mu.Lock()
			defer mu.Unlock()
			results[name] = r
			allOK = allOK && r.OK
			v := 0.0
			if r.OK {
				v = 1
			}
			c.up.WithLabelValues(name).Set(v)
		})
	}
	wg.Wait()
	return results, allOK
}

// Healthz answers 200 while the process is alive.
func Healthz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write([]byte(`{"status":"ok"}` + "\n"))
}

// Readyz answers 200 when every check passes, 503 otherwise, with per-check details.
func (c *Checker) Readyz(w http.ResponseWriter, r *http.Request) {
	results, ok := c.Run(r.Context())
	status, code := "ready", http.StatusOK
	if !ok {
		status, code = "unavailable", http.StatusServiceUnavailable
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(map[string]any{"status": status, "checks": results})
}
