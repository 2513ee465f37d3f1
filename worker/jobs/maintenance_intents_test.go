package jobs_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/hibiken/asynq"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/intakehq/intake/internal/store/dbq"
	"github.com/intakehq/intake/internal/testkit"
	"github.com/intakehq/intake/worker/jobs"
	"github.com/intakehq/intake/worker/tasks"
)

// endedIntent records an intent with this status, ended (updated_at) this long before now, and
// returns its ID.
func endedIntent(t *testing.T, b *testBundle, now time.Time, status string, endedAgo time.Duration) uuid.UUID {
	t.Helper()
	id := uuid.New()
	_, err := testkit.CreateUpload(b.ctx, b.st.Pool, dbq.Upload{
		ID: id, Owner: "alice", Bucket: b.bucket, Key: fmt.Sprintf("uploads/alice/%s/f.bin", id), Method: "put",
		Filename: "f.bin", ContentType: "application/octet-stream", Size: 1, ExpiresAt: now.Add(-endedAgo - time.Hour),
	})
	require.NoError(t, err)
	_, err = b.st.Pool.Exec(b.ctx, "UPDATE uploads SET status = $1, updated_at = $2 WHERE id = $3", status, now.Add(-endedAgo), id)
	require.NoError(t, err)
	return id
}

// intentExists reports whether the intent is still in uploads.
func intentExists(t *testing.T, b *testBundle, id uuid.UUID) bool {
	t.Helper()
	_, err := testkit.GetUpload(b.ctx, b.st.Pool, id)
	if errors.Is(err, pgx.ErrNoRows) {
		return false
	}
	require.NoError(t, err)
	return true
}

// TestMaintenancePrunesEndedIntents: the intents that ended without an upload (expired, aborted)
// longer ago than the retention are deleted; those that ended more recently, pending and completed
// ones (however old) stay. An object that referenced a deleted intent keeps its row, its upload_id
// NULL; the intent's Idempotency-Key is free again. A zero retention keeps every intent.
func TestMaintenancePrunesEndedIntents(t *testing.T) {
	t.Parallel()
	b := setup(t)
	now := time.Now().UTC()
	const retention = 30 * 24 * time.Hour
	cases := []struct {
		name     string
		status   string
		endedAgo time.Duration
		kept     bool
	}{
		{"expired past the retention", "expired", retention + time.Hour, false},
		{"aborted past the retention", "aborted", retention + time.Minute, false},
		{"expired within the retention", "expired", retention - time.Hour, true},
		{"aborted an hour ago", "aborted", time.Hour, true},
		{"pending, unchanged for long", "pending", 2 * retention, true},
		{"completed long ago", "completed", 2 * retention, true},
	}
	ids := make([]uuid.UUID, len(cases))
	for i, tc := range cases {
		ids[i] = endedIntent(t, b, now, tc.status, tc.endedAgo)
	}
	// Aborted past the retention, its deadline within it: the retention counts from the later of
	// the two (an object may land until the deadline, its event come the retention later).
	urlAlive := endedIntent(t, b, now, "aborted", retention+time.Hour)
	_, err := b.st.Pool.Exec(b.ctx, "UPDATE uploads SET expires_at = $1 WHERE id = $2", now.Add(-retention+time.Hour), urlAlive)
	require.NoError(t, err)
	// An object that landed at an expired intent's key after all and was recorded without
	// completing it (a rejected one, say); and an Idempotency-Key on the other deleted intent.
	var objectID uuid.UUID
	require.NoError(t, b.st.Pool.QueryRow(b.ctx, `INSERT INTO objects (bucket, key, owner, upload_id, status, reason)
		SELECT bucket, key, owner, id, 'rejected', 'type' FROM uploads WHERE id = $1 RETURNING id`, ids[0]).Scan(&objectID))
	_, err = b.st.Pool.Exec(b.ctx, "UPDATE uploads SET idempotency_key = 'k1', idempotency_hash = '\\x00' WHERE id = $1", ids[1])
	require.NoError(t, err)

	m, reg := newMaintenance(t, b, now, 1000, 10)
	rep, err := m.Run(b.ctx, jobs.MaintenancePayload{ExpiryGrace: tasks.Duration(time.Hour)})
	require.NoError(t, err)
	require.Zero(t, rep.PrunedIntents, "retention 0 keeps intents forever")
	for i, tc := range cases {
		require.True(t, intentExists(t, b, ids[i]), tc.name)
	}

	rep, err = m.Run(b.ctx, jobs.MaintenancePayload{ExpiryGrace: tasks.Duration(time.Hour), IntentsRetention: tasks.Duration(retention)})
	require.NoError(t, err)
	require.True(t, rep.Complete)
	require.Equal(t, int64(2), rep.PrunedIntents)
	for i, tc := range cases {
		require.Equal(t, tc.kept, intentExists(t, b, ids[i]), tc.name)
	}
	require.True(t, intentExists(t, b, urlAlive), "aborted long ago, its deadline within the retention")
	require.Equal(t, 2.0, testkit.Metric(t, reg, "intake_intents_pruned_total"))
	require.Contains(t, b.logBuf.String(), "intents_pruned=2")

	var upload *uuid.UUID
	var status string
	require.NoError(t, b.st.Pool.QueryRow(b.ctx, "SELECT upload_id, status FROM objects WHERE id = $1", objectID).Scan(&upload, &status))
	require.Nil(t, upload, "the object stays, no longer linked to the deleted intent")
	require.Equal(t, "rejected", status)
	_, err = b.st.Pool.Exec(b.ctx, `INSERT INTO uploads (id, owner, bucket, key, method, filename, content_type, size, expires_at, idempotency_key, idempotency_hash)
		VALUES ($1, 'alice', $2, 'uploads/alice/again/f.bin', 'put', 'f.bin', 'application/octet-stream', 1, now(), 'k1', '\x00')`, uuid.New(), b.bucket)
	require.NoError(t, err, "the deleted intent's Idempotency-Key is free again")

	// A second run finds nothing more.
	rep, err = m.Run(b.ctx, jobs.MaintenancePayload{ExpiryGrace: tasks.Duration(time.Hour), IntentsRetention: tasks.Duration(retention)})
	require.NoError(t, err)
	require.Zero(t, rep.PrunedIntents)
}

