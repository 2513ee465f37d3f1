package replay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"golang.org/x/time/rate"

	"github.com/intakehq/intake/internal/queue"
)

// SQSAPI is the part of *sqs.Client that replay uses.
type SQSAPI interface {
	ReceiveMessage(ctx context.Context, in *sqs.ReceiveMessageInput, opts ...func(*sqs.Options)) (*sqs.ReceiveMessageOutput, error)
	SendMessageBatch(ctx context.Context, in *sqs.SendMessageBatchInput, opts ...func(*sqs.Options)) (*sqs.SendMessageBatchOutput, error)
	DeleteMessageBatch(ctx context.Context, in *sqs.DeleteMessageBatchInput, opts ...func(*sqs.Options)) (*sqs.DeleteMessageBatchOutput, error)
	ChangeMessageVisibilityBatch(ctx context.Context, in *sqs.ChangeMessageVisibilityBatchInput, opts ...func(*sqs.Options)) (*sqs.ChangeMessageVisibilityBatchOutput, error)
	GetQueueAttributes(ctx context.Context, in *sqs.GetQueueAttributesInput, opts ...func(*sqs.Options)) (*sqs.GetQueueAttributesOutput, error)
	StartMessageMoveTask(ctx context.Context, in *sqs.StartMessageMoveTaskInput, opts ...func(*sqs.Options)) (*sqs.StartMessageMoveTaskOutput, error)
	ListMessageMoveTasks(ctx context.Context, in *sqs.ListMessageMoveTasksInput, opts ...func(*sqs.Options)) (*sqs.ListMessageMoveTasksOutput, error)
	CancelMessageMoveTask(ctx context.Context, in *sqs.CancelMessageMoveTaskInput, opts ...func(*sqs.Options)) (*sqs.CancelMessageMoveTaskOutput, error)
}

var _ SQSAPI = (*sqs.Client)(nil)

// Counter receives progress: the number of messages moved or sent. *progress.Bar satisfies it.
type Counter interface{ Add(n int) }

type nopCounter struct{}

func (nopCounter) Add(int) {}

// MaxBatch is the most entries one SQS batch call takes.
const MaxBatch = 10

// maxBatchBytes bounds the payload of one SendMessageBatch: bodies and message attributes (SQS:
// 256 KiB per batch on older limits; staying under it works everywhere).
const maxBatchBytes = 256 * 1024

// batches accumulates send entries into batches of at most MaxBatch entries and maxBatchBytes of
// payload. An entry larger than maxBatchBytes by itself goes in a batch of its own (SQS judges it).
// replay file, replay archive and replay dlq all cut their batches with it.
type batches[T any] struct {
	cur  []T
	size int
}

// add appends item, whose payload is size bytes, and returns the batch it closed, if any.
func (b *batches[T]) add(item T, size int) (full []T) {
	if len(b.cur) == MaxBatch || (len(b.cur) > 0 && b.size+size > maxBatchBytes) {
		full, b.cur, b.size = b.cur, nil, 0
	}
	b.cur = append(b.cur, item)
	b.size += size
	return full
}

// rest returns the open batch (nil when empty) and starts a new one.
func (b *batches[T]) rest() []T {
	full := b.cur
	b.cur, b.size = nil, 0
	return full
}

// splitBatches cuts items into batches (see batches); size is an item's payload in bytes.
func splitBatches[T any](items []T, size func(T) int) [][]T {
	var out [][]T
	var b batches[T]
	for _, it := range items {
		if full := b.add(it, size(it)); full != nil {
			out = append(out, full)
		}
	}
	if rest := b.rest(); rest != nil {
		out = append(out, rest)
	}
	return out
}

// messageBytes is the payload SQS counts for a message: its body and its message attributes
// (names, data types and values).
func messageBytes(msg types.Message) int {
	n := len(aws.ToString(msg.Body))
	for name, v := range msg.MessageAttributes {
		n += len(name) + len(aws.ToString(v.DataType)) + len(aws.ToString(v.StringValue)) + len(v.BinaryValue)
	}
	return n
}

