package store_test

import (
	"math/rand/v2"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/require"

	"github.com/intakehq/intake/internal/store"
)

func TestPrefixEnd(t *testing.T) {
	for _, tc := range []struct{ prefix, want string }{
		{"uploads/k1", "uploads/k2"},
		{"a/", "a0"},
		{"é", "ê"},
		{"a\u00bf", "a\u00c0"}, // the last byte would overflow into an invalid sequence
		{"a\ud7ff", "a\ue000"},
		{"ab\U0010FFFF", "ac"},
		{"a\U0010FFFF\U0010FFFF", "b"},
	} {
		require.Equal(t, tc.want, store.PrefixEnd(tc.prefix), "%q", tc.prefix)
	}
	for _, p := range []string{"", "\U0010FFFF", "\U0010FFFF\U0010FFFF"} {
		end := store.PrefixEnd(p)
		require.True(t, utf8.ValidString(end))
		require.Greater(t, end, strings.Repeat("\U0010FFFF", 256), "greater than the greatest 1,024-byte key")
	}

	// Every key under a prefix sorts below its end and every key at or past the end is not under it.
	runes := []rune{'a', 'b', '/', 0x7f, 0x80, 0xbf, 0x7ff, 0x800, 0xd7ff, 0xe000, 0xffff, 0x10000, utf8.MaxRune}
	rnd := rand.New(rand.NewPCG(1, 2))
	word := func(n int) string {
		var b strings.Builder
		for range n {
			b.WriteRune(runes[rnd.IntN(len(runes))])
		}
		return b.String()
	}
	for range 20000 {
		p, k := word(rnd.IntN(4)), word(rnd.IntN(6))
		end := store.PrefixEnd(p)
		require.True(t, utf8.ValidString(end), "%q", p)
		if strings.HasPrefix(k, p) {
			require.Less(t, k, end, "key %q under prefix %q", k, p)
		}
		if k >= end {
			require.False(t, strings.HasPrefix(k, p), "key %q past %q's end %q", k, p, end)
		}
	}
}
