package outbox_test

import (
	"cmp"
	"context"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/intakehq/intake/internal/outbox"
	"github.com/intakehq/intake/internal/testkit"
	"github.com/intakehq/intake/internal/webhook"
	"github.com/intakehq/intake/pipeline"
	"github.com/intakehq/intake/worker/tasks"
)

// TestAnUploadsNotificationsArriveInOrder: an upload is found valid, then deleted, and both
// notifications are relayed together (one batch). The receiver fails the first attempt of
// upload.valid: upload.deleted is not delivered before it, but after it, on the retry that
// delivers it (each attempted as often as it had to be). Before, the batch posted both at once:
// upload.deleted was delivered at once and upload.valid after its retry delay, so the app saw its
// upload deleted, then valid.
func TestAnUploadsNotificationsArriveInOrder(t *testing.T) {
	t.Parallel()
	b := setup(t, testkit.NotificationsOptions{NoRelay: true})
	id := b.intent(t, "u/order.txt", nil, "")
	b.verdict(t, id, "u/order.txt", pipeline.StatusValid, "")
	b.verdict(t, id, "u/order.txt", pipeline.StatusDeleted, "")
	b.recv.AnswerVerdict(func(v tasks.UploadVerdict, attempt int) int {
		if v.Type == tasks.EventUploadValid && attempt == 1 {
			return http.StatusServiceUnavailable
		}
		return http.StatusNoContent
	})
	n, err := b.relay.RelayOnce(b.ctx)
	require.NoError(t, err)
	require.Equal(t, 2, n, "one relay, one batch")

	got := map[string]testkit.Webhook{}
	for _, w := range b.recv.WaitDelivered(2, 60*time.Second) {
		got[w.Verdict.Type] = w
	}
	valid, deleted := got[tasks.EventUploadValid], got[tasks.EventUploadDeleted]
	require.True(t, valid.DeliveredAt.Before(deleted.DeliveredAt),
		"upload.valid delivered at %s, upload.deleted at %s", valid.DeliveredAt.Format(time.StampMicro), deleted.DeliveredAt.Format(time.StampMicro))
	require.Equal(t, 2, valid.Attempts)
	require.Equal(t, 1, deleted.Attempts)
}

// TestAnUploadsNotificationsInOrderAcrossABatchBoundary: fifteen uploads are found valid, then a
// sixteenth is found valid and deleted, and the seventeen notifications are relayed together (one
// RelayOnce). The receiver fails the first attempt of the sixteenth upload's upload.valid:
// upload.deleted is delivered after it, on its retry. Before, the relay cut each endpoint's
// deliveries into tasks of 16 by position: upload.valid (the 16th) and upload.deleted (the 17th)
// went out in two tasks, run in parallel, and upload.deleted was delivered at once, before
// upload.valid's retry.
func TestAnUploadsNotificationsInOrderAcrossABatchBoundary(t *testing.T) {
	t.Parallel()
	b := setup(t, testkit.NotificationsOptions{NoRelay: true, RetryDelay: time.Second})
	for i := range 15 {
		key := fmt.Sprintf("u/filler-%d.txt", i)
		b.verdict(t, b.intent(t, key, nil, ""), key, pipeline.StatusValid, "")
	}
	id := b.intent(t, "u/boundary.txt", nil, "")
	b.verdict(t, id, "u/boundary.txt", pipeline.StatusValid, "")   // the 16th notification
	b.verdict(t, id, "u/boundary.txt", pipeline.StatusDeleted, "") // the 17th
	b.recv.AnswerVerdict(func(v tasks.UploadVerdict, attempt int) int {
		if v.Data.UploadID == id && v.Type == tasks.EventUploadValid && attempt == 1 {
			return http.StatusServiceUnavailable
		}
		return http.StatusNoContent
	})
	n, err := b.relay.RelayOnce(b.ctx)
	require.NoError(t, err)
	require.Equal(t, 17, n, "one relay")

	got := map[string]testkit.Webhook{}
	for _, w := range b.recv.WaitDelivered(17, 60*time.Second) {
		if w.Verdict.Data.UploadID == id {
			got[w.Verdict.Type] = w
		}
	}
	valid, deleted := got[tasks.EventUploadValid], got[tasks.EventUploadDeleted]
	require.True(t, valid.DeliveredAt.Before(deleted.DeliveredAt),
		"upload.valid delivered at %s, upload.deleted at %s", valid.DeliveredAt.Format(time.StampMicro), deleted.DeliveredAt.Format(time.StampMicro))
	require.Equal(t, 2, valid.Attempts)
	require.Equal(t, 1, deleted.Attempts)
}

// capturing enqueues through an asynq client and keeps the rows of each webhook delivery task.
type capturing struct {
	client *asynq.Client
	mu     sync.Mutex
	tasks  [][]int64
}

