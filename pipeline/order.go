package pipeline

import "strings"

// sequencerKeyLen is the width of a [SequencerKey].
const sequencerKeyLen = 64

// CompareSequencer compares two S3 sequencers of the same key and returns
// -1, 0 or +1. The shorter one is right-padded with '0' to the length of the
// longer, then both are compared as strings, ignoring ASCII case. Sequencers
// of different keys are not comparable.
func CompareSequencer(a, b string) int {
	for i := range max(len(a), len(b)) {
		ca, cb := sequencerByte(a, i), sequencerByte(b, i)
		switch {
		case ca < cb:
			return -1
		case ca > cb:
			return 1
		}
	}
	return 0
}

// sequencerByte returns the upper-cased byte i of s, or '0' past its end.
func sequencerByte(s string, i int) byte {
	if i >= len(s) {
		return '0'
	}
	c := s[i]
	if 'a' <= c && c <= 'z' {
		c -= 'a' - 'A'
	}
	return c
}

// SequencerKey returns the normalized form of a sequencer for storage:
// upper-cased and right-padded with '0' to 64 characters, so that comparing
// two keys byte by byte (COLLATE "C") agrees with [CompareSequencer].
// The empty sequencer gives ("", true); ok is false when s is not 1 to 64
// hexadecimal digits.
func SequencerKey(s string) (key string, ok bool) {
	if s == "" {
		return "", true
	}
	if len(s) > sequencerKeyLen {
		return "", false
	}
	for i := range len(s) {
		if !isHex(s[i]) {
			return "", false
		}
	}
	return strings.ToUpper(s) + strings.Repeat("0", sequencerKeyLen-len(s)), true
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// Newer reports whether event a supersedes event b for the same (bucket,
// key): by sequencer when both have one, else by event time (strictly
// later). Equal events are duplicates, so Newer(a, a) is false.
func Newer(a, b Event) bool {
	if a.Sequencer != "" && b.Sequencer != "" {
		return CompareSequencer(a.Sequencer, b.Sequencer) > 0
	}
	return a.Time.After(b.Time)
}
