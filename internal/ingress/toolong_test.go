package ingress_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/smithy-go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/intakehq/intake/internal/api"
	"github.com/intakehq/intake/internal/ingress"
	"github.com/intakehq/intake/internal/testkit"
)

// sizedBody is a valid S3 notification of exactly n bytes (padded with a field the pipeline
// ignores).
func sizedBody(t *testing.T, n int) []byte {
	t.Helper()
	head := `{"Records":[{"eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"b"},"object":{"key":"k"}}}],"pad":"`
	tail := `"}`
	require.Greater(t, n, len(head)+len(tail))
	return []byte(head + strings.Repeat("a", n-len(head)-len(tail)) + tail)
}

// withAttributes is a failing Sender that can also read the queue's attributes: MaximumMessageSize
// is maxSize, or the call fails with attrErr.
type withAttributes struct {
	failing
	maxSize int
	attrErr error
	calls   int
}

func (w *withAttributes) GetQueueAttributes(_ context.Context, in *sqs.GetQueueAttributesInput, _ ...func(*sqs.Options)) (*sqs.GetQueueAttributesOutput, error) {
	w.calls++
	if w.attrErr != nil {
		return nil, w.attrErr
	}
	return &sqs.GetQueueAttributesOutput{Attributes: map[string]string{
		string(types.QueueAttributeNameMaximumMessageSize): strconv.Itoa(w.maxSize),
	}}, nil
}

// TestQueueTooLongIs422: a queue's MaximumMessageSize may be below the ingress's 1 MiB (256 KiB on
// queues created before 2025, on kumo's default and on LocalStack's), and SQS refuses a longer body
// with InvalidParameterValue, the code it also gives its queue's own misconfiguration. A body the
// queue refuses as too long would be refused on every retry: it is answered 422 (the sender drops
// it), never 503 with Retry-After (MinIO's queue_dir would retry it forever). A refusal that does
// not say so, for a body the queue's limit allows, is still intake's side failing: 503.
func TestQueueTooLongIs422(t *testing.T) {
	t.Parallel()
	contract := testkit.NewContract(t, api.OpenAPI())
	secretText := "arn:aws:sqs:eu-west-1:123456789012:intake-events"
	awsTooLong := &smithy.GenericAPIError{Code: "InvalidParameterValue", Message: "One or more parameters are invalid. Reason: Message must be shorter than 262144 bytes.", Fault: smithy.FaultClient}
	opaque := &smithy.GenericAPIError{Code: "InvalidParameterValue", Message: "refused by " + secretText, Fault: smithy.FaultClient}
	denied := &smithy.GenericAPIError{Code: "AccessDenied", Message: "not authorized to perform sqs:GetQueueAttributes on " + secretText}
	tests := []struct {
		name   string
		client ingress.Sender
		size   int
		status int
		detail string
	}{
		{"SQS says the body is too long", failing{awsTooLong}, 300 << 10, http.StatusUnprocessableEntity, "262144 bytes"},
		{"SQS says so, attributes readable", &withAttributes{failing: failing{awsTooLong}, maxSize: 262144}, 300 << 10, http.StatusUnprocessableEntity, "262144 bytes"},
		{"the queue's MaximumMessageSize is below the body", &withAttributes{failing: failing{opaque}, maxSize: 64 << 10}, 100 << 10, http.StatusUnprocessableEntity, "65536 bytes"},
		{"the queue's MaximumMessageSize allows the body", &withAttributes{failing: failing{opaque}, maxSize: 1 << 20}, 300 << 10, http.StatusServiceUnavailable, ""},
		{"over 256 KiB, no reason given, attributes unknown", failing{opaque}, 300 << 10, http.StatusUnprocessableEntity, "307200 bytes"},
		{"over 256 KiB, no reason given, attributes denied", &withAttributes{failing: failing{opaque}, attrErr: denied}, 300 << 10, http.StatusUnprocessableEntity, "307200 bytes"},
		{"within 256 KiB, no reason given, attributes unknown", failing{opaque}, 200 << 10, http.StatusServiceUnavailable, ""},
		{"within 256 KiB, no reason given, attributes denied", &withAttributes{failing: failing{opaque}, attrErr: denied}, 200 << 10, http.StatusServiceUnavailable, ""},
		{"a small body, no reason given", failing{opaque}, 200, http.StatusServiceUnavailable, ""},
		{"another failure of a long body", failing{&smithy.GenericAPIError{Code: "ThrottlingException", Message: "slow down"}}, 300 << 10, http.StatusServiceUnavailable, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reg := prometheus.NewRegistry()
			h, err := ingress.New(ingress.Config{Token: token, QueueURL: "http://127.0.0.1:1/000000000000/q", Client: tt.client, Registerer: reg})
			require.NoError(t, err)
			b := &bundle{reg: reg}
			req := httptest.NewRequest(http.MethodPost, ingress.Path, bytes.NewReader(sizedBody(t, tt.size)))
			req.Header.Set("Authorization", "Bearer "+token)
			req.Header.Set("Content-Type", "application/json")
			w := httptest.NewRecorder()
			contract.Handler(t, h).ServeHTTP(w, req)
			require.Equal(t, tt.status, w.Code, w.Body.String())
			require.Equal(t, "application/problem+json", w.Header().Get("Content-Type"))
			require.NotContains(t, w.Body.String(), secretText, "SQS's own text stays out of the answer")
			var p problemBody
			require.NoError(t, json.Unmarshal(w.Body.Bytes(), &p))
			require.Equal(t, tt.status, p.Status)
			if tt.status == http.StatusUnprocessableEntity {
				require.Equal(t, ingress.ProblemBase+"event-rejected", p.Type)
				require.Contains(t, p.Detail, "too long")
				require.Contains(t, p.Detail, tt.detail)
				require.Empty(t, w.Header().Get("Retry-After"), "nothing to retry")
				require.Equal(t, 1.0, b.count(t, "rejected"))
				require.Zero(t, b.count(t, "queue_unavailable"))
			} else {
				require.Equal(t, ingress.ProblemBase+"queue-unavailable", p.Type)
				require.NotEmpty(t, w.Header().Get("Retry-After"))
				require.Equal(t, 1.0, b.count(t, "queue_unavailable"))
			}
		})
	}
}

