package jobs

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestInspectionOwner: the owner is the segment after the key prefix in the keys intake generates;
// anything else is owner "".
func TestInspectionOwner(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ prefix, key, owner string }{
		{"uploads", "uploads/alice/0b7e6c2e-5f1d-4c57-9d0e-2f3b6f0e9a11/f.bin", "alice"},
		{"uploads/", "uploads/alice/id/f.bin", "alice"},
		{"tenants/prod", "tenants/prod/bob/id/dir/f.bin", "bob"},
		{"uploads", "uploads/alice/", "alice"},
		{"uploads", "uploads/alice", ""},     // no segment after the owner's
		{"uploads", "uploads//id/f.bin", ""}, // empty owner
		{"uploads", "uploadsx/alice/id/f", ""},
		{"uploads", "other/alice/id/f", ""},
		{"uploads", "alice.bin", ""},
		{"tenants/prod", "tenants/alice/id/f", ""},
		{"", "alice/id/f", "alice"},
	} {
		require.Equal(t, tc.owner, InspectionOwner(tc.prefix, tc.key), "%q in %q", tc.key, tc.prefix)
	}
}

// TestInspectShareLimits: an owner runs at most max(1, Concurrency/2) inspections at once; another
// owner is not held by it; a run with no retry left (force) runs over the share; a slot given back
// admits the next; no share without a worker count.
func TestInspectShareLimits(t *testing.T) {
	t.Parallel()
	require.Nil(t, newInspectShare(0, time.Now))
	for conc, limit := range map[int]int{1: 1, 2: 1, 3: 1, 4: 2, 10: 5, 11: 5} {
		require.Equal(t, limit, inspectLimit(conc), "concurrency %d", conc)
	}
	s := newInspectShare(4, time.Now)
	r1, err := s.admit("a", "t1", false)
	require.Nil(t, err)
	r2, err := s.admit("a", "t2", false)
	require.Nil(t, err)
	_, derr := s.admit("a", "t3", false)
	require.NotNil(t, derr)
	require.Equal(t, InspectDeferredError{Owner: "a", Running: 2, Limit: 2, RetryIn: derr.RetryIn}, *derr)
	require.True(t, derr.Deferred())
	require.Contains(t, derr.Error(), `owner "a"`)

	rb, err := s.admit("b", "t4", false)
	require.Nil(t, err, "another owner has its own share")
	forced, err := s.admit("a", "t5", true)
	require.Nil(t, err, "a run with no retry left runs over the share")
	_, derr = s.admit("a", "t3", false)
	require.NotNil(t, derr)
	require.Equal(t, 3, derr.Running)

	forced()
	r1()
	r1() // a second call does nothing
	r6, derr := s.admit("a", "t6", false)
	require.Nil(t, derr, "one slot was free")
	_, derr = s.admit("a", "t3", false)
	require.NotNil(t, derr, "r2 and r6 hold the share")
	r2()
	r3, derr := s.admit("a", "t3", false)
	require.Nil(t, derr)
	require.Empty(t, s.owners["a"].waiting, "t3 is back and runs")
	r3()
	r6()
	rb()
	require.Empty(t, s.owners)

	var nilShare *inspectShare
	release, derr := nilShare.admit("a", "t", false)
	require.Nil(t, derr)
	release()
}

// TestInspectShareDelays: a deferred task waits about a second plus jitter while few of its
// owner's tasks are deferred, longer as more of them are (its turn behind them, limit at a time),
// never more than a minute, jitter included; a task back is no longer counted ahead; the tasks
// deferred long ago and never back are forgotten; an owner left with nothing is dropped.
func TestInspectShareDelays(t *testing.T) {
	t.Parallel()
	require.Equal(t, time.Second, inspectDeferBase(0, 5))
	require.Equal(t, time.Second, inspectDeferBase(4, 5))
	require.Equal(t, 2*time.Second, inspectDeferBase(9, 5))
	require.Equal(t, 20*time.Second, inspectDeferBase(99, 5))
	require.Equal(t, 40*time.Second, inspectDeferBase(10_000, 5), "capped (two thirds of a minute, before jitter)")
	require.Equal(t, 40*time.Second, inspectDeferBase(1_000_000, 1))
	require.Equal(t, 2*time.Second, inspectDeferBase(1, 0), "a limit of 0 counts as 1")

	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	s := newInspectShare(2, func() time.Time { return now }) // limit 1
	release, err := s.admit("a", "running", false)
	require.Nil(t, err)
	var last time.Duration
	for i := range 10_000 {
		_, derr := s.admit("a", fmt.Sprint("t", i), false)
		require.NotNil(t, derr)
		base := inspectDeferBase(i, 1)
		require.GreaterOrEqual(t, derr.RetryIn, base, "task %d", i)
		require.LessOrEqual(t, derr.RetryIn, base+base/2, "task %d", i)
		require.LessOrEqual(t, derr.RetryIn, inspectDeferMax, "task %d", i)
		last = derr.RetryIn
	}
	require.GreaterOrEqual(t, last, 40*time.Second)
	require.Len(t, s.owners["a"].waiting, 10_000)

	// A task back is not ahead of itself; one without an ID is not counted.
	_, derr := s.admit("a", "t0", false)
	require.NotNil(t, derr)
	require.Len(t, s.owners["a"].waiting, 10_000)
	_, derr = s.admit("a", "", false)
	require.NotNil(t, derr)
	require.Len(t, s.owners["a"].waiting, 10_000)

	// Long after they were due, the tasks not back are forgotten: the next waits about a second.
	now = now.Add(inspectDeferMax + inspectForgetAfter + time.Second)
	_, derr = s.admit("a", "late", false)
	require.NotNil(t, derr)
	require.LessOrEqual(t, derr.RetryIn, inspectDeferMin*3/2)
	require.Len(t, s.owners["a"].waiting, 1)

	// An owner with nothing running nor deferred is dropped: when its last run ends, or when its
	// deferred tasks are forgotten.
	release()
	relA, err := s.admit("a", "late", false)
	require.Nil(t, err)
	require.Empty(t, s.owners["a"].waiting)
	relA()
	require.NotContains(t, s.owners, "a")
	relB, err := s.admit("b", "x", false)
	require.Nil(t, err)
	_, derr = s.admit("b", "y", false)
	require.NotNil(t, derr)
	relB()
	require.Contains(t, s.owners, "b", "y is deferred")
	now = now.Add(inspectDeferMax + inspectForgetAfter + time.Second)
	relC, err := s.admit("c", "z", false)
	require.Nil(t, err)
	require.NotContains(t, s.owners, "b", "y was forgotten")
	relC()
	require.Empty(t, s.owners)
}
