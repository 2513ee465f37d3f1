// Package jsonscan reads JSON in one validating pass, without reflection, for the fast paths that
// read a hot, known shape of JSON exactly as encoding/json would: the S3 notifications the consumer
// decodes (pipeline) and the body of the API's POST /v1/uploads (internal/api).
//
// A Scanner gives up (its methods return false) whenever it cannot be sure to read what
// encoding/json reads; the caller then decodes the same bytes with encoding/json, so a fast path
// changes no answer, only its cost. The callers' fuzz targets hold them to encoding/json.
package jsonscan

import (
	"strings"
	"unicode/utf8"

	"github.com/intakehq/intake/internal/jsonstr"
)

// MaxDepth bounds the nesting Skip follows.
const MaxDepth = 64

// Scanner reads JSON from a byte slice, from its start.
type Scanner struct {
	b []byte
	i int
	// RefuseUnknown makes Members give up on a name it does not know (the readers of types decoded
	// with encoding/json's DisallowUnknownFields); otherwise their values are skipped.
	RefuseUnknown bool
}

// New returns a Scanner of b.
func New(b []byte) Scanner { return Scanner{b: b} }

// Space skips white space.
func (s *Scanner) Space() { s.i = jsonstr.Space(s.b, s.i) }

// Next skips white space and reports whether the next byte is c, consuming it if so.
func (s *Scanner) Next(c byte) (ok bool) {
	s.i, ok = jsonstr.Next(s.b, s.i, c)
	return ok
}

// End skips white space and reports whether nothing follows.
func (s *Scanner) End() bool {
	s.Space()
	return s.i == len(s.b)
}

// Object reads an object, calling member with each name once the scanner stands before its value;
// member reads or skips the value and returns false to stop the scan.
func (s *Scanner) Object(member func(name []byte) bool) bool {
	return s.Next('{') && s.List('}', func() bool {
		name, ok := s.PlainString()
		if !ok || !s.Next(':') {
			return false
		}
		s.Space()
		return member(name)
	})
}

// List reads the comma-separated elements of an object or an array whose opening byte was read, up
// to and with its closing byte; elem reads one element, the scanner standing at its first byte.
func (s *Scanner) List(closing byte, elem func() bool) bool {
	if s.Next(closing) {
		return true
	}
	for {
		s.Space()
		if !elem() {
			return false
		}
		if !s.Next(',') {
			return s.Next(closing)
		}
	}
}

// PlainString reads a string without escapes, of ASCII or valid UTF-8 (what encoding/json gives
// unchanged); the bytes are the input's.
func (s *Scanner) PlainString() ([]byte, bool) {
	if s.i >= len(s.b) || s.b[s.i] != '"' {
		return nil, false
	}
	start := s.i + 1
	ascii := true
	for j := start; j < len(s.b); j++ {
		switch c := s.b[j]; {
		case c == '"':
			s.i = j + 1
			v := s.b[start:j]
			if !ascii && !utf8.Valid(v) {
				return nil, false
			}
			return v, true
		case c == '\\' || c < 0x20:
			return nil, false
		case c >= utf8.RuneSelf:
			ascii = false
		}
	}
	return nil, false
}

// String reads a plain string (PlainString) into *dst, a copy.
func (s *Scanner) String(dst *string) bool {
	v, ok := s.PlainString()
	*dst = string(v)
	return ok
}

