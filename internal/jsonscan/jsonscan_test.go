package jsonscan_test

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"

	"github.com/intakehq/intake/internal/jsonscan"
)

// valueCases are JSON texts Value must read whole (ok) or give up on; each names why.
var valueCases = []struct {
	name string
	in   string
	ok   bool
}{
	{"object of every kind", `{"a":[1,-2.5e+3,0.5E-1,true,false,null,{}],"b":"\u00e9\"\\\/\b\f\n\r\t","":[]}`, true},
	{"white space inside kept", "[ 1 ,\n2 ]", true},
	{"invalid UTF-8 in a string (valid to encoding/json)", "\"a\xffb\"", true},
	{"nested at MaxDepth", strings.Repeat("[", jsonscan.MaxDepth+1) + strings.Repeat("]", jsonscan.MaxDepth+1), true},
	{"nested deeper", strings.Repeat("[", jsonscan.MaxDepth+2) + strings.Repeat("]", jsonscan.MaxDepth+2), false},
	{"bad escape", `"\q"`, false},
	{"short unicode escape", `"\u12"`, false},
	{"control character", "\"a\tb\"", false},
	{"leading zero", `01`, false},
	{"fraction without digits", `1.`, false},
	{"exponent without digits", `1e`, false},
	{"bad literal", `nul`, false},
	{"trailing comma", `[1,]`, false},
	{"name not a string", `{1:2}`, false},
	{"unterminated", `{"a":1`, false},
	{"empty", ``, false},
}

// TestValue: what Value reads, encoding/json reads too, as the same bytes (json.RawMessage).
func TestValue(t *testing.T) {
	for _, c := range valueCases {
		t.Run(c.name, func(t *testing.T) {
			if got := valueAgrees(t, c.in); got != c.ok {
				t.Fatalf("Value read %v, want %v", got, c.ok)
			}
		})
	}
}

func FuzzValue(f *testing.F) {
	for _, c := range valueCases {
		f.Add(c.in)
	}
	f.Fuzz(func(t *testing.T, in string) { valueAgrees(t, in) })
}

// valueAgrees reads in with Value and, when it read a whole text, checks it against encoding/json.
func valueAgrees(t *testing.T, in string) bool {
	t.Helper()
	s := jsonscan.New([]byte(in))
	raw, ok := s.Value()
	if !ok || !s.End() {
		return false
	}
	var want json.RawMessage
	if err := json.Unmarshal([]byte(in), &want); err != nil {
		t.Fatalf("%q: Value read a text encoding/json refuses: %v", in, err)
	}
	if string(raw) != strings.TrimSpace(string(want)) {
		t.Fatalf("%q: Value read %q, encoding/json %q", in, raw, want)
	}
	return true
}

// TestUint: plain non-negative integers up to 18 digits, nothing else.
func TestUint(t *testing.T) {
	for _, c := range []struct {
		in string
		ok bool
	}{
		{"0", true}, {"7", true}, {"1048576", true}, {"999999999999999999", true},
		{"1000000000000000000", false}, {"-1", false}, {"01", false}, {"1.0", false}, {"1e3", false},
		{"1E3", false}, {"", false}, {"x", false},
	} {
		s := jsonscan.New([]byte(c.in))
		n, ok := s.Uint()
		ok = ok && s.End()
		if ok != c.ok {
			t.Errorf("Uint(%q) ok %v, want %v", c.in, ok, c.ok)
			continue
		}
		if want, _ := strconv.ParseInt(c.in, 10, 64); ok && n != want {
			t.Errorf("Uint(%q) = %d, want %d", c.in, n, want)
		}
	}
}

// TestMembers: known names each once, unknown ones skipped or, with RefuseUnknown, refused; names
// encoding/json would match another way give up.
func TestMembers(t *testing.T) {
	known := []string{"a", "b"}
	for _, c := range []struct {
		name    string
		in      string
		refuse  bool
		ok      bool
		wantSum int64
	}{
		{"known names", `{"a":1,"b":2}`, false, true, 3},
		{"unknown skipped", `{"a":1,"x":{"y":[1]},"b":2}`, false, true, 3},
		{"unknown refused", `{"a":1,"x":0}`, true, false, 0},
		{"known twice", `{"a":1,"a":2}`, false, false, 0},
		{"another case", `{"A":1}`, false, false, 0},
		{"non-ASCII name", "{\"\u212a\":1}", false, false, 0},
		{"escaped name", `{"\u0061":1}`, false, false, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := jsonscan.New([]byte(c.in))
			s.RefuseUnknown = c.refuse
			var sum int64
			ok := s.Members(known, func(int) bool {
				n, ok := s.Uint()
				sum += n
				return ok
			}) && s.End()
			if ok != c.ok || (ok && sum != c.wantSum) {
				t.Fatalf("ok %v sum %d, want %v %d", ok, sum, c.ok, c.wantSum)
			}
		})
	}
}
