package consumer

import (
	"context"
	"time"
)

// Message describes the SQS message being processed; Processors read it with FromContext.
type Message struct {
	// ID is the SQS message id.
	ID string
	// ReceiveCount is ApproximateReceiveCount: 1 on the first delivery.
	ReceiveCount int
	// SentAt is when the message was sent to the queue (zero when unknown).
	SentAt time.Time
}

type messageKey struct{}

// FromContext returns the message being processed, when ctx is a Process context.
func FromContext(ctx context.Context) (Message, bool) {
	m, ok := ctx.Value(messageKey{}).(Message)
	return m, ok
}
