package reconcile

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/intakehq/intake/internal/testkit"
)

// liveHeap is the heap in use after a collection.
func liveHeap() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// TestReconcileMemoryFlat: a bucket of 200,000 objects without rows and 100,000 rows without
// objects (an in-process fake of S3API and Rows, which generate their pages) is compared and fixed
// with a live heap that grows by less than a constant, whatever the number of differences: the
// fix is applied as the comparison goes and the report keeps counts and a sample. The heap is
// measured while inspections are enqueued, and after the run with its report still held.
func TestReconcileMemoryFlat(t *testing.T) {
	// Not parallel: the heap is the process's.
	const (
		universe = 300_000
		bound    = 4 << 20 // bytes, for any number of keys (was about 100 bytes a key)
	)
	inBucket := func(i int) bool { return i%3 != 2 }
	s3c := &fakeS3{n: universe, has: inBucket}
	rows := &fakeRows{n: universe, has: func(i int) bool { return !inBucket(i) }}
	base := liveHeap()
	var peak uint64
	enq := &recordEnqueuer{every: func(n int) {
		if n%50_000 == 0 {
			peak = max(peak, liveHeap())
		}
	}}
	rep, err := Run(context.Background(), s3c, rows, Options{Bucket: "b", Fix: true, Enqueuer: enq})
	require.NoError(t, err)
	after := liveHeap()
	runtime.KeepAlive(rep)

	const missing, gone = universe / 3 * 2, universe / 3
	require.Equal(t, missing, rep.Listed)
	require.Equal(t, missing, enq.n, "every missing object's inspection enqueued")
	require.Equal(t, gone, rows.marked, "every gone row marked missing")
	require.Equal(t, gone, rep.Fixed.MarkedMissing)
	require.Equal(t, missing, rep.MissingCount)
	require.Equal(t, gone, rep.GoneCount)
	require.Equal(t, universe, rep.Differences())
	require.Len(t, rep.Missing, SampleSize, "the report keeps a sample")
	require.Len(t, rep.Gone, SampleSize)
	require.Equal(t, fkey(0), rep.Missing[0].Key)
	require.NotZero(t, peak, "measured while enqueuing")
	growth := int64(max(peak, after)) - int64(base)
	t.Logf("live heap: base %d KiB, peak while fixing %d KiB, after %d KiB", base>>10, peak>>10, after>>10)
	require.Less(t, growth, int64(bound), "live heap grew by %d bytes for %d differences", growth, universe)
}

// TestReconcileListFailureKeepsFixes: the listing fails at its third page. The inspections of the
// missing objects of pages 1 and 2 are enqueued, and the gone row the listing passed before the
// cut is marked missing (PostgreSQL), while the rows past the cut are neither reported gone nor
// marked; the run fails.
func TestReconcileListFailureKeepsFixes(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("needs PostgreSQL")
	}
	st := testkit.DB(t)
	b := &bundle{st: st}
	ctx := testkit.Context(t)
	// The bucket: k0..k49 but k5, 10 a page; page 3 fails.
	s3c := &fakeS3{n: 50, has: func(i int) bool { return i != 5 }, failPage: 3, failErr: httpError(http.StatusForbidden, "AccessDenied")}
	b.row(t, "b", fkey(5), "e", "valid")     // gone, passed by page 1
	b.row(t, "b", fkey(40), "e", "valid")    // listed past the cut
	b.row(t, "b", "k99999999", "e", "valid") // after every key: never listed
	enq := &recordEnqueuer{keep: 100}
	rep, err := Run(ctx, s3c, st.Q, Options{Bucket: "b", PageSize: 10, Fix: true, Enqueuer: enq})
	require.ErrorContains(t, err, "AccessDenied")

	var want []string
	for i := range 21 { // page 1: k0..k10 but k5; page 2: k11..k20
		if i != 5 {
			want = append(want, fkey(i))
		}
	}
	require.Equal(t, want, enq.keys, "pages 1 and 2's missing objects are enqueued")
	status := func(key string) string {
		var s string
		require.NoError(t, st.Pool.QueryRow(ctx, `SELECT status FROM objects WHERE bucket = 'b' AND key = $1`, key).Scan(&s))
		return s
	}
	require.Equal(t, "missing", status(fkey(5)), "the listing passed k5: gone, confirmed, marked")
	require.Equal(t, "valid", status(fkey(40)))
	require.Equal(t, "valid", status("k99999999"), "not listed, not gone")
	require.Equal(t, []string{fkey(5)}, s3c.heads, "only the passed row is HEADed")
	require.Equal(t, 1, rep.Fixed.MarkedMissing)
	require.Equal(t, 20, rep.Fixed.Enqueued)
	require.Equal(t, []Gone{{Key: fkey(5), RowStatus: "valid"}}, rep.Gone)
	require.False(t, rep.Complete)
}

