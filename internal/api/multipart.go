package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/intakehq/intake/internal/jsonscan"
	"github.com/intakehq/intake/internal/multipart"
	"github.com/intakehq/intake/internal/objstore"
	"github.com/intakehq/intake/internal/sigv4"
	"github.com/intakehq/intake/internal/store/dbq"
	"github.com/intakehq/intake/pipeline"
)

// The multipart routes of /v1 and their shared steps (Uppy's routes in uppy.go use the same ones).
// What happens to an upload after its creation is internal/multipart's: these handlers check the
// caller and the request, and map the package's answers to problems.

// maxCompleteBody bounds the body of a complete request: 10,000 parts with 128-byte etags and JSON
// punctuation take about 1.7 MB.
const maxCompleteBody = multipart.MaxParts * 256

// ownedMultipart loads the caller's upload from the {id} path value (another owner's is not
// found) and checks that it is a pending multipart upload.
func (s *Server) ownedMultipart(r *http.Request, owner string) (dbq.Upload, *Problem) {
	id, err := uuid.Parse(r.PathValue("id"))
	if err != nil {
		return dbq.Upload{}, problemf(probNotFound, "no upload %q", r.PathValue("id"))
	}
	u, err := s.q.APIGetUpload(r.Context(), dbq.APIGetUploadParams{ID: id, Owner: owner})
	if errors.Is(err, pgx.ErrNoRows) {
		return dbq.Upload{}, problemf(probNotFound, "no upload %s", id)
	}
	if err != nil {
		return dbq.Upload{}, s.dbProblem(r.Context(), "load upload", err)
	}
	if p := openMultipart(u); p != nil {
		return u, p // u for a retried request's answer (completedBefore, abortedBefore)
	}
	return u, nil
}

// openMultipart checks that u is a pending multipart upload.
func openMultipart(u dbq.Upload) *Problem {
	if u.Method != MethodMultipart || u.MultipartUploadID == nil {
		return problemf(probNotMultipart, "upload %s was created with method %s", u.ID, u.Method)
	}
	if u.Status != multipart.StatusPending {
		return problemf(probNotPending, "upload %s is %s", u.ID, u.Status)
	}
	return nil
}

// beforeDeadline checks that u's deadline has not passed, for the routes that complete (those that
// sign parts also cap their URLs at it: partLifetime). Past it the upload is about to be aborted
// (its delayed task, or the sweep when Redis lost the task), so the deadline the API promised is
// the one it keeps; listing the parts and aborting stay open.
func (s *Server) beforeDeadline(u dbq.Upload) *Problem {
	if !s.now().Before(u.ExpiresAt) {
		return expiredProblem(u)
	}
	return nil
}

// expiredProblem is the refusal of work on u past its deadline.
func expiredProblem(u dbq.Upload) *Problem {
	return problemf(probNotPending, "upload %s expired at %s", u.ID, u.ExpiresAt.UTC().Format(time.RFC3339))
}

// partLifetime is the lifetime of u's part URLs signed at now: want, capped at u's deadline. A URL
// that outlived the deadline would let its holder upload parts to an upload the API no longer works
// on (its abort late, or lost with Redis until the sweep runs), up to MaxPresignExpiry later. The
// lifetime is counted as the signer counts it, in whole seconds from now truncated to the second (as
// X-Amz-Date is). With less than a second left before the deadline the upload is refused as past
// it: a URL that dies before its client can use it is no answer.
func partLifetime(u dbq.Upload, now time.Time, want time.Duration) (time.Duration, *Problem) {
	if u.ExpiresAt.Sub(now) < time.Second {
		return 0, expiredProblem(u)
	}
	return min(want, u.ExpiresAt.Sub(now.Truncate(time.Second)).Truncate(time.Second)), nil
}

// rule is the policy rule of u's key.
func (s *Server) rule(u dbq.Upload) pipeline.Rule {
	rule, _ := s.policy.For(u.Key)
	return rule
}

// plan is the size bound of u: its declared size and part size, or the policy's max_size when the
// client declared no size (Uppy).
func (s *Server) plan(u dbq.Upload) multipart.Plan {
	p := multipart.Plan{Size: u.Size}
	if !u.SizeDeclared {
		p.Size = sizeBound(s.rule(u))
	}
	if u.PartSize != nil {
		p.PartSize = *u.PartSize
	}
	return p
}

