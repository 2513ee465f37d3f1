package progress

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestPlainLines(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	plain := false
	b := New(&out, Options{Description: "replay dlq", Total: 10, Unit: "msg", Interval: time.Hour, Terminal: &plain})
	b.Add(3)
	b.Add(2)
	require.Empty(t, out.String(), "no line before the interval")
	b.Finish()
	b.Finish()
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	require.Len(t, lines, 1, "one line at the end, even after two Finish calls")
	require.Contains(t, lines[0], "replay dlq: 5/10 (50.0%)")
	require.Contains(t, lines[0], "msg/s")
	require.EqualValues(t, 5, b.Count())
}

func TestPlainLinesEveryInterval(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	plain := false
	b := New(&out, Options{Description: "reconcile", Total: -1, Unit: "objects", Interval: time.Nanosecond, Terminal: &plain})
	b.Add(1)
	time.Sleep(time.Millisecond)
	b.Add(1)
	b.Finish()
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	require.Len(t, lines, 3)
	require.True(t, strings.HasPrefix(lines[0], "reconcile: 1 "), lines[0])
	require.True(t, strings.HasPrefix(lines[2], "reconcile: 2 "), lines[2])
}

func TestTerminalBar(t *testing.T) {
	t.Parallel()
	tty := true
	for _, tc := range []struct {
		name  string
		total int64
		adds  []int
		want  string
	}{
		{"known total", 100, []int{60, 40}, "(100/100"},
		{"more than expected grows the total", 10, []int{10, 5}, "(15/15"},
		{"unknown total ends at the count", -1, []int{7, 122}, "(129/129"},
		{"stopped early keeps the bar", 100, []int{30}, "replay"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var out bytes.Buffer
			b := New(&out, Options{Description: "replay", Total: tc.total, Unit: "msg", Terminal: &tty})
			for _, n := range tc.adds {
				b.Add(n)
			}
			b.Finish()
			require.Contains(t, out.String(), "\r", "the bar redraws in place")
			require.Contains(t, out.String(), tc.want)
			require.True(t, strings.HasSuffix(out.String(), "\n"), "the summary starts on its own line")
		})
	}
	var out bytes.Buffer
	b := New(&out, Options{Description: "x", Total: 5, Terminal: &tty})
	b.SetTotal(-1)
	b.Finish()
	require.NotContains(t, out.String(), "(1/1", "nothing done: no fake full bar")
}

func TestNilBar(t *testing.T) {
	t.Parallel()
	var b *Bar
	b.Add(1)
	b.SetTotal(3)
	b.Finish()
	require.Zero(t, b.Count())
}

func TestIsTerminal(t *testing.T) {
	t.Parallel()
	require.False(t, IsTerminal(&bytes.Buffer{}))
}

func TestSummary(t *testing.T) {
	t.Parallel()
	s := &Summary{Title: "replay dlq", Elapsed: 2 * time.Second}
	s.Add("sent", 1000).Add("send_failed", 0).Add("messages_per_second", s.Rate(1000)).Note("%d left", 3)
	var out bytes.Buffer
	require.NoError(t, s.WriteText(&out))
	text := out.String()
	require.Contains(t, text, "replay dlq: done in 2s\n")
	require.Regexp(t, `(?m)^  sent\s+1000$`, text)
	require.Regexp(t, `(?m)^  messages_per_second\s+500.0$`, text)
	require.Contains(t, text, "  note: 3 left\n")

	raw, err := json.Marshal(s)
	require.NoError(t, err)
	var got map[string]any
	require.NoError(t, json.Unmarshal(raw, &got))
	require.Equal(t, "replay dlq", got["title"])
	require.EqualValues(t, 1000, got["sent"])
	require.EqualValues(t, 2, got["elapsed_seconds"])
	require.Equal(t, []any{"3 left"}, got["notes"])
	require.Zero(t, (&Summary{}).Rate(5))
}
