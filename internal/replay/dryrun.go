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
	// Returned messages were made visible again at once, or were visible again already (Expired).
	Returned int `json:"returned"`
	// Expired messages, counted in Returned, were no longer held by the run when it gave them back:
	// their visibility had ended (the run lasted longer than o.Visibility), and SQS refused the
	// receipt handle the run had (MessageNotInflight, ReceiptHandleIsInvalid). They are visible
	// again, or were received again by another reader meanwhile.
	Expired int `json:"expired"`
	// NotReturned messages were received but could not be made visible again (the queue refused,
	// or the call failed): they reappear when the dry run's visibility timeout ends.
	NotReturned int `json:"not_returned"`
	// Present is the count of messages the dead-letter queue held at the start (visible and in
	// flight): the run counts at most that many, as a move would move at most that many.
	Present int `json:"present_at_start"`
	// Skipped messages reached the dead-letter queue after the start: a move would skip them, and
	// the dry run does not count them either.
	Skipped int `json:"skipped"`
	// Partial is true when the run stopped before it had counted what the queue held at the start,
	// because it kept receiving messages it could not count (sent after the start, or counted
	// already and visible again): Messages is then a lower bound.
	Partial bool `json:"partial"`
	// Unreached counts the messages the run was to count (Present, within Max) that it never
	// received: in flight for the whole run (held by another reader, such as a stopped replay; a
	// move would not see them either until their visibility timeout ends), removed by someone else
	// meanwhile, or not reached because the run stopped early (Partial, or ctx). Partial stays
	// false when only the first reason applies; Unreached says it.
	Unreached int `json:"unreached"`
}

// MaxDryRunVisibility bounds how long a dry run hides the messages it receives. It gives them back
// at once when it ends; should that fail, they stay hidden until this timeout, so it must stay
// short: a dry run must not hold back what the consumer or a real replay would take.
const MaxDryRunVisibility = time.Minute

// DryRunDLQ counts what MoveDLQ with the same options would move: it reads what o.From holds at
// the start (o.Start, else StartDLQ), then receives messages, holding them invisible for
// o.Visibility (default 30s, at most MaxDryRunVisibility), until it has counted that many (or
// o.Max), a receive finds nothing, or it kept receiving only messages it cannot count (sent after
// the start, which a move would skip, or counted already and visible again): then the count may be
// short, and the result says so (Partial). It keeps o.Samples samples and makes everything visible
// again, what a receive under way when ctx is cancelled brings included (it is not aborted, and
// ends within o.Wait); a message whose visibility had ended already counts as given back (Expired).
// Nothing is sent or deleted. Receiving does raise each message's receive count, which matters
// only if the dead-letter queue itself has a redrive policy. err also reports the messages that
// could not be made visible again (NotReturned).
func DryRunDLQ(ctx context.Context, c SQSAPI, o DLQOptions) (DryRunResult, error) {
	if err := o.validate(false); err != nil {
		return DryRunResult{}, err
	}
	if o.Visibility > MaxDryRunVisibility {
		return DryRunResult{}, fmt.Errorf("visibility: %s is more than a dry run's %s (it would hold messages back that long if giving them back failed)", o.Visibility, MaxDryRunVisibility)
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
	d.res.Partial = d.limited && d.res.Messages < d.budget
	d.res.Unreached = max(0, d.budget-d.res.Messages)

	// Give everything back, even when cancelled.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	handles := make([]string, 0, len(d.handles))
	for _, h := range d.handles {
		handles = append(handles, h)
	}
	returned, expired, rerr := changeVisibility(rctx, c, o.From, handles, 0)
	d.res.Returned = returned + expired
	d.res.Expired = expired
	d.res.NotReturned = len(handles) - d.res.Returned
	if rerr != nil {
		o.Log.Warn("received messages not made visible again; they reappear when their visibility timeout ends",
			"messages", d.res.NotReturned, "visibility", o.Visibility, "err", rerr)
	}
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
	skips   int               // receipts of messages not counted: sent after the start, or seen already
	limited bool              // skips reached skipLimit
	res     DryRunResult
}

func (d *dryRun) want() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.limited {
		return 0 // the queue fills faster than the run reads it
	}
	return min(MaxBatch, d.budget-d.res.Messages)
}

// worker receives until the budget is counted, a receive finds nothing, the skip limit is reached
// or ctx is done. A receive of messages it cannot count does not end it: the messages present at
// the start may come after them (held by another reader, or simply later in SQS's order), and
// ending there would undercount; the skip limit bounds such receipts instead.
func (d *dryRun) worker(ctx context.Context) error {
	for ctx.Err() == nil {
		n := d.want()
		if n <= 0 {
			return nil
		}
		if err := wait(ctx, d.limiter, n); err != nil {
			return nil
		}
		// Not aborted by ctx (see receive): what it took is recorded, and given back at the end.
		out, err := receive(ctx, d.c, receiveInput(d.o.From, n, d.o.Visibility, d.o.Wait), d.o.Wait)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("receive from %s: %w", d.o.From, err)
		}
		if len(out.Messages) == 0 {
			return nil
		}
		d.add(out.Messages)
	}
	return nil
}

// add records msgs. Every handle is kept, so that messages not counted (past the budget, or sent
// after the start) are made visible again too. Receipts of messages sent after the start or counted
// already count against the skip limit.
func (d *dryRun) add(msgs []types.Message) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, msg := range msgs {
		id := aws.ToString(msg.MessageId)
		_, seen := d.handles[id]
		d.handles[id] = aws.ToString(msg.ReceiptHandle)
		switch {
		case seen:
			d.skips++
		case sentAfter(msg, d.o.Start.At):
			d.res.Skipped++
			d.skips++
		case d.res.Messages >= d.budget: // another worker filled the budget meanwhile
		default:
			d.res.Messages++
			d.res.Bytes += int64(len(aws.ToString(msg.Body)))
			if len(d.res.Samples) < d.o.Samples {
				d.res.Samples = append(d.res.Samples, sample(msg))
			}
		}
	}
	if d.skips >= skipLimit(d.budget, d.o.Concurrency) && !d.limited {
		d.limited = true
		d.o.Log.Warn("the dead-letter queue keeps returning messages the dry run cannot count; stopping",
			"counted", d.res.Messages, "skipped", d.res.Skipped)
	}
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