// TestMaintenancePrunesEndedIntentsInBatches: a backlog of ended intents larger than a run's
// bound is deleted over runs, a batch at a time; the run stopped by its bound says so.
func TestMaintenancePrunesEndedIntentsInBatches(t *testing.T) {
	t.Parallel()
	b := setup(t)
	now := time.Now().UTC()
	_, err := b.st.Pool.Exec(b.ctx, `INSERT INTO uploads (id, owner, bucket, key, method, filename, content_type, size, expires_at, status, updated_at)
		SELECT gen_random_uuid(), 'alice', $1, 'uploads/alice/' || g || '/f.bin', 'put', 'f.bin', 'application/octet-stream', 1, $2::timestamptz,
		       CASE WHEN g % 2 = 0 THEN 'expired' ELSE 'aborted' END, $2::timestamptz - g * interval '1 second'
		FROM generate_series(1, 250) g`, b.bucket, now.Add(-48*time.Hour))
	require.NoError(t, err)
	recent := endedIntent(t, b, now, "expired", time.Hour)
	count := func() (n int) {
		require.NoError(t, b.st.Pool.QueryRow(b.ctx, "SELECT count(*) FROM uploads").Scan(&n))
		return n
	}
	require.Equal(t, 251, count())

	m, reg := newMaintenance(t, b, now, 100, 2)
	p := jobs.MaintenancePayload{ExpiryGrace: tasks.Duration(time.Hour), IntentsRetention: tasks.Duration(24 * time.Hour)}
	rep, err := m.Run(b.ctx, p)
	require.NoError(t, err)
	require.Equal(t, int64(200), rep.PrunedIntents, "two batches of 100, the run's bound")
	require.False(t, rep.Complete)
	rep, err = m.Run(b.ctx, p)
	require.NoError(t, err)
	require.Equal(t, int64(50), rep.PrunedIntents)
	require.True(t, rep.Complete)
	require.Equal(t, 1, count())
	require.True(t, intentExists(t, b, recent))
	require.Equal(t, 250.0, testkit.Metric(t, reg, "intake_intents_pruned_total"))
}

// TestMaintenanceTaskPrunesEndedIntents: the task's payload carries the retention; a payload
// without it (a scheduler of an older version, during a rolling upgrade) deletes no intent.
func TestMaintenanceTaskPrunesEndedIntents(t *testing.T) {
	t.Parallel()
	b := setup(t)
	now := time.Now().UTC()
	old := endedIntent(t, b, now, "aborted", 48*time.Hour)
	m, _ := newMaintenance(t, b, now, 1000, 10)
	run := func(payload string) {
		t.Helper()
		require.NoError(t, m.HandleMaintenance(context.Background(), asynq.NewTask(jobs.TypeMaintenance, []byte(payload))))
	}
	run(`{"events_retention":"720h0m0s","expiry_grace":"1h0m0s"}`)
	require.True(t, intentExists(t, b, old), "an old payload keeps intents")
	task, err := jobs.NewMaintenanceTask(jobs.MaintenancePayload{ExpiryGrace: tasks.Duration(time.Hour), IntentsRetention: tasks.Duration(24 * time.Hour)})
	require.NoError(t, err)
	run(string(task.Payload()))
	require.False(t, intentExists(t, b, old))
}
