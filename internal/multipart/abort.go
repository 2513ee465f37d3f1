package multipart

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/intakehq/intake/internal/objstore"
	"github.com/intakehq/intake/worker/tasks"
)

// AbortRequest names one upload to abort.
type AbortRequest struct {
	// Bucket, Key and UploadID identify the upload.
	Bucket, Key, UploadID string
	// Initiated is when the upload started, if known (else the intent's created_at is recorded).
	Initiated *time.Time
	// Reason is one of the Reason constants.
	Reason string
	// Foreign says the upload has no intake intent (a sweep found it in the listing only): the key
	// is not looked at after the abort, since no intent waits for the answer.
	Foreign bool
	// Inspect, when set, is called once the outcome is recorded if the upload turned out completed
	// (an object at its key after the abort; never for a Foreign upload). Such an upload's event,
	// which would have inspected the object and cancelled its abort, is late or was never sent
	// (S3 may send none for a complete that committed while its client's request failed), so the
	// object is inspected now instead of leaving its verdict to the periodic reconcile; on a late
	// event both record the same observation. The jobs' abort and sweep tasks pass the pipeline.
	Inspect func(ctx context.Context, bucket, key string) error

	// begun says the sweep already wrote the row (Store.BeginAborts) and prior is what it found.
	begun bool
	prior string
}

// AbortResult says what Abort did.
type AbortResult struct {
	// Outcome is OutcomeAborted or OutcomeGone.
	Outcome string
	// Bytes is the sum of the upload's part sizes before the abort (when BytesKnown).
	Bytes int64
	// BytesKnown is false when the parts could not be listed (the abort still went ahead).
	BytesKnown bool
	// Object is what S3 showed at the key after the abort.
	Object ObjectState
	// IntentStatus is the status intake's intent was moved to (StatusAborted, or StatusCompleted
	// when the upload turned out to be complete), "" when no intent moved.
	IntentStatus string
	// Resumed is true when an earlier attempt had begun this abort and not recorded S3's answer.
	Resumed bool
	// Inspected is true when the upload turned out completed and AbortRequest.Inspect ran without
	// error.
	Inspected bool
}

// InspectError is Abort's error when everything but AbortRequest.Inspect succeeded: the abort's
// outcome is recorded, and the object of the completed upload is not inspected.
type InspectError struct {
	// UploadID and Key name the upload.
	UploadID, Key string
	// Err is what Inspect returned.
	Err error
}

// Error says which upload's object was not inspected, and why.
func (e *InspectError) Error() string {
	return fmt.Sprintf("inspect completed upload %s of %q: %v", e.UploadID, e.Key, e.Err)
}

// Unwrap returns Inspect's error.
func (e *InspectError) Unwrap() error { return e.Err }

// NotDueError is Abort's error for a ReasonDeadline abort of one of intake's uploads before its
// time: PostgreSQL's deadline for the upload (the expires_at promised to its owner) plus
// tasks.AbortGrace has not passed. Nothing was recorded or sent. The deadline a task's payload
// carries is not trusted for this: whoever wrote the task into Redis, the owner's deadline holds.
type NotDueError struct {
	// UploadID names the upload.
	UploadID string
	// Deadline is the upload's expires_at, as PostgreSQL holds it.
	Deadline time.Time
	// Due is Deadline plus tasks.AbortGrace: the abort may run from then on.
	Due time.Time
}

// Error says when the abort is due.
func (e *NotDueError) Error() string {
	return fmt.Sprintf("abort of upload %s is not due before %s (its deadline %s and the grace of %s): left open",
		e.UploadID, e.Due.UTC().Format(time.RFC3339Nano), e.Deadline.UTC().Format(time.RFC3339Nano), tasks.AbortGrace)
}

