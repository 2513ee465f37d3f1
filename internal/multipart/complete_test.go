package multipart_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/stretchr/testify/require"

	"github.com/intakehq/intake/internal/multipart"
	"github.com/intakehq/intake/internal/objstore"
	"github.com/intakehq/intake/internal/testkit"
)

// TestComplete checks a complete against what S3 holds: parts not uploaded or named with another
// ETag are refused (the upload stays open), parts that sum to more than the declared size or the
// policy's max_size are refused and the upload aborted; parts within the bound complete and the
// intent is completed.
func TestComplete(t *testing.T) {
	t.Parallel()
	b := setup(t, multipart.Config{})
	const mib = 1 << 20
	part1, part2 := make([]byte, 5*mib), make([]byte, 3)
	part2[0] = 1

	type upload struct {
		u      testkit.Upload
		parts  []multipart.CompletedPart
		intent string
	}
	start := func(key string) upload {
		u := testkit.CreateUploads(t, b.ctx, b.s3, b.bucket, []string{key}, 1)[0]
		id := b.intent(t, u, time.Now().Add(time.Hour))
		e1, e2 := b.uploadPart(t, u, 1, part1), b.uploadPart(t, u, 2, part2)
		return upload{u: u, intent: id.String(), parts: []multipart.CompletedPart{{Number: 2, ETag: e2}, {Number: 1, ETag: e1}}}
	}
	total := int64(len(part1) + len(part2))

	for _, tc := range []struct {
		name      string
		parts     func(upload) []multipart.CompletedPart
		declared  int64
		maxSize   int64
		wantParts string // a *PartsError containing this
		wantLarge *multipart.TooLargeError
	}{
		{name: "part not uploaded", declared: -1, wantParts: "part 3 was not uploaded",
			parts: func(u upload) []multipart.CompletedPart {
				return append(u.parts, multipart.CompletedPart{Number: 3, ETag: u.parts[0].ETag})
			}},
		{name: "another etag", declared: -1, wantParts: "is not the uploaded part's",
			parts: func(u upload) []multipart.CompletedPart {
				return []multipart.CompletedPart{u.parts[1], {Number: 2, ETag: u.parts[1].ETag}}
			}},
		{name: "duplicate", declared: -1, wantParts: "appears twice",
			parts: func(u upload) []multipart.CompletedPart { return []multipart.CompletedPart{u.parts[0], u.parts[0]} }},
		{name: "no etag", declared: -1, wantParts: "no valid etag",
			parts: func(u upload) []multipart.CompletedPart { return []multipart.CompletedPart{{Number: 1, ETag: `""`}} }},
		{name: "declared one byte", declared: 1, maxSize: 100 * mib,
			wantLarge: &multipart.TooLargeError{Size: total, Limit: 1, Declared: true, Aborted: true}},
		{name: "above the policy without a declared size", declared: -1, maxSize: 5 * mib,
			wantLarge: &multipart.TooLargeError{Size: total, Limit: 5 * mib, Aborted: true}},
		{name: "within the declared size", declared: total, maxSize: 100 * mib},
		{name: "within the policy", declared: -1, maxSize: total},
	} {
		up := start("c/" + tc.name + ".bin")
		parts := up.parts
		if tc.parts != nil {
			parts = tc.parts(up)
		}
		res, err := b.mp.Complete(b.ctx, multipart.CompleteRequest{Bucket: b.bucket, Key: up.u.Key, UploadID: up.u.ID,
			Parts: parts, DeclaredSize: tc.declared, MaxSize: tc.maxSize})
		open := testkit.OpenUploads(t, b.ctx, b.s3, b.bucket)
		switch {
		case tc.wantParts != "":
			var pe *multipart.PartsError
			require.ErrorAs(t, err, &pe, tc.name)
			require.Contains(t, pe.Detail, tc.wantParts, tc.name)
			require.Contains(t, open, up.u.ID, "%s: a refused part list leaves the upload open", tc.name)
			require.False(t, b.objectExists(t, up.u.Key), tc.name)
		case tc.wantLarge != nil:
			var tl *multipart.TooLargeError
			require.ErrorAs(t, err, &tl, tc.name)
			require.Equal(t, tc.wantLarge, tl, tc.name)
			require.NotContains(t, open, up.u.ID, "%s: the upload is aborted", tc.name)
			require.False(t, b.objectExists(t, up.u.Key), tc.name)
			row := b.aborts(t)[up.u.ID]
			require.Equal(t, []string{"too_large", "aborted"}, []string{row.Reason, row.Outcome}, tc.name)
			got, err := testkit.GetUploadByKey(b.ctx, b.st.Pool, b.bucket, up.u.Key)
			require.NoError(t, err)
			require.Equal(t, "aborted", got.Status, tc.name)
		default:
			require.NoError(t, err, tc.name)
			require.Equal(t, total, res.Size, tc.name)
			require.True(t, res.IntentCompleted, tc.name)
			head, err := b.s3.HeadObject(b.ctx, &s3.HeadObjectInput{Bucket: aws.String(b.bucket), Key: aws.String(up.u.Key)})
			require.NoError(t, err)
			require.Equal(t, total, aws.ToInt64(head.ContentLength), tc.name)
			got, err := testkit.GetUploadByKey(b.ctx, b.st.Pool, b.bucket, up.u.Key)
			require.NoError(t, err)
			require.Equal(t, "completed", got.Status, tc.name)
		}
	}
	require.Equal(t, 2.0, testkit.Value(t, b.metrics.Aborted.WithLabelValues(multipart.ReasonTooLarge)))

	// A complete of an upload that is gone is S3's NoSuchUpload.
	_, err := b.mp.Complete(b.ctx, multipart.CompleteRequest{Bucket: b.bucket, Key: "x", UploadID: "bm9wZQ",
		Parts: []multipart.CompletedPart{{Number: 1, ETag: "e"}}, DeclaredSize: -1})
	require.True(t, objstore.IsNotFound(err), "%v", err)
}

