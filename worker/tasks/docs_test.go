package tasks_test

import (
	"go/doc"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/stretchr/testify/require"

	"github.com/intakehq/intake/worker/tasks"
)

// TestDocumentedRetrySchedule: the godoc's account of ten retries (AbortMaxRetry, InspectMaxRetry)
// is asynq's default backoff, which intake's server keeps: retry n+1 waits n⁴ + 15 + rand(0..29)·(n+1)
// seconds, ten of them 15,483 to 17,078 s (4 h 18 min to 4 h 45 min). The godoc said "about a day".
func TestDocumentedRetrySchedule(t *testing.T) {
	t.Parallel()
	var lo, hi time.Duration
	for n := range tasks.AbortMaxRetry {
		minWait := time.Duration(n*n*n*n+15) * time.Second
		maxWait := minWait + time.Duration(29*(n+1))*time.Second
		for range 500 {
			d := asynq.DefaultRetryDelayFunc(n, nil, nil)
			require.True(t, d >= minWait && d <= maxWait, "retry %d waits %s, not within %s..%s", n+1, d, minWait, maxWait)
		}
		lo, hi = lo+minWait, hi+maxWait
	}
	require.Equal(t, 15483*time.Second, lo)
	require.Equal(t, 17078*time.Second, hi)
	require.Equal(t, tasks.AbortMaxRetry, tasks.InspectMaxRetry)
	src, err := os.ReadFile("tasks.go")
	require.NoError(t, err)
	text := strings.Join(strings.Fields(strings.ReplaceAll(string(src), "//", "")), " ")
	for _, want := range []string{"15,483 to 17,078 s", "between 4 h 18 min and 4 h 45 min"} {
		require.True(t, strings.Contains(text, want), "tasks.go's godoc does not say %q", want)
	}
	require.False(t, strings.Contains(text, "about a day"), "tasks.go's godoc still says ten retries take about a day")
}

// TestExamplesAreAnAppsCode: the runnable examples are what an app backend copies, and it cannot
// import intake's internal packages: the examples use the standard library, public modules and
// worker/tasks only (Example_webhookReceiver signed its request with internal/webhook). The
// sweep's example gives the task its period's ID, which is what makes it unique (it said so, and
// did not).
func TestExamplesAreAnAppsCode(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob("*example_test.go")
	require.NoError(t, err)
	require.NotEmpty(t, files)
	for _, name := range files {
		f, err := parser.ParseFile(token.NewFileSet(), name, nil, parser.ParseComments)
		require.NoError(t, err)
		for _, imp := range f.Imports {
			path, err := strconv.Unquote(imp.Path.Value)
			require.NoError(t, err)
			require.NotContains(t, path, "/internal/", "%s imports %s, which an app cannot", name, path)
		}
		// An example without an output comment go test recognizes is compiled but never run: what
		// it shows could go wrong unnoticed (a comment line right above "// Output:" hides it).
		for _, ex := range doc.Examples(f) {
			require.True(t, ex.Output != "" || ex.EmptyOutput, "%s: Example%s has no output go test checks", name, ex.Name)
		}
	}
	src, err := os.ReadFile("example_test.go")
	require.NoError(t, err)
	_, sweep, ok := strings.Cut(string(src), "func ExampleNewSweep()")
	require.True(t, ok)
	sweep, _, _ = strings.Cut(sweep, "\n}\n")
	require.Contains(t, sweep, "asynq.TaskID(")
	doc, err := os.ReadFile("doc.go")
	require.NoError(t, err)
	require.Contains(t, string(doc), "[APIAbortTaskID]", "the package doc names the api: abort task beside the deadline's")
}