// TestReconcileHeadErrors: gone rows g1..g8 (PostgreSQL; the bucket is empty). A HEAD that fails
// for its key alone (403) is counted and skipped, and the other rows are marked; a retryable one
// (503) stops the fix, after the rows confirmed before it are marked.
func TestReconcileHeadErrors(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("needs PostgreSQL")
	}
	for _, tc := range []struct {
		name       string
		head       func(key string) error
		wantErr    string
		wantMarked []string
		wantValid  []string
	}{
		{
			name: "a key refused is skipped",
			head: func(key string) error {
				if key == "g3" {
					return httpError(http.StatusForbidden, "Forbidden")
				}
				return httpError(http.StatusNotFound, "NotFound")
			},
			wantMarked: []string{"g1", "g2", "g4", "g5", "g6", "g7", "g8"},
			wantValid:  []string{"g3"},
		},
		{
			name: "an outage stops after marking the confirmed rows",
			head: func(key string) error {
				switch key {
				case "g3":
					return httpError(http.StatusForbidden, "Forbidden")
				case "g6":
					return httpError(http.StatusServiceUnavailable, "ServiceUnavailable")
				}
				return httpError(http.StatusNotFound, "NotFound")
			},
			wantErr:    `head "g6"`,
			wantMarked: []string{"g1", "g2", "g4", "g5"},
			wantValid:  []string{"g3", "g6", "g7", "g8"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			st := testkit.DB(t)
			b := &bundle{st: st}
			ctx := testkit.Context(t)
			for i := 1; i <= 8; i++ {
				b.row(t, "b", "g"+string(rune('0'+i)), "e", "valid")
			}
			s3c := &fakeS3{head: tc.head}
			rep, err := Run(ctx, s3c, st.Q, Options{Bucket: "b", Fix: true, Enqueuer: &recordEnqueuer{}})
			if tc.wantErr != "" {
				require.ErrorContains(t, err, tc.wantErr)
			} else {
				require.NoError(t, err)
			}
			var marked, valid []string
			r, err := st.Pool.Query(ctx, `SELECT key, status FROM objects WHERE bucket = 'b' ORDER BY key`)
			require.NoError(t, err)
			for r.Next() {
				var k, s string
				require.NoError(t, r.Scan(&k, &s))
				if s == "missing" {
					marked = append(marked, k)
				} else {
					valid = append(valid, k)
				}
			}
			require.NoError(t, r.Err())
			require.Equal(t, tc.wantMarked, marked)
			require.Equal(t, tc.wantValid, valid)
			require.Equal(t, len(tc.wantMarked), rep.Fixed.MarkedMissing)
			require.Equal(t, 1, rep.Fixed.HeadFailed)
			require.Equal(t, "g3", rep.Fixed.HeadErrors[0].Key)
			require.Contains(t, rep.Fixed.HeadErrors[0].Error, "Forbidden")
		})
	}
}

// TestJSONReportListsEveryKey: with more differences than the report keeps, the report has the
// counts and the first SampleSize keys and says so in its text; JSONReport (the CLI's --json)
// lists every key, in key order, in one JSON document.
func TestJSONReportListsEveryKey(t *testing.T) {
	t.Parallel()
	const n = SampleSize + 500
	// k0..k1499 in the bucket; rows that agree for the even ones (the odd ones are missing), and
	// rows k1500..k2999 without objects (gone).
	s3c := &fakeS3{n: n}
	rows := &fakeRows{n: 2 * n, has: func(i int) bool { return i%2 == 0 || i >= n }}
	jr := NewJSONReport()
	defer func() { require.NoError(t, jr.Close()) }()
	rep, err := Run(context.Background(), s3c, rows, Options{Bucket: "b", Sink: jr, PageSize: 100})
	require.NoError(t, err)
	require.True(t, rep.Complete)
	require.Equal(t, n/2, rep.MissingCount)
	require.Equal(t, n, rep.GoneCount)
	require.Equal(t, n/2, rep.InSync)
	var out bytes.Buffer
	require.NoError(t, jr.Write(&out, rep))
	var doc struct {
		Missing      []Missing `json:"missing"`
		Stale        []Stale   `json:"stale"`
		Gone         []Gone    `json:"gone"`
		MissingCount int       `json:"missing_count"`
		GoneCount    int       `json:"gone_count"`
		Listed       int       `json:"listed"`
		Complete     bool      `json:"complete"`
	}
	require.NoError(t, json.Unmarshal(out.Bytes(), &doc), out.String()[:min(out.Len(), 300)])
	require.Len(t, doc.Missing, n/2)
	require.Equal(t, n/2, doc.MissingCount)
	require.Equal(t, fkey(1), doc.Missing[0].Key)
	require.Len(t, doc.Gone, n)
	require.Equal(t, n, doc.GoneCount)
	require.Equal(t, n, doc.Listed)
	require.True(t, doc.Complete)
	require.NotNil(t, doc.Stale)
	require.True(t, slices.IsSortedFunc(doc.Gone, func(a, b Gone) int { return strings.Compare(a.Key, b.Key) }))
	require.Equal(t, fkey(2*n-1), doc.Gone[n-1].Key)
	require.Len(t, rep.Gone, SampleSize, "the report itself keeps a sample")

	var text bytes.Buffer
	require.NoError(t, rep.WriteText(&text))
	require.Contains(t, text.String(), "gone objects (row says present, no object) (first 100 of 1500):")
	require.Contains(t, text.String(), "… and 1400 more (--json lists them all)")
}
