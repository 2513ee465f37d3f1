package sigv4

import (
	"testing"
	"time"
)

// TestAppendAmzDate: appendAmzDate writes what AppendFormat writes with X-Amz-Date's layout, for
// every field's edges, times in other zones (written in UTC), and years it leaves to AppendFormat;
// amzDay is the layout's "20060102".
func TestAppendAmzDate(t *testing.T) {
	east := time.FixedZone("east", 14*3600)
	for _, at := range []time.Time{
		time.Date(2026, 12, 3, 14, 5, 9, 0, time.UTC),
		time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(2026, 12, 31, 23, 59, 59, 999999999, time.UTC),
		time.Date(2024, 2, 29, 12, 30, 45, 0, time.UTC),
		time.Date(2026, 12, 3, 9, 0, 0, 0, east), // the day before in UTC
		time.Date(0, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC),
		time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(-1, 6, 15, 1, 2, 3, 0, time.UTC),
		{},
	} {
		checkAmzDate(t, at)
	}
}

// FuzzAppendAmzDate holds appendAmzDate to AppendFormat over any instant.
func FuzzAppendAmzDate(f *testing.F) {
	f.Add(time.Date(2026, 12, 3, 14, 5, 9, 0, time.UTC).Unix(), int64(0))
	f.Add(int64(-62135596800), int64(1))   // year 1
	f.Add(int64(253402300799), int64(999)) // the last second of 9999
	f.Add(int64(253402300800), int64(0))   // year 10000
	f.Fuzz(func(t *testing.T, sec, nsec int64) { checkAmzDate(t, time.Unix(sec, nsec)) })
}

func checkAmzDate(t *testing.T, at time.Time) {
	t.Helper()
	want := at.UTC().Format("20060102T150405Z")
	got := appendAmzDate([]byte("prefix:"), at)
	if string(got) != "prefix:"+want {
		t.Fatalf("appendAmzDate(%v) = %q, want %q", at, got, "prefix:"+want)
	}
	if day, wantDay := amzDay(got[len("prefix:"):]), at.UTC().Format("20060102"); string(day) != wantDay {
		t.Fatalf("amzDay(%q) = %q, want %q", got, day, wantDay)
	}
}
