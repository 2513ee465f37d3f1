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
}

// DryRunDLQ receives messages from o.From (up to o.Max, or until a receive brings nothing new),
// holding them invisible for o.Visibility (default 30s), counts them and keeps samples, then makes
// them visible again. Nothing is sent or deleted. Receiving does raise each message's receive
// count, which matters only if the dead-letter queue itself has a redrive policy.
func DryRunDLQ(ctx context.Context, c SQSAPI, o DLQOptions) (DryRunResult, error) {
	if err := o.validate(false); err != nil {
		return DryRunResult{}, err
	}
	o = o.withDefaults(30 * time.Second)
	d := &dryRun{c: c, o: o, handles: map[string]string{}, limiter: newLimiter(o.Rate)}
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

	mu      sync.Mutex
	handles map[string]string // message id -> latest receipt handle
	res     DryRunResult
}

func (d *dryRun) want() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.o.Max > 0 {
		return min(MaxBatch, d.o.Max-d.res.Messages)
	}
	return MaxBatch
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

// add records msgs and returns how many were new. Messages past Max are made visible at once.
func (d *dryRun) add(msgs []types.Message) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	fresh := 0
	for _, msg := range msgs {
		id := aws.ToString(msg.MessageId)
		if _, seen := d.handles[id]; !seen {
			if d.o.Max > 0 && d.res.Messages >= d.o.Max {
				// Another worker filled Max meanwhile: keep the handle so it is returned too, but
				// do not count it.
				d.handles[id] = aws.ToString(msg.ReceiptHandle)
				continue
			}
			fresh++
			d.res.Messages++
			body := aws.ToString(msg.Body)
			d.res.Bytes += int64(len(body))
			if len(d.res.Samples) < d.o.Samples {
				d.res.Samples = append(d.res.Samples, sample(msg))
			}
		}
		d.handles[id] = aws.ToString(msg.ReceiptHandle)
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
