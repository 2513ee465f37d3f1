package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/intakehq/intake/internal/multipart"
	"github.com/intakehq/intake/internal/store/dbq"
)

// Uppy's @uppy/aws-s3 plugin, given `companionEndpoint`, calls Companion's S3 routes. intake serves
// them with Companion's shapes so an unmodified Uppy client uploads through intake. Uppy does not send
// the file's size on these routes by default, so their intents have no declared size (size_declared =
// false): POST uploads are bound by the policy's max_size, and multipart uploads are completed only
// when their parts sum to at most that. POST /s3/multipart takes a size when the client sends one
// (a "size" field of the body, or metadata.size, e.g. uppy.setFileMeta(id, {size: file.size})): the
// intent then declares it and complete holds the parts to it. Uppy's metadata (metadata[k]=v on
// /s3/params, "metadata" on POST /s3/multipart) becomes the intent's metadata, returned with its
// status and in its notifications, exactly as the metadata of POST /v1/uploads; it is not written as
// x-amz-meta-*, so the POST policy stays exact.

const defaultUppyType = "application/octet-stream"

// uppyParams: GET /s3/params?filename=&type=&metadata[k]=v → {method, url, fields, headers, expires}.
// Uppy posts the file as a form with the fields (a POST policy), as Companion does.
func (s *Server) uppyParams(w http.ResponseWriter, r *http.Request, who principal) *Problem {
	q := r.URL.Query()
	if p := uppySingle(q, "filename", "type"); p != nil {
		return p
	}
	ct := q.Get("type")
	if ct == "" {
		ct = defaultUppyType
	}
	meta, p := uppyQueryMetadata(q)
	if p != nil {
		return p
	}
	resp, p := s.newIntent(r.Context(), who.owner, intentSpec{
		filename: q.Get("filename"), contentType: ct, method: MethodPost, expires: s.cfg.PresignExpiry, metadata: meta,
	})
	if p != nil {
		return p
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"method": "POST", "url": resp.URL, "fields": resp.Fields, "headers": map[string]string{},
		"expires": int64(resp.lifetime / time.Second),
	})
	return nil
}

// uppySingle refuses repeated query parameters: url.Values.Get reads the first, and a proxy, a cache
// key or a log may read another, so which one intake acted on would be ambiguous. Every query
// parameter the API reads goes through it (Uppy's routes and /v1's).
func uppySingle(q map[string][]string, names ...string) *Problem {
	for _, n := range names {
		if len(q[n]) > 1 {
			return problemf(probInvalidParam, "query parameter %q is given %d times", n, len(q[n]))
		}
	}
	return nil
}

// uppyCreateMultipart: POST /s3/multipart {filename, type, metadata} → {key, uploadId, bucket}.
func (s *Server) uppyCreateMultipart(w http.ResponseWriter, r *http.Request, who principal) *Problem {
	var req struct {
		Filename string `json:"filename"`
		Type     string `json:"type"`
		Size     *int64 `json:"size"`
		// Metadata is kept as sent and checked as /v1's (parseMetadata): a decode into Go values
		// would round big integers and turn unpaired surrogate escapes into U+FFFD.
		Metadata json.RawMessage `json:"metadata"`
	}
	if p := decodeJSON(w, r, &req); p != nil {
		return p
	}
	if req.Type == "" {
		req.Type = defaultUppyType
	}
	meta, p := parseMetadata(req.Metadata)
	if p != nil {
		return p
	}
	spec := intentSpec{filename: req.Filename, contentType: req.Type, method: MethodMultipart, expires: s.cfg.PresignExpiry, metadata: meta}
	size, declared, p := uppySize(req.Size, meta)
	if p != nil {
		return p
	}
	spec.size, spec.sizeDeclared = size, declared
	resp, p := s.newIntent(r.Context(), who.owner, spec)
	if p != nil {
		return p
	}
	writeJSON(w, http.StatusOK, map[string]string{"key": resp.Key, "uploadId": resp.UploadID, "bucket": resp.Bucket})
	return nil
}