func (c *capturing) EnqueueContext(ctx context.Context, t *asynq.Task, opts ...asynq.Option) (*asynq.TaskInfo, error) {
	if t.Type() == webhook.TypeDeliver {
		// The payload is "<outbox id> <endpoint> <attempted>\n<body>\n" per item.
		var ids []int64
		lines := strings.Split(strings.TrimSuffix(string(t.Payload()), "\n"), "\n")
		for i := 0; i < len(lines); i += 2 {
			id, err := strconv.ParseInt(strings.Fields(lines[i])[0], 10, 64)
			if err != nil {
				return nil, err
			}
			ids = append(ids, id)
		}
		c.mu.Lock()
		c.tasks = append(c.tasks, ids)
		c.mu.Unlock()
	}
	return c.client.EnqueueContext(ctx, t, opts...)
}

// TestRelayKeepsAnUploadsNotificationsInOneTask: one relay of 15 single notifications, then two of
// upload X (the 16th and 17th: the first batch's boundary), 20 of upload Y, and 6 of uploads A and
// B alternating. Every delivery task holds at most webhook.BatchSize notifications; each upload's
// notifications are in one task, in the order intake recorded them, except Y's, which cannot be:
// its first 16 make a task of their own, in order, and the 4 after them, in order, one other task.
// Before, tasks were cut by position, every 16 notifications: X's two landed in two tasks, as did
// Y's and A's or B's.
func TestRelayKeepsAnUploadsNotificationsInOneTask(t *testing.T) {
	t.Parallel()
	b := setup(t, testkit.NotificationsOptions{NoRelay: true})
	var uploads []uuid.UUID // per notification, in recording order
	for range 15 {
		uploads = append(uploads, uuid.New())
	}
	x, y, a, bb := uuid.New(), uuid.New(), uuid.New(), uuid.New()
	uploads = append(uploads, x, x)
	for range 20 {
		uploads = append(uploads, y)
	}
	for range 3 {
		uploads = append(uploads, a, bb)
	}
	_, err := b.st.Pool.Exec(b.ctx, `INSERT INTO outbox (dedupe_key, event_type, upload_id, bucket, key, data)
		SELECT 'n:' || g, 'upload.valid', u, 'b', 'k' || g, json_build_object('upload_id', u)
		FROM unnest($1::uuid[]) WITH ORDINALITY AS t(u, g) ORDER BY g`, uploads)
	require.NoError(t, err)
	byID := map[int64]uuid.UUID{}
	var all []int64
	rows, err := b.st.Pool.Query(b.ctx, `SELECT id, upload_id FROM outbox ORDER BY id`)
	require.NoError(t, err)
	for rows.Next() {
		var id int64
		var u uuid.UUID
		require.NoError(t, rows.Scan(&id, &u))
		byID[id] = u
		all = append(all, id)
	}
	require.NoError(t, rows.Err())
	require.Len(t, all, len(uploads))

	client := &capturing{client: b.client}
	relay, err := outbox.NewRelay(outbox.RelayConfig{
		Pool: b.st.Pool, Client: client, Endpoints: routeAll{webhook.DefaultEndpoint}, Registerer: prometheus.NewRegistry(), Log: b.log,
	})
	require.NoError(t, err)
	n, err := relay.RelayOnce(b.ctx)
	require.NoError(t, err)
	require.Equal(t, len(uploads), n, "one relay")

	tasksOf := map[uuid.UUID][][]int64{} // per upload, its rows in each task holding some
	var relayed []int64
	for _, ids := range client.tasks {
		require.LessOrEqual(t, len(ids), webhook.BatchSize)
		relayed = append(relayed, ids...)
		mine := map[uuid.UUID][]int64{}
		for _, id := range ids {
			mine[byID[id]] = append(mine[byID[id]], id)
		}
		for u, ids := range mine {
			require.True(t, slices.IsSorted(ids), "upload %s: rows %v out of order in a task", u, ids)
			tasksOf[u] = append(tasksOf[u], ids)
		}
	}
	slices.Sort(relayed)
	require.Equal(t, all, relayed, "each notification in one task")
	for u, in := range tasksOf {
		if u != y {
			require.Len(t, in, 1, "upload %s split across tasks: %v", u, in)
		}
	}
	ys := tasksOf[y]
	require.Len(t, ys, 2, "upload Y: %v", ys)
	slices.SortFunc(ys, func(p, q []int64) int { return cmp.Compare(p[0], q[0]) })
	require.Len(t, ys[0], webhook.BatchSize, "Y's first 16")
	require.Len(t, ys[1], 4, "Y's last 4")
	for _, ids := range client.tasks {
		if ids[0] == ys[0][0] {
			require.Len(t, ids, webhook.BatchSize, "Y's first 16 make a task of their own")
		}
	}
}
