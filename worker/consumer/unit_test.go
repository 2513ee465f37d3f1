package consumer

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"maps"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/intakehq/intake/internal/queue"
	"github.com/intakehq/intake/pipeline"
)

func TestRetryDelay(t *testing.T) {
	t.Parallel()
	lowest := func(int64) int64 { return 0 }
	highest := func(n int64) int64 { return n - 1 }
	tests := []struct {
		name     string
		receives int
		base     time.Duration
		max      time.Duration
		rnd      func(int64) int64
		want     time.Duration
	}{
		{"first receive, lowest jitter", 1, 2 * time.Second, 15 * time.Minute, lowest, time.Second},
		{"first receive, highest jitter", 1, 2 * time.Second, 15 * time.Minute, highest, 2 * time.Second},
		{"doubles per receive", 4, 2 * time.Second, 15 * time.Minute, highest, 16 * time.Second},
		{"half of it at least", 4, 2 * time.Second, 15 * time.Minute, lowest, 8 * time.Second},
		{"capped", 30, 2 * time.Second, 15 * time.Minute, highest, 15 * time.Minute},
		{"capped, lowest jitter", 30, 2 * time.Second, 15 * time.Minute, lowest, 450 * time.Second},
		{"huge receive count does not overflow", 1 << 30, 2 * time.Second, time.Hour, highest, time.Hour},
		{"unknown receive count is the first", 0, 2 * time.Second, time.Hour, highest, 2 * time.Second},
		{"at least a second", 1, 100 * time.Millisecond, time.Hour, lowest, time.Second},
		{"zero base", 3, 0, time.Hour, lowest, time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			assert.Equal(t, tt.want, retryDelay(tt.receives, tt.base, tt.max, tt.rnd))
		})
	}
}

func TestVisibilitySeconds(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   time.Duration
		want int32
	}{
		{0, 0}, {-time.Second, 0}, {time.Millisecond, 1}, {time.Second, 1}, {1500 * time.Millisecond, 2},
		{15 * time.Minute, 900}, {13 * time.Hour, 43200},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, visibilitySeconds(tt.in), tt.in.String())
	}
}

func TestDLQAttributes(t *testing.T) {
	t.Parallel()
	str := func(s string) types.MessageAttributeValue {
		return types.MessageAttributeValue{DataType: aws.String("String"), StringValue: aws.String(s)}
	}
	d := &delivery{id: "m-1", receives: 3, msg: types.Message{MessageAttributes: map[string]types.MessageAttributeValue{
		"a": str("1"), queue.AttrDLQReason: str("spoofed"),
	}}}
	attrs := dlqAttributes(d, strings.Repeat("x", 5000), maxReasonLen, true)
	assert.Len(t, aws.ToString(attrs[queue.AttrDLQReason].StringValue), maxReasonLen, "the reason is ours and truncated")
	assert.Equal(t, "m-1", aws.ToString(attrs[queue.AttrSourceMessageID].StringValue))
	assert.Equal(t, "3", aws.ToString(attrs[queue.AttrReceiveCount].StringValue))
	assert.Equal(t, "1", aws.ToString(attrs["a"].StringValue))

	many := map[string]types.MessageAttributeValue{}
	for i := range 10 {
		many[string(rune('a'+i))] = str("v")
	}
	d.msg.MessageAttributes = many
	attrs = dlqAttributes(d, "r", maxReasonLen, true)
	assert.Len(t, attrs, maxAttributes, "SQS allows ten attributes")
	assert.Equal(t, "r", aws.ToString(attrs[queue.AttrDLQReason].StringValue))
}

// TestDLQAttributesFewer: the second attempt, after the DLQ refused the message as too large,
// carries intake's three attributes alone with a short reason.
func TestDLQAttributesFewer(t *testing.T) {
	t.Parallel()
	d := &delivery{id: "m-1", receives: 2, msg: types.Message{MessageAttributes: map[string]types.MessageAttributeValue{
		"big": {DataType: aws.String("String"), StringValue: aws.String(strings.Repeat("b", 900))},
	}}}
	attrs := dlqAttributes(d, strings.Repeat("x", 5000), minReasonLen, false)
	assert.Len(t, attrs, 3)
	assert.Len(t, aws.ToString(attrs[queue.AttrDLQReason].StringValue), minReasonLen)
	assert.NotContains(t, attrs, "big")
}

