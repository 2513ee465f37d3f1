package api

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/intakehq/intake/internal/ctxval"
	"github.com/intakehq/intake/internal/problem"
	"github.com/intakehq/intake/internal/store"
	"github.com/intakehq/intake/internal/telemetry"
	"github.com/intakehq/intake/pipeline"
)

// metrics are the API's Prometheus series.
type metrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	presigns *prometheus.CounterVec
	// presigned holds presigns' children by method.
	presigned *counters[string]
	// unscheduled counts multipart uploads whose deadline abort could not be scheduled.
	unscheduled prometheus.Counter
	// refusedOpen counts multipart creates refused because the owner had too many open.
	refusedOpen prometheus.Counter
	// refusedWaits counts long polls refused because the owner held too many open.
	refusedWaits prometheus.Counter
	// refusedBodies counts complete requests refused because their bodies passed a budget.
	refusedBodies prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: telemetry.Namespace, Name: "http_requests_total",
			Help: "API requests by route pattern and status code.",
		}, []string{"route", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: telemetry.Namespace, Name: "http_request_duration_seconds",
			Help:    "API request latency by route pattern.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 10},
		}, []string{"route"}),
		presigns: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: telemetry.Namespace, Name: "presigns_total",
			Help: "Presigned requests handed out, by method (put, post, multipart, part, get).",
		}, []string{"method"}),
		unscheduled: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: telemetry.Namespace, Name: "multipart_abort_unscheduled_total",
			Help: "Multipart uploads created whose deadline abort could not be scheduled (Redis down); the sweep aborts them after their deadline.",
		}),
		refusedOpen: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: telemetry.Namespace, Name: "multipart_open_refused_total",
			Help: "Multipart uploads refused (429) because their owner had INTAKE_API_MAX_OPEN_MULTIPART open.",
		}),
		refusedWaits: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: telemetry.Namespace, Name: "api_waits_refused_total",
			Help: "Long polls (GET /v1/uploads/{id}?wait=) refused (429) because their owner held INTAKE_API_MAX_WAITS open on the replica.",
		}),
		refusedBodies: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: telemetry.Namespace, Name: "api_complete_bodies_refused_total",
			Help: "Complete requests refused (429 too-many-completes, 503 server-busy) because the part lists being read passed their owner's budget (16 MiB) or the replica's (64 MiB).",
		}),
	}
	m.presigned = newCounters(m.presigns, func(method string) string { return method })
	for _, c := range []prometheus.Collector{m.requests, m.duration, m.presigns, m.unscheduled, m.refusedOpen, m.refusedWaits, m.refusedBodies} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// requestKey finds the request's scope (ctxval) in its context.
type requestKey struct{}

// requestScope is what the middleware keeps for one request, carried by its context (ctxval) in
// one allocation: the status writer and the X-Request-Id header's value, which is the request id.
// Separately they cost six (context.WithValue's context and the id boxed in it, the writer, the
// header's slice).
type requestScope struct {
	w  statusWriter
	id [1]string // the X-Request-Id header's value: the response's header map holds id[:]
}

// requestID returns the request id stored in ctx by the middleware.
func requestID(ctx context.Context) string {
	if rs, ok := ctxval.From[requestKey, requestScope](ctx); ok {
		return rs.id[0]
	}
	return ""
}

// requestIDs hands out process-unique request ids: a random prefix and a counter.
type requestIDs struct {
	prefix string
	n      atomic.Uint64
}

func newRequestIDs() *requestIDs {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return &requestIDs{prefix: hex.EncodeToString(b[:]) + "-"}
}

func (g *requestIDs) next() string {
	var buf [32]byte // the 13-byte prefix and at most 13 base-36 digits: one allocation, the string
	return string(strconv.AppendUint(append(buf[:0], g.prefix...), g.n.Add(1), 36))
}

// RequestIDs hands out X-Request-Id values as the API's middleware does, for answers given
// outside it (the daemon's answers while it starts).
type RequestIDs struct{ g *requestIDs }

// NewRequestIDs returns a source of request ids with a prefix of its own.
func NewRequestIDs() RequestIDs { return RequestIDs{newRequestIDs()} }

// For returns client (a request's X-Request-Id) when the API accepts it, else a new id.
func (r RequestIDs) For(client string) string {
	if validRequestID(client) {
		return client
	}
	return r.g.next()
}

// validRequestID accepts a client's X-Request-Id when it is short printable ASCII.
func validRequestID(id string) bool {
	if id == "" || len(id) > 128 {
		return false
	}
	for i := 0; i < len(id); i++ {
		if id[i] <= 0x20 || id[i] >= 0x7f {
			return false
		}
	}
	return true
}

// statusWriter records the status code written, and gives the answer its Date header.
type statusWriter struct {
	http.ResponseWriter
	code  int
	dates *dateHeader
}

func (w *statusWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
		w.date()
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
		w.date()
	}
	return w.ResponseWriter.Write(b)
}

