package consumer

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/intakehq/intake/internal/queue"
)

// TestLastReceiveIsDeadLettered: a message that fails (a retry, or a deferral by an outage) on the
// last receive the queue's redrive policy allows is logged as going to the dead-letter queue, not
// as "will retry", and counted in intake_messages_dead_lettered_total{reason="retries_exhausted"};
// on earlier receives, or while the policy is unknown, it is retried as before.
func TestLastReceiveIsDeadLettered(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	client := &fakeSQS{}
	c, logs := newFakeConsumer(t, client, Config{})
	exhausted := c.m.deadLettered.WithLabelValues(reasonRetriesExhausted)
	msg := func(receives int) *delivery { return &delivery{id: "m-1", handle: "h-1", receives: receives} }
	cause := errors.New("s3 503")

	// The policy is not known yet (the queue's attributes were never read): nothing to tell.
	c.retry(ctx, msg(5), cause)
	assert.Zero(t, counterValue(t, exhausted))
	assert.Contains(t, logs.String(), "processing failed; will retry")

	c.redrive.Store(&queue.RedrivePolicy{DLQARN: "arn:aws:sqs:eu-west-1:123456789012:q-dlq", MaxReceiveCount: 5})
	for receives := 1; receives < 5; receives++ {
		c.retry(ctx, msg(receives), cause)
		c.deferMessage(ctx, msg(receives), deferMin, cause)
	}
	assert.Zero(t, counterValue(t, exhausted), "earlier receives are retried")
	assert.NotContains(t, logs.String(), "dead-letter queue")

	c.retry(ctx, msg(5), cause)
	assert.Equal(t, 1.0, counterValue(t, exhausted))
	line := lastLine(logs.String())
	assert.Contains(t, line, "level=ERROR")
	assert.Contains(t, line, "processing failed on the last receive the queue's redrive policy allows; the queue will move the message to its dead-letter queue")
	assert.Contains(t, line, "reason=retries_exhausted receive_count=5 max_receive_count=5")
	assert.NotContains(t, line, "will retry")

	c.deferMessage(ctx, msg(5), deferMin, cause)
	assert.Equal(t, 2.0, counterValue(t, exhausted))
	assert.Contains(t, lastLine(logs.String()), "dependency unavailable on the last receive the queue's redrive policy allows")

	// Its visibility is still set: the redrive policy moves it at its next receive.
	calls := client.visibilityCalls()
	require.Len(t, calls, 11)
	for _, v := range calls {
		assert.Positive(t, v.seconds)
	}
	assert.Equal(t, 6.0, counterValue(t, c.m.retried), "still counted as retries")
	assert.Equal(t, 5.0, counterValue(t, c.m.deferred))
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}
