package reconcile

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"golang.org/x/time/rate"

	"github.com/intakehq/intake/internal/objstore"
	"github.com/intakehq/intake/internal/store"
	"github.com/intakehq/intake/internal/store/dbq"
)

// S3API is the part of *s3.Client that reconcile uses.
type S3API interface {
	ListObjectsV2(ctx context.Context, in *s3.ListObjectsV2Input, opts ...func(*s3.Options)) (*s3.ListObjectsV2Output, error)
	HeadObject(ctx context.Context, in *s3.HeadObjectInput, opts ...func(*s3.Options)) (*s3.HeadObjectOutput, error)
	HeadBucket(ctx context.Context, in *s3.HeadBucketInput, opts ...func(*s3.Options)) (*s3.HeadBucketOutput, error)
}

var _ S3API = (*s3.Client)(nil)

// Rows is the part of the store reconcile uses (*dbq.Queries has it).
type Rows interface {
	OpsNow(ctx context.Context) (time.Time, error)
	OpsListObjects(ctx context.Context, arg dbq.OpsListObjectsParams) ([]dbq.OpsListObjectsRow, error)
	OpsMarkMissing(ctx context.Context, arg dbq.OpsMarkMissingParams) ([]string, error)
}

var _ Rows = (*dbq.Queries)(nil)

// StatementTimeout bounds each of a run's statements (a page of rows, marking rows missing, the
// database's time): a lock held by a stuck session, or a database that stops answering, fails the
// run instead of holding it (and the periodic job's slot) until the task's own timeout.
const StatementTimeout = time.Minute

// statementTimeout is StatementTimeout; tests shorten it.
var statementTimeout = StatementTimeout

// timedRows bounds each call of Rows by timeout.
type timedRows struct {
	Rows
	timeout time.Duration
}

func (t timedRows) OpsNow(ctx context.Context) (time.Time, error) {
	ctx, cancel := context.WithTimeout(ctx, t.timeout)
	defer cancel()
	return t.Rows.OpsNow(ctx)
}

func (t timedRows) OpsListObjects(ctx context.Context, arg dbq.OpsListObjectsParams) ([]dbq.OpsListObjectsRow, error) {
	ctx, cancel := context.WithTimeout(ctx, t.timeout)
	defer cancel()
	return t.Rows.OpsListObjects(ctx, arg)
}

func (t timedRows) OpsMarkMissing(ctx context.Context, arg dbq.OpsMarkMissingParams) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, t.timeout)
	defer cancel()
	return t.Rows.OpsMarkMissing(ctx, arg)
}

// Enqueuer asks for one object to be inspected again (TaskEnqueuer enqueues object:inspect).
type Enqueuer interface {
	EnqueueInspect(ctx context.Context, bucket, key string) error
}

// ErrSkipKey marks, wrapped by an Enqueuer's error, a key that can never be enqueued (an invalid
// payload); reconcile counts it and goes on. Any other enqueue error stops the fix.
var ErrSkipKey = errors.New("key cannot be enqueued")

// ErrAlreadyQueued marks, wrapped by an Enqueuer's error, an object whose inspection is already
// queued (TaskEnqueuer with Unique); reconcile counts it in Fixed.AlreadyQueued and goes on.
var ErrAlreadyQueued = errors.New("inspection already queued")

// Counter receives progress: the number of bucket objects listed. *progress.Bar satisfies it.
type Counter interface{ Add(n int) }

type nopCounter struct{}

func (nopCounter) Add(int) {}

// Options configure Run.
type Options struct {
	// Bucket is the bucket to compare.
	Bucket string
	// Prefix limits the comparison to keys that start with it.
	Prefix string
	// Fix enqueues inspections of missing/stale objects and marks gone rows missing.
	Fix bool
	// Enqueuer is required with Fix.
	Enqueuer Enqueuer
	// PageSize is the number of keys per S3 page and per rows page (default 1000).
	PageSize int
	// Rate bounds the objects listed per second, and the HEAD requests of the fix (0: unlimited).
	// The periodic reconcile sets it, so that a large bucket is walked gently.
	Rate float64
	// Progress counts listed objects (optional).
	Progress Counter
	// Sink receives every difference as it is found, in key order (optional): the report keeps
	// counts and only the first SampleSize keys of each kind. An error from it stops the run.
	// JSONReport is one.
	Sink Sink
	// Log receives warnings (default: discarded).
	Log *slog.Logger
}

