package pipeline_test

import (
	"context"
	"net/http"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/stretchr/testify/require"

	"github.com/intakehq/intake/internal/objstore"
	"github.com/intakehq/intake/internal/testkit"
	"github.com/intakehq/intake/pipeline"
)

// hookClient is the HTTP client of an S3 client on the local MinIO that runs hook once, right after
// the first answer when says is the one, before the caller sees it: another client's write landing
// between two of intake's requests. It is not the SDK's own client, so Peek's presigned GET goes
// through it (net/http), not through fasthttp.
type hookClient struct {
	next aws.HTTPClient
	when func(req *http.Request, resp *http.Response) bool
	once sync.Once
	hook func()
}

func (h *hookClient) Do(req *http.Request) (*http.Response, error) {
	resp, err := h.next.Do(req)
	if err == nil && h.when(req, resp) {
		h.once.Do(h.hook)
	}
	return resp, err
}

// objectsVia returns the real object store on the local MinIO, sending through h.
func objectsVia(h *hookClient) *objstore.Objects {
	h.next = objstore.HTTPClient(8)
	cfg := testkit.AWSConfig()
	cfg.HTTPClient = h
	return objstore.NewObjects(objstore.NewClient(cfg, testkit.AWS()))
}

// TestProcessEmptyObjectReplacedDuringPeek: an uploader allowed sizes from 0 (a POST policy's
// content-length-range [0, max]) races an empty upload with another. Peek's ranged GET finds the
// empty object (416), and the second upload lands before Peek's HEAD, which then describes bytes
// nothing has read: the inspection starts over and judges the second object by its own bytes, a
// PNG declared text/plain, instead of recording it valid as an empty (text/plain) prefix would.
func TestProcessEmptyObjectReplacedDuringPeek(t *testing.T) {
	t.Parallel()
	b := setupProc(t, procOpts{})
	const key = "up/notes.txt"
	b.intent(t, intentSpec{key: key, contentType: "text/plain", noSize: true})
	b.put(t, key, "text/plain", nil)
	hostile := pngBytes(t, 40, 40)
	var second string
	h := &hookClient{
		when: func(_ *http.Request, resp *http.Response) bool {
			return resp.StatusCode == http.StatusRequestedRangeNotSatisfiable
		},
		hook: func() { second = b.put(t, key, "text/plain", hostile) },
	}
	p := b.newProcessor(t, procOpts{objects: objectsVia(h), policy: sniffPolicy(pipeline.ActionNone)})

	require.NoError(t, p.Process(b.ctx, "m", b.created(key, "0A", t0)))
	require.NotEmpty(t, second, "the second upload landed between the 416 and the HEAD")
	row := b.row(t, key)
	require.Equal(t, second, *row.Etag)
	require.Equal(t, int64(len(hostile)), *row.Size)
	require.Equal(t, "image/png", *row.SniffedType, "judged by its own bytes")
	require.Equal(t, pipeline.StatusRejected, row.Status)
	require.Equal(t, pipeline.ReasonSniffMismatch, *row.Reason)
}

// TestProcessQuarantineCopyRecordedWhenSourceReplaced: the source of a quarantine is replaced
// between the copy and the delete. The delete is refused (the source changed) and the new object is
// left alone, for its own event; the copy exists all the same, and is recorded like any quarantined
// copy (the row recordAction exists for: nothing else may ever record it).
func TestProcessQuarantineCopyRecordedWhenSourceReplaced(t *testing.T) {
	t.Parallel()
	b := setupProc(t, procOpts{})
	const key = "k.png"
	first := b.put(t, key, "image/png", []byte("<html>not an image</html>"))
	img := pngBytes(t, 2, 2)
	var second string
	h := &hookClient{
		when: func(req *http.Request, resp *http.Response) bool {
			return req.Method == http.MethodPut && req.Header.Get("X-Amz-Copy-Source") != "" && resp.StatusCode == http.StatusOK
		},
		hook: func() { second = b.put(t, key, "image/png", img) },
	}
	p := b.newProcessor(t, procOpts{objects: objectsVia(h), policy: sniffPolicy(pipeline.ActionQuarantine)})

	require.NoError(t, p.Process(b.ctx, "m1", b.created(key, "0A", t0)))
	require.NotEmpty(t, second, "the source was replaced after the copy")
	require.True(t, b.exists(t, key), "the replacement is left alone")
	q := b.row(t, "quarantine/"+key)
	require.Equal(t, pipeline.StatusRejected, q.Status, "the copy is recorded")
	require.Equal(t, pipeline.ReasonQuarantined, *q.Reason)
	require.Equal(t, first, *q.Etag)
	require.Equal(t, pipeline.StatusRejected, b.row(t, key).Status, "the old verdict stands until the new object's event")

	require.NoError(t, p.Process(b.ctx, "m2", b.created(key, "0B", t0)))
	row := b.row(t, key)
	require.Equal(t, pipeline.StatusValid, row.Status)
	require.Equal(t, second, *row.Etag)
}

// versionedProc turns versioning on in the bundle's bucket and, when the test ends (before testkit
// empties and removes the bucket), deletes every version and delete marker.
func versionedProc(t *testing.T, b *procBundle) {
	t.Helper()
	_, err := b.s3.PutBucketVersioning(b.ctx, &s3.PutBucketVersioningInput{Bucket: aws.String(b.bucket),
		VersioningConfiguration: &types.VersioningConfiguration{Status: types.BucketVersioningStatusEnabled}})
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx := context.Background()
		out, err := b.s3.ListObjectVersions(ctx, &s3.ListObjectVersionsInput{Bucket: aws.String(b.bucket)})
		if err != nil {
			return
		}
		for _, v := range out.Versions {
			_, _ = b.s3.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(b.bucket), Key: v.Key, VersionId: v.VersionId})
		}
		for _, m := range out.DeleteMarkers {
			_, _ = b.s3.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(b.bucket), Key: m.Key, VersionId: m.VersionId})
		}
	})
}

// TestProcessOwnVersionDeletionRecordsCurrentVersion: in a versioned bucket, intake's delete (or
// quarantine move) of a rejected version deletes that version for good, which makes the previous
// one current; S3 sends no creation event for it. The action's own record looks at the key again
// and records the version S3 serves now, instead of leaving the row rejected for a version that no
// longer exists.
func TestProcessOwnVersionDeletionRecordsCurrentVersion(t *testing.T) {
	t.Parallel()
	for _, action := range []string{pipeline.ActionDelete, pipeline.ActionQuarantine} {
		t.Run(action, func(t *testing.T) {
			t.Parallel()
			b := setupProc(t, procOpts{policy: sniffPolicy(action)})
			versionedProc(t, b)
			const key = "notes.txt"
			first := b.put(t, key, "text/plain", []byte("hello, intake\n"))
			firstVersion := b.version(t, key)
			b.put(t, key, "text/plain", pngBytes(t, 2, 2)) // rejected: a PNG declared text/plain
			rejected := b.version(t, key)

			require.NoError(t, b.process(t, b.created(key, "0A", t0)))
			row := b.row(t, key)
			require.Equal(t, pipeline.StatusValid, row.Status, "the version current since intake deleted %s", rejected)
			require.Equal(t, first, *row.Etag)
			require.Equal(t, firstVersion, *row.VersionID)
			require.Equal(t, firstVersion, b.version(t, key))
			if action == pipeline.ActionQuarantine {
				q := b.row(t, "quarantine/"+key)
				require.Equal(t, pipeline.StatusRejected, q.Status)
				require.Equal(t, pipeline.ReasonQuarantined, *q.Reason)
			}
		})
	}
}
