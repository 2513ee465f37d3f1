package config

import (
	"testing"
	"unicode"

	"github.com/stretchr/testify/require"
)

// TestNoncharacter: Noncharacter holds for Unicode's 66 noncharacters and no other code point.
func TestNoncharacter(t *testing.T) {
	t.Parallel()
	want := map[rune]bool{}
	for _, r := range noncharacters() {
		want[r] = true
	}
	require.Len(t, want, 66)
	for r := rune(-1); r <= unicode.MaxRune+1; r++ {
		require.Equal(t, want[r], Noncharacter(r), "%U", r)
	}
}
