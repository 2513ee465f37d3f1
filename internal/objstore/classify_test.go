package objstore_test

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/intakehq/intake/internal/objstore"
	"github.com/intakehq/intake/internal/testkit"
	"github.com/intakehq/intake/pipeline"
)

// s3Doc is an S3 error document with code.
func s3Doc(code string) string {
	return `<?xml version="1.0" encoding="UTF-8"?>` + "\n<Error><Code>" + code + "</Code><Message>m</Message><RequestId>r</RequestId></Error>"
}

// peekPaths returns object stores on client whose Peek sends its GET through fasthttp, net/http and
// the SDK.
func peekPaths(t *testing.T, client *s3.Client) map[string]*objstore.Objects {
	t.Helper()
	fast, slow := fastAndNetHTTP(t, client)
	sdk := objstore.NewObjects(client)
	objstore.WithoutPresigned(sdk)
	return map[string]*objstore.Objects{"fast": fast, "net/http": slow, "sdk": sdk}
}

// TestPeekA404WithoutNoSuchKeyIsAnOutage: a GET's 404 says the object is gone only with S3's
// NoSuchKey. NoSuchBucket (MinIO back on an empty volume, an endpoint pointing at another cluster)
// and a 404 without S3's code (a proxy's own page, empty or HTML) make Peek fail as an outage of
// S3, through every path, so that the pipeline neither records the object missing nor confirms a
// removal.
func TestPeekA404WithoutNoSuchKeyIsAnOutage(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, body, contentType string
		want                    error
	}{
		{"NoSuchBucket", s3Doc("NoSuchBucket"), "application/xml", pipeline.ErrUnavailable},
		{"empty body", "", "", pipeline.ErrUnavailable},
		{"HTML page", "<html><body><h1>404 Not Found</h1></body></html>", "text/html", pipeline.ErrUnavailable},
		{"NoSuchKey", s3Doc("NoSuchKey"), "application/xml", pipeline.ErrNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := newServer(t, func(w http.ResponseWriter, _ *http.Request) {
				if tc.contentType != "" {
					w.Header().Set("Content-Type", tc.contentType)
				}
				w.WriteHeader(http.StatusNotFound)
				_, _ = io.WriteString(w, tc.body)
			})
			for path, o := range peekPaths(t, s3At(srv.URL, 1)) {
				_, _, err := o.Peek(testkit.Context(t), "bkt", "k", 10)
				require.ErrorIs(t, err, tc.want, path)
				for _, other := range []error{pipeline.ErrNotFound, pipeline.ErrUnavailable} {
					if other != tc.want {
						require.NotErrorIs(t, err, other, path)
					}
				}
			}
		})
	}
}

// TestNotImplementedIsTheObjects: a 501 NotImplemented (an S3-compatible store that lacks the
// request's operation, or one of its headers) is no outage of S3: the consumer would pause every
// receiver, find the bucket with its HeadBucket, resume, and fail again, for good. Peek (through
// every path, without repeating the GET through the SDK) and Head fail with an error of that one
// request, which keeps S3's status and code, as does any 5xx the SDK's retryer does not retry.
func TestNotImplementedIsTheObjects(t *testing.T) {
	t.Parallel()
	for status, code := range map[int]string{
		http.StatusNotImplemented:          "NotImplemented",
		http.StatusHTTPVersionNotSupported: "HttpVersionNotSupported",
	} {
		t.Run(code, func(t *testing.T) {
			t.Parallel()
			srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/xml")
				w.WriteHeader(status)
				if r.Method != http.MethodHead {
					_, _ = io.WriteString(w, s3Doc(code))
				}
			})
			client := s3At(srv.URL, 3)
			for path, o := range peekPaths(t, client) {
				srv.take()
				_, prefix, err := o.Peek(testkit.Context(t), "bkt", "k", 10)
				require.Error(t, err, path)
				require.Nil(t, prefix, path)
				require.NotErrorIs(t, err, pipeline.ErrUnavailable, "%s: %v", path, err)
				require.NotErrorIs(t, err, pipeline.ErrNotFound, path)
				require.NotErrorIs(t, err, pipeline.ErrChanged, path)
				require.ErrorContains(t, err, code, path)
				require.Equal(t, []string{path}, senders(srv.take()), "%s: sent once, not again through the SDK", path)
			}
			objs := objstore.NewObjects(client)
			_, err := objs.Head(testkit.Context(t), "bkt", "k")
			require.Error(t, err)
			require.NotErrorIs(t, err, pipeline.ErrUnavailable, "%v", err)
			require.NotErrorIs(t, err, pipeline.ErrNotFound)
			require.Equal(t, []string{"sdk"}, senders(srv.take()), "HEAD: once, no HeadBucket")
			require.False(t, objstore.IsRetryable(err))
		})
	}
}

