package objstore_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/stretchr/testify/require"

	"github.com/intakehq/intake/internal/objstore"
	"github.com/intakehq/intake/internal/queue"
	"github.com/intakehq/intake/internal/testkit"
	"github.com/intakehq/intake/pipeline"
)

type objectsBundle struct {
	ctx    context.Context
	client *s3.Client
	bucket string
	objs   *objstore.Objects
}

func setupObjects(t *testing.T) *objectsBundle {
	t.Helper()
	if testing.Short() {
		t.Skip("needs MinIO")
	}
	client := testkit.S3()
	return &objectsBundle{ctx: testkit.Context(t), client: client, bucket: testkit.Bucket(t, client), objs: objstore.NewObjects(client)}
}

// put stores body under key and returns its unquoted ETag.
func (b *objectsBundle) put(t *testing.T, key, contentType string, body io.ReadSeeker) string {
	t.Helper()
	out, err := b.client.PutObject(b.ctx, &s3.PutObjectInput{
		Bucket: aws.String(b.bucket), Key: aws.String(key), Body: body, ContentType: aws.String(contentType),
		Metadata: map[string]string{"origin": "test"},
	})
	require.NoError(t, err)
	return strings.Trim(aws.ToString(out.ETag), `"`)
}

func (b *objectsBundle) get(t *testing.T, key string) ([]byte, *s3.GetObjectOutput) {
	t.Helper()
	out, err := b.client.GetObject(b.ctx, &s3.GetObjectInput{Bucket: aws.String(b.bucket), Key: aws.String(key)})
	require.NoError(t, err)
	defer out.Body.Close()
	body, err := io.ReadAll(out.Body)
	require.NoError(t, err)
	return body, out
}

func (b *objectsBundle) ref(key, etag string) pipeline.ObjectRef {
	return pipeline.ObjectRef{Bucket: b.bucket, Key: key, ETag: etag}
}

func TestObjectsHead(t *testing.T) {
	t.Parallel()
	b := setupObjects(t)
	etag := b.put(t, "dir/a b+c é.txt", "text/plain", strings.NewReader("hello"))

	info, err := b.objs.Head(b.ctx, b.bucket, "dir/a b+c é.txt")
	require.NoError(t, err)
	require.Equal(t, int64(5), info.Size)
	require.Equal(t, "text/plain", info.ContentType)
	require.Equal(t, etag, info.ETag)
	require.NotContains(t, info.ETag, `"`)
	require.False(t, info.LastModified.IsZero())

	_, err = b.objs.Head(b.ctx, b.bucket, "absent")
	require.ErrorIs(t, err, pipeline.ErrNotFound)
	_, err = b.objs.Head(b.ctx, testkit.Name("t-absent-"), "absent")
	require.ErrorIs(t, err, pipeline.ErrUnavailable, "a missing bucket is an outage, not a missing object")
	require.NotErrorIs(t, err, pipeline.ErrNotFound)
}

// TestObjectsReportContentEncoding: the HEAD, the presigned ranged GET and the SDK's ranged GET
// all report the Content-Encoding S3 stored, which the pipeline refuses on an upload intake signed
// (see pipeline.ReasonEncoded); an empty object (whose ranged GET falls back to a HEAD) too.
func TestObjectsReportContentEncoding(t *testing.T) {
	t.Parallel()
	b := setupObjects(t)
	for _, key := range []string{"encoded", "encoded-empty"} {
		body := []byte("\x1f\x8b not really gzip")
		if key == "encoded-empty" {
			body = nil
		}
		_, err := b.client.PutObject(b.ctx, &s3.PutObjectInput{Bucket: aws.String(b.bucket), Key: aws.String(key), Body: bytes.NewReader(body),
			ContentType: aws.String("text/plain"), ContentEncoding: aws.String("gzip")})
		require.NoError(t, err)
		info, err := b.objs.Head(b.ctx, b.bucket, key)
		require.NoError(t, err)
		require.Equal(t, "gzip", info.ContentEncoding, "head "+key)
		info, _, err = b.objs.Peek(b.ctx, b.bucket, key, pipeline.SniffLen)
		require.NoError(t, err)
		require.Equal(t, "gzip", info.ContentEncoding, "presigned peek "+key)
		sdk := objstore.NewObjects(b.client)
		objstore.WithoutPresigned(sdk)
		info, _, err = sdk.Peek(b.ctx, b.bucket, key, pipeline.SniffLen)
		require.NoError(t, err)
		require.Equal(t, "gzip", info.ContentEncoding, "SDK peek "+key)
	}
}

