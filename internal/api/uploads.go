package api

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/intakehq/intake/internal/multipart"
	"github.com/intakehq/intake/internal/sigv4"
	"github.com/intakehq/intake/internal/store/dbq"
	"github.com/intakehq/intake/pipeline"
)

// Upload methods.
const (
	MethodPut       = "put"
	MethodPost      = "post"
	MethodMultipart = "multipart"
)

// S3 size limits.
const (
	maxSinglePut    = 5 << 30                 // PutObject / POST: 5 GiB
	maxMultipart    = multipart.MaxObjectSize // multipart object: 5 TiB
	maxPartsPerCall = 1000                    // part URLs signed by one request
)

// createUploadRequest is the body of POST /v1/uploads.
type createUploadRequest struct {
	Filename    string `json:"filename"`
	ContentType string `json:"content_type"`
	Size        *int64 `json:"size"`
	// SHA256 is the hex SHA-256 of the content (64 hex digits).
	SHA256    string `json:"sha256,omitempty"`
	Method    string `json:"method,omitempty"`
	ExpiresIn *int64 `json:"expires_in,omitempty"`
	// PartSize, for a multipart upload, is the size of every part but the last: part URLs then sign
	// their Content-Length.
	PartSize *int64 `json:"part_size,omitempty"`
	// Metadata is the app's own JSON object (at most 2 KiB), returned with the status and in
	// every notification.
	Metadata json.RawMessage `json:"metadata,omitempty"`
}

// uploadResponse describes an intent and how to upload.
type uploadResponse struct {
	ID       uuid.UUID         `json:"id"`
	Bucket   string            `json:"bucket"`
	Key      string            `json:"key"`
	Method   string            `json:"method"`
	URL      string            `json:"url,omitempty"`
	Headers  map[string]string `json:"headers,omitempty"`
	Fields   map[string]string `json:"fields,omitempty"`
	UploadID string            `json:"upload_id,omitempty"`
	// PartSize echoes the declared part size (multipart); MaxParts is the highest part number the
	// upload accepts.
	PartSize int64 `json:"part_size,omitempty"`
	MaxParts int32 `json:"max_parts,omitempty"`
	// ExpiresAt is when the URL (put, post) or the multipart upload (multipart) expires.
	ExpiresAt time.Time `json:"expires_at"`
	// lifetime is the URL's (put, post): the one asked for, capped at the signing credentials'
	// expiry.
	lifetime time.Duration
}

// intentSpec is a validated request for an upload, from /v1 or Uppy's routes.
type intentSpec struct {
	filename     string
	contentType  string
	size         int64
	sizeDeclared bool
	sha256       []byte
	method       string
	expires      time.Duration
	partSize     int64           // multipart: declared part size, 0 when none
	metadata     json.RawMessage // as received; validated by validateIntent
	idem         idempotency     // the request's Idempotency-Key (POST /v1/uploads), none when its key is ""
}

// With an Idempotency-Key, a request the owner sent before (the same key and parameters) is
// answered with the intent the first one created (replayIntent), not a new one: looked up first,
// and, when two such requests race past the lookup, the one whose row the unique index refused
// (its own multipart upload aborted) answers with the other's.
func (s *Server) createUpload(w http.ResponseWriter, r *http.Request, who principal) *Problem {
	idemKey, p := idempotencyKey(r)
	if p != nil {
		return p
	}
	var req createUploadRequest
	if p := decodeJSON(w, r, &req); p != nil {
		return p
	}
	if req.Size == nil {
		return problemf(probInvalidSize, "size is required")
	}
	spec := intentSpec{filename: req.Filename, contentType: req.ContentType, size: *req.Size, sizeDeclared: true,
		method: req.Method, metadata: req.Metadata}
	if req.PartSize != nil {
		if *req.PartSize <= 0 {
			return problemf(probInvalidSize, "part_size must be positive")
		}
		spec.partSize = *req.PartSize
	}
	if req.SHA256 != "" {
		sum, p := parseSHA256(req.SHA256)
		if p != nil {
			return p
		}
		spec.sha256 = sum
	}
	exp, p := s.expiry(req.ExpiresIn)
	if p != nil {
		return p
	}
	spec.expires = exp
	if idemKey != "" {
		// The metadata is checked before it is hashed (its numbers rendered in plain decimal):
		// invalid metadata is refused as such, never answered as another request's replay.
		if _, p := parseMetadata(req.Metadata); p != nil {
			return p
		}
		spec.idem = idempotency{key: idemKey, hash: req.paramsHash()}
		if resp, p, found := s.replayIntent(r.Context(), who.owner, spec.idem); found {
			return s.writeReplay(w, &resp, p)
		}
	}
	resp, p := s.newIntent(r.Context(), who.owner, spec)
	if p == errIdempotencyRace {
		resp, p, found := s.replayIntent(r.Context(), who.owner, spec.idem)
		if !found {
			return s.internalProblem(r.Context(), "replay upload intent", errors.New("the Idempotency-Key's row was refused as a duplicate and is not found"))
		}
		return s.writeReplay(w, &resp, p)
	}
	if p != nil {
		return p
	}
	writeUpload(w, http.StatusCreated, &resp)
	return nil
}