// tooLongQueue is kumo's queue, except that SendMessage refuses every body as SQS refuses one
// longer than the queue's MaximumMessageSize when its message names no size: kumo does not enforce
// MaximumMessageSize (it takes a 1 MiB body on a queue that says 1024), so the refusal is forged,
// and the queue's attributes are kumo's own.
type tooLongQueue struct{ *sqs.Client }

func (q tooLongQueue) SendMessage(context.Context, *sqs.SendMessageInput, ...func(*sqs.Options)) (*sqs.SendMessageOutput, error) {
	return nil, &smithy.GenericAPIError{Code: "InvalidParameterValue", Message: "One or more parameters are invalid.", Fault: smithy.FaultClient}
}

// TestQueueTooLongReadsMaximumMessageSize: against kumo, the ingress reads the queue's real
// MaximumMessageSize (set to 1 KiB here) through *sqs.Client to tell a body the queue refuses as too
// long (422) from the queue's own failure (503).
func TestQueueTooLongReadsMaximumMessageSize(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("needs kumo")
	}
	client := testkit.SQS()
	q := testkit.Queue(t, client, 5, 30*time.Second)
	ctx := testkit.Context(t)
	_, err := client.SetQueueAttributes(ctx, &sqs.SetQueueAttributesInput{QueueUrl: aws.String(q.URL),
		Attributes: map[string]string{string(types.QueueAttributeNameMaximumMessageSize): "1024"}})
	require.NoError(t, err)
	reg := prometheus.NewRegistry()
	h, err := ingress.New(ingress.Config{Token: token, QueueURL: q.URL, Client: tooLongQueue{client}, Registerer: reg, SendTimeout: 5 * time.Second})
	require.NoError(t, err)
	mux := http.NewServeMux()
	h.Mount(mux)
	srv := httptest.NewServer(testkit.NewContract(t, api.OpenAPI()).Handler(t, mux))
	t.Cleanup(srv.Close)
	b := &bundle{srv: srv, client: client, queue: q.URL, reg: reg}

	resp := b.post(t, "Bearer "+token, bytes.NewReader(sizedBody(t, 2048)))
	p := requireProblem(t, resp, http.StatusUnprocessableEntity, "event-rejected")
	require.Contains(t, p.Detail, "1024 bytes")
	require.Empty(t, resp.Header.Get("Retry-After"))

	resp = b.post(t, "Bearer "+token, bytes.NewReader(sizedBody(t, 512)))
	requireProblem(t, resp, http.StatusServiceUnavailable, "queue-unavailable")
	require.Equal(t, "5", resp.Header.Get("Retry-After"))
	require.Equal(t, 1.0, b.count(t, "rejected"))
	require.Equal(t, 1.0, b.count(t, "queue_unavailable"))
}

// TestForwardsLongBodies: the ingress's own limit is 1 MiB; kumo takes such a body, and the
// ingress forwards it byte for byte.
func TestForwardsLongBodies(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("needs kumo")
	}
	client := testkit.SQS()
	q := testkit.Queue(t, client, 5, 30*time.Second)
	b := setup(t, client, q.URL)
	body := sizedBody(t, 300<<10)
	resp := b.post(t, "Bearer "+token, bytes.NewReader(body))
	require.Equal(t, http.StatusOK, resp.StatusCode)
	got := queued(t, client, q.URL, 2*time.Second)
	require.Len(t, got, 1)
	require.True(t, got[0] == string(body), "forwarded byte for byte")
}
