package ingress

import (
	"cmp"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/smithy-go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/intakehq/intake/internal/problem"
	"github.com/intakehq/intake/internal/telemetry"
	"github.com/intakehq/intake/pipeline"
)

// Path is where the handler is mounted.
const Path = "/v1/events/s3"

// DefaultMaxBody is the largest body accepted.
const DefaultMaxBody = 1 << 20

// Sender is the SQS call the ingress makes; *sqs.Client satisfies it.
type Sender interface {
	SendMessage(ctx context.Context, in *sqs.SendMessageInput, optFns ...func(*sqs.Options)) (*sqs.SendMessageOutput, error)
}

var _ Sender = (*sqs.Client)(nil)

// Config configures the Handler.
type Config struct {
	// Token is the bearer token senders must present (required).
	Token string
	// QueueURL is the SQS queue events are forwarded to (required).
	QueueURL string
	// Client sends to SQS (required). When it also has GetQueueAttributes (*sqs.Client does), the
	// ingress reads the queue's MaximumMessageSize to tell a body the queue refuses as too long
	// from a refusal of the queue's own setup (see tooLong).
	Client Sender
	// MaxBody bounds the request body (default DefaultMaxBody).
	MaxBody int64
	// SendTimeout bounds the SendMessage call (default 10 s).
	SendTimeout time.Duration
	// Log receives the handler's logs (default: discard).
	Log *slog.Logger
	// Registerer receives the metrics (nil: not registered).
	Registerer prometheus.Registerer
}

// Handler is the ingress http.Handler.
type Handler struct {
	cfg       Config
	tokenHash [sha256.Size]byte
	log       *slog.Logger
	requests  *prometheus.CounterVec
}

// Outcomes counted in intake_ingress_requests_total.
const (
	outcomeForwarded    = "forwarded"
	outcomeUnauthorized = "unauthorized"
	outcomeTooLarge     = "too_large"
	outcomeInvalid      = "invalid"
	outcomeRejected     = "rejected" // SQS refused this body (it will never be accepted)
	outcomeUnavailable  = "queue_unavailable"
)

