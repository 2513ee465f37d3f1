package api

import (
	"slices"
	"strconv"
	"time"
	"unicode/utf8"
)

// jsonAppender is a response that writes its own JSON, byte for byte what encoding/json's Encoder
// writes for it (TestAppendJSONMatchesEncoder holds it to that). POST /v1/uploads answers with one:
// encoding/json's reflection and map sorting were 7% of the route's CPU.
type jsonAppender interface {
	appendJSON(b []byte) []byte
}

// appendJSON appends r as encoding/json encodes it (field order, omitempty, sorted map keys,
// HTML-safe strings), followed by the newline the Encoder adds.
func (r *uploadResponse) appendJSON(b []byte) []byte {
	var id [36]byte
	hexUUID(id[:], r.ID) // as in object keys: what uuid.UUID.MarshalText gives
	b = append(b, `{"id":"`...)
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
		b = appendStringMap(b, r.Headers)
	}
	if len(r.Fields) > 0 {
		b = append(b, `,"fields":`...)
		b = appendStringMap(b, r.Fields)
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

// appendStringMap appends m as a JSON object with its keys sorted, as encoding/json does.
func appendStringMap(b []byte, m map[string]string) []byte {
	var buf [8]string
	keys := buf[:0]
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

// jsonSafe tells the ASCII bytes appendJSONString copies as they are.
var jsonSafe = func() (t [utf8.RuneSelf]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\' && c != '<' && c != '>' && c != '&'
	}
	return t
}()

// appendJSONString appends s as a JSON string exactly as encoding/json writes it with HTML
// escaping on (the Encoder's default): <, > and & as \u003c, \u003e and \u0026, control characters
// as \b, \f, \n, \r, \t or \u00XX, invalid UTF-8 as \ufffd, and U+2028 and U+2029 escaped.
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if jsonSafe[c] {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
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
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
