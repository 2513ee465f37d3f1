package jobs_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/google/uuid"
	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/intakehq/intake/internal/multipart"
	"github.com/intakehq/intake/internal/store/dbq"
	"github.com/intakehq/intake/internal/testkit"
	"github.com/intakehq/intake/worker/jobs"
	"github.com/intakehq/intake/worker/tasks"
)

// newMaintenance returns a Maintenance over the bundle's schema with the given bounds.
func newMaintenance(t *testing.T, b *testBundle, now time.Time, batch, maxBatches int) (*jobs.Maintenance, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	m, err := jobs.NewMaintenance(jobs.MaintenanceConfig{
		Store: jobs.NewMaintenanceStore(b.st.Q), Registerer: reg, Log: b.log,
		Now: func() time.Time { return now }, BatchSize: batch, MaxBatches: maxBatches,
	})
	require.NoError(t, err)
	return m, reg
}

// TestMaintenanceExpiresIntents: the intents past their deadline (plus the grace) are expired,
// except multipart ones whose abort has not been recorded: the abort path still needs them pending.
// After the deadline abort ran (the upload aborted in S3, or found gone), the intent ends aborted or
// expired; never is an open upload's intent expired before its abort.
func TestMaintenanceExpiresIntents(t *testing.T) {
	t.Parallel()
	b := setup(t)
	now := time.Now().UTC()
	open := testkit.CreateUploads(t, b.ctx, b.s3, b.bucket, []string{"mp/open.bin", "mp/gone.bin"}, 2)

	cases := []struct {
		name      string
		method    string
		status    string
		expiresIn time.Duration
		upload    *testkit.Upload
		want      string // status after the first maintenance run
	}{
		{"put past deadline and grace", "put", "pending", -2 * time.Hour, nil, "expired"},
		{"post past deadline and grace", "post", "pending", -90 * time.Minute, nil, "expired"},
		{"put within the grace (an upload may still be landing)", "put", "pending", -30 * time.Minute, nil, "pending"},
		{"put before its deadline", "put", "pending", time.Hour, nil, "pending"},
		{"completed intent", "put", "completed", -48 * time.Hour, nil, "completed"},
		{"multipart past deadline, upload open, no abort yet", "multipart", "pending", -2 * time.Hour, &open[0], "pending"},
		{"multipart past deadline, abort recorded without settling the intent", "multipart", "pending", -2 * time.Hour, &open[1], "expired"},
	}
	ids := make([]uuid.UUID, len(cases))
	for i, tc := range cases {
		arg := dbq.Upload{
			ID: uuid.New(), Owner: "alice", Bucket: b.bucket, Key: fmt.Sprintf("uploads/alice/%d/f.bin", i), Method: tc.method,
			Filename: "f.bin", ContentType: "application/octet-stream", Size: 1, ExpiresAt: now.Add(tc.expiresIn),
		}
		if tc.upload != nil {
			arg.Key, arg.MultipartUploadID = tc.upload.Key, aws.String(tc.upload.ID)
		}
		row, err := testkit.CreateUpload(b.ctx, b.st.Pool, arg)
		require.NoError(t, err, tc.name)
		ids[i] = row.ID
		if tc.status != "pending" {
			_, err = b.st.Pool.Exec(b.ctx, "UPDATE uploads SET status = $1 WHERE id = $2", tc.status, row.ID)
			require.NoError(t, err)
		}
	}
	// The upload of the second multipart intent was aborted outside intake, and its deadline abort
	// recorded that without settling the intent (it could not look at the key: internal/multipart
	// leaves the intent pending then).
	_, err := b.s3.AbortMultipartUpload(b.ctx, &s3.AbortMultipartUploadInput{
		Bucket: aws.String(b.bucket), Key: aws.String(open[1].Key), UploadId: aws.String(open[1].ID)})
	require.NoError(t, err)
	moved, err := b.st.Multipart().RecordAbort(b.ctx, multipart.AbortRecord{Bucket: b.bucket, Key: open[1].Key, UploadID: open[1].ID,
		Reason: multipart.ReasonDeadline, Outcome: multipart.OutcomeGone, Object: multipart.ObjectUnknown})
	require.NoError(t, err)
	require.Empty(t, moved)

	status := func(id uuid.UUID) string {
		u, err := testkit.GetUpload(b.ctx, b.st.Pool, id)
		require.NoError(t, err)
		return u.Status
	}
	m, reg := newMaintenance(t, b, now, 1000, 10)
	rep, err := m.Run(b.ctx, jobs.MaintenancePayload{ExpiryGrace: tasks.Duration(time.Hour)})
	require.NoError(t, err)
	require.True(t, rep.Complete)
	require.Equal(t, 3, rep.Expired)
	for i, tc := range cases {
		require.Equal(t, tc.want, status(ids[i]), tc.name)
	}
	require.Equal(t, 1.0, testkit.Metric(t, reg, "intake_intents_expired_total", "method", "put"))
	require.Equal(t, 1.0, testkit.Metric(t, reg, "intake_intents_expired_total", "method", "post"))
	require.Equal(t, 1.0, testkit.Metric(t, reg, "intake_intents_expired_total", "method", "multipart"))

	// The open upload's intent is still there for the abort path: the sweep lists it as past its
	// deadline, and the deadline abort aborts the upload in S3 and the intent with it.
	overdue, err := b.st.Multipart().Overdue(b.ctx, multipart.OverdueQuery{Bucket: b.bucket, Now: now, AfterExpiresAt: time.Unix(0, 0), Limit: 10})
	require.NoError(t, err)
	require.Len(t, overdue, 1)
	require.Equal(t, open[0].ID, overdue[0].UploadID)
	res, err := b.mp.Abort(b.ctx, multipart.AbortRequest{Bucket: b.bucket, Key: open[0].Key, UploadID: open[0].ID, Reason: multipart.ReasonDeadline})
	require.NoError(t, err)
	require.Equal(t, multipart.OutcomeAborted, res.Outcome)
	require.NotContains(t, testkit.OpenUploads(t, b.ctx, b.s3, b.bucket), open[0].ID)
	require.Equal(t, "aborted", status(ids[5]))

	// A second run finds nothing more.
	rep, err = m.Run(b.ctx, jobs.MaintenancePayload{ExpiryGrace: tasks.Duration(time.Hour)})
	require.NoError(t, err)
	require.Zero(t, rep.Expired)
}

