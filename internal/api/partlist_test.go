package api

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"runtime"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	mpart "github.com/intakehq/intake/internal/multipart"
)

// TestCompletePartListRefusedBeforeAlloc: a complete body of maxCompleteBody bytes listing some
// 850,000 empty parts ({"parts":[{},{},...]}) is refused with 400 invalid-parts once the list
// passes multipart.MaxParts, on both route families, allocating a few times the body (reading it
// into a growing buffer, and encoding/json's decoder copying it: some 6.5 times), not the 120 MB encoding/json spent decoding every element before the list's length was checked.
// The uploads are real and pending: an unknown one is refused before its body is read
// (TestCompleteBodiesBounded).
func TestCompletePartListRefusedBeforeAlloc(t *testing.T) {
	b := setup(t)
	srv := b.api.Handler() // the contract's checker would read and copy the body first
	mpBody := map[string]any{"filename": "a.bin", "content_type": "application/octet-stream", "size": 5<<20 + 10, "method": "multipart"}
	v1 := b.createMP(t, aliceKey, mpBody, false)
	uppy := b.createMP(t, aliceKey, map[string]any{"filename": "a.bin", "type": "application/octet-stream", "size": 5<<20 + 10}, true)
	var body bytes.Buffer
	body.WriteString(`{"parts":[{}`)
	for body.Len()+len(`,{}]}`) <= maxCompleteBody {
		body.WriteString(`,{}`)
	}
	body.WriteString(`]}`)
	elements := strings.Count(body.String(), "{}")
	require.Greater(t, elements, 80*mpart.MaxParts)

	for _, path := range []string{
		"/v1/uploads/" + v1.id + "/complete",
		"/s3/multipart/" + url.PathEscape(uppy.uploadID) + "/complete?key=" + url.QueryEscape(uppy.key),
	} {
		req := httptest.NewRequest(http.MethodPost, path, bytes.NewReader(body.Bytes()))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-API-Key", aliceKey)
		w := httptest.NewRecorder()
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		srv.ServeHTTP(w, req)
		runtime.ReadMemStats(&after)
		allocated := after.TotalAlloc - before.TotalAlloc
		t.Logf("%s: %d elements in %d bytes: %d bytes allocated", path, elements, body.Len(), allocated)
		require.Equal(t, http.StatusBadRequest, w.Code, "%s: %s", path, w.Body)
		require.Contains(t, w.Body.String(), "invalid-parts", path)
		require.Contains(t, w.Body.String(), "at most 10000 parts", path)
		require.Less(t, allocated, uint64(16*body.Len()), "%s: the list's elements were decoded before they were counted", path)
	}
}

// TestPartListDecodes: the part list's count sees the elements of the array only (not commas in
// strings, nested values or whitespace), refuses one more than multipart.MaxParts and decodes
// the rest as encoding/json would, unknown members and type errors included.
func TestPartListDecodes(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		in   string
		n    int
		ok   bool
		want string // a part of the error
	}{
		{`[]`, 0, true, ""},
		{` [ ] `, 0, true, ""},
		{`null`, 0, true, ""},
		{`[{"part_number":1,"etag":"a,b],[{\"x\\\",}"}]`, 1, true, ""},
		{"[ {\"part_number\":1,\"etag\":\"a\"} ,\n{\"part_number\":2,\"etag\":\"[{,\"}\t]", 2, true, ""},
		{`[{"part_number":1,"etag":"a"},{"part_number":2,"etag":"b"},{"part_number":3,"etag":"c"}]`, 3, true, ""},
		{`[{"part_number":1,"nope":2}]`, 0, false, "unknown field"},
		{`[{"part_number":"1"}]`, 0, false, "part_number"},
		{`{"part_number":1}`, 0, false, "cannot unmarshal object"},
		{`[` + strings.Repeat(`{},`, mpart.MaxParts-1) + `{}]`, mpart.MaxParts, true, ""},
		{`[` + strings.Repeat(`{},`, mpart.MaxParts) + `{}]`, 0, false, "at most 10000 parts"},
		{`[` + strings.Repeat(`[1,2],`, mpart.MaxParts) + `[]]`, 0, false, "at most 10000 parts"},
	} {
		var l partList[completedPart]
		err := json.Unmarshal([]byte(c.in), &l)
		label := c.in[:min(len(c.in), 60)]
		if !c.ok {
			require.Error(t, err, label)
			require.Contains(t, err.Error(), c.want, label)
			continue
		}
		require.NoError(t, err, label)
		require.Len(t, l, c.n, label)
	}
	var req struct {
		Parts partList[completedPart] `json:"parts"`
	}
	require.NoError(t, json.Unmarshal([]byte(`{"parts":[{"part_number":7,"etag":"\"e\""}]}`), &req))
	require.Equal(t, partList[completedPart]{{PartNumber: 7, ETag: `"e"`}}, req.Parts)
}