// ParseRate reads a rate in messages per second: "" or "0" (unlimited), "200", "200/s", "6000/m",
// "0.5/s".
func ParseRate(s string) (float64, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, nil
	}
	num, unit, _ := strings.Cut(s, "/")
	v, err := strconv.ParseFloat(strings.TrimSpace(num), 64)
	if err != nil || v < 0 || math.IsInf(v, 0) || math.IsNaN(v) {
		return 0, fmt.Errorf("rate %q: want a non-negative number of messages per second, such as 200 or 200/s", s)
	}
	switch strings.TrimSpace(unit) {
	case "", "s", "sec":
		return v, nil
	case "m", "min":
		return v / 60, nil
	case "h":
		return v / 3600, nil
	default:
		return 0, fmt.Errorf("rate %q: unit must be /s, /m or /h", s)
	}
}

// newLimiter returns a limiter for perSecond messages (nil: unlimited) whose burst fits one batch.
func newLimiter(perSecond float64) *rate.Limiter {
	if perSecond <= 0 {
		return nil
	}
	return rate.NewLimiter(rate.Limit(perSecond), MaxBatch)
}

// wait takes n tokens from l (nil: no limit).
func wait(ctx context.Context, l *rate.Limiter, n int) error {
	if l == nil {
		return ctx.Err()
	}
	if err := l.WaitN(ctx, n); err != nil {
		return fmt.Errorf("rate limit: %w", err)
	}
	return nil
}