func TestObjectsReadPrefix(t *testing.T) {
	t.Parallel()
	b := setupObjects(t)
	long := bytes.Repeat([]byte("0123456789"), 500)
	etagLong := b.put(t, "long", "text/plain", bytes.NewReader(long))
	etagShort := b.put(t, "short", "text/plain", strings.NewReader("abc"))
	etagEmpty := b.put(t, "empty", "text/plain", bytes.NewReader(nil))

	tests := []struct {
		name, key, etag string
		want            []byte
		err             error
	}{
		{"prefix of a long object", "long", etagLong, long[:pipeline.SniffLen], nil},
		{"whole short object", "short", etagShort, []byte("abc"), nil},
		{"empty object", "empty", etagEmpty, nil, nil},
		{"any etag", "short", "", []byte("abc"), nil},
		{"replaced object", "short", etagLong, nil, pipeline.ErrChanged},
		{"missing object", "absent", "", nil, pipeline.ErrNotFound},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := b.objs.ReadPrefix(b.ctx, b.ref(tc.key, tc.etag), pipeline.SniffLen)
			if tc.err != nil {
				require.ErrorIs(t, err, tc.err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, string(tc.want), string(got))
		})
	}
}

func TestObjectsHash(t *testing.T) {
	t.Parallel()
	b := setupObjects(t)
	etag := b.put(t, "small", "text/plain", strings.NewReader("hello"))
	sum, n, err := b.objs.Hash(b.ctx, b.ref("small", etag))
	require.NoError(t, err)
	require.Equal(t, int64(5), n)
	want := sha256.Sum256([]byte("hello"))
	require.Equal(t, want[:], sum)

	_, _, err = b.objs.Hash(b.ctx, b.ref("small", "0123"))
	require.ErrorIs(t, err, pipeline.ErrChanged)
	_, _, err = b.objs.Hash(b.ctx, b.ref("absent", ""))
	require.ErrorIs(t, err, pipeline.ErrNotFound)
}

// TestObjectsHashLarge hashes a 64 MiB object, uploaded from a stream, and checks that the bytes
// allocated while hashing stay far below its size. It does not run in parallel so that the
// allocation count is (mostly) its own.
func TestObjectsHashLarge(t *testing.T) {
	b := setupObjects(t)
	const size = 64 << 20
	etag := b.put(t, "large", "application/octet-stream", &testkit.PatternReader{Size: size})
	want := testkit.PatternSHA256(size)

	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	sum, n, err := b.objs.Hash(b.ctx, b.ref("large", etag))
	runtime.ReadMemStats(&after)
	require.NoError(t, err)
	require.Equal(t, int64(size), n)
	require.Equal(t, want, sum)
	allocated := after.TotalAlloc - before.TotalAlloc
	t.Logf("hashing %d MiB allocated %d KiB", size>>20, allocated>>10)
	require.Less(t, allocated, uint64(8<<20), "hashing must stream, not buffer the object")
}

