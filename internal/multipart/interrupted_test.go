package multipart_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/stretchr/testify/require"

	"github.com/intakehq/intake/internal/multipart"
	"github.com/intakehq/intake/internal/objstore"
	"github.com/intakehq/intake/internal/store"
	"github.com/intakehq/intake/internal/store/dbq"
	"github.com/intakehq/intake/internal/testkit"
	"github.com/intakehq/intake/worker/tasks"
)

// dyingStore is PostgreSQL as a process killed right after S3 answered its abort sees it: the abort
// is begun, its outcome never recorded.
type dyingStore struct{ multipart.Store }

func (dyingStore) RecordAbort(context.Context, multipart.AbortRecord) (string, error) {
	return "", errors.New("process killed before recording")
}

// unreachableStore refuses everything: PostgreSQL is down before the abort is begun.
type unreachableStore struct{ multipart.Store }

func (unreachableStore) BeginAbort(context.Context, multipart.AbortRecord) (string, error) {
	return "", errors.New("connection refused")
}

// TestAbortInterrupted breaks the promise "every abort intake sends is recorded" where it used to
// break: a process that dies between S3's answer and PostgreSQL. An upload intake did not create is
// then no longer listed by S3, so no sweep could find it again; intake's own upload would be
// recorded "gone" and its bytes never counted. Both must end recorded "aborted", with the intent
// settled, by the first sweep after ResumeAfter, and not before (an abort in flight is not raced).
func TestAbortInterrupted(t *testing.T) {
	t.Parallel()
	b := setup(t, multipart.Config{})
	ups := testkit.CreateUploads(t, b.ctx, b.s3, b.bucket, []string{"foreign.bin", "ours.bin", "kept.bin"}, 3)
	foreign, ours, kept := ups[0], ups[1], ups[2]
	for _, u := range ups {
		b.uploadPart(t, u, 1, make([]byte, 100))
	}
	oursID := b.intent(t, ours, time.Now().Add(-tasks.AbortGrace-time.Minute))
	keptID := b.intent(t, kept, time.Now().Add(-tasks.AbortGrace-time.Minute))

	dying, err := multipart.New(multipart.Config{S3: b.s3, Store: dyingStore{b.st.Multipart()}})
	require.NoError(t, err)
	_, err = dying.Abort(b.ctx, multipart.AbortRequest{Bucket: b.bucket, Key: foreign.Key, UploadID: foreign.ID, Reason: multipart.ReasonSweep, Foreign: true})
	require.ErrorContains(t, err, "process killed")
	_, err = dying.Abort(b.ctx, multipart.AbortRequest{Bucket: b.bucket, Key: ours.Key, UploadID: ours.ID, Reason: multipart.ReasonDeadline})
	require.ErrorContains(t, err, "process killed")

	// PostgreSQL down before the abort is begun: nothing is sent to S3.
	down, err := multipart.New(multipart.Config{S3: b.s3, Store: unreachableStore{b.st.Multipart()}})
	require.NoError(t, err)
	_, err = down.Abort(b.ctx, multipart.AbortRequest{Bucket: b.bucket, Key: kept.Key, UploadID: kept.ID, Reason: multipart.ReasonDeadline})
	require.ErrorIs(t, err, multipart.ErrStore)

	open := testkit.OpenUploads(t, b.ctx, b.s3, b.bucket)
	require.NotContains(t, open, foreign.ID, "S3 aborted it")
	require.NotContains(t, open, ours.ID, "S3 aborted it")
	require.Contains(t, open, kept.ID, "no abort is sent that was not begun in PostgreSQL")
	rows := b.aborts(t)
	require.Equal(t, "aborting", rows[foreign.ID].Outcome)
	require.Equal(t, "aborting", rows[ours.ID].Outcome)
	require.NotContains(t, rows, kept.ID)

	// The intent stays pending while its abort is unrecorded: the maintenance task must not expire it.
	expired, err := b.st.Q.ExpireIntents(b.ctx, dbq.ExpireIntentsParams{Cutoff: time.Now(), MaxRows: 100})
	require.NoError(t, err)
	require.Empty(t, expired)
	require.Equal(t, "pending", b.status(t, oursID))

	// A sweep right away leaves the fresh "aborting" rows to the attempts that may still run.
	rep, err := b.mp.Sweep(b.ctx, multipart.SweepOptions{Bucket: b.bucket, OlderThan: time.Hour, DryRun: true})
	require.NoError(t, err)
	require.Zero(t, rep.Interrupted)

	// A sweep after ResumeAfter resumes both.
	later, err := multipart.New(multipart.Config{S3: b.s3, Store: b.st.Multipart(), Metrics: b.metrics,
		Log: slog.New(slog.NewTextHandler(b.logBuf, nil)), Now: func() time.Time { return time.Now().Add(multipart.ResumeAfter + time.Second) }})
	require.NoError(t, err)
	var sources []string
	rep, err = later.Sweep(b.ctx, multipart.SweepOptions{Bucket: b.bucket, OlderThan: 100 * time.Hour,
		OnCandidate: func(c multipart.Candidate) { sources = append(sources, c.Source+"/"+c.Reason) }})
	require.NoError(t, err)
	require.Equal(t, 2, rep.Interrupted)
	require.Equal(t, 3, rep.Aborted, "S3 forgot the interrupted uploads after intake asked: aborted, not gone")
	require.Zero(t, rep.Gone)
	require.ElementsMatch(t, []string{"listing/", "interrupted/sweep", "interrupted/deadline"}, sources, "kept is past its deadline too")
	rows = b.aborts(t)
	require.Equal(t, "aborted", rows[foreign.ID].Outcome)
	require.Equal(t, "aborted", rows[ours.ID].Outcome)
	require.Equal(t, "deadline", rows[ours.ID].Reason, "the interrupted attempt's reason")
	require.Equal(t, "aborted", b.status(t, oursID), "the intent follows the object at the key (none)")
	require.Equal(t, "aborted", b.status(t, keptID))
	require.Equal(t, 1.0, testkit.Value(t, b.metrics.Aborted.WithLabelValues(multipart.ReasonDeadline)))
	require.Contains(t, b.logBuf.String(), "resuming an interrupted abort")

	// Settled rows are not resumed again.
	rep, err = later.Sweep(b.ctx, multipart.SweepOptions{Bucket: b.bucket, OlderThan: 100 * time.Hour})
	require.NoError(t, err)
	require.Zero(t, rep.Interrupted)
}

