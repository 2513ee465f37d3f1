package jobs

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
	"github.com/google/uuid"

	"github.com/intakehq/intake/internal/objstore"
	"github.com/intakehq/intake/internal/store/dbq"
)

// S3API is the part of the S3 client the multipart jobs use.
type S3API interface {
	ListMultipartUploads(ctx context.Context, in *s3.ListMultipartUploadsInput, opts ...func(*s3.Options)) (*s3.ListMultipartUploadsOutput, error)
	ListParts(ctx context.Context, in *s3.ListPartsInput, opts ...func(*s3.Options)) (*s3.ListPartsOutput, error)
	AbortMultipartUpload(ctx context.Context, in *s3.AbortMultipartUploadInput, opts ...func(*s3.Options)) (*s3.AbortMultipartUploadOutput, error)
}

var _ S3API = (*s3.Client)(nil)

// Recorder is the part of the store the multipart jobs use (satisfied by *dbq.Queries).
type Recorder interface {
	RecordMultipartAbort(ctx context.Context, arg dbq.RecordMultipartAbortParams) (dbq.RecordMultipartAbortRow, error)
	StalePendingMultipart(ctx context.Context, arg dbq.StalePendingMultipartParams) ([]dbq.StalePendingMultipartRow, error)
}

var _ Recorder = (*dbq.Queries)(nil)

// Abort outcomes (column multipart_aborts.outcome).
const (
	// AbortAborted: the upload was open and is now aborted.
	AbortAborted = "aborted"
	// AbortGone: the upload no longer existed (completed, or aborted by someone else).
	AbortGone = "gone"
)

