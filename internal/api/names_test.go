package api

import (
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
	{"../x", "", false},
	{"a/b", "", false},
	{`a\b`, "", false},
	{"a\x00b", "", false},
	{"a\x7fb", "", false},
	{"tab\tname", "", false},
	{"rtl\u202egpj.exe", "", false},
	{"   ", "", false},
	{"\xff\xfe", "", false},
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
		}
	})
}

func TestNormalizeContentType(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"image/PNG":                      "image/png",
		"Text/Plain; Charset=UTF-8":      "text/plain; charset=UTF-8",
		"text/plain;charset=utf-8":       "text/plain; charset=utf-8",
		"application/vnd.api+json":       "application/vnd.api+json",
		"multipart/form-data; boundary=": "",
		"text":                           "",
		"/plain":                         "",
		"text/":                          "",
		"image/*":                        "",
		"text/plain\r\nx: y":             "",
		"":                               "",
		"téxt/plain":                     "",
	} {
		got, p := normalizeContentType(in)
		if want == "" {
			require.NotNil(t, p, "%q → %q", in, got)
			continue
		}
		require.Nil(t, p, "%q", in)
		require.Equal(t, want, got, in)
	}
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
	for _, bad := range []string{"", "nope", "AAAA", c + "A"} {
		_, _, ok := decodeCursor(bad)
		require.False(t, ok, bad)
	}
}
