package multipart_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/intakehq/intake/internal/multipart"
)

func TestCheckPartNumbers(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		nums    []int32
		max     int
		wantErr string
	}{
		{[]int32{1, 2, 3}, 1000, ""},
		{[]int32{10000}, 1000, ""},
		{nil, 1000, "list 1 to 1000 part numbers (got 0)"},
		{[]int32{1, 2}, 1, "list 1 to 1 part numbers (got 2)"},
		{[]int32{0}, 1000, "part number 0 is not in 1..10000"},
		{[]int32{10001}, 1000, "part number 10001 is not in 1..10000"},
		{[]int32{-1}, 1000, "part number -1 is not in 1..10000"},
		{[]int32{3, 1, 3}, 1000, "part number 3 appears twice"},
	} {
		err := multipart.CheckPartNumbers(tc.nums, tc.max)
		if tc.wantErr == "" {
			require.NoError(t, err, "%v", tc.nums)
			continue
		}
		var pe *multipart.PartsError
		require.ErrorAs(t, err, &pe, "%v", tc.nums)
		require.Equal(t, tc.wantErr, pe.Detail)
	}
}

func TestPlan(t *testing.T) {
	t.Parallel()
	const mib = 1 << 20
	for _, tc := range []struct {
		name           string
		size, partSize int64
		wantErr        string
		parts          int32
		lengths        map[int32]int64 // part number → signed length (-1: unsigned)
	}{
		{name: "no part size: 5 MiB parts bound the count", size: 12 * mib, parts: 3, lengths: map[int32]int64{1: -1, 3: -1}},
		{name: "one byte", size: 1, parts: 1},
		{name: "empty", size: 0, parts: 1},
		{name: "huge, capped at 10,000 parts", size: 5 << 40, parts: 10000},
		{name: "declared part size", size: 12 * mib, partSize: 5 * mib, parts: 3, lengths: map[int32]int64{1: 5 * mib, 2: 5 * mib, 3: 2 * mib}},
		{name: "exact multiple", size: 10 * mib, partSize: 5 * mib, parts: 2, lengths: map[int32]int64{2: 5 * mib}},
		{name: "one small part", size: 100, partSize: 1000, parts: 1, lengths: map[int32]int64{1: 100}},
		{name: "part below S3's minimum", size: 12 * mib, partSize: mib, wantErr: "below S3's minimum"},
		{name: "too many parts", size: 5 << 40, partSize: 5 * mib, wantErr: "more than 10000 parts"},
		{name: "part above S3's maximum", size: 6 << 30, partSize: 6 << 30, wantErr: "not in"},
		{name: "negative size", size: -1, wantErr: "not in"},
	} {
		p, err := multipart.NewPlan(tc.size, tc.partSize)
		if tc.wantErr != "" {
			require.ErrorContains(t, err, tc.wantErr, tc.name)
			continue
		}
		require.NoError(t, err, tc.name)
		require.Equal(t, tc.parts, p.Parts(), tc.name)
		for n, want := range tc.lengths {
			require.Equal(t, want, p.PartLength(n), "%s: part %d", tc.name, n)
		}
		require.NoError(t, p.CheckPartNumbers([]int32{tc.parts}, 1000), tc.name)
		if tc.parts < 10000 {
			err := p.CheckPartNumbers([]int32{1, tc.parts + 1}, 1000)
			var pe *multipart.PartsError
			require.ErrorAs(t, err, &pe, tc.name)
			require.Contains(t, pe.Detail, "beyond the")
		}
	}
}

// TestObjectETag: the ETag S3 gives a completed multipart object, from its parts' ETags in
// part-number order whatever the list's order; nothing when a part's ETag is not an MD5 or the
// list is not a valid complete request.
func TestObjectETag(t *testing.T) {
	t.Parallel()
	hello, world := `"5d41402abc4b2a76b9719d911017c592"`, "7d793037a0760186574b0282f2f435e7" // md5 of "hello", "world"
	got, ok := multipart.ObjectETag([]multipart.CompletedPart{{Number: 2, ETag: world}, {Number: 1, ETag: hello}})
	require.True(t, ok)
	require.Equal(t, "065947336a2f2a95ba8899f3675c3be6-2", got)
	swapped, _ := multipart.ObjectETag([]multipart.CompletedPart{{Number: 1, ETag: world}, {Number: 2, ETag: hello}})
	require.NotEqual(t, got, swapped, "the parts' order is by number")
	for name, parts := range map[string][]multipart.CompletedPart{
		"not an md5": {{Number: 1, ETag: "abc"}},
		"not hex":    {{Number: 1, ETag: "zz41402abc4b2a76b9719d911017c592"}},
		"duplicate":  {{Number: 1, ETag: hello}, {Number: 1, ETag: hello}},
		"no parts":   {},
		"part zero":  {{Number: 0, ETag: hello}},
		"empty etag": {{Number: 1, ETag: ""}},
	} {
		_, ok := multipart.ObjectETag(parts)
		require.False(t, ok, name)
	}
}
