package jobs_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"testing"

	"github.com/hibiken/asynq"
	"github.com/stretchr/testify/require"

	"github.com/intakehq/intake/worker/jobs"
	"github.com/intakehq/intake/worker/tasks"
)

// failingAbort is an Aborter whose aborts fail with err, as internal/multipart wraps S3's.
type failingAbort struct{ err error }

func (f failingAbort) AbortUpload(_ context.Context, bucket, key, uploadID, _ string, _ func(context.Context, string, string) error) (string, bool, error) {
	return "", false, fmt.Errorf("abort %s/%s (upload %s): %w", bucket, key, uploadID, f.err)
}

// TestAbortTaskRetriesRefusedCredentials: a multipart:abort task whose abort S3 refuses for
// intake's credentials (an expired session token while the instance metadata service is down, a
// web identity refresh lagging, a key not yet known) is retried, as an object:inspect task meeting
// them is (the pipeline calls them an outage of S3): it used to be archived after one attempt, the
// upload left open until a sweep. An AccessDenied (a policy denying the abort) and another 400 stay
// permanent. A sweep whose listing meets an expired token is retried too.
func TestAbortTaskRetriesRefusedCredentials(t *testing.T) {
	t.Parallel()
	const abort = "AbortMultipartUpload"
	for _, tc := range []struct {
		name      string
		err       error
		permanent bool
	}{
		{"expired token", s3Answer(abort, http.StatusBadRequest, "ExpiredToken"), false},
		{"token refresh required", s3Answer(abort, http.StatusBadRequest, "TokenRefreshRequired"), false},
		{"unknown access key", s3Answer(abort, http.StatusForbidden, "InvalidAccessKeyId"), false},
		{"invalid token (MinIO)", s3Answer(abort, http.StatusBadRequest, "InvalidTokenId"), false},
		{"store unavailable", s3Answer(abort, http.StatusServiceUnavailable, "ServiceUnavailable"), false},
		{"access denied", s3Answer(abort, http.StatusForbidden, "AccessDenied"), true},
		{"invalid argument", s3Answer(abort, http.StatusBadRequest, "InvalidArgument"), true},
	} {
		h := &jobs.Handlers{Aborts: failingAbort{tc.err}, Buckets: []string{"mine"}}
		task := asynq.NewTask(tasks.TypeAbortMultipart, []byte(`{"bucket":"mine","key":"k","upload_id":"u","deadline":"2000-01-01T00:00:00Z"}`))
		err := jobs.NewMux(h, nil, nil).ProcessTask(context.Background(), task)
		require.ErrorIs(t, err, tc.err, tc.name)
		require.Equal(t, tc.permanent, errors.Is(err, asynq.SkipRetry), "%s: %v", tc.name, err)
	}

	listing := fmt.Errorf("sweep b: %w", errors.Join(
		fmt.Errorf("list multipart uploads (after key \"\"): %w", s3Answer("ListMultipartUploads", http.StatusBadRequest, "ExpiredToken"))))
	h := &jobs.Handlers{Sweeps: failingSweep{listing}}
	err := h.HandleSweep(context.Background(), asynq.NewTask(tasks.TypeSweep, []byte(`{"bucket":"b","older_than":"1h"}`)))
	require.ErrorIs(t, err, listing)
	require.NotErrorIs(t, err, asynq.SkipRetry, "a sweep whose listing met an expired token: %v", err)
}
