package multipart

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
	"github.com/google/uuid"

	"github.com/intakehq/intake/internal/objstore"
	"github.com/intakehq/intake/worker/tasks"
)

// SweepOptions say what to sweep.
type SweepOptions struct {
	// Bucket is listed whole (required).
	Bucket string
	// Prefix, when set, limits the sweep to keys starting with it.
	Prefix string
	// OlderThan: uploads intake did not create are aborted when initiated before now-OlderThan
	// (required, positive). intake's own uploads are aborted at their deadline instead, whatever
	// their age.
	OlderThan time.Duration
	// DryRun finds the candidates (calling OnCandidate) and aborts nothing.
	DryRun bool
	// OnCandidate, when set, is called for each upload to abort, one at a time, before it is
	// aborted (or instead of it, in a dry run).
	OnCandidate func(Candidate)
	// Inspect, when set, is called for each of intake's uploads the sweep finds completed (an
	// object at its key after the abort). Such an upload's event, which would have inspected the
	// object and cancelled its abort, is late or was never sent (S3 may send none for a complete
	// that committed while its client's request failed), so the sweep has it inspected now instead
	// of leaving its verdict to the periodic reconcile. The jobs' sweep task and `intake sweep`
	// pass a function that enqueues an object:inspect task (the sweep task, without a client, the
	// pipeline). A failed inspection leaves the object to the reconcile.
	Inspect func(ctx context.Context, bucket, key string) error
	// InspectBestEffort logs a failed Inspect instead of counting it as a failed candidate and
	// failing the sweep. The jobs' sweep task sets it: its retry would list the whole bucket again
	// and not find that upload (its abort is recorded, S3 no longer lists it), so failing gains
	// nothing. `intake sweep` leaves it unset and exits non-zero, telling its user to reconcile.
	InspectBestEffort bool
}

// Candidate sources.
const (
	// SourceListing: the upload came from ListMultipartUploads.
	SourceListing = "listing"
	// SourcePostgres: an intake upload past its deadline that the listing did not show.
	SourcePostgres = "postgres"
	// SourceInterrupted: an abort begun more than ResumeAfter ago whose outcome was never recorded.
	SourceInterrupted = "interrupted"
)

// ResumeAfter is how old an abort still "aborting" must be for the sweep to resume it: older than
// any abort in flight (each of its S3 calls is bounded by the call timeout), so the sweep does not
// race the attempt that wrote it. A race would be harmless (two attempts record "aborted" as soon
// as either saw S3 accept the abort) but costs S3 calls.
const ResumeAfter = time.Minute

// Candidate is an upload the sweep aborts.
type Candidate struct {
	// Key and UploadID identify the upload.
	Key string `json:"key"`
	// UploadID is the S3 upload id.
	UploadID string `json:"upload_id"`
	// Initiated is when the upload started (the intent's creation time when it came from PostgreSQL).
	Initiated time.Time `json:"initiated"`
	// Known is true for intake's uploads; Deadline is then the deadline they passed.
	Known    bool       `json:"known"`
	Deadline *time.Time `json:"deadline,omitempty"`
	// Source is SourceListing, SourcePostgres or SourceInterrupted.
	Source string `json:"source"`
	// Reason is the interrupted attempt's reason (SourceInterrupted only): the abort is counted
	// under it.
	Reason string `json:"reason,omitempty"`

	// begun and prior: the abort's row is written (BeginAborts, or the interrupted attempt's), and
	// what it said before.
	begun bool
	prior string
}