// TestObjectsMissingBucketIsAnOutage: on MinIO, every operation on a bucket that does not exist
// fails as an outage of S3, never as a missing object: a HEAD's 404 (which has no body to tell a
// missing key from a missing bucket) is confirmed by a HeadBucket first. A missing key in a bucket
// that exists is still ErrNotFound.
func TestObjectsMissingBucketIsAnOutage(t *testing.T) {
	t.Parallel()
	b := setupObjects(t)
	absent := testkit.Name("absent-")
	ref := pipeline.ObjectRef{Bucket: absent, Key: "k", ETag: "0123"}
	missing := pipeline.ObjectRef{Bucket: b.bucket, Key: "absent", ETag: "0123"}
	paths := peekPaths(t, b.client)

	for _, tc := range []struct {
		name string
		run  func(ref pipeline.ObjectRef) error
	}{
		{"head", func(r pipeline.ObjectRef) error { _, err := b.objs.Head(b.ctx, r.Bucket, r.Key); return err }},
		{"peek fast", func(r pipeline.ObjectRef) error {
			_, _, err := paths["fast"].Peek(b.ctx, r.Bucket, r.Key, 10)
			return err
		}},
		{"peek net/http", func(r pipeline.ObjectRef) error {
			_, _, err := paths["net/http"].Peek(b.ctx, r.Bucket, r.Key, 10)
			return err
		}},
		{"peek sdk", func(r pipeline.ObjectRef) error {
			_, _, err := paths["sdk"].Peek(b.ctx, r.Bucket, r.Key, 10)
			return err
		}},
		{"read prefix", func(r pipeline.ObjectRef) error {
			_, err := b.objs.ReadPrefix(b.ctx, pipeline.ObjectRef{Bucket: r.Bucket, Key: r.Key}, 10)
			return err
		}},
		{"hash", func(r pipeline.ObjectRef) error {
			_, _, err := b.objs.Hash(b.ctx, pipeline.ObjectRef{Bucket: r.Bucket, Key: r.Key})
			return err
		}},
		{"tag", func(r pipeline.ObjectRef) error { return b.objs.Tag(b.ctx, r, map[string]string{"x": "y"}) }},
		{"delete", func(r pipeline.ObjectRef) error { return b.objs.Delete(b.ctx, r) }},
		{"move", func(r pipeline.ObjectRef) error { _, err := b.objs.Move(b.ctx, r, "q/"+r.Key); return err }},
	} {
		err := tc.run(ref)
		require.ErrorIs(t, err, pipeline.ErrUnavailable, "%s in a missing bucket", tc.name)
		require.NotErrorIs(t, err, pipeline.ErrNotFound, "%s in a missing bucket", tc.name)
		require.Equal(t, pipeline.DependencyS3, pipeline.UnavailableDependency(err), tc.name)

		err = tc.run(missing)
		require.ErrorIs(t, err, pipeline.ErrNotFound, "%s of a missing key", tc.name)
		require.NotErrorIs(t, err, pipeline.ErrUnavailable, "%s of a missing key", tc.name)
	}
	// Deleting a key (no ref to check) of a bucket that is not there is an outage too.
	require.ErrorIs(t, b.objs.Delete(b.ctx, pipeline.ObjectRef{Bucket: absent, Key: "k"}), pipeline.ErrUnavailable)
}