// multipartProblem maps internal/multipart's errors: the client's (part lists, sizes), PostgreSQL's
// and S3's.
func (s *Server) multipartProblem(ctx context.Context, what string, err error) *Problem {
	var partsErr *multipart.PartsError
	var tooLarge *multipart.TooLargeError
	switch {
	case errors.As(err, &partsErr):
		return problemf(probInvalidParts, "%s", partsErr.Detail)
	case errors.As(err, &tooLarge):
		p := problemf(probTooLarge, "%s", tooLarge.Error())
		p.Reason = pipeline.ReasonTooLarge
		return p
	case errors.Is(err, multipart.ErrStore):
		return s.dbProblem(ctx, what, err)
	default:
		return s.s3Problem(ctx, what, err)
	}
}

// uploadProblem is multipartProblem for an error of work on u, an upload of the caller's that was
// pending when the request loaded it: S3 no longer knowing it (NoSuchUpload) means an abort (a
// DELETE, the deadline task, the sweep) or a complete won the race since, not that the caller
// named an upload that does not exist. The intent is read again: while it exists the answer is 409
// upload-not-pending with its status, as a DELETE raced by a complete is; 404 only when it is gone.
func (s *Server) uploadProblem(ctx context.Context, u dbq.Upload, what string, err error) *Problem {
	if !objstore.IsNoSuchUpload(err) {
		return s.multipartProblem(ctx, what, err)
	}
	// The request's context may be what ran out (complete's budget); the read is short.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), rereadTimeout)
	defer cancel()
	now, rerr := s.q.APIGetUpload(rctx, dbq.APIGetUploadParams{ID: u.ID, Owner: u.Owner})
	switch {
	case errors.Is(rerr, pgx.ErrNoRows):
		return s.s3Problem(ctx, what, err)
	case rerr != nil:
		s.log.WarnContext(ctx, "read upload again after storage forgot it", "upload", u.ID, "err", rerr)
		return problemf(probNotPending, "%s: upload %s is no longer open in storage (aborted or completed meanwhile)", what, u.ID)
	case now.Status == multipart.StatusPending:
		// The abort or complete that won has not yet settled the intent (or S3 forgot the upload by
		// itself: a lifecycle rule); it, the consumer, the deadline task or the sweep settles it.
		return problemf(probNotPending, "%s: upload %s is no longer open in storage (aborted or completed meanwhile; its status says which once settled)", what, u.ID)
	default:
		return problemf(probNotPending, "%s: upload %s is %s", what, u.ID, now.Status)
	}
}

// rereadTimeout bounds uploadProblem's second read of an intent.
const rereadTimeout = 5 * time.Second

// partURL is one presigned part upload.
type partURL struct {
	PartNumber int32  `json:"part_number"`
	URL        string `json:"url"`
	// Size is the signed Content-Length the part must have: present whenever the upload declared a
	// part size, 0 included (the one part of an empty upload), and absent otherwise.
	Size *int64 `json:"size,omitempty"`
}

func (s *Server) presignParts(w http.ResponseWriter, r *http.Request, who principal) *Problem {
	var req struct {
		PartNumbers []int32 `json:"part_numbers"`
		ExpiresIn   *int64  `json:"expires_in,omitempty"`
	}
	if p := decodeJSON(w, r, &req); p != nil {
		return p
	}
	u, p := s.ownedMultipart(r, who.owner)
	if p != nil {
		return p
	}
	exp, p := s.expiry(req.ExpiresIn)
	if p != nil {
		return p
	}
	parts, expires, p := s.signParts(r.Context(), u, req.PartNumbers, s.now(), exp)
	if p != nil {
		return p
	}
	writeJSON(w, http.StatusOK, map[string]any{"parts": parts, "expires_at": expires.UTC()})
	return nil
}