// BenchmarkHash shows that allocations per hash do not grow with the object's size.
func BenchmarkHash(b *testing.B) {
	client := testkit.S3()
	ctx := context.Background()
	bucket := testkit.Bucket(b, client)
	objs := objstore.NewObjects(client)
	for _, size := range []int64{1 << 20, 16 << 20, 64 << 20} {
		key := "bench-" + strconv.FormatInt(size, 10)
		out, err := client.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(key), Body: &testkit.PatternReader{Size: size}})
		require.NoError(b, err)
		ref := pipeline.ObjectRef{Bucket: bucket, Key: key, ETag: strings.Trim(aws.ToString(out.ETag), `"`)}
		b.Run(strconv.FormatInt(size>>20, 10)+"MiB", func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(size)
			for b.Loop() {
				if _, _, err := objs.Hash(ctx, ref); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func TestObjectsTag(t *testing.T) {
	t.Parallel()
	b := setupObjects(t)
	etag := b.put(t, "k", "text/plain", strings.NewReader("x"))
	_, err := b.client.PutObjectTagging(b.ctx, &s3.PutObjectTaggingInput{
		Bucket: aws.String(b.bucket), Key: aws.String("k"),
		Tagging: &s3types.Tagging{TagSet: []s3types.Tag{{Key: aws.String("team"), Value: aws.String("a")}}},
	})
	require.NoError(t, err)

	require.NoError(t, b.objs.Tag(b.ctx, b.ref("k", etag), map[string]string{"intake-status": "rejected"}))
	require.NoError(t, b.objs.Tag(b.ctx, b.ref("k", etag), map[string]string{"intake-status": "rejected", "intake-reason": "r"}), "tagging twice is harmless")
	require.Equal(t, map[string]string{"team": "a", "intake-status": "rejected", "intake-reason": "r"}, b.tags(t, "k"))

	require.ErrorIs(t, b.objs.Tag(b.ctx, b.ref("k", "0123"), map[string]string{"x": "y"}), pipeline.ErrChanged)
	require.ErrorIs(t, b.objs.Tag(b.ctx, b.ref("absent", ""), map[string]string{"x": "y"}), pipeline.ErrNotFound)
}

func (b *objectsBundle) tags(t *testing.T, key string) map[string]string {
	t.Helper()
	out, err := b.client.GetObjectTagging(b.ctx, &s3.GetObjectTaggingInput{Bucket: aws.String(b.bucket), Key: aws.String(key)})
	require.NoError(t, err)
	tags := map[string]string{}
	for _, tag := range out.TagSet {
		tags[aws.ToString(tag.Key)] = aws.ToString(tag.Value)
	}
	return tags
}

func (b *objectsBundle) exists(t *testing.T, key string) bool {
	t.Helper()
	_, err := b.client.HeadObject(b.ctx, &s3.HeadObjectInput{Bucket: aws.String(b.bucket), Key: aws.String(key)})
	if objstore.IsNotFound(err) {
		return false
	}
	require.NoError(t, err)
	return true
}

func TestObjectsMove(t *testing.T) {
	t.Parallel()
	b := setupObjects(t)
	const key = "dir/with space/a+b é%20.txt"
	etag := b.put(t, key, "text/plain", strings.NewReader("moved content"))

	// A stale ETag leaves the object where it is.
	copied, err := b.objs.Move(b.ctx, b.ref(key, "0123"), "quarantine/"+key)
	require.ErrorIs(t, err, pipeline.ErrChanged)
	require.False(t, copied)
	require.True(t, b.exists(t, key))
	require.False(t, b.exists(t, "quarantine/"+key))

	copied, err = b.objs.Move(b.ctx, b.ref(key, etag), "quarantine/"+key)
	require.NoError(t, err)
	require.True(t, copied)
	require.False(t, b.exists(t, key))
	body, out := b.get(t, "quarantine/"+key)
	require.Equal(t, "moved content", string(body))
	require.Equal(t, "text/plain", aws.ToString(out.ContentType))
	require.Equal(t, "test", out.Metadata["origin"])

	// Moving again: the source is gone.
	copied, err = b.objs.Move(b.ctx, b.ref(key, etag), "quarantine/"+key)
	require.ErrorIs(t, err, pipeline.ErrNotFound)
	require.False(t, copied, "the HEAD before the copy finds nothing")
}

// A retry after a crash between the copy and the deletion (the consumer killed, the message
// redelivered) finds the copy made: it deletes the source without writing the copy again (a second
// write would be a second quarantine, with its own event).
func TestObjectsMoveAfterCrashWritesOnce(t *testing.T) {
	t.Parallel()
	b := setupObjects(t)
	b.versioned(t) // every write of the copy leaves a version
	const key, dst = "up/lie.png", "quarantine/up/lie.png"
	etag := b.put(t, key, "image/png", strings.NewReader("not a png"))
	// The first attempt copied, then died.
	_, err := b.client.CopyObject(b.ctx, &s3.CopyObjectInput{Bucket: aws.String(b.bucket), Key: aws.String(dst),
		CopySource: aws.String(b.bucket + "/" + key)})
	require.NoError(t, err)

	copied, err := b.objs.Move(b.ctx, b.ref(key, etag), dst)
	require.NoError(t, err)
	require.True(t, copied)
	require.False(t, b.exists(t, key), "the source is deleted")
	versions, err := b.client.ListObjectVersions(b.ctx, &s3.ListObjectVersionsInput{Bucket: aws.String(b.bucket), Prefix: aws.String(dst)})
	require.NoError(t, err)
	require.Len(t, versions.Versions, 1, "the copy was written once")
	body, _ := b.get(t, dst)
	require.Equal(t, "not a png", string(body))
}

// versioned turns versioning on in the bundle's bucket and, when the test ends (before testkit
// removes the bucket), deletes every version and delete marker.
func (b *objectsBundle) versioned(t *testing.T) {
	t.Helper()
	_, err := b.client.PutBucketVersioning(b.ctx, &s3.PutBucketVersioningInput{Bucket: aws.String(b.bucket),
		VersioningConfiguration: &s3types.VersioningConfiguration{Status: s3types.BucketVersioningStatusEnabled}})
	require.NoError(t, err)
	t.Cleanup(func() {
		out, err := b.client.ListObjectVersions(context.Background(), &s3.ListObjectVersionsInput{Bucket: aws.String(b.bucket)})
		require.NoError(t, err)
		for _, v := range out.Versions {
			_, _ = b.client.DeleteObject(context.Background(), &s3.DeleteObjectInput{Bucket: aws.String(b.bucket), Key: v.Key, VersionId: v.VersionId})
		}
		for _, m := range out.DeleteMarkers {
			_, _ = b.client.DeleteObject(context.Background(), &s3.DeleteObjectInput{Bucket: aws.String(b.bucket), Key: m.Key, VersionId: m.VersionId})
		}
	})
}

func TestObjectsMoveMultipart(t *testing.T) {
	t.Parallel()
	b := setupObjects(t)
	objstore.SetCopyLimits(b.objs, 5<<20, 5<<20) // S3's smallest part
	const size = 11 << 20                        // three parts, the last one short
	etag := b.put(t, "big", "application/x-test", &testkit.PatternReader{Size: size})

	copied, err := b.objs.Move(b.ctx, b.ref("big", etag), "q/big")
	require.NoError(t, err)
	require.True(t, copied)
	require.False(t, b.exists(t, "big"))
	body, out := b.get(t, "q/big")
	require.Len(t, body, size)
	sum := sha256.Sum256(body)
	require.Equal(t, testkit.PatternSHA256(size), sum[:])
	require.Equal(t, "application/x-test", aws.ToString(out.ContentType))
	require.Equal(t, "test", out.Metadata["origin"])
}

func TestObjectsDelete(t *testing.T) {
	t.Parallel()
	b := setupObjects(t)
	etag := b.put(t, "k", "text/plain", strings.NewReader("x"))
	require.ErrorIs(t, b.objs.Delete(b.ctx, b.ref("k", "0123")), pipeline.ErrChanged)
	require.True(t, b.exists(t, "k"))
	require.NoError(t, b.objs.Delete(b.ctx, b.ref("k", etag)))
	require.False(t, b.exists(t, "k"))
	require.ErrorIs(t, b.objs.Delete(b.ctx, b.ref("k", etag)), pipeline.ErrNotFound)
}

func TestObjectsUnavailable(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("dials a closed port")
	}
	awsCfg := testkit.AWSConfig()
	awsCfg.RetryMaxAttempts = 1
	objs := objstore.NewObjects(objstore.NewClient(awsCfg, testkit.AWSAt("http://127.0.0.1:1", "")))
	ctx := testkit.Context(t)
	ref := pipeline.ObjectRef{Bucket: "b", Key: "k"}

	_, err := objs.Head(ctx, "b", "k")
	require.ErrorIs(t, err, pipeline.ErrUnavailable)
	require.Equal(t, pipeline.DependencyS3, pipeline.UnavailableDependency(err), "the outage names S3")
	_, err = objs.ReadPrefix(ctx, ref, 10)
	require.ErrorIs(t, err, pipeline.ErrUnavailable)
	_, _, err = objs.Hash(ctx, ref)
	require.ErrorIs(t, err, pipeline.ErrUnavailable)
	require.ErrorIs(t, objs.Delete(ctx, ref), pipeline.ErrUnavailable)

	// A cancelled context is not an outage.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	_, err = objs.Head(cctx, "b", "k")
	require.Error(t, err)
	require.False(t, errors.Is(err, pipeline.ErrUnavailable))
}

// A half-open S3 (the connection is accepted, no answer ever comes) fails the call after the
// response timeout, as an outage of S3, instead of hanging the worker.
func TestObjectsHalfOpen(t *testing.T) {
	t.Parallel()
	awsCfg := testkit.AWSConfig()
	awsCfg.RetryMaxAttempts = 1
	awsCfg.HTTPClient = objstore.WithResponseTimeout(objstore.HTTPClient(1), 300*time.Millisecond)
	client := s3.NewFromConfig(awsCfg, func(o *s3.Options) {
		o.BaseEndpoint = aws.String("http://" + testkit.Silent(t))
		o.UsePathStyle = true
	})
	objs := objstore.NewObjects(client)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second) // the bound, if the timeout did nothing
	defer cancel()
	_, err := objs.Head(ctx, "b", "k")
	require.ErrorIs(t, err, pipeline.ErrUnavailable)
	require.Equal(t, pipeline.DependencyS3, pipeline.UnavailableDependency(err))
	require.NoError(t, ctx.Err(), "the response timeout ended the call, not the test's deadline: %v", err)
}

