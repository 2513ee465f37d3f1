package ctxval_test

import (
	"context"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/intakehq/intake/internal/ctxval"
	"github.com/intakehq/intake/internal/race"
)

type (
	idKey    struct{}
	otherKey struct{}
	plainKey struct{}
)

type scope struct {
	id    string
	count int
}

// TestFrom: a value is found through the contexts derived from it, the nearest one wins, a key of
// another type does not find it, and the parent's values, cancellation and deadline pass through.
func TestFrom(t *testing.T) {
	parent, cancel := context.WithCancel(context.WithValue(context.Background(), plainKey{}, "plain"))
	outer := ctxval.With[idKey](parent, scope{id: "outer", count: 1})
	inner := ctxval.With[idKey](context.WithValue(outer, otherKey{}, "x"), scope{id: "inner", count: 2})
	derived, stop := context.WithTimeout(inner, time.Minute)
	defer stop()

	got, ok := ctxval.From[idKey, scope](derived)
	require.True(t, ok)
	require.Equal(t, scope{id: "inner", count: 2}, *got)
	got, ok = ctxval.From[idKey, scope](outer)
	require.True(t, ok)
	require.Equal(t, "outer", got.id)
	_, ok = ctxval.From[otherKey, scope](derived)
	require.False(t, ok, "another key type")
	_, ok = ctxval.From[idKey, string](derived)
	require.False(t, ok, "another value type under the same key")
	_, ok = ctxval.From[idKey, scope](parent)
	require.False(t, ok)

	require.Equal(t, "plain", derived.Value(plainKey{}))
	require.Equal(t, "x", derived.Value(otherKey{}))
	_, hasDeadline := inner.Deadline()
	require.False(t, hasDeadline)
	require.NoError(t, derived.Err())
	cancel()
	<-derived.Done()
	require.ErrorIs(t, derived.Err(), context.Canceled)
	require.ErrorIs(t, inner.Err(), context.Canceled)
}

// TestCancelsWithoutAGoroutine: context.WithCancel over a Context finds the cancelable parent
// through it, as it does through context.WithValue, and starts no goroutine to watch it (one per
// request or message if it did).
func TestCancelsWithoutAGoroutine(t *testing.T) {
	parent, cancel := context.WithCancel(context.Background())
	defer cancel()
	ctx := ctxval.With[idKey](parent, scope{id: "r1"})
	before := runtime.NumGoroutine()
	var children []context.Context
	for range 100 {
		c, stop := context.WithCancel(ctx)
		defer stop()
		children = append(children, c)
	}
	require.Less(t, runtime.NumGoroutine()-before, 10, "context.WithCancel started a goroutine per child")
	cancel()
	for _, c := range children {
		<-c.Done()
	}
}

// sink keeps the contexts TestOneAllocation makes on the heap, as a request's are.
var sink context.Context

// TestOneAllocation: carrying a value is one allocation, reading it none.
func TestOneAllocation(t *testing.T) {
	if race.Enabled {
		t.Skip("the race detector's instrumentation allocates")
	}
	parent := context.Background()
	with := testing.AllocsPerRun(100, func() { sink = ctxval.With[idKey](parent, scope{id: "r1", count: 1}) })
	require.Equal(t, 1.0, with)
	ctx := context.WithValue(ctxval.With[idKey](parent, scope{id: "r1"}), plainKey{}, "v")
	var got *scope
	from := testing.AllocsPerRun(100, func() { got, _ = ctxval.From[idKey, scope](ctx) })
	require.Zero(t, from)
	require.Equal(t, "r1", got.id)
}
