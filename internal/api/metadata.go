package api

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/intakehq/intake/internal/jsonstr"
	"github.com/intakehq/intake/internal/problem"
)

// MaxMetadata bounds the app's metadata of an intent (its compact JSON).
const MaxMetadata = 2 << 10

var probInvalidMetadata = problem.Kind{Slug: "invalid-metadata", Title: "Invalid metadata", Status: http.StatusBadRequest}

// parseMetadata checks the metadata of an intent: absent or null (nil), or a JSON object of at most
// MaxMetadata bytes once compacted that PostgreSQL's jsonb holds as sent: valid UTF-8, no NUL
// character, no unpaired surrogate escape (encoding/json would turn those into U+FFFD; jsonb
// refuses them) and numbers within float64's range (jsonb refuses an exponent past its numeric
// range, and a tiny one would be spelled out in hundreds of zeros in every answer). It returns the
// compact JSON.
func parseMetadata(raw json.RawMessage) ([]byte, *Problem) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	if raw[0] != '{' {
		return nil, problemf(probInvalidMetadata, "metadata must be a JSON object")
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, raw); err != nil {
		return nil, problemf(probInvalidMetadata, "metadata is not valid JSON: %v", err)
	}
	if buf.Len() > MaxMetadata {
		return nil, problemf(probInvalidMetadata, "metadata is %d bytes of JSON; at most %d are kept", buf.Len(), MaxMetadata)
	}
	if !utf8.Valid(buf.Bytes()) {
		return nil, problemf(probInvalidMetadata, "metadata is not valid UTF-8")
	}
	if !jsonstr.SurrogatesPaired(buf.Bytes()) {
		return nil, problemf(probInvalidMetadata, "metadata holds an unpaired UTF-16 surrogate escape (\\ud800-\\udfff)")
	}
	d := json.NewDecoder(bytes.NewReader(buf.Bytes()))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return nil, problemf(probInvalidMetadata, "metadata is not valid JSON: %v", err)
	}
	if p := checkMetadataValue(v); p != nil {
		return nil, p
	}
	return buf.Bytes(), nil
}

// checkMetadataValue walks a decoded JSON value (numbers as json.Number) for NUL characters in
// strings and keys, and numbers outside float64's range.
func checkMetadataValue(v any) *Problem {
	switch v := v.(type) {
	case string:
		if strings.IndexByte(v, 0) >= 0 {
			return problemf(probInvalidMetadata, "metadata must not contain NUL characters (\\u0000)")
		}
	case json.Number:
		f, err := strconv.ParseFloat(string(v), 64)
		if err != nil || f == 0 && strings.ContainsAny(strings.TrimLeft(mantissa(string(v)), "-0."), "123456789") {
			return problemf(probInvalidMetadata, "metadata number %.40s is outside the range of a 64-bit float", v)
		}
	case []any:
		for _, e := range v {
			if p := checkMetadataValue(e); p != nil {
				return p
			}
		}
	case map[string]any:
		for k, e := range v {
			if strings.IndexByte(k, 0) >= 0 {
				return problemf(probInvalidMetadata, "metadata must not contain NUL characters (\\u0000)")
			}
			if p := checkMetadataValue(e); p != nil {
				return p
			}
		}
	}
	return nil
}

// mantissa is a JSON number without its exponent.
func mantissa(n string) string {
	if i := strings.IndexAny(n, "eE"); i >= 0 {
		return n[:i]
	}
	return n
}

// uppyQueryMetadata collects the metadata[name]=value query parameters Uppy sends to /s3/params
// into a JSON object (nil when there are none).
func uppyQueryMetadata(q map[string][]string) (json.RawMessage, *Problem) {
	m := map[string]string{}
	for k, vs := range q {
		name, ok := strings.CutPrefix(k, "metadata[")
		if !ok || !strings.HasSuffix(name, "]") {
			continue
		}
		if len(vs) > 1 {
			return nil, problemf(probInvalidParam, "query parameter %q is given %d times", k, len(vs))
		}
		m[strings.TrimSuffix(name, "]")] = vs[0]
	}
	if len(m) == 0 {
		return nil, nil
	}
	raw, err := json.Marshal(m)
	if err != nil {
		return nil, problemf(probInvalidMetadata, "metadata: %v", err)
	}
	return raw, nil
}