// The daemon's clients carry their response timeouts.
func TestClientsResponseTimeouts(t *testing.T) {
	t.Parallel()
	transport := func(c aws.HTTPClient) *http.Transport {
		t.Helper()
		b, ok := objstore.UnwrapHTTPClient(c).(*awshttp.BuildableClient)
		require.True(t, ok, "%T", c)
		return b.GetTransport()
	}
	awsCfg := testkit.AWSConfig()
	s3c := objstore.NewClient(awsCfg, testkit.AWS())
	require.Equal(t, objstore.S3ResponseTimeout, transport(s3c.Options().HTTPClient).ResponseHeaderTimeout)
	sqsc := queue.NewClient(awsCfg, testkit.AWS())
	require.Equal(t, objstore.SQSResponseTimeout, transport(sqsc.Options().HTTPClient).ResponseHeaderTimeout)
	require.Greater(t, objstore.SQSResponseTimeout, 20*time.Second, "longer than the longest long poll")
}

func TestCopySource(t *testing.T) {
	t.Parallel()
	tests := []struct {
		ref  pipeline.ObjectRef
		want string
	}{
		{pipeline.ObjectRef{Bucket: "b", Key: "a/b.txt"}, "b/a/b.txt"},
		{pipeline.ObjectRef{Bucket: "b", Key: "dir/a b+c é.txt"}, "b/dir/a%20b%2Bc%20%C3%A9.txt"},
		{pipeline.ObjectRef{Bucket: "b", Key: "k?x=1#y"}, "b/k%3Fx%3D1%23y"},
		{pipeline.ObjectRef{Bucket: "b", Key: "k", VersionID: "v+1"}, "b/k?versionId=v%2B1"},
	}
	for _, tc := range tests {
		require.Equal(t, tc.want, objstore.CopySource(tc.ref))
	}
}