// date sets the Date header from the value formatted once a second, unless the handler set one or
// suppressed it (a nil value, as net/http documents); net/http formats it on every answer that
// has none.
func (w *statusWriter) date() {
	h := w.Header()
	if _, set := h["Date"]; !set {
		h["Date"] = w.dates.at(time.Now())
	}
}

// dateHeader holds the Date header's value of the current second (http.TimeFormat), shared by the
// answers of that second: net/http's formatting of it on every answer was 1.2% of the presign
// route's CPU.
type dateHeader struct{ cur atomic.Pointer[dateValue] }

type dateValue struct {
	sec   int64
	value []string
}

// at returns the header's value for now. A second's first answers may each format it; one is kept.
func (d *dateHeader) at(now time.Time) []string {
	sec := now.Unix()
	if v := d.cur.Load(); v != nil && v.sec == sec {
		return v.value
	}
	v := &dateValue{sec: sec, value: []string{now.UTC().Format(http.TimeFormat)}}
	d.cur.Store(v)
	return v.value
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// cors decides which browser origins may call the API.
type cors struct {
	any     bool
	origins map[string]bool
}

func newCORS(list string) cors {
	c := cors{origins: map[string]bool{}}
	for o := range strings.SplitSeq(list, ",") {
		o = strings.TrimRight(strings.TrimSpace(o), "/")
		switch o {
		case "":
		case "*":
			c.any = true
		default:
			c.origins[strings.ToLower(o)] = true
		}
	}
	return c
}

func (c cors) allowed(origin string) (ok, listed bool) {
	if c.listed(origin) {
		return true, true
	}
	return c.any, false
}

// listed reports whether origin is one of INTAKE_API_CORS_ORIGINS by name ("*" lists none): only
// those receive credentials.
func (c cors) listed(origin string) bool { return c.origins[strings.ToLower(origin)] }

// exposedHeaders are readable by browser scripts on cross-origin responses (Retry-After: a
// script backs off a 503 or 429 as told; it is not readable by default).
const exposedHeaders = "ETag, Location, Retry-After, X-Request-Id, " + IdempotentReplayedHeader

// allowedHeaders are the request headers a cross-origin script may send (a preflight's answer).
const allowedHeaders = "Authorization, Content-Type, X-API-Key, X-Request-Id, X-Requested-With, Uppy-Versions, " + IdempotencyKeyHeader

// setCORS adds the CORS response headers for an allowed Origin.
func (c cors) setCORS(w http.ResponseWriter, r *http.Request) {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return
	}
	h := w.Header()
	h.Add("Vary", "Origin")
	ok, listed := c.allowed(origin)
	if !ok {
		return
	}
	h.Set("Access-Control-Allow-Origin", origin)
	h.Set("Access-Control-Expose-Headers", exposedHeaders)
	if listed {
		h.Set("Access-Control-Allow-Credentials", "true")
	}
}

// preflight answers CORS preflight requests (OPTIONS with Access-Control-Request-Method).
func (s *Server) preflight(w http.ResponseWriter, r *http.Request) { s.cors.preflight(w, r) }

// WithCORS gives next's answers the API's CORS headers for origins (the API's CORSOrigins setting)
// and answers CORS preflights (OPTIONS with Access-Control-Request-Method) as the API's routes do.
// The daemon's answers while it starts use it, so that a browser's script reads their 503 and its
// Retry-After instead of a network error.
func WithCORS(origins string, next http.Handler) http.Handler {
	c := newCORS(origins)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
			c.preflight(w, r)
			return
		}
		c.setCORS(w, r)
		next.ServeHTTP(w, r)
	})
}

// preflight answers a CORS preflight request.
func (c cors) preflight(w http.ResponseWriter, r *http.Request) {
	c.setCORS(w, r)
	origin := r.Header.Get("Origin")
	reqMethod := r.Header.Get("Access-Control-Request-Method")
	if ok, _ := c.allowed(origin); origin == "" || reqMethod == "" || !ok {
		w.Header().Set("Allow", "GET, POST, DELETE, OPTIONS")
		w.WriteHeader(http.StatusNoContent)
		return
	}
	h := w.Header()
	h.Add("Vary", "Access-Control-Request-Method")
	h.Add("Vary", "Access-Control-Request-Headers")
	h.Set("Access-Control-Allow-Methods", "GET, POST, DELETE, OPTIONS")
	h.Set("Access-Control-Allow-Headers", allowedHeaders)
	h.Set("Access-Control-Max-Age", "600")
	w.WriteHeader(http.StatusNoContent)
}

// statusClientClosed is the status recorded (metrics, logs; never sent) for a request whose client
// left before anything was written, nginx's 499 "client closed request": a long poll given up is
// not an answer served. net/http would record the 200 it writes for a handler that wrote nothing.
const statusClientClosed = 499

// handlerFunc is an API handler: it writes its response, or returns the problem to write.
type handlerFunc func(w http.ResponseWriter, r *http.Request, who principal) *Problem

// family selects how errors are written: RFC 9457 for /v1, {"error": "..."} for Uppy's routes.
type family int

const (
	familyV1 family = iota
	familyUppy
	familyPublic // no authentication (the OpenAPI document)
)

