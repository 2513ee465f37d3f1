package consumer

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
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

func TestParseRedrive(t *testing.T) {
	t.Parallel()
	tests := []struct {
		raw     string
		want    *redrivePolicy
		wantErr bool
	}{
		{"", nil, false},
		{`{"deadLetterTargetArn":"arn:aws:sqs:us-east-1:1:q-dlq","maxReceiveCount":"5"}`, &redrivePolicy{"arn:aws:sqs:us-east-1:1:q-dlq", 5}, false},
		{`{"deadLetterTargetArn":"arn:aws:sqs:us-east-1:1:q-dlq","maxReceiveCount":3}`, &redrivePolicy{"arn:aws:sqs:us-east-1:1:q-dlq", 3}, false},
		{`{"deadLetterTargetArn":"arn","maxReceiveCount":0}`, nil, true},
		{`{"maxReceiveCount":2}`, nil, true},
		{`not json`, nil, true},
	}
	for _, tt := range tests {
		got, err := parseRedrive(tt.raw)
		if tt.wantErr {
			assert.Error(t, err, tt.raw)
			continue
		}
		require.NoError(t, err, tt.raw)
		assert.Equal(t, tt.want, got, tt.raw)
	}
}

func TestDLQAttributes(t *testing.T) {
	t.Parallel()
	str := func(s string) types.MessageAttributeValue {
		return types.MessageAttributeValue{DataType: aws.String("String"), StringValue: aws.String(s)}
	}
	d := &delivery{id: "m-1", receives: 3, msg: types.Message{MessageAttributes: map[string]types.MessageAttributeValue{
		"a": str("1"), reasonAttribute: str("spoofed"),
	}}}
	attrs := dlqAttributes(d, strings.Repeat("x", 5000))
	assert.Len(t, aws.ToString(attrs[reasonAttribute].StringValue), maxReasonLen, "the reason is ours and truncated")
	assert.Equal(t, "m-1", aws.ToString(attrs[sourceIDAttr].StringValue))
	assert.Equal(t, "3", aws.ToString(attrs[sourceRecvAttr].StringValue))
	assert.Equal(t, "1", aws.ToString(attrs["a"].StringValue))

	many := map[string]types.MessageAttributeValue{}
	for i := range 10 {
		many[string(rune('a'+i))] = str("v")
	}
	d.msg.MessageAttributes = many
	attrs = dlqAttributes(d, "r")
	assert.Len(t, attrs, maxAttributes, "SQS allows ten attributes")
	assert.Equal(t, "r", aws.ToString(attrs[reasonAttribute].StringValue))
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
func newTestGate() (*gate, *fakeClock, prometheus.Gauge) {
	clock := &fakeClock{t: time.Unix(1000, 0)}
	gauge := prometheus.NewGauge(prometheus.GaugeOpts{Name: "g"})
	g := newGate(time.Second, 8*time.Second, gauge, discard())
	g.now = clock.now
	return g, clock, gauge
}

// waitNow calls wait with a short deadline: it reports what a receiver could do now.
func waitNow(t *testing.T, g *gate) (limit int, probe bool, blocked bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	p, err := g.wait(ctx)
	return p.limit, p.probe, err != nil
}

func TestGate(t *testing.T) {
	t.Parallel()
	g, clock, gauge := newTestGate()
	before := clock.t.Add(-time.Millisecond)

	limit, probe, blocked := waitNow(t, g)
	require.False(t, blocked)
	assert.Equal(t, maxBatch, limit)
	assert.False(t, probe)
	early, err := g.wait(context.Background())
	require.NoError(t, err)
	require.True(t, g.valid(early))

	// First outage error: paused for the minimum.
	g.unavailable(before, false)
	assert.False(t, g.valid(early), "a pass issued before the pause is void")
	assert.Equal(t, 1.0, gaugeValue(t, gauge))
	_, _, blocked = waitNow(t, g)
	assert.True(t, blocked, "receivers wait during the pause")

	// Errors of messages polled before the pause do not lengthen it.
	for range 10 {
		g.unavailable(before, false)
	}
	assert.Equal(t, time.Second, g.pause)
	// Nor does a stale success end it.
	g.success(before, false)
	assert.Equal(t, 1.0, gaugeValue(t, gauge))

	// The pause is over: exactly one probe of one message.
	clock.add(time.Second)
	limit, probe, blocked = waitNow(t, g)
	require.False(t, blocked)
	assert.Equal(t, 1, limit)
	assert.True(t, probe)
	_, _, blocked = waitNow(t, g)
	assert.True(t, blocked, "a second receiver waits while the probe is out")

	// The probe fails: the pause doubles, up to the maximum.
	for _, want := range []time.Duration{2 * time.Second, 4 * time.Second, 8 * time.Second, 8 * time.Second} {
		g.unavailable(clock.t, true)
		assert.Equal(t, want, g.pause)
		_, _, blocked = waitNow(t, g)
		assert.True(t, blocked)
		clock.add(want)
		_, probe, blocked = waitNow(t, g)
		require.False(t, blocked)
		require.True(t, probe)
	}

	// A probe that received nothing lets another probe go.
	g.probeDone()
	_, probe, blocked = waitNow(t, g)
	require.False(t, blocked)
	require.True(t, probe)
	// A neutral result (a malformed message) too.
	g.neutral(true)
	_, probe, blocked = waitNow(t, g)
	require.False(t, blocked)
	require.True(t, probe)

	// The probe succeeds: everyone resumes.
	g.success(clock.t, true)
	assert.Zero(t, gaugeValue(t, gauge))
	limit, probe, blocked = waitNow(t, g)
	require.False(t, blocked)
	assert.Equal(t, maxBatch, limit)
	assert.False(t, probe)

	// A new outage starts again from the minimum.
	g.unavailable(clock.t, false)
	assert.Equal(t, time.Second, g.pause)
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