// TestObjectsPeek: one ranged GET gives the same metadata HEAD gives, plus the prefix.
func TestObjectsPeek(t *testing.T) {
	t.Parallel()
	b := setupObjects(t)
	long := bytes.Repeat([]byte("0123456789"), 500)
	b.put(t, "long", "text/plain", bytes.NewReader(long))
	b.put(t, "short", "image/png", strings.NewReader("abc"))
	b.put(t, "empty", "text/csv", bytes.NewReader(nil))

	for _, tc := range []struct {
		key  string
		want []byte
	}{
		{"long", long[:pipeline.SniffLen]},
		{"short", []byte("abc")},
		{"empty", nil},
	} {
		t.Run(tc.key, func(t *testing.T) {
			head, err := b.objs.Head(b.ctx, b.bucket, tc.key)
			require.NoError(t, err)
			info, prefix, err := b.objs.Peek(b.ctx, b.bucket, tc.key, pipeline.SniffLen)
			require.NoError(t, err)
			require.Equal(t, head, info, "Peek's metadata equals HEAD's (the total size comes from Content-Range)")
			require.Equal(t, string(tc.want), string(prefix))
		})
	}
	_, _, err := b.objs.Peek(b.ctx, b.bucket, "absent", pipeline.SniffLen)
	require.ErrorIs(t, err, pipeline.ErrNotFound)
}
