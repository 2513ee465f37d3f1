package api

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
)

// encodeStd is what writeJSON writes for v.
func encodeStd(t testing.TB, v any) []byte {
	t.Helper()
	var buf bytes.Buffer
	require.NoError(t, json.NewEncoder(&buf).Encode(v))
	return buf.Bytes()
}

// jsonTestStrings are strings that exercise every escaping rule of encoding/json.
func jsonTestStrings() []string {
	out := []string{"", "plain", `quote " and \ backslash`, "<script>&amp;</script>", "tab\tnl\nret\rbs\bff\f",
		"\x00\x01\x1f\x7f", "caf\u00e9 \u65e5\u672c \U0001F600", "\u2028\u2029", "bad \xff\xfe utf8 \xc3", "\xe2\x80",
		"https://s3.example.com/b/k?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=a%2Fb&X-Amz-Signature=00"}
	var all strings.Builder
	for c := range 256 {
		all.WriteByte(byte(c))
	}
	out = append(out, all.String())
	r := rand.New(rand.NewPCG(1, 2))
	alphabet := []string{"a", "Z", "0", " ", "\"", "\\", "<", ">", "&", "\n", "\x01", "\x7f", "\xff", "é", "\u2028", "\u2029", "\U0001F600", "\xe2", "\x80"}
	for range 500 {
		var b strings.Builder
		for range r.IntN(20) {
			b.WriteString(alphabet[r.IntN(len(alphabet))])
		}
		out = append(out, b.String())
	}
	return out
}

func TestAppendJSONString(t *testing.T) {
	t.Parallel()
	for _, s := range jsonTestStrings() {
		want := encodeStd(t, s)
		require.Equal(t, string(want), string(appendJSONString(nil, s))+"\n", "%q", s)
	}
}

// TestUploadResponseJSON checks that the hand-written encoding of POST /v1/uploads' answer is the
// bytes encoding/json writes, for every method's shape and for strings that need escaping.
func TestUploadResponseJSON(t *testing.T) {
	t.Parallel()
	strs := jsonTestStrings()
	exp := time.Date(2026, 12, 2, 6, 40, 28, 0, time.UTC)
	cases := []uploadResponse{
		{},
		{ID: uuid.MustParse("0193c5a4-8f0e-7d3b-a1b2-c3d4e5f60718"), Bucket: "uploads", Key: "uploads/alice/x/photo 1.jpg", Method: MethodPut,
			URL: "http://127.0.0.1:9000/b/k?X-Amz-Signature=ab&x=<>", ExpiresAt: exp,
			Headers: map[string]string{"Content-Type": "image/jpeg", "Content-Length": "1048576", "x-amz-checksum-sha256": "q+/="}},
		{ID: uuid.New(), Bucket: "b", Key: "k", Method: MethodPost, URL: "u", Fields: map[string]string{"key": "k", "policy": "p", "Content-Type": "text/plain"}, ExpiresAt: exp.Add(time.Nanosecond * 1500)},
		{ID: uuid.New(), Bucket: "b", Key: "k", Method: MethodMultipart, UploadID: "abc~1", PartSize: 5 << 20, MaxParts: 10000, ExpiresAt: exp.In(time.FixedZone("x", 3600))},
		{ID: uuid.New(), Headers: map[string]string{}, Fields: map[string]string{}, PartSize: -1, MaxParts: -7, ExpiresAt: time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC)},
	}
	r := rand.New(rand.NewPCG(3, 4))
	pick := func() string { return strs[r.IntN(len(strs))] }
	for range 300 {
		c := uploadResponse{ID: uuid.New(), Bucket: pick(), Key: pick(), Method: pick(), URL: pick(), UploadID: pick(),
			PartSize: r.Int64() - r.Int64(), MaxParts: r.Int32(), ExpiresAt: time.Unix(r.Int64N(253402300799), r.Int64N(1e9)).UTC()}
		if r.IntN(2) == 0 {
			c.Headers = map[string]string{pick(): pick(), pick(): pick(), pick(): pick()}
		}
		if r.IntN(2) == 0 {
			c.Fields = map[string]string{pick(): pick()}
		}
		cases = append(cases, c)
	}
	for i, c := range cases {
		require.Equal(t, string(encodeStd(t, c)), string(c.appendJSON(nil)), "case %d", i)

		rec := httptest.NewRecorder()
		writeUploadResponse(rec, http.StatusCreated, &c)
		std := httptest.NewRecorder()
		writeJSON(std, http.StatusCreated, c)
		require.Equal(t, std.Code, rec.Code)
		require.Equal(t, std.Header(), rec.Header())
		require.Equal(t, std.Body.String(), rec.Body.String(), "case %d", i)
	}
}

// TestUploadResponseJSONYearOutOfRange: a time encoding/json refuses is left to encoding/json.
func TestUploadResponseJSONYearOutOfRange(t *testing.T) {
	t.Parallel()
	c := uploadResponse{ExpiresAt: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)}
	rec := httptest.NewRecorder()
	writeUploadResponse(rec, http.StatusCreated, &c)
	std := httptest.NewRecorder()
	writeJSON(std, http.StatusCreated, c)
	require.Equal(t, std.Body.String(), rec.Body.String())
}
