package telemetry_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"testing"

	"github.com/stretchr/testify/require"

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
