package consumer

import (
	"context"
	"time"

	"github.com/intakehq/intake/internal/ctxval"
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

// withMessage returns a context that FromContext reads m from, in one allocation (ctxval;
// context.WithValue would box the struct: two, on every message).
func withMessage(ctx context.Context, m Message) context.Context {
	return ctxval.With[messageKey](ctx, m)
}

// FromContext returns the message being processed, when ctx is a Process context.
func FromContext(ctx context.Context) (Message, bool) {
	m, ok := ctxval.From[messageKey, Message](ctx)
	if !ok {
		return Message{}, false
	}
	return *m, true
}
