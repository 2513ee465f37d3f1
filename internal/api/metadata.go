package api

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"

	"github.com/intakehq/intake/internal/problem"
)

// MaxMetadata bounds the app's metadata of an intent (its compact JSON).
const MaxMetadata = 2 << 10

var probInvalidMetadata = problem.Kind{Slug: "invalid-metadata", Title: "Invalid metadata", Status: http.StatusBadRequest}

// parseMetadata checks the metadata of an intent: absent or null (nil), or a JSON object of at most
// MaxMetadata bytes once compacted, without NUL characters (PostgreSQL's jsonb cannot hold them). It
// returns the compact JSON.
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
	var v any
	if err := json.Unmarshal(buf.Bytes(), &v); err != nil {
		return nil, problemf(probInvalidMetadata, "metadata is not valid JSON: %v", err)
	}
	if hasNUL(v) {
		return nil, problemf(probInvalidMetadata, "metadata must not contain NUL characters (\\u0000)")
	}
	return buf.Bytes(), nil
}

// hasNUL reports whether a decoded JSON value holds a NUL character in a string or a key.
func hasNUL(v any) bool {
	switch v := v.(type) {
	case string:
		return strings.IndexByte(v, 0) >= 0
	case []any:
		for _, e := range v {
			if hasNUL(e) {
				return true
			}
		}
	case map[string]any:
		for k, e := range v {
			if strings.IndexByte(k, 0) >= 0 || hasNUL(e) {
				return true
			}
		}
	}
	return false
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
