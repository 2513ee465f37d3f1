package pipeline

import (
	"context"
	"log/slog"
	"slices"
)

// lazyAttrs is a slog.Handler that keeps the attributes given to Logger.With and adds them to a
// record only when one is written. The Processor gives every message and event a logger with its
// ids (msg_id, bucket, key, event); handlers such as slog's JSONHandler format With's attributes at
// once, which cost every event a formatting pass even though most events log nothing at the
// default level (a valid object's verdict is logged at debug). Lines read the same: the deferred
// attributes come first, then the record's own.
type lazyAttrs struct {
	inner slog.Handler
	attrs []slog.Attr
}

// withLazyAttrs wraps h, unless it already is a lazyAttrs.
func withLazyAttrs(h slog.Handler) slog.Handler {
	if _, ok := h.(lazyAttrs); ok {
		return h
	}
	return lazyAttrs{inner: h}
}

func (h lazyAttrs) Enabled(ctx context.Context, l slog.Level) bool { return h.inner.Enabled(ctx, l) }

func (h lazyAttrs) WithAttrs(attrs []slog.Attr) slog.Handler {
	return lazyAttrs{inner: h.inner, attrs: append(slices.Clip(h.attrs), attrs...)}
}

// WithGroup hands the deferred attributes to the inner handler first: they belong outside the group.
func (h lazyAttrs) WithGroup(name string) slog.Handler {
	inner := h.inner
	if len(h.attrs) > 0 {
		inner = inner.WithAttrs(h.attrs)
	}
	return lazyAttrs{inner: inner.WithGroup(name)}
}

func (h lazyAttrs) Handle(ctx context.Context, r slog.Record) error {
	if len(h.attrs) == 0 {
		return h.inner.Handle(ctx, r)
	}
	out := slog.NewRecord(r.Time, r.Level, r.Message, r.PC)
	out.AddAttrs(h.attrs...)
	r.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(a)
		return true
	})
	return h.inner.Handle(ctx, out)
}
