package api

import (
	"slices"
	"strconv"
	"time"

	"github.com/intakehq/intake/internal/jsonstr"
)

// appendJSON appends r as encoding/json encodes it (field order, omitempty, sorted map keys,
// HTML-safe strings), followed by the newline the Encoder adds: byte for byte what encoding/json's
// Encoder writes for it (TestAppendJSONMatchesEncoder holds it to that). POST /v1/uploads answers
// with it (writeUpload): encoding/json's reflection and map sorting were 7% of the route's CPU.
func (r *uploadResponse) appendJSON(b []byte) []byte {
	var id [36]byte
	hexUUID(id[:], r.ID) // as in object keys: what uuid.UUID.MarshalText gives
	b = append(b, `{"id":"`...)
	b = append(b, id[:]...)
	b = append(b, `","bucket":`...)
	b = jsonstr.Append(b, r.Bucket)
	b = append(b, `,"key":`...)
	b = jsonstr.Append(b, r.Key)
	b = append(b, `,"method":`...)
	b = jsonstr.Append(b, r.Method)
	if r.URL != "" {
		b = append(b, `,"url":`...)
		b = jsonstr.Append(b, r.URL)
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
		b = jsonstr.Append(b, r.UploadID)
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
		b = jsonstr.Append(b, k)
		b = append(b, ':')
		b = jsonstr.Append(b, m[k])
	}
	return append(b, '}')
}
