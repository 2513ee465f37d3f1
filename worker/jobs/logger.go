package jobs

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	"github.com/hibiken/asynq"
)

// slogLogger adapts a *slog.Logger to asynq.Logger. asynq formats with fmt.Sprint, so the adapter
// does too and adds component=asynq.
type slogLogger struct{ log *slog.Logger }

// NewAsynqLogger returns an asynq.Logger (for asynq.Config.Logger and asynq.SchedulerOpts.Logger)
// that writes to log. Fatal logs at error level with fatal=true and does not exit: intake decides
// when the process ends.
func NewAsynqLogger(log *slog.Logger) asynq.Logger {
	return slogLogger{log: log.With("component", "asynq")}
}

func (l slogLogger) Debug(args ...any) { l.emit(slog.LevelDebug, args) }
func (l slogLogger) Info(args ...any)  { l.emit(slog.LevelInfo, args) }
func (l slogLogger) Warn(args ...any)  { l.emit(slog.LevelWarn, args) }
func (l slogLogger) Error(args ...any) { l.emit(slog.LevelError, args) }
func (l slogLogger) Fatal(args ...any) { l.emit(slog.LevelError, args, slog.Bool("fatal", true)) }

func (l slogLogger) emit(level slog.Level, args []any, attrs ...slog.Attr) {
	ctx := context.Background()
	if !l.log.Enabled(ctx, level) {
		return
	}
	l.log.LogAttrs(ctx, level, strings.TrimSpace(fmt.Sprint(args...)), attrs...)
}

// asynqLevel maps the logger's enabled level to asynq's, so asynq does not format messages slog
// would drop.
func asynqLevel(log *slog.Logger) asynq.LogLevel {
	ctx := context.Background()
	switch {
	case log.Enabled(ctx, slog.LevelDebug):
		return asynq.DebugLevel
	case log.Enabled(ctx, slog.LevelInfo):
		return asynq.InfoLevel
	case log.Enabled(ctx, slog.LevelWarn):
		return asynq.WarnLevel
	default:
		return asynq.ErrorLevel
	}
}