// SweepReport says what a sweep saw and did.
type SweepReport struct {
	// Bucket and Prefix echo the sweep's scope; Now is when it started. Uploads intake did not
	// create were stale when initiated before Cutoff; intake's when their deadline plus
	// tasks.AbortGrace was before Now.
	Bucket string    `json:"bucket"`
	Prefix string    `json:"prefix"`
	Now    time.Time `json:"now"`
	Cutoff time.Time `json:"cutoff"`
	// Listed counts the uploads ListMultipartUploads returned (whole bucket, all pages).
	Listed int `json:"listed"`
	// Stale counts the candidates (both sources).
	Stale int `json:"stale"`
	// Overdue counts the candidates that came from PostgreSQL: intake's uploads past their deadline
	// the listing did not show (their abort task was lost, or the store lists no uploads).
	Overdue int `json:"overdue"`
	// Protected counts intake's uploads older than the cutoff but before their deadline plus
	// tasks.AbortGrace: kept.
	Protected int `json:"protected"`
	// Interrupted counts the candidates whose abort was begun before and never recorded (a process
	// killed between S3's answer and PostgreSQL), resumed by this sweep.
	Interrupted int `json:"interrupted"`
	// Aborted, Gone and Failed count the candidates' outcomes (zero in a dry run). A failed
	// inspection (SweepOptions.Inspect) counts as failed too, unless SweepOptions.InspectBestEffort;
	// its upload is recorded gone and its object left to the reconcile.
	Aborted int `json:"aborted"`
	Gone    int `json:"gone"`
	Failed  int `json:"failed"`
	// Completed counts intake's uploads found completed (an object at the key), among Gone or
	// Aborted; Inspected, those of them handed to SweepOptions.Inspect without error (inspected or
	// enqueued for inspection by the jobs' sweep task; enqueued by `intake sweep`).
	Completed int `json:"completed"`
	Inspected int `json:"inspected"`
	// BytesReclaimed sums the part sizes of the aborted uploads, where known.
	BytesReclaimed int64 `json:"bytes_reclaimed"`
	// DryRun echoes the option.
	DryRun bool `json:"dry_run"`
	// Took is the sweep's duration.
	Took time.Duration `json:"-"`
}

// overduePage is the page size of the PostgreSQL pass.
const overduePage = 500

