package api

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"net/http"
	"net/url"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/intakehq/intake/internal/sigv4"
	"github.com/intakehq/intake/internal/store"
	"github.com/intakehq/intake/internal/store/dbq"
)

// Page sizes of GET /v1/objects.
const (
	defaultPageSize = 50
	maxPageSize     = 500
)

// objectJSON is an object as the API shows it.
type objectJSON struct {
	ID          uuid.UUID  `json:"id"`
	Bucket      string     `json:"bucket"`
	Key         string     `json:"key"`
	Status      string     `json:"status"`
	Reason      *string    `json:"reason,omitempty"`
	Size        *int64     `json:"size,omitempty"`
	ContentType *string    `json:"content_type,omitempty"`
	SniffedType *string    `json:"sniffed_type,omitempty"`
	SHA256      string     `json:"sha256,omitempty"`
	ETag        *string    `json:"etag,omitempty"`
	VersionID   *string    `json:"version_id,omitempty"`
	Width       *int32     `json:"width,omitempty"`
	Height      *int32     `json:"height,omitempty"`
	UploadID    *uuid.UUID `json:"upload_id,omitempty"`
	CreatedAt   time.Time  `json:"created_at"`
	UpdatedAt   time.Time  `json:"updated_at"`
}

func toObjectJSON(o dbq.Object) objectJSON {
	j := objectJSON{
		ID: o.ID, Bucket: o.Bucket, Key: o.Key, Status: o.Status, Reason: o.Reason, Size: o.Size,
		ContentType: o.ContentType, SniffedType: o.SniffedType, ETag: o.Etag, VersionID: o.VersionID,
		Width: o.Width, Height: o.Height, UploadID: o.UploadID, CreatedAt: o.CreatedAt, UpdatedAt: o.UpdatedAt,
	}
	if o.Sha256 != nil {
		j.SHA256 = hex.EncodeToString(o.Sha256)
	}
	return j
}

