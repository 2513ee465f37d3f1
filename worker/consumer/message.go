package consumer

import (
	"context"
	"fmt"
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

// messageCtx carries the Message to FromContext: the parent and the Message in one allocation
// (context.WithValue would box the struct: two, on every message).
type messageCtx struct {
	context.Context
	msg Message
}

// Value answers messageKey with the messageCtx itself and asks the parent for every other key.
func (c *messageCtx) Value(key any) any {
	if _, ok := key.(messageKey); ok {
		return c
	}
	return c.Context.Value(key)
}

func (c *messageCtx) String() string { return fmt.Sprintf("%v.WithMessage(%s)", c.Context, c.msg.ID) }

// withMessage returns a context that FromContext reads m from.
func withMessage(ctx context.Context, m Message) context.Context {
	return &messageCtx{Context: ctx, msg: m}
}

// FromContext returns the message being processed, when ctx is a Process context.
func FromContext(ctx context.Context) (Message, bool) {
	c, ok := ctx.Value(messageKey{}).(*messageCtx)
	if !ok {
		return Message{}, false
	}
	return c.msg, true
}
