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
