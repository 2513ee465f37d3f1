package ingress_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"unicode/utf8"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/smithy-go"
	"github.com/stretchr/testify/require"

	"github.com/intakehq/intake/internal/api"
	"github.com/intakehq/intake/internal/ingress"
	"github.com/intakehq/intake/internal/testkit"
	"github.com/intakehq/intake/pipeline"
)

// recorder is an in-memory Sender: the fuzz target checks the handler's own logic (what it forwards,
// what it refuses), so it needs no queue; the forwarding itself is tested against kumo above.
type recorder struct {
	mu   sync.Mutex
	sent []string
}

func (r *recorder) SendMessage(_ context.Context, in *sqs.SendMessageInput, _ ...func(*sqs.Options)) (*sqs.SendMessageOutput, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sent = append(r.sent, aws.ToString(in.MessageBody))
	return &sqs.SendMessageOutput{MessageId: aws.String("m-1")}, nil
}

// FuzzIngressBody feeds arbitrary bodies, with the right token, to the ingress. Whatever the body:
// the handler answers 200 and forwards the body byte for byte exactly when the pipeline can decode
// it and SQS can carry it, and otherwise answers a 4xx problem and forwards nothing.
func FuzzIngressBody(f *testing.F) {
	dir := filepath.Join("..", "..", "..", "shared", "fixtures", "events")
	_ = filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && filepath.Ext(path) == ".json" {
			if body, err := os.ReadFile(path); err == nil {
				f.Add(body)
			}
		}
		return nil
	})
	for _, seed := range []string{``, `{}`, `{"Records":[]}`, `{not json`, "{\"Records\":\"\xff\"}", `null`,
		`{"Records":[{"eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"b"},"object":{"key":"k\uFFFF"}}}]}`,
		"{\"Records\":[{\"eventName\":\"ObjectCreated:Put\",\"s3\":{\"bucket\":{\"name\":\"b\"},\"object\":{\"key\":\"k\"}}}],\"x\":\"\uFFFE\"}"} {
		f.Add([]byte(seed))
	}
	// The response, whatever the body, is one the OpenAPI document lists.
	contract := testkit.NewContract(f, api.OpenAPI())
	f.Fuzz(func(t *testing.T, body []byte) {
		rec := &recorder{}
		h, err := ingress.New(ingress.Config{Token: token, QueueURL: "http://127.0.0.1:1/000000000000/q", Client: rec})
		require.NoError(t, err)
		req := httptest.NewRequest(http.MethodPost, ingress.Path, bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set(testkit.OffContract, "arbitrary body")
		w := httptest.NewRecorder()
		contract.Handler(t, h).ServeHTTP(w, req)

		_, decodeErr := pipeline.Decode(body)
		carried := utf8.Valid(body) && !bytes.ContainsRune(body, 0xFFFE) && !bytes.ContainsRune(body, 0xFFFF)
		for _, c := range body {
			if c < 0x20 && c != '\t' && c != '\n' && c != '\r' {
				carried = false
			}
		}
		if decodeErr == nil && carried && len(body) <= ingress.DefaultMaxBody {
			require.Equal(t, http.StatusOK, w.Code, w.Body.String())
			require.Equal(t, []string{string(body)}, rec.sent, "forwarded byte for byte")
			return
		}
		require.GreaterOrEqual(t, w.Code, 400, w.Body.String())
		require.Less(t, w.Code, 500, w.Body.String())
		require.Equal(t, "application/problem+json", w.Header().Get("Content-Type"))
		var p struct {
			Type   string `json:"type"`
			Status int    `json:"status"`
		}
		require.NoError(t, json.Unmarshal(w.Body.Bytes(), &p))
		require.Equal(t, w.Code, p.Status)
		require.Empty(t, rec.sent, "a refused body reaches no queue")
	})
}

// failing is a Sender whose SendMessage fails with err.
type failing struct{ err error }

func (f failing) SendMessage(context.Context, *sqs.SendMessageInput, ...func(*sqs.Options)) (*sqs.SendMessageOutput, error) {
	return nil, f.err
}

// TestQueueRefusalStatus: what SQS's answer says about whose fault a failed send is. A body SQS
// refuses for its contents is the sender's (422, it would be refused again); a refusal that the
// ingress's own checks make impossible to blame on the body (InvalidParameterValue: SQS says it
// for its queue's setup too, a FIFO queue without content-based deduplication refusing every
// message) is intake's side failing (503 with Retry-After, so that MinIO keeps the event). SQS's
// own message text stays out of the answer.
func TestQueueRefusalStatus(t *testing.T) {
	t.Parallel()
	contract := testkit.NewContract(t, api.OpenAPI())
	body := []byte(`{"Records":[{"eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"b"},"object":{"key":"k"}}}]}`)
	secretText := "arn:aws:sqs:eu-west-1:123456789012:intake-events.fifo"
	for code, want := range map[string]int{
		"InvalidParameterValue":                         http.StatusServiceUnavailable,
		"InvalidMessageContents":                        http.StatusUnprocessableEntity,
		"MessageTooLong":                                http.StatusUnprocessableEntity,
		"AWS.SimpleQueueService.InvalidMessageContents": http.StatusUnprocessableEntity,
		"ThrottlingException":                           http.StatusServiceUnavailable,
	} {
		h, err := ingress.New(ingress.Config{Token: token, QueueURL: "http://127.0.0.1:1/000000000000/q",
			Client: failing{&smithy.GenericAPIError{Code: code, Message: "refused by " + secretText}}})
		require.NoError(t, err)
		req := httptest.NewRequest(http.MethodPost, ingress.Path, bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "application/json")
		w := httptest.NewRecorder()
		contract.Handler(t, h).ServeHTTP(w, req)
		require.Equal(t, want, w.Code, "%s: %s", code, w.Body.String())
		require.NotContains(t, w.Body.String(), secretText, code)
		if want == http.StatusServiceUnavailable {
			require.NotEmpty(t, w.Header().Get("Retry-After"), code)
		}
	}
}