// backoff sleeps before retry attempt (1, 2, …): 200ms doubling, capped at 5s.
func backoff(ctx context.Context, attempt int) error {
	d := min(200*time.Millisecond<<min(attempt-1, 5), 5*time.Second)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// failure is an entry that a batch call did not accept.
type failure struct {
	ID, Code, Message string
	SenderFault       bool
}

func (f failure) String() string {
	if f.Message == "" {
		return f.Code
	}
	return f.Code + ": " + f.Message
}

// sendBatch sends entries to url, retrying entries that failed through the server's fault up to
// attempts times (and whole calls that failed). It returns the ids the queue accepted, the message
// ids the queue gave them, and the failures of the others. err is set when the last whole call
// failed: then ok holds what earlier attempts sent, failed what they failed for good, and every
// other entry is unsent.
func sendBatch(ctx context.Context, c SQSAPI, url string, entries []types.SendMessageBatchRequestEntry, attempts int, log *slog.Logger) (ok, msgIDs []string, failed []failure, err error) {
	send := func(ctx context.Context, pending []types.SendMessageBatchRequestEntry) ([]string, []types.BatchResultErrorEntry, error) {
		out, err := c.SendMessageBatch(ctx, &sqs.SendMessageBatchInput{QueueUrl: aws.String(url), Entries: pending})
		if err != nil {
			return nil, nil, fmt.Errorf("send batch of %d to %s: %w", len(pending), url, err)
		}
		for _, s := range out.Successful {
			msgIDs = append(msgIDs, aws.ToString(s.MessageId))
		}
		return successIDs(out.Successful, func(s types.SendMessageBatchResultEntry) *string { return s.Id }), out.Failed, nil
	}
	id := func(e types.SendMessageBatchRequestEntry) string { return aws.ToString(e.Id) }
	ok, failed, err = retryBatch(ctx, entries, id, send, attempts, log.With("queue", url), "send batch")
	return ok, msgIDs, failed, err
}

// deleteBatch deletes entries from url with the same retry rules as sendBatch.
func deleteBatch(ctx context.Context, c SQSAPI, url string, entries []types.DeleteMessageBatchRequestEntry, attempts int, log *slog.Logger) (ok []string, failed []failure, err error) {
	del := func(ctx context.Context, pending []types.DeleteMessageBatchRequestEntry) ([]string, []types.BatchResultErrorEntry, error) {
		out, err := c.DeleteMessageBatch(ctx, &sqs.DeleteMessageBatchInput{QueueUrl: aws.String(url), Entries: pending})
		if err != nil {
			return nil, nil, fmt.Errorf("delete batch of %d from %s: %w", len(pending), url, err)
		}
		return successIDs(out.Successful, func(s types.DeleteMessageBatchResultEntry) *string { return s.Id }), out.Failed, nil
	}
	id := func(e types.DeleteMessageBatchRequestEntry) string { return aws.ToString(e.Id) }
	return retryBatch(ctx, entries, id, del, attempts, log.With("queue", url), "delete batch")
}

// successIDs returns the ids of a batch response's successful entries.
func successIDs[R any](entries []R, id func(R) *string) []string {
	ids := make([]string, len(entries))
	for i, e := range entries {
		ids[i] = aws.ToString(id(e))
	}
	return ids
}

// batchCall makes one SQS batch call with entries. It returns the ids of the entries the queue
// accepted and the entries it failed; err (wrapped with what was attempted) when the whole call
// failed.
type batchCall[E any] func(ctx context.Context, entries []E) (accepted []string, failed []types.BatchResultErrorEntry, err error)

// retryBatch makes call with entries, retrying whole calls that failed and the entries the server
// failed by its own fault, up to attempts calls in all, with backoff between them. An entry the
// response lists neither as accepted nor as failed counts as a server-side failure: it is never
// assumed done. Entries failed by the sender's fault are not retried. It returns the ids the queue
// accepted and the failures of the other entries (those still pending when ctx ends during a
// backoff are failed as "Cancelled"). err is the last whole call's error when no attempt is left
// or ctx ended: then ok holds what earlier attempts did, failed the entries earlier attempts
// failed for good (the sender's fault), and every other entry is not done. idOf
// returns an entry's batch id; what names the call in the log lines ("send batch").
func retryBatch[E any](ctx context.Context, entries []E, idOf func(E) string, call batchCall[E], attempts int, log *slog.Logger, what string) (ok []string, failed []failure, err error) {
	pending := entries
	for attempt := 1; ; attempt++ {
		accepted, refused, callErr := call(ctx, pending)
		if callErr != nil {
			if attempt >= attempts || ctx.Err() != nil {
				return ok, failed, callErr
			}
			log.Warn(what+" failed; retrying", "entries", len(pending), "attempt", attempt, "err", callErr)
			if err := backoff(ctx, attempt); err != nil {
				return ok, failed, callErr
			}
			continue
		}
		done := make(map[string]bool, len(accepted))
		for _, s := range accepted {
			done[s] = true
		}
		ok = append(ok, accepted...)
		reasons := make(map[string]failure, len(refused))
		for _, f := range refused {
			id := aws.ToString(f.Id)
			reasons[id] = failure{ID: id, Code: aws.ToString(f.Code), Message: aws.ToString(f.Message), SenderFault: f.SenderFault}
		}
		var retry []E
		for _, e := range pending {
			id := idOf(e)
			if done[id] {
				continue
			}
			// An entry in neither list is treated as a server-side failure: never assume it was done.
			f, listed := reasons[id]
			if !listed {
				f = failure{ID: id, Code: "NotInResponse", Message: "entry missing from the batch response"}
			}
			if f.SenderFault || attempt >= attempts {
				failed = append(failed, f)
				continue
			}
			retry = append(retry, e)
		}
		if len(retry) == 0 {
			return ok, failed, nil
		}
		log.Warn("some batch entries failed; retrying them", "call", what, "entries", len(retry), "attempt", attempt)
		if err := backoff(ctx, attempt); err != nil {
			for _, e := range retry {
				failed = append(failed, failure{ID: idOf(e), Code: "Cancelled", Message: err.Error()})
			}
			return ok, failed, nil
		}
		pending = retry
	}
}

// changeVisibility sets the visibility of received messages (0: visible again now), in batches of
// ten. It returns how many the queue accepted, and how many it refused because their receipt
// handle was no longer current (see expiredHandle: their visibility had ended already, so the
// caller no longer holds them; not an error). err reports the calls that failed and, entry by
// entry, the messages the queue refused for another reason (a refused message stays hidden until
// its visibility timeout ends, so the caller must say so rather than count it as given back).
func changeVisibility(ctx context.Context, c SQSAPI, url string, handles []string, seconds int32) (done, expired int, err error) {
	refused := 0
	var errs []error
	var reasons []string
	for start := 0; start < len(handles); start += MaxBatch {
		chunk := handles[start:min(start+MaxBatch, len(handles))]
		entries := make([]types.ChangeMessageVisibilityBatchRequestEntry, len(chunk))
		for i, h := range chunk {
			entries[i] = types.ChangeMessageVisibilityBatchRequestEntry{
				Id: aws.String(strconv.Itoa(i)), ReceiptHandle: aws.String(h), VisibilityTimeout: seconds,
			}
		}
		out, err := c.ChangeMessageVisibilityBatch(ctx, &sqs.ChangeMessageVisibilityBatchInput{QueueUrl: aws.String(url), Entries: entries})
		if err != nil {
			errs = append(errs, fmt.Errorf("change visibility of %d messages in %s: %w", len(chunk), url, err))
			continue
		}
		done += len(out.Successful)
		gone, failed := 0, 0
		for _, f := range out.Failed {
			code, msg := aws.ToString(f.Code), aws.ToString(f.Message)
			if expiredHandle(code, msg) {
				gone++
				continue
			}
			failed++
			if len(reasons) < 3 { // a few are enough to say why; the count says how many
				reasons = append(reasons, failure{Code: code, Message: msg}.String())
			}
		}
		expired += gone
		// An entry listed neither as done nor as failed was not done either.
		refused += max(failed, len(chunk)-len(out.Successful)-gone)
	}
	if refused > 0 {
		if len(reasons) == 0 {
			reasons = append(reasons, "missing from the batch response")
		}
		errs = append(errs, fmt.Errorf("change visibility in %s: %d of %d messages refused (%s)", url, refused, len(handles), strings.Join(reasons, "; ")))
	}
	return done, expired, errors.Join(errs...)
}

// expiredHandle reports whether SQS refused a ChangeMessageVisibility because the receipt handle is
// no longer current: the message's visibility ended before the call (it is visible again, or was
// received again, by this run or another reader, under a new handle). SQS then answers
// MessageNotInflight (FIFO queues among others), ReceiptHandleIsInvalid (kumo too), or
// InvalidParameterValue saying the receipt handle has expired. The caller no longer holds such a
// message: there is nothing to give back.
func expiredHandle(code, message string) bool {
	switch strings.TrimPrefix(code, "AWS.SimpleQueueService.") {
	case "MessageNotInflight", "ReceiptHandleIsInvalid":
		return true
	case "InvalidParameterValue":
		return strings.Contains(strings.ToLower(message), "receipt handle has expired")
	}
	return false
}

// Counts returns the approximate counts of the queue at url.
func Counts(ctx context.Context, c SQSAPI, url string) (queue.Counts, error) {
	info, err := queue.ReadInfo(ctx, c, url, false)
	return info.Counts, err
}

// queueARN returns the ARN of the queue at url.
func queueARN(ctx context.Context, c SQSAPI, url string) (string, error) {
	out, err := c.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{
		QueueUrl:       aws.String(url),
		AttributeNames: []types.QueueAttributeName{types.QueueAttributeNameQueueArn},
	})
	if err != nil {
		return "", fmt.Errorf("get ARN of %s: %w", url, err)
	}
	arn := out.Attributes[string(types.QueueAttributeNameQueueArn)]
	if arn == "" {
		return "", fmt.Errorf("get ARN of %s: no QueueArn attribute", url)
	}
	return arn, nil
}

// isFIFO reports whether url names a FIFO queue (its name ends in ".fifo").
func isFIFO(url string) bool { return strings.HasSuffix(url, ".fifo") }