// SampleSize is how many keys of each kind (missing, stale, gone, HEAD failures) a Report keeps:
// the first ones found, in key order. The counts cover them all; Options.Sink receives them all.
const SampleSize = 1000

// goneChunk is how many gone rows are checked with HeadObject, then marked missing, at a time.
const goneChunk = 500

// Sink receives the differences of a run as they are found, in key order of each kind.
type Sink interface {
	// Missing receives an object without a row.
	Missing(Missing) error
	// Stale receives a row that disagrees with its object.
	Stale(Stale) error
	// Gone receives a row whose object the listing passed.
	Gone(Gone) error
}

// Missing is an object without a row.
type Missing struct {
	Key  string `json:"key"`
	ETag string `json:"etag"`
	Size int64  `json:"size"`
}

// Stale is a row that disagrees with its object.
type Stale struct {
	Key       string `json:"key"`
	S3ETag    string `json:"s3_etag"`
	RowETag   string `json:"row_etag"`
	RowStatus string `json:"row_status"`
}

// Gone is a row whose object is not in the bucket.
type Gone struct {
	Key       string `json:"key"`
	RowStatus string `json:"row_status"`
}

// Fixed counts what Fix did.
type Fixed struct {
	// Enqueued object:inspect tasks (missing + stale).
	Enqueued int `json:"enqueued"`
	// EnqueueSkipped keys could not be enqueued (invalid payload).
	EnqueueSkipped int `json:"enqueue_skipped"`
	// AlreadyQueued keys had an inspection queued already (not enqueued again).
	AlreadyQueued int `json:"already_queued"`
	// MarkedMissing gone rows now say missing.
	MarkedMissing int `json:"marked_missing"`
	// Reappeared gone rows whose object HeadObject found after all (left alone).
	Reappeared int `json:"reappeared"`
	// Unchanged gone rows that changed meanwhile or were already marked (left alone).
	Unchanged int `json:"unchanged"`
	// HeadFailed gone rows could not be checked: their HeadObject failed for that key alone (a
	// 403 or 400, say, not an outage). They are left alone, logged, and the fix goes on.
	HeadFailed int `json:"head_failed"`
	// HeadErrors are the first SampleSize of the HeadFailed rows, with their errors.
	HeadErrors []HeadError `json:"head_errors,omitempty"`
}

// HeadError is a gone row whose HeadObject failed for that key alone.
type HeadError struct {
	Key   string `json:"key"`
	Error string `json:"error"`
}

// Report is the outcome of a run.
type Report struct {
	Bucket string `json:"bucket"`
	Prefix string `json:"prefix"`
	// Started is the database time the run started at.
	Started time.Time `json:"started"`
	// Elapsed is the run's duration.
	Elapsed time.Duration `json:"-"`
	// ElapsedSeconds is Elapsed in seconds (JSON).
	ElapsedSeconds float64 `json:"elapsed_seconds"`
	// Listed objects were in the bucket.
	Listed int `json:"listed"`
	// Rows were read from the objects table.
	Rows int `json:"rows"`
	// InSync objects have a row that agrees (and absent objects whose row says deleted/missing).
	InSync int `json:"in_sync"`
	// Changed rows were updated, or objects uploaded (LastModified), during the run: not judged.
	Changed int `json:"changed_during_run"`
	// MissingCount, StaleCount and GoneCount count the differences found (all of them).
	MissingCount int `json:"missing_count"`
	StaleCount   int `json:"stale_count"`
	GoneCount    int `json:"gone_count"`
	// Missing, Stale and Gone are a sample: the first SampleSize differences of each kind, in
	// key order (the counts above say how many there are; Options.Sink receives them all).
	Missing []Missing `json:"missing,omitempty"`
	Stale   []Stale   `json:"stale,omitempty"`
	Gone    []Gone    `json:"gone,omitempty"`
	// Fixed is what the fix did (with Options.Fix), as it went: it is applied page by page.
	Fixed *Fixed `json:"fixed,omitempty"`
	// Problems is the number of differences found: MissingCount + StaleCount + GoneCount.
	Problems int `json:"problems"`
	// Complete says the run went to the end. A run that stopped part-way (an error, the context
	// ending) reports, and has fixed, the keys it compared before it stopped: no row past the
	// listing's last key is judged gone.
	Complete bool `json:"complete"`
}