// TestSQSText: what SQS refuses in a message's text (control characters, invalid UTF-8, a
// character cut in two) never reaches a DLQ attribute.
func TestSQSText(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		in   string
		n    int
		want string
	}{
		{"plain", 10, "plain"},
		{"tab\tnl\ncr\r", 20, "tab\tnl\ncr\r"},
		{"key a\x00b\x1fc", 20, "key a\ufffdb\ufffdc"},
		{"bad \xff utf8", 20, "bad \ufffd utf8"},
		{"\ufffe\uffff", 20, "\ufffd\ufffd"},
		{"éé", 3, "é"}, // the second é (2 bytes) does not fit in 3: not cut in two
		{"a😀", 4, "a"}, // nor a 4-byte character
		{"😀😀", 8, "😀😀"},
		{strings.Repeat("x", 300), 256, strings.Repeat("x", 256)},
	} {
		got := sqsText(c.in, c.n)
		assert.Equal(t, c.want, got, "%q", c.in)
		assert.True(t, utf8.ValidString(got))
		assert.LessOrEqual(t, len(got), c.n)
	}
}

type reasoned struct{ error }

func (reasoned) DeadLetterReason() string { return "malformed" }

func TestReasonLabel(t *testing.T) {
	t.Parallel()
	assert.Equal(t, "permanent", reasonLabel(assert.AnError))
	assert.Equal(t, "malformed", reasonLabel(reasoned{assert.AnError}))
}

// fakeClock drives the gate's notion of now.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time      { return c.t }
func (c *fakeClock) add(d time.Duration) { c.t = c.t.Add(d) }

// fakeDeps are dependency checks whose results the test sets, counting their calls.
type fakeDeps struct {
	mu    sync.Mutex
	fail  map[string]bool
	calls map[string]int
}

func (f *fakeDeps) set(name string, failing bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fail[name] = failing
}

func (f *fakeDeps) called() map[string]int {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := maps.Clone(f.calls)
	clear(f.calls)
	return out
}

func (f *fakeDeps) dep(name string) Dependency {
	return Dependency{Name: name, Check: func(context.Context) error {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.calls[name]++
		if f.fail[name] {
			return errors.New(name + " down")
		}
		return nil
	}}
}

type gateBundle struct {
	g     *gate
	clock *fakeClock
	deps  *fakeDeps
	gauge *prometheus.GaugeVec
	logs  *bytes.Buffer
}

func newTestGate(t *testing.T) *gateBundle {
	t.Helper()
	b := &gateBundle{
		clock: &fakeClock{t: time.Unix(1000, 0)},
		deps:  &fakeDeps{fail: map[string]bool{}, calls: map[string]int{}},
		gauge: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "g"}, []string{"dependency"}),
		logs:  &bytes.Buffer{},
	}
	b.g = newGate([]Dependency{b.deps.dep("postgres"), b.deps.dep("s3")}, time.Second, 8*time.Second, time.Second,
		b.gauge, slog.New(slog.NewTextHandler(b.logs, nil)))
	b.g.now = b.clock.now
	b.g.jitter = func(d time.Duration) time.Duration { return d }
	return b
}

func (b *gateBundle) paused(t *testing.T, dep string) float64 {
	t.Helper()
	return gaugeValue(t, b.gauge.WithLabelValues(dep))
}

// blocked reports whether a receiver would wait at the gate now.
func blocked(t *testing.T, g *gate) bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	_, err := g.wait(ctx)
	return err != nil
}

