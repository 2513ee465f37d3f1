package jsonstr_test

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/intakehq/intake/internal/jsonstr"
)

// encoded is s as encoding/json's Encoder writes it (HTML escaping on), without its newline.
func encoded(t *testing.T, s string) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := json.NewEncoder(&buf).Encode(s); err != nil {
		t.Fatal(err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
}

// hostile are strings that need every kind of escape.
var hostile = []string{
	"", "plain", `quote " and backslash \`, "<script>&amp;</script>", "\x00\x01\x1f\x7f",
	"\b\f\n\r\t", "é ü 漢字 🎉", "\xff\xfe invalid \xc3", "line\u2028separator\u2029", "a+b/c==",
	"https://sqs.us-east-1.amazonaws.com/000000000000/q",
}

// TestAppend: every hostile string is written as encoding/json writes it, after what b held.
func TestAppend(t *testing.T) {
	for _, s := range hostile {
		want := append([]byte("prefix:"), encoded(t, s)...)
		if got := jsonstr.Append([]byte("prefix:"), s); !bytes.Equal(got, want) {
			t.Errorf("%q:\n got %s\nwant %s", s, got, want)
		}
	}
}

// FuzzAppend: any string is written as encoding/json writes it.
func FuzzAppend(f *testing.F) {
	for _, s := range hostile {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := jsonstr.Append(nil, s), encoded(t, s); !bytes.Equal(got, want) {
			t.Fatalf("%q:\n got %s\nwant %s", s, got, want)
		}
	})
}

// TestCut: Cut reads every hostile string as encoding/json wrote it, escapes included, and gives up
// on what it leaves to encoding/json.
func TestCut(t *testing.T) {
	for _, s := range hostile {
		enc := encoded(t, s)
		var want string
		if err := json.Unmarshal(enc, &want); err != nil {
			t.Fatal(err)
		}
		if bytes.IndexByte(enc, '\\') >= 0 {
			want = "dst:" + want // an escaped value is appended to dst
		}
		got, n, ok := jsonstr.Cut([]byte("dst:"), append(enc, `,"next"`...))
		if !ok || string(got) != want || n != len(enc) {
			t.Errorf("%s: got %q, %d bytes, %v; want %q, %d bytes", enc, got, n, ok, want, len(enc))
		}
	}
	plain := []byte(`"plain", "x"`)
	if got, n, ok := jsonstr.Cut(nil, plain); !ok || n != 7 || &got[0] != &plain[1] {
		t.Errorf("a string without escapes: got %q, %d, %v; want plain's own bytes", got, n, ok)
	}
	for _, bad := range []string{
		``, `plain`, `"no end`, `"bad \x escape"`, `"\u12"`, `"\ud83d\ude00"`, `"\udc00"`, "\"\x01\"",
		"\"\xff\"", `"trailing \`,
	} {
		if got, n, ok := jsonstr.Cut(nil, []byte(bad)); ok {
			t.Errorf("%q: got %q, %d bytes, ok; want a refusal", bad, got, n)
		}
	}
}

// FuzzCut: whatever Cut reads, json.Unmarshal reads the same bytes as the same string.
func FuzzCut(f *testing.F) {
	for _, s := range hostile {
		f.Add(string(jsonstr.Append(nil, s)) + "tail") // Append writes what encoding/json writes (FuzzAppend)
	}
	f.Add(`"\u00e9\n\"\\\/ x"`)
	f.Fuzz(func(t *testing.T, in string) {
		got, n, ok := jsonstr.Cut(nil, []byte(in))
		if !ok {
			return
		}
		var want string
		if err := json.Unmarshal([]byte(in[:n]), &want); err != nil {
			t.Fatalf("Cut read %q from %q, json.Unmarshal refuses it: %v", got, in[:n], err)
		}
		if string(got) != want {
			t.Fatalf("%q: Cut %q, json.Unmarshal %q", in[:n], got, want)
		}
	})
}

// TestNext: Next skips JSON's four white space bytes only, and consumes the byte asked for only
// when it comes next.
func TestNext(t *testing.T) {
	for _, tc := range []struct {
		in   string
		at   int
		c    byte
		want int
		ok   bool
	}{
		{" \t\r\n:x", 0, ':', 5, true},
		{"x: 1", 1, ':', 2, true},
		{" \v:", 0, ':', 1, false}, // \v is not JSON white space
		{"  ", 0, ':', 2, false},
		{"", 0, ',', 0, false},
		{" ]", 0, ',', 1, false},
	} {
		if got, ok := jsonstr.Next([]byte(tc.in), tc.at, tc.c); got != tc.want || ok != tc.ok {
			t.Errorf("Next(%q, %d, %q) = %d, %v; want %d, %v", tc.in, tc.at, tc.c, got, ok, tc.want, tc.ok)
		}
	}
}

func TestSurrogatesPaired(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]bool{
		`{"k":"plain"}`:                     true,
		`{"k":"\ud83d\ude00"}`:              true,
		`{"k":"\\ud800 is text","q":"\""}`:  true,
		`{"k":"\u00e9\u0041"}`:              true,
		`{"k":"\ud800"}`:                    false,
		`{"k":"\ud800x"}`:                   false,
		`{"k":"\udc00"}`:                    false,
		`{"k":"\ud800\u0041"}`:              false,
		`{"k":"\ude00\ud83d"}`:              false,
		`{"k":"\uD83D\uDE00","l":"\uDBFF"}`: false,
	} {
		if got := jsonstr.SurrogatesPaired([]byte(in)); got != want {
			t.Errorf("SurrogatesPaired(%s) = %t, want %t", in, got, want)
		}
	}
}
