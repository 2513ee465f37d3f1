package consumer

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/smithy-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// fakeTimers stands in for time.AfterFunc: it records the waits asked for (the first, then each
// Reset) and the test fires the function itself.
type fakeTimers struct {
	mu    sync.Mutex
	f     func()
	waits []time.Duration
}

func (ft *fakeTimers) afterFunc(d time.Duration, f func()) timer {
	ft.mu.Lock()
	defer ft.mu.Unlock()
	ft.f = f
	ft.waits = append(ft.waits, d)
	return fakeTimer{ft}
}

// fire runs the timer's function, as the timer would when its wait is over.
func (ft *fakeTimers) fire() {
	ft.mu.Lock()
	f := ft.f
	ft.mu.Unlock()
	f()
}

// last is the last wait asked for.
func (ft *fakeTimers) last() time.Duration {
	ft.mu.Lock()
	defer ft.mu.Unlock()
	return ft.waits[len(ft.waits)-1]
}

func (ft *fakeTimers) count() int {
	ft.mu.Lock()
	defer ft.mu.Unlock()
	return len(ft.waits)
}

type fakeTimer struct{ ft *fakeTimers }

func (t fakeTimer) Reset(d time.Duration) bool {
	t.ft.mu.Lock()
	defer t.ft.mu.Unlock()
	t.ft.waits = append(t.ft.waits, d)
	return true
}

func (t fakeTimer) Stop() bool { return true }

// TestHeartbeatRetriesBeforeVisibilityRunsOut: an extension that fails is retried soon, not a
// whole interval later (when the visibility it would have extended has run out and another
// consumer receives the message), for as long as that visibility runs; each call is bounded well
// below the interval; a success goes back to the interval and moves the end of the visibility.
func TestHeartbeatRetriesBeforeVisibilityRunsOut(t *testing.T) {
	t.Parallel()
	client := &fakeSQS{}
	c, logs := newFakeConsumer(t, client, Config{Visibility: 2 * time.Second})
	clock := &fakeClock{t: time.Unix(1000, 0)}
	timers := &fakeTimers{}
	c.now, c.afterFunc = clock.now, timers.afterFunc
	var failing sync.Mutex // held: ChangeMessageVisibility fails
	fail := true
	client.visibility = func(context.Context, *sqs.ChangeMessageVisibilityInput) error {
		failing.Lock()
		defer failing.Unlock()
		if fail {
			return errors.New("connection reset")
		}
		return nil
	}
	setFailing := func(v bool) {
		failing.Lock()
		fail = v
		failing.Unlock()
	}

	// Visibility 2 s: an extension every 1 s; a failed one is retried after 250 ms; each call is
	// bounded by 500 ms.
	d := &delivery{id: "m-1", handle: "h-1", received: clock.t}
	hb := c.startHeartbeat(context.Background(), d)
	require.Equal(t, time.Second, timers.last(), "the first extension after half the visibility")

	clock.add(time.Second)
	timers.fire() // fails; the visibility runs until received + 2 s = 1 s from now
	assert.Equal(t, 250*time.Millisecond, timers.last(), "a failed extension is retried soon, not after a whole interval")
	calls := client.visibilityCalls()
	require.Len(t, calls, 1)
	assert.Equal(t, int32(2), calls[0].seconds)
	assert.Positive(t, calls[0].bound)
	assert.LessOrEqual(t, calls[0].bound, 500*time.Millisecond, "each call is bounded below the interval")
	assert.Contains(t, logs.String(), "heartbeat failed; retrying before the message's visibility runs out")

	clock.add(250 * time.Millisecond)
	timers.fire() // fails again: retried again
	assert.Equal(t, 250*time.Millisecond, timers.last())

	setFailing(false)
	clock.add(250 * time.Millisecond)
	timers.fire() // succeeds at received + 1.5 s: visible until received + 3.5 s
	assert.Equal(t, time.Second, timers.last(), "back to the interval")
	assert.Equal(t, 1.0, counterValue(t, c.m.heartbeats))
	assert.Contains(t, logs.String(), "visibility extended again after failed attempts")

	setFailing(true)
	clock.add(time.Second)
	timers.fire() // fails at received + 2.5 s, 1 s before the extended visibility runs out
	assert.Equal(t, 250*time.Millisecond, timers.last(), "retried soon: the success moved the end of the visibility")

	clock.add(time.Second)
	timers.fire() // fails at received + 3.5 s: the visibility has run out
	assert.Equal(t, time.Second, timers.last(), "after the visibility ran out, back to the interval")
	assert.Contains(t, logs.String(), "the message's visibility has run out")

	setFailing(false)
	clock.add(time.Second)
	timers.fire()
	assert.Equal(t, time.Second, timers.last())
	assert.Equal(t, 2.0, counterValue(t, c.m.heartbeats))

	hb.stop()
	n := timers.count()
	timers.fire() // a timer that fired as it was stopped
	assert.Equal(t, n, timers.count(), "a stopped heartbeat neither calls nor rearms")
	assert.Len(t, client.visibilityCalls(), 6)
}

