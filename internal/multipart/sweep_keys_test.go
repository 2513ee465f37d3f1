package multipart_test

import (
	"context"
	"log/slog"
	"net/url"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/stretchr/testify/require"

	"github.com/intakehq/intake/internal/multipart"
	"github.com/intakehq/intake/internal/testkit"
	"github.com/intakehq/intake/worker/tasks"
)

// encodedUploads lists the bucket's open multipart uploads (upload id → key) with EncodingType url,
// the keys decoded: a plain listing cannot carry every key (see TestSweepKeysXMLCannotCarry).
func encodedUploads(tb testing.TB, ctx context.Context, client *s3.Client, bucket string) map[string]string {
	tb.Helper()
	open := map[string]string{}
	p := s3.NewListMultipartUploadsPaginator(client, &s3.ListMultipartUploadsInput{Bucket: aws.String(bucket), EncodingType: types.EncodingTypeUrl})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		require.NoError(tb, err)
		require.Equal(tb, types.EncodingTypeUrl, page.EncodingType)
		for _, u := range page.Uploads {
			key, err := url.QueryUnescape(aws.ToString(u.Key))
			require.NoError(tb, err)
			open[aws.ToString(u.UploadId)] = key
		}
	}
	return open
}

// createOddUploads creates an upload at each key, which may hold what XML cannot carry, and returns
// them in the order of keys. MinIO's answer to CreateMultipartUpload names the key in XML, which
// the SDK may fail to decode (a control character): the upload is created all the same, and its id
// is found by an encoded listing. The uploads are aborted when the test ends (testkit.Bucket's
// cleanup lists them unencoded, and may not decode that listing).
func createOddUploads(tb testing.TB, ctx context.Context, client *s3.Client, bucket string, keys []string) []testkit.Upload {
	tb.Helper()
	for _, k := range keys {
		_, err := client.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: aws.String(bucket), Key: aws.String(k)})
		if err != nil {
			require.ErrorContains(tb, err, "deserialization failed", "%+q", k)
		}
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		for id, key := range encodedUploads(tb, ctx, client, bucket) {
			_, _ = client.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{Bucket: aws.String(bucket), Key: aws.String(key), UploadId: aws.String(id)})
		}
	})
	byKey := map[string]string{}
	for id, key := range encodedUploads(tb, ctx, client, bucket) {
		require.NotContains(tb, byKey, key, "one upload per key")
		byKey[key] = id
	}
	out := make([]testkit.Upload, len(keys))
	for i, k := range keys {
		require.Contains(tb, byKey, k, "%+q", k)
		out[i] = testkit.Upload{Key: k, ID: byKey[k]}
	}
	return out
}