// TestAbortRacesRecordAborted: two attempts at one upload (the deadline task and the sweep) race;
// whichever records last, the row ends "aborted" once either saw S3 accept the abort, never "gone".
func TestAbortRacesRecordAborted(t *testing.T) {
	t.Parallel()
	b := setup(t, multipart.Config{})
	u := testkit.CreateUploads(t, b.ctx, b.s3, b.bucket, []string{"raced.bin"}, 1)[0]
	// The first attempt begins, then S3 aborts the upload for the second, which records first...
	prior, err := b.st.Multipart().BeginAbort(b.ctx, multipart.AbortRecord{Bucket: b.bucket, Key: u.Key, UploadID: u.ID, Reason: multipart.ReasonSweep})
	require.NoError(t, err)
	require.Empty(t, prior, "the first attempt writes the row")
	res, err := b.mp.Abort(b.ctx, multipart.AbortRequest{Bucket: b.bucket, Key: u.Key, UploadID: u.ID, Reason: multipart.ReasonDeadline, Foreign: true})
	require.NoError(t, err)
	require.True(t, res.Resumed, "the second attempt sees the first one's row")
	require.Equal(t, multipart.OutcomeAborted, res.Outcome)
	// ...and the first, finding the upload gone, records "gone" last: the row stays "aborted".
	_, err = b.st.Multipart().RecordAbort(b.ctx, multipart.AbortRecord{Bucket: b.bucket, Key: u.Key, UploadID: u.ID, Reason: multipart.ReasonSweep, Outcome: multipart.OutcomeGone})
	require.NoError(t, err)
	require.Equal(t, "aborted", b.aborts(t)[u.ID].Outcome)
	require.Equal(t, "sweep", b.aborts(t)[u.ID].Reason, "the first row's reason")

	// The other order: "gone" recorded first, then "aborted" replaces it.
	v := testkit.CreateUploads(t, b.ctx, b.s3, b.bucket, []string{"raced-2.bin"}, 1)[0]
	_, err = b.st.Multipart().RecordAbort(b.ctx, multipart.AbortRecord{Bucket: b.bucket, Key: v.Key, UploadID: v.ID, Reason: multipart.ReasonSweep, Outcome: multipart.OutcomeGone})
	require.NoError(t, err)
	_, err = b.st.Multipart().RecordAbort(b.ctx, multipart.AbortRecord{Bucket: b.bucket, Key: v.Key, UploadID: v.ID, Reason: multipart.ReasonDeadline, Outcome: multipart.OutcomeAborted})
	require.NoError(t, err)
	require.Equal(t, "aborted", b.aborts(t)[v.ID].Outcome)
	// A finished row is never set back to "gone".
	_, err = b.st.Multipart().RecordAbort(b.ctx, multipart.AbortRecord{Bucket: b.bucket, Key: v.Key, UploadID: v.ID, Reason: multipart.ReasonDeadline, Outcome: multipart.OutcomeGone})
	require.NoError(t, err)
	require.Equal(t, "aborted", b.aborts(t)[v.ID].Outcome)

	// The sweep's page-at-once begin says the same as BeginAbort, row by row, and touches no
	// finished row.
	w := testkit.CreateUploads(t, b.ctx, b.s3, b.bucket, []string{"page-1.bin", "page-2.bin"}, 2)
	_, err = b.st.Multipart().BeginAbort(b.ctx, multipart.AbortRecord{Bucket: b.bucket, Key: w[1].Key, UploadID: w[1].ID, Reason: multipart.ReasonDeadline})
	require.NoError(t, err)
	priors, err := b.st.Multipart().BeginAborts(b.ctx, b.bucket, multipart.ReasonSweep, []multipart.Candidate{
		{Key: v.Key, UploadID: v.ID, Initiated: time.Now()}, {Key: w[0].Key, UploadID: w[0].ID, Initiated: time.Now()}, {Key: w[1].Key, UploadID: w[1].ID, Initiated: time.Now()}})
	require.NoError(t, err)
	require.Equal(t, map[string]string{v.ID: "aborted", w[0].ID: "", w[1].ID: "aborting"}, priors)
	rows := b.aborts(t)
	require.Equal(t, "aborted", rows[v.ID].Outcome)
	require.Equal(t, []string{"aborting", "sweep"}, []string{rows[w[0].ID].Outcome, rows[w[0].ID].Reason})
	require.Equal(t, "deadline", rows[w[1].ID].Reason, "the first row's reason")
}