// New validates cfg and registers the metrics.
func New(cfg Config) (*Handler, error) {
	var errs []error
	if cfg.Token == "" {
		errs = append(errs, errors.New("ingress: Token is required"))
	}
	if cfg.QueueURL == "" {
		errs = append(errs, errors.New("ingress: QueueURL is required"))
	}
	if cfg.Client == nil {
		errs = append(errs, errors.New("ingress: Client is required"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	cfg.MaxBody = cmp.Or(cfg.MaxBody, DefaultMaxBody)
	cfg.SendTimeout = cmp.Or(cfg.SendTimeout, 10*time.Second)
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	h := &Handler{
		cfg:       cfg,
		tokenHash: sha256.Sum256([]byte(cfg.Token)),
		log:       cfg.Log,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: telemetry.Namespace, Name: "ingress_requests_total",
			Help: "Requests to POST /v1/events/s3, by outcome.",
		}, []string{"outcome"}),
	}
	for _, o := range []string{outcomeForwarded, outcomeUnauthorized, outcomeTooLarge, outcomeInvalid, outcomeRejected, outcomeUnavailable} {
		h.requests.WithLabelValues(o)
	}
	if cfg.Registerer != nil {
		if err := cfg.Registerer.Register(h.requests); err != nil {
			return nil, fmt.Errorf("ingress: register metrics: %w", err)
		}
	}
	return h, nil
}

// Mount registers the handler on mux at POST Path.
func (h *Handler) Mount(mux *http.ServeMux) {
	mux.Handle("POST "+Path, h)
}

// ServeHTTP authenticates, validates and forwards one event body.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if !h.authorized(r) {
		h.requests.WithLabelValues(outcomeUnauthorized).Inc()
		h.log.WarnContext(ctx, "ingress: unauthorized request", "remote", r.RemoteAddr)
		problem.Write(w, problem.Unauthorized.With("a valid bearer token is required"))
		return
	}
	if r.ContentLength > h.cfg.MaxBody {
		h.requests.WithLabelValues(outcomeTooLarge).Inc()
		problem.Write(w, problem.RequestTooLarge.With(fmt.Sprintf("the body is %d bytes; at most %d are accepted", r.ContentLength, h.cfg.MaxBody)))
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, h.cfg.MaxBody))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			h.requests.WithLabelValues(outcomeTooLarge).Inc()
			problem.Write(w, problem.RequestTooLarge.With(fmt.Sprintf("the body exceeds %d bytes", h.cfg.MaxBody)))
			return
		}
		h.requests.WithLabelValues(outcomeInvalid).Inc()
		problem.Write(w, probInvalidEvent.With("could not read the body: "+err.Error()))
		return
	}
	if !utf8.Valid(body) {
		h.requests.WithLabelValues(outcomeInvalid).Inc()
		problem.Write(w, probInvalidEvent.With("the body is not valid UTF-8"))
		return
	}
	if r, ok := sqsText(body); !ok {
		h.requests.WithLabelValues(outcomeInvalid).Inc()
		problem.Write(w, probInvalidEvent.With(fmt.Sprintf("the body holds %U, a character SQS does not carry", r)))
		return
	}
	events, err := pipeline.Decode(body)
	if err != nil {
		h.requests.WithLabelValues(outcomeInvalid).Inc()
		h.log.WarnContext(ctx, "ingress: refused an undecodable event body", "err", err, "bytes", len(body))
		problem.Write(w, probInvalidEvent.With(err.Error()))
		return
	}

	sctx, cancel := context.WithTimeout(ctx, h.cfg.SendTimeout)
	defer cancel()
	out, err := h.cfg.Client.SendMessage(sctx, &sqs.SendMessageInput{
		QueueUrl:    aws.String(h.cfg.QueueURL),
		MessageBody: aws.String(string(body)),
	})
	if err != nil {
		if code, ok := rejectedBody(err); ok {
			h.requests.WithLabelValues(outcomeRejected).Inc()
			h.log.ErrorContext(ctx, "ingress: the queue refused the event body", "err", err, "bytes", len(body))
			problem.Write(w, probRejected.With(fmt.Sprintf("the queue refused the message body (%s)", code)))
			return
		}
		if limit, ok := h.tooLong(ctx, err, len(body)); ok {
			h.requests.WithLabelValues(outcomeRejected).Inc()
			detail := fmt.Sprintf("the queue refused the message body as too long: %d bytes", len(body))
			if limit > 0 {
				detail += fmt.Sprintf(", over its maximum message size of %d bytes", limit)
			}
			h.log.ErrorContext(ctx, "ingress: the queue refused the event body as too long (its MaximumMessageSize is below the ingress's MaxBody)",
				"err", err, "bytes", len(body), "queue_max_bytes", limit, "max_body", h.cfg.MaxBody)
			problem.Write(w, probRejected.With(detail))
			return
		}
		h.requests.WithLabelValues(outcomeUnavailable).Inc()
		h.log.ErrorContext(ctx, "ingress: could not forward the event to the queue", "err", err)
		w.Header().Set("Retry-After", "5")
		problem.Write(w, probUnavailable.With("the event queue is unavailable; retry later"))
		return
	}
	h.requests.WithLabelValues(outcomeForwarded).Inc()
	id := aws.ToString(out.MessageId)
	first := events[0]
	h.log.DebugContext(ctx, "ingress: event forwarded", "message_id", id, "events", len(events),
		"event", first.Name, "bucket", first.Bucket, "key", first.Key)
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(struct {
		MessageID string `json:"message_id"`
	}{id})
}

// authorized compares the bearer token in constant time (hashing first, so that the comparison
// does not reveal the token's length either).
func (h *Handler) authorized(r *http.Request) bool {
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return false
	}
	got := sha256.Sum256([]byte(strings.TrimSpace(token)))
	return subtle.ConstantTimeCompare(got[:], h.tokenHash[:]) == 1
}

// sqsText reports whether the valid UTF-8 body holds only characters an SQS message body may carry
// (#x9, #xA, #xD, #x20 to #xD7FF, #xE000 to #xFFFD, #x10000 to #x10FFFF), and else the first
// character it may not: SQS would refuse the whole message.
func sqsText(body []byte) (rune, bool) {
	for _, r := range string(body) {
		switch {
		case r == 0x9 || r == 0xA || r == 0xD:
		case r >= 0x20 && r <= 0xD7FF, r >= 0xE000 && r <= 0xFFFD, r >= 0x10000 && r <= 0x10FFFF:
		default:
			return r, false
		}
	}
	return 0, true
}

// rejectedBody reports whether SQS refused the message body itself (it would refuse it again), as
// opposed to failing (unreachable, throttled, missing queue), and the error code that says so.
// InvalidParameterValue is not one by itself: the body was already checked for the characters SQS
// refuses, and SQS answers that code for its queue's own setup too (a FIFO queue without
// content-based deduplication refuses every message), which is intake's side failing: 503, so
// that the sender keeps the event and retries. It is also SQS's answer to a body longer than the
// queue's MaximumMessageSize, which may be below MaxBody: tooLong tells that case apart.
func rejectedBody(err error) (string, bool) {
	var apiErr smithy.APIError
	if !errors.As(err, &apiErr) {
		return "", false
	}
	switch code := apiErr.ErrorCode(); code {
	case "InvalidMessageContents", "MessageTooLong", "AWS.SimpleQueueService.InvalidMessageContents":
		return code, true
	}
	return "", false
}

