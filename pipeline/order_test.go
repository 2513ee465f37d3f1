package pipeline_test

import (
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/intakehq/intake/pipeline"
)

func TestCompareSequencer(t *testing.T) {
	t.Parallel()
	tests := []struct {
		a, b string
		want int
	}{
		{"", "", 0},
		{"A", "A", 0},
		{"a", "A", 0},
		{"18eb24a6cd806525", "18EB24A6CD806525", 0},
		{"1", "10", 0},
		{"1", "1000", 0},
		{"", "000", 0},
		{"1", "11", -1},
		{"", "1", -1},
		{"0055AED6DCD90281E5", "0055AED6DCD90281E6", -1},
		{"0055AED6DCD90281E5", "0055AED6DCD90281", 1},
		{"FF", "100", 1}, // not numeric: "FF0" > "100"
		{"9", "A", -1},
		{"9", "a", -1},
		{"18EB24A6CD806525", "18eb24a6ce2945f7", -1},
		{"617f08299329d189", "617F08299329D18900", 0},
	}
	for _, tt := range tests {
		t.Run(tt.a+"_"+tt.b, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tt.want, pipeline.CompareSequencer(tt.a, tt.b))
			require.Equal(t, -tt.want, pipeline.CompareSequencer(tt.b, tt.a))
		})
	}
}

func TestSequencerKey(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in, want string
		ok       bool
	}{
		{"", "", true},
		{"abc", "ABC" + strings.Repeat("0", 61), true},
		{"0055AED6DCD90281E5", "0055AED6DCD90281E5" + strings.Repeat("0", 46), true},
		{strings.Repeat("f", 64), strings.Repeat("F", 64), true},
		{strings.Repeat("f", 65), "", false},
		{"xyz", "", false},
		{"12 3", "", false},
		{"-1", "", false},
		{"0x1F", "", false},
		{"é", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			t.Parallel()
			got, ok := pipeline.SequencerKey(tt.in)
			require.Equal(t, tt.ok, ok)
			require.Equal(t, tt.want, got)
		})
	}
}

// randomSequencer returns 1..64 hex digits of mixed case.
func randomSequencer(r *rand.Rand) string {
	const digits = "0123456789abcdefABCDEF"
	b := make([]byte, 1+r.IntN(64))
	for i := range b {
		b[i] = digits[r.IntN(len(digits))]
	}
	return string(b)
}

// related derives a sequencer from s that often compares equal or close:
// padded with zeros, truncated, re-cased or with one digit changed.
func related(r *rand.Rand, s string) string {
	switch r.IntN(5) {
	case 0:
		return s + strings.Repeat("0", r.IntN(64-len(s)+1))
	case 1:
		return s[:1+r.IntN(len(s))]
	case 2:
		return strings.ToLower(s)
	case 3:
		b := []byte(s)
		b[r.IntN(len(b))] = "0123456789ABCDEF"[r.IntN(16)]
		return string(b)
	}
	return randomSequencer(r)
}

func TestSequencerKeyOrderMatchesCompare(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(1, 2))
	for range 20000 {
		a := randomSequencer(r)
		b := related(r, a)
		if r.IntN(2) == 0 {
			a, b = b, a
		}
		ka, ok := pipeline.SequencerKey(a)
		require.True(t, ok, a)
		kb, ok := pipeline.SequencerKey(b)
		require.True(t, ok, b)
		require.Len(t, ka, 64)
		require.Equal(t, pipeline.CompareSequencer(a, b), strings.Compare(ka, kb), "a=%s b=%s", a, b)
	}
}

func TestNewer(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, time.November, 25, 1, 0, 0, 0, time.UTC)
	t1 := t0.Add(time.Millisecond)
	ev := func(seq string, at time.Time) pipeline.Event {
		return pipeline.Event{Bucket: "b", Key: "k", Sequencer: seq, Time: at}
	}
	tests := []struct {
		name string
		a, b pipeline.Event
		want bool
	}{
		{"higher sequencer", ev("0B", t0), ev("0A", t0), true},
		{"lower sequencer", ev("0A", t0), ev("0B", t0), false},
		{"sequencer wins over time", ev("0A", t1), ev("0B", t0), false},
		{"equal sequencer, later time", ev("0a", t1), ev("0A", t0), false},
		{"sequencers of different lengths", ev("0055AED6DCD90281E6", t0), ev("0055AED6DCD90281E5", t0), true},
		{"padding makes them equal", ev("0A00", t1), ev("0A", t0), false},
		{"no sequencers, later time", ev("", t1), ev("", t0), true},
		{"no sequencers, earlier time", ev("", t0), ev("", t1), false},
		{"no sequencers, same time", ev("", t0), ev("", t0), false},
		{"one sequencer, later time", ev("0A", t1), ev("", t0), true},
		{"other sequencer, later time", ev("", t1), ev("0A", t0), true},
		{"one sequencer, earlier time", ev("0B", t0), ev("", t1), false},
		{"nothing to compare", ev("", time.Time{}), ev("", time.Time{}), false},
		{"time against no time", ev("", t0), ev("", time.Time{}), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tt.want, pipeline.Newer(tt.a, tt.b))
			require.False(t, pipeline.Newer(tt.a, tt.a), "an event is not newer than itself")
		})
	}
}

func TestNewerFixtures(t *testing.T) {
	t.Parallel()
	copied := decodeFixture(t, "minio/007-s3_ObjectCreated_Copy.json")
	deleted := decodeFixture(t, "minio/008-s3_ObjectRemoved_Delete.json")
	tagged := decodeFixture(t, "minio/009-s3_ObjectCreated_PutTagging.json")

	// MinIO's tagging event reuses the sequencer of the version it tags.
	require.False(t, pipeline.Newer(tagged, copied))
	require.False(t, pipeline.Newer(copied, tagged))
	require.True(t, pipeline.Newer(deleted, copied))
	require.True(t, pipeline.Newer(deleted, tagged))
	require.False(t, pipeline.Newer(copied, deleted))

	put := decodeFixture(t, "minio/012-s3_ObjectCreated_Put.json")
	removed := decodeFixture(t, "minio/013-s3_ObjectRemoved_Delete.json")
	require.True(t, pipeline.Newer(removed, put))
	require.False(t, pipeline.Newer(put, removed))

	// kumo has no sequencers and one-second times: two different PUTs of the
	// same key cannot be ordered, neither supersedes the other.
	first := decodeFixture(t, "kumo/002.json")
	second := decodeFixture(t, "kumo/003.json")
	require.NotEqual(t, first.ETag, second.ETag)
	require.False(t, pipeline.Newer(first, second))
	require.False(t, pipeline.Newer(second, first))
}
