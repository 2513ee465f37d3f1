package replay

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"golang.org/x/time/rate"
)

// DLQOptions configure MoveDLQ and DryRunDLQ.
type DLQOptions struct {
	// From is the dead-letter queue's URL.
	From string
	// To is the queue the messages go back to.
	To string
	// Max stops after this many messages (0: until the dead-letter queue is empty).
	Max int
	// Rate limits messages per second (0: unlimited).
	Rate float64
	// Concurrency is the number of batches in flight at once (default 4).
	Concurrency int
	// Visibility hides received messages from other readers while they are moved (default 60s;
	// dry runs default to 30s). A message whose move failed reappears after it.
	Visibility time.Duration
	// Wait is the long-poll wait of a receive; an empty receive ends a worker (default 2s).
	Wait time.Duration
	// Attempts bounds the tries of each send or delete (default 3).
	Attempts int
	// Samples is how many bodies a dry run keeps (default 5).
	Samples int
	// Progress counts moved messages (optional).
	Progress Counter
	// Log receives warnings (default: discarded).
	Log *slog.Logger
}

func (o DLQOptions) withDefaults(visibility time.Duration) DLQOptions {
	o.Concurrency = cmp.Or(o.Concurrency, 4)
	o.Visibility = cmp.Or(o.Visibility, visibility)
	o.Wait = cmp.Or(o.Wait, 2*time.Second)
	o.Attempts = cmp.Or(o.Attempts, 3)
	o.Samples = cmp.Or(o.Samples, 5)
	if o.Progress == nil {
		o.Progress = nopCounter{}
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	return o
}

func (o DLQOptions) validate(needTo bool) error {
	var errs []error
	if o.From == "" {
		errs = append(errs, errors.New("source queue: required (--from or INTAKE_DLQ_URL)"))
	}
	if needTo && o.To == "" {
		errs = append(errs, errors.New("target queue: required (--to or INTAKE_QUEUE_URL)"))
	}
	if o.From != "" && o.From == o.To {
		errs = append(errs, fmt.Errorf("source and target are the same queue %s", o.From))
	}
	if o.Max < 0 {
		errs = append(errs, errors.New("max: must not be negative"))
	}
	if o.Concurrency < 0 || o.Concurrency > 64 {
		errs = append(errs, fmt.Errorf("concurrency: %d not in 1..64", o.Concurrency))
	}
	if o.Visibility != 0 && (o.Visibility < time.Second || o.Visibility > 12*time.Hour) {
		errs = append(errs, fmt.Errorf("visibility: %s not in 1s..12h", o.Visibility))
	}
	if o.Wait < 0 || o.Wait > 20*time.Second {
		errs = append(errs, fmt.Errorf("wait: %s not in 0..20s", o.Wait))
	}
	return errors.Join(errs...)
}

// DLQResult counts what MoveDLQ did.
type DLQResult struct {
	// Received messages were taken from the dead-letter queue.
	Received int
	// Sent messages were accepted by the target queue.
	Sent int
	// Deleted messages were removed from the dead-letter queue after being sent.
	Deleted int
	// SendFailed messages were not sent; they stay in the dead-letter queue and become visible
	// again after the visibility timeout.
	SendFailed int
	// DeleteFailed messages were sent but not deleted: a later replay sends them again (a
	// duplicate the pipeline absorbs).
	DeleteFailed int
	// Left is the dead-letter queue's approximate count at the end (best effort).
	Left QueueCounts
	// Failures samples the errors of failed entries (at most 20).
	Failures []string
}

// mover is one MoveDLQ run.
type mover struct {
	c       SQSAPI
	o       DLQOptions
	limiter *rate.Limiter
	fifo    bool

	mu       sync.Mutex
	reserved int // messages received or being received, against Max
	res      DLQResult
}

// MoveDLQ moves messages from o.From to o.To: receive a batch, send it, delete what was sent. It
// returns when the dead-letter queue looks empty (a receive with o.Wait finds nothing), when Max
// messages were moved, or when ctx is cancelled; batches already received are finished (sent and
// deleted) before it returns, so a stop loses nothing. The result is valid even with an error.
func MoveDLQ(ctx context.Context, c SQSAPI, o DLQOptions) (DLQResult, error) {
	if err := o.validate(true); err != nil {
		return DLQResult{}, err
	}
	o = o.withDefaults(60 * time.Second)
	m := &mover{c: c, o: o, limiter: newLimiter(o.Rate), fifo: isFIFO(o.To)}
	var wg sync.WaitGroup
	errs := make([]error, o.Concurrency)
	for i := range o.Concurrency {
		wg.Go(func() { errs[i] = m.worker(ctx) })
	}
	wg.Wait()
	err := errors.Join(errs...)
	// Best effort: how much is left, for the summary.
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if left, cerr := Counts(cctx, c, o.From); cerr == nil {
		m.res.Left = left
	}
	return m.res, err
}

// reserve claims up to MaxBatch messages against Max (0 when Max is reached).
func (m *mover) reserve() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := MaxBatch
	if m.o.Max > 0 {
		n = min(n, m.o.Max-m.reserved)
	}
	m.reserved += n
	return n
}

