package api

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"strconv"
	"sync"
	"unicode/utf8"
)

// POST /v1/uploads decodes a small JSON object on every request. encoding/json's Decoder (its
// buffer, reflection, a second Decode for trailing data) was a twentieth of the route's CPU, so
// the body is first read whole into a pooled buffer and parsed by parseCreateUpload, which accepts
// only the plain form clients send: exact field names, each once, strings without escapes,
// integers. Anything else (other spellings, escapes, null, metadata, fractions, unknown fields,
// errors of any kind) goes to decodeJSON's path unchanged, on the same bytes, so every answer
// (errors included) stays encoding/json's. FuzzParseCreateUpload checks that whatever the fast
// parser accepts, encoding/json decodes to the same value.

// fastBodyMax is the largest body the fast path takes; larger ones stream through encoding/json.
const fastBodyMax = 4 << 10

var bodyBufs = sync.Pool{New: func() any { b := make([]byte, fastBodyMax); return &b }}

// decodeCreateUpload is decodeJSON(w, r, req) for POST /v1/uploads.
func decodeCreateUpload(w http.ResponseWriter, r *http.Request, req *createUploadRequest) *Problem {
	if p := checkJSONContentType(r); p != nil {
		return p
	}
	body := http.MaxBytesReader(w, r.Body, maxJSONBody)
	bp := bodyBufs.Get().(*[]byte)
	defer bodyBufs.Put(bp)
	buf := *bp
	n, err := readFull(body, buf)
	switch {
	case err == nil: // more than fastBodyMax bytes: stream the rest
		return decodeJSONFrom(io.MultiReader(bytes.NewReader(buf[:n]), body), req)
	case !errors.Is(err, io.EOF):
		return decodeJSONFrom(io.MultiReader(bytes.NewReader(buf[:n]), errReader{err}), req)
	}
	if parseCreateUpload(buf[:n], req) {
		return nil
	}
	*req = createUploadRequest{}
	return decodeJSONFrom(bytes.NewReader(buf[:n]), req)
}

// readFull reads into buf until it is full (nil error) or the reader ends (io.EOF) or fails.
func readFull(r io.Reader, buf []byte) (int, error) {
	n := 0
	for n < len(buf) {
		m, err := r.Read(buf[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// errReader returns its error.
type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

// parseCreateUpload parses data into req when it is the plain form described above and reports
// whether it did; req may be partly set when it did not.
func parseCreateUpload(data []byte, req *createUploadRequest) bool {
	p := fastParser{data: data}
	p.ws()
	if !p.byte('{') {
		return false
	}
	p.ws()
	if p.byte('}') {
		return p.end()
	}
	var seen uint8
	for {
		key, ok := p.plainString()
		if !ok {
			return false
		}
		p.ws()
		if !p.byte(':') {
			return false
		}
		p.ws()
		var bit uint8
		switch string(key) {
		case "filename":
			bit = 1
			req.Filename, ok = p.stringValue()
		case "content_type":
			bit = 2
			req.ContentType, ok = p.stringValue()
		case "sha256":
			bit = 4
			req.SHA256, ok = p.stringValue()
		case "method":
			bit = 8
			req.Method, ok = p.stringValue()
		case "size":
			bit = 16
			req.Size, ok = p.intValue()
		case "expires_in":
			bit = 32
			req.ExpiresIn, ok = p.intValue()
		case "part_size":
			bit = 64
			req.PartSize, ok = p.intValue()
		default: // metadata, unknown fields, other spellings
			return false
		}
		if !ok || seen&bit != 0 {
			return false
		}
		seen |= bit
		p.ws()
		if p.byte('}') {
			return p.end()
		}
		if !p.byte(',') {
			return false
		}
		p.ws()
	}
}

type fastParser struct {
	data []byte
	i    int
}

func (p *fastParser) ws() {
	for p.i < len(p.data) {
		switch p.data[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

func (p *fastParser) byte(c byte) bool {
	if p.i < len(p.data) && p.data[p.i] == c {
		p.i++
		return true
	}
	return false
}

// end reports whether only whitespace follows.
func (p *fastParser) end() bool {
	p.ws()
	return p.i == len(p.data)
}

// plainString reads a string without escapes or control characters, in valid UTF-8.
func (p *fastParser) plainString() ([]byte, bool) {
	if !p.byte('"') {
		return nil, false
	}
	start := p.i
	for p.i < len(p.data) {
		c := p.data[p.i]
		switch {
		case c == '"':
			s := p.data[start:p.i]
			p.i++
			return s, utf8.Valid(s)
		case c == '\\' || c < 0x20:
			return nil, false
		}
		p.i++
	}
	return nil, false
}

func (p *fastParser) stringValue() (string, bool) {
	s, ok := p.plainString()
	return string(s), ok
}

// intValue reads an integer (JSON's grammar: no leading zeros, no fraction or exponent) that fits
// in an int64.
func (p *fastParser) intValue() (*int64, bool) {
	start := p.i
	p.byte('-')
	digits := p.i
	for p.i < len(p.data) && p.data[p.i] >= '0' && p.data[p.i] <= '9' {
		p.i++
	}
	if p.i == digits || (p.data[digits] == '0' && p.i-digits > 1) {
		return nil, false
	}
	if p.i < len(p.data) {
		switch p.data[p.i] {
		case ' ', '\t', '\n', '\r', ',', '}':
		default: // fraction, exponent, garbage
			return nil, false
		}
	}
	v, err := strconv.ParseInt(string(p.data[start:p.i]), 10, 64)
	if err != nil {
		return nil, false
	}
	return &v, true
}
