package replay

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"golang.org/x/time/rate"

	"github.com/intakehq/intake/internal/store/dbq"
)

// Body is one archived message body to resend.
type Body struct {
	// Text is the body, sent as is.
	Text string
	// Ref locates it in its source ("line 12", "event 345") for error reports.
	Ref string
	// Err, when set, says the entry is unusable (it is counted as failed, not sent).
	Err error
	// Duplicate marks a body already emitted under the same message id (counted as skipped).
	Duplicate bool
}

// Source emits bodies in order until it is exhausted (nil), emit fails (return its error) or it
// fails itself.
type Source func(ctx context.Context, emit func(Body) error) error

// ResendOptions configure Resend.
type ResendOptions struct {
	// To is the queue the bodies are sent to.
	To string
	// Rate limits messages per second (0: unlimited).
	Rate float64
	// Concurrency is the number of batches in flight at once (default 4).
	Concurrency int
	// Attempts bounds the tries of each batch entry (default 3).
	Attempts int
	// DryRun reads and counts without sending.
	DryRun bool
	// Progress counts sent bodies (read bodies in a dry run).
	Progress Counter
	// Log receives warnings (default: discarded).
	Log *slog.Logger
}

// ResendResult counts what Resend did.
type ResendResult struct {
	// Read bodies came from the source (duplicates and unusable entries included).
	Read int
	// Sent bodies were accepted by the queue.
	Sent int
	// Failed bodies were unusable, refused by the queue, or read but not sent because the run
	// stopped (an error, or ctx ended).
	Failed int
	// Skipped bodies were duplicates of one already sent in this run.
	Skipped int
	// Failures samples the failed entries (at most 20), with their Ref.
	Failures []string
}