// TestMaintenancePrunesEventsInBatches: archived events older than the retention are deleted in
// bounded batches, newer ones stay; a run stopped by its batch bound says so and the next finishes;
// a zero retention keeps everything.
func TestMaintenancePrunesEventsInBatches(t *testing.T) {
	t.Parallel()
	b := setup(t)
	now := time.Now().UTC()
	_, err := b.st.Pool.Exec(b.ctx, `INSERT INTO events (message_id, received_at, outcome, body)
		SELECT 'old-' || g, $1::timestamptz - g * interval '1 second', 'processed', '{}' FROM generate_series(1, 2500) g`, now.Add(-31*24*time.Hour))
	require.NoError(t, err)
	_, err = b.st.Pool.Exec(b.ctx, `INSERT INTO events (message_id, received_at, outcome, body)
		SELECT 'new-' || g, $1::timestamptz, 'processed', '{}' FROM generate_series(1, 10) g`, now.Add(-29*24*time.Hour))
	require.NoError(t, err)
	count := func() (n int) {
		require.NoError(t, b.st.Pool.QueryRow(b.ctx, "SELECT count(*) FROM events").Scan(&n))
		return n
	}

	m, reg := newMaintenance(t, b, now, 1000, 2)
	rep, err := m.Run(b.ctx, jobs.MaintenancePayload{ExpiryGrace: tasks.Duration(time.Hour)})
	require.NoError(t, err)
	require.Zero(t, rep.Pruned, "retention 0 keeps events forever")
	require.Equal(t, 2510, count())

	rep, err = m.Run(b.ctx, jobs.MaintenancePayload{EventsRetention: tasks.Duration(30 * 24 * time.Hour), ExpiryGrace: tasks.Duration(time.Hour)})
	require.NoError(t, err)
	require.Equal(t, int64(2000), rep.Pruned, "two batches of 1000, the run's bound")
	require.False(t, rep.Complete)
	rep, err = m.Run(b.ctx, jobs.MaintenancePayload{EventsRetention: tasks.Duration(30 * 24 * time.Hour), ExpiryGrace: tasks.Duration(time.Hour)})
	require.NoError(t, err)
	require.Equal(t, int64(500), rep.Pruned)
	require.True(t, rep.Complete)
	require.Equal(t, 10, count())
	var oldLeft int
	require.NoError(t, b.st.Pool.QueryRow(b.ctx, "SELECT count(*) FROM events WHERE message_id LIKE 'old-%'").Scan(&oldLeft))
	require.Zero(t, oldLeft)
	require.Equal(t, 2500.0, testkit.Metric(t, reg, "intake_events_pruned_total"))
}