// Sweep aborts what nobody will complete, in two passes, at most Concurrency aborts at a time:
//
//  1. It lists every open multipart upload of the bucket (all pages; no server-side prefix unless
//     configured) and keeps those under the prefix. For each page it asks PostgreSQL which are
//     intake's: those are aborted only once their deadline (the expires_at promised to the client)
//     and tasks.AbortGrace after it have passed, whatever their age (a complete accepted just
//     before the deadline may still run: see tasks.AbortGrace); the others, uploads intake did not
//     create, when initiated before now-OlderThan.
//  2. It asks PostgreSQL for intake's uploads past their deadline and its grace that the listing
//     did not show and no abort was recorded for (an abort task lost while Redis was down, a store
//     that lists no uploads), and aborts them by id.
//  3. It asks PostgreSQL for aborts begun more than ResumeAfter before it started and never
//     recorded (the process that sent them died first; S3 may no longer list the upload), and
//     aborts them again, by id: an upload S3 no longer knows is then recorded "aborted".
//
// Each PostgreSQL call is bounded by Config.StoreTimeout. It returns an error when listing fails or any
// abort failed (the report counts what was done); the successful aborts are recorded either way.
// The error joins every pass's failure and the candidates' (errors.Join; the candidates' first
// ten, and the first retryable and the first permanent one: see objstore.IsRetryable), so that
// errors.As and a part-by-part judgement see each of them.
// A successful sweep (not a dry run) sets intake_sweep_last_success_timestamp_seconds only when it
// covers the configured scope (Config.SweepBucket and SweepPrefix).
func (s *Service) Sweep(ctx context.Context, opts SweepOptions) (SweepReport, error) {
	start := s.now()
	rep := SweepReport{Bucket: opts.Bucket, Prefix: opts.Prefix, Now: start, Cutoff: start.Add(-opts.OlderThan), DryRun: opts.DryRun}
	if opts.Bucket == "" || opts.OlderThan <= 0 {
		return rep, errors.New("sweep: bucket and a positive older-than are required")
	}
	log := s.log.With("bucket", opts.Bucket, "prefix", opts.Prefix, "cutoff", rep.Cutoff.UTC().Format(time.RFC3339))

	var (
		mu     sync.Mutex
		failed candidateErrors // the candidates' failures, under mu
		wg     sync.WaitGroup
	)
	work := make(chan Candidate)
	// Closed once, and also when the listing's code panics (an OnCandidate callback), so that no
	// worker waits on it forever.
	closeWork := sync.OnceFunc(func() { close(work) })
	defer closeWork()
	if !opts.DryRun {
		for range s.concurrency {
			wg.Go(func() {
				for c := range work {
					req := AbortRequest{Bucket: opts.Bucket, Key: c.Key, UploadID: c.UploadID, Reason: cmp.Or(c.Reason, ReasonSweep), Foreign: !c.Known,
						Inspect: opts.Inspect, begun: c.begun, prior: c.prior}
					if !c.Initiated.IsZero() {
						req.Initiated = &c.Initiated
					}
					res, err := s.abortRecovered(ctx, req)
					var inspectErr *InspectError
					if errors.As(err, &inspectErr) {
						err = nil // the abort's outcome is recorded
					}
					mu.Lock()
					switch {
					case err != nil:
						rep.Failed++
						failed.add(err)
					case res.Outcome == OutcomeGone:
						rep.Gone++
					default:
						rep.Aborted++
						rep.BytesReclaimed += res.Bytes
					}
					if err == nil && res.Object == ObjectExists {
						rep.Completed++
						switch {
						case inspectErr != nil && !opts.InspectBestEffort:
							rep.Failed++
							failed.add(inspectErr)
						case res.Inspected:
							rep.Inspected++
						}
					}
					mu.Unlock()
					if err != nil {
						log.WarnContext(ctx, "sweep: abort failed", "key", c.Key, "upload_id", c.UploadID, "err", err)
					}
					if inspectErr != nil {
						log.WarnContext(ctx, "sweep: inspection of a completed upload failed; the reconcile will inspect it",
							"key", c.Key, "upload_id", c.UploadID, "err", inspectErr)
					}
				}
			})
		}
	}
	emitted := map[string]bool{}
	emit := func(c Candidate) bool {
		rep.Stale++
		emitted[c.UploadID] = true
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

	// PostgreSQL's passes run even when the listing failed (a store without ListMultipartUploads, a
	// policy without the permission, one 5xx in a long listing): they keep the promise that
	// intake's own uploads are aborted after their deadline, which does not rest on the listing.
	err := s.sweepListing(ctx, opts, &rep, emit)
	if err != nil {
		log.WarnContext(ctx, "sweep: listing failed; intake's overdue uploads are still swept from PostgreSQL", "err", err)
	}
	if ctx.Err() == nil {
		err = errors.Join(err, s.sweepOverdue(ctx, log, opts, &rep, emitted, emit))
	}
	if ctx.Err() == nil {
		err = errors.Join(err, s.sweepInterrupted(ctx, log, opts, &rep, emitted, emit))
	}
	closeWork()
	wg.Wait()
	rep.Took = s.now().Sub(start)

	attrs := []any{"listed", rep.Listed, "stale", rep.Stale, "overdue", rep.Overdue, "protected", rep.Protected, "interrupted", rep.Interrupted,
		"aborted", rep.Aborted, "gone", rep.Gone, "failed", rep.Failed, "completed", rep.Completed, "inspected", rep.Inspected, "bytes_reclaimed", rep.BytesReclaimed,
		"dry_run", rep.DryRun, "took", rep.Took}
	// The passes' errors and the candidates' are returned together: a caller that judges an error
	// part by part (the jobs' sweep task retries when any part may pass on a retry) must see a
	// transient abort failure beside a permanent one, or beside a listing refused for good.
	var candErr error
	if len(failed.errs) > 0 {
		failed.failed, failed.stale = rep.Failed, rep.Stale
		candErr = &failed
	}
	switch {
	case err != nil:
		if candErr != nil {
			log.WarnContext(ctx, "sweep finished with failures", attrs...)
		}
		return rep, fmt.Errorf("sweep %s: %w", opts.Bucket, errors.Join(err, candErr))
	case ctx.Err() != nil:
		return rep, fmt.Errorf("sweep %s: %w", opts.Bucket, ctx.Err())
	case candErr != nil:
		log.WarnContext(ctx, "sweep finished with failures", attrs...)
		return rep, fmt.Errorf("sweep %s: %w", opts.Bucket, candErr)
	}
	if !opts.DryRun && s.coversConfiguredScope(opts) {
		s.metrics.swept(s.now())
	}
	log.InfoContext(ctx, "sweep finished", attrs...)
	return rep, nil
}

// maxCandidateErrors is how many of its candidates' failures a sweep's error keeps in full, plus at
// most one to show a kind (retryable or not) the first ones lack (see candidateErrors): each is
// logged as it happens, and asynq stores the error's text in Redis with the task, so a sweep of a
// million failed aborts must not build a million-part error.
const maxCandidateErrors = 10

// candidateErrors are the failures of a sweep's candidates (an abort, or a completed upload's
// inspection): the first maxCandidateErrors, and the first retryable and the first permanent one
// (objstore.IsRetryable, or refused credentials, which a retry may find renewed) when not among them, so that a caller judging the error part by part
// (Unwrap() []error) sees either kind if any candidate failed with it. The others are counted.
type candidateErrors struct {
	failed, stale int // SweepReport.Failed and Stale, set when the sweep ends
	errs          []error
	dropped       int
	// retryable and permanent: errs holds an error of that kind.
	retryable, permanent bool
}

// add keeps err if it is among the first maxCandidateErrors or the first of its kind, and counts it
// otherwise.
func (e *candidateErrors) add(err error) {
	r := objstore.IsRetryable(err) || objstore.IsCredentialsError(err) // as worker/jobs judges them
	if len(e.errs) >= maxCandidateErrors && (r && e.retryable || !r && e.permanent) {
		e.dropped++
		return
	}
	e.errs = append(e.errs, err)
	e.retryable = e.retryable || r
	e.permanent = e.permanent || !r
}

// Error says how many candidates failed and gives the kept errors on one line, the first first.
func (e *candidateErrors) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d of %d candidates failed (an abort, or a completed upload's inspection), first: %v", e.failed, e.stale, e.errs[0])
	for _, err := range e.errs[1:] {
		fmt.Fprintf(&b, "; then: %v", err)
	}
	if e.dropped > 0 {
		fmt.Fprintf(&b, "; and %d more (logged)", e.dropped)
	}
	return b.String()
}

// Unwrap returns the kept errors.
func (e *candidateErrors) Unwrap() []error { return e.errs }

// coversConfiguredScope reports whether a sweep with opts sweeps at least what the configured
// sweep does (Config.SweepBucket and SweepPrefix; the whole of any bucket when unset): only such a
// sweep tells that the configured one would succeed.
func (s *Service) coversConfiguredScope(opts SweepOptions) bool {
	if s.sweepBucket == "" {
		return opts.Prefix == ""
	}
	return opts.Bucket == s.sweepBucket && strings.HasPrefix(s.sweepPrefix, opts.Prefix)
}

// abortRecovered is Abort with a panic (in the abort, or in the pipeline inspecting a completed
// upload's object) turned into the candidate's error: one object cannot take the process, and the
// asynq server's recovery does not reach the sweep's worker goroutines.
func (s *Service) abortRecovered(ctx context.Context, req AbortRequest) (res AbortResult, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("abort %s of %q panicked: %v", req.UploadID, req.Key, p)
		}
	}()
	return s.Abort(ctx, req)
}

