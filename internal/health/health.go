// Package health serves intake's liveness (/healthz) and readiness (/readyz) endpoints.
//
// # Readiness
//
// A [Checker] holds named dependency checks (PostgreSQL, Redis, the S3 bucket, the SQS queues, the
// consumer). [Checker.Check] runs them concurrently, each with its own timeout, and caches the
// report for a short time (1 s by default): callers within that window get the cached report, and
// callers that arrive while a run is in progress wait for that run instead of starting their own. So
// a burst of probes or a scraper hammering /readyz costs the dependencies one round of checks per
// window, whatever the number of callers.
//
// Two views of a report are served. [Checker.Readyz] is for the public listener (load balancers,
// Kubernetes probes): the overall status and each dependency's name with "ok" or "failed", never an
// error text (errors name hosts, buckets and queues). [Checker.ReadyzDetail] is for the operators'
// admin listener: each check's error and duration. A check that starts failing is logged (warn)
// with its error once, and its recovery once, so the reason is in the logs even without the admin
// listener.
//
// # Refresh
//
// [Checker.Run] runs the checks periodically in the background, so that intake_dependency_up is
// current whether or not anything probes /readyz.
package health

import (
	"cmp"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/intakehq/intake/internal/redact"
)

// Check reports whether one dependency is reachable.
type Check func(ctx context.Context) error

// Config configures a [Checker].
type Config struct {
	// Timeout bounds each check (default 3s).
	Timeout time.Duration
	// TTL is how long a report is served from cache (default 1s).
	TTL time.Duration
	// Registerer receives intake_dependency_up (optional).
	Registerer prometheus.Registerer
	// Log receives check failures and recoveries (default: discard).
	Log *slog.Logger
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Checker holds the named readiness checks and the last report.
type Checker struct {
	timeout, ttl time.Duration
	up           *prometheus.GaugeVec
	log          *slog.Logger
	now          func() time.Time

	mu       sync.Mutex
	checks   map[string]Check
	optional map[string]bool // checks reported but not required for readiness
	last     *Report         // nil until the first run, and after Add
	running  chan struct{}   // closed when the run in progress ends; nil when none runs
	gen      int             // bumped by every Add: a run started before one is not cached
	ran      *Report         // the latest run's report, cached or not: what its waiters get
	failing  map[string]bool // the checks whose last run failed (for logging transitions)
}

// NewChecker returns a Checker with no checks.
func NewChecker(cfg Config) *Checker {
	c := &Checker{
		timeout:  cmp.Or(cfg.Timeout, 3*time.Second),
		ttl:      cmp.Or(cfg.TTL, time.Second),
		log:      cmp.Or(cfg.Log, slog.New(slog.DiscardHandler)),
		now:      cfg.Now,
		checks:   map[string]Check{},
		optional: map[string]bool{},
		failing:  map[string]bool{},
		up: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "intake", Name: "dependency_up",
			Help: "1 when the last readiness check of a dependency passed, else 0; required=\"false\" for a dependency the process's readiness does not count.",
		}, []string{"dependency", "required"}),
	}
	if c.now == nil {
		c.now = time.Now
	}
	if cfg.Registerer != nil {
		cfg.Registerer.MustRegister(c.up)
	}
	return c
}

// Add registers a named check the process needs to be ready; a later Add (or AddOptional) with the
// same name replaces it. The cached report is dropped.
func (c *Checker) Add(name string, check Check) { c.add(name, check, false) }

// AddOptional registers a named check that is reported (in /readyz and intake_dependency_up) but
// does not make the process unready: a dependency only some of its requests use (the API's Redis,
// which only POST /v1/jobs needs), whose outage must not take every replica out of its Service.
func (c *Checker) AddOptional(name string, check Check) { c.add(name, check, true) }

func (c *Checker) add(name string, check Check, optional bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.up.DeleteLabelValues(name, strconv.FormatBool(optional)) // a series of its other kind, if any
	c.checks[name] = check
	c.optional[name] = optional
	c.last = nil
	c.gen++
}

// Result is the outcome of one check.
type Result struct {
	// OK is true when the check passed.
	OK bool `json:"ok"`
	// Error is the failure, if any.
	Error string `json:"error,omitempty"`
	// Millis is how long the check took.
	Millis int64 `json:"ms"`
	// Optional is true for a check that does not count for readiness (see [Checker.AddOptional]).
	Optional bool `json:"optional,omitempty"`
}

// Report is the outcome of one run of every check.
type Report struct {
	// OK is true when every required check passed.
	OK bool
	// Checks holds each check's result by name.
	Checks map[string]Result
	// At is when the run ended.
	At time.Time
}

