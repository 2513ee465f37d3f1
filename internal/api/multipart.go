package api

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/intakehq/intake/internal/multipart"
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
		return dbq.Upload{}, p
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

// partURL is one presigned part upload.
type partURL struct {
	PartNumber int32  `json:"part_number"`
	URL        string `json:"url"`
	// Size is the signed Content-Length the part must have (when the upload declared a part size).
	Size int64 `json:"size,omitempty"`
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
	var expires time.Time
	for _, n := range nums {
		length := plan.PartLength(n)
		signed, err := s.signer.Sign(ctx, sigv4.Input{
			Method: http.MethodPut, Op: sigv4.OpUploadPart, Bucket: u.Bucket, Key: u.Key, Now: now, Expires: exp,
			ContentLength: length, PartNumber: n, UploadID: *u.MultipartUploadID,
		})
		if err != nil {
			return nil, time.Time{}, s.internalProblem(ctx, "presign parts", err)
		}
		parts = append(parts, partURL{PartNumber: n, URL: signed.URL, Size: max(length, 0)})
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
		return nil, s.multipartProblem(ctx, "list parts", err)
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

func (s *Server) completeUpload(w http.ResponseWriter, r *http.Request, who principal) *Problem {
	var req struct {
		Parts []completedPart `json:"parts"`
	}
	if p := decodeJSONLimit(w, r, &req, maxCompleteBody); p != nil {
		return p
	}
	u, p := s.ownedMultipart(r, who.owner)
	if p != nil {
		return p
	}
	parts := make([]multipart.CompletedPart, len(req.Parts))
	for i, pt := range req.Parts {
		parts[i] = multipart.CompletedPart{Number: pt.PartNumber, ETag: pt.ETag}
	}
	res, p := s.complete(r.Context(), u, parts)
	if p != nil {
		return p
	}
	writeJSON(w, http.StatusOK, map[string]any{"id": u.ID, "bucket": u.Bucket, "key": u.Key, "location": res.Location, "etag": res.ETag, "size": res.Size})
	return nil
}

// complete completes u with the parts within its size bound: the declared size (or the policy's
// max_size without one). An upload whose parts exceed it is aborted and refused.
func (s *Server) complete(ctx context.Context, u dbq.Upload, parts []multipart.CompletedPart) (multipart.CompleteResult, *Problem) {
	if p := s.beforeDeadline(u); p != nil {
		return multipart.CompleteResult{}, p
	}
	declared := int64(-1)
	if u.SizeDeclared {
		declared = u.Size
	}
	created := u.CreatedAt
	res, err := s.mp.Complete(ctx, multipart.CompleteRequest{
		Bucket: u.Bucket, Key: u.Key, UploadID: *u.MultipartUploadID, Initiated: &created, Parts: parts,
		DeclaredSize: declared, MaxSize: s.rule(u).MaxSize,
	})
	if err != nil {
		return res, s.multipartProblem(ctx, "complete multipart upload", err)
	}
	return res, nil
}

func (s *Server) abortUpload(w http.ResponseWriter, r *http.Request, who principal) *Problem {
	u, p := s.ownedMultipart(r, who.owner)
	if p != nil {
		return p
	}
	if p := s.abort(r.Context(), u); p != nil {
		return p
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// abort aborts u and records it. An upload that S3 shows completed (a complete won the race) is a
// conflict: its intent is completed, not aborted.
func (s *Server) abort(ctx context.Context, u dbq.Upload) *Problem {
	created := u.CreatedAt
	res, err := s.mp.Abort(ctx, multipart.AbortRequest{
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