// TestSweepKeysXMLCannotCarry: S3 (and MinIO) allow keys XML 1.0 cannot carry. The sweep listed
// multipart uploads without EncodingType url: a foreign upload whose key held a control character
// failed the page's decoding ("illegal character code U+0001") at every sweep, so that no sweep got
// past it, and a key with U+FFFF came back as U+FFFD (MinIO), whose abort found no upload: recorded
// "gone", intake's intent settled aborted, the upload left open. Listed encoded, in pages of two (the
// key markers are decoded keys), every upload is found under its own key and aborted; keys with a
// space, a plus and a percent sign check the decoding.
func TestSweepKeysXMLCannotCarry(t *testing.T) {
	t.Parallel()
	b := setup(t, multipart.Config{PageSize: 2})
	keys := []string{"odd/ctl\x01key", "odd/tab\tand\rreturn", "odd/\uffff", "odd/\ufffe.bin", "odd/a b+c%2Fd%", "odd/plain.bin", "odd/日本.bin"}
	ups := createOddUploads(t, b.ctx, b.s3, b.bucket, keys)
	ours := ups[2] // intake's upload at "odd/\uffff", past its deadline
	oursID := b.intent(t, ours, time.Now().Add(-tasks.AbortGrace-time.Minute))
	time.Sleep(1500 * time.Millisecond)

	rep, err := b.mp.Sweep(b.ctx, multipart.SweepOptions{Bucket: b.bucket, OlderThan: time.Second})
	require.NoError(t, err)
	require.Equal(t, len(keys), rep.Listed)
	require.Equal(t, len(keys), rep.Stale)
	require.Equal(t, len(keys), rep.Aborted)
	require.Zero(t, rep.Gone+rep.Failed+rep.Overdue)
	require.Empty(t, encodedUploads(t, b.ctx, b.s3, b.bucket), "every upload aborted")
	rows := b.aborts(t)
	require.Len(t, rows, len(keys))
	for _, u := range ups {
		require.Equal(t, u.Key, rows[u.ID].Key, "%+q: recorded under its own key", u.Key)
		require.Equal(t, "aborted", rows[u.ID].Outcome, "%+q", u.Key)
	}
	require.Equal(t, "aborted", b.status(t, oursID))

	// The prefix is matched against the decoded keys.
	more := createOddUploads(t, b.ctx, b.s3, b.bucket, []string{"odd/+x", "odd/ x", "odd+/x"})
	time.Sleep(1500 * time.Millisecond)
	var seen []string
	rep, err = b.mp.Sweep(b.ctx, multipart.SweepOptions{Bucket: b.bucket, Prefix: "odd/", OlderThan: time.Second,
		OnCandidate: func(c multipart.Candidate) { seen = append(seen, c.Key) }})
	require.NoError(t, err)
	require.Equal(t, 3, rep.Listed)
	require.ElementsMatch(t, []string{"odd/+x", "odd/ x"}, seen)
	require.Equal(t, map[string]string{more[2].ID: "odd+/x"}, encodedUploads(t, b.ctx, b.s3, b.bucket))
}

// unencodedListing is MinIO as a store that ignores ListMultipartUploads' EncodingType: MinIO's own
// unencoded answer, which names a key holding U+FFFF with U+FFFD instead.
type unencodedListing struct{ multipart.S3API }

func (u unencodedListing) ListMultipartUploads(ctx context.Context, in *s3.ListMultipartUploadsInput, opts ...func(*s3.Options)) (*s3.ListMultipartUploadsOutput, error) {
	plain := *in
	plain.EncodingType = ""
	return u.S3API.ListMultipartUploads(ctx, &plain, opts...)
}

// TestSweepAbortsIntentsAtTheirKey: a listing that names one of intake's uploads under another key
// than its intent's (a store that alters the keys it cannot send: MinIO answers U+FFFF as U+FFFD
// when not asked to encode) had the sweep abort the upload at the listed key, where S3 finds no
// such upload: recorded "gone", the intent settled aborted, and the upload left open for good (the
// sweep's candidates skip Abort's check of the key, ErrWrongKey). The sweep aborts an upload it
// knows at its intent's key, and says so.
func TestSweepAbortsIntentsAtTheirKey(t *testing.T) {
	t.Parallel()
	b := setup(t, multipart.Config{})
	u := createOddUploads(t, b.ctx, b.s3, b.bucket, []string{"alter/\uffff.bin"})[0]
	id := b.intent(t, u, time.Now().Add(-tasks.AbortGrace-time.Minute))

	mp, err := multipart.New(multipart.Config{S3: unencodedListing{b.s3}, Store: b.st.Multipart(), Metrics: b.metrics, Log: slog.New(slog.NewTextHandler(b.logBuf, nil))})
	require.NoError(t, err)
	var listed []string
	rep, err := mp.Sweep(b.ctx, multipart.SweepOptions{Bucket: b.bucket, OlderThan: time.Hour,
		OnCandidate: func(c multipart.Candidate) { listed = append(listed, c.Key) }})
	require.NoError(t, err)
	require.Equal(t, 1, rep.Listed)
	require.Equal(t, []string{u.Key}, listed, "the candidate carries the intent's key")
	require.Equal(t, 1, rep.Aborted)
	require.Zero(t, rep.Gone+rep.Failed)
	require.Empty(t, encodedUploads(t, b.ctx, b.s3, b.bucket), "the upload is aborted")
	row := b.aborts(t)[u.ID]
	require.Equal(t, u.Key, row.Key)
	require.Equal(t, "aborted", row.Outcome)
	require.Equal(t, "aborted", b.status(t, id))
	require.Contains(t, b.logBuf.String(), "under another key than its intent's")
}