// TestHeadConfirmsTheBucketAfterEachMiss: a HEAD's 404 is the object missing only when a HeadBucket
// sent after that HEAD finds the bucket. An earlier confirmation does not count: a bucket gone
// since (the store restarted on an empty volume) makes the next miss an outage.
func TestHeadConfirmsTheBucketAfterEachMiss(t *testing.T) {
	t.Parallel()
	var bucketGone atomic.Bool
	var headBuckets atomic.Int32
	var slow atomic.Bool
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Method == http.MethodHead && r.URL.Path == "/bkt":
			headBuckets.Add(1)
			if bucketGone.Load() {
				w.WriteHeader(http.StatusNotFound)
			}
		case r.Method == http.MethodHead:
			if slow.Load() {
				time.Sleep(200 * time.Millisecond)
			}
			w.WriteHeader(http.StatusNotFound)
		default:
			w.WriteHeader(http.StatusNotImplemented)
		}
	})
	objs := objstore.NewObjects(s3At(srv.URL, 1))
	ctx := testkit.Context(t)

	_, err := objs.Head(ctx, "bkt", "k")
	require.ErrorIs(t, err, pipeline.ErrNotFound)
	require.EqualValues(t, 1, headBuckets.Load())
	_, err = objs.Head(ctx, "bkt", "k")
	require.ErrorIs(t, err, pipeline.ErrNotFound)
	require.EqualValues(t, 2, headBuckets.Load(), "a confirmation sent before the HEAD proves nothing")

	// Concurrent misses (their HEADs sent before the first 404 comes back) share one HeadBucket.
	slow.Store(true)
	headBuckets.Store(0)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			_, err := objs.Head(ctx, "bkt", "k")
			assert.ErrorIs(t, err, pipeline.ErrNotFound)
		})
	}
	wg.Wait()
	require.LessOrEqual(t, headBuckets.Load(), int32(2), "concurrent misses share the confirmation")
	slow.Store(false)

	bucketGone.Store(true)
	_, err = objs.Head(ctx, "bkt", "k")
	require.ErrorIs(t, err, pipeline.ErrUnavailable)
	require.NotErrorIs(t, err, pipeline.ErrNotFound)
	err = objs.Delete(ctx, pipeline.ObjectRef{Bucket: "bkt", Key: "k", ETag: "e"})
	require.ErrorIs(t, err, pipeline.ErrUnavailable, "Delete's check is a HEAD too")
	require.NotErrorIs(t, err, pipeline.ErrNotFound)
}

// TestMoveWithAnAbortedCopyUploadIsNoMissingObject: when the multipart upload of a large object's
// copy is aborted under Move (S3 answers the part copy with NoSuchUpload), Move fails with an error
// that is retried, not ErrNotFound: the source object is still there, and the pipeline would leave
// it alone as "gone".
func TestMoveWithAnAbortedCopyUploadIsNoMissingObject(t *testing.T) {
	t.Parallel()
	const size = 11 << 20
	var aborted atomic.Bool
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		switch {
		case r.Method == http.MethodHead && r.URL.Path == "/bkt/src":
			w.Header().Set("Content-Length", fmt.Sprint(size))
			w.Header().Set("ETag", `"e"`)
			w.Header().Set("Content-Type", "application/octet-stream")
		case r.Method == http.MethodHead:
			w.WriteHeader(http.StatusNotFound)
		case r.Method == http.MethodPost && q.Has("uploads"):
			w.Header().Set("Content-Type", "application/xml")
			_, _ = io.WriteString(w, `<?xml version="1.0" encoding="UTF-8"?>`+
				`<InitiateMultipartUploadResult><Bucket>bkt</Bucket><Key>q/src</Key><UploadId>up1</UploadId></InitiateMultipartUploadResult>`)
		case r.Method == http.MethodPut && q.Has("partNumber"):
			w.Header().Set("Content-Type", "application/xml")
			w.WriteHeader(http.StatusNotFound)
			_, _ = io.WriteString(w, s3Doc("NoSuchUpload"))
		case r.Method == http.MethodDelete && q.Get("uploadId") == "up1":
			aborted.Store(true)
			w.WriteHeader(http.StatusNoContent)
		default:
			w.WriteHeader(http.StatusNotImplemented)
		}
	})
	objs := objstore.NewObjects(s3At(srv.URL, 1))
	objstore.SetCopyLimits(objs, 5<<20, 5<<20)
	copied, err := objs.Move(testkit.Context(t), pipeline.ObjectRef{Bucket: "bkt", Key: "src", ETag: "e"}, "q/src")
	require.False(t, copied)
	require.ErrorContains(t, err, "NoSuchUpload")
	require.NotErrorIs(t, err, pipeline.ErrNotFound)
	require.NotErrorIs(t, err, pipeline.ErrChanged)
	require.True(t, aborted.Load(), "the upload is aborted")
}