// MaxListPages bounds the ListMultipartUploads pages one sweep follows (a hundred million uploads
// at S3's page size), so that a store whose markers never reach the end cannot keep a sweep
// listing forever.
const MaxListPages = 100_000

// sweepListing pages through ListMultipartUploads and emits the uploads to abort under the prefix:
// intake's past their deadline, the others older than the cutoff.
func (s *Service) sweepListing(ctx context.Context, opts SweepOptions, rep *SweepReport, emit func(Candidate) bool) error {
	// The keys are asked for URL-encoded and decoded here (decodeListing): S3 allows keys XML 1.0
	// cannot carry (control characters, U+FFFE, U+FFFF), which would otherwise make the page
	// undecodable at every sweep (the SDK: "illegal character code"), or come back as another key
	// (MinIO answers them as U+FFFD), whose abort finds no upload: recorded gone, left open. The
	// request's prefix and key marker are sent as they are (S3 and MinIO read them unencoded).
	in := &s3.ListMultipartUploadsInput{Bucket: aws.String(opts.Bucket), MaxUploads: aws.Int32(s.pageSize), EncodingType: types.EncodingTypeUrl}
	if s.serverSidePrefix && opts.Prefix != "" {
		in.Prefix = aws.String(opts.Prefix)
	}
	// The upload id markers given so far under the current key marker: S3 orders a key's uploads
	// by initiation, not by id, so only a repeat shows that the listing went back.
	seenIDs := map[string]bool{}
	for page := 1; ; page++ {
		if page > MaxListPages {
			return fmt.Errorf("list multipart uploads: more than %d pages (after key %q): the store's markers do not reach the end", MaxListPages, aws.ToString(in.KeyMarker))
		}
		cctx, cancel := s.callContext(ctx)
		out, err := s.s3.ListMultipartUploads(cctx, in)
		cancel()
		if err != nil {
			return fmt.Errorf("list multipart uploads (after key %q): %w", aws.ToString(in.KeyMarker), err)
		}
		if err := decodeListing(out); err != nil {
			return fmt.Errorf("list multipart uploads (after key %q): %w", aws.ToString(in.KeyMarker), err)
		}
		rep.Listed += len(out.Uploads)
		var uploads []Candidate
		var ids []string
		for _, u := range out.Uploads {
			key, id := aws.ToString(u.Key), aws.ToString(u.UploadId)
			if id == "" || u.Initiated == nil || !strings.HasPrefix(key, opts.Prefix) {
				continue
			}
			uploads = append(uploads, Candidate{Key: key, UploadID: id, Initiated: *u.Initiated, Source: SourceListing})
			ids = append(ids, id)
		}
		var known map[string]Intent
		if len(ids) > 0 {
			sctx, cancel := s.storeContext(ctx)
			known, err = s.store.Intents(sctx, opts.Bucket, ids)
			cancel()
			if err != nil {
				return storeErr("find intake's uploads among the listed ones", err)
			}
		}
		var stale []Candidate
		for _, c := range uploads {
			if intent, ok := known[c.UploadID]; ok {
				// Kept until its deadline and the grace after it have passed: a complete the API
				// accepted just before the deadline may still be running.
				if intent.ExpiresAt.Add(tasks.AbortGrace).After(rep.Now) {
					if c.Initiated.Before(rep.Cutoff) {
						rep.Protected++
					}
					continue
				}
				c.Known, c.Deadline = true, &intent.ExpiresAt
				if c.Key != intent.Key {
					// The upload id is intake's, and intake created it at the intent's key: a
					// listing that names another key (a store that alters the keys it cannot
					// send) would have the abort find no upload there, record it gone and
					// settle the intent while S3 keeps the upload. The abort is sent to the
					// intent's key (Abort's check of the key is skipped for the sweep's
					// candidates, whose row BeginAborts writes).
					s.log.WarnContext(ctx, "sweep: the listing names one of intake's uploads under another key than its intent's; aborting it at the intent's key",
						"bucket", opts.Bucket, "upload_id", c.UploadID, "listed_key", c.Key, "key", intent.Key)
					c.Key = intent.Key
				}
			} else if !knownAge(c.Initiated, rep.Now) || !c.Initiated.Before(rep.Cutoff) {
				// An upload intake did not create is judged by its age alone: one whose
				// initiation is unset (zero, or the Unix epoch some stores send for none) or
				// after the sweep started has no age to judge, and a fresh upload must not look
				// stale for it.
				continue
			}
			stale = append(stale, c)
		}
		if err := s.beginPage(ctx, opts, stale); err != nil {
			return err
		}
		for _, c := range stale {
			if !emit(c) {
				return ctx.Err()
			}
		}
		if !aws.ToBool(out.IsTruncated) {
			return nil
		}
		nextKey, nextID := nextMarkers(out)
		prevKey := aws.ToString(in.KeyMarker)
		if nextKey > prevKey {
			clear(seenIDs)
		}
		if nextKey == "" || nextKey < prevKey || (nextKey == prevKey && (nextID == "" || seenIDs[nextID])) {
			// A marker that does not move forward would list the same pages again, forever.
			return fmt.Errorf("list multipart uploads: truncated page without a new marker (after key %q and upload %q, next %q and %q)",
				prevKey, aws.ToString(in.UploadIdMarker), nextKey, nextID)
		}
		seenIDs[nextID] = true
		in.KeyMarker, in.UploadIdMarker = aws.String(nextKey), aws.String(nextID)
	}
}