func TestGate(t *testing.T) {
	t.Parallel()
	b := newTestGate(t)
	g, ctx := b.g, context.Background()

	require.False(t, blocked(t, g))
	early, err := g.wait(ctx)
	require.NoError(t, err)
	require.True(t, g.valid(early))
	assert.Zero(t, b.paused(t, "postgres"), "the series exist at 0")

	// The first outage error pauses every receiver; the failing message is hidden until the first
	// check (1 s), at least the minimum hiding given.
	assert.Equal(t, 5*time.Second, g.unavailable("postgres", b.clock.t, 5*time.Second))
	assert.False(t, g.valid(early), "a pass issued before the pause is void")
	assert.True(t, blocked(t, g), "receivers wait during the pause")
	assert.Equal(t, 1.0, b.paused(t, "postgres"))
	assert.Zero(t, b.paused(t, "s3"))
	require.ErrorContains(t, g.pausedBy(), "paused: postgres unavailable since 1970-01-01T00:16:40Z")

	// Errors of the other messages in flight neither lengthen the pause nor start another.
	for range 10 {
		assert.Equal(t, time.Second, g.unavailable("postgres", b.clock.t, 0))
	}
	clock := b.clock
	clock.add(300 * time.Millisecond)
	assert.Equal(t, 700*time.Millisecond, g.remaining(0), "hidden until the next check")

	// The checks fail: the backoff doubles up to the maximum; only the failed dependency is
	// checked; no receiver passes.
	b.deps.set("postgres", true)
	for _, want := range []time.Duration{2 * time.Second, 4 * time.Second, 8 * time.Second, 8 * time.Second} {
		clock.add(g.remaining(0))
		require.False(t, g.probe(ctx))
		assert.Equal(t, want, g.backoff)
		assert.Equal(t, map[string]int{"postgres": 1}, b.deps.called())
		assert.True(t, blocked(t, g))
	}

	// An S3 error during the pause: S3 is checked too.
	g.unavailable("s3", b.clock.t, 0)
	assert.Equal(t, 1.0, b.paused(t, "s3"))
	require.ErrorContains(t, g.pausedBy(), "paused: postgres, s3 unavailable since")
	b.deps.set("postgres", false)
	b.deps.set("s3", true)
	clock.add(8 * time.Second)
	require.False(t, g.probe(ctx), "postgres is back, S3 is not")
	assert.Equal(t, map[string]int{"postgres": 1, "s3": 1}, b.deps.called())

	// Both back: everyone resumes, and the log tells the whole pause, from its start.
	b.deps.set("s3", false)
	clock.add(8 * time.Second)
	require.True(t, g.probe(ctx))
	assert.False(t, blocked(t, g))
	assert.Zero(t, b.paused(t, "postgres"))
	assert.Zero(t, b.paused(t, "s3"))
	require.NoError(t, g.pausedBy())
	assert.Contains(t, b.logs.String(), "receivers resume")
	assert.Contains(t, b.logs.String(), "receivers resume\" dependencies=postgres,s3 paused_for=31s", "checks at 1, 3, 7, 15, 23 and 31 s: the whole pause, not its last backoff")
}

func TestGateFlapping(t *testing.T) {
	t.Parallel()
	b := newTestGate(t)
	g, ctx, clock := b.g, context.Background(), b.clock

	// A pause that reached 4 s ends: the check passes.
	g.unavailable("postgres", b.clock.t, 0)
	b.deps.set("postgres", true)
	for range 2 {
		clock.add(g.remaining(0))
		g.probe(ctx)
	}
	require.Equal(t, 4*time.Second, g.backoff)
	b.deps.set("postgres", false)
	clock.add(g.remaining(0))
	require.True(t, g.probe(ctx))
	resumed := clock.t

	// Messages received after the resume fail again before any succeeded: the check lied (the
	// work still fails). The new pause starts from double the last backoff, not from 1 s.
	clock.add(time.Second)
	assert.Equal(t, 8*time.Second, g.unavailable("postgres", b.clock.t, 0))
	clock.add(8 * time.Second)
	require.True(t, g.probe(ctx))

	// A success of a message received before the resume confirms nothing; one received after
	// it confirms the resume: the next outage starts from the minimum again.
	g.success(resumed)
	clock.add(time.Second)
	assert.Equal(t, 8*time.Second, g.unavailable("postgres", b.clock.t, 0), "capped at the maximum")
	clock.add(8 * time.Second)
	require.True(t, g.probe(ctx))
	g.success(clock.t)
	assert.Equal(t, time.Second, g.unavailable("postgres", b.clock.t, 0))
}

// An outage error that does not name its dependency is checked against every dependency; a
// dependency without a check ends its pause when the backoff does.
func TestGateUnknownDependency(t *testing.T) {
	t.Parallel()
	b := newTestGate(t)
	g, ctx := b.g, context.Background()
	g.unavailable("", b.clock.t, 0)
	assert.Equal(t, 1.0, b.paused(t, unknownDependency))
	require.True(t, g.probe(ctx))
	assert.Equal(t, map[string]int{"postgres": 1, "s3": 1}, b.deps.called())

	g.unavailable("redis", b.clock.t, 0)
	require.True(t, g.probe(ctx), "no check for redis: the pause alone")
	assert.Empty(t, b.deps.called())
}

// A check that hangs is cut off by the probe timeout and counts as failed.
func TestGateCheckTimeout(t *testing.T) {
	t.Parallel()
	gauge := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "g"}, []string{"dependency"})
	hang := Dependency{Name: "postgres", Check: func(ctx context.Context) error {
		<-ctx.Done()
		return ctx.Err()
	}}
	g := newGate([]Dependency{hang}, time.Second, 8*time.Second, 20*time.Millisecond, gauge, discard())
	g.unavailable("postgres", time.Now(), 0)
	require.False(t, g.probe(context.Background()))
	require.True(t, blocked(t, g))
}