// plainASCII reports whether a member name is ASCII: a non-ASCII name may fold to an ASCII one in
// encoding/json's matching, so Members gives up on it.
func plainASCII(name []byte) bool {
	for i := 0; i < len(name); i++ {
		if name[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// Members reads an object whose names are matched against known (exact names, at most 32), calling
// read with the index k of each known name; a known name given twice gives up (encoding/json would
// keep the last value, or merge two objects). Any other name's value is skipped (or, with
// RefuseUnknown, gives up), unless it is a known name in another case or not plain ASCII, which give
// up: encoding/json matches names case-insensitively.
func (s *Scanner) Members(known []string, read func(k int) bool) bool {
	var seen uint32
	return s.Object(func(name []byte) bool {
		if !plainASCII(name) {
			return false
		}
		for k, n := range known {
			if string(name) == n {
				bit := uint32(1) << k
				if seen&bit != 0 {
					return false
				}
				seen |= bit
				return read(k)
			}
			if strings.EqualFold(string(name), n) {
				return false
			}
		}
		return !s.RefuseUnknown && s.Skip()
	})
}

// Uint reads a plain non-negative integer of at most 18 digits (no sign, fraction or exponent).
func (s *Scanner) Uint() (int64, bool) {
	start := s.i
	var n int64
	for s.i < len(s.b) && s.b[s.i] >= '0' && s.b[s.i] <= '9' {
		n = n*10 + int64(s.b[s.i]-'0')
		s.i++
	}
	digits := s.i - start
	if digits == 0 || digits > 18 || (digits > 1 && s.b[start] == '0') {
		return 0, false
	}
	if s.i < len(s.b) && (s.b[s.i] == '.' || s.b[s.i] == 'e' || s.b[s.i] == 'E') {
		return 0, false
	}
	return n, true
}

// Null reads a null if one comes next, and reports whether it did.
func (s *Scanner) Null() bool { return s.literal("null") }

// Value validates and skips one JSON value, nested at most MaxDepth deep, and returns its bytes
// (the input's, as encoding/json's RawMessage holds them).
func (s *Scanner) Value() ([]byte, bool) {
	start := s.i
	if !s.skip(0) {
		return nil, false
	}
	return s.b[start:s.i], true
}

// Skip validates and skips one JSON value, nested at most MaxDepth deep.
func (s *Scanner) Skip() bool { return s.skip(0) }

func (s *Scanner) skip(depth int) bool {
	if depth > MaxDepth || s.i >= len(s.b) {
		return false
	}
	switch c := s.b[s.i]; {
	case c == '"':
		return s.skipString()
	case c == '{':
		s.i++
		return s.List('}', func() bool {
			if !s.skipString() || !s.Next(':') {
				return false
			}
			s.Space()
			return s.skip(depth + 1)
		})
	case c == '[':
		s.i++
		return s.List(']', func() bool { return s.skip(depth + 1) })
	case c == '-' || (c >= '0' && c <= '9'):
		return s.skipNumber()
	case c == 't':
		return s.literal("true")
	case c == 'f':
		return s.literal("false")
	case c == 'n':
		return s.literal("null")
	}
	return false
}

func (s *Scanner) literal(lit string) bool {
	if len(s.b)-s.i < len(lit) || string(s.b[s.i:s.i+len(lit)]) != lit {
		return false
	}
	s.i += len(lit)
	return true
}

// skipString validates a string with its escapes (invalid UTF-8 is valid JSON to encoding/json).
func (s *Scanner) skipString() bool {
	if s.i >= len(s.b) || s.b[s.i] != '"' {
		return false
	}
	for j := s.i + 1; j < len(s.b); j++ {
		switch c := s.b[j]; {
		case c == '"':
			s.i = j + 1
			return true
		case c < 0x20:
			return false
		case c == '\\':
			j++
			if j >= len(s.b) {
				return false
			}
			switch s.b[j] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				if j+4 >= len(s.b) {
					return false
				}
				for _, h := range s.b[j+1 : j+5] {
					if !isHex(h) {
						return false
					}
				}
				j += 4
			default:
				return false
			}
		}
	}
	return false
}

func isHex(c byte) bool {
	return ('0' <= c && c <= '9') || ('a' <= c && c <= 'f') || ('A' <= c && c <= 'F')
}

// skipNumber validates a number: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func (s *Scanner) skipNumber() bool {
	digits := func() int {
		start := s.i
		for s.i < len(s.b) && s.b[s.i] >= '0' && s.b[s.i] <= '9' {
			s.i++
		}
		return s.i - start
	}
	if s.b[s.i] == '-' {
		s.i++
	}
	if s.i < len(s.b) && s.b[s.i] == '0' {
		s.i++
	} else if digits() == 0 {
		return false
	}
	if s.i < len(s.b) && s.b[s.i] == '.' {
		s.i++
		if digits() == 0 {
			return false
		}
	}
	if s.i < len(s.b) && (s.b[s.i] == 'e' || s.b[s.i] == 'E') {
		s.i++
		if s.i < len(s.b) && (s.b[s.i] == '+' || s.b[s.i] == '-') {
			s.i++
		}
		if digits() == 0 {
			return false
		}
	}
	return true
}