func (m *mover) release(n int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.reserved -= n
}

func (m *mover) record(f func(r *DLQResult)) {
	m.mu.Lock()
	defer m.mu.Unlock()
	f(&m.res)
}

func (m *mover) fail(fs []failure, what string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, f := range fs {
		if len(m.res.Failures) < 20 {
			m.res.Failures = append(m.res.Failures, what+": "+f.String())
		}
	}
}

// worker moves batches until the queue looks empty, Max is reached or ctx is done.
func (m *mover) worker(ctx context.Context) error {
	for ctx.Err() == nil {
		n := m.reserve()
		if n <= 0 {
			return nil
		}
		if err := wait(ctx, m.limiter, n); err != nil {
			m.release(n)
			return nil // cancelled while waiting: nothing held
		}
		out, err := m.c.ReceiveMessage(ctx, receiveInput(m.o.From, n, m.o.Visibility, m.o.Wait))
		if err != nil {
			m.release(n)
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("receive from %s: %w", m.o.From, err)
		}
		m.release(n - len(out.Messages))
		if len(out.Messages) == 0 {
			return nil
		}
		m.record(func(r *DLQResult) { r.Received += len(out.Messages) })
		// Finish the batch even if ctx is cancelled now: sending and deleting take moments, and a
		// half-moved batch would only mean duplicates. The visibility timeout bounds the work.
		bctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), m.o.Visibility)
		err = m.move(bctx, out.Messages)
		cancel()
		if err != nil {
			return err
		}
	}
	return nil
}

// move sends msgs to the target and deletes from the source those the target accepted.
func (m *mover) move(ctx context.Context, msgs []types.Message) error {
	entries := make([]types.SendMessageBatchRequestEntry, len(msgs))
	for i, msg := range msgs {
		entries[i] = sendEntry(strconv.Itoa(i), msg, m.fifo)
	}
	sent, failed, sendErr := sendBatch(ctx, m.c, m.o.To, entries, m.o.Attempts, m.o.Log)
	unsent := len(msgs) - len(sent)
	m.record(func(r *DLQResult) { r.Sent += len(sent); r.SendFailed += unsent })
	m.fail(failed, "send")
	for _, f := range failed {
		i, _ := strconv.Atoi(f.ID)
		m.o.Log.Warn("message not sent; left in the dead-letter queue", "message_id", aws.ToString(msgs[i].MessageId), "code", f.Code, "err", f.Message)
	}
	m.o.Progress.Add(len(sent))
	if len(sent) == 0 {
		return sendErr
	}
	dels := make([]types.DeleteMessageBatchRequestEntry, 0, len(sent))
	for _, id := range sent {
		i, _ := strconv.Atoi(id)
		dels = append(dels, types.DeleteMessageBatchRequestEntry{Id: aws.String(id), ReceiptHandle: msgs[i].ReceiptHandle})
	}
	deleted, delFailed, delErr := deleteBatch(ctx, m.c, m.o.From, dels, m.o.Attempts, m.o.Log)
	m.record(func(r *DLQResult) { r.Deleted += len(deleted); r.DeleteFailed += len(sent) - len(deleted) })
	m.fail(delFailed, "delete")
	for _, f := range delFailed {
		i, _ := strconv.Atoi(f.ID)
		m.o.Log.Warn("message sent but not deleted; a later replay will send it again", "message_id", aws.ToString(msgs[i].MessageId), "code", f.Code, "err", f.Message)
	}
	return errors.Join(sendErr, delErr)
}

// receiveInput asks for n messages with every attribute.
func receiveInput(url string, n int, visibility, waitTime time.Duration) *sqs.ReceiveMessageInput {
	return &sqs.ReceiveMessageInput{
		QueueUrl:                    aws.String(url),
		MaxNumberOfMessages:         int32(n),
		VisibilityTimeout:           int32(visibility / time.Second),
		WaitTimeSeconds:             int32(waitTime / time.Second),
		MessageAttributeNames:       []string{"All"},
		MessageSystemAttributeNames: []types.MessageSystemAttributeName{types.MessageSystemAttributeNameAll},
	}
}

// sendEntry copies a received message into a send entry: body and message attributes, and for a
// FIFO target the group id and a deduplication id (the original one, else the message id, so that
// replaying the same message twice within five minutes is deduplicated by SQS itself).
func sendEntry(id string, msg types.Message, fifo bool) types.SendMessageBatchRequestEntry {
	e := types.SendMessageBatchRequestEntry{
		Id:                aws.String(id),
		MessageBody:       msg.Body,
		MessageAttributes: msg.MessageAttributes,
	}
	if fifo {
		sys := msg.Attributes
		e.MessageGroupId = aws.String(cmp.Or(sys[string(types.MessageSystemAttributeNameMessageGroupId)], "intake-replay"))
		e.MessageDeduplicationId = aws.String(cmp.Or(sys[string(types.MessageSystemAttributeNameMessageDeduplicationId)], aws.ToString(msg.MessageId)))
	}
	return e
}
