package api

import (
	"math"
	"math/rand/v2"
	"mime"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/intakehq/intake/internal/store/dbq"
)

var filenameCases = []struct {
	in, want string
	ok       bool
}{
	{"photo.jpg", "photo.jpg", true},
	{"  spaced name .pdf ", "spaced name .pdf", true},
	{"日本語.txt", "日本語.txt", true},
	{"a<b>|c?.txt", "a_b__c_.txt", true},
	{".hidden", ".hidden", true},
	{"..dots", "..dots", true},
	{"", "", false},
	{".", "", false},
	{"..", "", false},
	{" ..", "", false},      // the key is made of the trimmed name
	{" . ", "", false},      // idem
	{"..\u3000", "", false}, // an ideographic space is trimmed too
	{"\u00a0...", "...", true},
	{"../x", "", false},
	{"a/b", "", false},
	{`a\b`, "", false},
	{"a\x00b", "", false},
	{"a\x7fb", "", false},
	{"tab\tname", "", false},
	{"rtl\u202egpj.exe", "", false},
	{"   ", "", false},
	{"\xff\xfe", "", false},
	// Unicode noncharacters: XML 1.0 cannot carry U+FFFE and U+FFFF, so S3's answers naming the
	// key fail to decode (AWS SDK) or name another key (MinIO sends U+FFFD).
	{"a\uffffb.txt", "", false},
	{"a\ufffeb.txt", "", false},
	{"\ufdd0.txt", "", false},
	{"x\ufdef", "", false},
	{"a\U0001fffeb", "", false},
	{"a\U0010ffff", "", false},
	{"a\ufdcf\ufdf0\ufffc.txt", "a\ufdcf\ufdf0\ufffc.txt", true}, // their neighbours are characters
	{"a\U0001fffd.txt", "a\U0001fffd.txt", true},
	{strings.Repeat("a", 255), strings.Repeat("a", 255), true},
	{strings.Repeat("a", 256), "", false},
}

func TestSanitizeFilename(t *testing.T) {
	t.Parallel()
	for _, c := range filenameCases {
		got, p := sanitizeFilename(c.in)
		if !c.ok {
			require.NotNil(t, p, "%q", c.in)
			require.Equal(t, ProblemBase+"invalid-filename", p.Type)
			continue
		}
		require.Nil(t, p, "%q", c.in)
		require.Equal(t, c.want, got)
	}
}

func FuzzSanitizeFilename(f *testing.F) {
	for _, c := range filenameCases {
		f.Add(c.in)
	}
	f.Fuzz(func(t *testing.T, in string) {
		got, p := sanitizeFilename(in)
		if p != nil {
			return
		}
		if got == "" || got == "." || got == ".." || strings.ContainsAny(got, "/\\") || len(got) > maxFilenameBytes || !utf8.ValidString(got) {
			t.Fatalf("sanitizeFilename(%q) = %q is unsafe", in, got)
		}
		for _, r := range got {
			if r < 0x20 || r == 0x7f {
				t.Fatalf("sanitizeFilename(%q) = %q keeps a control character", in, got)
			}
			if (r >= 0xfdd0 && r <= 0xfdef) || r&0xfffe == 0xfffe {
				t.Fatalf("sanitizeFilename(%q) = %q keeps the noncharacter %U", in, got, r)
			}
		}
	})
}

// contentTypeCases map a declared content type to its normal form ("" when refused).
var contentTypeCases = map[string]string{
	"image/PNG":                      "image/png",
	"Text/Plain; Charset=UTF-8":      "text/plain; charset=UTF-8",
	"text/plain;charset=utf-8":       "text/plain; charset=utf-8",
	"application/vnd.api+json":       "application/vnd.api+json",
	"TEXT/Plain":                     "text/plain",
	"text/plain; charset=binary":     "text/plain; charset=binary",
	`text/plain; name="a b"`:         `text/plain; name="a b"`,
	"multipart/form-data; boundary=": "",
	"text":                           "",
	"/plain":                         "",
	"text/":                          "",
	"image/*":                        "",
	"text/plain\r\nx: y":             "",
	"text/plain\r\nX-Evil: 1":        "",
	"":                               "",
	"téxt/plain":                     "",
	"application/x-msdownload":       "application/x-msdownload",
}

func TestNormalizeContentType(t *testing.T) {
	t.Parallel()
	for in, want := range contentTypeCases {
		got, p := normalizeContentType(in)
		if want == "" {
			require.NotNil(t, p, "%q → %q", in, got)
			continue
		}
		require.Nil(t, p, "%q", in)
		require.Equal(t, want, got, in)
	}
}

