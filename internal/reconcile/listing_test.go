package reconcile

import (
	"context"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/stretchr/testify/require"

	"github.com/intakehq/intake/internal/testkit"
)

// all: every index.
func all(int) bool { return true }

// TestReconcileKeysXMLCannotCarry: S3 allows keys that XML 1.0 cannot carry. Listed without
// EncodingType url, a key with a control character failed the listing's decoding (MinIO: "illegal
// character code U+0001"), so that no run on the bucket ever completed, and U+FFFF came back as
// U+FFFD: a missing key and a gone row reported on every run, --fix or not. Keys with a space, a
// plus and a percent sign check the decoding.
func TestReconcileKeysXMLCannotCarry(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("needs MinIO and PostgreSQL")
	}
	keys := []string{"ctl/a\x01b", "ctl/tab\tand\rreturn", "p/\uFFFF", "p/\uFFFE", "p/a b+c%2Fd%", "p/plain"}
	b := setup(t, len(keys), func(i int) string { return keys[i] })
	for _, k := range keys {
		b.row(t, b.bucket, k, b.etags[k], "valid")
	}
	rep, err := Run(testkit.Context(t), b.s3, b.st.Q, Options{Bucket: b.bucket})
	require.NoError(t, err)
	require.True(t, rep.Complete)
	require.Equal(t, len(keys), rep.Listed)
	require.Zero(t, rep.Differences(), "%+v", rep)
}

// TestReconcileLastPageNotWaitedFor: a listing is paid for before each page it asks for, not after
// its last one. Before, 20 objects in two pages of 10 at 2 per second waited 5 s after the second
// page, which a 3 s deadline refused: a run that had compared every key failed as cut short.
func TestReconcileLastPageNotWaitedFor(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	rep, err := Run(ctx, &fakeS3{n: 20}, &fakeRows{n: 20, has: all}, Options{Bucket: "b", PageSize: 10, Rate: 2})
	require.NoError(t, err)
	require.True(t, rep.Complete)
	require.Equal(t, 20, rep.InSync)
}

// emptyPagesS3 answers its first `empty` pages with no keys and a continuation token (as S3 may over
// a run of delete markers), or with the same token on every page when repeat is set.
type emptyPagesS3 struct {
	fakeS3
	empty  int
	repeat bool

	calls sync.Mutex
	asked int
}

func (e *emptyPagesS3) ListObjectsV2(ctx context.Context, in *s3.ListObjectsV2Input, opts ...func(*s3.Options)) (*s3.ListObjectsV2Output, error) {
	e.calls.Lock()
	e.asked++
	asked := e.asked
	e.calls.Unlock()
	if e.repeat {
		return &s3.ListObjectsV2Output{IsTruncated: aws.Bool(true), NextContinuationToken: aws.String("same")}, nil
	}
	if asked <= e.empty {
		return &s3.ListObjectsV2Output{IsTruncated: aws.Bool(true), NextContinuationToken: aws.String("e" + strconv.Itoa(asked))}, nil
	}
	in.ContinuationToken = nil
	return e.fakeS3.ListObjectsV2(ctx, in, opts...)
}

// TestReconcileEmptyPagesArePaidFor: every request costs at least one token. Before, empty pages
// were free: 5 of them at 1 per second were asked for at once, and the 2 s deadline never came.
func TestReconcileEmptyPagesArePaidFor(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	s := &emptyPagesS3{fakeS3: fakeS3{n: 1}, empty: 5}
	_, err := Run(ctx, s, &fakeRows{n: 1, has: all}, Options{Bucket: "b", PageSize: 1, Rate: 1})
	require.ErrorContains(t, err, "rate limit", "the third page's token would come after the deadline")
	s.calls.Lock()
	defer s.calls.Unlock()
	require.Less(t, s.asked, 5, "the empty pages were not asked for at once")
}

// TestReconcileRepeatedTokenIsNotComplete: a store that answers the same continuation token again
// would have the paginator ask for the same page forever; the listing fails instead, and nothing is
// reported gone.
func TestReconcileRepeatedTokenIsNotComplete(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rep, err := Run(ctx, &emptyPagesS3{repeat: true}, &fakeRows{n: 3, has: all}, Options{Bucket: "b"})
	require.ErrorContains(t, err, "twice")
	require.NoError(t, ctx.Err(), "it ended on the repeat, not at the deadline")
	require.False(t, rep.Complete)
	require.Zero(t, len(rep.Gone))
}

// hangingRows never answers a page of rows until its context ends.
type hangingRows struct{ fakeRows }

func (h *hangingRows) OpsListObjects(ctx context.Context, _ dbqListParams) ([]dbqListRow, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

// TestReconcileStatementBounded: a statement that never returns (a lock held by a stuck session)
// fails the run after StatementTimeout; before, the run waited for as long as its context allowed
// (the periodic task's 23 h, or forever on the command line).
func TestReconcileStatementBounded(t *testing.T) {
	old := statementTimeout
	statementTimeout = 200 * time.Millisecond
	t.Cleanup(func() { statementTimeout = old })
	rep, err := Run(context.Background(), &fakeS3{n: 3}, &hangingRows{fakeRows{n: 3, has: all}}, Options{Bucket: "b"})
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.False(t, rep != nil && rep.Complete)
}