// signParts checks the part numbers against u's plan and presigns them, each with its
// Content-Length signed when the plan knows it, for exp capped at u's deadline (partLifetime). It
// also returns when the first of their URLs expires (they may be capped at the signing credentials'
// expiry, which can change between two signatures).
func (s *Server) signParts(ctx context.Context, u dbq.Upload, nums []int32, now time.Time, exp time.Duration) ([]partURL, time.Time, *Problem) {
	exp, p := partLifetime(u, now, exp)
	if p != nil {
		return nil, time.Time{}, p
	}
	plan := s.plan(u)
	if err := plan.CheckPartNumbers(nums, maxPartsPerCall); err != nil {
		return nil, time.Time{}, s.multipartProblem(ctx, "check part numbers", err)
	}
	parts := make([]partURL, 0, len(nums))
	var sizes []int64 // the parts' Size point into it (one allocation)
	if plan.PartSize > 0 {
		sizes = make([]int64, len(nums))
	}
	var expires time.Time
	for i, n := range nums {
		length := plan.PartLength(n)
		signed, err := s.signer.Sign(ctx, sigv4.Input{
			Method: http.MethodPut, Op: sigv4.OpUploadPart, Bucket: u.Bucket, Key: u.Key, Now: now, Expires: exp,
			ContentLength: length, PartNumber: n, UploadID: *u.MultipartUploadID,
		})
		if err != nil {
			return nil, time.Time{}, s.signProblem(ctx, "presign parts", err)
		}
		part := partURL{PartNumber: n, URL: signed.URL}
		if length >= 0 && sizes != nil {
			sizes[i] = length
			part.Size = &sizes[i]
		}
		parts = append(parts, part)
		if expires.IsZero() || signed.Expires.Before(expires) {
			expires = signed.Expires
		}
	}
	s.metrics.presigned.get("part").Add(float64(len(nums)))
	return parts, expires, nil
}

// uploadedPart is one part S3 holds.
type uploadedPart struct {
	PartNumber   int32      `json:"part_number"`
	ETag         string     `json:"etag"`
	Size         int64      `json:"size"`
	LastModified *time.Time `json:"last_modified,omitempty"`
}

func (s *Server) listParts(w http.ResponseWriter, r *http.Request, who principal) *Problem {
	u, p := s.ownedMultipart(r, who.owner)
	if p != nil {
		return p
	}
	out, p := heldParts(s, r.Context(), u, func(pt multipart.Part) uploadedPart {
		return uploadedPart{PartNumber: pt.Number, ETag: pt.ETag, Size: pt.Size, LastModified: pt.LastModified}
	})
	if p != nil {
		return p
	}
	writeJSON(w, http.StatusOK, map[string]any{"parts": out})
	return nil
}

// heldParts lists every part S3 holds for u, each in the route family's shape.
func heldParts[T any](s *Server, ctx context.Context, u dbq.Upload, shape func(multipart.Part) T) ([]T, *Problem) {
	parts, err := s.mp.Parts(ctx, u.Bucket, u.Key, *u.MultipartUploadID)
	if err != nil {
		return nil, s.uploadProblem(ctx, u, "list parts", err)
	}
	out := make([]T, len(parts))
	for i, pt := range parts {
		out[i] = shape(pt)
	}
	return out, nil
}

// completedPart is one part named in a complete request.
type completedPart struct {
	PartNumber int32  `json:"part_number"`
	ETag       string `json:"etag"`
}

// partList is the part list of a complete request (either route family's part shape). Its elements
// are counted before any is decoded: a body of maxCompleteBody bytes holds some 850,000 empty
// objects ({"parts":[{},{},...]}), which encoding/json would turn into as many parts (over 100 MB
// allocated) only for the list to be refused for its length. A list of more than
// multipart.MaxParts elements is refused once the count passes the bound, before anything is
// allocated for it.
type partList[T any] []T

// UnmarshalJSON counts data's elements (a JSON array, or null) up to multipart.MaxParts, refusing
// the list with a *Problem (invalid-parts) beyond, and decodes them otherwise, unknown members
// refused as decodeJSON refuses them.
func (l *partList[T]) UnmarshalJSON(data []byte) error {
	if string(data) == "null" {
		*l = nil
		return nil
	}
	n := jsonscan.ArrayLen(data, multipart.MaxParts+1)
	if n > multipart.MaxParts {
		return problemf(probInvalidParts, "list at most %d parts", multipart.MaxParts)
	}
	out := make([]T, 0, n)
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&out); err != nil {
		return err
	}
	*l = out
	return nil
}

// completedParts converts a decoded part list to internal/multipart's parts.
func completedParts[T any](l partList[T], part func(T) multipart.CompletedPart) []multipart.CompletedPart {
	parts := make([]multipart.CompletedPart, len(l))
	for i, pt := range l {
		parts[i] = part(pt)
	}
	return parts
}