// uppySize is the size a POST /s3/multipart body declares: its "size", else metadata.size (a number
// or a string of digits), else none. meta is the metadata as parseMetadata returned it (a JSON
// object, or nil).
func uppySize(size *int64, meta []byte) (int64, bool, *Problem) {
	if size != nil {
		return *size, true, nil
	}
	if meta == nil {
		return 0, false, nil
	}
	var members map[string]json.RawMessage // as a map[string]any would read it: the last "size" wins
	if err := json.Unmarshal(meta, &members); err != nil {
		return 0, false, problemf(probInvalidMetadata, "metadata is not a JSON object: %v", err)
	}
	raw, ok := members["size"]
	if !ok || string(raw) == "null" {
		return 0, false, nil
	}
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return 0, false, problemf(probInvalidMetadata, "metadata.size: %v", err)
	}
	switch v := v.(type) {
	case json.Number:
		if n, err := strconv.ParseInt(string(v), 10, 64); err == nil {
			if n >= 0 && n <= maxMultipart {
				return n, true, nil
			}
			break
		}
		// 5.0, 5e3: an integer written otherwise.
		if f, err := strconv.ParseFloat(string(v), 64); err == nil && f >= 0 && f <= maxMultipart && f == float64(int64(f)) {
			return int64(f), true, nil
		}
	case string:
		if n, err := strconv.ParseInt(v, 10, 64); err == nil {
			return n, true, nil
		}
	}
	return 0, false, problemf(probInvalidSize, "metadata.size %.40s is not a size in bytes", raw)
}

// uppyUpload finds the caller's pending multipart intent of the {uploadId} path value and ?key=. The
// key must lie under the caller's prefix and its intent must name the same S3 upload id; otherwise the
// upload is not found.
func (s *Server) uppyUpload(r *http.Request, owner string) (dbq.Upload, *Problem) {
	uploadID := r.PathValue("uploadId")
	q := r.URL.Query()
	if p := uppySingle(q, "key"); p != nil {
		return dbq.Upload{}, p
	}
	key := q.Get("key")
	if key == "" {
		return dbq.Upload{}, problemf(probInvalidParam, "the key query parameter is required")
	}
	if !pgText(key) {
		return dbq.Upload{}, problemf(probInvalidParam, "the key query parameter must be valid UTF-8 without NUL")
	}
	if !strings.HasPrefix(key, ownerPrefix(s.cfg.KeyPrefix, owner)) {
		return dbq.Upload{}, problemf(probNotFound, "no upload %q for key %q", uploadID, key)
	}
	u, err := s.q.APIGetUploadByKey(r.Context(), dbq.APIGetUploadByKeyParams{Bucket: s.bucket, Key: key, Owner: owner})
	if errors.Is(err, pgx.ErrNoRows) || err == nil && (u.MultipartUploadID == nil || *u.MultipartUploadID != uploadID) {
		return dbq.Upload{}, problemf(probNotFound, "no upload %q for key %q", uploadID, key)
	}
	if err != nil {
		return dbq.Upload{}, s.dbProblem(r.Context(), "load upload", err)
	}
	if p := openMultipart(u); p != nil {
		return u, p // u for a retried request's answer (completedBefore, abortedBefore)
	}
	return u, nil
}

// uppyPart is a part in Companion's (the S3 SDK's) shape.
type uppyPart struct {
	PartNumber   int32      `json:"PartNumber"`
	Size         int64      `json:"Size"`
	ETag         string     `json:"ETag"`
	LastModified *time.Time `json:"LastModified,omitempty"`
}