// TestObjectsDeleteVersion: in a versioned bucket, deleting a ref taken from a HEAD deletes that
// version, not whatever is current: a version written since stays current, and the ref's version
// is gone for good (not hidden behind a delete marker, still readable by its id). Move ends the
// same way.
func TestObjectsDeleteVersion(t *testing.T) {
	t.Parallel()
	b := setupObjects(t)
	b.versioned(t)
	ref := func(key string) pipeline.ObjectRef {
		info, err := b.objs.Head(b.ctx, b.bucket, key)
		require.NoError(t, err)
		require.NotEmpty(t, info.VersionID)
		return pipeline.ObjectRef{Bucket: b.bucket, Key: key, VersionID: info.VersionID, ETag: info.ETag}
	}
	versionGone := func(r pipeline.ObjectRef) {
		t.Helper()
		_, err := b.client.GetObject(b.ctx, &s3.GetObjectInput{Bucket: aws.String(b.bucket), Key: aws.String(r.Key), VersionId: aws.String(r.VersionID)})
		require.True(t, objstore.IsNotFound(err), "version %s of %s is gone: %v", r.VersionID, r.Key, err)
	}

	b.put(t, "k", "text/plain", strings.NewReader("v1: rejected"))
	v1 := ref("k")
	b.put(t, "k", "text/plain", strings.NewReader("v2: written since"))
	require.NoError(t, b.objs.Delete(b.ctx, v1))
	body, _ := b.get(t, "k")
	require.Equal(t, "v2: written since", string(body), "the version written since is still current")
	versionGone(v1)

	b.put(t, "m", "text/plain", strings.NewReader("m1: rejected"))
	m1 := ref("m")
	b.put(t, "m", "text/plain", strings.NewReader("m2: written since"))
	copied, err := b.objs.Move(b.ctx, m1, "q/m")
	require.NoError(t, err)
	require.True(t, copied)
	body, _ = b.get(t, "m")
	require.Equal(t, "m2: written since", string(body))
	body, _ = b.get(t, "q/m")
	require.Equal(t, "m1: rejected", string(body), "the ref's version was moved")
	versionGone(m1)
}

// cutOff answers a GET with status and header, writes body and then breaks the connection.
func cutOff(status int, header map[string]string, body []byte) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		for k, v := range header {
			w.Header().Set(k, v)
		}
		w.WriteHeader(status)
		_, _ = w.Write(body)
		w.(http.Flusher).Flush()
		if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
			_ = conn.Close()
		}
	}
}

