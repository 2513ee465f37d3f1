package webhook

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hibiken/asynq"

	"github.com/intakehq/intake/worker/tasks"
)

// TypeDeliver is the task that posts notifications to one endpoint (one, a batch or a sequence:
// see [Item]). The relay (internal/outbox) enqueues it; only intake runs it.
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
	// MaxRetry is how often a failed delivery task is retried (22 attempts of the task; a
	// notification first tried in a batch, or after the earlier ones of its upload in a sequence,
	// gets one more; one waiting in a sequence behind an earlier one that is given up is given up
	// with it).
	MaxRetry = 21
	// MinRetryWindow is the least time between the first attempt and the archiving of a delivery
	// that never succeeds (the sum of the delays without jitter).
	MinRetryWindow = 24 * time.Hour
)

// RetryDelay is the delay before retry n (0 for the first retry), for asynq.Config.RetryDelayFunc.
// A run deferred because its endpoint had its share of the workers ([DeferredError]) is not a retry:
// it runs again after its RetryIn. A failure whose receiver answered with a Retry-After
// ([RetryAfterError]: a 429 or 503) waits at least that long, capped at the schedule's longest
// delay, plus the jitter.
func RetryDelay(n int, err error, _ *asynq.Task) time.Duration {
	if deferred := (*DeferredError)(nil); errors.As(err, &deferred) {
		return deferred.RetryIn
	}
	d := max(nominalDelay(n), min(longestRetryAfter(err), maxDelay))
	return d + rand.N(d/4+1)
}

