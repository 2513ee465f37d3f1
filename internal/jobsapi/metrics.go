package jobsapi

import (
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/intakehq/intake/internal/telemetry"
)

// statusClientClosed is the status counted for a request whose client left before anything was
// written (nginx's 499, as the API counts it).
const statusClientClosed = 499

// The API's request series (internal/api registers the same ones): POST /v1/jobs is counted in
// them under its route, so that the API's request rate, its 5xx ratio (the IntakeAPIErrors alert)
// and the dashboard's "Requests /s" include it. The options must stay identical to the API's:
// Prometheus lets a second registration of the same series share the first's collector only then
// (see sharedCollector).
var (
	requestsOpts = prometheus.CounterOpts{
		Namespace: telemetry.Namespace, Name: "http_requests_total",
		Help: "API requests by route pattern and status code.",
	}
	durationOpts = prometheus.HistogramOpts{
		Namespace: telemetry.Namespace, Name: "http_request_duration_seconds",
		Help:    "API request latency by route pattern.",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 10},
	}
)

// metrics counts the handler's requests in the API's series.
type metrics struct {
	requests *prometheus.CounterVec
	duration prometheus.Observer
}

// newMetrics registers (or joins, when the API registered them first) the API's request series.
func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	requests, err := sharedCollector(reg, prometheus.NewCounterVec(requestsOpts, []string{"route", "code"}))
	if err != nil {
		return nil, err
	}
	duration, err := sharedCollector(reg, prometheus.NewHistogramVec(durationOpts, []string{"route"}))
	if err != nil {
		return nil, err
	}
	return &metrics{
		requests: requests.MustCurryWith(prometheus.Labels{"route": Route}),
		duration: duration.WithLabelValues(Route),
	}, nil
}

// sharedCollector registers c, or returns the collector already registered for the same series
// (same name, help and labels). A series of the same name that differs is an error.
func sharedCollector[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	err := reg.Register(c)
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		existing, ok := are.ExistingCollector.(C)
		if !ok {
			var zero C
			return zero, err
		}
		return existing, nil
	}
	return c, err
}

// instrument counts each request of next by status code and observes its duration.
func (m *metrics) instrument(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		defer func() {
			v := recover()
			code := sw.code
			switch {
			case code == 0 && v != nil:
				code = http.StatusInternalServerError // net/http closes the connection
			case code == 0 && r.Context().Err() != nil:
				code = statusClientClosed
			case code == 0:
				code = http.StatusOK
			}
			m.requests.WithLabelValues(strconv.Itoa(code)).Inc()
			m.duration.Observe(time.Since(start).Seconds())
			if v != nil {
				panic(v)
			}
		}()
		next.ServeHTTP(sw, r)
	})
}

// statusWriter records the status code written.
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