// uppyListParts: GET /s3/multipart/{uploadId}?key= → [{PartNumber, Size, ETag, LastModified}].
func (s *Server) uppyListParts(w http.ResponseWriter, r *http.Request, who principal) *Problem {
	u, p := s.uppyUpload(r, who.owner)
	if p != nil {
		return p
	}
	out, p := heldParts(s, r.Context(), u, func(pt multipart.Part) uppyPart {
		return uppyPart{PartNumber: pt.Number, Size: pt.Size, ETag: pt.ETag, LastModified: pt.LastModified}
	})
	if p != nil {
		return p
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// uppySignPart: GET /s3/multipart/{uploadId}/{partNumber}?key= → {url, expires}.
func (s *Server) uppySignPart(w http.ResponseWriter, r *http.Request, who principal) *Problem {
	n, err := strconv.ParseInt(r.PathValue("partNumber"), 10, 32)
	if err != nil {
		return problemf(probInvalidParts, "part number %q is not an integer", r.PathValue("partNumber"))
	}
	if err := multipart.CheckPartNumbers([]int32{int32(n)}, 1); err != nil {
		return s.multipartProblem(r.Context(), "check part number", err)
	}
	u, p := s.uppyUpload(r, who.owner)
	if p != nil {
		return p
	}
	now := s.now()
	parts, expires, p := s.signParts(r.Context(), u, []int32{int32(n)}, now, s.cfg.PresignExpiry)
	if p != nil {
		return p
	}
	writeJSON(w, http.StatusOK, map[string]any{"url": parts[0].URL, "expires": int64(expires.Sub(now.Truncate(time.Second)) / time.Second)})
	return nil
}

// uppyBatchSign: GET /s3/multipart/{uploadId}/batch?key=&partNumbers=1,2 → {presignedUrls: {"1": url}}.
// The list is counted before it is parsed: a URL of up to 1 MB lists some 500,000 numbers, which
// would be parsed (and held) only to be refused.
func (s *Server) uppyBatchSign(w http.ResponseWriter, r *http.Request, who principal) *Problem {
	q := r.URL.Query()
	if p := uppySingle(q, "partNumbers"); p != nil {
		return p
	}
	raw := q.Get("partNumbers")
	if raw == "" {
		return problemf(probInvalidParts, "the partNumbers query parameter is required")
	}
	count := strings.Count(raw, ",") + 1
	if count > maxPartsPerCall {
		return problemf(probInvalidParts, "list 1 to %d part numbers (got %d)", maxPartsPerCall, count)
	}
	nums := make([]int32, 0, count)
	for f := range strings.SplitSeq(raw, ",") {
		n, err := strconv.ParseInt(strings.TrimSpace(f), 10, 32)
		if err != nil {
			return problemf(probInvalidParts, "part number %q is not an integer", f)
		}
		nums = append(nums, int32(n))
	}
	if err := multipart.CheckPartNumbers(nums, maxPartsPerCall); err != nil {
		return s.multipartProblem(r.Context(), "check part numbers", err)
	}
	u, p := s.uppyUpload(r, who.owner)
	if p != nil {
		return p
	}
	parts, _, p := s.signParts(r.Context(), u, nums, s.now(), s.cfg.PresignExpiry)
	if p != nil {
		return p
	}
	urls := make(map[string]string, len(parts))
	for _, pt := range parts {
		urls[strconv.Itoa(int(pt.PartNumber))] = pt.URL
	}
	writeJSON(w, http.StatusOK, map[string]any{"presignedUrls": urls})
	return nil
}

// uppyCompletedPart is one part named in Uppy's complete request (the S3 SDK's shape).
type uppyCompletedPart struct {
	PartNumber int32  `json:"PartNumber"`
	ETag       string `json:"ETag"`
}

// uppyComplete: POST /s3/multipart/{uploadId}/complete?key= {parts: [{PartNumber, ETag}]} →
// {location, key, bucket}.
func (s *Server) uppyComplete(w http.ResponseWriter, r *http.Request, who principal) *Problem {
	r, cancel := s.withCompleteBudget(r)
	defer cancel()
	release, p := s.admitComplete(w, r, who.owner, s.uppyUpload)
	defer release()
	if p != nil {
		return p
	}
	var req struct {
		Parts partList[uppyCompletedPart] `json:"parts"`
	}
	if p := decodeJSONLimit(w, r, &req, maxCompleteBody); p != nil {
		return p
	}
	u, p := s.uppyUpload(r, who.owner)
	parts := completedParts(req.Parts, func(pt uppyCompletedPart) multipart.CompletedPart {
		return multipart.CompletedPart{Number: pt.PartNumber, ETag: pt.ETag}
	})
	res, p := s.completeOrRetried(r.Context(), u, p, parts)
	if p != nil {
		return p
	}
	writeJSON(w, http.StatusOK, map[string]string{"location": res.Location, "key": u.Key, "bucket": u.Bucket})
	return nil
}

// uppyAbort: DELETE /s3/multipart/{uploadId}?key= → {}.
func (s *Server) uppyAbort(w http.ResponseWriter, r *http.Request, who principal) *Problem {
	u, p := s.uppyUpload(r, who.owner)
	if p := s.abortOrRetried(r.Context(), u, p); p != nil {
		return p
	}
	writeJSON(w, http.StatusOK, struct{}{})
	return nil
}