// longParams is a 250-byte content type whose canonical form is longer than 255 bytes (a space is
// added after every ';').
func longParams() string {
	var b strings.Builder
	b.WriteString("text/plain")
	for i := 0; b.Len() < 250; i++ {
		b.WriteString(";" + string(rune('a'+i/26)) + string(rune('a'+i%26)) + "=1")
	}
	return b.String()
}

// FuzzNormalizeContentType: what normalizeContentType accepts is what gets signed and stored, so it
// must be a canonical (normalizing it again changes nothing), printable ASCII header value within the
// length limit, of the form type/subtype.
func FuzzNormalizeContentType(f *testing.F) {
	for in := range contentTypeCases {
		f.Add(in)
	}
	f.Add(`text/plain; a="` + strings.Repeat(`\"`, 115) + `"`)
	f.Add(longParams())
	f.Fuzz(func(t *testing.T, in string) {
		out, p := normalizeContentType(in)
		if p != nil {
			if p.Type != ProblemBase+"invalid-content-type" {
				t.Fatalf("normalizeContentType(%q): problem %s", in, p.Type)
			}
			return
		}
		if out == "" || len(out) > 255 {
			t.Fatalf("normalizeContentType(%q) = %q (%d bytes)", in, out, len(out))
		}
		for i := 0; i < len(out); i++ {
			if out[i] < 0x20 || out[i] >= 0x7f {
				t.Fatalf("normalizeContentType(%q) = %q holds byte %#x", in, out, out[i])
			}
		}
		again, p := normalizeContentType(out)
		if p != nil || again != out {
			t.Fatalf("normalizeContentType(%q) = %q is not canonical: again %q, %v", in, out, again, p)
		}
		mt, _, err := mime.ParseMediaType(out)
		if err != nil || mt != strings.ToLower(mt) || strings.Count(mt, "/") != 1 || strings.Contains(mt, "*") {
			t.Fatalf("normalizeContentType(%q) = %q: media type %q, %v", in, out, mt, err)
		}
	})
}

// cursorSeeds are cursors of GET /v1/objects: issued ones and forged ones.
func cursorSeeds() []string {
	id := uuid.MustParse("0193c3f0-7c1e-7000-8000-0000000000ab")
	valid := encodeCursor(dbq.Object{ID: id, CreatedAt: time.Date(2026, 5, 6, 7, 8, 9, 123456000, time.UTC)})
	return []string{valid, valid + "A", "", "nope", "AAAA", "!!!!", rawCursor(math.MinInt64, id), rawCursor(math.MaxInt64, id),
		rawCursor(0, uuid.Nil), rawCursor(-62135596800000000, id), rawCursor(253402300799999999, id), rawCursor(253402300800000000, id)}
}

// FuzzDecodeCursor: the cursor parameter of GET /v1/objects is anything a client sends. A cursor that
// decodes gives a time PostgreSQL takes as it is (year 1 to 9999) and the same values when encoded
// again.
func FuzzDecodeCursor(f *testing.F) {
	for _, c := range cursorSeeds() {
		f.Add(c)
	}
	f.Fuzz(func(t *testing.T, c string) {
		at, id, ok := decodeCursor(c)
		if !ok {
			return
		}
		if at.Year() < 1 || at.Year() > 9999 || at.Location() != time.UTC {
			t.Fatalf("decodeCursor(%q) = %s", c, at)
		}
		at2, id2, ok := decodeCursor(encodeCursor(dbq.Object{ID: id, CreatedAt: at}))
		if !ok || !at2.Equal(at) || id2 != id {
			t.Fatalf("decodeCursor(%q) = %s %s does not round-trip: %s %s %v", c, at, id, at2, id2, ok)
		}
	})
}

func TestObjectKeyAndCursor(t *testing.T) {
	t.Parallel()
	id := uuid.MustParse("0193c3f0-7c1e-7000-8000-0000000000ab")
	require.Equal(t, "uploads/alice/0193c3f0-7c1e-7000-8000-0000000000ab/a.txt", objectKey("uploads/", "alice", id, "a.txt"))
	require.True(t, strings.HasPrefix(objectKey("uploads", "alice", id, "a"), ownerPrefix("uploads", "alice")))
	require.False(t, strings.HasPrefix(objectKey("uploads", "alice2", id, "a"), ownerPrefix("uploads", "alice")))

	at := time.Date(2026, 5, 6, 7, 8, 9, 123456000, time.UTC)
	c := encodeCursor(dbq.Object{ID: id, CreatedAt: at})
	gotAt, gotID, ok := decodeCursor(c)
	require.True(t, ok)
	require.Equal(t, at, gotAt)
	require.Equal(t, id, gotID)
	for _, bad := range []string{"", "nope", "AAAA", c + "A", rawCursor(math.MinInt64, id), rawCursor(math.MaxInt64, id), rawCursor(253402300800000000, id)} {
		_, _, ok := decodeCursor(bad)
		require.False(t, ok, bad)
	}
	_, _, ok = decodeCursor(rawCursor(253402300799999999, id))
	require.True(t, ok, "the last microsecond of 9999")
}