// Differences is how many keys the report found missing, stale or gone.
func (r *Report) Differences() int { return r.MissingCount + r.StaleCount + r.GoneCount }

// object is one listed S3 object.
type object struct {
	key, etag string
	size      int64
	modified  time.Time // LastModified (zero when the listing has none)
}

// changedSince reports whether the object was written at or after t (an upload during the run,
// whose event may not have been processed yet). A listing's LastModified may be cut to the second
// (AWS): an object written before the run started is always judged, one written in the second the
// run started in may be judged too.
func (o object) changedSince(t time.Time) bool { return !o.modified.IsZero() && !o.modified.Before(t) }

// Run lists the bucket, compares it with the rows and, with o.Fix, repairs as it goes: the
// inspections of a page's missing and stale objects are enqueued, and its gone rows checked and
// marked (500 at a time), before the run moves far past it. The report is valid (what was seen and
// done so far) even with an error.
func Run(ctx context.Context, s3c S3API, rows Rows, o Options) (*Report, error) {
	if o.Bucket == "" {
		return nil, errors.New("bucket: required (--bucket or INTAKE_BUCKET)")
	}
	if o.Fix && o.Enqueuer == nil {
		return nil, errors.New("fix: no enqueuer")
	}
	rows = timedRows{Rows: rows, timeout: statementTimeout}
	if o.Rate < 0 {
		return nil, errors.New("rate: must not be negative")
	}
	o.PageSize = cmp.Or(o.PageSize, 1000)
	if o.Progress == nil {
		o.Progress = nopCounter{}
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	began := time.Now()
	start, err := rows.OpsNow(ctx)
	if err != nil {
		return nil, fmt.Errorf("read database time: %w", err)
	}
	rep := &Report{Bucket: o.Bucket, Prefix: o.Prefix, Started: start}
	defer func() { rep.Elapsed = time.Since(began); rep.ElapsedSeconds = rep.Elapsed.Seconds() }()
	if o.Fix {
		rep.Fixed = &Fixed{}
	}

	r := &run{s3c: s3c, rows: rows, o: o, rep: rep}
	if o.Rate > 0 {
		// A page's worth of burst: each page is listed at once, then paid for.
		r.limiter = rate.NewLimiter(rate.Limit(o.Rate), o.PageSize)
	}
	err = r.compare(ctx)
	if len(r.gone) > 0 {
		// The rows waiting for their HEAD were passed by the listing (or the listing ended): they
		// are gone whatever stopped the run afterwards, and are checked unless ctx ended.
		if ctx.Err() != nil {
			err = cmp.Or(err, ctx.Err())
		} else if ferr := r.flushGone(ctx); ferr != nil {
			err = errors.Join(err, ferr)
		}
	}
	if err != nil {
		return rep, err
	}
	rep.Complete = true
	return rep, nil
}

// run is one reconcile: the report and the fix applied as the comparison goes.
type run struct {
	s3c     S3API
	rows    Rows
	o       Options
	limiter *rate.Limiter
	rep     *Report
	// gone are rows proven gone (the listing passed their keys) whose HeadObject is still to do.
	gone []string
}

// wait takes n tokens from l (nil: no limit).
func wait(ctx context.Context, l *rate.Limiter, n int) error {
	if l == nil || n == 0 {
		return ctx.Err()
	}
	if err := l.WaitN(ctx, min(n, l.Burst())); err != nil {
		return fmt.Errorf("rate limit: %w", err)
	}
	return nil
}

// compare merges the sorted S3 listing with the sorted rows, and hands each difference to the
// report, the sink and the fix as it is found.
func (r *run) compare(ctx context.Context) error {
	o, rep := r.o, r.rep
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	pages := make(chan []object, 2)
	var listErr error
	var wg sync.WaitGroup
	wg.Go(func() {
		defer close(pages)
		listErr = list(ctx, r.s3c, o, r.limiter, pages)
	})
	defer wg.Wait() // after cancel (deferred later, runs first)
	defer cancel()

	objs := &objectCursor{pages: pages}
	rc := &rowCursor{ctx: ctx, rows: r.rows, o: o}
	for {
		s, sok := objs.peek()
		if !sok && listErr != nil {
			// The listing stopped short (an error, or ctx ended): what it did not list is not gone.
			// listErr was set before the pages were closed.
			return listErr
		}
		row, rok, err := rc.peek()
		if err != nil {
			return err
		}
		if !sok && !rok {
			break
		}
		switch {
		case !rok || (sok && s.key < row.Key):
			rep.Listed++
			o.Progress.Add(1)
			if s.changedSince(rep.Started) {
				rep.Changed++ // uploaded during the run: its event may be on its way
			} else if err := r.missing(ctx, Missing{Key: s.key, ETag: normETag(s.etag), Size: s.size}); err != nil {
				return err
			}
			objs.next()
		case !sok || row.Key < s.key:
			// The listing is past row.Key (a greater key was listed, or the listing ended without
			// an error): the object is not in the bucket.
			rep.Rows++
			switch {
			case absent(row.Status):
				rep.InSync++
			case !row.UpdatedAt.Before(rep.Started):
				rep.Changed++
			default:
				if err := r.goneRow(ctx, Gone{Key: row.Key, RowStatus: row.Status}); err != nil {
					return err
				}
			}
			rc.next()
		default:
			rep.Listed++
			rep.Rows++
			o.Progress.Add(1)
			rowETag := normETag(aws.ToString(row.Etag))
			switch {
			case !row.UpdatedAt.Before(rep.Started) || s.changedSince(rep.Started):
				rep.Changed++
			case absent(row.Status) || rowETag != normETag(s.etag):
				if err := r.stale(ctx, Stale{Key: s.key, S3ETag: normETag(s.etag), RowETag: rowETag, RowStatus: row.Status}); err != nil {
					return err
				}
			default:
				rep.InSync++
			}
			objs.next()
			rc.next()
		}
	}
	cancel()
	wg.Wait()
	return listErr
}

// missing records an object without a row and, with Fix, enqueues its inspection.
func (r *run) missing(ctx context.Context, m Missing) error {
	r.rep.MissingCount++
	r.rep.Problems++
	if len(r.rep.Missing) < SampleSize {
		r.rep.Missing = append(r.rep.Missing, m)
	}
	if r.o.Sink != nil {
		if err := r.o.Sink.Missing(m); err != nil {
			return fmt.Errorf("report missing %q: %w", m.Key, err)
		}
	}
	return r.enqueue(ctx, m.Key)
}

// stale records a row that disagrees with its object and, with Fix, enqueues its inspection.
func (r *run) stale(ctx context.Context, s Stale) error {
	r.rep.StaleCount++
	r.rep.Problems++
	if len(r.rep.Stale) < SampleSize {
		r.rep.Stale = append(r.rep.Stale, s)
	}
	if r.o.Sink != nil {
		if err := r.o.Sink.Stale(s); err != nil {
			return fmt.Errorf("report stale %q: %w", s.Key, err)
		}
	}
	return r.enqueue(ctx, s.Key)
}

// goneRow records a row whose object the listing passed and, with Fix, queues it for its
// HeadObject (checked and marked goneChunk at a time).
func (r *run) goneRow(ctx context.Context, g Gone) error {
	r.rep.GoneCount++
	r.rep.Problems++
	if len(r.rep.Gone) < SampleSize {
		r.rep.Gone = append(r.rep.Gone, g)
	}
	if r.o.Sink != nil {
		if err := r.o.Sink.Gone(g); err != nil {
			return fmt.Errorf("report gone %q: %w", g.Key, err)
		}
	}
	if !r.o.Fix {
		return nil
	}
	r.gone = append(r.gone, g.Key)
	if len(r.gone) < goneChunk {
		return nil
	}
	return r.flushGone(ctx)
}

// absent reports whether a row status says the object is not there.
func absent(status string) bool { return status == "deleted" || status == "missing" }

// normETag strips quotes and case from an ETag.
func normETag(s string) string { return strings.ToLower(strings.Trim(s, `"`)) }

// list sends the bucket's objects under o.Prefix, page by page, and checks they come in byte order.
// With a limiter, each page is paid for (one token per object, at least one per request) before
// the next one is requested; the last page is not waited for. A listing stopped by ctx returns
// ctx's error: it is not a complete one; nor is one whose store repeats a continuation token.
//
// The keys are asked for URL-encoded (EncodingType url) and decoded here: S3 allows keys XML 1.0
// cannot carry (control characters, U+FFFE, U+FFFF), which would otherwise fail the listing's
// decoding, or come back altered (MinIO answers U+FFFF as U+FFFD), and never converge.
func list(ctx context.Context, s3c S3API, o Options, limiter *rate.Limiter, out chan<- []object) error {
	p := s3.NewListObjectsV2Paginator(s3c, &s3.ListObjectsV2Input{
		Bucket: aws.String(o.Bucket), Prefix: aws.String(o.Prefix), MaxKeys: aws.Int32(int32(o.PageSize)),
		EncodingType: types.EncodingTypeUrl,
	})
	prev, token := "", ""
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("list bucket %q: %w", o.Bucket, ctx.Err())
			}
			return fmt.Errorf("list bucket %q: %w", o.Bucket, err)
		}
		if next := aws.ToString(page.NextContinuationToken); aws.ToBool(page.IsTruncated) && next != "" {
			if next == token {
				// The paginator would stop here as if the listing were complete (or, told not to,
				// ask for the same page forever): neither is a listing to mark rows gone by.
				return fmt.Errorf("list bucket %q: the store answered the continuation token %q twice: the listing is not complete", o.Bucket, next)
			}
			token = next
		}
		encoded := page.EncodingType == types.EncodingTypeUrl
		objs := make([]object, 0, len(page.Contents))
		for _, c := range page.Contents {
			key := aws.ToString(c.Key)
			if encoded {
				if key, err = url.QueryUnescape(key); err != nil {
					return fmt.Errorf("list bucket %q: decode key %q: %w", o.Bucket, aws.ToString(c.Key), err)
				}
			}
			if key <= prev && prev != "" {
				return fmt.Errorf("list bucket %q: key %q came after %q: the listing is not in byte order (directory buckets are not supported)", o.Bucket, key, prev)
			}
			prev = key
			objs = append(objs, object{key: key, etag: aws.ToString(c.ETag), size: aws.ToInt64(c.Size), modified: aws.ToTime(c.LastModified)})
		}
		select {
		case out <- objs:
		case <-ctx.Done():
			return fmt.Errorf("list bucket %q: %w", o.Bucket, ctx.Err())
		}
		if !p.HasMorePages() {
			break
		}
		if err := wait(ctx, limiter, max(len(objs), 1)); err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("list bucket %q: %w", o.Bucket, ctx.Err())
			}
			// The limiter refuses a wait that would pass the context's deadline before the
			// deadline comes: the listing is cut short, not complete.
			return fmt.Errorf("list bucket %q: %w", o.Bucket, err)
		}
	}
	return nil
}