// longestRetryAfter is the longest After of the RetryAfterErrors err holds (a batch's error may
// join several), 0 without one.
func longestRetryAfter(err error) time.Duration {
	switch e := err.(type) {
	case nil:
		return 0
	case *RetryAfterError:
		return e.After
	case interface{ Unwrap() []error }:
		var longest time.Duration
		for _, err := range e.Unwrap() {
			longest = max(longest, longestRetryAfter(err))
		}
		return longest
	case interface{ Unwrap() error }:
		return longestRetryAfter(e.Unwrap())
	}
	return 0
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

// Item is one notification to deliver to one endpoint.
type Item struct {
	// OutboxID is the notification's outbox row.
	OutboxID int64
	// Endpoint names the endpoint.
	Endpoint string
	// Body is what to post: the notification as committed (tasks.AppendUploadVerdict).
	Body []byte
	// Attempted counts the requests that posted it before this task (made by the batch or sequence
	// it was handed on from).
	Attempted int
}

// A [TypeDeliver] task carries one item or several, as text, one item after the other:
// "<outbox id> <endpoint> <attempted>\n<body>\n" (bodies are JSON of one line). Carrying the body
// saves every attempt a read of the outbox; `intake jobs list --json` shows it as it is.
//
// Several items are a batch (the relay's: the first attempt of each, every attempted 0) or a
// sequence: the notifications of one upload left, in order, when the first of them failed, which
// is the one attempted before ([isSequence]). The format is the same (a worker of an earlier
// release runs a sequence as a batch).

// BatchSize caps the items of one task; BatchParallel is how many uploads' items a batch posts at
// once (the items of one upload are posted one after the other).
const (
	BatchSize     = 16
	BatchParallel = 4
)

// isSequence reports whether the items of a task of several are a sequence (see [Item]): its first
// item was attempted before. A batch's never is.
func isSequence(items []Item) bool { return len(items) > 1 && items[0].Attempted > 0 }

// uploadOf returns the upload id of a notification's body (tasks.AppendUploadVerdict's
// {"id":…,"data":{"upload_id":…}}), "" when it has none.
func uploadOf(body []byte) string {
	var v struct {
		Data struct {
			UploadID string `json:"upload_id"`
		} `json:"data"`
	}
	if json.Unmarshal(body, &v) != nil {
		return ""
	}
	return v.Data.UploadID
}

// byUpload groups items by upload, each group in the items' order, the groups in the order of
// their first item. An item without an upload id is a group of its own.
func byUpload(items []Item) [][]Item {
	groups := make([][]Item, 0, len(items))
	index := make(map[string]int, len(items))
	for _, it := range items {
		u := uploadOf(it.Body)
		if i, ok := index[u]; ok && u != "" {
			groups[i] = append(groups[i], it)
			continue
		}
		index[u] = len(groups)
		groups = append(groups, []Item{it})
	}
	return groups
}

// rounds bounds how many attempts one after the other a run of the task of items makes: a
// sequence's are all in order; a batch posts the items of an upload in order, [BatchParallel]
// uploads at once, in the order of their first item. An upload of k items then starts within
// ⌊(n−k)/BatchParallel⌋ attempt times (until then every worker is busy with the n−k others), so no
// run lasts longer than ⌊(n−m)/BatchParallel⌋ + m of them, for n items and m items of the largest
// upload (⌈n/BatchParallel⌉ when each has one).
func rounds(items []Item) int {
	if len(items) == 1 || isSequence(items) {
		return len(items)
	}
	most := 0
	for _, g := range byUpload(items) {
		most = max(most, len(g))
	}
	return (len(items)-most)/BatchParallel + most
}

// NewDeliverTask returns the task delivering items, all to one endpoint: queue [Queue], MaxRetry
// [MaxRetry]. A single item's task ID is [DeliverTaskID] (a relay that enqueues it again after a
// crash, while the first is queued, gets a conflict rather than a second task); a batch's,
// "webhook:<first>-<last>/<size>.<hash>:<endpoint>", names its first and last row, its size and
// a hash of its rows' ids, so that only a batch of the same rows conflicts with it: relays that
// claim different rows between the same two (another relay holding some) enqueue tasks of their
// own. A sequence's (items whose first was attempted before: see [Item]) is
// "webhook:seq:<first>-<last>/<size>.<hash>:<endpoint>". The timeout covers the attempts
// (attemptTimeout each: those of a sequence one after the other, those of a batch as its uploads
// allow, see [BatchParallel]) and 10 s for recording the deliveries. A batch is the first attempt
// of its items: when one fails, it and the later ones of its upload go on as a task of their own
// (a single item's or a sequence), retried on the schedule of [RetryDelay].
func NewDeliverTask(items []Item, attemptTimeout time.Duration) (*asynq.Task, error) {
	if len(items) == 0 || len(items) > BatchSize {
		return nil, fmt.Errorf("%s: 1 to %d items, not %d: %w", TypeDeliver, BatchSize, len(items), tasks.ErrInvalidPayload)
	}
	size := 0
	for _, it := range items {
		if it.OutboxID <= 0 || it.Endpoint == "" || it.Endpoint != items[0].Endpoint ||
			strings.ContainsAny(it.Endpoint, " \n") || len(it.Body) == 0 || bytes.IndexByte(it.Body, '\n') >= 0 {
			return nil, fmt.Errorf("%s: every item needs an outbox id, the batch's endpoint and a one-line body: %w", TypeDeliver, tasks.ErrInvalidPayload)
		}
		size += len(it.Body) + len(it.Endpoint) + 32
	}
	payload := make([]byte, 0, size)
	for _, it := range items {
		payload = strconv.AppendInt(payload, it.OutboxID, 10)
		payload = append(append(append(payload, ' '), it.Endpoint...), ' ')
		payload = strconv.AppendInt(payload, int64(it.Attempted), 10)
		payload = append(append(append(payload, '\n'), it.Body...), '\n')
	}
	return asynq.NewTask(TypeDeliver, payload,
		asynq.Queue(Queue), asynq.TaskID(taskID(items)), asynq.MaxRetry(MaxRetry),
		asynq.Timeout(time.Duration(rounds(items))*attemptTimeout+10*time.Second)), nil
}

// taskID is the task ID of the delivery of items (see [NewDeliverTask]). The hash (64 bits of the
// SHA-256 of the sorted ids) identifies the batch's rows: two batches sharing their first and last
// row and their size, but not every row, get different IDs, the same rows the same ID.
func taskID(items []Item) string {
	n := len(items)
	if n == 1 {
		return DeliverTaskID(items[0].OutboxID, items[0].Endpoint)
	}
	ids := make([]int64, n)
	for i, it := range items {
		ids[i] = it.OutboxID
	}
	slices.Sort(ids)
	buf := make([]byte, 0, 8*n)
	for _, id := range ids {
		buf = binary.BigEndian.AppendUint64(buf, uint64(id))
	}
	sum := sha256.Sum256(buf)
	kind := ""
	if isSequence(items) {
		// Not the ID of the batch of the same rows, which is running when it hands them on.
		kind = "seq:"
	}
	return fmt.Sprintf("webhook:%s%d-%d/%d.%x:%s", kind, items[0].OutboxID, items[n-1].OutboxID, n, sum[:8], items[0].Endpoint)
}

// DeliverTaskID is the task ID of the delivery of outbox row id alone to endpoint.
func DeliverTaskID(id int64, endpoint string) string {
	return "webhook:" + strconv.FormatInt(id, 10) + ":" + endpoint
}

// RedeliverTaskID is the task ID of redelivery gen (1, 2, ...) of outbox row id to endpoint
// (`intake outbox redeliver`): a redeliver that dies before committing and is run again
// enqueues the same task, not a second one.
func RedeliverTaskID(id int64, endpoint string, gen int) string {
	return DeliverTaskID(id, endpoint) + ":r" + strconv.Itoa(gen)
}

// parseDeliver decodes a TypeDeliver payload.
func parseDeliver(payload []byte) ([]Item, error) {
	bad := fmt.Errorf("%s payload: want lines \"<outbox id> <endpoint> <attempted>\" each followed by a body: %w", TypeDeliver, tasks.ErrInvalidPayload)
	var items []Item
	for rest := payload; len(rest) > 0; {
		head, after, ok := bytes.Cut(rest, []byte{'\n'})
		body, next, _ := bytes.Cut(after, []byte{'\n'})
		fields := strings.Fields(string(head))
		if !ok || len(fields) != 3 || len(body) == 0 || len(items) == BatchSize {
			return nil, bad
		}
		id, err1 := strconv.ParseInt(fields[0], 10, 64)
		attempted, err2 := strconv.Atoi(fields[2])
		if err1 != nil || err2 != nil || id <= 0 || attempted < 0 || (len(items) > 0 && fields[1] != items[0].Endpoint) {
			return nil, bad
		}
		items = append(items, Item{OutboxID: id, Endpoint: fields[1], Body: body, Attempted: attempted})
		rest = next
	}
	if len(items) == 0 {
		return nil, bad
	}
	return items, nil
}
