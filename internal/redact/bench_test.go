package redact_test

import (
	"testing"

	"github.com/intakehq/intake/internal/redact"
)

// BenchmarkString measures String on what the log handler passes it: typical messages and
// attribute values without a secret (the fast path: most log lines), messages whose separators
// send them down the slow path without a secret in them, and messages holding secrets.
func BenchmarkString(b *testing.B) {
	for _, bc := range []struct{ name, in string }{
		{"short value", "uploads/alice/3f0c9a1e/photo.png"},
		{"message", "object recorded"},
		{"error with colons", "peek intake-uploads/uploads/alice/3f0c9a1e/photo.png: operation error S3: HeadObject, " +
			"https response error StatusCode: 404, RequestID: 17E2A1B3C4D5E6F7, HostID: dd9025bab4ad464b049177c95eb6ebf374d3b3fd1af9251148b658df7ac2e3e8, api error NotFound: Not Found"},
		{"key=value without secret", "consumer stopped: queue=intake-events received=1200 deleted=1199 reason=shutdown"},
		{"URL without secret", `Post "http://127.0.0.1:4566/000000000000/intake-events": dial tcp 127.0.0.1:4566: connect: connection refused`},
		{"presigned URL", `Get "` + presigned + `": context canceled`},
		{"processcreds JSON", processcreds},
		{"header", "upstream rejected the request: X-Amz-Security-Token: FwoGZXIvYXdzEJr//////////wEaDExampleToken0123 (403)"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(bc.in)))
			for b.Loop() {
				_ = redact.String(bc.in)
			}
		})
	}
}
