package webhook_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/intakehq/intake/internal/webhook"
)

// TestDeferralWaitsItsTurn: the tasks of an endpoint that has a backlog are deferred for about
// their turn (the tasks deferred before them over the limit, times how long its tasks held a slot
// lately), up to five minutes and a half more, not a second each: a backlog of a thousand tasks
// behind a receiver that takes 10 s comes back for a slot about as fast as slots free up, not a
// thousand times every second and a half. A task deferred again is counted once; one that runs, or
// is not seen again 10 s after it was due (another worker process may have run it), is no longer
// ahead of the others. Pure logic, a clock of its own.
func TestDeferralWaitsItsTurn(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)
	// busy returns a share of 2 slots per endpoint whose endpoint "slow" had its tasks hold a slot
	// 10 s each, both slots taken now.
	busy := func() *webhook.Share {
		sh := webhook.NewShare(2, 2, 0, 10*time.Second, func() time.Time { return now })
		for i := range 2 {
			release, err := sh.Admit("slow", fmt.Sprintf("run%d", i), false)
			require.NoError(t, err)
			now = now.Add(10 * time.Second)
			release()
		}
		for i := range 2 {
			_, err := sh.Admit("slow", fmt.Sprintf("busy%d", i), false)
			require.NoError(t, err)
		}
		return sh
	}
	s := busy()
	retryIn := func(task string) time.Duration {
		t.Helper()
		_, err := s.Admit("slow", task, false)
		var deferred *webhook.DeferredError
		require.ErrorAs(t, err, &deferred, task)
		return deferred.RetryIn
	}

	first := retryIn("t0")
	require.GreaterOrEqual(t, first, time.Second, "nothing ahead: about a second")
	require.LessOrEqual(t, first, 1500*time.Millisecond)
	for i := 1; i < 100; i++ {
		retryIn(fmt.Sprintf("t%d", i))
	}
	require.Equal(t, 100, s.Waiting("slow"))
	// 100 ahead (itself again counted once), 2 slots of 10 s: 100·10/2 = 500 s, capped at 5 min.
	d := retryIn("t50")
	require.Equal(t, 100, s.Waiting("slow"), "a task deferred again is counted once")
	require.GreaterOrEqual(t, d, 5*time.Minute)
	require.LessOrEqual(t, d, 7*time.Minute+30*time.Second)

	// Ten ahead: 10 + itself over 2 slots, 10 s each: 55 s and up to half as much again.
	s2 := busy()
	for i := range 10 {
		_, err := s2.Admit("slow", fmt.Sprintf("w%d", i), false)
		require.Error(t, err)
	}
	_, err := s2.Admit("slow", "w10", false)
	var deferred *webhook.DeferredError
	require.ErrorAs(t, err, &deferred)
	require.GreaterOrEqual(t, deferred.RetryIn, 55*time.Second)
	require.LessOrEqual(t, deferred.RetryIn, 83*time.Second)

	// Another endpoint's backlog is its own.
	release, err := s.Admit("fast", "f0", false)
	require.NoError(t, err)
	release()

	// A task that comes back and is forced (its last attempt) or runs is no longer waiting.
	release, err = s.Admit("slow", "t7", true)
	require.NoError(t, err)
	release()
	require.Equal(t, 99, s.Waiting("slow"))

	// The others are forgotten soon after they were due: another worker process may have run them
	// (asynq gives a task back to any), and counted as ahead here they would make waits too long.
	s3 := busy()
	var latest time.Duration
	for i := range 10 {
		_, err := s3.Admit("slow", fmt.Sprintf("elsewhere%d", i), false)
		require.ErrorAs(t, err, &deferred)
		latest = max(latest, deferred.RetryIn)
	}
	now = now.Add(latest + 11*time.Second)
	_, err = s3.Admit("slow", "fresh", false)
	require.ErrorAs(t, err, &deferred)
	require.Equal(t, 1, s3.Waiting("slow"), "only the one just deferred")
	require.LessOrEqual(t, deferred.RetryIn, 1500*time.Millisecond, "nothing ahead of it any more")
}

// TestSlowEndpointsLeaveWorkers (a tenant starving the others): two tenants' receivers answer
// late, 5xx after 9.9 s of the 10 s attempt timeout, which no timeout counts, so neither is
// "suspect". What counts is each post's answer time (not a task's, which posts several), and
// only lately. Each may hold half the server's 20 workers; before, together they held all 20, and
// every other endpoint (the default one, which receives every tenant's notifications) waited for
// one of theirs to free a worker. Now the slow endpoints hold at most three quarters together
// (15), a slow endpoint past it is deferred (Slow), and a fast endpoint takes the rest. Pure
// logic, a clock of its own.
func TestSlowEndpointsLeaveWorkers(t *testing.T) {
	t.Parallel()
	const workers = 20
	now := time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)
	sh := webhook.NewShare(workers/2, 3, workers, 10*time.Second, func() time.Time { return now })
	for _, ep := range []string{"tenant-a", "tenant-b"} {
		sh.Observe(ep, webhook.Result5xx, 9900*time.Millisecond) // answered 500, late
	}
	// The default endpoint answers each post in 1.5 s: a batch of 16 takes four of those, but it
	// is not slow.
	sh.Observe("default", webhook.ResultSuccess, 1500*time.Millisecond)

	slow := 0
	for _, ep := range []string{"tenant-a", "tenant-b"} {
		for i := range workers {
			_, err := sh.Admit(ep, fmt.Sprintf("%s-%d", ep, i), false)
			if err == nil {
				slow++
				continue
			}
			var deferred *webhook.DeferredError
			require.ErrorAs(t, err, &deferred)
			if ep == "tenant-b" && i == workers/2-5 {
				require.True(t, deferred.Slow, "below its own limit, deferred for the slow endpoints' share: %v", err)
				require.Contains(t, err.Error(), "slow endpoints hold their share")
			}
		}
	}
	require.Equal(t, workers-workers/4, slow, "slots held at once by the two slow endpoints")

	fast := 0
	for i := range workers {
		if _, err := sh.Admit("default", fmt.Sprintf("default-%d", i), false); err == nil {
			fast++
		}
	}
	require.Equal(t, workers/2, fast, "a fast endpoint is not held back by the slow ones' share: its own limit")

	// A slow endpoint's last attempt runs anyway (its give-up is recorded).
	_, err := sh.Admit("tenant-b", "last", true)
	require.NoError(t, err)

	// A measure not refreshed for two attempt timeouts is forgotten: an endpoint that was slow
	// once, an hour ago, is not held back now (it runs, and is measured again).
	sh.Observe("once-slow", webhook.ResultSuccess, 9*time.Second)
	_, err = sh.Admit("once-slow", "", false)
	require.ErrorIs(t, err, webhook.ErrEndpointBusy, "slow now, and the slow endpoints hold their share")
	now = now.Add(time.Hour)
	for _, ep := range []string{"tenant-a", "tenant-b"} {
		sh.Observe(ep, webhook.Result5xx, 9900*time.Millisecond) // still slow, measured just now
	}
	_, err = sh.Admit("once-slow", "", false)
	require.NoError(t, err, "a stale measure")
}
