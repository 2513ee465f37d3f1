package webhook_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/stretchr/testify/require"

	"github.com/intakehq/intake/internal/testkit"
	"github.com/intakehq/intake/internal/webhook"
)

// giveUps records give-ups, failing while down is set (PostgreSQL unavailable).
type giveUps struct {
	mu   sync.Mutex
	down bool
	got  []int64
}

func (s *giveUps) MarkDelivered(context.Context, int64, string) error { return nil }

func (s *giveUps) MarkGaveUp(_ context.Context, id int64, _ string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.down {
		return errors.New("connection refused")
	}
	s.got = append(s.got, id)
	return nil
}

type noTasks struct{}

func (noTasks) EnqueueContext(context.Context, *asynq.Task, ...asynq.Option) (*asynq.TaskInfo, error) {
	return nil, errors.New("no enqueue expected")
}

// TestGiveUpIsRecordedBeforeArchiving: a batch for an endpoint no longer configured is given up.
// While its record fails, the task fails without SkipRetry (asynq retries it, and a retry records
// the give-up); once recorded, every item is, and the task is archived at once (SkipRetry).
func TestGiveUpIsRecordedBeforeArchiving(t *testing.T) {
	t.Parallel()
	endpoints, err := webhook.NewEndpoints([]webhook.EndpointConfig{
		{Name: "kept", URL: "https://hooks.example.com/intake", Secret: testkit.WebhookSecret(t)},
	}, false)
	require.NoError(t, err)
	store := &giveUps{down: true}
	d, err := webhook.NewDeliverer(webhook.DelivererConfig{Store: store, Endpoints: endpoints, Tasks: noTasks{}})
	require.NoError(t, err)
	task, err := webhook.NewDeliverTask([]webhook.Item{
		{OutboxID: 3, Endpoint: "removed", Body: []byte(`{"id":"a"}`)},
		{OutboxID: 4, Endpoint: "removed", Body: []byte(`{"id":"b"}`)},
	}, time.Second)
	require.NoError(t, err)

	err = d.ProcessTask(context.Background(), task)
	require.ErrorContains(t, err, "no longer configured")
	require.NotErrorIs(t, err, asynq.SkipRetry, "not recorded: retried, not archived")
	require.Empty(t, store.got)

	store.down = false
	err = d.ProcessTask(context.Background(), task)
	require.ErrorIs(t, err, asynq.SkipRetry)
	require.Equal(t, []int64{3, 4}, store.got)
}
