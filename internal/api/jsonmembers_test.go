package api

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestDecodeJSONExactMembers: decodeJSON refuses the bodies encoding/json alone would read as the
// last of repeated members or with names in another case, at any depth of the request's structs,
// and leaves the app's own JSON (metadata) as it is, as the fast path does.
func TestDecodeJSONExactMembers(t *testing.T) {
	t.Parallel()
	type part struct {
		PartNumber int32  `json:"part_number"`
		ETag       string `json:"etag"`
	}
	type complete struct {
		Parts []part `json:"parts"`
	}
	type uppyCreate struct {
		Type     string          `json:"type"`
		Metadata json.RawMessage `json:"metadata"`
	}
	for _, c := range []struct {
		name string
		v    any
		body string
		typ  string // "" when accepted
	}{
		{"plain", &createUploadRequest{}, `{"filename":"a","size":1}`, ""},
		{"escaped exact name", &createUploadRequest{}, `{"filename":"a","s\u0069ze":1}`, ""},
		{"metadata with repeated keys (the app's JSON, kept as sent)", &createUploadRequest{}, `{"size":1,"filename":"a\"b","metadata":{"k":1,"k":2,"K":3}}`, ""},
		{"metadata an array of objects", &createUploadRequest{}, `{"size":1,"filename":"a\"b","metadata":[{"size":1,"size":2}]}`, ""},
		{"uppy metadata map with repeated keys", &uppyCreate{}, `{"type":"image/png","metadata":{"size":1,"size":2}}`, ""},
		{"nested parts", &complete{}, `{"parts":[{"part_number":1,"etag":"a"},{"part_number":2,"etag":"b"}]}`, ""},
		{"null parts", &complete{}, `{"parts":null}`, ""},

		{"repeated member", &createUploadRequest{}, `{"size":1,"size":2}`, "invalid-json"},
		{"repeated behind an escape", &createUploadRequest{}, `{"size":1,"s\u0069ze":2}`, "invalid-json"},
		{"member in capitals", &createUploadRequest{}, `{"SIZE":1}`, "unknown-field"},
		{"member in another case beside the exact one", &createUploadRequest{}, `{"content_type":"image/png","Content_Type":"text/html"}`, "unknown-field"},
		{"non-ASCII fold of a name", &createUploadRequest{}, "{\"\u017fize\":1}", "unknown-field"},
		{"repeated member in a nested struct", &complete{}, `{"parts":[{"part_number":1,"etag":"a"},{"part_number":2,"part_number":3,"etag":"b"}]}`, "invalid-json"},
		{"nested member in another case", &complete{}, `{"parts":[{"part_number":1,"ETag":"a"}]}`, "unknown-field"},
		{"repeated top-level array", &complete{}, `{"parts":[],"parts":[{"part_number":1,"etag":"a"}]}`, "invalid-json"},
		{"uppy type in capitals", &uppyCreate{}, `{"type":"image/png","TYPE":"text/html"}`, "unknown-field"},
	} {
		r := httptest.NewRequest(http.MethodPost, "/", bytes.NewReader([]byte(c.body)))
		p := decodeJSON(httptest.NewRecorder(), r, c.v)
		if c.typ == "" {
			require.Nil(t, p, "%s: %s", c.name, c.body)
			continue
		}
		require.NotNil(t, p, "%s: %s", c.name, c.body)
		require.Equal(t, ProblemBase+c.typ, p.Type, "%s: %s", c.name, p.Detail)
		require.Equal(t, http.StatusBadRequest, p.Status, c.name)
	}
}
