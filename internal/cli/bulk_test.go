package cli

import (
	"bytes"
	"context"
	"fmt"
	"testing"

	"github.com/hibiken/asynq"
	"github.com/stretchr/testify/require"

	"github.com/intakehq/intake/internal/store"
	"github.com/intakehq/intake/internal/testkit"
	"github.com/intakehq/intake/worker/tasks"
)

// TestJobsLeaveOtherQueuesAlone: without --queue the jobs commands act on intake's own queues
// only, never on the app's verdict queue or another application's queue in the same Redis, and
// `jobs delete --all` deletes nothing without --yes (--dry-run counts). Before, `jobs delete --all
// --state pending` emptied every queue of the Redis.
func TestJobsLeaveOtherQueuesAlone(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("needs Redis")
	}
	opt := asynq.RedisClientOpt{Addr: testkit.RedisAddr(), DB: testkit.RedisDB(t)}
	redisURL := fmt.Sprintf("redis://%s/%d", opt.Addr, opt.DB)
	client := asynq.NewClient(opt)
	t.Cleanup(func() { _ = client.Close() })
	const appQueue = "app-verdicts"
	appTask, err := client.Enqueue(asynq.NewTask("intake:upload.verdict", []byte(`{}`)), asynq.Queue(appQueue))
	require.NoError(t, err)
	ours, err := client.Enqueue(asynq.NewTask(tasks.TypeInspectObject, []byte(`{}`)), asynq.Queue(tasks.QueueDefault))
	require.NoError(t, err)
	insp := asynq.NewInspector(opt)
	t.Cleanup(func() { _ = insp.Close() })
	intake := func(args ...string) (int, string, string) {
		var out, errOut bytes.Buffer
		code := MainContext(context.Background(), append(args, "--redis-url", redisURL), &out, &errOut)
		return code, out.String(), errOut.String()
	}
	exists := func(queue, id string) bool {
		_, err := insp.GetTaskInfo(queue, id)
		if err != nil {
			require.ErrorIs(t, err, asynq.ErrTaskNotFound)
		}
		return err == nil
	}

	code, out, errOut := intake("jobs", "list", "--state", "pending")
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, ours.ID)
	require.NotContains(t, out, appTask.ID, "not intake's queue")
	code, out, errOut = intake("jobs", "list", "--state", "pending", "--queue", appQueue)
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, appTask.ID, "named with --queue")

	code, _, errOut = intake("jobs", "delete", "--all", "--state", "pending")
	require.Equal(t, 2, code, "a usage error")
	require.Contains(t, errOut, "jobs delete --all deletes every pending task of intake's queues (intake-critical, intake-default, intake-low, intake-webhooks): add --yes")
	require.True(t, exists(tasks.QueueDefault, ours.ID), "nothing deleted without --yes")

	code, out, errOut = intake("jobs", "delete", "--all", "--state", "pending", "--dry-run")
	require.Equal(t, 0, code, errOut)
	require.Equal(t, "1", summaryField(t, out, "would_delete"))
	require.True(t, exists(tasks.QueueDefault, ours.ID), "a dry run deletes nothing")

	code, out, errOut = intake("jobs", "delete", "--all", "--state", "pending", "--yes")
	require.Equal(t, 0, code, errOut)
	require.Equal(t, "1", summaryField(t, out, "deleted"))
	require.False(t, exists(tasks.QueueDefault, ours.ID))
	require.True(t, exists(appQueue, appTask.ID), "another queue's task survives")

	code, _, errOut = intake("jobs", "delete", "--id", appTask.ID)
	require.Equal(t, 1, code, "not searched outside intake's queues")
	require.Contains(t, errOut, "not found")
	require.True(t, exists(appQueue, appTask.ID))
}

// TestOutboxDiscardNeedsItsScope: `intake outbox discard` without --endpoint or --all-endpoints
// refuses, says what to give, and drops nothing; --all-endpoints drops every endpoint's given-up
// deliveries. Before, no flag meant every endpoint.
func TestOutboxDiscardNeedsItsScope(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("needs PostgreSQL")
	}
	ctx := context.Background()
	dbURL := testkit.DatabaseURLFor(testkit.Schema(t))
	st, err := store.Open(ctx, dbURL)
	require.NoError(t, err)
	t.Cleanup(st.Close)
	_, err = store.Migrate(ctx, st.Pool)
	require.NoError(t, err)
	for _, ep := range []string{"crm", "old"} {
		_, err := st.Pool.Exec(ctx, `INSERT INTO outbox (dedupe_key, event_type, upload_id, bucket, key, data,
			relayed_at, pending, gave_up, delivered_at) VALUES ($1, 'upload.valid', gen_random_uuid(), 'b', 'k', '{}', now(), '{}', $2, now())`,
			"test:"+ep, []string{ep})
		require.NoError(t, err)
	}
	gaveUp := func() int {
		var n int
		require.NoError(t, st.Pool.QueryRow(ctx, "SELECT count(*) FROM outbox WHERE cardinality(gave_up) > 0").Scan(&n))
		return n
	}
	intake := func(args ...string) (int, string, string) {
		var out, errOut bytes.Buffer
		code := MainContext(ctx, append(args, "--database-url", dbURL), &out, &errOut)
		return code, out.String(), errOut.String()
	}

	code, _, errOut := intake("outbox", "discard")
	require.Equal(t, 2, code, "a usage error")
	require.Contains(t, errOut, "give --endpoint NAME to drop the given-up deliveries to one endpoint, or --all-endpoints")
	require.Equal(t, 2, gaveUp(), "nothing dropped")
	code, _, errOut = intake("outbox", "discard", "--endpoint", "crm", "--all-endpoints")
	require.Equal(t, 2, code, "one or the other")
	require.Contains(t, errOut, "nothing was dropped")
	require.Equal(t, 2, gaveUp())

	code, out, errOut := intake("outbox", "discard", "--all-endpoints")
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "dropped the given-up deliveries of 2 notifications")
	require.Zero(t, gaveUp())
}