// legacyMaxMessageSize is SQS's largest message until 2025 (256 KiB), still the MaximumMessageSize
// of queues created before and the default of some emulators: a body above it that the queue
// refuses with InvalidParameterValue, for no reason the ingress can read, is taken as too long.
const legacyMaxMessageSize = 256 << 10

// attributeGetter is the optional call tooLong makes to read the queue's MaximumMessageSize;
// *sqs.Client has it.
type attributeGetter interface {
	GetQueueAttributes(ctx context.Context, in *sqs.GetQueueAttributesInput, optFns ...func(*sqs.Options)) (*sqs.GetQueueAttributesOutput, error)
}

// shorterThan finds the limit in SQS's "Message must be shorter than 262144 bytes."
var shorterThan = regexp.MustCompile(`(?i)shorter than (\d+) bytes`)

// tooLong reports whether err, SQS's refusal of a body of n bytes, says that the body is longer
// than the queue takes (its MaximumMessageSize, which may be below MaxBody: 256 KiB on queues
// created before 2025 and on some emulators), and the queue's limit when known (0 otherwise). Such
// a body would be refused on every retry, so it is the sender's to drop (422), not an outage (503).
// SQS says so with InvalidParameterValue, the code it also gives a queue's own misconfiguration,
// so the ingress decides, in this order: SQS's message naming the size ("Message must be shorter
// than 262144 bytes"); else the queue's MaximumMessageSize, read then (when the Client can, and
// the call succeeds) and compared with n; else n above legacyMaxMessageSize.
func (h *Handler) tooLong(ctx context.Context, err error, n int) (limit int, ok bool) {
	var apiErr smithy.APIError
	if !errors.As(err, &apiErr) {
		return 0, false
	}
	switch apiErr.ErrorCode() {
	case "InvalidParameterValue", "InvalidParameterValueException":
	default:
		return 0, false
	}
	msg := apiErr.ErrorMessage()
	if m := shorterThan.FindStringSubmatch(msg); m != nil {
		limit, _ = strconv.Atoi(m[1])
		return limit, true
	}
	if lower := strings.ToLower(msg); strings.Contains(lower, "too long") || strings.Contains(lower, "maximummessagesize") {
		return 0, true
	}
	if size, known := h.maxMessageSize(ctx); known {
		return size, n > size
	}
	return 0, n > legacyMaxMessageSize
}

// maxMessageSize reads the queue's MaximumMessageSize, when the Client can.
func (h *Handler) maxMessageSize(ctx context.Context) (int, bool) {
	getter, ok := h.cfg.Client.(attributeGetter)
	if !ok {
		return 0, false
	}
	actx, cancel := context.WithTimeout(ctx, h.cfg.SendTimeout)
	defer cancel()
	out, err := getter.GetQueueAttributes(actx, &sqs.GetQueueAttributesInput{
		QueueUrl:       aws.String(h.cfg.QueueURL),
		AttributeNames: []types.QueueAttributeName{types.QueueAttributeNameMaximumMessageSize},
	})
	if err != nil {
		h.log.WarnContext(ctx, "ingress: could not read the queue's MaximumMessageSize", "err", err)
		return 0, false
	}
	size, err := strconv.Atoi(out.Attributes[string(types.QueueAttributeNameMaximumMessageSize)])
	if err != nil || size <= 0 {
		return 0, false
	}
	return size, true
}

// ProblemBase prefixes the problem type URIs (problem.Base, the same base as the API's).
const ProblemBase = problem.Base

// The problems only the ingress returns; it shares unauthorized and request-too-large with the API
// (package problem).
var (
	probInvalidEvent = problem.Kind{Slug: "invalid-event", Title: "Not an S3 event notification", Status: http.StatusBadRequest}
	probRejected     = problem.Kind{Slug: "event-rejected", Title: "The queue refused the event", Status: http.StatusUnprocessableEntity}
	probUnavailable  = problem.Kind{Slug: "queue-unavailable", Title: "Event queue unavailable", Status: http.StatusServiceUnavailable}
)

// ProblemKinds lists every problem kind the ingress answers (the OpenAPI test checks that
// internal/api/openapi.json names them all).
var ProblemKinds = []problem.Kind{problem.Unauthorized, problem.RequestTooLarge, probInvalidEvent, probRejected, probUnavailable}