func (s *Server) completeUpload(w http.ResponseWriter, r *http.Request, who principal) *Problem {
	r, cancel := s.withCompleteBudget(r)
	defer cancel()
	release, p := s.admitComplete(w, r, who.owner, s.ownedMultipart)
	defer release()
	if p != nil {
		return p
	}
	var req struct {
		Parts partList[completedPart] `json:"parts"`
	}
	if p := decodeJSONLimit(w, r, &req, maxCompleteBody); p != nil {
		return p
	}
	u, p := s.ownedMultipart(r, who.owner)
	parts := completedParts(req.Parts, func(pt completedPart) multipart.CompletedPart {
		return multipart.CompletedPart{Number: pt.PartNumber, ETag: pt.ETag}
	})
	res, p := s.completeOrRetried(r.Context(), u, p, parts)
	if p != nil {
		return p
	}
	writeJSON(w, http.StatusOK, map[string]any{"id": u.ID, "bucket": u.Bucket, "key": u.Key, "location": res.Location, "etag": res.ETag, "size": res.Size})
	return nil
}

// CompleteBudget bounds a complete request (either route family's) from its handler's start to its
// answer: the body's reading, the upload's lookup, the listing of its parts (every page) and S3's
// CompleteMultipartUpload all count against it. It is below the public listener's WriteTimeout,
// which runs from the end of the request's headers, so that the client gets the answer: a
// completion S3 has not finished by then goes on (internal/multipart does not cut it short), and
// the answer says so (502 storage-unavailable); GET /v1/uploads/{id} tells when it is completed.
const CompleteBudget = WriteTimeout - 5*time.Second

// withCompleteBudget returns r with its context bounded by the complete budget, from now.
func (s *Server) withCompleteBudget(r *http.Request) (*http.Request, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(r.Context(), s.completeBudget)
	return r.WithContext(ctx), cancel
}

// completion is what internal/multipart's Complete returned.
type completion struct {
	res multipart.CompleteResult
	err error
}

// complete completes u with the parts within its size bound: the declared size (or the policy's
// max_size without one). An upload whose parts exceed it is aborted and refused. It answers by
// ctx's deadline (the complete budget) even when the completion is not done by then: Complete
// runs on its own goroutine, and what it returns after the answer was given is logged.
func (s *Server) complete(ctx context.Context, u dbq.Upload, parts []multipart.CompletedPart) (multipart.CompleteResult, *Problem) {
	if p := s.beforeDeadline(u); p != nil {
		return multipart.CompleteResult{}, p
	}
	declared := int64(-1)
	if u.SizeDeclared {
		declared = u.Size
	}
	created := u.CreatedAt
	req := multipart.CompleteRequest{
		Bucket: u.Bucket, Key: u.Key, UploadID: *u.MultipartUploadID, Initiated: &created, Parts: parts,
		DeclaredSize: declared, MaxSize: s.rule(u).MaxSize,
	}
	done := make(chan completion)
	// The completion may outlive the request's answer (its budget); it ends by itself within
	// multipart.MaxCompleteDuration, which bounds every call it makes. The daemon's shutdown waits
	// for it within its grace (Wait); a process that exits before then leaves S3 to finish or not:
	// the intent follows S3 (the event, or a later look at the key).
	s.completions.add()
	go func() {
		defer s.completions.done()
		res, err := s.mp.Complete(ctx, req)
		select {
		case done <- completion{res, err}:
		case <-ctx.Done():
			// The request was answered without it (its budget ran out, or its client left).
			if err != nil {
				s.log.WarnContext(ctx, "complete multipart upload failed after the request was answered", "upload", u.ID, "err", err)
				return
			}
			s.log.InfoContext(ctx, "multipart upload completed after the request was answered", "upload", u.ID, "intent_completed", res.IntentCompleted)
		}
	}()
	select {
	case c := <-done:
		if c.err != nil {
			return c.res, s.uploadProblem(ctx, u, "complete multipart upload", c.err)
		}
		return c.res, nil
	case <-ctx.Done():
		s.log.WarnContext(ctx, "complete multipart upload: no answer within the request's budget; it goes on", "upload", u.ID, "budget", s.completeBudget)
		return multipart.CompleteResult{}, problemf(probS3Unavailable,
			"complete multipart upload: not finished within %s of the request; a completion storage started goes on: GET /v1/uploads/%s tells whether the upload is completed (request id %s)",
			s.completeBudget, u.ID, requestID(ctx))
	}
}