// objectCursor walks the listed pages.
type objectCursor struct {
	pages <-chan []object
	cur   []object
	done  bool
}

func (c *objectCursor) peek() (object, bool) {
	for len(c.cur) == 0 && !c.done {
		page, ok := <-c.pages
		if !ok {
			c.done = true
			break
		}
		c.cur = page
	}
	if len(c.cur) == 0 {
		return object{}, false
	}
	return c.cur[0], true
}

func (c *objectCursor) next() { c.cur = c.cur[1:] }

// rowCursor walks the rows in keyset pages.
type rowCursor struct {
	ctx   context.Context
	rows  Rows
	o     Options
	cur   []dbq.OpsListObjectsRow
	after string
	done  bool
}

func (c *rowCursor) peek() (dbq.OpsListObjectsRow, bool, error) {
	if len(c.cur) == 0 && !c.done {
		page, err := c.rows.OpsListObjects(c.ctx, dbq.OpsListObjectsParams{
			Bucket: c.o.Bucket, AfterKey: c.after, Prefix: c.o.Prefix, PrefixEnd: store.PrefixEnd(c.o.Prefix),
			MaxRows: int32(c.o.PageSize),
		})
		if err != nil {
			return dbq.OpsListObjectsRow{}, false, fmt.Errorf("list rows of bucket %q after %q: %w", c.o.Bucket, c.after, err)
		}
		c.cur = page
		c.done = len(page) < c.o.PageSize
		if len(page) > 0 {
			c.after = page[len(page)-1].Key
		}
	}
	if len(c.cur) == 0 {
		return dbq.OpsListObjectsRow{}, false, nil
	}
	return c.cur[0], true, nil
}

