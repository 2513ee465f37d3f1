package api

import (
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"
)

// POST /v1/uploads answers with an uploadResponse on every request, so its encoding is written by
// hand: encoding/json's reflection over the struct, the time and the UUID (TextMarshaler) and the
// map were a tenth of the route's CPU. appendJSON produces the bytes json.Encoder.Encode produces
// (HTML-safe escaping, sorted map keys, omitempty, RFC 3339 time, trailing newline);
// TestUploadResponseJSON compares both.

// jsonBufs holds response buffers between requests.
var jsonBufs = sync.Pool{New: func() any { b := make([]byte, 0, 2048); return &b }}

// Header values of writeUploadResponse.
var (
	jsonContentType = []string{"application/json"}
	noStore         = []string{"no-store"}
)

// maxPooledJSON is the largest buffer returned to jsonBufs (larger ones are left to the GC).
const maxPooledJSON = 16 << 10

// writeUploadResponse writes resp as application/json with the status, as writeJSON would.
func writeUploadResponse(w http.ResponseWriter, status int, resp *uploadResponse) {
	if y := resp.ExpiresAt.Year(); y < 0 || y > 9999 {
		writeJSON(w, status, resp) // encoding/json's error path
		return
	}
	bp := jsonBufs.Get().(*[]byte)
	buf := resp.appendJSON((*bp)[:0])
	h := w.Header()
	// Shared values (net/http copies the header when the status is written; nothing changes them).
	h["Content-Type"] = jsonContentType
	h["Cache-Control"] = noStore
	w.WriteHeader(status)
	_, _ = w.Write(buf)
	if cap(buf) <= maxPooledJSON {
		*bp = buf
		jsonBufs.Put(bp)
	}
}

// appendJSON appends r as encoding/json encodes it, newline included. ExpiresAt's year must be
// within 0..9999 (encoding/json refuses others).
func (r *uploadResponse) appendJSON(b []byte) []byte {
	b = append(b, `{"id":"`...)
	var id [36]byte
	hexUUID(id[:], r.ID)
	b = append(b, id[:]...)
	b = append(b, `","bucket":`...)
	b = appendJSONString(b, r.Bucket)
	b = append(b, `,"key":`...)
	b = appendJSONString(b, r.Key)
	b = append(b, `,"method":`...)
	b = appendJSONString(b, r.Method)
	if r.URL != "" {
		b = append(b, `,"url":`...)
		b = appendJSONString(b, r.URL)
	}
	if len(r.Headers) > 0 {
		b = append(b, `,"headers":`...)
		b = appendJSONStringMap(b, r.Headers)
	}
	if len(r.Fields) > 0 {
		b = append(b, `,"fields":`...)
		b = appendJSONStringMap(b, r.Fields)
	}
	if r.UploadID != "" {
		b = append(b, `,"upload_id":`...)
		b = appendJSONString(b, r.UploadID)
	}
	if r.PartSize != 0 {
		b = append(b, `,"part_size":`...)
		b = strconv.AppendInt(b, r.PartSize, 10)
	}
	if r.MaxParts != 0 {
		b = append(b, `,"max_parts":`...)
		b = strconv.AppendInt(b, int64(r.MaxParts), 10)
	}
	b = append(b, `,"expires_at":"`...)
	b = r.ExpiresAt.AppendFormat(b, time.RFC3339Nano)
	return append(b, "\"}\n"...)
}

// appendJSONStringMap appends m as a JSON object with sorted keys.
func appendJSONStringMap(b []byte, m map[string]string) []byte {
	var small [8]string
	keys := small[:0]
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	b = append(b, '{')
	for i, k := range keys {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, k)
		b = append(b, ':')
		b = appendJSONString(b, m[k])
	}
	return append(b, '}')
}

// appendJSONString appends s as a JSON string escaped as encoding/json escapes it by default:
// quotes, backslashes and control characters, <, > and & (HTML-safe), U+2028 and U+2029; invalid
// UTF-8 becomes U+FFFD.
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '\\', '"':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xF])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