// encodeCursor makes the opaque cursor of a page's last row: (created_at, id).
func encodeCursor(o dbq.Object) string {
	var b [24]byte
	binary.BigEndian.PutUint64(b[:8], uint64(o.CreatedAt.UnixMicro()))
	copy(b[8:], o.ID[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// Cursor times outside these bounds were not issued by the API (they come from created_at). They
// are refused: near the ends of int64 microseconds, pgx's conversion to PostgreSQL's epoch
// overflows and the query silently runs with another time.
var (
	minCursorTime = time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC)
	maxCursorTime = time.Date(9999, 12, 31, 23, 59, 59, 999999000, time.UTC)
)

func decodeCursor(s string) (time.Time, uuid.UUID, bool) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(b) != 24 {
		return time.Time{}, uuid.UUID{}, false
	}
	id, err := uuid.FromBytes(b[8:])
	if err != nil {
		return time.Time{}, uuid.UUID{}, false
	}
	at := time.UnixMicro(int64(binary.BigEndian.Uint64(b[:8]))).UTC()
	if at.Before(minCursorTime) || at.After(maxCursorTime) {
		return time.Time{}, uuid.UUID{}, false
	}
	return at, id, true
}

func (s *Server) listObjects(w http.ResponseWriter, r *http.Request, who principal) *Problem {
	q := r.URL.Query()
	if p := uppySingle(q, "limit", "cursor"); p != nil {
		return p
	}
	limit := defaultPageSize
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxPageSize {
			return problemf(probInvalidLimit, "limit must be an integer in 1..%d", maxPageSize)
		}
		limit = n
	}
	owner := who.owner
	arg := dbq.APIListObjectsParams{Owner: &owner, MaxRows: int32(limit)}
	if p := listFilters(q, &arg); p != nil {
		return p
	}
	if arg.Prefix != nil {
		// Every key intake gives the owner starts with its namespace ({INTAKE_API_KEY_PREFIX}/{owner}/):
		// a prefix of it holds (nearly) all of the owner's rows, which are then walked newest first
		// from the cursor rather than read and sorted whole for each page (see APIListObjects).
		ns := strings.TrimRight(s.cfg.KeyPrefix, "/") + "/" + owner + "/"
		arg.WidePrefix = strings.HasPrefix(ns, *arg.Prefix)
	}
	if c := q.Get("cursor"); c != "" {
		at, id, ok := decodeCursor(c)
		if !ok {
			return problemf(probInvalidCursor, "cursor %q was not issued by this API", c)
		}
		arg.CursorCreatedAt, arg.CursorID = &at, &id
	}
	rows, err := s.q.APIListObjects(r.Context(), arg)
	if err != nil {
		return s.dbProblem(r.Context(), "list objects", err)
	}
	out := struct {
		Objects    []objectJSON `json:"objects"`
		NextCursor string       `json:"next_cursor,omitempty"`
	}{Objects: make([]objectJSON, 0, len(rows))}
	for _, o := range rows {
		out.Objects = append(out.Objects, toObjectJSON(o))
	}
	if len(rows) == limit {
		out.NextCursor = encodeCursor(rows[len(rows)-1])
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// ownedObject loads the caller's object from the {id} path value; another owner's is not found.
func (s *Server) ownedObject(r *http.Request, owner string) (dbq.Object, *Problem) {
	id, err := uuid.Parse(r.PathValue("id"))
	if err != nil {
		return dbq.Object{}, problemf(probNotFound, "no object %q", r.PathValue("id"))
	}
	o, err := s.q.APIGetObject(r.Context(), dbq.APIGetObjectParams{ID: id, Owner: &owner})
	if errors.Is(err, pgx.ErrNoRows) {
		return dbq.Object{}, problemf(probNotFound, "no object %s", id)
	}
	if err != nil {
		return dbq.Object{}, s.dbProblem(r.Context(), "load object", err)
	}
	return o, nil
}

func (s *Server) getObject(w http.ResponseWriter, r *http.Request, who principal) *Problem {
	o, p := s.ownedObject(r, who.owner)
	if p != nil {
		return p
	}
	writeJSON(w, http.StatusOK, toObjectJSON(o))
	return nil
}

func (s *Server) downloadObject(w http.ResponseWriter, r *http.Request, who principal) *Problem {
	q := r.URL.Query()
	if p := uppySingle(q, "expires_in"); p != nil {
		return p
	}
	var secs *int64
	if v := q.Get("expires_in"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return problemf(probInvalidExpiry, "expires_in must be an integer number of seconds")
		}
		secs = &n
	}
	exp, p := s.expiry(secs)
	if p != nil {
		return p
	}
	o, p := s.ownedObject(r, who.owner)
	if p != nil {
		return p
	}
	if o.Status != "valid" {
		return problemf(probNotValid, "object %s is %s; only valid objects can be downloaded", o.ID, o.Status)
	}
	// In a versioned bucket the URL reads the version that was verified, not whatever was written
	// over it since (an upload URL or policy used again before it expired): the verdict holds for
	// those bytes only, until the newer version's own verdict replaces the row.
	in := sigv4.Input{Method: http.MethodGet, Op: sigv4.OpGetObject, Bucket: o.Bucket, Key: o.Key, Now: s.now(), Expires: exp, ContentLength: -1}
	in.ResponseContentType, in.ResponseContentDisposition = downloadOverrides(o)
	// An uploader's Cache-Control (public, max-age=31536000) would let a shared cache keep the
	// answer past the URL's expiry.
	in.ResponseCacheControl = downloadCacheControl
	if o.VersionID != nil {
		in.VersionID = *o.VersionID
	}
	u, err := s.signer.Sign(r.Context(), in)
	if err != nil {
		return s.signProblem(r.Context(), "presign get", err)
	}
	s.metrics.presigned.get("get").Inc()
	writeJSON(w, http.StatusOK, map[string]any{"method": "GET", "url": u.URL, "expires_at": u.Expires.UTC()})
	return nil
}

// downloadCacheControl is the Cache-Control of a download's answer: the browser's own cache only.
const downloadCacheControl = "private"

// downloadOverrides are the response headers a download URL should make S3 answer with
// (response-content-type and response-content-disposition, signed into the URL), whatever headers
// the object was stored with. A presigned PUT signs Content-Type, Content-Length, Host,
// If-None-Match and the checksum only: its uploader may add Content-Disposition, Content-Encoding,
// Cache-Control and the like unsigned, and S3 stores them and serves them on every GET (seen with
// MinIO), so a file verified as text/plain could be served inline as evil.html. The download is
// served as the type the verdict accepted (the object's stored Content-Type, which the verdict
// checked against the declared one; application/octet-stream without one) and as an attachment
// named after the key's last segment, the sanitized file name (RFC 6266, its filename* in RFC 8187's
// UTF-8 encoding). An <img> or <video> shows an attachment as it would any answer; a page that
// links to the URL gets a download instead of a page rendered from S3's origin.
func downloadOverrides(o dbq.Object) (contentType, disposition string) {
	contentType = "application/octet-stream"
	if o.ContentType != nil && *o.ContentType != "" {
		contentType = *o.ContentType
	}
	return contentType, "attachment; filename*=UTF-8''" + rfc8187Escape(path.Base(o.Key))
}

// rfc8187Escape percent-encodes s as an RFC 8187 ext-value's value: every byte but attr-char.
func rfc8187Escape(s string) string {
	const upperHex = "0123456789ABCDEF"
	var b strings.Builder
	b.Grow(len(s) * 3)
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("!#$&+-.^_`|~", c) >= 0 {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(upperHex[c>>4])
		b.WriteByte(upperHex[c&15])
	}
	return b.String()
}

// objectStatuses are the values ?status= accepts.
var objectStatuses = []string{"pending", "valid", "rejected", "deleted", "missing"}

// listFilters reads the filters of GET /v1/objects (?status=, ?upload_id=, ?prefix=) into arg.
func listFilters(q url.Values, arg *dbq.APIListObjectsParams) *Problem {
	if p := uppySingle(q, "status", "upload_id", "prefix"); p != nil {
		return p
	}
	if v := q.Get("status"); v != "" {
		if !slices.Contains(objectStatuses, v) {
			return problemf(probInvalidParam, "status %q is not one of %s", v, strings.Join(objectStatuses, ", "))
		}
		arg.Status = &v
	}
	if v := q.Get("upload_id"); v != "" {
		id, err := uuid.Parse(v)
		if err != nil {
			return problemf(probInvalidParam, "upload_id %q is not a UUID", v)
		}
		arg.UploadID = &id
	}
	if v := q.Get("prefix"); v != "" {
		if len(v) > 1024 || !pgText(v) {
			return problemf(probInvalidParam, "prefix must be valid UTF-8 without NUL, of at most 1024 bytes")
		}
		end := store.PrefixEnd(v) // the index range's upper bound (see APIListObjects)
		arg.Prefix, arg.PrefixEnd = &v, &end
	}
	return nil
}
