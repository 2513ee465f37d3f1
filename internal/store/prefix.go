package store

import (
	"strings"
	"unicode/utf8"
)

// noKeyAfter is greater, in byte order, than every object key: a key is at most 1,024 bytes
// (pipeline.MaxKeyLen, S3's own limit) and this is 257 of the greatest code point, 1,028 bytes.
var noKeyAfter = strings.Repeat(string(rune(utf8.MaxRune)), 257)

// PrefixEnd returns the least string, in byte order, greater than every key that starts with
// prefix: the exclusive upper bound of the keys under prefix (the next code point after prefix's
// last one that can be raised, its later ones dropped). It is valid UTF-8 (PostgreSQL's text
// refuses anything else), and for a prefix with no such bound (empty, or only U+10FFFF) it is a
// string greater than any key S3 allows.
func PrefixEnd(prefix string) string {
	for p := prefix; p != ""; {
		r, size := utf8.DecodeLastRuneInString(p)
		p = p[:len(p)-size]
		switch {
		case r == utf8.RuneError && size == 1:
			// Not UTF-8: no key starts with it, and none can be stored; keep the bound total.
			return noKeyAfter
		case r == utf8.MaxRune:
			continue
		case r == 0xD7FF:
			r = 0xE000 // past the surrogates, which UTF-8 cannot encode
		default:
			r++
		}
		return p + string(r)
	}
	return noKeyAfter
}
