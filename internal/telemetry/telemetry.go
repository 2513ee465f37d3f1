// Package telemetry sets up intake's structured logs (log/slog, JSON by default) and its Prometheus
// registry. Components receive a *slog.Logger and a prometheus.Registerer; nothing here is global.
//
// # Secrets
//
// Every message and every string or error attribute a logger made by [NewLogger] writes goes
// through a redactor (internal/redact): URL passwords, ?password= and password=… parameters,
// SigV4 signatures and credentials, bearer tokens and the secret values given to NewLogger (the
// configuration's passwords, tokens and keys) are replaced by REDACTED. Sources redact what they
// know is sensitive themselves; this is the net under them.
package telemetry

import (
	"context"
	"io"
	"log/slog"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/intakehq/intake/internal/ctxval"
	"github.com/intakehq/intake/internal/redact"
)

// Namespace prefixes every metric intake exports.
const Namespace = "intake"

// NewLogger returns a logger writing to w in format "json" or "text" at level "debug", "info",
// "warn" or "error" (unknown levels mean info). Messages and attributes are redacted: what
// redact.String recognizes and every occurrence of the given secrets is masked.
func NewLogger(w io.Writer, format, level string, secrets ...string) *slog.Logger {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(strings.ToUpper(level))); err != nil {
		lv = slog.LevelInfo
	}
	opts := &slog.HandlerOptions{Level: lv, ReplaceAttr: redactAttr(redact.New(secrets...))}
	var h slog.Handler
	if format == "text" {
		h = slog.NewTextHandler(w, opts)
	} else {
		h = slog.NewJSONHandler(w, opts)
	}
	return slog.New(contextHandler{h})
}

// NewRegistry returns a Prometheus registry with the Go runtime and process collectors.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// redactAttr returns a slog ReplaceAttr function that masks secrets in string values (the message
// included) and in errors' messages. Other values are left alone: intake logs no secrets as
// structs or maps.
func redactAttr(r *redact.Redactor) func(groups []string, a slog.Attr) slog.Attr {
	return func(_ []string, a slog.Attr) slog.Attr {
		switch a.Value.Kind() {
		case slog.KindString:
			s := a.Value.String()
			if red := r.String(s); red != s {
				a.Value = slog.StringValue(red)
			}
		case slog.KindAny:
			if err, ok := a.Value.Any().(error); ok && err != nil {
				s := err.Error()
				if red := r.String(s); red != s {
					a.Value = slog.StringValue(red)
				}
			}
		}
		return a
	}
}

type attrsKey struct{}

// attrList is what a WithAttrs context carries: the attributes of every WithAttrs call on the way
// to it, two or fewer stored inline, so that the context is one allocation (ctxval) where
// context.WithValue holding a slice cost three, on every API request and every consumed message.
type attrList struct {
	attrs  []slog.Attr
	inline [2]slog.Attr
}

// attrsOf returns the attributes stored in ctx by WithAttrs.
func attrsOf(ctx context.Context) []slog.Attr {
	if l, ok := ctxval.From[attrsKey, attrList](ctx); ok {
		return l.attrs
	}
	return nil
}

// WithAttrs returns a context whose log records (through loggers made by NewLogger) carry attrs,
// e.g. the request or message id, after those of earlier WithAttrs calls on ctx.
func WithAttrs(ctx context.Context, attrs ...slog.Attr) context.Context {
	prev := attrsOf(ctx)
	c := ctxval.With[attrsKey](ctx, attrList{})
	all := c.V.inline[:0]
	if n := len(prev) + len(attrs); n > len(c.V.inline) {
		all = make([]slog.Attr, 0, n)
	}
	c.V.attrs = append(append(all, prev...), attrs...)
	return c
}

// contextHandler adds the attributes stored by WithAttrs to every record logged with a context.
type contextHandler struct{ slog.Handler }

func (h contextHandler) Handle(ctx context.Context, r slog.Record) error {
	if attrs := attrsOf(ctx); len(attrs) > 0 {
		r.AddAttrs(attrs...)
	}
	return h.Handler.Handle(ctx, r)
}

func (h contextHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return contextHandler{h.Handler.WithAttrs(attrs)}
}

func (h contextHandler) WithGroup(name string) slog.Handler {
	return contextHandler{h.Handler.WithGroup(name)}
}
