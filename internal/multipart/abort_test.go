package multipart_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/intakehq/intake/internal/multipart"
	"github.com/intakehq/intake/internal/testkit"
	"github.com/intakehq/intake/worker/tasks"
)

// TestAbortOfUnknownUpload checks that aborting an upload that never existed is "gone", not an error.
func TestAbortOfUnknownUpload(t *testing.T) {
	t.Parallel()
	b := setup(t, multipart.Config{})
	res, err := b.mp.Abort(b.ctx, multipart.AbortRequest{Bucket: b.bucket, Key: "nope.bin", UploadID: "bm9wZQ", Reason: multipart.ReasonAPI})
	require.NoError(t, err)
	require.Equal(t, multipart.OutcomeGone, res.Outcome)
	require.Equal(t, multipart.ObjectAbsent, res.Object)
	require.Empty(t, res.IntentStatus)
	rows := b.aborts(t)
	require.Equal(t, "gone", rows["bm9wZQ"].Outcome)
	require.Nil(t, rows["bm9wZQ"].Initiated)
	require.Zero(t, testkit.Value(t, b.metrics.Aborted.WithLabelValues(multipart.ReasonAPI)))
}

// TestAbortInAMissingBucketIsNoGoneUpload: S3 answering that the bucket does not exist (MinIO back
// on an empty volume, the endpoint of another cluster) says nothing of the upload: the abort fails
// (retried; the row stays "aborting" for the sweep) instead of recording the upload gone.
func TestAbortInAMissingBucketIsNoGoneUpload(t *testing.T) {
	t.Parallel()
	b := setup(t, multipart.Config{})
	missing := testkit.Name("t-absent-")
	_, err := b.mp.Abort(b.ctx, multipart.AbortRequest{Bucket: missing, Key: "k.bin", UploadID: "dXBsb2Fk", Reason: multipart.ReasonAPI})
	require.Error(t, err)
	require.NotEqual(t, "gone", b.aborts(t)["dXBsb2Fk"].Outcome, "nothing says the upload is gone")
	require.NoError(t, b.mp.Discard(b.ctx, b.bucket, "nope.bin", "bm9wZQ"), "an unknown upload in a bucket that exists is no error")
	require.Error(t, b.mp.Discard(b.ctx, missing, "k.bin", "dXBsb2Fk"), "a missing bucket is")
}

// TestAbortSettlesIntentByObject is the one rule for "gone": whoever aborts (the API, the deadline
// task, the sweep), the intent follows the object at the key. An open upload is aborted and its
// intent aborted; an upload completed before the abort is "gone" and its intent completed, as is
// one whose intent an earlier racing abort had marked aborted.
func TestAbortSettlesIntentByObject(t *testing.T) {
	t.Parallel()
	b := setup(t, multipart.Config{})
	ups := testkit.CreateUploads(t, b.ctx, b.s3, b.bucket, []string{"open.bin", "done.bin", "done-after-abort.bin"}, 3)
	open, done, doneAfter := ups[0], ups[1], ups[2]
	part := make([]byte, 1234)
	for _, u := range ups {
		etag := b.uploadPart(t, u, 1, part)
		if u != open {
			b.complete(t, u, etag)
		}
	}
	deadline := time.Now().Add(-tasks.AbortGrace - time.Minute) // due: a deadline abort may run
	openID, doneID, doneAfterID := b.intent(t, open, deadline), b.intent(t, done, deadline), b.intent(t, doneAfter, deadline)
	_, err := b.st.Pool.Exec(b.ctx, "UPDATE uploads SET status = 'aborted' WHERE id = $1", doneAfterID)
	require.NoError(t, err)

	for _, tc := range []struct {
		u       testkit.Upload
		reason  string
		outcome string
		object  multipart.ObjectState
		status  string
	}{
		{open, multipart.ReasonAPI, "aborted", multipart.ObjectAbsent, "aborted"},
		{done, multipart.ReasonDeadline, "gone", multipart.ObjectExists, "completed"},
		{doneAfter, multipart.ReasonSweep, "gone", multipart.ObjectExists, "completed"},
	} {
		res, err := b.mp.Abort(b.ctx, multipart.AbortRequest{Bucket: b.bucket, Key: tc.u.Key, UploadID: tc.u.ID, Reason: tc.reason})
		require.NoError(t, err, tc.u.Key)
		require.Equal(t, tc.outcome, res.Outcome, tc.u.Key)
		require.Equal(t, tc.object, res.Object, tc.u.Key)
		require.Equal(t, tc.status, res.IntentStatus, tc.u.Key)
		require.Equal(t, tc.outcome, b.aborts(t)[tc.u.ID].Outcome, tc.u.Key)
	}
	require.Equal(t, "aborted", b.status(t, openID))
	require.Equal(t, "completed", b.status(t, doneID))
	require.Equal(t, "completed", b.status(t, doneAfterID))
	require.NotNil(t, b.aborts(t)[open.ID].Initiated, "initiated comes from the intent")
	require.Equal(t, 1.0, testkit.Value(t, b.metrics.Aborted.WithLabelValues(multipart.ReasonAPI)))
	require.Equal(t, float64(len(part)), testkit.Value(t, b.metrics.BytesReclaimed))

	// Aborting again changes nothing: the first row wins, the intent stays as S3 shows it.
	res, err := b.mp.Abort(b.ctx, multipart.AbortRequest{Bucket: b.bucket, Key: open.Key, UploadID: open.ID, Reason: multipart.ReasonDeadline})
	require.NoError(t, err)
	require.Equal(t, multipart.OutcomeGone, res.Outcome)
	require.Empty(t, res.IntentStatus, "already aborted")
	require.Equal(t, "api", b.aborts(t)[open.ID].Reason)
}
