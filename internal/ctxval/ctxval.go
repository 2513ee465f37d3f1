// Package ctxval carries a value in a context in one allocation. context.WithValue allocates its
// context and, for a value larger than a pointer, the value boxed in an interface; on the hot
// paths (every API request, every consumed message) a Context holds the parent and the value
// together, and its lookup returns a pointer, so reading it allocates nothing either.
package ctxval

import (
	"context"
	"fmt"
)

// Context is a context carrying a V, found by its key type K. K is a type of its own used only as
// the key, an empty struct (a zero-size key is boxed without an allocation when looked up).
// Every other key, the deadline, Done and Err are the parent's, so context.WithCancel and
// context.WithTimeout over a Context find the parent's cancellation as they do through
// context.WithValue, without a goroutine of their own.
type Context[K, V any] struct {
	context.Context
	V V
}

// With returns a context carrying v under the key type K. The caller may fill the returned
// Context's V before handing the context on, never after.
func With[K, V any](parent context.Context, v V) *Context[K, V] {
	return &Context[K, V]{Context: parent, V: v}
}

// Value answers a key of type K with the Context itself and asks the parent for every other key.
func (c *Context[K, V]) Value(key any) any {
	if _, ok := key.(K); ok {
		return c
	}
	return c.Context.Value(key)
}

// String describes the context for debugging, as context.WithValue's does.
func (c *Context[K, V]) String() string { return fmt.Sprintf("%v.WithValue(%T)", c.Context, c.V) }

// From returns the value carried under the key type K by the nearest Context in ctx's chain, and
// whether there is one. The value is shared: read it, do not change it.
func From[K, V any](ctx context.Context) (*V, bool) {
	var key K
	c, ok := ctx.Value(key).(*Context[K, V])
	if !ok {
		return nil, false
	}
	return &c.V, true
}