// TestAbortInterruptedByOutage is TestAbortInterrupted with a real fault instead of a store that
// refuses: PostgreSQL (through toxiproxy) goes away after the abort was begun, while S3 (through a
// proxy adding 1.5 s to every answer) is still answering ListParts; S3 then aborts the upload and
// every attempt to record it fails. Once PostgreSQL is back, the first sweep after ResumeAfter
// records the abort "aborted".
func TestAbortInterruptedByOutage(t *testing.T) {
	t.Parallel()
	b := setup(t, multipart.Config{})
	u := testkit.CreateUploads(t, b.ctx, b.s3, b.bucket, []string{"cut-off.bin"}, 1)[0]
	b.uploadPart(t, u, 1, make([]byte, 100))

	pg := testkit.NewProxy(t, "postgres", "127.0.0.1:5432")
	s3p := testkit.NewProxy(t, "s3", strings.TrimPrefix(testkit.AWS().S3Endpoint, "http://"))
	s3p.Latency(testkit.Downstream, 1500*time.Millisecond, 0)
	faulty, err := multipart.New(multipart.Config{
		S3:    objstore.NewClient(testkit.AWSConfig(), testkit.AWSAt(s3p.URL(), testkit.AWS().SQSEndpoint)),
		Store: testkit.StoreVia(t, b.st, pg.Addr).Multipart(), CallTimeout: 10 * time.Second,
	})
	require.NoError(t, err)

	done := make(chan error, 1)
	go func() {
		_, err := faulty.Abort(b.ctx, multipart.AbortRequest{Bucket: b.bucket, Key: u.Key, UploadID: u.ID, Reason: multipart.ReasonSweep, Foreign: true})
		done <- err
	}()
	require.Eventually(t, func() bool { return b.aborts(t)[u.ID].Outcome == "aborting" }, 10*time.Second, 10*time.Millisecond)
	time.Sleep(200 * time.Millisecond) // the row's answer reaches the client; ListParts waits 1.5 s for S3
	pg.Down()
	select {
	case err = <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("Abort did not return while PostgreSQL was down")
	}
	require.ErrorContains(t, err, "record aborted of upload")
	require.NotContains(t, testkit.OpenUploads(t, b.ctx, b.s3, b.bucket), u.ID, "S3 aborted it")
	require.Equal(t, "aborting", b.aborts(t)[u.ID].Outcome, "the row written before the abort is all PostgreSQL has")

	pg.Up()
	later, err := multipart.New(multipart.Config{S3: b.s3, Store: b.st.Multipart(),
		Now: func() time.Time { return time.Now().Add(multipart.ResumeAfter + time.Second) }})
	require.NoError(t, err)
	rep, err := later.Sweep(b.ctx, multipart.SweepOptions{Bucket: b.bucket, OlderThan: 100 * time.Hour})
	require.NoError(t, err)
	require.Equal(t, 1, rep.Interrupted)
	require.Equal(t, 1, rep.Aborted)
	require.Equal(t, "aborted", b.aborts(t)[u.ID].Outcome)
}