// writeReplay answers a request with the intent its Idempotency-Key created before (resp), or with
// p.
func (s *Server) writeReplay(w http.ResponseWriter, resp *uploadResponse, p *Problem) *Problem {
	if p != nil {
		return p
	}
	w.Header()[IdempotentReplayedHeader] = headerTrue
	writeUpload(w, http.StatusCreated, resp)
	return nil
}

// expiry returns the requested lifetime of presigned URLs, the default when nil.
func (s *Server) expiry(secs *int64) (time.Duration, *Problem) {
	if secs == nil || *secs == 0 {
		return s.cfg.PresignExpiry, nil
	}
	if *secs < 0 {
		return 0, problemf(probInvalidExpiry, "expires_in must be a positive number of seconds")
	}
	if max := int64(s.cfg.MaxPresignExpiry / time.Second); *secs > max {
		return 0, problemf(probExpiryTooLong, "expires_in %d exceeds the maximum of %d seconds", *secs, max)
	}
	return time.Duration(*secs) * time.Second, nil
}

// newIntent turns spec into an upload intent for owner: validate (names, size, method, policy), sign
// (a presigned PUT, a POST policy, or a new multipart upload), then persist (the row, and the abort
// of a multipart upload at its deadline).
func (s *Server) newIntent(ctx context.Context, owner string, spec intentSpec) (uploadResponse, *Problem) {
	in, p := s.validateIntent(ctx, owner, spec)
	if p != nil {
		return uploadResponse{}, p
	}
	if in.spec.method == MethodMultipart {
		if p := s.checkOpenMultipart(ctx, owner); p != nil {
			return uploadResponse{}, p
		}
		// From here S3 holds an upload: a client that leaves must not cut the work between S3's
		// answer and the row (an upload nobody records, counted by no quota) or after the row (a
		// recorded upload aborted by discard, its abort never scheduled). Bounded by its own timeout.
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(context.WithoutCancel(ctx), multipartCreateTimeout)
		defer cancel()
	}
	resp, p := s.signIntent(ctx, in)
	if p != nil {
		return uploadResponse{}, p
	}
	if p := s.persistIntent(ctx, in, resp); p != nil {
		return uploadResponse{}, p
	}
	s.metrics.presigned.get(in.spec.method).Inc()
	return resp, nil
}

// checkOpenMultipart refuses a new multipart upload when the owner has MaxOpenMultipart open
// already, before anything is created in S3. The bound is soft by the requests in flight: creates
// racing each other may pass it by as many as run at once.
func (s *Server) checkOpenMultipart(ctx context.Context, owner string) *Problem {
	limit := s.cfg.MaxOpenMultipart
	if limit <= 0 {
		return nil
	}
	open, err := s.q.APICountOpenMultipart(ctx, dbq.APICountOpenMultipartParams{Owner: owner, MaxRows: int32(limit)})
	if err != nil {
		return s.dbProblem(ctx, "count open multipart uploads", err)
	}
	if int(open) >= limit {
		s.metrics.refusedOpen.Inc()
		return problemf(probTooManyOpen, "%d multipart uploads of yours are open, the limit; complete or abort some (DELETE /v1/uploads/{id}) or wait for their deadline", limit)
	}
	return nil
}