// wrap turns a handlerFunc into an http.Handler with request ids, CORS, authentication, panics
// turned into 500s, metrics and logging.
func (s *Server) wrap(route string, fam family, h handlerFunc) http.Handler {
	requests := newCounters(s.metrics.requests.MustCurryWith(prometheus.Labels{"route": route}), strconv.Itoa)
	duration := s.metrics.duration.WithLabelValues(route)
	return http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		start := time.Now()
		id := r.Header.Get("X-Request-Id")
		if !validRequestID(id) {
			id = s.ids.next()
		}
		rs := ctxval.With[requestKey](r.Context(), requestScope{w: statusWriter{ResponseWriter: rw, dates: &s.dates}, id: [1]string{id}})
		ctx := telemetry.WithAttrs(rs, slog.String("request_id", id))
		r = r.WithContext(ctx)
		w := &rs.V.w
		w.Header()["X-Request-Id"] = rs.V.id[:] // Header().Set's canonical key, without a slice of its own
		s.cors.setCORS(w, r)

		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				s.log.ErrorContext(ctx, "panic in API handler", "route", route, "panic", v)
				if w.code == 0 {
					s.fail(w, r, fam, problemf(probInternal, "internal error"))
				}
			}
			code := w.code
			switch {
			case code == 0 && ctx.Err() != nil:
				code = statusClientClosed // nothing written, and no one left to read it
			case code == 0:
				code = http.StatusOK
			}
			elapsed := time.Since(start)
			requests.get(code).Inc()
			duration.Observe(elapsed.Seconds())
			level := slog.LevelDebug
			if code >= 500 {
				level = slog.LevelError
			}
			if s.log.Enabled(ctx, level) {
				s.log.Log(ctx, level, "api request", "method", r.Method, "route", route, "path", r.URL.Path,
					"status", code, "duration", elapsed)
			}
		}()

		var who principal
		if fam != familyPublic {
			var p *Problem
			if who, p = s.authenticate(r); p != nil {
				s.fail(w, r, fam, p)
				return
			}
			// A token of the owner's bucket (Options.Limiter), or 429 rate-limited.
			if p = s.limiter.Refuse(ctx, s.log, who.owner); p != nil {
				s.fail(w, r, fam, p)
				return
			}
		}
		if p := h(w, r, who); p != nil {
			s.fail(w, r, fam, p)
		}
	})
}

// fail writes a problem in the family's format.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, fam family, p *Problem) {
	if p.Status >= 500 {
		s.log.WarnContext(r.Context(), "api request failed", "type", p.Type, "detail", p.Detail)
	}
	if fam == familyUppy {
		problem.SetChallenge(w.Header(), p.Status)
		problem.SetRetryAfter(w.Header(), *p)
		writeJSON(w, p.Status, map[string]string{"error": p.Detail, "type": p.Type})
		return
	}
	writeProblem(w, r, p)
}

// dbProblem is internalProblem for an error of PostgreSQL's: 503 database-unavailable when the
// database cannot be reached or cannot do the work now (a restart, a failover, too many
// connections: store.Unavailable), which a client retries. Only for database calls: store.Unavailable
// takes any network error for an outage, and a signer's (an unreachable STS) is not the database's.
func (s *Server) dbProblem(ctx context.Context, what string, err error) *Problem {
	if pipeline.UnavailableDependency(err) == pipeline.DependencyPostgres || store.Unavailable(err) {
		s.log.WarnContext(ctx, what, "err", err)
		return problemf(probDBUnavailable, "%s: the database is unavailable; try again (request id %s)", what, requestID(ctx))
	}
	return s.internalProblem(ctx, what, err)
}

// signProblem is the answer when intake cannot sign a URL or policy: the signer fails only when
// its credentials cannot be had (the provider, such as the instance metadata service or STS, down
// or refusing) or expire at once (sigv4.ErrCredentialsExpiring). That is intake's side failing for
// now, not an internal error: 503 credentials-unavailable, which a client retries (Retry-After: 5,
// so that clients obeying it do not turn into a provider call each per second), logged at error
// with the provider's words, which the client does not see (a refusal that lasts, such as a wrong
// trust policy, is the operator's to fix).
func (s *Server) signProblem(ctx context.Context, what string, err error) *Problem {
	s.log.ErrorContext(ctx, what, "err", err)
	p := problemf(probCredsUnavailable, "%s: intake's signing credentials are unavailable right now; try again (request id %s)", what, requestID(ctx))
	p.RetryAfter = signRetryAfter
	return p
}

// signRetryAfter is the Retry-After of credentials-unavailable.
const signRetryAfter = 5 * time.Second

// internalProblem logs err and returns a 500 problem that does not leak it (a 503 when the call
// timed out, which a client retries).
func (s *Server) internalProblem(ctx context.Context, what string, err error) *Problem {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		s.log.WarnContext(ctx, what, "err", err)
		return problemf(probDBUnavailable, "%s: timed out", what)
	}
	s.log.ErrorContext(ctx, what, "err", err)
	return problemf(probInternal, "%s failed (request id %s)", what, requestID(ctx))
}