// TestAbortResumedAfterComplete: an attempt died after writing its row and before sending the abort,
// and the client then completed its upload. Resuming finds the upload gone and the object at the
// key: the outcome is "gone" (the client completed it, intake aborted nothing) and the intent
// completed.
func TestAbortResumedAfterComplete(t *testing.T) {
	t.Parallel()
	b := setup(t, multipart.Config{})
	u := testkit.CreateUploads(t, b.ctx, b.s3, b.bucket, []string{"finished.bin"}, 1)[0]
	id := b.intent(t, u, time.Now().Add(-tasks.AbortGrace-time.Minute))
	etag := b.uploadPart(t, u, 1, make([]byte, 100))
	prior, err := b.st.Multipart().BeginAbort(b.ctx, multipart.AbortRecord{Bucket: b.bucket, Key: u.Key, UploadID: u.ID, Reason: multipart.ReasonDeadline})
	require.NoError(t, err)
	require.Empty(t, prior)
	_, err = b.s3.CompleteMultipartUpload(b.ctx, &s3.CompleteMultipartUploadInput{Bucket: aws.String(b.bucket), Key: aws.String(u.Key),
		UploadId: aws.String(u.ID), MultipartUpload: &types.CompletedMultipartUpload{Parts: []types.CompletedPart{{ETag: aws.String(etag), PartNumber: aws.Int32(1)}}}})
	require.NoError(t, err)

	res, err := b.mp.Abort(b.ctx, multipart.AbortRequest{Bucket: b.bucket, Key: u.Key, UploadID: u.ID, Reason: multipart.ReasonDeadline})
	require.NoError(t, err)
	require.True(t, res.Resumed)
	require.Equal(t, multipart.OutcomeGone, res.Outcome)
	require.Equal(t, multipart.ObjectExists, res.Object)
	require.Equal(t, "gone", b.aborts(t)[u.ID].Outcome)
	require.Equal(t, "completed", b.status(t, id))
	require.Zero(t, testkit.Value(t, b.metrics.Aborted.WithLabelValues(multipart.ReasonDeadline)), "nothing was aborted")
}

