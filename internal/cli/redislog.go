package cli

import (
	"context"
	"fmt"
	"log/slog"
)

// redisLog writes go-redis's own log lines (a connection pool that cannot dial, a pub/sub that
// reconnects) through the command's logger, so they are structured and redacted like every other
// line instead of printed to stderr by the standard library's logger. go-redis keeps its logger
// in a global; every command sets it once, before anything dials Redis.
type redisLog struct{ log *slog.Logger }

// Printf implements go-redis's internal.Logging. Its lines are warnings: go-redis logs only what
// went wrong.
func (r redisLog) Printf(ctx context.Context, format string, v ...any) {
	if !r.log.Enabled(ctx, slog.LevelWarn) {
		return
	}
	r.log.WarnContext(ctx, fmt.Sprintf(format, v...))
}