// intent is a validated intentSpec with the names intake gave it.
type intent struct {
	spec  intentSpec
	owner string
	id    uuid.UUID
	key   string
	ct    string // normalized content type
	rule  pipeline.Rule
	plan  multipart.Plan // multipart: the size and part size bound
	meta  []byte         // compact metadata, nil when none
}

// validateIntent checks spec (file name, content type, size, method) and the policy rule of the
// key it will get, and chooses the method when spec leaves it open.
func (s *Server) validateIntent(ctx context.Context, owner string, spec intentSpec) (intent, *Problem) {
	name, p := sanitizeFilename(spec.filename)
	if p != nil {
		return intent{}, p
	}
	ct, p := normalizeContentType(spec.contentType)
	if p != nil {
		return intent{}, p
	}
	if spec.size < 0 {
		return intent{}, problemf(probInvalidSize, "size must not be negative")
	}
	if spec.partSize > 0 && spec.method == "" {
		spec.method = MethodMultipart
	}
	if spec.method, p = chooseMethod(spec.method, spec.size); p != nil {
		return intent{}, p
	}
	meta, p := parseMetadata(spec.metadata)
	if p != nil {
		return intent{}, p
	}
	var plan multipart.Plan
	if spec.partSize > 0 && spec.method != MethodMultipart {
		return intent{}, problemf(probInvalidSize, "part_size applies to method multipart only")
	}
	id, err := uuid.NewV7()
	if err != nil {
		return intent{}, s.internalProblem(ctx, "generate id", err)
	}
	key := objectKey(s.cfg.KeyPrefix, owner, id, name)
	rule, _ := s.policy.For(key)
	if v := rule.CheckDeclared(ct, spec.size); v != nil {
		kind := probTypeNotAllowed
		if v.Reason == pipeline.ReasonTooLarge {
			kind = probTooLarge
		}
		pr := problemf(kind, "%s", v.Detail)
		pr.Reason = v.Reason
		return intent{}, pr
	}
	if spec.method == MethodMultipart {
		bound := spec.size
		if !spec.sizeDeclared {
			bound = sizeBound(rule)
		}
		if plan, err = multipart.NewPlan(bound, spec.partSize); err != nil {
			return intent{}, problemf(probInvalidSize, "%v", err)
		}
	}
	return intent{spec: spec, owner: owner, id: id, key: key, ct: ct, rule: rule, plan: plan, meta: meta}, nil
}

// sizeBound is the most an upload without a declared size may hold: the policy's max_size for its
// key, or S3's object limit.
func sizeBound(rule pipeline.Rule) int64 {
	if rule.MaxSize > 0 && rule.MaxSize < maxMultipart {
		return rule.MaxSize
	}
	return maxMultipart
}

// chooseMethod returns the upload method for a declared size: method itself when given (checked
// against S3's limits), else put, or multipart above S3's single-request limit.
func chooseMethod(method string, size int64) (string, *Problem) {
	switch method {
	case "":
		method = MethodPut
		if size > maxSinglePut {
			method = MethodMultipart
		}
	case MethodPut, MethodPost, MethodMultipart:
	default:
		return "", problemf(probInvalidMethod, "method %q is not put, post or multipart", method)
	}
	if method != MethodMultipart && size > maxSinglePut {
		return "", problemf(probInvalidSize, "size %d exceeds S3's %d-byte limit for a single %s; use method multipart", size, int64(maxSinglePut), method)
	}
	if size > maxMultipart {
		return "", problemf(probInvalidSize, "size %d exceeds S3's object limit of %d bytes", size, int64(maxMultipart))
	}
	return method, nil
}

// signIntent returns what the client needs to upload in: a presigned PUT, a POST policy, or the id
// of a multipart upload it creates in S3.
func (s *Server) signIntent(ctx context.Context, in intent) (uploadResponse, *Problem) {
	now := s.now()
	resp := uploadResponse{ID: in.id, Bucket: s.bucket, Key: in.key, Method: in.spec.method, ExpiresAt: now.Add(in.spec.expires).UTC().Truncate(time.Second)}
	switch in.spec.method {
	case MethodPut:
		return s.signPut(ctx, in, now, resp)
	case MethodPost:
		return s.signPost(ctx, in, now, resp)
	default:
		return s.createMultipart(ctx, in, now, resp)
	}
}

