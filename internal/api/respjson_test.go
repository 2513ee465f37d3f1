package api

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
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

// paddedJSON is an appended answer of a given length: a JSON string of n-3 bytes and a newline.
type paddedJSON int

func (n paddedJSON) appendJSON(b []byte) []byte {
	b = append(b, '"')
	b = append(b, strings.Repeat("x", int(n)-3)...)
	return append(b, '"', '\n')
}

// TestWriteJSONContentLength: every appended answer, whatever its length, reaches a client through
// the daemon's HTTP server with a Content-Length (not chunked), and to HEAD as to GET: writeAppended
// (writeUpload's path) leaves the length of a body up to net/http's 2 KiB buffer to net/http and sets longer ones
// itself. It fails if net/http stops computing it, or if the threshold is set above its buffer.
func TestWriteJSONContentLength(t *testing.T) {
	t.Parallel()
	for _, n := range []int{3, 700, netHTTPChunk - 1, netHTTPChunk, netHTTPChunk + 1, 4096, 70 << 10} {
		srv := httptest.NewUnstartedServer(nil)
		srv.Config = NewHTTPServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			bp := responseBuffers.Get().(*[]byte)
			writeAppended(w, http.StatusCreated, bp, paddedJSON(n).appendJSON((*bp)[:0]))
		}), WriteTimeout, nil) // the daemon's server
		srv.Start()
		for _, method := range []string{http.MethodGet, http.MethodHead} {
			req, err := http.NewRequest(method, srv.URL, nil)
			require.NoError(t, err)
			resp, err := srv.Client().Do(req)
			require.NoError(t, err)
			body, err := io.ReadAll(resp.Body)
			require.NoError(t, err)
			_ = resp.Body.Close()
			require.Equal(t, http.StatusCreated, resp.StatusCode)
			require.Empty(t, resp.TransferEncoding, "%s of %d bytes sent chunked", method, n)
			require.Equal(t, int64(n), resp.ContentLength, "%s of %d bytes", method, n)
			if method == http.MethodGet {
				require.Len(t, body, n)
				require.Equal(t, "application/json", resp.Header.Get("Content-Type"))
			}
		}
		srv.Close()
	}
}