// lostAnswer is MinIO as seen through a connection cut after S3 completed the upload: the
// completion happens, its answer never arrives. With noop it is cut before the request arrives.
type lostAnswer struct {
	multipart.S3API
	noop bool
}

func (l lostAnswer) CompleteMultipartUpload(ctx context.Context, in *s3.CompleteMultipartUploadInput, opts ...func(*s3.Options)) (*s3.CompleteMultipartUploadOutput, error) {
	if !l.noop {
		if _, err := l.S3API.CompleteMultipartUpload(ctx, in, opts...); err != nil {
			return nil, err
		}
	}
	return nil, errors.New("read tcp 127.0.0.1:9000: connection reset by peer")
}

// TestCompleteAnswerLost: a complete whose answer is lost is judged by looking at the key: S3
// holds the object, so the upload is completed and its intent marked (the client's retry would
// otherwise meet NoSuchUpload for an upload that succeeded); when the request never arrived, the
// error stands and the upload stays open for the retry.
func TestCompleteAnswerLost(t *testing.T) {
	t.Parallel()
	b := setup(t, multipart.Config{})
	for _, noop := range []bool{false, true} {
		u := testkit.CreateUploads(t, b.ctx, b.s3, b.bucket, []string{fmt.Sprintf("lost/%v.bin", noop)}, 1)[0]
		id := b.intent(t, u, time.Now().Add(time.Hour))
		etag := b.uploadPart(t, u, 1, []byte("the only part"))
		mp, err := multipart.New(multipart.Config{S3: lostAnswer{b.s3, noop}, Store: b.st.Multipart(), Metrics: b.metrics})
		require.NoError(t, err)
		res, err := mp.Complete(b.ctx, multipart.CompleteRequest{Bucket: b.bucket, Key: u.Key, UploadID: u.ID, DeclaredSize: -1,
			Parts: []multipart.CompletedPart{{Number: 1, ETag: etag}}})
		if noop {
			require.ErrorContains(t, err, "connection reset")
			require.Equal(t, "pending", b.status(t, id))
			require.Contains(t, testkit.OpenUploads(t, b.ctx, b.s3, b.bucket), u.ID, "still open for the retry")
			continue
		}
		require.NoError(t, err)
		require.True(t, res.IntentCompleted)
		require.Equal(t, int64(len("the only part")), res.Size)
		require.NotEmpty(t, res.ETag)
		require.Equal(t, "completed", b.status(t, id))
	}
}

// leavingS3 is the real S3 client, except that the caller's context is cancelled as the abort is
// sent: the client of a refused complete leaves at that moment.
type leavingS3 struct {
	multipart.S3API
	leave context.CancelFunc
}

func (l leavingS3) AbortMultipartUpload(ctx context.Context, in *s3.AbortMultipartUploadInput, opts ...func(*s3.Options)) (*s3.AbortMultipartUploadOutput, error) {
	l.leave()
	return l.S3API.AbortMultipartUpload(ctx, in, opts...)
}

// TestCompleteTooLargeAbortOutlivesTheClient: the abort of an upload whose complete is refused as
// too large finishes when the client leaves as it starts. It used to follow the request's context:
// cut short after its row was written, it left the upload open, the row "aborting", and told the
// client the deadline would abort it.
func TestCompleteTooLargeAbortOutlivesTheClient(t *testing.T) {
	t.Parallel()
	b := setup(t, multipart.Config{})
	ctx, leave := context.WithCancel(b.ctx)
	defer leave()
	mp, err := multipart.New(multipart.Config{S3: leavingS3{S3API: b.s3, leave: leave}, Store: b.st.Multipart()})
	require.NoError(t, err)
	u := testkit.CreateUploads(t, b.ctx, b.s3, b.bucket, []string{"c/leaves.bin"}, 1)[0]
	b.intent(t, u, time.Now().Add(time.Hour))
	etag := b.uploadPart(t, u, 1, []byte("more than one byte"))

	_, err = mp.Complete(ctx, multipart.CompleteRequest{Bucket: b.bucket, Key: u.Key, UploadID: u.ID,
		Parts: []multipart.CompletedPart{{Number: 1, ETag: etag}}, DeclaredSize: 1})
	var tl *multipart.TooLargeError
	require.ErrorAs(t, err, &tl)
	require.True(t, tl.Aborted, "the abort finished: %v", err)
	require.NotContains(t, testkit.OpenUploads(t, b.ctx, b.s3, b.bucket), u.ID)
	require.Equal(t, "aborted", b.aborts(t)[u.ID].Outcome)
}