// TestReadPrefixRefusesACutOffBody: a body that ends before the bytes its answer announced (4,096
// announced, 100 sent), or a chunked body cut before its last chunk, is an outage of S3, not a
// 100-byte object: a prefix sniffed from a fragment could reject a valid upload for good. Whole
// short bodies are still read whole.
func TestReadPrefixRefusesACutOffBody(t *testing.T) {
	t.Parallel()
	frag := bytes.Repeat([]byte{0x89}, 100)
	for _, tc := range []struct {
		name    string
		handler http.HandlerFunc
		want    string // "": ErrUnavailable
	}{
		{"content-length", cutOff(http.StatusPartialContent, map[string]string{
			"Content-Range": "bytes 0-4095/10000", "Content-Length": "4096",
		}, frag), ""},
		{"chunked", cutOff(http.StatusOK, nil, frag), ""},
		{"whole short body", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Range", "bytes 0-2/3")
			w.WriteHeader(http.StatusPartialContent)
			_, _ = io.WriteString(w, "abc")
		}, "abc"},
		{"whole chunked body", func(w http.ResponseWriter, _ *http.Request) {
			_, _ = io.WriteString(w, "abc")
			w.(http.Flusher).Flush()
		}, "abc"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := newServer(t, tc.handler)
			objs := objstore.NewObjects(s3At(srv.URL, 1))
			got, err := objs.ReadPrefix(testkit.Context(t), pipeline.ObjectRef{Bucket: "bkt", Key: "k.png"}, 4096)
			if tc.want != "" {
				require.NoError(t, err)
				require.Equal(t, tc.want, string(got))
				return
			}
			require.ErrorIs(t, err, pipeline.ErrUnavailable)
			require.Nil(t, got)
		})
	}
}

// rawAnswer answers a request with raw (status line, header and body as they go on the wire) and
// closes the connection.
func rawAnswer(raw string) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		conn, _, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		_, _ = io.WriteString(conn, raw)
		_ = conn.Close()
	}
}

// TestPeekRefusesAnAnswerWithoutSize: an answer that ignores the Range and sends the object chunked
// or until the connection closes (no Content-Length, no Content-Range), or a 206 without
// Content-Range, does not give the object's size: Peek fails as an outage of S3, through every
// path, instead of recording a 0-byte object (or the part's length, or what came before the close)
// as its size. A 200 with a Content-Length is the whole object, its length the size.
func TestPeekRefusesAnAnswerWithoutSize(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		handler  http.HandlerFunc
		wantSize int64    // -1: ErrUnavailable
		fastSent []string // who sent the fast path's GETs (nil: not checked)
	}{
		{"200 chunked", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "image/png")
			_, _ = io.WriteString(w, "hello")
			w.(http.Flusher).Flush() // the body goes chunked
			_, _ = io.WriteString(w, " world")
		}, -1, []string{"fast"}},
		{"206 without Content-Range", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Length", "5")
			w.WriteHeader(http.StatusPartialContent)
			_, _ = io.WriteString(w, "hello")
		}, -1, []string{"fast"}},
		{"200 with Content-Length", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Length", "11")
			_, _ = io.WriteString(w, "hello world")
		}, 11, []string{"fast"}},
		// A body delimited by the connection's close: fasthttp counts what it read as the
		// Content-Length, and its fast path took that for the object's size.
		// fasthttp cannot tell it from an answer announcing its length once the connection
		// closes: such an answer goes to net/http.
		{"200 until close", rawAnswer("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nhello world"), -1, []string{"fast", "net/http"}},
		{"200 until close, HTTP/1.0", rawAnswer("HTTP/1.0 200 OK\r\n\r\nhello world"), -1, []string{"fast", "net/http"}},
		// The same header but for its Content-Length gives the size, on every path.
		{"200 with Content-Length, then close", rawAnswer("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 11\r\n\r\nhello world"), 11, []string{"fast", "net/http"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := newServer(t, tc.handler)
			for path, o := range peekPaths(t, s3At(srv.URL, 1)) {
				srv.take()
				info, prefix, err := o.Peek(testkit.Context(t), "bkt", "k", 10)
				if tc.wantSize >= 0 {
					require.NoError(t, err, path)
					require.Equal(t, tc.wantSize, info.Size, path)
					require.Equal(t, "hello worl", string(prefix), path)
				} else {
					require.ErrorIs(t, err, pipeline.ErrUnavailable, "%s: size %d, prefix %q", path, info.Size, prefix)
					require.Nil(t, prefix, path)
				}
				if sent := srv.take(); path == "fast" && tc.fastSent != nil {
					require.Equal(t, tc.fastSent, senders(sent), "who sent the fast path's GETs")
				}
			}
		})
	}
}
