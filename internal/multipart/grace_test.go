package multipart_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/intakehq/intake/internal/multipart"
	"github.com/intakehq/intake/internal/testkit"
	"github.com/intakehq/intake/worker/tasks"
)

// TestSweepKeepsTheGrace: a sweep that starts 100 ms after the deadline of intake's uploads aborts
// none of them, neither the one its listing shows nor the one only PostgreSQL knows (its upload id
// unknown to S3: the pass by id): a complete the API accepted just before the deadline may still
// be running (tasks.AbortGrace). Past the grace, both are aborted. The sweep had no grace: it
// aborted both at once.
func TestSweepKeepsTheGrace(t *testing.T) {
	t.Parallel()
	b := setup(t, multipart.Config{})
	deadline := time.Now()
	listed := testkit.CreateUploads(t, b.ctx, b.s3, b.bucket, []string{"g/listed.bin"}, 1)[0]
	listedID := b.intent(t, listed, deadline)
	byID := testkit.Upload{Key: "g/by-id.bin", ID: "bm90LWxpc3RlZA"}
	byIDID := b.intent(t, byID, deadline)

	sweepAt := func(now time.Time) multipart.SweepReport {
		mp, err := multipart.New(multipart.Config{S3: b.s3, Store: b.st.Multipart(), Now: func() time.Time { return now }})
		require.NoError(t, err)
		rep, err := mp.Sweep(b.ctx, multipart.SweepOptions{Bucket: b.bucket, OlderThan: time.Hour})
		require.NoError(t, err)
		return rep
	}
	rep := sweepAt(deadline.Add(100 * time.Millisecond))
	require.Zero(t, rep.Stale, "aborted within the grace")
	require.Zero(t, rep.Overdue)
	require.Contains(t, testkit.OpenUploads(t, b.ctx, b.s3, b.bucket), listed.ID)
	require.Empty(t, b.aborts(t))
	require.Equal(t, "pending", b.status(t, listedID))
	require.Equal(t, "pending", b.status(t, byIDID))

	rep = sweepAt(deadline.Add(tasks.AbortGrace - time.Second))
	require.Zero(t, rep.Stale, "aborted within the grace")

	rep = sweepAt(deadline.Add(tasks.AbortGrace + time.Second))
	require.Equal(t, 2, rep.Stale)
	require.Equal(t, 1, rep.Overdue)
	require.NotContains(t, testkit.OpenUploads(t, b.ctx, b.s3, b.bucket), listed.ID)
	require.Equal(t, "aborted", b.status(t, listedID))
}

// TestDeadlineAbortKeepsTheOwnersDeadline: a deadline abort is held to the deadline PostgreSQL
// records for one of intake's uploads, plus tasks.AbortGrace, whatever deadline its task carried
// (a task written into Redis by anyone who can): before then it does nothing and says when it is
// due. Abort never looked at the intent's deadline, and aborted the upload at once. An abort for
// the owner (ReasonAPI: POST /v1/jobs checks the owner) is not held to it.
func TestDeadlineAbortKeepsTheOwnersDeadline(t *testing.T) {
	t.Parallel()
	b := setup(t, multipart.Config{})
	ups := testkit.CreateUploads(t, b.ctx, b.s3, b.bucket, []string{"owner/a.bin", "owner/b.bin"}, 2)
	deadline := time.Now().Add(time.Hour).Truncate(time.Microsecond) // as PostgreSQL keeps it
	for _, u := range ups {
		b.intent(t, u, deadline)
	}

	for _, now := range []time.Time{time.Now(), deadline, deadline.Add(tasks.AbortGrace - time.Millisecond)} {
		mp, err := multipart.New(multipart.Config{S3: b.s3, Store: b.st.Multipart(), Now: func() time.Time { return now }})
		require.NoError(t, err)
		_, err = mp.Abort(b.ctx, multipart.AbortRequest{Bucket: b.bucket, Key: ups[0].Key, UploadID: ups[0].ID, Reason: multipart.ReasonDeadline})
		var nd *multipart.NotDueError
		require.ErrorAs(t, err, &nd, "at %s", now)
		require.True(t, nd.Deadline.Equal(deadline), nd.Deadline)
		require.True(t, nd.Due.Equal(deadline.Add(tasks.AbortGrace)), nd.Due)
		require.Contains(t, testkit.OpenUploads(t, b.ctx, b.s3, b.bucket), ups[0].ID)
		require.Empty(t, b.aborts(t), "nothing recorded")
	}

	due, err := multipart.New(multipart.Config{S3: b.s3, Store: b.st.Multipart(), Now: func() time.Time { return deadline.Add(tasks.AbortGrace) }})
	require.NoError(t, err)
	res, err := due.Abort(b.ctx, multipart.AbortRequest{Bucket: b.bucket, Key: ups[0].Key, UploadID: ups[0].ID, Reason: multipart.ReasonDeadline})
	require.NoError(t, err)
	require.Equal(t, multipart.OutcomeAborted, res.Outcome)

	res, err = b.mp.Abort(b.ctx, multipart.AbortRequest{Bucket: b.bucket, Key: ups[1].Key, UploadID: ups[1].ID, Reason: multipart.ReasonAPI})
	require.NoError(t, err, "the owner's abort runs at once")
	require.Equal(t, multipart.OutcomeAborted, res.Outcome)
}

// blockedStore is a PostgreSQL that stops answering: every call waits for its context to end.
type blockedStore struct {
	multipart.Store
	calls atomic.Int32
}

func (s *blockedStore) wait(ctx context.Context) error {
	s.calls.Add(1)
	<-ctx.Done()
	return ctx.Err()
}

func (s *blockedStore) Intents(ctx context.Context, _ string, _ []string) (map[string]multipart.Intent, error) {
	return nil, s.wait(ctx)
}

