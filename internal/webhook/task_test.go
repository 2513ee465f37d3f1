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

// TestDeliverTaskIDNamesItsRows: a batch's task ID identifies its rows, not only its first and last
// row and its size: a relay that claims other rows between the same two (another relay holding
// one) must not take the task of a rolled-back relay for its own. The same rows get the same ID
// (a relay's retry conflicts with the task its dead predecessor left), and a single row's task is
// DeliverTaskID.
func TestDeliverTaskIDNamesItsRows(t *testing.T) {
	t.Parallel()
	batch := func(endpoint string, ids ...int64) []webhook.Item {
		items := make([]webhook.Item, len(ids))
		for i, id := range ids {
			items[i] = webhook.Item{OutboxID: id, Endpoint: endpoint, Body: []byte("{}")}
		}
		return items
	}
	p, q := webhook.TaskID(batch("default", 101, 102, 104)), webhook.TaskID(batch("default", 101, 103, 104))
	require.NotEqual(t, p, q, "same first, last and size, other rows")
	require.Equal(t, p, webhook.TaskID(batch("default", 101, 102, 104)), "deterministic")
	require.NotEqual(t, p, webhook.TaskID(batch("crm", 101, 102, 104)), "per endpoint")
	require.Regexp(t, `^webhook:101-104/3\.[0-9a-f]{16}:default$`, p, "readable in intake jobs list")
	require.Equal(t, webhook.DeliverTaskID(7, "default"), webhook.TaskID(batch("default", 7)))
}
