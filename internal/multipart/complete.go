package multipart

import (
	"cmp"
	"context"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/intakehq/intake/internal/objstore"
	"github.com/intakehq/intake/worker/tasks"
)

// CompleteRequest asks to complete an upload within a size bound.
type CompleteRequest struct {
	// Bucket, Key and UploadID identify the upload.
	Bucket, Key, UploadID string
	// Initiated is when the upload started (recorded if it has to be aborted).
	Initiated *time.Time
	// Parts are the parts the client names, in any order.
	Parts []CompletedPart
	// DeclaredSize is the total the client declared, or -1 when it declared none.
	DeclaredSize int64
	// MaxSize is the policy's limit for the key (0: none beyond S3's MaxObjectSize).
	MaxSize int64
}

// CompleteResult is what S3 answered.
type CompleteResult struct {
	// Location and ETag are S3's answer.
	Location, ETag string
	// Size is the object's size: the sum of the named parts.
	Size int64
	// IntentCompleted is true when intake's intent moved to completed.
	IntentCompleted bool
}

// TooLargeError is returned when the named parts sum to more than the upload may hold. The upload
// has been aborted (when Aborted) and its abort recorded with ReasonTooLarge.
type TooLargeError struct {
	// Size is the sum of the named parts; Limit the bound it exceeds.
	Size, Limit int64
	// Declared is true when Limit is the client's declared size, false when it is the policy's
	// max_size (or S3's object limit).
	Declared bool
	// Aborted is true when the abort succeeded (otherwise the deadline or the sweep will abort it).
	Aborted bool
}

func (e *TooLargeError) Error() string {
	what := "the policy's max_size"
	if e.Declared {
		what = "the declared size"
	}
	done := "the upload was aborted"
	if !e.Aborted {
		done = "the upload could not be aborted now; the sweep or its deadline will abort it"
	}
	return fmt.Sprintf("the parts sum to %d bytes, above %s of %d bytes; %s", e.Size, what, e.Limit, done)
}

// tooLargeAbortTimeout bounds the abort of an upload whose complete is refused as too large, once
// it no longer follows the request's context.
const tooLargeAbortTimeout = 30 * time.Second

// limit is the bound of a complete request and whether it is the declared size.
func (r CompleteRequest) limit() (int64, bool) {
	limit, declared := int64(MaxObjectSize), false
	if r.MaxSize > 0 && r.MaxSize < limit {
		limit = r.MaxSize
	}
	if r.DeclaredSize >= 0 && r.DeclaredSize <= limit {
		limit, declared = r.DeclaredSize, true
	}
	return limit, declared
}

// CompleteTimeout bounds CompleteMultipartUpload (or the configured call timeout, if longer, within
// MaxCompleteDuration): below the public listener's 60 s write timeout, so that the client still
// gets the answer.
const CompleteTimeout = 50 * time.Second

// MaxCompleteDuration bounds a whole Complete, from its start to the end of its
// CompleteMultipartUpload call: the ListParts pages get what CompleteTimeout leaves of it (a
// minute), the call the rest. It is tasks.AbortGrace less a margin of ten seconds for the clocks of
// the replicas and PostgreSQL: the API starts a complete only before the upload's deadline, and no
// abort of intake's is sent before the deadline plus tasks.AbortGrace, so no complete the API
// accepted is still running when its upload's abort is sent.
const MaxCompleteDuration = tasks.AbortGrace - 10*time.Second

// afterCompleteTimeout bounds what follows a completion (the HEAD of a lost answer, the intent's
// update), which no client's context bounds any more.
const afterCompleteTimeout = 10 * time.Second