// decodeListing decodes, in place, the keys of a page listed with EncodingType url (each upload's
// Key and NextKeyMarker; the other key fields are not read) and clears its EncodingType. A page
// without EncodingType url (a store that ignores the parameter) is left as it is. NextKeyMarker is
// given back decoded: S3 and MinIO read the key-marker parameter unencoded (an encoded one would
// resume at another key).
func decodeListing(out *s3.ListMultipartUploadsOutput) error {
	if out.EncodingType != types.EncodingTypeUrl {
		return nil
	}
	for i := range out.Uploads {
		if out.Uploads[i].Key == nil {
			continue
		}
		key, err := url.QueryUnescape(*out.Uploads[i].Key)
		if err != nil {
			return fmt.Errorf("decode key %q: %w", *out.Uploads[i].Key, err)
		}
		out.Uploads[i].Key = aws.String(key)
	}
	if out.NextKeyMarker != nil {
		key, err := url.QueryUnescape(*out.NextKeyMarker)
		if err != nil {
			return fmt.Errorf("decode next key marker %q: %w", *out.NextKeyMarker, err)
		}
		out.NextKeyMarker = aws.String(key)
	}
	out.EncodingType = ""
	return nil
}

// nextMarkers are the markers of the page after out: S3's NextKeyMarker and NextUploadIdMarker, or,
// from a store that answers a truncated page without them, the page's last upload (the markers S3
// would have given: the listing resumes after that key and upload id). A key marker without an
// upload id marker is not used either: it would resume after every upload of that key, skipping
// those the page did not hold.
func nextMarkers(out *s3.ListMultipartUploadsOutput) (key, uploadID string) {
	key, uploadID = aws.ToString(out.NextKeyMarker), aws.ToString(out.NextUploadIdMarker)
	if (key == "" || uploadID == "") && len(out.Uploads) > 0 {
		last := out.Uploads[len(out.Uploads)-1]
		key, uploadID = aws.ToString(last.Key), aws.ToString(last.UploadId)
	}
	return key, uploadID
}