// racingStore is internal/store's Multipart (a multipart.AbortRecorder) whose afterBegin, when
// set, runs right after BeginAbort, to interleave two attempts.
type racingStore struct {
	store.Multipart
	afterBegin func()
}

var _ multipart.AbortRecorder = racingStore{}

func (s racingStore) BeginAbort(ctx context.Context, r multipart.AbortRecord) (string, error) {
	prior, err := s.Multipart.BeginAbort(ctx, r)
	if s.afterBegin != nil {
		s.afterBegin()
	}
	return prior, err
}

// TestAbortRaceCountedOnce: the deadline task and the sweep race on one upload. The sweep begins
// after the task's row says "aborting", and finds the upload gone once the task has aborted it:
// it records "aborted" as well (it cannot tell this from a process that died after S3's answer),
// but only the attempt whose record settled the row counts the abort. Both used to count it.
func TestAbortRaceCountedOnce(t *testing.T) {
	t.Parallel()
	b := setup(t, multipart.Config{})
	u := testkit.CreateUploads(t, b.ctx, b.s3, b.bucket, []string{"raced-count.bin"}, 1)[0]
	part := make([]byte, 1234)
	b.uploadPart(t, u, 1, part)
	id := b.intent(t, u, time.Now().Add(-tasks.AbortGrace-time.Second))

	wait := func(c chan struct{}) {
		select {
		case <-c:
		case <-time.After(30 * time.Second):
		}
	}
	taskBegun, sweepBegun, taskDone := make(chan struct{}), make(chan struct{}), make(chan struct{})
	service := func(afterBegin func()) *multipart.Service {
		mp, err := multipart.New(multipart.Config{S3: b.s3, Metrics: b.metrics,
			Store: racingStore{Multipart: b.st.Multipart(), afterBegin: afterBegin}})
		require.NoError(t, err)
		return mp
	}
	task := service(func() { close(taskBegun); wait(sweepBegun) })
	sweep := service(func() { close(sweepBegun); wait(taskDone) })
	abort := func(mp *multipart.Service, reason string) (multipart.AbortResult, error) {
		return mp.Abort(b.ctx, multipart.AbortRequest{Bucket: b.bucket, Key: u.Key, UploadID: u.ID, Reason: reason})
	}

	type result struct {
		res multipart.AbortResult
		err error
	}
	first := make(chan result, 1)
	go func() {
		defer close(taskDone)
		res, err := abort(task, multipart.ReasonDeadline)
		first <- result{res, err}
	}()
	wait(taskBegun)
	res, err := abort(sweep, multipart.ReasonSweep)
	require.NoError(t, err)
	require.True(t, res.Resumed, "the sweep saw the task's row")
	require.Equal(t, multipart.OutcomeAborted, res.Outcome)
	got := <-first
	require.NoError(t, got.err)
	require.Equal(t, multipart.OutcomeAborted, got.res.Outcome)

	require.Equal(t, "aborted", b.aborts(t)[u.ID].Outcome)
	require.Equal(t, "deadline", b.aborts(t)[u.ID].Reason)
	require.Equal(t, "aborted", b.status(t, id))
	require.Equal(t, 1.0, testkit.Value(t, b.metrics.Aborted.WithLabelValues(multipart.ReasonDeadline)))
	require.Zero(t, testkit.Value(t, b.metrics.Aborted.WithLabelValues(multipart.ReasonSweep)), "counted twice")
	require.Equal(t, float64(len(part)), testkit.Value(t, b.metrics.BytesReclaimed))
}