// Complete checks the named parts against what S3 holds (every page of ListParts) and completes the
// upload, then marks intake's intent completed. It refuses, with a *PartsError, parts that are
// malformed, not uploaded or whose ETag differs from the uploaded one; and, with a *TooLargeError
// after aborting the upload, parts that sum to more than the declared size or the policy's
// max_size. Since S3 completes only parts whose ETag matches, the parts it joins are those counted
// here. Other errors wrap S3's (NoSuchUpload: the upload is gone) or ErrStore. The listing and
// CompleteMultipartUpload end within MaxCompleteDuration of the call (see it).
func (s *Service) Complete(ctx context.Context, req CompleteRequest) (CompleteResult, error) {
	end := time.Now().Add(MaxCompleteDuration)
	named, err := checkCompleted(req.Parts)
	if err != nil {
		return CompleteResult{}, err
	}
	lctx, lcancel := context.WithDeadline(ctx, end.Add(-CompleteTimeout))
	held, err := s.Parts(lctx, req.Bucket, req.Key, req.UploadID)
	lcancel()
	if err != nil {
		return CompleteResult{}, err
	}
	byNumber := make(map[int32]Part, len(held))
	for _, p := range held {
		byNumber[p.Number] = p
	}
	var total int64
	cps := make([]types.CompletedPart, 0, len(named))
	for _, n := range named {
		p, ok := byNumber[n.Number]
		if !ok {
			return CompleteResult{}, partsErrorf("part %d was not uploaded", n.Number)
		}
		if unquote(p.ETag) != unquote(n.ETag) {
			return CompleteResult{}, partsErrorf("part %d: etag %s is not the uploaded part's", n.Number, n.ETag)
		}
		total += p.Size
		cps = append(cps, types.CompletedPart{PartNumber: aws.Int32(n.Number), ETag: aws.String(p.ETag)})
	}
	if limit, declared := req.limit(); total > limit {
		tooLarge := &TooLargeError{Size: total, Limit: limit, Declared: declared}
		// Once begun, the abort finishes even if the client leaves (as DELETE's does): cut short
		// after its row was written, it would leave the upload open and the row "aborting" for
		// the sweep to resume.
		actx, acancel := context.WithTimeout(context.WithoutCancel(ctx), tooLargeAbortTimeout)
		_, err := s.Abort(actx, AbortRequest{Bucket: req.Bucket, Key: req.Key, UploadID: req.UploadID, Initiated: req.Initiated, Reason: ReasonTooLarge})
		acancel()
		if err != nil {
			s.log.WarnContext(ctx, "abort of an oversized upload failed; its deadline or the sweep will abort it",
				"bucket", req.Bucket, "key", req.Key, "upload_id", req.UploadID, "err", err)
		}
		tooLarge.Aborted = err == nil
		return CompleteResult{}, tooLarge
	}

	// S3 may take a while to join many large parts (it keeps the connection alive meanwhile), far
	// longer than other calls; a client that leaves does not cut the call short either, so that a
	// completion S3 performs is also recorded. The call ends by the end of MaxCompleteDuration
	// whatever the configured call timeout, before any abort of the upload may be sent.
	ctx = context.WithoutCancel(ctx)
	cctx, cancel := context.WithDeadline(ctx, end)
	cctx, cancel2 := context.WithTimeout(cctx, max(s.callTimeout, CompleteTimeout))
	defer cancel2()
	out, err := s.s3.CompleteMultipartUpload(cctx, &s3.CompleteMultipartUploadInput{
		Bucket: aws.String(req.Bucket), Key: aws.String(req.Key), UploadId: aws.String(req.UploadID),
		MultipartUpload: &types.CompletedMultipartUpload{Parts: cps},
	})
	cancel()
	var res CompleteResult
	switch {
	case err == nil:
		res = CompleteResult{Location: aws.ToString(out.Location), ETag: aws.ToString(out.ETag), Size: total}
	case !objstore.IsRetryable(err):
		return CompleteResult{}, fmt.Errorf("complete upload %s of %q: %w", req.UploadID, req.Key, err)
	default:
		// No answer (a timeout, a connection cut) or a 5xx: S3 may have completed it. The key is the
		// upload's own, so an object there is this completion; without one, the error stands and
		// the client's retry finds the upload still open.
		hctx, hcancel := context.WithTimeout(ctx, cmp.Or(s.callTimeout, afterCompleteTimeout))
		head, herr := s.s3.HeadObject(hctx, &s3.HeadObjectInput{Bucket: aws.String(req.Bucket), Key: aws.String(req.Key)})
		hcancel()
		if herr != nil {
			return CompleteResult{}, fmt.Errorf("complete upload %s of %q: %w", req.UploadID, req.Key, err)
		}
		s.log.WarnContext(ctx, "complete's answer was lost, but S3 holds the object: completed",
			"bucket", req.Bucket, "key", req.Key, "upload_id", req.UploadID, "err", err)
		res = CompleteResult{ETag: aws.ToString(head.ETag), Size: total}
	}
	// S3 said the object exists: the intent is completed, even if a racing abort marked it aborted.
	mctx, mcancel := context.WithTimeout(ctx, afterCompleteTimeout)
	moved, err := s.store.MarkCompleted(mctx, req.Bucket, req.UploadID)
	mcancel()
	if err != nil {
		// The object exists; the consumer completes the intent from its event.
		s.log.WarnContext(ctx, "mark upload completed", "bucket", req.Bucket, "upload_id", req.UploadID, "err", err)
	}
	res.IntentCompleted = moved
	return res, nil
}

// CompletedWith reports whether the object at key is the completion of a multipart upload of
// parts: its ETag is the one these parts make (ObjectETag). A complete request retried after its
// answer was lost is answered by it with the object's ETag and size; Location is left empty (S3
// gives one only to the completion itself: the caller names the object's URL). ok is false
// for other parts, no object, or an object S3 does not show now (the error is not returned: the
// caller's refusal stands).
func (s *Service) CompletedWith(ctx context.Context, bucket, key string, parts []CompletedPart) (CompleteResult, bool) {
	want, ok := ObjectETag(parts)
	if !ok {
		return CompleteResult{}, false
	}
	head, err := s.s3.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil || unquote(aws.ToString(head.ETag)) != want {
		return CompleteResult{}, false
	}
	return CompleteResult{ETag: aws.ToString(head.ETag), Size: aws.ToInt64(head.ContentLength)}, true
}
