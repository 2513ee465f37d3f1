package webhook_test

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/intakehq/intake/internal/webhook"
	"github.com/intakehq/intake/worker/tasks"
)

// unrecordable is a store whose MarkDelivered fails for the ids in fail (its batch timed out,
// PostgreSQL went away after the post): the receiver took the notification, intake could not
// record it.
type unrecordable struct {
	giveUps
	fail map[int64]bool
}

func (s *unrecordable) MarkDelivered(ctx context.Context, id int64, endpoint string) error {
	if s.fail[id] {
		return errors.New("record delivery: batch timed out")
	}
	return s.giveUps.MarkDelivered(ctx, id, endpoint)
}

// TestDeliveredIsNeverGivenUp: on its task's last attempt, a notification its receiver answered
// 2xx, whose delivery could not be recorded, is not recorded as given up (an alert would ask an
// operator to send it again): it stays pending for `intake outbox redeliver --stuck-for`.
// The notifications after it that were not posted are handed on (a sequence) or given up (a
// batch whose hand-on fails), as before. Before, the posted one was given up in all three shapes.
func TestDeliveredIsNeverGivenUp(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("needs Redis (the local stack)")
	}
	a, b := uuid.New(), uuid.New()
	for name, tt := range map[string]struct {
		items    []webhook.Item
		refuse   bool    // enqueues fail
		gaveUp   []int64 // recorded as given up
		handedOn []int64 // the items of the task handed on
		posted   []string
		succeeds bool // the task's run returns nil
	}{
		"a single notification": {
			items:  []webhook.Item{{OutboxID: 7, Endpoint: "app", Body: verdictBody("n7", tasks.EventUploadValid, a)}},
			posted: []string{"n7"},
		},
		"the first of a sequence; the rest is handed on": {
			items: []webhook.Item{
				{OutboxID: 7, Endpoint: "app", Body: verdictBody("n7", tasks.EventUploadValid, a), Attempted: 1},
				{OutboxID: 8, Endpoint: "app", Body: verdictBody("n8", tasks.EventUploadDeleted, a)},
			},
			handedOn: []int64{8},
			posted:   []string{"n7"},
		},
		"the first of a sequence whose hand-on fails": {
			items: []webhook.Item{
				{OutboxID: 7, Endpoint: "app", Body: verdictBody("n7", tasks.EventUploadValid, a), Attempted: 1},
				{OutboxID: 8, Endpoint: "app", Body: verdictBody("n8", tasks.EventUploadDeleted, a)},
			},
			refuse: true,
			gaveUp: []int64{8},
			posted: []string{"n7"},
		},
		"past the first of a sequence; it goes on with the rest": {
			items: []webhook.Item{
				{OutboxID: 6, Endpoint: "app", Body: verdictBody("n6", tasks.EventUploadValid, a), Attempted: 1},
				{OutboxID: 7, Endpoint: "app", Body: verdictBody("n7", tasks.EventUploadRejected, a)},
				{OutboxID: 8, Endpoint: "app", Body: verdictBody("n8", tasks.EventUploadDeleted, a)},
			},
			handedOn: []int64{7, 8},
			posted:   []string{"n6", "n7"},
			succeeds: true,
		},
		"past the first of a sequence whose hand-on fails": {
			items: []webhook.Item{
				{OutboxID: 6, Endpoint: "app", Body: verdictBody("n6", tasks.EventUploadValid, a), Attempted: 1},
				{OutboxID: 7, Endpoint: "app", Body: verdictBody("n7", tasks.EventUploadRejected, a)},
				{OutboxID: 8, Endpoint: "app", Body: verdictBody("n8", tasks.EventUploadDeleted, a)},
			},
			refuse: true,
			gaveUp: []int64{8},
			posted: []string{"n6", "n7"},
		},
		"in a batch whose hand-on fails": {
			items: []webhook.Item{
				{OutboxID: 7, Endpoint: "app", Body: verdictBody("n7", tasks.EventUploadValid, a)},
				{OutboxID: 8, Endpoint: "app", Body: verdictBody("n8", tasks.EventUploadDeleted, a)},
				{OutboxID: 9, Endpoint: "app", Body: verdictBody("n9", tasks.EventUploadValid, b)},
			},
			refuse: true,
			gaveUp: []int64{8},
			posted: []string{"n7", "n9"},
		},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			recv := newOrderReceiver(t, func(string, int) (int, time.Duration) { return http.StatusNoContent, 0 })
			store := &unrecordable{fail: map[int64]bool{7: true}}
			q := &queued{refuse: tt.refuse}
			d, _ := newOrderDeliverer(t, recv.URL, true, store, q)
			task, err := webhook.NewDeliverTask(tt.items, time.Second)
			require.NoError(t, err)

			attempts, _, _ := runTask(t, d, &store.giveUps, task, 0) // the first attempt is the last
			got := nextAttempt(t, attempts, 1)
			if tt.succeeds {
				require.NoError(t, got.err, "the rest is handed on")
			} else {
				require.ErrorContains(t, got.err, "batch timed out", "the failed recording is reported")
			}
			require.ElementsMatch(t, tt.posted, recv.deliveries())
			require.ElementsMatch(t, tt.gaveUp, store.given(), "a notification its receiver took is never given up")
			var handed []int64
			tasksOn, _ := q.all()
			for _, task := range tasksOn {
				items, err := webhook.ParseDeliver(task.Payload())
				require.NoError(t, err)
				for _, it := range items {
					handed = append(handed, it.OutboxID)
				}
			}
			require.ElementsMatch(t, tt.handedOn, handed)
		})
	}
}
