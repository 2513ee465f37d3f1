package api

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/intakehq/intake/internal/multipart"
	"github.com/intakehq/intake/internal/problem"
	"github.com/intakehq/intake/internal/store"
	"github.com/intakehq/intake/internal/store/dbq"
)

// IdempotencyKeyHeader names the request header of POST /v1/uploads that makes a retry safe: the
// first request with a key creates an intent, and every later one of the same owner with the same
// key and the same parameters answers that intent (201, Idempotent-Replayed: true) instead of
// creating another (see createUpload).
const IdempotencyKeyHeader = "Idempotency-Key"

// IdempotentReplayedHeader is set ("true") on the answer of a request whose Idempotency-Key had
// created its intent before.
const IdempotentReplayedHeader = "Idempotent-Replayed"

// MaxIdempotencyKey bounds an Idempotency-Key's length in bytes.
const MaxIdempotencyKey = 255

var (
	probInvalidIdemKey = problem.Kind{Slug: "invalid-idempotency-key", Title: "Invalid Idempotency-Key", Status: http.StatusBadRequest}
	probIdemKeyReused  = problem.Kind{Slug: "idempotency-key-reused", Title: "Idempotency-Key sent with another request", Status: http.StatusUnprocessableEntity}
)

// headerTrue is the shared value of IdempotentReplayedHeader (see headerJSON).
var headerTrue = []string{"true"}

// idempotency is a request's Idempotency-Key and the hash of its parameters (paramsHash), both
// stored with the intent the request creates.
type idempotency struct {
	key  string
	hash []byte
}

// idempotencyKey returns r's Idempotency-Key, "" when it has none: 1 to MaxIdempotencyKey
// printable ASCII characters without spaces (a UUID, a hash, an app's own request id), given once.
func idempotencyKey(r *http.Request) (string, *Problem) {
	vals := r.Header[IdempotencyKeyHeader]
	switch len(vals) {
	case 0:
		return "", nil
	case 1:
	default:
		return "", problemf(probInvalidIdemKey, "%s is given %d times; send it once", IdempotencyKeyHeader, len(vals))
	}
	k := vals[0]
	if k == "" || len(k) > MaxIdempotencyKey {
		return "", problemf(probInvalidIdemKey, "%s must hold 1 to %d characters, got %d", IdempotencyKeyHeader, MaxIdempotencyKey, len(k))
	}
	for i := 0; i < len(k); i++ {
		if c := k[i]; c <= ' ' || c > '~' {
			return "", problemf(probInvalidIdemKey, "%s may hold printable ASCII characters other than space only; byte %d is %#02x", IdempotencyKeyHeader, i, c)
		}
	}
	return k, nil
}

// paramsHash is the SHA-256 of req's parameters, each length-prefixed (an absent number and 0
// differ), in the forms intake keeps them: the content type normalized (its case and spaces do
// not count), the sha256's case ignored, the metadata's members in sorted order (a client
// retrying with the metadata intake returned, reordered as PostgreSQL orders it, or with a
// serializer that does not keep member order, sends the same request), its numbers as jsonb renders
// them (1e2 is 100). Two requests with one Idempotency-Key must hash alike to be answered with one intent.
func (req *createUploadRequest) paramsHash() []byte {
	h := sha256.New()
	var n [8]byte
	field := func(b []byte) {
		binary.BigEndian.PutUint64(n[:], uint64(len(b)))
		h.Write(n[:])
		h.Write(b)
	}
	num := func(p *int64) {
		if p == nil {
			field(nil)
			return
		}
		field(strconv.AppendInt([]byte{'#'}, *p, 10))
	}
	field([]byte(req.Filename))
	if ct, p := normalizeContentType(req.ContentType); p == nil {
		field([]byte(ct))
	} else {
		field([]byte(req.ContentType))
	}
	num(req.Size)
	field([]byte(strings.ToLower(req.SHA256)))
	field([]byte(req.Method))
	num(req.ExpiresIn)
	num(req.PartSize)
	field(canonicalJSON(req.Metadata))
	return h.Sum(nil)
}

// canonicalJSON is raw re-encoded as intake keeps it: every object's members in sorted order and
// every number as PostgreSQL's jsonb renders it (plain decimal: 1e2 and 100 are one request, as
// they are one stored value and a retry may send back what intake returned; 1.5 and 1.50, which
// jsonb keeps apart, are two). It is raw itself when raw is not one JSON value, and nothing for
// null, which is no metadata, as when the member is absent.
func canonicalJSON(raw []byte) []byte {
	if t := bytes.TrimSpace(raw); len(t) == 0 || string(t) == "null" {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return raw
	}
	out, err := json.Marshal(renderNumbers(v)) // maps' keys sorted
	if err != nil {
		return raw
	}
	return out
}