// TestHeartbeatBoundsAndRetry: the retry wait and the call bound for the usual visibility
// timeouts.
func TestHeartbeatBoundsAndRetry(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		visibility, every, retry, bound time.Duration
	}{
		{time.Second, 500 * time.Millisecond, 125 * time.Millisecond, 250 * time.Millisecond},
		{2 * time.Second, time.Second, 250 * time.Millisecond, 500 * time.Millisecond},
		{60 * time.Second, 30 * time.Second, 2 * time.Second, 10 * time.Second},
		{time.Hour, 30 * time.Minute, 2 * time.Second, 10 * time.Second},
	} {
		c, _ := newFakeConsumer(t, &fakeSQS{}, Config{Visibility: tc.visibility, MessageTimeout: max(tc.visibility, 5*time.Minute)})
		timers := &fakeTimers{}
		c.afterFunc = timers.afterFunc
		hb := c.startHeartbeat(context.Background(), &delivery{received: time.Now()})
		assert.Equal(t, tc.every, hb.every, tc.visibility.String())
		assert.Equal(t, tc.retry, hb.retry, tc.visibility.String())
		assert.Equal(t, tc.bound, hb.bound, tc.visibility.String())
		assert.Less(t, hb.retry+hb.bound, hb.every, "%s: a hanging call leaves time for a retry", tc.visibility)
		hb.stop()
	}
}

// TestHeartbeatStopsWhenHandleGone: an extension SQS refuses for good (the message is not in
// flight under this handle any more, or the handle is invalid) is not retried: retries would fail
// the same way until the message is settled. The log names no receipt handle, though SQS's error
// quotes it.
func TestHeartbeatStopsWhenHandleGone(t *testing.T) {
	t.Parallel()
	for _, code := range []string{"AWS.SimpleQueueService.MessageNotInflight", "MessageNotInflight", "ReceiptHandleIsInvalid"} {
		t.Run(code, func(t *testing.T) {
			t.Parallel()
			const handle = "AQEBsecretHandle+/="
			client := &fakeSQS{}
			client.visibility = func(context.Context, *sqs.ChangeMessageVisibilityInput) error {
				return &smithy.GenericAPIError{Code: code, Fault: smithy.FaultClient,
					Message: `The input receipt handle "` + handle + `" is not a valid receipt handle.`}
			}
			c, logs := newFakeConsumer(t, client, Config{Visibility: 2 * time.Second})
			clock := &fakeClock{t: time.Unix(1000, 0)}
			timers := &fakeTimers{}
			c.now, c.afterFunc = clock.now, timers.afterFunc
			hb := c.startHeartbeat(context.Background(), &delivery{id: "m-1", handle: handle, received: clock.t})
			defer hb.stop()

			clock.add(time.Second)
			timers.fire()
			assert.Equal(t, 1, timers.count(), "not rearmed")
			assert.Len(t, client.visibilityCalls(), 1)
			assert.Contains(t, logs.String(), "the message's visibility can no longer be extended")
			assert.Contains(t, logs.String(), `\"REDACTED\"`)
			assert.NotContains(t, logs.String(), handle)
		})
	}
}

// TestHeartbeatFirstBeatCountsFromReceipt: the message's visibility runs from its receive, not
// from the start of its processing: the first extension comes half the visibility after the
// receive, at once when that is already past (the processing began late).
func TestHeartbeatFirstBeatCountsFromReceipt(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		late  time.Duration // from the receive to the start of the processing
		first time.Duration
	}{
		{"at once", 0, time.Second},
		{"a little late", 300 * time.Millisecond, 700 * time.Millisecond},
		{"past half the visibility", 1500 * time.Millisecond, 0},
		{"past the visibility", 5 * time.Second, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			client := &fakeSQS{}
			c, _ := newFakeConsumer(t, client, Config{Visibility: 2 * time.Second})
			clock := &fakeClock{t: time.Unix(1000, 0)}
			timers := &fakeTimers{}
			c.now, c.afterFunc = clock.now, timers.afterFunc
			d := &delivery{id: "m-1", handle: "h-1", received: clock.t}
			clock.add(tc.late)
			hb := c.startHeartbeat(context.Background(), d)
			defer hb.stop()
			assert.Equal(t, tc.first, timers.last())
			assert.Equal(t, d.received.Add(2*time.Second), hb.visibleUntil, "the visibility runs from the receive")
		})
	}
}