// TestMaintenanceTaskEndToEnd: the scheduler enqueues the maintenance task (ID "maintenance:<period>",
// a task neither POST /v1/jobs nor app backends can enqueue) and the jobs server runs it.
func TestMaintenanceTaskEndToEnd(t *testing.T) {
	t.Parallel()
	b := setup(t)
	require.False(t, tasks.KnownType(jobs.TypeMaintenance), "not enqueueable through POST /v1/jobs")
	row, err := testkit.CreateUpload(b.ctx, b.st.Pool, dbq.Upload{
		ID: uuid.New(), Owner: "alice", Bucket: b.bucket, Key: "uploads/alice/x/late.png", Method: "put",
		Filename: "late.png", ContentType: "image/png", Size: 1, ExpiresAt: time.Now().Add(-3 * time.Hour),
	})
	require.NoError(t, err)

	m, err := jobs.NewMaintenance(jobs.MaintenanceConfig{Store: jobs.NewMaintenanceStore(b.st.Q), Log: b.log})
	require.NoError(t, err)
	srv, err := jobs.NewServer(jobs.ServerConfig{Redis: b.redis, ShutdownTimeout: 5 * time.Second, DelayedTaskCheckInterval: 100 * time.Millisecond},
		jobs.NewMux(&jobs.Handlers{Maintenance: m}, b.metrics, b.log))
	require.NoError(t, err)
	sched, err := jobs.NewMaintenancePeriodic(jobs.MaintenancePeriodicConfig{
		Redis: b.redis, Cron: "@every 1s", Log: b.log,
		Payload: jobs.MaintenancePayload{EventsRetention: tasks.Duration(720 * time.Hour), ExpiryGrace: tasks.Duration(time.Hour)},
	})
	require.NoError(t, err)
	ctx, stop := context.WithCancel(b.ctx)
	done := make(chan error, 2)
	go func() { done <- srv.Run(ctx) }()
	go func() { done <- sched.Run(ctx) }()
	require.Eventually(t, func() bool {
		u, err := testkit.GetUpload(b.ctx, b.st.Pool, row.ID)
		return err == nil && u.Status == "expired"
	}, 30*time.Second, 100*time.Millisecond, "logs:\n%s", b.logBuf.String())
	stop()
	require.NoError(t, <-done)
	require.NoError(t, <-done)

	insp := asynq.NewInspector(b.redis)
	t.Cleanup(func() { _ = insp.Close() })
	done2, err := insp.ListCompletedTasks(tasks.QueueLow)
	require.NoError(t, err)
	require.NotEmpty(t, done2)
	for _, ti := range done2 {
		require.Equal(t, jobs.TypeMaintenance, ti.Type)
		require.True(t, strings.HasPrefix(ti.ID, "maintenance:"), ti.ID)
	}
	require.Contains(t, b.logBuf.String(), "maintenance done")
}

// TestMaintenancePayloadIsChecked: a malformed payload fails without retry.
func TestMaintenancePayloadIsChecked(t *testing.T) {
	t.Parallel()
	m, err := jobs.NewMaintenance(jobs.MaintenanceConfig{Store: jobs.NewMaintenanceStore(nil)})
	require.NoError(t, err)
	for _, p := range []string{`{`, `{"events_retention":"-1h"}`, `{"expiry_grace":"soon"}`, `{"intents_retention":"-1h"}`} {
		err := m.HandleMaintenance(context.Background(), asynq.NewTask(jobs.TypeMaintenance, []byte(p)))
		require.ErrorIs(t, err, asynq.SkipRetry, p)
		require.ErrorIs(t, err, tasks.ErrInvalidPayload, p)
	}
	_, err = jobs.NewMaintenanceTask(jobs.MaintenancePayload{ExpiryGrace: -1})
	require.Error(t, err)
	_, err = jobs.NewMaintenanceTask(jobs.MaintenancePayload{IntentsRetention: -1})
	require.ErrorIs(t, err, tasks.ErrInvalidPayload)
	task, err := jobs.NewMaintenanceTask(jobs.MaintenancePayload{EventsRetention: tasks.Duration(time.Hour), IntentsRetention: tasks.Duration(2 * time.Hour)})
	require.NoError(t, err)
	var back jobs.MaintenancePayload
	require.NoError(t, json.Unmarshal(task.Payload(), &back))
	require.Equal(t, tasks.Duration(time.Hour), back.EventsRetention)
	require.Equal(t, tasks.Duration(2*time.Hour), back.IntentsRetention)
}
