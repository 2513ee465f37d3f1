package pipeline

import (
	"strings"
	"unicode/utf8"

	"github.com/intakehq/intake/internal/jsonstr"
)

// scanRecords is decodeRecords' fast path: it reads an S3 notification {"Records":[...]} in one pass
// over body, without reflection, when body has the plain form S3, MinIO and the emulators send.
// ok is false whenever it cannot be sure to give exactly what json.Unmarshal gives, and the caller
// then decodes with json.Unmarshal: body is not valid JSON (the scan validates every byte, the
// values it skips too); a name in an object intake reads holds a non-ASCII byte; a name intake
// reads holds an escape, appears twice, or is spelled in another case (encoding/json matches names
// case-insensitively); a value intake reads is not a string (a size not a plain non-negative
// integer), holds an escape or invalid UTF-8, or is null; nesting deeper than maxScanDepth.
// FuzzScanRecords holds it to json.Unmarshal.
func scanRecords(body []byte) (recs []s3Record, ok bool) {
	s := scanner{b: body}
	ok = s.members(bodyNames, func(int) bool {
		recs, ok = s.records() // at least one record when ok
		return ok
	})
	s.space()
	if !ok || recs == nil || s.i != len(s.b) {
		return nil, false
	}
	return recs, true
}

// maxScanDepth bounds the nesting the scan follows in values it skips.
const maxScanDepth = 64

// scanner reads JSON from b at i.
type scanner struct {
	b []byte
	i int
}

func (s *scanner) space() { s.i = jsonstr.Space(s.b, s.i) }

// next skips white space and reports whether the next byte is c, consuming it if so.
func (s *scanner) next(c byte) (ok bool) {
	s.i, ok = jsonstr.Next(s.b, s.i, c)
	return ok
}

// object reads an object, calling member with each name once the scanner stands before its value;
// member reads or skips the value and returns false to stop the scan.
func (s *scanner) object(member func(name []byte) bool) bool {
	return s.next('{') && s.list('}', func() bool {
		name, ok := s.plainString()
		if !ok || !s.next(':') {
			return false
		}
		s.space()
		return member(name)
	})
}

// list reads the comma-separated elements of an object or an array whose opening byte was read, up
// to and with its closing byte; elem reads one element, the scanner standing at its first byte.
func (s *scanner) list(closing byte, elem func() bool) bool {
	if s.next(closing) {
		return true
	}
	for {
		s.space()
		if !elem() {
			return false
		}
		if !s.next(',') {
			return s.next(closing)
		}
	}
}

// plainString reads a string without escapes, of ASCII or valid UTF-8 (what encoding/json gives
// unchanged); the bytes are body's.
func (s *scanner) plainString() ([]byte, bool) {
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

// plainASCII reports whether a member name is ASCII: a non-ASCII name may fold to an ASCII one in
// encoding/json's matching, so members gives up on it.
func plainASCII(name []byte) bool {
	for i := 0; i < len(name); i++ {
		if name[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// stringField reads a string value into *dst.
func (s *scanner) stringField(dst *string) bool {
	v, ok := s.plainString()
	*dst = string(v)
	return ok
}

// members reads an object whose names intake matches against known (exact names, at most 16),
// calling read with the index k of each known name; a known name given twice gives up (encoding/json
// would keep the last value). Any other name's value is skipped, unless it is a known name in
// another case or not plain ASCII.
func (s *scanner) members(known []string, read func(k int) bool) bool {
	var seen uint16
	return s.object(func(name []byte) bool {
		if !plainASCII(name) {
			return false
		}
		for k, n := range known {
			if string(name) == n {
				bit := uint16(1) << k
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
		return s.skip(0)
	})
}

// records reads the Records array: objects only, at least one.
func (s *scanner) records() ([]s3Record, bool) {
	recs := make([]s3Record, 0, 1)
	ok := s.next('[') && s.list(']', func() bool {
		var r s3Record
		if !s.record(&r) {
			return false
		}
		recs = append(recs, r)
		return true
	})
	if !ok || len(recs) == 0 {
		return nil, false
	}
	return recs, true
}

var (
	bodyNames   = []string{"Records"}
	recordNames = []string{"eventSource", "awsRegion", "eventTime", "eventName", "s3"}
	s3Names     = []string{"bucket", "object"}
	bucketNames = []string{"name"}
	objectNames = []string{"key", "size", "eTag", "versionId", "sequencer", "contentType"}
)

func (s *scanner) record(r *s3Record) bool {
	return s.members(recordNames, func(k int) bool {
		switch k {
		case 0:
			return s.stringField(&r.EventSource)
		case 1:
			return s.stringField(&r.AWSRegion)
		case 2:
			return s.stringField(&r.EventTime)
		case 3:
			return s.stringField(&r.EventName)
		}
		return s.members(s3Names, func(k int) bool {
			if k == 0 {
				return s.members(bucketNames, func(int) bool {
					return s.stringField(&r.S3.Bucket.Name)
				})
			}
			o := &r.S3.Object
			return s.members(objectNames, func(k int) bool {
				switch k {
				case 0:
					return s.stringField(&o.Key)
				case 1:
					var ok bool
					o.Size, ok = s.size()
					return ok
				case 2:
					return s.stringField(&o.ETag)
				case 3:
					return s.stringField(&o.VersionID)
				case 4:
					return s.stringField(&o.Sequencer)
				}
				return s.stringField(&o.ContentType)
			})
		})
	})
}

// size reads a plain non-negative integer of at most 18 digits (no sign, fraction or exponent).
func (s *scanner) size() (int64, bool) {
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

// skip validates and skips one JSON value at depth.
func (s *scanner) skip(depth int) bool {
	if depth > maxScanDepth || s.i >= len(s.b) {
		return false
	}
	switch c := s.b[s.i]; {
	case c == '"':
		return s.skipString()
	case c == '{':
		s.i++
		return s.list('}', func() bool {
			if !s.skipString() || !s.next(':') {
				return false
			}
			s.space()
			return s.skip(depth + 1)
		})
	case c == '[':
		s.i++
		return s.list(']', func() bool { return s.skip(depth + 1) })
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

func (s *scanner) literal(lit string) bool {
	if len(s.b)-s.i < len(lit) || string(s.b[s.i:s.i+len(lit)]) != lit {
		return false
	}
	s.i += len(lit)
	return true
}

// skipString validates a string with its escapes (invalid UTF-8 is valid JSON to encoding/json).
func (s *scanner) skipString() bool {
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

// skipNumber validates a number: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func (s *scanner) skipNumber() bool {
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