// knownAge reports whether initiated, an upload's initiation as the store gave it, says how old
// the upload is at now: set (not zero, after the Unix epoch) and not after now.
func knownAge(initiated, now time.Time) bool {
	return initiated.Unix() > 0 && !initiated.After(now)
}

// sweepOverdue emits intake's uploads past their deadline and its grace (tasks.AbortGrace) that
// the listing did not show and no abort was recorded for. The pages follow (expires_at, id) and end
// with the uploads overdue when the sweep started.
func (s *Service) sweepOverdue(ctx context.Context, log *slog.Logger, opts SweepOptions, rep *SweepReport, emitted map[string]bool, emit func(Candidate) bool) error {
	q := OverdueQuery{Bucket: opts.Bucket, Prefix: opts.Prefix, Now: rep.Now.Add(-tasks.AbortGrace), AfterExpiresAt: time.Unix(0, 0).UTC(), AfterID: uuid.Nil, Limit: overduePage}
	for {
		sctx, cancel := s.storeContext(ctx)
		rows, err := s.store.Overdue(sctx, q)
		cancel()
		if err != nil {
			return storeErr("find intake's uploads past their deadline", err)
		}
		var overdue []Candidate
		for _, r := range rows {
			if emitted[r.UploadID] {
				continue
			}
			overdue = append(overdue, Candidate{Key: r.Key, UploadID: r.UploadID, Initiated: r.CreatedAt, Known: true, Deadline: &r.ExpiresAt, Source: SourcePostgres})
		}
		if err := s.beginPage(ctx, opts, overdue); err != nil {
			return err
		}
		for _, c := range overdue {
			if rep.Overdue == 0 {
				if rep.Listed == 0 {
					log.WarnContext(ctx, "object store listed no multipart uploads while PostgreSQL knows uploads past their deadline; "+
						"aborting those by upload id (this store may not list multipart uploads; uploads intake did not create are not found this way)")
				} else {
					log.InfoContext(ctx, "aborting intake's uploads past their deadline that the listing did not show (an abort task was lost, or the listing is incomplete)")
				}
			}
			rep.Overdue++
			if !emit(c) {
				return ctx.Err()
			}
		}
		if len(rows) < q.Limit {
			return nil
		}
		last := rows[len(rows)-1]
		q.AfterExpiresAt, q.AfterID = last.ExpiresAt, last.ID
	}
}

