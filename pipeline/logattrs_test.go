package pipeline

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// countingHandler counts WithAttrs calls reaching the handler under lazyAttrs.
type countingHandler struct {
	slog.Handler
	withAttrs *int
}

func (h countingHandler) WithAttrs(as []slog.Attr) slog.Handler {
	*h.withAttrs++
	return countingHandler{h.Handler.WithAttrs(as), h.withAttrs}
}

// TestLazyAttrs: a logger built with With writes the same line as with the handler alone (the
// With attributes first, in order, then the record's), groups keep earlier attributes outside, and
// nothing reaches the inner handler's WithAttrs while no line is written.
func TestLazyAttrs(t *testing.T) {
	t.Parallel()
	write := func(wrap bool) string {
		var buf bytes.Buffer
		var h slog.Handler = slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo, ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		}})
		if wrap {
			h = withLazyAttrs(h)
		}
		log := slog.New(h).With("msg_id", "m1").With("bucket", "b", "key", "k")
		log.Debug("not written", "x", 1)
		log.Info("object inspected", "status", "rejected", "applied", false)
		log.WithGroup("g").With("inner", 2).Warn("grouped", "y", 3)
		return buf.String()
	}
	require.Equal(t, write(false), write(true))
	require.Contains(t, write(true), `"msg_id":"m1","bucket":"b","key":"k","status":"rejected"`)
	require.Contains(t, write(true), `"g":{"inner":2,"y":3}`)

	calls := 0
	var buf bytes.Buffer
	log := slog.New(withLazyAttrs(countingHandler{slog.NewJSONHandler(&buf, nil), &calls})).With("msg_id", "m2").With("key", "k2")
	log.DebugContext(context.Background(), "disabled")
	require.Zero(t, calls, "With's attributes were handed to the inner handler before any line was written")
	require.Zero(t, buf.Len())
	log.Info("written")
	require.Equal(t, 1, strings.Count(buf.String(), `"msg_id":"m2","key":"k2"`))
	_, nested := withLazyAttrs(log.Handler()).(lazyAttrs).inner.(lazyAttrs)
	require.False(t, nested, "wrapping twice nests")
}
