package api

import (
	"bytes"
	"net/http"
	"sync"

	"github.com/intakehq/intake/internal/jsonscan"
)

// scannable is a request body type with a fast path: scanJSON reads body into the receiver, a zero
// value, exactly as decodeJSON's encoding/json (unknown fields refused) would, or returns false
// and leaves the receiver unchanged, and decodeJSON then decodes body with encoding/json.
type scannable interface {
	scanJSON(body []byte) bool
}

// createUploadNames are createUploadRequest's JSON names, indexed as scanJSON reads them.
var createUploadNames = []string{"filename", "content_type", "size", "sha256", "method", "expires_in", "part_size", "metadata"}

// scanJSON reads the body of POST /v1/uploads in one pass (jsonscan) when it has the plain form
// clients send: the members it knows, each once, in their exact names; strings without escapes;
// the three integers plain and non-negative, or null; metadata any JSON value (kept as its bytes,
// as json.RawMessage keeps them). Anything else, an unknown or repeated member, an escape, a sign,
// a fraction, a string's null, is left to encoding/json, so that its answer (and its error) is the
// one the client gets. The route's encoding/json decode was 9% of its CPU (BenchmarkLoad's profile).
// FuzzCreateUploadBody holds it to encoding/json.
func (r *createUploadRequest) scanJSON(body []byte) bool {
	var v createUploadRequest
	s := jsonscan.New(body)
	s.RefuseUnknown = true
	ok := s.Members(createUploadNames, func(k int) bool {
		switch k {
		case 0:
			return s.String(&v.Filename)
		case 1:
			return s.String(&v.ContentType)
		case 2:
			return scanInt(&s, &v.Size)
		case 3:
			return s.String(&v.SHA256)
		case 4:
			return s.String(&v.Method)
		case 5:
			return scanInt(&s, &v.ExpiresIn)
		case 6:
			return scanInt(&s, &v.PartSize)
		}
		raw, ok := s.Value()
		v.Metadata = bytes.Clone(raw)
		return ok
	})
	if !ok || !s.End() {
		return false
	}
	*r = v
	return true
}

// scanInt reads an optional integer: null (nil, as encoding/json sets a pointer) or a plain
// non-negative integer.
func scanInt(s *jsonscan.Scanner, dst **int64) bool {
	if s.Null() {
		*dst = nil
		return true
	}
	n, ok := s.Uint()
	*dst = &n
	return ok
}

// bodyBuffers keep request bodies' buffers between requests (those up to maxJSONBody).
var bodyBuffers = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// readBody reads r's body, at most limit bytes (http.MaxBytesReader: a longer body fails with an
// *http.MaxBytesError and the connection is closed after the answer), into a pooled buffer; the
// caller returns it with releaseBody.
func readBody(w http.ResponseWriter, r *http.Request, limit int64) (*bytes.Buffer, error) {
	buf := bodyBuffers.Get().(*bytes.Buffer)
	_, err := buf.ReadFrom(http.MaxBytesReader(w, r.Body, limit))
	return buf, err
}

// releaseBody returns a body's buffer to the pool (unless it grew beyond maxJSONBody).
func releaseBody(buf *bytes.Buffer) {
	if buf.Cap() > maxJSONBody+bytes.MinRead {
		return
	}
	buf.Reset()
	bodyBuffers.Put(buf)
}
