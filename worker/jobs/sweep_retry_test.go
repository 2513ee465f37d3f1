package jobs_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
	"github.com/hibiken/asynq"
	"github.com/stretchr/testify/require"

	"github.com/intakehq/intake/internal/multipart"
	"github.com/intakehq/intake/internal/testkit"
	"github.com/intakehq/intake/worker/jobs"
	"github.com/intakehq/intake/worker/tasks"
)

// s3Answer is the error the S3 SDK returns for an answer with that status and code.
func s3Answer(op string, status int, code string) error {
	return &smithy.OperationError{ServiceID: "S3", OperationName: op, Err: &smithyhttp.ResponseError{
		Response: &smithyhttp.Response{Response: &http.Response{StatusCode: status}},
		Err:      &smithy.GenericAPIError{Code: code, Message: http.StatusText(status)},
	}}
}

// faultyS3 is MinIO whose AbortMultipartUpload fails for the keys in aborts, and whose
// ListMultipartUploads fails with list when set.
type faultyS3 struct {
	multipart.S3API
	mu     sync.Mutex
	aborts map[string]error
	list   error
}

func (f *faultyS3) set(key string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.aborts[key] = err
}

func (f *faultyS3) AbortMultipartUpload(ctx context.Context, in *s3.AbortMultipartUploadInput, opts ...func(*s3.Options)) (*s3.AbortMultipartUploadOutput, error) {
	f.mu.Lock()
	err := f.aborts[*in.Key]
	f.mu.Unlock()
	if err != nil {
		return nil, err
	}
	return f.S3API.AbortMultipartUpload(ctx, in, opts...)
}

func (f *faultyS3) ListMultipartUploads(ctx context.Context, in *s3.ListMultipartUploadsInput, opts ...func(*s3.Options)) (*s3.ListMultipartUploadsOutput, error) {
	if f.list != nil {
		return nil, f.list
	}
	return f.S3API.ListMultipartUploads(ctx, in, opts...)
}

// TestSweepTaskRetriesATransientAbort: a sweep task is retried when any of its candidates' aborts
// may pass on a retry, whatever the others met, and archived when every failure is permanent. The
// sweep used to keep its first failed candidate's error alone: an abort refused with a 403 (a
// bucket policy denying aborts under another app's prefix) beside one that met a 503 archived the
// task, judged by the 403, and the transient abort waited for the next period; so did a 503 beside
// a listing refused for good (a policy without s3:ListBucketMultipartUploads), whose error alone
// was returned.
func TestSweepTaskRetriesATransientAbort(t *testing.T) {
	t.Parallel()
	denied := s3Answer("AbortMultipartUpload", http.StatusForbidden, "AccessDenied")
	unavailable := s3Answer("AbortMultipartUpload", http.StatusServiceUnavailable, "ServiceUnavailable")

	t.Run("a 403 and a 503 among the aborts", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		ups := testkit.CreateUploads(t, b.ctx, b.s3, b.bucket, []string{"a/x.bin", "b/y.bin"}, 2)
		x, y := ups[0], ups[1]
		time.Sleep(1500 * time.Millisecond) // older than the sweep's second
		s3c := &faultyS3{S3API: b.s3, aborts: map[string]error{x.Key: denied, y.Key: unavailable}}
		mp, err := multipart.New(multipart.Config{S3: s3c, Store: b.st.Multipart(), Log: b.log})
		require.NoError(t, err)
		h := &jobs.Handlers{Sweeps: mp, Buckets: []string{b.bucket}, MinSweepAge: time.Second, Log: b.log}
		sweep := asynq.NewTask(tasks.TypeSweep, []byte(`{"bucket":"`+b.bucket+`","older_than":"1s"}`))

		err = h.HandleSweep(b.ctx, sweep)
		require.ErrorContains(t, err, "2 of 2 candidates failed")
		require.ErrorContains(t, err, "AccessDenied")
		require.ErrorContains(t, err, "ServiceUnavailable")
		require.NotErrorIs(t, err, asynq.SkipRetry, "b/y's abort may pass on a retry: %v", err)
		open := testkit.OpenUploads(t, b.ctx, b.s3, b.bucket)
		require.Contains(t, open, x.ID)
		require.Contains(t, open, y.ID)

		// The retry: the store is back, the policy still denies a/.
		s3c.set(y.Key, nil)
		err = h.HandleSweep(b.ctx, sweep)
		require.ErrorContains(t, err, "1 of 2 candidates failed")
		require.ErrorIs(t, err, asynq.SkipRetry, "only a 403 left: archived")
		open = testkit.OpenUploads(t, b.ctx, b.s3, b.bucket)
		require.Contains(t, open, x.ID)
		require.NotContains(t, open, y.ID, "the retry aborted b/y")
		rows := abortRows(t, b.ctx, b.st, b.bucket)
		require.Equal(t, multipart.OutcomeAborted, rows[y.ID].Outcome)
		require.Equal(t, multipart.OutcomeAborting, rows[x.ID].Outcome, "left for the next sweep to resume")
	})

	t.Run("listing refused, an overdue abort meets a 503", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		ups := testkit.CreateUploads(t, b.ctx, b.s3, b.bucket, []string{"o/late.bin", "p/late.bin"}, 2)
		for _, u := range ups {
			setDeadline(t, b, intent(t, b.ctx, b.st, b.bucket, u), time.Now().Add(-tasks.AbortGrace-time.Minute))
		}
		s3c := &faultyS3{S3API: b.s3, aborts: map[string]error{ups[0].Key: unavailable, ups[1].Key: denied},
			list: s3Answer("ListMultipartUploads", http.StatusForbidden, "AccessDenied")}
		mp, err := multipart.New(multipart.Config{S3: s3c, Store: b.st.Multipart(), Log: b.log})
		require.NoError(t, err)
		h := &jobs.Handlers{Sweeps: mp, Buckets: []string{b.bucket}, Log: b.log}
		sweep := func(prefix string) *asynq.Task {
			return asynq.NewTask(tasks.TypeSweep, []byte(`{"bucket":"`+b.bucket+`","prefix":"`+prefix+`","older_than":"1h"}`))
		}

		err = h.HandleSweep(b.ctx, sweep("o/"))
		require.ErrorContains(t, err, "list multipart uploads")
		require.ErrorContains(t, err, "1 of 1 candidates failed")
		require.ErrorContains(t, err, "ServiceUnavailable")
		require.NotErrorIs(t, err, asynq.SkipRetry, "the overdue upload's abort may pass on a retry: %v", err)

		// Every failure permanent: the listing refused, the abort denied too.
		err = h.HandleSweep(b.ctx, sweep("p/"))
		require.ErrorContains(t, err, "list multipart uploads")
		require.ErrorContains(t, err, "1 of 1 candidates failed")
		require.ErrorIs(t, err, asynq.SkipRetry, "nothing a retry could fix: archived")

		open := testkit.OpenUploads(t, b.ctx, b.s3, b.bucket)
		require.Contains(t, open, ups[0].ID)
		require.Contains(t, open, ups[1].ID)
	})
}