// Abort records the abort it is about to send, sums the upload's parts, aborts it, looks at its key
// and records the outcome, settling intake's intent by what S3 shows (see the package
// documentation, "States" and "Aborts are recorded before they are sent"). An upload that no
// longer exists is "gone", not an error, unless an earlier attempt had begun the abort and no
// object stands at the key: then S3 forgot it after intake asked, and the outcome is "aborted".
// Errors wrap S3's (objstore.IsRetryable tells whether trying again may help) or ErrStore (each
// PostgreSQL call bounded by Config.StoreTimeout), or are an *InspectError (AbortRequest.Inspect failed,
// the rest succeeded) or a *NotDueError (a ReasonDeadline abort of one of intake's uploads before
// its expires_at plus tasks.AbortGrace: nothing done); when the abort could not be begun in
// PostgreSQL, nothing was sent to S3.
func (s *Service) Abort(ctx context.Context, req AbortRequest) (AbortResult, error) {
	res := AbortResult{Outcome: OutcomeAborted}
	rec := AbortRecord{Bucket: req.Bucket, Key: req.Key, UploadID: req.UploadID, Initiated: req.Initiated, Reason: req.Reason}
	prior := req.prior
	if !req.begun {
		// An abort naming one of intake's upload ids with another key (an operator's typo in POST
		// /v1/jobs) would find no upload under that key, record the id "gone" and settle the real
		// upload's intent aborted while S3 keeps it open: refused before anything is written. (The
		// sweep's candidates come with the key S3 or the intent gave.)
		sctx, cancel := s.storeContext(ctx)
		known, err := s.store.Intents(sctx, req.Bucket, []string{req.UploadID})
		cancel()
		if err != nil {
			return res, storeErr("find the upload's intent", err)
		}
		in, ok := known[req.UploadID]
		if ok && in.Key != req.Key {
			return res, fmt.Errorf("abort upload %s of %q: %w: it was created for %q", req.UploadID, req.Key, ErrWrongKey, in.Key)
		}
		// A deadline abort keeps the deadline promised to the owner as PostgreSQL records it, and
		// its grace (a complete accepted just before it may still run), whatever deadline the task
		// that asked carries: a task written into Redis by hand must not abort an upload early.
		if due := in.ExpiresAt.Add(tasks.AbortGrace); ok && req.Reason == ReasonDeadline && s.now().Before(due) {
			return res, &NotDueError{UploadID: req.UploadID, Deadline: in.ExpiresAt, Due: due}
		}
		sctx, cancel = s.storeContext(ctx)
		prior, err = s.store.BeginAbort(sctx, rec)
		cancel()
		if err != nil {
			return res, storeErr("begin abort", err)
		}
	}
	res.Resumed = prior == OutcomeAborting
	// What NoSuchUpload means: gone, or aborted when an earlier attempt may have sent the abort.
	vanished := OutcomeGone
	if res.Resumed {
		vanished = OutcomeAborted
		s.log.InfoContext(ctx, "resuming an interrupted abort",
			"bucket", req.Bucket, "key", req.Key, "upload_id", req.UploadID, "reason", req.Reason)
	}

	found := true
	parts, err := s.Parts(ctx, req.Bucket, req.Key, req.UploadID)
	switch {
	case err == nil:
		res.BytesKnown = true
		for _, p := range parts {
			res.Bytes += p.Size
		}
	case objstore.IsNoSuchUpload(err):
		found = false
	default:
		if ctx.Err() != nil {
			return res, err
		}
		s.log.WarnContext(ctx, "list parts failed; aborting without counting bytes",
			"bucket", req.Bucket, "key", req.Key, "upload_id", req.UploadID, "err", err)
	}
	if found {
		switch err := s.abortS3(ctx, req.Bucket, req.Key, req.UploadID); {
		case err == nil:
		case objstore.IsNoSuchUpload(err):
			found = false
		default:
			// The row stays "aborting": this call's caller retries, or the sweep resumes it.
			return res, fmt.Errorf("abort upload %s of %q: %w", req.UploadID, req.Key, err)
		}
	}
	if !found {
		res.Outcome, res.Bytes, res.BytesKnown = vanished, 0, false
	}

	var lookErr error
	if !req.Foreign {
		// S3 answering the abort does not tell whether the upload completed: AWS may accept the
		// abort of an upload completed moments before, and a complete racing this abort may land
		// either side of it. The object at the key does tell.
		res.Object, lookErr = s.objectAt(ctx, req.Bucket, req.Key)
		if !found && res.Object == ObjectExists {
			// Whatever an interrupted attempt sent, the upload ended completed: S3 forgot it
			// because the client completed it.
			res.Outcome = OutcomeGone
		}
	}
	rec.Outcome, rec.Object = res.Outcome, res.Object
	status, changed, err := s.record(ctx, rec)
	if err != nil {
		// The abort itself is done and its row says "aborting": a retry, or the sweep, finds the
		// upload gone and records it aborted.
		return res, fmt.Errorf("record %s of upload %s: %w", res.Outcome, req.UploadID, err)
	}
	res.IntentStatus = status
	if res.Outcome == OutcomeAborted && changed {
		// Counted by the attempt whose record settled the row: a racing attempt that found the
		// upload gone records "aborted" as well, and must not count the same abort again.
		s.metrics.aborted(req.Reason, res.Bytes, res.BytesKnown)
	}
	if lookErr != nil {
		// Recorded, but the intent is not settled: the caller retries (a task) or the sweep does.
		return res, fmt.Errorf("after aborting upload %s: %w", req.UploadID, lookErr)
	}
	if res.Object == ObjectExists && req.Inspect != nil {
		if err := req.Inspect(ctx, req.Bucket, req.Key); err != nil {
			return res, &InspectError{UploadID: req.UploadID, Key: req.Key, Err: err}
		}
		res.Inspected = true
	}
	return res, nil
}

