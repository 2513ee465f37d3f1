package replay

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"golang.org/x/time/rate"
)

// Sample is one message a dry run shows.
type Sample struct {
	// MessageID is the dead-letter queue's message id.
	MessageID string `json:"message_id"`
	// Body is the message body, cut to 300 bytes.
	Body string `json:"body"`
	// Attributes are the names of its message attributes.
	Attributes []string `json:"attributes,omitempty"`
	// ReceiveCount is ApproximateReceiveCount (counting the dry run's own receive).
	ReceiveCount string `json:"receive_count,omitempty"`
}

// DryRunResult is what a dry run saw.
type DryRunResult struct {
	// Messages is the number of distinct messages received.
	Messages int `json:"messages"`
	// Bytes is the sum of their body sizes.
	Bytes int64 `json:"bytes"`
	// Samples are the first few messages.
	Samples []Sample `json:"samples"`
	// Returned messages were made visible again at once (the others reappear after Visibility).
	Returned int `json:"returned"`
	// Present is the count of messages the dead-letter queue held at the start (visible and in
	// flight): the run counts at most that many, as a move would move at most that many.
	Present int `json:"present"`
	// Skipped messages reached the dead-letter queue after the start: a move would skip them, and
	// the dry run does not count them either.
	Skipped int `json:"skipped"`
}

// DryRunDLQ counts what MoveDLQ with the same options would move: it reads what o.From holds at
// the start (o.Start, else StartDLQ), then receives messages, holding them invisible for
// o.Visibility (default 30s), until it has counted that many (or o.Max), a receive brings nothing
// new, or it kept receiving only messages sent after the start (which a move would skip and the
// dry run does not count); it keeps samples and makes everything visible again. Nothing is sent or
// deleted. Receiving does raise each message's receive count, which matters only if the
// dead-letter queue itself has a redrive policy.
func DryRunDLQ(ctx context.Context, c SQSAPI, o DLQOptions) (DryRunResult, error) {
	if err := o.validate(false); err != nil {
		return DryRunResult{}, err
	}
	o = o.withDefaults(30 * time.Second)
	if o.Start == nil {
		start, err := StartDLQ(ctx, c, o.From)
		if err != nil {
			return DryRunResult{}, err
		}
		o.Start = &start
	}
	d := &dryRun{c: c, o: o, handles: map[string]string{}, limiter: newLimiter(o.Rate), budget: o.Start.Budget(o.Max)}
	d.res.Present = o.Start.Messages
	var wg sync.WaitGroup
	errs := make([]error, o.Concurrency)
	for i := range o.Concurrency {
		wg.Go(func() { errs[i] = d.worker(ctx) })
	}
	wg.Wait()

	// Give everything back, even when cancelled.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	handles := make([]string, 0, len(d.handles))
	for _, h := range d.handles {
		handles = append(handles, h)
	}
	returned, rerr := changeVisibility(rctx, c, o.From, handles, 0)
	d.res.Returned = returned
	sort.SliceStable(d.res.Samples, func(i, j int) bool { return d.res.Samples[i].MessageID < d.res.Samples[j].MessageID })
	return d.res, errors.Join(errors.Join(errs...), rerr)
}

type dryRun struct {
	c       SQSAPI
	o       DLQOptions
	limiter *rate.Limiter

	budget int // messages the run may count: present at the start, within Max

	mu      sync.Mutex
	handles map[string]string // message id -> latest receipt handle
	skips   int               // receipts of messages sent after the start
	res     DryRunResult
}

func (d *dryRun) want() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.skips >= skipLimit(d.budget, d.o.Concurrency) {
		return 0 // the queue fills faster than the run reads it
	}
	return min(MaxBatch, d.budget-d.res.Messages)
}

func (d *dryRun) worker(ctx context.Context) error {
	for ctx.Err() == nil {
		n := d.want()
		if n <= 0 {
			return nil
		}
		if err := wait(ctx, d.limiter, n); err != nil {
			return nil
		}
		out, err := d.c.ReceiveMessage(ctx, receiveInput(d.o.From, n, d.o.Visibility, d.o.Wait))
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("receive from %s: %w", d.o.From, err)
		}
		if d.add(out.Messages) == 0 {
			return nil
		}
	}
	return nil
}

// add records msgs and returns how many were counted for the first time. Every handle is kept, so
// that messages not counted (past the budget, or sent after the start) are made visible again too.
func (d *dryRun) add(msgs []types.Message) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	fresh := 0
	for _, msg := range msgs {
		id := aws.ToString(msg.MessageId)
		_, seen := d.handles[id]
		d.handles[id] = aws.ToString(msg.ReceiptHandle)
		switch {
		case seen:
		case sentAfter(msg, d.o.Start.At):
			d.res.Skipped++
			d.skips++
		case d.res.Messages >= d.budget: // another worker filled the budget meanwhile
		default:
			fresh++
			d.res.Messages++
			d.res.Bytes += int64(len(aws.ToString(msg.Body)))
			if len(d.res.Samples) < d.o.Samples {
				d.res.Samples = append(d.res.Samples, sample(msg))
			}
		}
	}
	return fresh
}

func sample(msg types.Message) Sample {
	s := Sample{MessageID: aws.ToString(msg.MessageId), Body: cut(aws.ToString(msg.Body), 300)}
	for name := range msg.MessageAttributes {
		s.Attributes = append(s.Attributes, name)
	}
	sort.Strings(s.Attributes)
	s.ReceiveCount = msg.Attributes[string(types.MessageSystemAttributeNameApproximateReceiveCount)]
	return s
}

// cut shortens s to at most n bytes without splitting a UTF-8 sequence, marking the cut with "…".
func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	i := n
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i] + "…"
}
