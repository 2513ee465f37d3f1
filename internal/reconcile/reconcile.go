package reconcile

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"golang.org/x/time/rate"

	"github.com/intakehq/intake/internal/objstore"
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
	// Log receives warnings (default: discarded).
	Log *slog.Logger
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
	Changed  int       `json:"changed_during_run"`
	Missing  []Missing `json:"missing"`
	Stale    []Stale   `json:"stale"`
	Gone     []Gone    `json:"gone"`
	Fixed    *Fixed    `json:"fixed,omitempty"`
	Problems int       `json:"problems"`
}

// Differences is how many keys the report lists as missing, stale or gone.
func (r *Report) Differences() int { return len(r.Missing) + len(r.Stale) + len(r.Gone) }

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

// Run lists the bucket, compares it with the rows and, with o.Fix, repairs. The report is valid
// (what was seen so far) even with an error.
func Run(ctx context.Context, s3c S3API, rows Rows, o Options) (*Report, error) {
	if o.Bucket == "" {
		return nil, errors.New("bucket: required (--bucket or INTAKE_BUCKET)")
	}
	if o.Fix && o.Enqueuer == nil {
		return nil, errors.New("fix: no enqueuer")
	}
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
	rep := &Report{Bucket: o.Bucket, Prefix: o.Prefix, Started: start, Missing: []Missing{}, Stale: []Stale{}, Gone: []Gone{}}
	defer func() { rep.Elapsed = time.Since(began); rep.ElapsedSeconds = rep.Elapsed.Seconds() }()

	var limiter *rate.Limiter
	if o.Rate > 0 {
		// A page's worth of burst: each page is listed at once, then paid for.
		limiter = rate.NewLimiter(rate.Limit(o.Rate), o.PageSize)
	}
	if err := compare(ctx, s3c, rows, o, limiter, rep); err != nil {
		return rep, err
	}
	rep.Problems = len(rep.Missing) + len(rep.Stale) + len(rep.Gone)
	if o.Fix {
		rep.Fixed = &Fixed{}
		if err := fix(ctx, s3c, rows, o, limiter, rep); err != nil {
			return rep, err
		}
	}
	return rep, nil
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

// compare merges the sorted S3 listing with the sorted rows.
func compare(ctx context.Context, s3c S3API, rows Rows, o Options, limiter *rate.Limiter, rep *Report) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	pages := make(chan []object, 2)
	var listErr error
	var wg sync.WaitGroup
	wg.Go(func() {
		defer close(pages)
		listErr = list(ctx, s3c, o, limiter, pages)
	})
	defer wg.Wait() // after cancel (deferred later, runs first)
	defer cancel()

	objs := &objectCursor{pages: pages}
	rc := &rowCursor{ctx: ctx, rows: rows, o: o}
	for {
		s, sok := objs.peek()
		if !sok && listErr != nil {
			// The listing stopped short (an error, or ctx ended): what it did not list is not gone.
			// listErr was set before the pages were closed.
			return listErr
		}
		r, rok, err := rc.peek()
		if err != nil {
			return err
		}
		if !sok && !rok {
			break
		}
		switch {
		case !rok || (sok && s.key < r.Key):
			rep.Listed++
			o.Progress.Add(1)
			if s.changedSince(rep.Started) {
				rep.Changed++ // uploaded during the run: its event may be on its way
			} else {
				rep.Missing = append(rep.Missing, Missing{Key: s.key, ETag: normETag(s.etag), Size: s.size})
			}
			objs.next()
		case !sok || r.Key < s.key:
			rep.Rows++
			switch {
			case absent(r.Status):
				rep.InSync++
			case !r.UpdatedAt.Before(rep.Started):
				rep.Changed++
			default:
				rep.Gone = append(rep.Gone, Gone{Key: r.Key, RowStatus: r.Status})
			}
			rc.next()
		default:
			rep.Listed++
			rep.Rows++
			o.Progress.Add(1)
			rowETag := normETag(aws.ToString(r.Etag))
			switch {
			case !r.UpdatedAt.Before(rep.Started) || s.changedSince(rep.Started):
				rep.Changed++
			case absent(r.Status) || rowETag != normETag(s.etag):
				rep.Stale = append(rep.Stale, Stale{Key: s.key, S3ETag: normETag(s.etag), RowETag: rowETag, RowStatus: r.Status})
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

// absent reports whether a row status says the object is not there.
func absent(status string) bool { return status == "deleted" || status == "missing" }

// normETag strips quotes and case from an ETag.
func normETag(s string) string { return strings.ToLower(strings.Trim(s, `"`)) }

// list sends the bucket's objects under o.Prefix, page by page, and checks they come in byte order.
// With a limiter, each page is paid for (one token per object) before the next one is requested.
// A listing stopped by ctx returns ctx's error: it is not a complete one.
func list(ctx context.Context, s3c S3API, o Options, limiter *rate.Limiter, out chan<- []object) error {
	p := s3.NewListObjectsV2Paginator(s3c, &s3.ListObjectsV2Input{
		Bucket: aws.String(o.Bucket), Prefix: aws.String(o.Prefix), MaxKeys: aws.Int32(int32(o.PageSize)),
	})
	prev := ""
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("list bucket %q: %w", o.Bucket, ctx.Err())
			}
			return fmt.Errorf("list bucket %q: %w", o.Bucket, err)
		}
		objs := make([]object, 0, len(page.Contents))
		for _, c := range page.Contents {
			key := aws.ToString(c.Key)
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
		if err := wait(ctx, limiter, len(objs)); err != nil {
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
			Bucket: c.o.Bucket, AfterKey: c.after, Prefix: c.o.Prefix, MaxRows: int32(c.o.PageSize),
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

// fix enqueues inspections of missing and stale objects and marks gone rows missing. The HEADs that
// confirm a gone object are observations: the database's time read before them stamps the rows
// they mark, which a later observation (an event processed meanwhile) outranks.
func fix(ctx context.Context, s3c S3API, rows Rows, o Options, limiter *rate.Limiter, rep *Report) error {
	keys := make([]string, 0, len(rep.Missing)+len(rep.Stale))
	for _, m := range rep.Missing {
		keys = append(keys, m.Key)
	}
	for _, s := range rep.Stale {
		keys = append(keys, s.Key)
	}
	for _, key := range keys {
		err := o.Enqueuer.EnqueueInspect(ctx, o.Bucket, key)
		switch {
		case err == nil:
			rep.Fixed.Enqueued++
		case errors.Is(err, ErrAlreadyQueued):
			rep.Fixed.AlreadyQueued++
		case errors.Is(err, ErrSkipKey):
			rep.Fixed.EnqueueSkipped++
			o.Log.Warn("object cannot be enqueued for inspection", "key", key, "err", err)
		default:
			return fmt.Errorf("enqueue inspection of %q: %w", key, err)
		}
	}

	if len(rep.Gone) == 0 {
		return nil
	}
	observed, err := rows.OpsNow(ctx)
	if err != nil {
		return fmt.Errorf("read database time: %w", err)
	}
	var confirmed []string
	for _, g := range rep.Gone {
		if err := wait(ctx, limiter, 1); err != nil {
			return err
		}
		_, err := s3c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(o.Bucket), Key: aws.String(g.Key)})
		switch {
		case err == nil:
			rep.Fixed.Reappeared++
		case objstore.IsNotFound(err):
			confirmed = append(confirmed, g.Key)
		default:
			return fmt.Errorf("head %q: %w", g.Key, err)
		}
	}
	if len(confirmed) > 0 {
		// A HEAD's 404 has no body: nothing in it tells a missing key from a missing bucket, a
		// wrong endpoint or a proxy's own 404. The rows are marked missing only once the bucket
		// is found after those answers (as objstore.Objects.Head does for the consumer).
		if _, err := s3c.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String(o.Bucket)}); err != nil {
			return fmt.Errorf("head bucket %q to confirm %d objects gone (none marked missing): %w", o.Bucket, len(confirmed), err)
		}
	}
	for start := 0; start < len(confirmed); start += 500 {
		chunk := confirmed[start:min(start+500, len(confirmed))]
		marked, err := rows.OpsMarkMissing(ctx, dbq.OpsMarkMissingParams{
			Bucket: o.Bucket, Keys: chunk, ChangedBefore: rep.Started, ObservedAt: observed,
		})
		if err != nil {
			return fmt.Errorf("mark %d rows missing: %w", len(chunk), err)
		}
		rep.Fixed.MarkedMissing += len(marked)
		rep.Fixed.Unchanged += len(chunk) - len(marked)
	}
	return nil
}
