package webhook

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	"github.com/hibiken/asynq"

	"github.com/intakehq/intake/worker/tasks"
)

// TypeDeliver is the task that posts one notification to one endpoint; payload {outbox_id,
// endpoint}. The relay (internal/outbox) enqueues it; only intake runs it.
const TypeDeliver = "webhook:deliver"

// Queue holds the delivery tasks. A server of its own runs it (Concurrency, RetryDelay), so that a
// slow receiver never holds the workers of multipart aborts and inspections.
const Queue = "intake-webhooks"

// TaskCheckInterval is how often the webhook server looks at an empty queue (asynq's default, 1 s,
// would add up to a second to a notification that arrives while the server is idle).
const TaskCheckInterval = 100 * time.Millisecond

// Retry schedule: the n-th retry (n from 0) waits min(firstDelay·2^n, maxDelay), plus up to 25%
// jitter. With MaxRetry retries the schedule lasts at least MinRetryWindow before asynq archives
// the task (`intake jobs list --queue intake-webhooks` shows it; `intake jobs run` re-runs it).
const (
	firstDelay = 10 * time.Second
	maxDelay   = 2 * time.Hour
	// MaxRetry is how often a failed delivery is retried (22 attempts in all).
	MaxRetry = 21
	// MinRetryWindow is the least time between the first attempt and the archiving of a delivery
	// that never succeeds (the sum of the delays without jitter).
	MinRetryWindow = 24 * time.Hour
)

// RetryDelay is the delay before retry n (0 for the first retry), for asynq.Config.RetryDelayFunc.
func RetryDelay(n int, _ error, _ *asynq.Task) time.Duration {
	d := nominalDelay(n)
	return d + rand.N(d/4+1)
}

// nominalDelay is the delay of retry n without jitter.
func nominalDelay(n int) time.Duration {
	if n < 0 {
		n = 0
	}
	if n >= 16 { // 10s·2^16 is far past maxDelay; avoid overflowing the shift
		return maxDelay
	}
	return min(firstDelay<<n, maxDelay)
}

// deliverPayload is the payload of TypeDeliver: the outbox row, the endpoint, and the body to post
// (the notification as committed), as text: "<outbox id> <endpoint>\n<body>". Carrying the body
// saves every attempt a read of the outbox; `intake jobs list --json` shows it as it is.
type deliverPayload struct {
	OutboxID int64
	Endpoint string
	Body     []byte
}

// NewDeliverTask returns the delivery of body (the notification of outbox row id, as built by
// tasks.AppendUploadVerdict) to the named endpoint: queue [Queue], task ID
// "webhook:<id>:<endpoint>" (a relay that enqueues it again after a crash, while the first is
// queued, gets a conflict rather than a second task), MaxRetry [MaxRetry], and a timeout of
// attemptTimeout plus 10 s for recording the delivery.
func NewDeliverTask(id int64, endpoint string, body []byte, attemptTimeout time.Duration) (*asynq.Task, error) {
	if id <= 0 || endpoint == "" || strings.ContainsAny(endpoint, " \n") || len(body) == 0 {
		return nil, fmt.Errorf("%s: outbox id, endpoint and body required: %w", TypeDeliver, tasks.ErrInvalidPayload)
	}
	payload := strconv.AppendInt(make([]byte, 0, len(body)+len(endpoint)+24), id, 10)
	payload = append(append(append(payload, ' '), endpoint...), '\n')
	payload = append(payload, body...)
	return asynq.NewTask(TypeDeliver, payload,
		asynq.Queue(Queue), asynq.TaskID(DeliverTaskID(id, endpoint)), asynq.MaxRetry(MaxRetry),
		asynq.Timeout(attemptTimeout+10*time.Second)), nil
}

// DeliverTaskID is the task ID of the delivery of outbox row id to endpoint.
func DeliverTaskID(id int64, endpoint string) string {
	return "webhook:" + strconv.FormatInt(id, 10) + ":" + endpoint
}

// parseDeliver decodes a TypeDeliver payload.
func parseDeliver(payload []byte) (deliverPayload, error) {
	head, body, ok := bytes.Cut(payload, []byte{'\n'})
	idText, endpoint, ok2 := bytes.Cut(head, []byte{' '})
	id, err := strconv.ParseInt(string(idText), 10, 64)
	if !ok || !ok2 || err != nil || id <= 0 || len(endpoint) == 0 || len(body) == 0 {
		return deliverPayload{}, fmt.Errorf("%s payload: want \"<outbox id> <endpoint>\\n<body>\": %w", TypeDeliver, tasks.ErrInvalidPayload)
	}
	return deliverPayload{OutboxID: id, Endpoint: string(endpoint), Body: body}, nil
}