func (s *Server) abortUpload(w http.ResponseWriter, r *http.Request, who principal) *Problem {
	u, p := s.ownedMultipart(r, who.owner)
	if p := s.abortOrRetried(r.Context(), u, p); p != nil {
		return p
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// completeOrRetried completes u, loaded by ownedMultipart or uppyUpload with p, their refusal (nil
// when u is pending): a refused upload is answered only as the completion of these parts retried
// (completedBefore), else with p.
func (s *Server) completeOrRetried(ctx context.Context, u dbq.Upload, p *Problem, parts []multipart.CompletedPart) (multipart.CompleteResult, *Problem) {
	res, ok := multipart.CompleteResult{}, false
	if p == nil {
		res, p = s.complete(ctx, u, parts)
		ok = p == nil
	} else {
		res, ok = s.completedBefore(ctx, u, parts)
	}
	if !ok {
		return multipart.CompleteResult{}, p
	}
	// The object's URL as the presigned URLs address it (INTAKE_S3_PUBLIC_ENDPOINT's, which a
	// browser reaches), the same for a retried complete: not S3's Location, which names the
	// endpoint intake calls and is given to the completion only. Uppy makes it the uploadURL.
	res.Location = s.signer.ObjectURL(u.Bucket, u.Key)
	return res, nil
}

// abortOrRetried aborts u, loaded by ownedMultipart or uppyUpload with p, their refusal (nil when u
// is pending). An upload already aborted is a DELETE retried after its answer was lost: it is
// aborted, as asked (DELETE is idempotent), and nothing is sent to S3.
func (s *Server) abortOrRetried(ctx context.Context, u dbq.Upload, p *Problem) *Problem {
	switch {
	case p != nil && abortedBefore(u):
		return nil
	case p != nil:
		return p
	}
	return s.abort(ctx, u)
}

// abortedBefore reports whether u, a multipart upload refused as no longer pending, was aborted:
// a DELETE retried is then answered as the first one was.
func abortedBefore(u dbq.Upload) bool {
	return u.Method == MethodMultipart && u.Status == multipart.StatusAborted
}

// completedBefore answers a complete request for u, a multipart upload refused as no longer
// pending, when u was completed with these very parts (the request retried after its answer was
// lost: multipart.Service.CompletedWith). ok is false otherwise, and the refusal stands (409
// upload-not-pending): another parts list, an object S3 cannot show now, or an upload not
// completed.
func (s *Server) completedBefore(ctx context.Context, u dbq.Upload, parts []multipart.CompletedPart) (multipart.CompleteResult, bool) {
	if u.Method != MethodMultipart || u.Status != multipart.StatusCompleted {
		return multipart.CompleteResult{}, false
	}
	hctx, cancel := context.WithTimeout(ctx, s.s3Timeout)
	defer cancel()
	return s.mp.CompletedWith(hctx, u.Bucket, u.Key, parts)
}

// abortTimeout bounds an abort asked through the API once it no longer follows the request's
// context: below the public listener's WriteTimeout.
const abortTimeout = 30 * time.Second

// abort aborts u and records it. An upload that S3 shows completed (a complete won the race) is a
// conflict: its intent is completed, not aborted. Once begun, the abort is finished whether or not
// its client stays (bounded by abortTimeout): cut short by a client that leaves, it would leave its
// row "aborting" and the intent pending, the S3 upload perhaps open, until the sweep resumes it.
func (s *Server) abort(ctx context.Context, u dbq.Upload) *Problem {
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), abortTimeout)
	defer cancel()
	created := u.CreatedAt
	res, err := s.mp.Abort(actx, multipart.AbortRequest{
		Bucket: u.Bucket, Key: u.Key, UploadID: *u.MultipartUploadID, Initiated: &created, Reason: multipart.ReasonAPI,
	})
	if err != nil {
		return s.multipartProblem(ctx, "abort multipart upload", err)
	}
	if res.Object == multipart.ObjectExists {
		return problemf(probNotPending, "upload %s completed before it could be aborted", u.ID)
	}
	return nil
}