func (s *blockedStore) Overdue(ctx context.Context, _ multipart.OverdueQuery) ([]multipart.Intent, error) {
	return nil, s.wait(ctx)
}

func (s *blockedStore) PendingAborts(ctx context.Context, _ multipart.PendingQuery) ([]multipart.PendingAbort, error) {
	return nil, s.wait(ctx)
}

func (s *blockedStore) BeginAbort(ctx context.Context, _ multipart.AbortRecord) (string, error) {
	return "", s.wait(ctx)
}

func (s *blockedStore) BeginAborts(ctx context.Context, _, _ string, _ []multipart.Candidate) (map[string]string, error) {
	return nil, s.wait(ctx)
}

// TestStoreCallsAreBounded: with a PostgreSQL that stops answering, an abort and a sweep fail after
// the store timeout of each call, with an ErrStore error that a task retries (a deadline error is
// retryable), instead of holding their task until its own timeout (16 minutes, 2 hours): the
// calls ran on the task's context only.
func TestStoreCallsAreBounded(t *testing.T) {
	t.Parallel()
	st := &blockedStore{}
	page := []types.MultipartUpload{{Key: aws.String("k.bin"), UploadId: aws.String("dXBsb2Fk"), Initiated: aws.Time(time.Now().Add(-2 * time.Hour))}}
	mp, err := multipart.New(multipart.Config{S3: &fakeListing{S3API: unusedS3{}, list: s3Order(page)}, Store: st, StoreTimeout: 100 * time.Millisecond})
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second) // a task's context, far longer
	defer cancel()

	done := make(chan error, 2)
	go func() {
		_, err := mp.Abort(ctx, multipart.AbortRequest{Bucket: "b", Key: "k.bin", UploadID: "dXBsb2Fk", Reason: multipart.ReasonAPI})
		done <- err
	}()
	go func() {
		_, err := mp.Sweep(ctx, multipart.SweepOptions{Bucket: "b", OlderThan: time.Hour})
		done <- err
	}()
	for range 2 {
		select {
		case err := <-done:
			require.ErrorIs(t, err, multipart.ErrStore)
			require.ErrorIs(t, err, context.DeadlineExceeded)
		case <-time.After(10 * time.Second):
			t.Fatal("a PostgreSQL call that does not answer holds the abort or the sweep until the task's context ends")
		}
	}
	require.NoError(t, ctx.Err(), "the task's context is still alive")
	// The abort's intent lookup; the sweep's intents of the listed page, overdue and interrupted passes.
	require.EqualValues(t, 4, st.calls.Load())
}

// unusedS3 fails every call: the tests that use it never reach S3.
type unusedS3 struct{ multipart.S3API }

func (unusedS3) ListParts(context.Context, *s3.ListPartsInput, ...func(*s3.Options)) (*s3.ListPartsOutput, error) {
	return nil, errors.New("S3 reached")
}

// TestSweepSuccessOnlyForTheConfiguredScope: intake_sweep_last_success_timestamp_seconds says that
// the configured sweep works; an operator's sweep of a narrower prefix, or of another bucket, says
// nothing of that and leaves it alone (it used to set it, silencing IntakeSweepFailing while the
// configured sweep failed). Without a configured scope, only a sweep of a whole bucket sets it.
func TestSweepSuccessOnlyForTheConfiguredScope(t *testing.T) {
	t.Parallel()
	b := setup(t, multipart.Config{})
	for _, tc := range []struct {
		name           string
		bucket, prefix string // configured
		sweepBucket    string
		sweepPrefix    string
		counts         bool
	}{
		{"unconfigured, narrow prefix", "", "", b.bucket, "tenant-a/", false},
		{"unconfigured, whole bucket", "", "", b.bucket, "", true},
		{"narrower than configured", b.bucket, "uploads/", b.bucket, "uploads/tenant-a/", false},
		{"another prefix", b.bucket, "uploads/", b.bucket, "other/", false},
		{"the configured scope", b.bucket, "uploads/", b.bucket, "uploads/", true},
		{"wider than configured", b.bucket, "uploads/", b.bucket, "", true},
		{"configured whole bucket, narrow sweep", b.bucket, "", b.bucket, "a/", false},
		{"another bucket", "elsewhere", "", b.bucket, "", false},
	} {
		m, err := multipart.NewMetrics(prometheus.NewRegistry())
		require.NoError(t, err)
		mp, err := multipart.New(multipart.Config{S3: b.s3, Store: b.st.Multipart(), Metrics: m, SweepBucket: tc.bucket, SweepPrefix: tc.prefix})
		require.NoError(t, err)
		_, err = mp.Sweep(b.ctx, multipart.SweepOptions{Bucket: tc.sweepBucket, Prefix: tc.sweepPrefix, OlderThan: time.Hour})
		require.NoError(t, err, tc.name)
		require.Equal(t, tc.counts, testkit.Value(t, m.SweepLastSuccess) > 0, tc.name)
	}
}

// TestCompleteEndsWithinTheGrace: the bounds of a complete leave it, whole, within the grace no
// abort of intake's may use: the API accepts a complete until the deadline, and it must be over
// (ListParts pages and CompleteMultipartUpload) before the upload may be aborted.
func TestCompleteEndsWithinTheGrace(t *testing.T) {
	t.Parallel()
	require.Less(t, multipart.MaxCompleteDuration, tasks.AbortGrace)
	require.GreaterOrEqual(t, multipart.MaxCompleteDuration-multipart.CompleteTimeout, 30*time.Second, "time left for ListParts")
	require.Greater(t, tasks.AbortDue(time.Unix(0, 0)).Sub(time.Unix(0, 0)), tasks.AbortGrace)
}