// sweepInterrupted emits the aborts begun more than ResumeAfter before the sweep started and never
// recorded. The pages follow (begun, upload id) and end with the aborts begun before that time.
func (s *Service) sweepInterrupted(ctx context.Context, log *slog.Logger, opts SweepOptions, rep *SweepReport, emitted map[string]bool, emit func(Candidate) bool) error {
	q := PendingQuery{Bucket: opts.Bucket, Prefix: opts.Prefix, StartedBefore: rep.Now.Add(-ResumeAfter), AfterBegun: time.Unix(0, 0).UTC(), Limit: overduePage}
	for {
		sctx, cancel := s.storeContext(ctx)
		rows, err := s.store.PendingAborts(sctx, q)
		cancel()
		if err != nil {
			return storeErr("find interrupted aborts", err)
		}
		for _, r := range rows {
			if emitted[r.UploadID] {
				continue
			}
			if rep.Interrupted == 0 {
				log.InfoContext(ctx, "resuming aborts begun and never recorded (a process stopped between S3's answer and PostgreSQL)")
			}
			rep.Interrupted++
			c := Candidate{Key: r.Key, UploadID: r.UploadID, Known: r.Known, Source: SourceInterrupted, Reason: r.Reason,
				begun: true, prior: OutcomeAborting}
			if r.Initiated != nil {
				c.Initiated = *r.Initiated
			}
			if !emit(c) {
				return ctx.Err()
			}
		}
		if len(rows) < q.Limit {
			return nil
		}
		last := rows[len(rows)-1]
		q.AfterBegun, q.AfterUploadID = last.Begun, last.UploadID
	}
}

// beginPage writes the abort rows of one page's candidates in one statement (one commit instead of
// one per abort), unless the sweep is a dry run, and marks them begun. When it fails, nothing of the
// page is sent to S3.
func (s *Service) beginPage(ctx context.Context, opts SweepOptions, cs []Candidate) error {
	if opts.DryRun || len(cs) == 0 {
		return nil
	}
	sctx, cancel := s.storeContext(ctx)
	priors, err := s.store.BeginAborts(sctx, opts.Bucket, ReasonSweep, cs)
	cancel()
	if err != nil {
		return storeErr("begin the aborts of a page", err)
	}
	for i := range cs {
		cs[i].begun, cs[i].prior = true, priors[cs[i].UploadID]
	}
	return nil
}

// SweepBucket is Sweep for the jobs' multipart:sweep task (worker/jobs.Sweeper); inspect is
// SweepOptions.Inspect (nil: none), best effort (SweepOptions.InspectBestEffort): a failed
// inspection does not fail the sweep, whose retry could not do it again.
func (s *Service) SweepBucket(ctx context.Context, bucket, prefix string, olderThan time.Duration,
	inspect func(ctx context.Context, bucket, key string) error) error {
	_, err := s.Sweep(ctx, SweepOptions{Bucket: bucket, Prefix: prefix, OlderThan: olderThan, Inspect: inspect, InspectBestEffort: true})
	return err
}