// signPut presigns a PUT with the content type, length and (when declared) SHA-256 signed.
func (s *Server) signPut(ctx context.Context, in intent, now time.Time, resp uploadResponse) (uploadResponse, *Problem) {
	var checksum string
	if in.spec.sha256 != nil {
		checksum = base64.StdEncoding.EncodeToString(in.spec.sha256)
	}
	// The key is new (intake names it per intent): If-None-Match makes the URL good for one
	// object only, so that it cannot replace the bytes once they were uploaded (and verified).
	var ifNoneMatch string
	if s.cfg.PutIfNoneMatch {
		ifNoneMatch = "*"
	}
	u, err := s.signer.Sign(ctx, sigv4.Input{
		Method: http.MethodPut, Op: sigv4.OpPutObject, Bucket: s.bucket, Key: in.key, Now: now, Expires: in.spec.expires,
		ContentType: in.ct, ContentLength: in.spec.size, ChecksumSHA256: checksum, IfNoneMatch: ifNoneMatch,
	})
	if err != nil {
		return uploadResponse{}, s.signProblem(ctx, "presign put", err)
	}
	resp.URL, resp.ExpiresAt, resp.lifetime = u.URL, u.Expires, u.Expires.Sub(now.Truncate(time.Second))
	resp.Headers = map[string]string{"Content-Type": in.ct, "Content-Length": strconv.FormatInt(in.spec.size, 10)}
	if checksum != "" {
		resp.Headers["x-amz-checksum-sha256"] = checksum
	}
	if ifNoneMatch != "" {
		resp.Headers["If-None-Match"] = ifNoneMatch
	}
	return resp, nil
}

// signPost signs a POST policy for the declared size, or for up to the policy's max_size when the
// size is not declared (Uppy). Its expiry is capped at the signing credentials' (see sigv4.Lifetime).
func (s *Server) signPost(ctx context.Context, in intent, now time.Time, resp uploadResponse) (uploadResponse, *Problem) {
	minSize, maxSize := in.spec.size, in.spec.size
	if !in.spec.sizeDeclared {
		minSize, maxSize = 0, maxSinglePut
		if in.rule.MaxSize > 0 && in.rule.MaxSize < maxSize {
			maxSize = in.rule.MaxSize
		}
	}
	// The SDK signs the policy, from its own reading of the clock, with the credentials the Signer
	// would sign with (not the SDK's shared cache, which may hold another session, one that ends
	// sooner): cap its expiry at theirs as the Signer would, less a second for the two clock
	// readings to differ.
	creds, lifetime, err := s.signer.Credentials(ctx, now, in.spec.expires)
	if err != nil {
		return uploadResponse{}, s.signProblem(ctx, "presign post", err)
	}
	if lifetime < in.spec.expires.Truncate(time.Second) {
		if lifetime -= time.Second; lifetime < time.Second {
			return uploadResponse{}, s.signProblem(ctx, "presign post", sigv4.ErrCredentialsExpiring)
		}
	}
	u, fields, err := s.presignPost(ctx, creds, in.key, in.ct, minSize, maxSize, lifetime)
	if err != nil {
		return uploadResponse{}, s.signProblem(ctx, "presign post", err)
	}
	resp.URL, resp.Fields = u, fields
	resp.ExpiresAt, resp.lifetime = now.Truncate(time.Second).Add(lifetime).UTC(), lifetime
	return resp, nil
}

// createMultipart creates the multipart upload in S3; it expires at the multipart deadline.
func (s *Server) createMultipart(ctx context.Context, in intent, now time.Time, resp uploadResponse) (uploadResponse, *Problem) {
	resp.ExpiresAt = now.Add(s.deadline).UTC().Truncate(time.Second)
	cctx, cancel := context.WithTimeout(ctx, s.s3Timeout)
	defer cancel()
	out, err := s.s3.CreateMultipartUpload(cctx, &s3.CreateMultipartUploadInput{
		Bucket: aws.String(s.bucket), Key: aws.String(in.key), ContentType: aws.String(in.ct),
	})
	if err != nil {
		return uploadResponse{}, s.s3Problem(ctx, "create multipart upload", err)
	}
	resp.UploadID = aws.ToString(out.UploadId)
	resp.PartSize, resp.MaxParts = in.plan.PartSize, in.plan.Parts()
	return resp, nil
}

