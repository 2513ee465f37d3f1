package webhook_test

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/intakehq/intake/internal/webhook"
	"github.com/intakehq/intake/worker/tasks"
)

func TestDeliverTaskPayload(t *testing.T) {
	t.Parallel()
	items := []webhook.Item{
		{OutboxID: 7, Endpoint: "default", Body: []byte(`{"id":"a","type":"upload.valid"}`)},
		{OutboxID: 9, Endpoint: "default", Body: []byte(`{"id":"b","type":"upload.rejected","data":{"k":"x y"}}`), Attempted: 1},
	}
	task, err := webhook.NewDeliverTask(items, 10*time.Second)
	require.NoError(t, err)
	require.Equal(t, webhook.TypeDeliver, task.Type())
	got, err := webhook.ParseDeliver(task.Payload())
	require.NoError(t, err)
	require.Equal(t, items, got)

	one, err := webhook.NewDeliverTask(items[:1], 10*time.Second)
	require.NoError(t, err)
	require.Equal(t, "7 default 0\n{\"id\":\"a\",\"type\":\"upload.valid\"}\n", string(one.Payload()), "readable in intake jobs list")

	many := make([]webhook.Item, webhook.BatchSize+1)
	for i := range many {
		many[i] = webhook.Item{OutboxID: int64(i + 1), Endpoint: "default", Body: []byte("{}")}
	}
	for name, bad := range map[string][]webhook.Item{
		"none":            nil,
		"too many":        many,
		"two endpoints":   {items[0], {OutboxID: 8, Endpoint: "other", Body: []byte("{}")}},
		"a newline":       {{OutboxID: 1, Endpoint: "default", Body: []byte("{\n}")}},
		"no body":         {{OutboxID: 1, Endpoint: "default"}},
		"no id":           {{Endpoint: "default", Body: []byte("{}")}},
		"space in a name": {{OutboxID: 1, Endpoint: "a b", Body: []byte("{}")}},
	} {
		_, err := webhook.NewDeliverTask(bad, time.Second)
		require.ErrorIs(t, err, tasks.ErrInvalidPayload, name)
	}
	for name, payload := range map[string]string{
		"empty":           "",
		"no body":         "1 default 0\n",
		"no attempts":     "1 default\n{}\n",
		"bad id":          "x default 0\n{}\n",
		"mixed endpoints": "1 a 0\n{}\n2 b 0\n{}\n",
		"too many":        strings.Repeat("1 a 0\n{}\n", webhook.BatchSize+1),
	} {
		_, err := webhook.ParseDeliver([]byte(payload))
		require.ErrorIs(t, err, tasks.ErrInvalidPayload, name)
	}
}