func TestDeferDelay(t *testing.T) {
	t.Parallel()
	tests := []struct {
		receives int
		pause    time.Duration
		want     time.Duration
	}{
		{1, 5 * time.Second, 5 * time.Second},
		{0, 5 * time.Second, 5 * time.Second},
		{1, 30 * time.Second, 30 * time.Second},
		// From the second receive on, pauseMax doubled per earlier receive, however short the pause.
		{2, 5 * time.Second, time.Minute},
		{3, 5 * time.Second, 2 * time.Minute},
		{4, 5 * time.Second, 4 * time.Minute},
		{4, 30 * time.Second, 4 * time.Minute},
		{5, 5 * time.Second, 8 * time.Minute},
		{5, 30 * time.Second, 8 * time.Minute},
		{50, 30 * time.Second, 8 * time.Minute},
		{50, 5 * time.Minute, 15 * time.Minute},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, deferDelay(tt.receives, tt.pause, 15*time.Minute), "receives %d, pause %s", tt.receives, tt.pause)
	}
	// MaxBackoff bounds retries, not that schedule.
	assert.Equal(t, 2*time.Minute, deferDelay(3, 5*time.Second, time.Minute))
	assert.Equal(t, time.Minute, deferDelay(1, 5*time.Minute, time.Minute))
}

// TestGateChecksLateReports: a dependency reported down while the probe's checks run (they take
// up to probeTimeout each, without the lock) is checked before the receivers resume, not cleared
// with the others.
func TestGateChecksLateReports(t *testing.T) {
	t.Parallel()
	b := newTestGate(t)
	g, ctx := b.g, context.Background()
	pg := g.checks["postgres"]
	g.checks["postgres"] = func(ctx context.Context) error {
		g.unavailable("s3", b.clock.t, 0) // a message fails on S3 meanwhile
		return pg(ctx)
	}
	b.deps.set("s3", true)
	g.unavailable("postgres", b.clock.t, 0)

	require.False(t, g.probe(ctx), "S3, reported during the check of PostgreSQL, is down")
	assert.Equal(t, map[string]int{"postgres": 1, "s3": 1}, b.deps.called())
	assert.True(t, blocked(t, g))
	assert.Equal(t, 1.0, b.paused(t, "s3"))
	require.ErrorContains(t, g.pausedBy(), "paused: postgres, s3 unavailable")

	b.deps.set("s3", false)
	require.True(t, g.probe(ctx))
	assert.Zero(t, b.paused(t, "s3"))
}

// TestGateStaleReport: a message received before the last resume that reports an outage after it
// (its work began during the pause) is hidden but starts no pause: the check passed since, and the
// messages received after the resume tell whether the dependency is back.
func TestGateStaleReport(t *testing.T) {
	t.Parallel()
	b := newTestGate(t)
	g, ctx, clock := b.g, context.Background(), b.clock
	polledBefore := clock.t
	g.unavailable("postgres", clock.t, 0)
	clock.add(g.remaining(0))
	require.True(t, g.probe(ctx))

	clock.add(time.Second)
	assert.Equal(t, 5*time.Second, g.unavailable("postgres", polledBefore, 5*time.Second), "hidden for the minimum")
	assert.False(t, blocked(t, g), "no new pause")
	assert.Zero(t, b.paused(t, "postgres"))

	// A message received after the resume that fails does pause.
	assert.Equal(t, 2*time.Second, g.unavailable("postgres", clock.t, 0), "unconfirmed resume: double the last backoff")
	assert.True(t, blocked(t, g))
}

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }

func gaugeValue(t *testing.T, g prometheus.Gauge) float64 {
	t.Helper()
	var m dto.Metric
	require.NoError(t, g.Write(&m))
	return m.GetGauge().GetValue()
}

