package tasks_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/intakehq/intake/worker/tasks"
)

func TestUploadVerdictRoundTrip(t *testing.T) {
	t.Parallel()
	id := uuid.New()
	ts := time.Date(2026, 5, 1, 10, 0, 0, 123456000, time.FixedZone("CEST", 7200))
	data := []byte(` {"upload_id":"` + id.String() + `","owner":"o","bucket":"b","key":"k \"q\"","status":"valid","metadata":{"a":[1,null]},"later":"ignored"} `)
	raw := tasks.AppendUploadVerdict([]byte("prefix:"), "evt-1", tasks.EventUploadValid, ts, data)
	require.Equal(t, "prefix:", string(raw[:7]), "appends")
	raw = raw[7:]
	require.True(t, json.Valid(raw), "%s", raw)
	v, err := tasks.ParseUploadVerdict(raw)
	require.NoError(t, err)
	require.Equal(t, "evt-1", v.ID)
	require.Equal(t, tasks.EventUploadValid, v.Type)
	require.True(t, ts.Equal(v.Timestamp))
	require.Contains(t, string(raw), `"timestamp":"2026-05-01T08:00:00.123456Z"`, "UTC")
	require.Equal(t, id, v.Data.UploadID)
	require.Equal(t, `k "q"`, v.Data.Key)
	require.JSONEq(t, `{"a":[1,null]}`, string(v.Data.Metadata))

	task, err := tasks.NewUploadVerdictTask("app", raw)
	require.NoError(t, err)
	require.Equal(t, tasks.TypeUploadVerdict, task.Type())
	require.Equal(t, raw, task.Payload())
}

func TestParseUploadVerdictInvalid(t *testing.T) {
	t.Parallel()
	for name, payload := range map[string]string{
		"not JSON":      `{`,
		"no id":         `{"type":"upload.valid","data":{"upload_id":"` + uuid.NewString() + `"}}`,
		"no type":       `{"id":"e","data":{"upload_id":"` + uuid.NewString() + `"}}`,
		"no upload id":  `{"id":"e","type":"upload.valid","data":{}}`,
		"bad upload id": `{"id":"e","type":"upload.valid","data":{"upload_id":"12"}}`,
	} {
		_, err := tasks.ParseUploadVerdict([]byte(payload))
		require.ErrorIs(t, err, tasks.ErrInvalidPayload, name)
	}
	_, err := tasks.NewUploadVerdictTask("", []byte(`{"id":"e","type":"upload.valid","data":{"upload_id":"`+uuid.NewString()+`"}}`))
	require.Error(t, err, "a queue is required")
}

// TestParseUploadVerdictUnknownType: an event type added by a later intake is accepted (the doc
// promises that apps keep working when intake adds some), and Known tells it apart; it used to be
// refused as an invalid payload, so an app's handler archived every such verdict.
func TestParseUploadVerdictUnknownType(t *testing.T) {
	t.Parallel()
	payload := `{"id":"e","type":"upload.quarantined","timestamp":"2026-05-01T10:00:00Z","data":{"upload_id":"` + uuid.NewString() + `","status":"quarantined"}}`
	v, err := tasks.ParseUploadVerdict([]byte(payload))
	require.NoError(t, err)
	require.Equal(t, "upload.quarantined", v.Type)
	require.False(t, v.Known())
	task, err := tasks.NewUploadVerdictTask("app", []byte(payload))
	require.NoError(t, err, "intake's relay enqueues it")
	require.Equal(t, tasks.TypeUploadVerdict, task.Type())
	for _, typ := range tasks.EventTypes {
		require.True(t, tasks.UploadVerdict{Type: typ}.Known(), typ)
	}
}

// TestReadmeGoReceiver: the README's Go receiver is the one Example_webhookReceiver runs (the lines
// between its README markers, quoted verbatim).
func TestReadmeGoReceiver(t *testing.T) {
	t.Parallel()
	src, err := os.ReadFile("verdict_example_test.go")
	require.NoError(t, err)
	_, rest, ok := strings.Cut(string(src), "// README:begin\n")
	require.True(t, ok)
	snippet, _, ok := strings.Cut(rest, "\t// README:end")
	require.True(t, ok)
	var lines []string
	for l := range strings.SplitSeq(strings.TrimRight(snippet, "\n"), "\n") {
		lines = append(lines, strings.TrimPrefix(l, "\t"))
	}
	readme, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	require.NoError(t, err)
	require.Contains(t, string(readme), strings.Join(lines, "\n"))
}