// renderNumbers replaces every json.Number in v (decoded with UseNumber) by its form as jsonb
// renders it (a number whose exponent parseMetadata refuses stays as written).
func renderNumbers(v any) any {
	switch v := v.(type) {
	case json.Number:
		if r, ok := renderNumber(string(v)); ok {
			return json.Number(r)
		}
	case []any:
		for i, e := range v {
			v[i] = renderNumbers(e)
		}
	case map[string]any:
		for k, e := range v {
			v[k] = renderNumbers(e)
		}
	}
	return v
}

// errIdempotencyRace is the answer of persistIntent when another request with the same owner and
// Idempotency-Key recorded its intent first (the unique index refused this one's row): the caller
// answers with that intent (replayIntent). Compared by identity, never written.
var errIdempotencyRace = &Problem{Title: "Idempotency-Key raced"}

// idempotencyConflict reports whether err says that a row was not inserted because its owner's
// Idempotency-Key names another: skipped from a batch (store.ErrIdempotencyKeyTaken), or refused
// alone by the unique index of (owner, idempotency_key).
func idempotencyConflict(err error) bool {
	var pgErr *pgconn.PgError
	return errors.Is(err, store.ErrIdempotencyKeyTaken) ||
		errors.As(err, &pgErr) && pgErr.Code == "23505" && pgErr.ConstraintName == "uploads_owner_idempotency_key_idx"
}

// replayIntent answers a request whose Idempotency-Key owner used before: found is false when no
// intent has the key (the request creates one). With one, the answer describes it as its creation
// did, its URL (put) or policy (post) signed anew, valid until the intent's own expiry (never
// later), or its multipart upload as created; it is refused when the key came with other
// parameters (idempotency-key-reused, 422), or when the intent is no longer open (completed,
// aborted, expired, or past its expiry: upload-not-pending, 409, naming it, whose state GET
// /v1/uploads/{id} tells).
func (s *Server) replayIntent(ctx context.Context, owner string, idem idempotency) (resp uploadResponse, p *Problem, found bool) {
	u, err := s.q.APIGetUploadByIdempotencyKey(ctx, dbq.APIGetUploadByIdempotencyKeyParams{Owner: owner, IdempotencyKey: &idem.key})
	if errors.Is(err, pgx.ErrNoRows) {
		return uploadResponse{}, nil, false
	}
	if err != nil {
		return uploadResponse{}, s.dbProblem(ctx, "look up the Idempotency-Key's upload", err), true
	}
	if !bytes.Equal(u.IdempotencyHash, idem.hash) {
		return uploadResponse{}, problemf(probIdemKeyReused, "this %s was sent before with other parameters, which created upload %s; send a new key for a new upload", IdempotencyKeyHeader, u.ID), true
	}
	if u.Status != multipart.StatusPending {
		return uploadResponse{}, problemf(probNotPending, "upload %s, created with this %s, is %s", u.ID, IdempotencyKeyHeader, u.Status), true
	}
	if u.Bucket != s.bucket {
		return uploadResponse{}, problemf(probNotPending, "upload %s, created with this %s, is in bucket %s, which intake no longer uploads to", u.ID, IdempotencyKeyHeader, u.Bucket), true
	}
	now := s.now()
	lifetime, p := partLifetime(u, now, s.cfg.MaxPresignExpiry)
	if p != nil {
		return uploadResponse{}, p, true
	}
	in := intent{
		spec: intentSpec{filename: u.Filename, contentType: u.ContentType, size: u.Size, sizeDeclared: u.SizeDeclared,
			sha256: u.Sha256, method: u.Method, expires: lifetime},
		owner: u.Owner, id: u.ID, key: u.Key, ct: u.ContentType, rule: s.rule(u), plan: s.plan(u),
	}
	resp = uploadResponse{ID: u.ID, Bucket: u.Bucket, Key: u.Key, Method: u.Method, ExpiresAt: u.ExpiresAt.UTC().Truncate(time.Second)}
	switch u.Method {
	case MethodPut:
		resp, p = s.signPut(ctx, in, now, resp)
	case MethodPost:
		resp, p = s.signPost(ctx, in, now, resp)
	default:
		if u.MultipartUploadID == nil {
			return uploadResponse{}, s.internalProblem(ctx, "replay multipart upload", errors.New("the intent has no multipart upload id")), true
		}
		resp.UploadID = *u.MultipartUploadID
		resp.PartSize, resp.MaxParts = in.plan.PartSize, in.plan.Parts()
	}
	return resp, p, true
}
