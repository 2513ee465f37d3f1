package ingress_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/intakehq/intake/internal/api"
	"github.com/intakehq/intake/internal/ingress"
	"github.com/intakehq/intake/internal/queue"
	"github.com/intakehq/intake/internal/testkit"
)

const token = "s3cret-ingress-token"

type bundle struct {
	srv    *httptest.Server
	client *sqs.Client
	queue  string
	reg    *prometheus.Registry
}

func setup(t *testing.T, client *sqs.Client, queueURL string) *bundle {
	t.Helper()
	reg := prometheus.NewRegistry()
	h, err := ingress.New(ingress.Config{Token: token, QueueURL: queueURL, Client: client, Registerer: reg, SendTimeout: 5 * time.Second})
	require.NoError(t, err)
	mux := http.NewServeMux()
	h.Mount(mux)
	// Every exchange is checked against intake's OpenAPI document.
	srv := httptest.NewServer(testkit.NewContract(t, api.OpenAPI()).Handler(t, mux))
	t.Cleanup(srv.Close)
	return &bundle{srv: srv, client: client, queue: queueURL, reg: reg}
}

func (b *bundle) post(t *testing.T, auth string, body io.Reader) *http.Response {
	t.Helper()
	return b.send(t, auth, body, false)
}

// attack is post for a request that may break the OpenAPI document on purpose: only its response
// is checked against it.
func (b *bundle) attack(t *testing.T, auth string, body io.Reader) *http.Response {
	t.Helper()
	return b.send(t, auth, body, true)
}

func (b *bundle) send(t *testing.T, auth string, body io.Reader, attack bool) *http.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, b.srv.URL+ingress.Path, body)
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	if attack {
		req.Header.Set(testkit.OffContract, "attack")
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	t.Cleanup(func() { _ = resp.Body.Close() })
	return resp
}

func (b *bundle) count(t *testing.T, outcome string) float64 {
	t.Helper()
	mfs, err := b.reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() != "intake_ingress_requests_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			if m.GetLabel()[0].GetValue() == outcome {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

// queued drains what the queue holds (waiting up to wait for the first message).
func queued(t *testing.T, client *sqs.Client, url string, wait time.Duration) []string {
	t.Helper()
	var bodies []string
	for {
		out, err := client.ReceiveMessage(context.Background(), &sqs.ReceiveMessageInput{
			QueueUrl: aws.String(url), MaxNumberOfMessages: 10, WaitTimeSeconds: int32(wait / time.Second),
		})
		require.NoError(t, err)
		if len(out.Messages) == 0 {
			return bodies
		}
		for _, m := range out.Messages {
			bodies = append(bodies, aws.ToString(m.Body))
		}
		wait = 0
	}
}

type problemBody struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail"`
}

func requireProblem(t *testing.T, resp *http.Response, status int, slug string) problemBody {
	t.Helper()
	require.Equal(t, status, resp.StatusCode)
	require.Equal(t, "application/problem+json", resp.Header.Get("Content-Type"))
	var p problemBody
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&p))
	assert.Equal(t, ingress.ProblemBase+slug, p.Type)
	assert.Equal(t, status, p.Status)
	assert.NotEmpty(t, p.Title)
	return p
}

func fixture(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	require.NoError(t, err)
	return b
}

func TestNewValidates(t *testing.T) {
	t.Parallel()
	_, err := ingress.New(ingress.Config{})
	require.Error(t, err)
	for _, want := range []string{"Token", "QueueURL", "Client"} {
		assert.ErrorContains(t, err, want)
	}
}

func TestForwardsValidEvents(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("needs kumo")
	}
	client := testkit.SQS()
	q := testkit.Queue(t, client, 5, 30*time.Second)
	b := setup(t, client, q.URL)

	for _, name := range []string{"minio-put.json", "test-event.json"} {
		t.Run(name, func(t *testing.T) {
			body := fixture(t, name)
			resp := b.post(t, "Bearer "+token, bytes.NewReader(body))
			require.Equal(t, http.StatusOK, resp.StatusCode)
			var out struct {
				MessageID string `json:"message_id"`
			}
			require.NoError(t, json.NewDecoder(resp.Body).Decode(&out))
			assert.NotEmpty(t, out.MessageID)
			got := queued(t, client, q.URL, 2*time.Second)
			require.Equal(t, []string{string(body)}, got, "the body is forwarded byte for byte")
		})
	}
	// The scheme is case-insensitive.
	resp := b.post(t, "bearer "+token, bytes.NewReader(fixture(t, "test-event.json")))
	require.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, 3.0, b.count(t, "forwarded"))
}

