package jobs

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestInspectionOwner: the owner is the segment before the upload id in the keys intake
// generates, {prefix}/{owner}/{id}/{name}, whatever the prefix (one configured before included);
// anything else is owner "".
func TestInspectionOwner(t *testing.T) {
	t.Parallel()
	const id = "0b7e6c2e-5f1d-4c57-9d0e-2f3b6f0e9a11"
	for _, tc := range []struct{ key, owner string }{
		{"uploads/alice/" + id + "/f.bin", "alice"},
		{"tenants/prod/bob/" + id + "/f.bin", "bob"},
		{"old-prefix/carol/" + id + "/f.bin", "carol"},               // named under an earlier INTAKE_API_KEY_PREFIX
		{"uploads/" + id + "/" + id + "/f.bin", id},                  // an owner that looks like an id (a JWT subject)
		{"dave/" + id + "/f.bin", "dave"},                            // no prefix
		{"uploads//" + id + "/f.bin", ""},                            // empty owner
		{"uploads/alice/" + id, ""},                                  // no name after the id
		{"uploads/alice/not-an-id/f.bin", ""},                        // an object intake did not name
		{"uploads/alice/0b7e6c2e5f1d4c579d0e2f3b6f0e9a11/f.bin", ""}, // not the canonical form
		{"uploads/alice/{" + id + "}/f.bin", ""},
		{id + "/f.bin", ""},
		{"alice.bin", ""},
		{"", ""},
	} {
		require.Equal(t, tc.owner, InspectionOwner(tc.key), "%q", tc.key)
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
	require.Nil(t, err, "another owner has its own share (its first run: the reserve does not hold it)")
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

// TestInspectShareReserve: an owner running one inspection gets another only while the reserve
// (max(1, Concurrency/4)) stays free; an owner running none is admitted whatever the others run:
// two busy owners cannot take every worker from a third.
func TestInspectShareReserve(t *testing.T) {
	t.Parallel()
	s := newInspectShare(10, time.Now) // 5 per owner, a reserve of 2
	var releases []func()
	admit := func(owner string) bool {
		r, derr := s.admit(owner, "", false)
		if derr == nil {
			releases = append(releases, r)
		}
		return derr == nil
	}
	for range 5 {
		require.True(t, admit("a"))
	}
	require.False(t, admit("a"), "a has its share")
	for range 3 {
		require.True(t, admit("b"))
	}
	require.False(t, admit("b"), "8 of 10 run: b's fourth would take the reserve")
	require.True(t, admit("c"), "c runs none: its first is admitted")
	require.True(t, admit(""), "nor does the sweep's or reconcile's group")
	require.False(t, admit("c"), "c's second would take the reserve")
	releases[0]() // one of a's ends: 9 run
	require.False(t, admit("b"))
	releases[1]() // 8 run: the reserve is still taken
	require.False(t, admit("b"))
	releases[2]() // 7 run
	require.True(t, admit("b"))
	for _, r := range releases {
		r()
	}
	require.Empty(t, s.owners)
	require.Zero(t, s.running)

	one := newInspectShare(1, time.Now) // one worker: one run per owner, in turn
	r, derr := one.admit("a", "", false)
	require.Nil(t, derr)
	_, derr = one.admit("a", "", false)
	require.NotNil(t, derr)
	r()
}

// TestInspectShareDelays: a deferred task waits about a second plus jitter while few of its
// owner's tasks are deferred, longer as more of them are (its turn behind them, limit at a time,
// each taking the recent run time), never more than an hour and a half, jitter included; a task
// back is no longer counted ahead; the tasks deferred long ago and never back are forgotten; an
// owner left with nothing is dropped.
func TestInspectShareDelays(t *testing.T) {
	t.Parallel()
	sec := time.Second
	require.Equal(t, sec, inspectDeferBase(0, 5, sec))
	require.Equal(t, sec, inspectDeferBase(4, 5, sec))
	require.Equal(t, 2*sec, inspectDeferBase(9, 5, sec))
	require.Equal(t, 20*sec, inspectDeferBase(99, 5, sec))
	require.Equal(t, 200*sec, inspectDeferBase(99, 5, 10*sec), "runs of 10 s: ten times as long")
	require.Equal(t, sec, inspectDeferBase(99, 5, time.Millisecond), "at least a second")
	// A review's case: 100,000 deferred behind runs of a second, 5 at a time, come back once an hour
	// (some 30 a second), not every minute (2,000 a second).
	require.Equal(t, time.Hour, inspectDeferBase(100_000, 5, sec))
	require.Equal(t, time.Hour, inspectDeferBase(1_000_000, 1, time.Hour), "capped")
	require.Equal(t, 2*sec, inspectDeferBase(1, 0, sec), "a limit of 0 counts as 1")

	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	s := newInspectShare(2, func() time.Time { return now }) // limit 1
	release, err := s.admit("a", "running", false)
	require.Nil(t, err)
	var last time.Duration
	for i := range 10_000 {
		_, derr := s.admit("a", fmt.Sprint("t", i), false)
		require.NotNil(t, derr)
		base := inspectDeferBase(i, 1, sec)
		require.GreaterOrEqual(t, derr.RetryIn, base, "task %d", i)
		require.LessOrEqual(t, derr.RetryIn, base+base/2, "task %d", i)
		last = derr.RetryIn
	}
	require.GreaterOrEqual(t, last, time.Hour)
	require.Len(t, s.owners["a"].waiting, 10_000)

	// A task back is not ahead of itself; one without an ID is not counted.
	_, derr := s.admit("a", "t0", false)
	require.NotNil(t, derr)
	require.Len(t, s.owners["a"].waiting, 10_000)
	_, derr = s.admit("a", "", false)
	require.NotNil(t, derr)
	require.Len(t, s.owners["a"].waiting, 10_000)

	// Long after they were due, the tasks not back are forgotten: the next waits about a second.
	now = now.Add(inspectDeferMax*3/2 + inspectForgetAfter + time.Second)
	_, derr = s.admit("a", "late", false)
	require.NotNil(t, derr)
	require.LessOrEqual(t, derr.RetryIn, inspectDeferMin*3/2)
	require.Len(t, s.owners["a"].waiting, 1)

	// The run time is learnt from the runs: "running" took as long as the clock moved.
	took := now.Sub(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC))
	release()
	require.Equal(t, sec+(took-sec)/5, s.runTime, "a fifth of the way to the last run's time")
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
	now = now.Add(inspectDeferMax*3/2 + inspectForgetAfter + time.Second)
	relC, err := s.admit("c", "z", false)
	require.Nil(t, err)
	require.NotContains(t, s.owners, "b", "y was forgotten")
	relC()
	require.Empty(t, s.owners)
}
