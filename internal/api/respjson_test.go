package api

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
)

// encoderJSON is what writeJSON wrote before uploadResponse wrote its own JSON.
func encoderJSON(t testing.TB, v any) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := json.NewEncoder(&buf).Encode(v); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// hostileStrings are strings encoding/json escapes in every way it has: quotes, backslashes, HTML
// characters, every control character, invalid UTF-8, U+2028/U+2029, and multi-byte runes.
func hostileStrings() []string {
	var ctl strings.Builder
	for c := range 0x20 {
		ctl.WriteByte(byte(c))
	}
	return []string{
		"", "plain", `"quoted" \back\slash/`, "<script>&amp;</script>", ctl.String(), "\x7f",
		"bad \xff utf8 \xc3", "\xe2\x80\xa8 line \xe2\x80\xa9 para", "日本語 ✓ 😀", "\u2027\u202a",
		"tail\\", "\"", "a\x00b",
	}
}

// TestAppendJSONMatchesEncoder: uploadResponse's own JSON is byte for byte the Encoder's, for each
// method's shape (put with headers, post with fields, multipart with part size) and for hostile
// strings in every string field and map.
func TestAppendJSONMatchesEncoder(t *testing.T) {
	at := time.Date(2026, 12, 2, 16, 0, 0, 0, time.UTC)
	cases := []uploadResponse{
		{},
		{ID: uuid.New(), Bucket: "b", Key: "uploads/alice/x/f.png", Method: "put", URL: "http://127.0.0.1:9000/b/k?X-Amz-Signature=abc&X-Amz-Date=1",
			Headers: map[string]string{"Content-Type": "image/png", "Content-Length": "5", "x-amz-checksum-sha256": "q83vEjRWeJA="}, ExpiresAt: at},
		{ID: uuid.New(), Bucket: "b", Key: "k", Method: "post", URL: "http://s3/b",
			Fields: map[string]string{"key": "k", "policy": "eyJ+/=", "x-amz-signature": "00", "Content-Type": "text/plain"}, ExpiresAt: at.Add(time.Hour)},
		{ID: uuid.New(), Bucket: "b", Key: "k", Method: "multipart", UploadID: "2~abc", PartSize: 5 << 20, MaxParts: 10000, ExpiresAt: at.Add(123456789)},
		{Method: "put", ExpiresAt: time.Date(2026, 1, 2, 3, 4, 5, 6, time.FixedZone("x", 3600))},
	}
	for _, s := range hostileStrings() {
		cases = append(cases, uploadResponse{
			ID: uuid.New(), Bucket: s, Key: s, Method: s, URL: s, UploadID: s, ExpiresAt: at,
			Headers: map[string]string{s: s, "k" + s: "v"}, Fields: map[string]string{s + "z": s, "a": s},
		})
	}
	for i, r := range cases {
		want := encoderJSON(t, r)
		got := r.appendJSON(nil)
		if !bytes.Equal(got, want) {
			t.Errorf("case %d:\n got %s\nwant %s", i, got, want)
		}
	}
}
