package telemetry_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/intakehq/intake/internal/race"
	"github.com/intakehq/intake/internal/telemetry"
)

// TestLoggerRedacts: messages, string attributes, errors and grouped attributes lose their secrets,
// in both formats; text without secrets is written as it is.
func TestLoggerRedacts(t *testing.T) {
	t.Parallel()
	const token = "ingress-token-0123456789abcdef"
	for _, format := range []string{"json", "text"} {
		t.Run(format, func(t *testing.T) {
			t.Parallel()
			var buf bytes.Buffer
			log := telemetry.NewLogger(&buf, format, "debug", token, "")
			log.Info("connect postgres://u:pa55word@db/x failed", "database", "postgres://u@db/x?password=pa55word")
			log.Warn("peek failed", "err", fmt.Errorf("peek b/k: %w",
				errors.New(`Get "http://m/b/k?X-Amz-Credential=AKID%2Fx&X-Amz-Signature=feedfacefeedface": context canceled`)))
			log.WithGroup("req").Error("bad token", "header", "Bearer "+token, "note", "got "+token)
			log.InfoContext(telemetry.WithAttrs(context.Background(), slog.String("dsn", "host=db password='pa55word'")), "ctx")
			log.Info("object recorded", "key", "uploads/a b.png", "status", "valid")
			out := buf.String()
			for _, secret := range []string{"pa55word", "feedfacefeedface", "AKID", token} {
				require.NotContains(t, out, secret)
			}
			require.Contains(t, out, "REDACTED")
			require.Contains(t, out, "uploads/a b.png")
		})
	}
}

// BenchmarkLogLine measures one typical per-event line (the pipeline's verdict): slog's JSON handler
// alone (what the logger cost before redaction), and intake's logger with no secret and with five
// configured secrets.
func BenchmarkLogLine(b *testing.B) {
	secrets := []string{"db-password-value", "redis-password", "ingress-token-0123456789abcdef", "jwt-secret-0123456789abcdef0123", "api-key-0123456789abcdef"}
	for _, bc := range []struct {
		name string
		log  *slog.Logger
	}{
		{"slog JSON handler, no redaction", slog.New(slog.NewJSONHandler(io.Discard, nil))},
		{"redacted, no secrets configured", telemetry.NewLogger(io.Discard, "json", "info")},
		{"redacted, five secrets", telemetry.NewLogger(io.Discard, "json", "info", secrets...)},
	} {
		b.Run(bc.name, func(b *testing.B) {
			log := bc.log
			ctx := telemetry.WithAttrs(context.Background(), slog.String("message_id", "0f8e6c1a-6d2e-4d7b-9b1e-3c2a1d0e9f8a"))
			b.ReportAllocs()
			for b.Loop() {
				log.InfoContext(ctx, "object recorded", "bucket", "intake-uploads", "key", "uploads/alice/3f0c9a1e/photo.png",
					"status", "valid", "reason", "", "applied", true, "size", 123456)
			}
		})
	}
}

// TestWithAttrs: each context's lines carry the attributes of every WithAttrs call on the way to
// it, in order, and only those: two children of one context (its attributes stored inline, full)
// do not see each other's. The parent's values, deadline and cancellation pass through.
func TestWithAttrs(t *testing.T) {
	var buf bytes.Buffer
	log := telemetry.NewLogger(&buf, "json", "info")
	line := func(ctx context.Context) map[string]any {
		t.Helper()
		buf.Reset()
		log.InfoContext(ctx, "line")
		var m map[string]any
		require.NoError(t, json.Unmarshal(buf.Bytes(), &m))
		delete(m, "time")
		return m
	}
	type key struct{}
	parent, cancel := context.WithCancel(context.WithValue(context.Background(), key{}, "v"))
	two := telemetry.WithAttrs(parent, slog.String("a", "1"), slog.String("b", "2"))
	left := telemetry.WithAttrs(two, slog.String("c", "3"))
	right := telemetry.WithAttrs(two, slog.String("d", "4"), slog.Int("e", 5))

	require.Equal(t, map[string]any{"level": "INFO", "msg": "line"}, line(parent))
	require.Equal(t, map[string]any{"level": "INFO", "msg": "line", "a": "1", "b": "2"}, line(two))
	require.Equal(t, map[string]any{"level": "INFO", "msg": "line", "a": "1", "b": "2", "c": "3"}, line(left))
	require.Equal(t, map[string]any{"level": "INFO", "msg": "line", "a": "1", "b": "2", "d": "4", "e": float64(5)}, line(right))
	buf.Reset()
	log.InfoContext(right, "line")
	require.Regexp(t, `"a":"1","b":"2","d":"4","e":5}`, buf.String(), "attributes in the order of the calls")

	require.Equal(t, "v", right.Value(key{}))
	require.NoError(t, right.Err())
	cancel()
	<-right.Done()
	require.ErrorIs(t, right.Err(), context.Canceled)
}

// TestWithAttrsAllocatesOnce: a WithAttrs context is one allocation for up to two attributes
// before it, two beyond (the context and its slice).
func TestWithAttrsAllocatesOnce(t *testing.T) {
	if race.Enabled {
		t.Skip("the race detector's instrumentation allocates")
	}
	ctx := context.Background()
	one := testing.AllocsPerRun(100, func() { _ = telemetry.WithAttrs(ctx, slog.String("message_id", "m1")) })
	require.Equal(t, 1.0, one)
	two := telemetry.WithAttrs(ctx, slog.String("a", "1"), slog.String("b", "2"))
	more := testing.AllocsPerRun(100, func() { _ = telemetry.WithAttrs(two, slog.String("c", "3")) })
	require.Equal(t, 2.0, more)
}