// TestAcquireGathers: with every worker busy, a receiver that gets one freed slot waits (up to
// gatherWait) for more instead of receiving one message at a time; idle workers are taken at once.
func TestAcquireGathers(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c := &Consumer{slots: make(chan struct{}, 10), gatherWait: time.Minute}

	require.Equal(t, 10, c.acquire(ctx, 10), "idle workers: a full batch at once")
	require.Equal(t, 10, len(c.slots))

	// All busy. Slots free up one by one: the receiver takes them until it has a full batch.
	got := make(chan int, 1)
	go func() { got <- c.acquire(ctx, 10) }()
	for range 10 {
		c.releaseSlots(1)
		require.Eventually(t, func() bool { return len(c.slots) == 10 }, 5*time.Second, 100*time.Microsecond, "the receiver takes each freed slot")
	}
	require.Equal(t, 10, <-got, "the freed slots were gathered into one receive")

	// Busy workers that do not finish: the receiver goes with what it has after gatherWait.
	c.releaseSlots(1)
	c.gatherWait = 20 * time.Millisecond
	require.Equal(t, 1, c.acquire(ctx, 10))

	// A receiver cancelled while gathering returns the slots it holds, for the caller to release.
	c.releaseSlots(1)
	c.gatherWait = time.Minute
	cctx, cancel := context.WithCancel(ctx)
	go func() { got <- c.acquire(cctx, 10) }()
	require.Eventually(t, func() bool { return len(c.slots) == 10 }, 5*time.Second, 100*time.Microsecond)
	cancel()
	require.Equal(t, 1, <-got)
}

// TestMessageContext: FromContext reads the Message withMessage stored, through contexts derived
// from it, and nothing from a context without one; the parent's values and cancellation pass
// through.
func TestMessageContext(t *testing.T) {
	type key struct{}
	parent, cancel := context.WithCancel(context.WithValue(context.Background(), key{}, "v"))
	want := Message{ID: "m-1", ReceiveCount: 3, SentAt: time.Date(2026, 12, 3, 14, 0, 0, 0, time.UTC)}
	ctx, stop := context.WithTimeout(withMessage(parent, want), time.Minute)
	defer stop()

	got, ok := FromContext(ctx)
	require.True(t, ok)
	require.Equal(t, want, got)
	_, ok = FromContext(parent)
	require.False(t, ok)
	require.Equal(t, "v", ctx.Value(key{}))
	cancel()
	<-ctx.Done()
	require.ErrorIs(t, ctx.Err(), context.Canceled)
}

// TestPausedGaugeClearedAtStop: a handler that reports an outage during the grace period, after
// the receivers stopped, leaves no intake_consumer_paused series at 1 once Run has returned (no
// probe will ever clear it).
func TestPausedGaugeClearedAtStop(t *testing.T) {
	t.Parallel()
	client := &fakeSQS{}
	var calls atomic.Int32
	client.receive = func(ctx context.Context, in *sqs.ReceiveMessageInput) (*sqs.ReceiveMessageOutput, error) {
		if calls.Add(1) > 1 {
			<-ctx.Done()
			return nil, ctx.Err()
		}
		return &sqs.ReceiveMessageOutput{Messages: fakeMessages("m", 1)}, nil
	}
	started, proceed := make(chan struct{}), make(chan struct{})
	c, logs := newFakeConsumer(t, client, Config{
		Receivers: 1, Workers: 1, DepthInterval: -1, WaitTime: time.Second,
		Processor: ProcessorFunc(func(context.Context, string, []byte) error {
			close(started)
			<-proceed
			return pipeline.Unavailable(pipeline.DependencyPostgres, errors.New("record: connection refused"))
		}),
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	<-started
	cancel()
	require.Eventually(t, func() bool { return strings.Contains(logs.String(), "consumer stopping: receiving stopped") }, 30*time.Second, time.Millisecond)
	close(proceed)
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(time.Minute):
		t.Fatal("Run did not return")
	}
	assert.Equal(t, 1.0, counterValue(t, c.m.deferred), "the outage was reported in the grace period")
	assert.Zero(t, gaugeValue(t, c.m.paused.WithLabelValues(pipeline.DependencyPostgres)))
}

// TestPausedGaugeExportsSQSAtZero: the "sqs" series (the acker's pause, whether or not the
// configuration names an "sqs" dependency) is exported at 0 from the start, like the configured
// dependencies, so that an alert on it sees 0 before the first pause instead of no series at all.
func TestPausedGaugeExportsSQSAtZero(t *testing.T) {
	t.Parallel()
	m, err := newMetrics(prometheus.NewRegistry())
	require.NoError(t, err)
	newGate([]Dependency{{Name: pipeline.DependencyPostgres}}, time.Second, time.Minute, time.Second, m.paused, slog.New(slog.DiscardHandler))
	var labels []string
	ch := make(chan prometheus.Metric, 8)
	m.paused.Collect(ch)
	close(ch)
	for metric := range ch {
		var d dto.Metric
		require.NoError(t, metric.Write(&d))
		assert.Zero(t, d.GetGauge().GetValue())
		for _, lp := range d.GetLabel() {
			labels = append(labels, lp.GetValue())
		}
	}
	assert.ElementsMatch(t, []string{pipeline.DependencyPostgres, dependencySQS}, labels)
}
