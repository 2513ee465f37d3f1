package telemetry_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
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
