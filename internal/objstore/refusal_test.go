package objstore_test

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/intakehq/intake/internal/objstore"
	"github.com/intakehq/intake/internal/testkit"
	"github.com/intakehq/intake/pipeline"
)

// TestPeekEmptyObjectReplacedIsChanged: an empty object has no byte 0, so Peek's ranged GET gets
// 416 and its metadata comes from a HEAD, another request. When the key holds another object by
// then (an uploader allowed sizes from 0 racing an empty upload with a hostile one), the HEAD
// describes bytes nothing has read: Peek returns ErrChanged, through every path, so that the
// inspection starts over instead of judging a 2,000-byte object by an empty prefix. Another empty
// object (another ETag than the 416's) is a change too; the same empty object is not.
func TestPeekEmptyObjectReplacedIsChanged(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		rangeETag string // the 416's ETag header ("": none, as S3's)
		headSize  int
		headETag  string
		changed   bool
	}{
		{"replaced by a 2000-byte object", "", 2000, "b", true},
		{"replaced by a 2000-byte object, 416 with ETag", "a", 2000, "b", true},
		{"replaced by another empty object", "a", 0, "b", true},
		{"still empty", "", 0, "d41d8cd98f00b204e9800998ecf8427e", false},
		{"still empty, 416 with ETag", "d41d8cd98f00b204e9800998ecf8427e", 0, "d41d8cd98f00b204e9800998ecf8427e", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
				switch r.Method {
				case http.MethodGet:
					if tc.rangeETag != "" {
						w.Header().Set("ETag", `"`+tc.rangeETag+`"`)
					}
					w.Header().Set("Content-Type", "application/xml")
					w.Header().Set("Content-Range", "bytes */0")
					w.WriteHeader(http.StatusRequestedRangeNotSatisfiable)
					_, _ = io.WriteString(w, s3Doc("InvalidRange"))
				case http.MethodHead:
					w.Header().Set("Content-Length", strconv.Itoa(tc.headSize))
					w.Header().Set("ETag", `"`+tc.headETag+`"`)
					w.Header().Set("Content-Type", "text/plain")
				default:
					w.WriteHeader(http.StatusNotImplemented)
				}
			})
			for path, o := range peekPaths(t, s3At(srv.URL, 1)) {
				info, prefix, err := o.Peek(testkit.Context(t), "bkt", "k", pipeline.SniffLen)
				require.Nil(t, prefix, path)
				if !tc.changed {
					require.NoError(t, err, path)
					require.Zero(t, info.Size, path)
					require.Equal(t, tc.headETag, info.ETag, path)
					continue
				}
				require.ErrorIs(t, err, pipeline.ErrChanged, "%s: size %d, ETag %s", path, info.Size, info.ETag)
				require.Equal(t, pipeline.ObjectInfo{}, info, path)
			}
		})
	}
}

// refusing answers every request with status: GETs, PUTs and DELETEs with S3's error document of
// code, HEADs (which have no body) with the bare status. headBucket, when not 0, is the status of a
// HeadBucket of bkt instead, and headBuckets counts them.
func refusing(status int, code string, headBucket int, headBuckets *atomic.Int32) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodHead && r.URL.Path == "/bkt" {
			headBuckets.Add(1)
			if headBucket != 0 {
				w.WriteHeader(headBucket)
				return
			}
		}
		if r.Method == http.MethodHead {
			w.WriteHeader(status)
			return
		}
		w.Header().Set("Content-Type", "application/xml")
		w.WriteHeader(status)
		_, _ = io.WriteString(w, s3Doc(code))
	}
}

// objectCalls are the Objects operations on bkt/k whose refusals TestCredentialsRefusedIsAnOutage
// and TestAccessDeniedIsConfirmedByHeadBucket classify.
func objectCalls(t *testing.T, client func() *objstore.Objects) map[string]func() error {
	t.Helper()
	ctx := testkit.Context(t)
	ref := pipeline.ObjectRef{Bucket: "bkt", Key: "k"}
	calls := map[string]func() error{
		"head": func() error { _, err := client().Head(ctx, "bkt", "k"); return err },
		"read prefix": func() error {
			_, err := client().ReadPrefix(ctx, ref, 10)
			return err
		},
		"hash":   func() error { _, _, err := client().Hash(ctx, ref); return err },
		"tag":    func() error { return client().Tag(ctx, ref, map[string]string{"x": "y"}) },
		"delete": func() error { return client().Delete(ctx, ref) },
		"checked delete": func() error {
			return client().Delete(ctx, pipeline.ObjectRef{Bucket: "bkt", Key: "k", ETag: "e"})
		},
	}
	return calls
}