// persistIntent records the intent. A multipart upload whose row could not be written is aborted
// (nobody could complete it); one that was recorded gets its abort scheduled at the deadline. When
// scheduling fails (Redis down) the upload is still created: its row's expires_at makes the sweep
// abort it after the deadline (internal/multipart, "Sweep and deadlines"). When the insert's
// outcome is unknown (the creation's budget ran out while the row was in a batch, which may still
// commit it, or in a statement whose answer was lost: committedUnknown), the upload is not aborted
// (a committed row would name a dead upload): its deadline abort is scheduled as for a recorded
// one. That abort is idempotent, and without a row it aborts the upload all the same; the request
// is refused either way.
func (s *Server) persistIntent(ctx context.Context, in intent, resp uploadResponse) *Problem {
	// Copies, not &resp.UploadID or &in.plan.PartSize: a pointer into in or resp, passed to the
	// Queries interface, would move both (hundreds of bytes) to the heap on every request, multipart
	// or not.
	var partSize *int64
	var uploadID, idemKey *string
	if in.spec.idem.key != "" {
		k := in.spec.idem.key
		idemKey = &k
	}
	if resp.UploadID != "" {
		id := resp.UploadID
		uploadID = &id
	}
	if in.plan.PartSize > 0 {
		ps := in.plan.PartSize
		partSize = &ps
	}
	err := s.q.APICreateUpload(ctx, dbq.APICreateUploadParams{
		ID: in.id, Owner: in.owner, Bucket: s.bucket, Key: in.key, Method: in.spec.method, Filename: in.spec.filename,
		ContentType: in.ct, Size: in.spec.size, SizeDeclared: in.spec.sizeDeclared, Sha256: in.spec.sha256,
		MultipartUploadID: uploadID, PartSize: partSize, ExpiresAt: resp.ExpiresAt, Metadata: in.meta,
		IdempotencyKey: idemKey, IdempotencyHash: in.spec.idem.hash,
	})
	switch {
	case err != nil && idempotencyConflict(err):
		if uploadID != nil {
			s.discard(in.key, resp.UploadID)
		}
		return errIdempotencyRace
	case err != nil && uploadID != nil && committedUnknown(ctx, err):
		s.log.WarnContext(ctx, "recording a multipart upload's intent ended without an answer; its deadline abort is scheduled, the upload kept",
			"key", in.key, "upload_id", resp.UploadID, "err", err)
		s.scheduleAbort(ctx, in.key, resp)
		return s.dbProblem(ctx, "record upload intent", err)
	case err != nil:
		if uploadID != nil {
			s.discard(in.key, resp.UploadID)
		}
		return s.dbProblem(ctx, "record upload intent", err)
	case uploadID != nil:
		s.scheduleAbort(ctx, in.key, resp)
	}
	return nil
}

// committedUnknown reports whether err, an insert's error, leaves open whether the row was
// committed: the context ended (IntentWriter may still commit a row it had put in a statement;
// PostgreSQL may have committed a statement whose answer was not awaited) or the connection failed
// after the statement may have been sent. An error PostgreSQL answered (a constraint, a bad value),
// a connection never made and a statement never sent mean no row.
func committedUnknown(ctx context.Context, err error) bool {
	if ctx.Err() != nil || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return true
	}
	var pgErr *pgconn.PgError
	var connectErr *pgconn.ConnectError
	return !errors.As(err, &pgErr) && !errors.As(err, &connectErr) && !pgconn.SafeToRetry(err)
}

// scheduleAbort schedules the abort of the multipart upload of resp at its deadline, bounded by
// scheduleTimeout from now (ctx may have run out: persistIntent's unknown outcome).
func (s *Server) scheduleAbort(ctx context.Context, key string, resp uploadResponse) {
	if s.aborts == nil {
		s.log.DebugContext(ctx, "no deadline aborter: multipart upload left to the sweep", "key", key, "upload_id", resp.UploadID)
		return
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), scheduleTimeout)
	defer cancel()
	if err := s.aborts.ScheduleAbort(sctx, s.bucket, key, resp.UploadID, resp.ExpiresAt); err != nil {
		s.metrics.unscheduled.Inc()
		s.log.WarnContext(ctx, "schedule multipart abort failed; the sweep aborts the upload after its deadline",
			"key", key, "upload_id", resp.UploadID, "deadline", resp.ExpiresAt, "err", err)
	}
}