// MultipartConfig configures [Multipart].
type MultipartConfig struct {
	// S3 is the S3 client (required).
	S3 S3API
	// Store records aborts and finds known uploads (required).
	Store Recorder
	// Log receives the jobs' logs (default: discard).
	Log *slog.Logger
	// Metrics, when set, counts aborts and reclaimed bytes.
	Metrics *Metrics
	// Concurrency bounds the aborts a sweep runs at once (default 16).
	Concurrency int
	// PageSize is the MaxUploads of each ListMultipartUploads call (default 1000, the S3 maximum).
	PageSize int32
	// ServerSidePrefix passes the sweep's prefix to ListMultipartUploads. Leave it off for MinIO,
	// which lists nothing for a folder prefix; the prefix is always applied client-side as well.
	ServerSidePrefix bool
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Multipart aborts multipart uploads (one at a deadline, or a whole bucket's stale ones) and
// records what it did.
type Multipart struct {
	s3               S3API
	store            Recorder
	log              *slog.Logger
	metrics          *Metrics
	concurrency      int
	pageSize         int32
	serverSidePrefix bool
	now              func() time.Time
}

// NewMultipart checks cfg and returns a Multipart.
func NewMultipart(cfg MultipartConfig) (*Multipart, error) {
	var errs []error
	if cfg.S3 == nil {
		errs = append(errs, errors.New("S3 client required"))
	}
	if cfg.Store == nil {
		errs = append(errs, errors.New("store required"))
	}
	if cfg.Concurrency < 0 || cfg.Concurrency > 1024 {
		errs = append(errs, fmt.Errorf("concurrency %d not in 1..1024", cfg.Concurrency))
	}
	if cfg.PageSize < 0 || cfg.PageSize > 1000 {
		errs = append(errs, fmt.Errorf("page size %d not in 1..1000", cfg.PageSize))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("multipart jobs: %w", err)
	}
	return &Multipart{
		s3: cfg.S3, store: cfg.Store, metrics: cfg.Metrics, serverSidePrefix: cfg.ServerSidePrefix,
		log:         cmp.Or(cfg.Log, slog.New(slog.DiscardHandler)),
		concurrency: cmp.Or(cfg.Concurrency, 16),
		pageSize:    cmp.Or(cfg.PageSize, 1000),
		now:         orNow(cfg.Now),
	}, nil
}

func orNow(now func() time.Time) func() time.Time {
	if now == nil {
		return time.Now
	}
	return now
}

// AbortRequest names one upload to abort.
type AbortRequest struct {
	// Bucket, Key and UploadID identify the upload.
	Bucket, Key, UploadID string
	// Initiated is when the upload started, if known (else the intent's created_at is recorded).
	Initiated *time.Time
	// Reason is ReasonDeadline, ReasonSweep or ReasonAPI.
	Reason string
}

// AbortResult says what Abort did.
type AbortResult struct {
	// Outcome is AbortAborted or AbortGone.
	Outcome string
	// Bytes is the sum of the upload's part sizes before the abort (when BytesKnown).
	Bytes int64
	// BytesKnown is false when ListParts failed (the abort still went ahead).
	BytesKnown bool
	// IntentAborted is true when intake's intent for the upload moved from pending to aborted.
	IntentAborted bool
}

// Abort sums the upload's parts, aborts it and records the outcome. An upload that no longer exists
// is "gone", not an error. Errors from S3 or PostgreSQL are returned wrapped; objstore.IsRetryable
// tells whether trying again may help.
func (m *Multipart) Abort(ctx context.Context, req AbortRequest) (AbortResult, error) {
	res := AbortResult{Outcome: AbortAborted}
	bytes, err := m.partBytes(ctx, req)
	switch {
	case err == nil:
		res.Bytes, res.BytesKnown = bytes, true
	case objstore.IsNotFound(err):
		res.Outcome = AbortGone
	default:
		if ctx.Err() != nil {
			return res, fmt.Errorf("list parts of upload %s of %q: %w", req.UploadID, req.Key, err)
		}
		m.log.WarnContext(ctx, "list parts failed; aborting without counting bytes",
			"bucket", req.Bucket, "key", req.Key, "upload_id", req.UploadID, "err", err)
	}
	if res.Outcome == AbortAborted {
		_, err := m.s3.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{
			Bucket: aws.String(req.Bucket), Key: aws.String(req.Key), UploadId: aws.String(req.UploadID),
		})
		switch {
		case err == nil:
		case objstore.IsNotFound(err):
			res.Outcome, res.Bytes, res.BytesKnown = AbortGone, 0, false
		default:
			return res, fmt.Errorf("abort upload %s of %q: %w", req.UploadID, req.Key, err)
		}
	}
	if res.Outcome == AbortGone {
		res.Bytes, res.BytesKnown = 0, false
	}
	row, err := m.record(ctx, req, res.Outcome)
	if err != nil {
		// The abort itself is done; a retry would find the upload gone and record that instead.
		return res, fmt.Errorf("record %s of upload %s: %w", res.Outcome, req.UploadID, err)
	}
	res.IntentAborted = row.IntentsAborted > 0
	if res.Outcome == AbortAborted {
		m.metrics.aborted(req.Reason, res.Bytes, res.BytesKnown)
	}
	return res, nil
}

// partBytes sums the sizes of the upload's parts, page by page.
func (m *Multipart) partBytes(ctx context.Context, req AbortRequest) (int64, error) {
	var total int64
	in := &s3.ListPartsInput{Bucket: aws.String(req.Bucket), Key: aws.String(req.Key), UploadId: aws.String(req.UploadID)}
	for page := 0; ; page++ {
		out, err := m.s3.ListParts(ctx, in)
		if err != nil {
			return 0, err
		}
		for _, p := range out.Parts {
			total += aws.ToInt64(p.Size)
		}
		next := aws.ToString(out.NextPartNumberMarker)
		if !aws.ToBool(out.IsTruncated) || next == "" || next == aws.ToString(in.PartNumberMarker) || page > 10 {
			return total, nil // S3 allows 10,000 parts: at most 10 pages of 1,000.
		}
		in.PartNumberMarker = aws.String(next)
	}
}

// record writes the multipart_aborts row (and moves the intent), retrying briefly: the S3 side is
// already done, and a retried task would see the upload gone and lose the "aborted" outcome.
func (m *Multipart) record(ctx context.Context, req AbortRequest, outcome string) (dbq.RecordMultipartAbortRow, error) {
	arg := dbq.RecordMultipartAbortParams{
		Bucket: req.Bucket, Key: req.Key, UploadID: req.UploadID, Initiated: req.Initiated,
		Reason: req.Reason, Outcome: outcome,
	}
	var err error
	for attempt, wait := 0, 100*time.Millisecond; attempt < 4; attempt, wait = attempt+1, wait*4 {
		var row dbq.RecordMultipartAbortRow
		if row, err = m.store.RecordMultipartAbort(ctx, arg); err == nil {
			return row, nil
		}
		select {
		case <-ctx.Done():
			return row, errors.Join(err, ctx.Err())
		case <-time.After(wait):
		}
	}
	return dbq.RecordMultipartAbortRow{}, err
}

// SweepOptions says what to sweep.
type SweepOptions struct {
	// Bucket is listed whole (required).
	Bucket string
	// Prefix, when set, limits the sweep to keys starting with it.
	Prefix string
	// OlderThan: uploads initiated before now-OlderThan are aborted (required, positive).
	OlderThan time.Duration
	// DryRun finds the candidates (calling OnCandidate) and aborts nothing.
	DryRun bool
	// OnCandidate, when set, is called for each stale upload, one at a time, before it is aborted
	// (or instead of it, in a dry run).
	OnCandidate func(Candidate)
}

// Candidate is an upload the sweep found stale.
type Candidate struct {
	// Key and UploadID identify the upload.
	Key, UploadID string
	// Initiated is when the upload started (the intent's creation time in fallback mode).
	Initiated time.Time
	// Known is true when the candidate came from PostgreSQL (fallback mode) rather than the listing.
	Known bool
}

// SweepReport says what a sweep saw and did.
type SweepReport struct {
	// Bucket, Prefix and Cutoff echo the sweep's scope: uploads initiated before Cutoff were stale.
	Bucket, Prefix string
	Cutoff         time.Time
	// Listed counts the uploads ListMultipartUploads returned (whole bucket, all pages).
	Listed int
	// Stale counts the candidates: listed uploads under Prefix initiated before Cutoff, or in
	// fallback mode the known pending intents.
	Stale int
	// Aborted, Gone and Failed count the candidates' outcomes (zero in a dry run).
	Aborted, Gone, Failed int
	// BytesReclaimed sums the part sizes of the aborted uploads, where known.
	BytesReclaimed int64
	// Fallback is true when the store listed nothing and the uploads PostgreSQL knows were swept.
	Fallback bool
	// DryRun echoes the option.
	DryRun bool
	// Took is the sweep's duration.
	Took time.Duration
}

// Sweep lists every open multipart upload of the bucket (all pages, no server-side prefix unless
// configured), and aborts those under the prefix initiated before now-OlderThan, at most
// Concurrency at a time. When the store lists nothing but PostgreSQL knows stale pending multipart
// intents, it logs a warning and aborts those by id. It returns an error when listing fails or any
// abort failed (the report counts what was done); the successful aborts are recorded either way.
func (m *Multipart) Sweep(ctx context.Context, opts SweepOptions) (SweepReport, error) {
	start := m.now()
	rep := SweepReport{Bucket: opts.Bucket, Prefix: opts.Prefix, Cutoff: start.Add(-opts.OlderThan), DryRun: opts.DryRun}
	if opts.Bucket == "" || opts.OlderThan <= 0 {
		return rep, errors.New("sweep: bucket and a positive older-than are required")
	}
	log := m.log.With("bucket", opts.Bucket, "prefix", opts.Prefix, "cutoff", rep.Cutoff.UTC().Format(time.RFC3339))

	var (
		mu       sync.Mutex
		firstErr error
		wg       sync.WaitGroup
	)
	work := make(chan Candidate)
	if !opts.DryRun {
		for range m.concurrency {
			wg.Go(func() {
				for c := range work {
					initiated := c.Initiated
					res, err := m.Abort(ctx, AbortRequest{
						Bucket: opts.Bucket, Key: c.Key, UploadID: c.UploadID, Initiated: &initiated, Reason: ReasonSweep,
					})
					mu.Lock()
					switch {
					case err != nil:
						rep.Failed++
						if firstErr == nil {
							firstErr = err
						}
					case res.Outcome == AbortGone:
						rep.Gone++
					default:
						rep.Aborted++
						rep.BytesReclaimed += res.Bytes
					}
					mu.Unlock()
					if err != nil {
						log.WarnContext(ctx, "sweep: abort failed", "key", c.Key, "upload_id", c.UploadID, "err", err)
					}
				}
			})
		}
	}
	emit := func(c Candidate) bool {
		rep.Stale++
		if opts.OnCandidate != nil {
			opts.OnCandidate(c)
		}
		if opts.DryRun {
			return ctx.Err() == nil
		}
		select {
		case work <- c:
			return true
		case <-ctx.Done():
			return false
		}
	}

	listErr := m.list(ctx, opts, rep.Cutoff, &rep.Listed, emit)
	if listErr == nil && rep.Listed == 0 {
		listErr = m.fallback(ctx, log, opts, rep.Cutoff, &rep.Fallback, emit)
	}
	close(work)
	wg.Wait()
	rep.Took = m.now().Sub(start)

	attrs := []any{"listed", rep.Listed, "stale", rep.Stale, "aborted", rep.Aborted, "gone", rep.Gone,
		"failed", rep.Failed, "bytes_reclaimed", rep.BytesReclaimed, "fallback", rep.Fallback,
		"dry_run", rep.DryRun, "took", rep.Took}
	switch {
	case listErr != nil:
		return rep, fmt.Errorf("sweep %s: %w", opts.Bucket, listErr)
	case ctx.Err() != nil:
		return rep, fmt.Errorf("sweep %s: %w", opts.Bucket, ctx.Err())
	case firstErr != nil:
		log.WarnContext(ctx, "sweep finished with failures", attrs...)
		return rep, fmt.Errorf("sweep %s: %d of %d aborts failed, first: %w", opts.Bucket, rep.Failed, rep.Stale, firstErr)
	}
	if !opts.DryRun && m.metrics != nil {
		m.metrics.SweepLastSuccess.Set(float64(m.now().UnixNano()) / 1e9)
	}
	log.InfoContext(ctx, "sweep finished", attrs...)
	return rep, nil
}

// list pages through ListMultipartUploads and emits the stale uploads under the prefix.
func (m *Multipart) list(ctx context.Context, opts SweepOptions, cutoff time.Time, listed *int, emit func(Candidate) bool) error {
	in := &s3.ListMultipartUploadsInput{Bucket: aws.String(opts.Bucket), MaxUploads: aws.Int32(m.pageSize)}
	if m.serverSidePrefix && opts.Prefix != "" {
		in.Prefix = aws.String(opts.Prefix)
	}
	for {
		out, err := m.s3.ListMultipartUploads(ctx, in)
		if err != nil {
			return fmt.Errorf("list multipart uploads (after key %q): %w", aws.ToString(in.KeyMarker), err)
		}
		*listed += len(out.Uploads)
		for _, u := range out.Uploads {
			key, id := aws.ToString(u.Key), aws.ToString(u.UploadId)
			if id == "" || u.Initiated == nil || !strings.HasPrefix(key, opts.Prefix) || !u.Initiated.Before(cutoff) {
				continue
			}
			if !emit(Candidate{Key: key, UploadID: id, Initiated: *u.Initiated}) {
				return ctx.Err()
			}
		}
		if !aws.ToBool(out.IsTruncated) {
			return nil
		}
		nextKey, nextID := aws.ToString(out.NextKeyMarker), aws.ToString(out.NextUploadIdMarker)
		if nextKey == "" || (nextKey == aws.ToString(in.KeyMarker) && nextID == aws.ToString(in.UploadIdMarker)) {
			return fmt.Errorf("list multipart uploads: truncated page without a new marker (after key %q)", nextKey)
		}
		in.KeyMarker, in.UploadIdMarker = aws.String(nextKey), aws.String(nextID)
	}
}

// fallback emits the stale pending multipart intents PostgreSQL knows, for stores that list no
// uploads. It is only called when the listing was empty.
func (m *Multipart) fallback(ctx context.Context, log *slog.Logger, opts SweepOptions, cutoff time.Time, used *bool, emit func(Candidate) bool) error {
	arg := dbq.StalePendingMultipartParams{
		Bucket: opts.Bucket, Cutoff: cutoff, Prefix: opts.Prefix,
		AfterCreatedAt: time.Unix(0, 0).UTC(), AfterID: uuid.Nil, MaxRows: 500,
	}
	for {
		rows, err := m.store.StalePendingMultipart(ctx, arg)
		if err != nil {
			return fmt.Errorf("find known stale multipart uploads: %w", err)
		}
		if len(rows) == 0 {
			return nil
		}
		if !*used {
			*used = true
			log.WarnContext(ctx, "object store listed no multipart uploads while PostgreSQL knows pending multipart intents older than the threshold; "+
				"sweeping the uploads PostgreSQL knows by upload id (this store may not list multipart uploads; uploads intake did not create are not found this way)",
				"known", len(rows))
		}
		for _, r := range rows {
			if !emit(Candidate{Key: r.Key, UploadID: r.UploadID, Initiated: r.CreatedAt, Known: true}) {
				return ctx.Err()
			}
		}
		last := rows[len(rows)-1]
		arg.AfterCreatedAt, arg.AfterID = last.CreatedAt, last.ID
	}
}