func TestRefusesBadRequests(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("needs kumo")
	}
	client := testkit.SQS()
	q := testkit.Queue(t, client, 5, 30*time.Second)
	b := setup(t, client, q.URL)
	valid := fixture(t, "minio-put.json")

	tests := []struct {
		name    string
		auth    string
		body    io.Reader
		status  int
		slug    string
		outcome string
		detail  string
	}{
		{"no token", "", bytes.NewReader(valid), 401, "unauthorized", "unauthorized", ""},
		{"wrong token", "Bearer nope", bytes.NewReader(valid), 401, "unauthorized", "unauthorized", ""},
		{"token prefix", "Bearer " + token[:len(token)-1], bytes.NewReader(valid), 401, "unauthorized", "unauthorized", ""},
		{"basic auth", "Basic " + token, bytes.NewReader(valid), 401, "unauthorized", "unauthorized", ""},
		{"garbage", "Bearer " + token, strings.NewReader("{not json"), 400, "invalid-event", "invalid", "malformed JSON"},
		{"no records", "Bearer " + token, strings.NewReader(`{"Records":[]}`), 400, "invalid-event", "invalid", "no records"},
		{"unknown shape", "Bearer " + token, strings.NewReader(`{"hello":"world"}`), 400, "invalid-event", "invalid", "unrecognized"},
		{"invalid UTF-8", "Bearer " + token, bytes.NewReader([]byte("{\"Records\":\"\xff\"}")), 400, "invalid-event", "invalid", "UTF-8"},
		// Valid JSON, decodable, but SQS refuses U+FFFF in a body: refused here, with the reason.
		{"a character SQS does not carry", "Bearer " + token, bytes.NewReader(bytes.Replace(valid, []byte(`"eventName"`), []byte("\"eventName\uFFFF\": 1, \"eventName\""), 1)), 400, "invalid-event", "invalid", "U+FFFF"},
		{"too large", "Bearer " + token, bytes.NewReader(bytes.Repeat([]byte(" "), ingress.DefaultMaxBody+1)), 413, "request-too-large", "too_large", ""},
		// No Content-Length: the limit applies while reading.
		{"too large, chunked", "Bearer " + token, io.MultiReader(strings.NewReader(`{"Records":[`), strings.NewReader(strings.Repeat(" ", ingress.DefaultMaxBody))), 413, "request-too-large", "too_large", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := b.count(t, tt.outcome)
			resp := b.attack(t, tt.auth, tt.body)
			p := requireProblem(t, resp, tt.status, tt.slug)
			assert.Contains(t, p.Detail, tt.detail)
			if tt.status == http.StatusUnauthorized {
				assert.Equal(t, `Bearer realm="intake"`, resp.Header.Get("WWW-Authenticate"))
			}
			assert.Equal(t, before+1, b.count(t, tt.outcome))
		})
	}
	assert.Empty(t, queued(t, client, q.URL, time.Second), "nothing refused reaches the queue")

	req, err := http.NewRequest(http.MethodGet, b.srv.URL+ingress.Path, nil)
	require.NoError(t, err)
	req.Header.Set(testkit.OffContract, "no such route")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	_ = resp.Body.Close()
	assert.Equal(t, http.StatusMethodNotAllowed, resp.StatusCode)
}

func TestQueueFailureIs503(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("needs kumo")
	}
	unreachable := testkit.AWS()
	unreachable.SQSEndpoint = "http://127.0.0.1:1"
	cfg := testkit.AWSConfig()
	cfg.RetryMaxAttempts = 1
	tests := []struct {
		name   string
		client *sqs.Client
		url    string
	}{
		{"queue does not exist", testkit.SQS(), testkit.AWS().SQSEndpoint + "/000000000000/" + testkit.Name("missing-")},
		{"SQS unreachable", queue.NewClient(cfg, unreachable), "http://127.0.0.1:1/000000000000/q"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, tt.client, tt.url)
			resp := b.post(t, "Bearer "+token, bytes.NewReader(fixture(t, "minio-put.json")))
			requireProblem(t, resp, http.StatusServiceUnavailable, "queue-unavailable")
			assert.Equal(t, "5", resp.Header.Get("Retry-After"))
			assert.Equal(t, 1.0, b.count(t, "queue_unavailable"))
		})
	}
}