// multipartCreateTimeout bounds the creation of a multipart upload once it no longer follows the
// request's context: S3's create, the row and the abort's scheduling, each bounded on its own too.
const multipartCreateTimeout = 30 * time.Second

// scheduleTimeout bounds the scheduling of a multipart abort: a Redis that does not answer must
// not hold the creation (PostgreSQL's deadline is the guarantee).
const scheduleTimeout = 2 * time.Second

// discard aborts a multipart upload whose intent could not be recorded.
func (s *Server) discard(key, uploadID string) {
	ctx, cancel := context.WithTimeout(context.Background(), s.s3Timeout)
	defer cancel()
	if err := s.mp.Discard(ctx, s.bucket, key, uploadID); err != nil {
		s.log.Warn("abort unrecorded multipart upload", "key", key, "upload_id", uploadID, "err", err)
	}
}

// presignPost signs a POST policy bound to the key, the exact content type and a length range, with
// creds (see newPostPresigner).
func (s *Server) presignPost(ctx context.Context, creds aws.Credentials, key, ct string, minSize, maxSize int64, expires time.Duration) (string, map[string]string, error) {
	ctx = context.WithValue(ctx, postCredentialsKey{}, creds)
	out, err := s.presign.PresignPostObject(ctx, &s3.PutObjectInput{Bucket: aws.String(s.bucket), Key: aws.String(key)}, func(o *s3.PresignPostOptions) {
		o.Expires = expires
		o.Conditions = []any{
			[]any{"content-length-range", minSize, maxSize},
			[]any{"eq", "$Content-Type", ct},
		}
	})
	if err != nil {
		return "", nil, err
	}
	fields := make(map[string]string, len(out.Values)+1)
	for k, v := range out.Values {
		fields[k] = v
	}
	fields["Content-Type"] = ct
	return out.URL, fields, nil
}

// newPostPresigner returns the presign client of POST policies: the client's endpoint and region,
// with the credentials presignPost puts in the request's context (postCredentials). The SDK's
// PresignPostObject signs with its client's credentials provider (PresignPostOptions.ClientOptions
// are not applied to the call), so the provider itself reads them from there.
func newPostPresigner(c *s3.Client) *s3.PresignClient {
	return s3.NewPresignClient(c, s3.WithPresignClientFromClientOptions(func(o *s3.Options) {
		o.Credentials = postCredentials{}
	}))
}

// postCredentialsKey is the context key of the credentials a POST policy is signed with.
type postCredentialsKey struct{}

// postCredentials is the credentials provider of the POST presign client: the credentials
// presignPost put in the context, those the Signer capped the policy's lifetime with
// (sigv4.Signer.Credentials), so that the session that signs the policy is the one whose expiry
// bounds its expiration and the expires_at answered.
type postCredentials struct{}

// Retrieve implements aws.CredentialsProvider.
func (postCredentials) Retrieve(ctx context.Context) (aws.Credentials, error) {
	creds, ok := ctx.Value(postCredentialsKey{}).(aws.Credentials)
	if !ok {
		return aws.Credentials{}, errors.New("api: a POST policy is signed with the presigner's credentials, and none were given")
	}
	return creds, nil
}

// s3Problem maps an S3 error. Only the errors a client's request causes are the client's (4xx, with
// S3's words): an upload S3 does not know (NoSuchUpload) and a part list S3 refuses. Every other
// error, 4xx included, is intake's side failing (credentials expired or denied, a bucket missing, a
// clock skewed): 502, logged with S3's words, which the client does not see (an AccessDenied names
// the account and the role).
func (s *Server) s3Problem(ctx context.Context, what string, err error) *Problem {
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) {
		switch apiErr.ErrorCode() {
		case "NoSuchUpload":
			return problemf(probNotFound, "%s: %s", what, apiErr.ErrorMessage())
		case "InvalidPart", "InvalidPartOrder", "EntityTooSmall", "EntityTooLarge":
			return problemf(probS3Rejected, "%s: %s: %s", what, apiErr.ErrorCode(), apiErr.ErrorMessage())
		}
	}
	s.log.WarnContext(ctx, what, "err", err)
	return problemf(probS3Unavailable, "%s: storage failed or did not answer (request id %s)", what, requestID(ctx))
}