// Resend sends every body of src to o.To in batches of up to ten, rate-limited, with o.Concurrency
// batches in flight. A batch entry refused by the queue through its own fault is retried; one
// refused through the sender's (a malformed or oversized body) is counted as failed and logged
// with its Ref. It stops at the first source error or whole-call send failure (after retries) and
// returns it (not the context.Canceled of the work it stopped) with the counts so far; cancelling
// ctx stops it too (re-running sends again what was already sent: the pipeline absorbs
// duplicates). Bodies read but not sent when it stops are counted as failed.
func Resend(ctx context.Context, c SQSAPI, src Source, o ResendOptions) (ResendResult, error) {
	if o.To == "" && !o.DryRun {
		return ResendResult{}, errors.New("target queue: required (--to or INTAKE_QUEUE_URL)")
	}
	if o.Concurrency < 0 || o.Concurrency > 64 {
		return ResendResult{}, fmt.Errorf("concurrency: %d not in 1..64", o.Concurrency)
	}
	o.Concurrency = cmp.Or(o.Concurrency, 4)
	o.Attempts = cmp.Or(o.Attempts, 3)
	if o.Progress == nil {
		o.Progress = nopCounter{}
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	r := &resender{c: c, o: o, limiter: newLimiter(o.Rate), run: newRunID()}

	parent := ctx
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	batches := make(chan []Body, o.Concurrency)
	var wg sync.WaitGroup
	errs := make([]error, o.Concurrency)
	for i := range o.Concurrency {
		wg.Go(func() {
			for b := range batches {
				if err := r.send(ctx, b); err != nil {
					errs[i] = err
					cancel()
					for b := range batches { // let the producer finish: what it still hands over is not sent
						r.unsent(b, err)
					}
					return
				}
			}
		})
	}
	srcErr := r.produce(ctx, src, batches)
	close(batches)
	wg.Wait()
	err := errors.Join(errs...)
	if parent.Err() == nil {
		// Not interrupted: a worker's failure cancelled the other workers, and their
		// context.Canceled would hide it (and read as an interruption).
		var failures []error
		for _, e := range errs {
			if e != nil && !errors.Is(e, context.Canceled) {
				failures = append(failures, e)
			}
		}
		if len(failures) > 0 {
			err = errors.Join(failures...)
		}
	}
	// A worker's failure cancels the producer: its context.Canceled is noise then.
	if srcErr != nil && (err == nil || !errors.Is(srcErr, context.Canceled)) {
		err = errors.Join(srcErr, err)
	}
	return r.res, err
}

type resender struct {
	c       SQSAPI
	o       ResendOptions
	limiter *rate.Limiter
	run     string       // this run's id, in the deduplication ids of a FIFO target
	seq     atomic.Int64 // bodies given a deduplication id so far in this run

	mu  sync.Mutex
	res ResendResult
}

// dedupID returns a FIFO deduplication id for the next body of this run: the run's random id and
// a sequence number, so that no two bodies of a run share one (SQS would accept the second as a
// duplicate of the first, report it sent, and never deliver it) and no later run reuses one. A
// clock reading would not do: batches sent in the same tick of a coarse clock, or by concurrent
// workers, would get the same ids. The entry keeps its id across the retries of its batch, so a
// send that reached SQS although its answer was lost is deduplicated.
func (r *resender) dedupID() string {
	return r.run + ":" + strconv.FormatInt(r.seq.Add(1), 10)
}

func (r *resender) record(f func(*ResendResult)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	f(&r.res)
}

func (r *resender) failed(ref, why string) {
	r.o.Log.Warn("body not sent", "ref", ref, "reason", why)
	r.record(func(res *ResendResult) {
		res.Failed++
		if len(res.Failures) < 20 {
			res.Failures = append(res.Failures, ref+": "+why)
		}
	})
}

// unsent counts bodies read but never sent (the run stopped before their batch went out: why) as
// failed.
func (r *resender) unsent(batch []Body, why error) {
	if len(batch) == 0 {
		return
	}
	r.o.Log.Warn("bodies not sent: the replay stopped", "bodies", len(batch), "first_ref", batch[0].Ref, "reason", why)
	r.record(func(res *ResendResult) { res.Failed += len(batch) })
}

// produce reads src into batches of at most ten bodies and maxBatchBytes, handing over a partial
// batch early when src asks (flushKey). Bodies it read but could not hand over (the run stopped)
// are counted as failed.
func (r *resender) produce(ctx context.Context, src Source, out chan<- []Body) error {
	var b batches[Body]
	flush := func(batch []Body) error {
		if len(batch) == 0 {
			return nil
		}
		select {
		case out <- batch:
		case <-ctx.Done():
			r.unsent(batch, ctx.Err())
			return ctx.Err()
		}
		return nil
	}
	sctx := context.WithValue(ctx, flushKey{}, func() error { return flush(b.rest()) })
	err := src(sctx, func(body Body) error {
		r.record(func(res *ResendResult) { res.Read++ })
		switch {
		case body.Err != nil:
			r.failed(body.Ref, body.Err.Error())
			return nil
		case body.Duplicate:
			r.record(func(res *ResendResult) { res.Skipped++ })
			return nil
		case r.o.DryRun:
			r.o.Progress.Add(1)
			return ctx.Err()
		}
		return flush(b.add(body, len(body.Text)))
	})
	if err != nil {
		r.unsent(b.rest(), err)
		return err
	}
	return flush(b.rest())
}

// flushKey is the context key under which Resend hands its source a func() error that sends the
// bodies emitted so far in a partial batch, without waiting for a full one (FileSource calls it
// when its input pauses). The source calls it from the goroutine that calls emit, before it
// returns.
type flushKey struct{}

// flushPartial sends the bodies emitted so far, if ctx is a Resend's source's (else it does
// nothing).
func flushPartial(ctx context.Context) error {
	if f, ok := ctx.Value(flushKey{}).(func() error); ok {
		return f()
	}
	return nil
}

// send sends one batch; it returns an error only when the whole call failed after retries, or
// ctx ended.
func (r *resender) send(ctx context.Context, batch []Body) error {
	if err := wait(ctx, r.limiter, len(batch)); err != nil {
		r.unsent(batch, err)
		return err
	}
	entries := make([]types.SendMessageBatchRequestEntry, len(batch))
	for i, b := range batch {
		entries[i] = types.SendMessageBatchRequestEntry{Id: aws.String(strconv.Itoa(i)), MessageBody: aws.String(b.Text)}
		if isFIFO(r.o.To) {
			entries[i].MessageGroupId = aws.String("intake-replay")
			entries[i].MessageDeduplicationId = aws.String(r.dedupID())
		}
	}
	sent, _, failed, err := sendBatch(ctx, r.c, r.o.To, entries, r.o.Attempts, r.o.Log)
	r.record(func(res *ResendResult) { res.Sent += len(sent) })
	r.o.Progress.Add(len(sent))
	for _, f := range failed {
		i, _ := strconv.Atoi(f.ID)
		r.failed(batch[i].Ref, f.String())
	}
	if err != nil {
		// The whole call failed: whatever was neither sent nor listed as failed is unsent.
		r.record(func(res *ResendResult) { res.Failed += len(batch) - len(sent) - len(failed) })
	}
	return err
}

// fileIdle is how long a body FileSource read may wait for its batch to fill: then the bodies
// read so far are sent in a partial batch, so that a slow writer's bodies (tail -f … | intake
// replay file -) go out promptly rather than when ten have come or the input ends.
const fileIdle = time.Second

// FileSource reads one body per line from r (a JSONL export): a line is sent as is, or, when it
// is a JSON string ("…"), as the string it encodes. Blank lines are ignored. Lines of any length
// are read. A body waits at most a second (fileIdle) for its batch to fill: then the bodies read
// so far are sent in a partial batch.
//
// The source returns as soon as ctx is done, even while r blocks (stdin left open, a pipe whose
// writer is idle): r is read by a goroutine of its own, which may then stay blocked in r.Read
// until that returns (until the process exits, for a terminal's stdin); it hands nothing over once
// the source has returned, and ends when its read returns. A reader that must be released sooner
// is the caller's to close.
func FileSource(r io.Reader) Source {
	return func(ctx context.Context, emit func(Body) error) error {
		lines := make(chan lineRead)
		done := make(chan struct{})
		defer close(done) // the reader hands nothing over once the source has returned
		go readLines(r, lines, done)
		idle := time.NewTimer(fileIdle)
		idle.Stop()
		defer idle.Stop()
		var idleC <-chan time.Time // armed while bodies emitted since the last flush may wait
		for n := 1; ; n++ {
			var l lineRead
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-idleC:
				idleC = nil
				if err := flushPartial(ctx); err != nil {
					return err
				}
				n--
				continue
			case l = <-lines:
			}
			if l.err != nil && !errors.Is(l.err, io.EOF) {
				return fmt.Errorf("read line %d: %w", n, l.err)
			}
			if text := strings.TrimSpace(l.text); text != "" {
				b := Body{Text: text, Ref: "line " + strconv.Itoa(n)}
				if text[0] == '"' {
					var s string
					if jerr := json.Unmarshal([]byte(text), &s); jerr != nil {
						b.Err = fmt.Errorf("not a valid JSON string: %w", jerr)
					} else if strings.TrimSpace(s) == "" {
						b.Err = errors.New("empty body")
					}
					b.Text = s
				}
				if eerr := emit(b); eerr != nil {
					return eerr
				}
				if idleC == nil { // the first body since the last flush waits at most fileIdle
					idle.Reset(fileIdle)
					idleC = idle.C
				}
			}
			if l.err != nil { // io.EOF
				return nil
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
		}
	}
}

// lineRead is a line readLines read, with the error that ended it (io.EOF for the last one).
type lineRead struct {
	text string
	err  error
}

// readLines reads r line by line into out until a read fails (io.EOF at the end), the failed
// read's line included, or done is closed: it never sends once done is closed, though it may be
// blocked in r.Read then, and ends when that read returns.
func readLines(r io.Reader, out chan<- lineRead, done <-chan struct{}) {
	br := bufio.NewReaderSize(r, 256*1024)
	for {
		line, err := br.ReadString('\n')
		select {
		case out <- lineRead{line, err}:
		case <-done:
			return
		}
		if err != nil {
			return
		}
	}
}

// EventLister is the queries ArchiveSource pages through (*dbq.Queries has them).
type EventLister interface {
	OpsLastEventID(ctx context.Context) (int64, error)
	OpsListEvents(ctx context.Context, arg dbq.OpsListEventsParams) ([]dbq.OpsListEventsRow, error)
}

// ArchiveFilter selects archived events.
type ArchiveFilter struct {
	// Since is the first received_at included.
	Since time.Time
	// Until is the first received_at excluded (zero: no end in time; the run still ends at the
	// newest row archived when it starts).
	Until time.Time
	// KeyPrefix keeps events whose key starts with it ("" keeps all).
	KeyPrefix string
	// Outcome keeps events with exactly this outcome ("" keeps all).
	Outcome string
	// PageSize is the number of rows read per query (default 500).
	PageSize int
}

// ArchiveSource emits the bodies of the events table selected by f, in the order received
// ((received_at, id): one index range scan per page, however large the window), up to the
// newest row archived when the run starts: the consumer archives every body it processes, the
// replay's own among them, and a replay that read those too would never end. A message id seen
// before in the run (the archive keeps one row per delivery) is marked Duplicate.
func ArchiveSource(q EventLister, f ArchiveFilter) Source {
	return func(ctx context.Context, emit func(Body) error) error {
		until := f.Until
		if until.IsZero() {
			until = time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)
		}
		last, err := q.OpsLastEventID(ctx)
		if err != nil {
			return fmt.Errorf("newest archived event: %w", err)
		}
		page := int32(cmp.Or(f.PageSize, 500))
		seen := map[string]bool{}
		var after int64
		for {
			rows, err := q.OpsListEvents(ctx, dbq.OpsListEventsParams{
				Since: f.Since, Until: until, KeyPrefix: f.KeyPrefix, Outcome: f.Outcome, AfterID: after, LastID: last, MaxRows: page,
			})
			if err != nil {
				return fmt.Errorf("list archived events after id %d: %w", after, err)
			}
			for _, row := range rows {
				after = row.ID
				b := Body{Text: row.Body, Ref: "event " + strconv.FormatInt(row.ID, 10)}
				if seen[row.MessageID] {
					b.Duplicate = true
				}
				seen[row.MessageID] = true
				if err := emit(b); err != nil {
					return err
				}
			}
			if len(rows) < int(page) {
				return nil
			}
		}
	}
}
