package reconcile

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/intakehq/intake/internal/telemetry"
)

// skipEnqueuer refuses every key as one that can never be enqueued.
type skipEnqueuer struct{}

func (skipEnqueuer) EnqueueInspect(context.Context, string, string) error {
	return fmt.Errorf("key too long for a task ID: %w", ErrSkipKey)
}

// TestSkippedKeyLogCarriesTheTask: the periodic reconcile runs as a task, whose context carries the
// task's attributes (task_id, …: the jobs Log middleware). The warning about an object that cannot
// be enqueued for inspection was logged without that context, so it named no task.
func TestSkippedKeyLogCarriesTheTask(t *testing.T) {
	t.Parallel()
	var logs strings.Builder
	s3c := &fakeS3{n: 3, has: func(int) bool { return true }}
	rows := &fakeRows{n: 3, has: func(int) bool { return false }}
	ctx := telemetry.WithAttrs(context.Background(), slog.String("task_id", "reconcile:uploads:1"))
	rep, err := Run(ctx, s3c, rows, Options{Bucket: "b", Fix: true, Enqueuer: skipEnqueuer{},
		Log: telemetry.NewLogger(&logs, "json", "debug")})
	require.NoError(t, err)
	require.Equal(t, 3, rep.Fixed.EnqueueSkipped)
	n := 0
	for line := range strings.SplitSeq(logs.String(), "\n") {
		if strings.Contains(line, "object cannot be enqueued for inspection") {
			require.Contains(t, line, `"task_id":"reconcile:uploads:1"`)
			n++
		}
	}
	require.Equal(t, 3, n, logs.String())
}
