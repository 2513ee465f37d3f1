package api

import (
	"bytes"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// checkFastParse fails when parseCreateUpload accepts data and encoding/json (decodeJSON's path)
// decodes it to another value, or refuses it.
func checkFastParse(t testing.TB, data []byte) bool {
	t.Helper()
	var fast createUploadRequest
	if !parseCreateUpload(data, &fast) {
		return false
	}
	var std createUploadRequest
	p := decodeJSONFrom(bytes.NewReader(data), &std)
	require.Nil(t, p, "fast path accepted %q, encoding/json refused it", data)
	require.Equal(t, std, fast, "%q", data)
	return true
}

func TestParseCreateUpload(t *testing.T) {
	t.Parallel()
	accepted := []string{
		benchBody,
		`{}`, " \t\r\n{ } \n",
		`{"filename":"a","content_type":"text/plain","size":0,"sha256":"ab","method":"put","expires_in":-1,"part_size":9223372036854775807}`,
		`{ "size" : -0 , "filename" : "caf` + "\u00e9 \U0001F600" + `" }`,
	}
	for _, s := range accepted {
		require.True(t, checkFastParse(t, []byte(s)), "%q must take the fast path", s)
	}
	// Everything else is left to encoding/json (which accepts some and refuses others).
	declined := []string{
		``, ` `, `[]`, `null`, `{"filename":"a"} x`, `{"filename":"a"}{}`, `{"filename":"a",}`, `{"filename" "a"}`,
		`{"FileName":"a"}`, `{"filename":"a","filename":"b"}`, `{"filename":"a\"b"}`, `{"filename":"a\u0041"}`,
		"{\"filename\":\"a\tb\"}", "{\"filename\":\"\xff\"}", `{"filename":null}`, `{"size":null}`, `{"size":1.0}`,
		`{"size":1e3}`, `{"size":01}`, `{"size":-}`, `{"size":9223372036854775808}`, `{"size":"1"}`, `{"filename":1}`,
		`{"size":1x}`, `{"metadata":{}}`, `{"unknown":1}`, `{"filename":"a"`, `{"filename":"a`, `{"size":`,
	}
	for _, s := range declined {
		require.False(t, checkFastParse(t, []byte(s)), "%q", s)
	}
	// Random bodies built from JSON pieces: whatever is accepted must decode alike.
	pieces := []string{"{", "}", ",", ":", " ", "\n", `"filename"`, `"content_type"`, `"size"`, `"sha256"`, `"method"`,
		`"expires_in"`, `"part_size"`, `"metadata"`, `"Size"`, `"x"`, `"a b"`, `"\u00e9"`, `"\\"`, "0", "1", "-5", "12345678901234567890",
		"1.5", "null", "true", `"é"`, "\"\xff\"", "[]", "-", "00"}
	r := rand.New(rand.NewPCG(5, 6))
	n := 0
	for range 20000 {
		var b strings.Builder
		b.WriteString("{")
		for range r.IntN(12) {
			b.WriteString(pieces[r.IntN(len(pieces))])
		}
		if r.IntN(4) > 0 {
			b.WriteString("}")
		}
		if checkFastParse(t, []byte(b.String())) {
			n++
		}
	}
	// And well-formed random objects, most of which the fast path takes.
	fields := []string{"filename", "content_type", "sha256", "method", "size", "expires_in", "part_size"}
	for range 2000 {
		var b strings.Builder
		b.WriteString("{")
		for i, f := range r.Perm(len(fields))[:r.IntN(len(fields)+1)] {
			if i > 0 {
				b.WriteString(",")
			}
			b.WriteString(`"` + fields[f] + `":`)
			if f < 4 {
				b.WriteString(`"` + strings.Repeat("é<a", r.IntN(3)) + `"`)
			} else {
				b.WriteString(strings.Repeat("-", r.IntN(2)) + "1234567890123456789"[:1+r.IntN(19)])
			}
		}
		b.WriteString("}")
		if checkFastParse(t, []byte(b.String())) {
			n++
		}
	}
	require.Greater(t, n, 1500, "the random objects must mostly take the fast path")
}

func FuzzParseCreateUpload(f *testing.F) {
	f.Add([]byte(benchBody))
	f.Add([]byte(`{"filename":"a","size":-0,"expires_in":3600,"method":"post"}`))
	f.Add([]byte(`{"filename":"a\"","size":1.5}`))
	f.Fuzz(func(t *testing.T, data []byte) { checkFastParse(t, data) })
}

// TestDecodeCreateUploadMatchesDecodeJSON sends bodies of every kind (the fast path's, errors,
// larger than the fast path's buffer and than the body limit, other media types) and compares the
// outcome with decodeJSON's.
func TestDecodeCreateUploadMatchesDecodeJSON(t *testing.T) {
	t.Parallel()
	big := `{"filename":"` + strings.Repeat("x", fastBodyMax) + `","size":1}`
	bodies := []string{
		benchBody, `{"filename":"a","size":1,"metadata":{"k":[1,"v"]}}`, `{"filename":"a","Size":2}`, `{"filename":"a\u00e9"}`,
		``, `   `, `{`, `{"size":"x"}`, `{"size":1.5}`, `{"nope":1}`, `{"size":1}{"size":2}`, `{"size":1} ]`, `[1]`,
		big, big + strings.Repeat(" ", maxJSONBody), `{"filename":"` + strings.Repeat("y", maxJSONBody) + `"}`,
		`{"size":1}` + strings.Repeat(" ", fastBodyMax-len(`{"size":1}`)), `{"size":1}` + strings.Repeat(" ", fastBodyMax),
	}
	for _, ct := range []string{"application/json", "", "application/merge-patch+json; charset=utf-8", "text/plain"} {
		for _, body := range bodies {
			mk := func() (*httptest.ResponseRecorder, *http.Request) {
				r := httptest.NewRequest(http.MethodPost, "/v1/uploads", strings.NewReader(body))
				if ct != "" {
					r.Header.Set("Content-Type", ct)
				}
				return httptest.NewRecorder(), r
			}
			var want, got createUploadRequest
			w1, r1 := mk()
			pWant := decodeJSON(w1, r1, &want)
			w2, r2 := mk()
			pGot := decodeCreateUpload(w2, r2, &got)
			name := body
			if len(name) > 60 {
				name = name[:60] + "..."
			}
			require.Equal(t, pWant, pGot, "%s %q", ct, name)
			require.Equal(t, want, got, "%s %q", ct, name)
		}
	}
}