// Check returns the report of the checks: the cached one while it is younger than the TTL, else
// the report of a new run, shared with every caller that arrives while it runs. The run is not
// cancelled with ctx (other callers share it; each check has its own timeout); a caller that waits
// for another's run and whose ctx ends first gets a failed report without results. A run that an
// Add overtook (its set of checks is not the current one) is returned to its callers but not
// cached: the next Check runs the new set.
func (c *Checker) Check(ctx context.Context) Report {
	c.mu.Lock()
	if c.last != nil && c.now().Sub(c.last.At) < c.ttl {
		r := *c.last
		c.mu.Unlock()
		return r
	}
	if wait := c.running; wait != nil {
		c.mu.Unlock()
		select {
		case <-wait:
			c.mu.Lock()
			defer c.mu.Unlock()
			return *c.ran
		case <-ctx.Done():
			return Report{At: c.now()}
		}
	}
	done := make(chan struct{})
	c.running = done
	gen := c.gen
	checks := make(map[string]Check, len(c.checks))
	for k, v := range c.checks {
		checks[k] = v
	}
	optional := make(map[string]bool, len(c.optional))
	for k, v := range c.optional {
		optional[k] = v
	}
	c.mu.Unlock()

	r := c.run(context.WithoutCancel(ctx), checks, optional)

	c.mu.Lock()
	if c.gen == gen {
		c.last = &r
	}
	c.ran, c.running = &r, nil
	close(done)
	c.mu.Unlock()
	return r
}

// run runs the checks concurrently, updates intake_dependency_up and logs transitions.
func (c *Checker) run(ctx context.Context, checks map[string]Check, optional map[string]bool) Report {
	var (
		mu      sync.Mutex
		wg      sync.WaitGroup
		results = make(map[string]Result, len(checks))
	)
	for name, check := range checks {
		wg.Go(func() {
			cctx, cancel := context.WithTimeout(ctx, c.timeout)
			defer cancel()
			start := time.Now()
			err := check(cctx)
			r := Result{OK: err == nil, Millis: time.Since(start).Milliseconds(), Optional: optional[name]}
			if err != nil {
				// The admin /readyz serves it: a check's error may quote a URL with credentials
				// (a queue URL's userinfo or token), which log redaction never sees here.
				r.Error = redact.Error(err).Error()
			}
			mu.Lock()
			results[name] = r
			mu.Unlock()
		})
	}
	wg.Wait()
	rep := Report{OK: true, Checks: results, At: c.now()}
	for name, r := range results {
		rep.OK = rep.OK && (r.OK || r.Optional)
		v := 0.0
		if r.OK {
			v = 1
		}
		c.up.WithLabelValues(name, strconv.FormatBool(!r.Optional)).Set(v)
		c.mu.Lock()
		was := c.failing[name]
		c.failing[name] = !r.OK
		c.mu.Unlock()
		switch {
		case !r.OK && !was:
			c.log.WarnContext(ctx, "readiness check failed", "dependency", name, "err", r.Error)
		case r.OK && was:
			c.log.InfoContext(ctx, "readiness check passes again", "dependency", name)
		}
	}
	return rep
}

// DefaultInterval is how often [Checker.Run] refreshes the report unless told otherwise.
const DefaultInterval = 15 * time.Second

// Run refreshes the report at once and then every interval (DefaultInterval when not positive)
// until ctx ends, so that intake_dependency_up and the failure and recovery logs follow the
// dependencies even when nothing calls /readyz (docker run's HEALTHCHECK probes /healthz, a plain VM
// has no probe at all). Each refresh is an ordinary [Checker.Check]: a report younger than the TTL
// is not run again, and callers of /readyz share the refresh's run. Run returns when ctx ends,
// after a run it started itself (at most the check timeout); a run a /readyz request started may
// still go on, which the HTTP server's Shutdown waits for before the dependencies are closed.
func (c *Checker) Run(ctx context.Context, interval time.Duration) {
	if interval <= 0 {
		interval = DefaultInterval
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for ctx.Err() == nil {
		c.Check(ctx)
		select {
		case <-ctx.Done():
		case <-t.C:
		}
	}
}

// Healthz answers 200 while the process is alive.
func Healthz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write([]byte(`{"status":"ok"}` + "\n"))
}

// Readyz answers 200 when every required check passes, 503 otherwise, naming each dependency with
// "ok" or "failed" and nothing else: it is served on the public listener.
func (c *Checker) Readyz(w http.ResponseWriter, r *http.Request) {
	rep := c.Check(r.Context())
	checks := make(map[string]string, len(rep.Checks))
	for name, res := range rep.Checks {
		checks[name] = "failed"
		if res.OK {
			checks[name] = "ok"
		}
	}
	writeReport(w, rep.OK, map[string]any{"checks": checks})
}

// ReadyzDetail is Readyz with each check's error and duration and the time of the run, for the
// operators' admin listener.
func (c *Checker) ReadyzDetail(w http.ResponseWriter, r *http.Request) {
	rep := c.Check(r.Context())
	writeReport(w, rep.OK, map[string]any{"checks": rep.Checks, "checked_at": rep.At.UTC().Format(time.RFC3339Nano)})
}

func writeReport(w http.ResponseWriter, ok bool, body map[string]any) {
	status, code := "ready", http.StatusOK
	if !ok {
		status, code = "unavailable", http.StatusServiceUnavailable
	}
	body["status"] = status
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(body)
}