// objectAt looks at the key: ObjectExists, ObjectAbsent, or ObjectUnknown with the error.
func (s *Service) objectAt(ctx context.Context, bucket, key string) (ObjectState, error) {
	cctx, cancel := s.callContext(ctx)
	defer cancel()
	_, err := s.s3.HeadObject(cctx, &s3.HeadObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	switch {
	case err == nil:
		return ObjectExists, nil
	case objstore.IsNotFound(err):
		return ObjectAbsent, nil
	default:
		return ObjectUnknown, fmt.Errorf("head %q: %w", key, err)
	}
}

// record writes the abort's outcome (and settles the intent), each attempt bounded by Config.StoreTimeout,
// retrying briefly: the S3 side is already done, and the longer the row says "aborting", the later the intent is settled. changed
// says whether this call wrote the outcome (AbortRecorder); a Store that does not say is taken to
// have written it.
func (s *Service) record(ctx context.Context, r AbortRecord) (status string, changed bool, err error) {
	recorder, reports := s.store.(AbortRecorder)
	for attempt, wait := 0, 100*time.Millisecond; attempt < 4; attempt, wait = attempt+1, wait*4 {
		sctx, cancel := s.storeContext(ctx)
		if reports {
			status, changed, err = recorder.RecordAbortChanged(sctx, r)
		} else {
			status, err = s.store.RecordAbort(sctx, r)
			changed = true
		}
		cancel()
		if err == nil {
			return status, changed, nil
		}
		if attempt == 3 {
			break
		}
		select {
		case <-ctx.Done():
			return "", false, storeErr("record abort", errors.Join(err, ctx.Err()))
		case <-time.After(wait):
		}
	}
	return "", false, storeErr("record abort", err)
}

// Discard aborts an upload nobody will ever know about (its intent could not be recorded), without
// recording anything.
func (s *Service) Discard(ctx context.Context, bucket, key, uploadID string) error {
	if err := s.abortS3(ctx, bucket, key, uploadID); err != nil && !objstore.IsNoSuchUpload(err) {
		return fmt.Errorf("discard upload %s of %q: %w", uploadID, key, err)
	}
	return nil
}

// abortS3 is the AbortMultipartUpload call, bounded by the call timeout.
func (s *Service) abortS3(ctx context.Context, bucket, key, uploadID string) error {
	cctx, cancel := s.callContext(ctx)
	defer cancel()
	_, err := s.s3.AbortMultipartUpload(cctx, &s3.AbortMultipartUploadInput{
		Bucket: aws.String(bucket), Key: aws.String(key), UploadId: aws.String(uploadID),
	})
	return err
}

// AbortUpload is Abort for the jobs' multipart:abort task (worker/jobs.Aborter): it returns the
// outcome and whether an object is at the key (the upload completed); inspect is
// AbortRequest.Inspect (nil: none).
func (s *Service) AbortUpload(ctx context.Context, bucket, key, uploadID, reason string,
	inspect func(ctx context.Context, bucket, key string) error) (string, bool, error) {
	res, err := s.Abort(ctx, AbortRequest{Bucket: bucket, Key: key, UploadID: uploadID, Reason: reason, Inspect: inspect})
	return res.Outcome, res.Object == ObjectExists, err
}