// TestCredentialsRefusedIsAnOutage: S3 refusing intake's credentials themselves (an expired or
// invalid session token, an unknown access key, a signature it does not accept) is no object's
// fault: every request fails alike until the credentials are renewed or fixed. Every operation,
// through every Peek path, fails as an outage of S3 (which pauses the consumer and checks the
// store) rather than as the one message's error (which would spend every message's receives and
// dead-letter the queue). A HEAD's refusal has no body and so no code: a HeadBucket refused too
// tells the same.
func TestCredentialsRefusedIsAnOutage(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		code   string
		status int
	}{
		{"ExpiredToken", http.StatusBadRequest},
		{"InvalidToken", http.StatusBadRequest},
		{"TokenRefreshRequired", http.StatusBadRequest},
		{"InvalidAccessKeyId", http.StatusForbidden},
		{"SignatureDoesNotMatch", http.StatusForbidden},
	} {
		t.Run(tc.code, func(t *testing.T) {
			t.Parallel()
			var headBuckets atomic.Int32
			srv := newServer(t, refusing(tc.status, tc.code, 0, &headBuckets))
			client := s3At(srv.URL, 1)
			check := func(what string, err error) {
				t.Helper()
				require.ErrorIs(t, err, pipeline.ErrUnavailable, what)
				require.Equal(t, pipeline.DependencyS3, pipeline.UnavailableDependency(err), what)
				for _, s := range []error{pipeline.ErrNotFound, pipeline.ErrChanged} {
					require.NotErrorIs(t, err, s, what)
				}
			}
			for path, o := range peekPaths(t, client) {
				_, _, err := o.Peek(testkit.Context(t), "bkt", "k", 10)
				check("peek "+path, err)
				require.ErrorContains(t, err, tc.code, path)
			}
			objs := objstore.NewObjects(client)
			for name, call := range objectCalls(t, func() *objstore.Objects { return objs }) {
				check(name, call())
			}
		})
	}
}

// TestAccessDeniedIsConfirmedByHeadBucket: an AccessDenied may be one object's (a bucket policy or
// a KMS key intake may not use denying that object) or the store's (intake's role lost its access).
// A HeadBucket of the same bucket tells: when the bucket answers, the refusal is the object's, an
// error of that message alone (no sentinel); when the HeadBucket is refused too (403; 400, as an
// expired token answers a HEAD), it is an outage of S3. The bodiless 403 of a HEAD is looked into
// the same way.
func TestAccessDeniedIsConfirmedByHeadBucket(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name       string
		headBucket int
		outage     bool
	}{
		{"bucket answers: the object's", http.StatusOK, false},
		{"bucket refused: the store's", http.StatusForbidden, true},
		{"bucket refuses the token: the store's", http.StatusBadRequest, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var headBuckets atomic.Int32
			srv := newServer(t, refusing(http.StatusForbidden, "AccessDenied", tc.headBucket, &headBuckets))
			client := s3At(srv.URL, 1)
			check := func(what string, err error) {
				t.Helper()
				require.Error(t, err, what)
				require.Equal(t, tc.outage, errors.Is(err, pipeline.ErrUnavailable), "%s: %v", what, err)
				if tc.outage {
					require.Equal(t, pipeline.DependencyS3, pipeline.UnavailableDependency(err), what)
				}
				for _, s := range []error{pipeline.ErrNotFound, pipeline.ErrChanged} {
					require.NotErrorIs(t, err, s, what)
				}
			}
			for path, o := range peekPaths(t, client) {
				before := headBuckets.Load()
				_, _, err := o.Peek(testkit.Context(t), "bkt", "k", 10)
				check("peek "+path, err)
				require.ErrorContains(t, err, "AccessDenied", path)
				require.Equal(t, before+1, headBuckets.Load(), "%s: one HeadBucket looks into the refusal", path)
			}
			objs := objstore.NewObjects(client)
			for name, call := range objectCalls(t, func() *objstore.Objects { return objs }) {
				check(name, call())
			}
		})
	}
}

// TestConflictIsTheObjects: a 409 (ConditionalRequestConflict: a conditional request racing another
// write of the key; OperationAborted: a conflicting operation in progress on the object) is about
// the one object every Objects request names, not the store: it is an error of that message, to
// retry later (no sentinel), never an outage that would pause the whole consumer, nor a change
// (the object may be unchanged) that would leave a rejected object alone.
func TestConflictIsTheObjects(t *testing.T) {
	t.Parallel()
	for _, code := range []string{"ConditionalRequestConflict", "OperationAborted"} {
		t.Run(code, func(t *testing.T) {
			t.Parallel()
			err, retried := objstore.ClassifyPresignedError(http.StatusConflict, s3Doc(code))
			require.False(t, retried)
			for _, s := range []error{pipeline.ErrNotFound, pipeline.ErrChanged, pipeline.ErrUnavailable} {
				require.NotErrorIs(t, err, s)
			}

			srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
				if r.Method == http.MethodHead {
					w.Header().Set("ETag", `"e"`)
					w.Header().Set("Content-Length", "3")
					return
				}
				w.Header().Set("Content-Type", "application/xml")
				w.WriteHeader(http.StatusConflict)
				_, _ = io.WriteString(w, s3Doc(code))
			})
			objs := objstore.NewObjects(s3At(srv.URL, 1))
			ref := pipeline.ObjectRef{Bucket: "bkt", Key: "k", ETag: "e"}
			for name, err := range map[string]error{
				"delete": objs.Delete(testkit.Context(t), ref),
				"tag":    objs.Tag(testkit.Context(t), ref, map[string]string{"x": "y"}),
			} {
				require.ErrorContains(t, err, code, name)
				for _, s := range []error{pipeline.ErrNotFound, pipeline.ErrChanged, pipeline.ErrUnavailable} {
					require.NotErrorIs(t, err, s, fmt.Sprintf("%s: %v", name, err))
				}
			}
		})
	}
}