func (c *rowCursor) next() { c.cur = c.cur[1:] }

// enqueue enqueues the inspection of key (with Fix).
func (r *run) enqueue(ctx context.Context, key string) error {
	if !r.o.Fix {
		return nil
	}
	f := r.rep.Fixed
	err := r.o.Enqueuer.EnqueueInspect(ctx, r.o.Bucket, key)
	switch {
	case err == nil:
		f.Enqueued++
	case errors.Is(err, ErrAlreadyQueued):
		f.AlreadyQueued++
	case errors.Is(err, ErrSkipKey):
		f.EnqueueSkipped++
		r.o.Log.WarnContext(ctx, "object cannot be enqueued for inspection", "key", key, "err", err)
	default:
		return fmt.Errorf("enqueue inspection of %q: %w", key, err)
	}
	return nil
}

// flushGone checks the rows waiting in r.gone with HeadObject and marks those whose object is
// really absent missing. The HEADs are observations: the database's time read before them stamps
// the rows they mark, which a later observation (an event processed meanwhile) outranks.
//
// A HEAD that fails for its key alone (not retryable: a 403, a 400, while the bucket answers) is
// counted in HeadFailed, logged and skipped: one such key does not hold back every later gone row
// on every run. A retryable failure (an outage, throttling past the SDK's retries) or the context
// ending stops the check, after the rows confirmed before it are marked.
func (r *run) flushGone(ctx context.Context) error {
	if len(r.gone) == 0 {
		return nil
	}
	keys := r.gone
	r.gone = nil
	f := r.rep.Fixed
	observed, err := r.rows.OpsNow(ctx)
	if err != nil {
		return fmt.Errorf("read database time: %w", err)
	}
	var confirmed []string
	var failed []HeadError
	var stop error
check:
	for _, key := range keys {
		if err := wait(ctx, r.limiter, 1); err != nil {
			stop = err
			break
		}
		_, err := r.s3c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(r.o.Bucket), Key: aws.String(key)})
		switch {
		case err == nil:
			f.Reappeared++
		case objstore.IsNotFound(err):
			confirmed = append(confirmed, key)
		case ctx.Err() != nil || objstore.IsRetryable(err):
			stop = fmt.Errorf("head %q: %w", key, err)
			break check
		default:
			failed = append(failed, HeadError{Key: key, Error: err.Error()})
		}
	}
	if ctx.Err() != nil {
		return cmp.Or(stop, ctx.Err())
	}
	if len(confirmed)+len(failed) == 0 {
		return stop
	}
	// A HEAD's 404 has no body: nothing in it tells a missing key from a missing bucket, a wrong
	// endpoint or a proxy's own 404. Nor does a HEAD's 403 tell a key refused from credentials
	// refused. The rows are marked missing, and the failures taken for their keys' own, only once
	// the bucket is found after those answers (as objstore.Objects.Head does for the consumer).
	if _, err := r.s3c.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String(r.o.Bucket)}); err != nil {
		err = fmt.Errorf("head bucket %q to confirm %d objects gone (none marked missing): %w", r.o.Bucket, len(confirmed), err)
		if len(failed) > 0 {
			err = fmt.Errorf("%w; head %q: %s", err, failed[0].Key, failed[0].Error)
		}
		return errors.Join(stop, err)
	}
	for _, h := range failed {
		f.HeadFailed++
		if len(f.HeadErrors) < SampleSize {
			f.HeadErrors = append(f.HeadErrors, h)
		}
		r.o.Log.WarnContext(ctx, "gone row not checked: its HeadObject failed", "key", h.Key, "err", h.Error)
	}
	if len(confirmed) == 0 {
		return stop
	}
	marked, err := r.rows.OpsMarkMissing(ctx, dbq.OpsMarkMissingParams{
		Bucket: r.o.Bucket, Keys: confirmed, ChangedBefore: r.rep.Started, ObservedAt: observed,
	})
	if err != nil {
		return errors.Join(stop, fmt.Errorf("mark %d rows missing: %w", len(confirmed), err))
	}
	f.MarkedMissing += len(marked)
	f.Unchanged += len(confirmed) - len(marked)
	return stop
}
