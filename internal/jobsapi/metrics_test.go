package jobsapi_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/intakehq/intake/internal/auth"
	"github.com/intakehq/intake/internal/jobsapi"
	"github.com/intakehq/intake/internal/problem"
	"github.com/intakehq/intake/internal/store/dbq"
	"github.com/intakehq/intake/internal/testkit"
)

// operatorOrNobody lets in the operator key "ops" and refuses anything else.
type operatorOrNobody struct{}

func (operatorOrNobody) Authenticate(r *http.Request) (auth.Caller, *problem.Problem) {
	if r.Header.Get("Authorization") == "Bearer ops" {
		return auth.Caller{Operator: true, Name: "ops"}, nil
	}
	p := problem.Unauthorized.With("no credentials")
	return auth.Caller{}, &p
}

// enqueuer accepts every task, or fails every one with err.
type enqueuer struct{ err error }

func (e enqueuer) EnqueueContext(_ context.Context, task *asynq.Task, _ ...asynq.Option) (*asynq.TaskInfo, error) {
	if e.err != nil {
		return nil, e.err
	}
	return &asynq.TaskInfo{ID: "t1", Queue: "intake-low", Type: task.Type(), State: asynq.TaskStatePending, NextProcessAt: time.Now()}, nil
}

type noUploads struct{}

func (noUploads) APIGetUploadByKey(context.Context, dbq.APIGetUploadByKeyParams) (dbq.Upload, error) {
	return dbq.Upload{}, errors.New("not used")
}

// TestJobsCountedInTheAPISeries: POST /v1/jobs is counted in the API's request series,
// intake_http_requests_total{route="POST /v1/jobs", code} and the duration histogram, sharing the
// collectors the API registered first on the same registry (as in the daemon), so that the
// IntakeAPIErrors alert sees its 5xx. Before, it was counted nowhere.
func TestJobsCountedInTheAPISeries(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	// What internal/api registers (its metrics: same name, help and labels).
	apiRequests := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "intake", Name: "http_requests_total", Help: "API requests by route pattern and status code.",
	}, []string{"route", "code"})
	require.NoError(t, reg.Register(apiRequests))
	apiRequests.WithLabelValues("POST /v1/uploads", "201").Inc()

	serve := func(err error) *httptest.Server {
		h, nerr := jobsapi.New(jobsapi.Config{Client: enqueuer{err}, Auth: operatorOrNobody{}, Uploads: noUploads{}, Buckets: []string{"b"}, Registerer: reg})
		require.NoError(t, nerr)
		mux := http.NewServeMux()
		h.Register(mux)
		srv := httptest.NewServer(mux)
		t.Cleanup(srv.Close)
		return srv
	}
	ok, down := serve(nil), serve(errors.New("redis: connection refused"))
	post := func(srv *httptest.Server, key, body string) int {
		req, err := http.NewRequest(http.MethodPost, srv.URL+"/v1/jobs", strings.NewReader(body))
		require.NoError(t, err)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+key)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		return resp.StatusCode
	}
	sweep := `{"type":"multipart:sweep","payload":{"older_than":"48h"}}`
	require.Equal(t, http.StatusAccepted, post(ok, "ops", sweep))
	require.Equal(t, http.StatusAccepted, post(ok, "ops", sweep))
	require.Equal(t, http.StatusUnauthorized, post(ok, "nobody", sweep))
	require.Equal(t, http.StatusUnprocessableEntity, post(ok, "ops", `{"type":"nope","payload":{}}`))
	require.Equal(t, http.StatusServiceUnavailable, post(down, "ops", sweep))

	for code, want := range map[string]float64{"202": 2, "401": 1, "422": 1, "503": 1} {
		require.Equal(t, want, testkit.Metric(t, reg, "intake_http_requests_total", "route", jobsapi.Route, "code", code), code)
	}
	require.Equal(t, 1.0, testkit.Metric(t, reg, "intake_http_requests_total", "route", "POST /v1/uploads", "code", "201"), "the API's own series untouched")
	require.Equal(t, 5.0, testkit.Metric(t, reg, "intake_http_request_duration_seconds", "route", jobsapi.Route))

	// A series of the same name that is not the API's is refused, not silently split.
	other := prometheus.NewRegistry()
	require.NoError(t, other.Register(prometheus.NewCounterVec(prometheus.CounterOpts{Name: "intake_http_requests_total", Help: "something else"}, []string{"route", "code"})))
	_, err := jobsapi.New(jobsapi.Config{Client: enqueuer{}, Auth: operatorOrNobody{}, Uploads: noUploads{}, Buckets: []string{"b"}, Registerer: other})
	require.Error(t, err)
}