// nthAbortFails is MinIO whose AbortMultipartUpload fails, every call, with fail(n) for the n-th call.
type nthAbortFails struct {
	multipart.S3API
	mu    sync.Mutex
	calls int
	fail  func(n int) error
}

func (f *nthAbortFails) AbortMultipartUpload(context.Context, *s3.AbortMultipartUploadInput, ...func(*s3.Options)) (*s3.AbortMultipartUploadOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	return nil, f.fail(f.calls)
}

// TestSweepTaskErrorKeepsEveryKind: the jobs' classification of a real sweep's error (not a
// hand-built one) sees a transient abort failure after more permanent ones than the error keeps in
// full (the first ten), and the error stays one line however many aborts failed.
func TestSweepTaskErrorKeepsEveryKind(t *testing.T) {
	t.Parallel()
	b := setup(t)
	keys := make([]string, 13)
	for i := range keys {
		keys[i] = fmt.Sprintf("k/%02d.bin", i)
	}
	testkit.CreateUploads(t, b.ctx, b.s3, b.bucket, keys, 4)
	time.Sleep(1500 * time.Millisecond)
	// One abort at a time: the 503 is the thirteenth failure.
	s3c := &nthAbortFails{S3API: b.s3, fail: func(n int) error {
		if n == 13 {
			return s3Answer("AbortMultipartUpload", http.StatusServiceUnavailable, "ServiceUnavailable")
		}
		return s3Answer("AbortMultipartUpload", http.StatusForbidden, "AccessDenied")
	}}
	mp, err := multipart.New(multipart.Config{S3: s3c, Store: b.st.Multipart(), Log: b.log, Concurrency: 1})
	require.NoError(t, err)
	h := &jobs.Handlers{Sweeps: mp, Buckets: []string{b.bucket}, MinSweepAge: time.Second, Log: b.log}
	err = h.HandleSweep(b.ctx, asynq.NewTask(tasks.TypeSweep, []byte(`{"bucket":"`+b.bucket+`","older_than":"1s"}`)))
	require.ErrorContains(t, err, "13 of 13 candidates failed")
	require.ErrorContains(t, err, "ServiceUnavailable")
	require.ErrorContains(t, err, "and 2 more (logged)", "ten 403s, the 503, two 403s counted")
	require.NotErrorIs(t, err, asynq.SkipRetry, "%v", err)
	require.NotContains(t, err.Error(), "\n", "one line")
}

// TestSweepRetryWaitsForTheResume: a sweep whose abort failed (the upload's row left "aborting") is
// retried only once that abort is old enough for a sweep to resume it (multipart.ResumeAfter):
// asynq's first retry (15-44 s) would list again, skip the upload, and leave it for the next
// period. Other tasks keep their schedule.
func TestSweepRetryWaitsForTheResume(t *testing.T) {
	t.Parallel()
	sweep := asynq.NewTask(tasks.TypeSweep, nil)
	inspect := asynq.NewTask(tasks.TypeInspectObject, nil)
	fail := errors.New("503 ServiceUnavailable")
	quick := func(int, error, *asynq.Task) time.Duration { return time.Second }
	for n := range 3 {
		require.Greater(t, jobs.RetryDelay(nil)(n, fail, sweep), multipart.ResumeAfter, "retry %d", n)
		require.Greater(t, jobs.RetryDelay(quick)(n, fail, sweep), multipart.ResumeAfter, "retry %d", n)
		require.Equal(t, time.Second, jobs.RetryDelay(quick)(n, fail, inspect), "retry %d", n)
	}
	// A later retry that asynq delays more keeps its delay.
	require.Equal(t, time.Hour, jobs.RetryDelay(func(int, error, *asynq.Task) time.Duration { return time.Hour })(9, fail, sweep))
}
