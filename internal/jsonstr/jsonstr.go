// Package jsonstr writes and reads JSON strings exactly as encoding/json does, without reflection
// or allocation: the API's upload answer (api's appendJSON) and the consumer's SQS requests
// (queue.Lean) write their JSON by hand with Append, and Lean reads its SQS answers with Cut.
// FuzzAppend and FuzzCut hold them to encoding/json. Space and Next are the white space and
// punctuation steps of the hand-written readers (Lean's answers, pipeline's S3 notifications).
package jsonstr

import (
	"encoding/binary"
	"unicode/utf8"
)

// safe tells the ASCII bytes Append copies as they are.
var safe = func() (t [utf8.RuneSelf]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\' && c != '<' && c != '>' && c != '&'
	}
	return t
}()

// Append appends s as a JSON string exactly as encoding/json writes it with HTML escaping on (the
// Encoder's default): <, > and & as \u003c, \u003e and \u0026, control characters as \b, \f, \n,
// \r, \t or \u00XX, invalid UTF-8 as \ufffd, and U+2028 and U+2029 escaped.
func Append(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if safe[c] {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// Cut reads the JSON string at the start of b (its opening quote at b[0]) and returns its value
// and the bytes it spans in b, quotes included. The value is b's own bytes when the string holds
// no escape, or else the unescaped value appended to dst. It decodes exactly as encoding/json does
// (FuzzCut holds it to json.Unmarshal), except that it gives up (ok false) on what encoding/json
// would replace or refuse: an escaped UTF-16 surrogate (\ud800–\udfff, paired or not), invalid
// UTF-8, a control character, a bad escape or no closing quote. The caller then decodes another way.
func Cut(dst, b []byte) (value []byte, n int, ok bool) {
	if len(b) == 0 || b[0] != '"' {
		return nil, 0, false
	}
	escaped := false
	start := 1
	for i := 1; i < len(b); {
		for i+8 <= len(b) && plain8(binary.LittleEndian.Uint64(b[i:])) {
			i += 8
		}
		for i < len(b) && plain[b[i]] {
			i++
		}
		if i == len(b) {
			break
		}
		c := b[i]
		switch {
		case c == '"':
			if !escaped {
				return b[1:i], i + 1, true
			}
			return append(dst, b[start:i]...), i + 1, true
		case c < 0x20:
			return nil, 0, false
		case c == '\\':
			escaped = true
			dst = append(dst, b[start:i]...)
			if i+1 >= len(b) {
				return nil, 0, false
			}
			switch e := b[i+1]; e {
			case '"', '\\', '/':
				dst = append(dst, e)
				i += 2
			case 'b':
				dst, i = append(dst, '\b'), i+2
			case 'f':
				dst, i = append(dst, '\f'), i+2
			case 'n':
				dst, i = append(dst, '\n'), i+2
			case 'r':
				dst, i = append(dst, '\r'), i+2
			case 't':
				dst, i = append(dst, '\t'), i+2
			case 'u':
				r, ok := hex4(b[i+2:])
				if !ok || (r >= 0xd800 && r <= 0xdfff) {
					return nil, 0, false
				}
				dst, i = utf8.AppendRune(dst, r), i+6
			default:
				return nil, 0, false
			}
			start = i
		case c < utf8.RuneSelf:
			i++
		default:
			r, size := utf8.DecodeRune(b[i:])
			if r == utf8.RuneError && size == 1 {
				return nil, 0, false
			}
			i += size
		}
	}
	return nil, 0, false
}

// SurrogatesPaired reports whether every \uD800-\uDBFF escape of the valid JSON text b is followed
// by a \uDC00-\uDFFF escape, and no \uDC00-\uDFFF escape stands alone: encoding/json turns an
// unpaired one into U+FFFD, and PostgreSQL's jsonb refuses it. Backslashes occur only in strings of
// a valid JSON text, so no string tracking is needed.
func SurrogatesPaired(b []byte) bool {
	for i := 0; i < len(b); i++ {
		if b[i] != '\\' {
			continue
		}
		if i+1 < len(b) && b[i+1] != 'u' {
			i++ // a one-character escape, such as \\ or \"
			continue
		}
		r, ok := hex4(b[min(i+2, len(b)):])
		switch {
		case !ok:
			return false // not valid JSON
		case r >= 0xdc00 && r <= 0xdfff:
			return false
		case r >= 0xd800 && r <= 0xdbff:
			if i+12 > len(b) || b[i+6] != '\\' || b[i+7] != 'u' {
				return false
			}
			if lo, ok := hex4(b[i+8:]); !ok || lo < 0xdc00 || lo > 0xdfff {
				return false
			}
			i += 11
		default:
			i += 5
		}
	}
	return true
}

// Space returns the index of the first byte of b at or after i that is not JSON white space.
func Space(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// Next skips the white space of b at i and consumes c if it comes next: it returns the index
// after c and true, or the index of the byte that is not c and false.
func Next(b []byte, i int, c byte) (int, bool) {
	i = Space(b, i)
	if i < len(b) && b[i] == c {
		return i + 1, true
	}
	return i, false
}

// plain tells the bytes Cut copies as they are: ASCII but for controls, '"' and '\\'.
var plain = func() (t [256]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// plain8 reports whether the eight bytes of x are all plain (a word at a time: no byte below 0x20
// or above 0x7f, none a '"' or a '\\'). The zero-byte tests may report a plain byte as not plain
// (after a borrow), never the other way round: Cut's byte loop then looks at it.
func plain8(x uint64) bool {
	const lo, hi = 0x0101010101010101, 0x8080808080808080
	quote, backslash := x^(lo*'"'), x^(lo*'\\')
	return ((x-lo*0x20)&^x|(quote-lo)&^quote|(backslash-lo)&^backslash|x)&hi == 0
}

// hex4 reads the four hexadecimal digits of a \u escape.
func hex4(b []byte) (rune, bool) {
	if len(b) < 4 {
		return 0, false
	}
	var r rune
	for _, c := range b[:4] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			c = c - 'A' + 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}