// TestPlainMediaType: a content type taking normalizeContentType's shortcut is one that package
// mime parses and formats back to itself, without parameters or a wildcard.
func TestPlainMediaType(t *testing.T) {
	t.Parallel()
	alphabet := "az09/!#$%&'+-.^_`|~*A; =\"\t"
	r := rand.New(rand.NewPCG(7, 8))
	plain := 0
	check := func(ct string) {
		if !plainMediaType(ct) {
			return
		}
		plain++
		mt, params, err := mime.ParseMediaType(ct)
		require.NoError(t, err, "%q", ct)
		require.Empty(t, params, "%q", ct)
		require.Equal(t, ct, mime.FormatMediaType(mt, params), "%q", ct)
		require.NotContains(t, ct, "*")
	}
	for _, ct := range []string{"image/jpeg", "application/vnd.ms-excel", "text/x-c++", "a/b", "/b", "a/", "/", "", "a//b", "a/b/c", "Image/jpeg", "image/*", "text/plain; charset=utf-8", "a b/c"} {
		check(ct)
	}
	for range 50000 {
		b := make([]byte, 1+r.IntN(8))
		for i := range b {
			b[i] = alphabet[r.IntN(len(alphabet))]
		}
		check(string(b))
	}
	require.Greater(t, plain, 500)
	require.True(t, plainMediaType("image/jpeg"))
	require.False(t, plainMediaType("Image/JPEG"))
}

// TestParseMetadataRefusesWhatJSONBRefuses: every value PostgreSQL's jsonb refuses (or would spell
// out in more than MaxMetadata bytes) is a 400 before it reaches the intent row; what it holds is
// kept. (TestMetadataLimitHoldsOnWhatPostgreSQLRenders checks the counting against PostgreSQL.)
func TestParseMetadataRefusesWhatJSONBRefuses(t *testing.T) {
	t.Parallel()
	// 2 KiB of compact JSON that jsonb renders in 300 times as much: 1e308 is 309 digits.
	amplified := `{"a":[1e308` + strings.Repeat(`,1e308`, (MaxMetadata-len(`{"a":[1e308]}`))/len(`,1e308`)) + `]}`
	require.LessOrEqual(t, len(amplified), MaxMetadata)
	for _, c := range []struct {
		in string
		ok bool
	}{
		{`{"k":"plain","n":[1,-2.5e3,1e308,-1e-300,0e1000,0.000e-999,null,true]}`, true}, // 1,658 bytes rendered
		{`{"n":[1e300,1e300,1e300,1e300,1e300,1e300]}`, true},                            // 1,819 bytes rendered
		{`{"n":[1e300,1e300,1e300,1e300,1e300,1e300,1e300]}`, false},                     // 2,121 bytes rendered
		{amplified, false},
		{`{"k":0e1001}`, false},       // PostgreSQL before 15 refuses the exponent
		{`{"k":0e5000}`, false},       // (the same)
		{`{"k":0e2000000000}`, false}, // PostgreSQL 15 overflows
		{`{"k":0e-999999}`, false},    // a million zeros after the point; PostgreSQL overflows
		{`{"k":1E+2,"l":-0.00,"m":1.50e2,"n":100e-2}`, true},
		{`{"emoji":"\ud83d\ude00","escaped":"\\ud800 is text","é":"\u00e9"}`, true},
		{"{\"k\":\"a\xffb\"}", false},
		{`{"k":"\ud800"}`, false},
		{`{"k":"\ud800x"}`, false},
		{`{"k":"\udc00"}`, false},
		{`{"k":"\ud800\u0041"}`, false},
		{`{"k":"\ude00\ud83d"}`, false},
		{`{"k":"a\u0000"}`, false},
		{`{"a\u0000":1}`, false},
		{`{"k":1e309}`, false},
		{`{"k":-1e400}`, false},
		{`{"k":1e-400}`, false},
		{`{"k":[{"deep":5e-324}]}`, true},
		{`{"k":[{"deep":2e-325}]}`, false},
	} {
		out, p := parseMetadata([]byte(c.in))
		if c.ok {
			require.Nil(t, p, "%s", c.in)
			require.NotEmpty(t, out)
			continue
		}
		require.NotNil(t, p, "%s", c.in)
		require.Equal(t, ProblemBase+"invalid-metadata", p.Type, "%s", c.in)
	}
}
