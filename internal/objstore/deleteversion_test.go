package objstore_test

import (
	"net/http"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/intakehq/intake/internal/objstore"
	"github.com/intakehq/intake/internal/testkit"
	"github.com/intakehq/intake/pipeline"
)

// TestDeleteOlderVersionSendsNoIfMatch: AWS evaluates a DELETE's If-Match against the key's
// current version only ("Conditional delete evaluations only apply to the current version of the
// object"), even with a versionId. So when an uploader writes v2 over a rejected v1 while v1 is
// inspected, a delete of v1 that carried If-Match: "e1" was refused (412 → ErrChanged, "left
// alone"), and the rejected version stayed readable by its id. A version's content never changes,
// and the HEAD of v1 has checked its ETag: the delete of a version sends no If-Match, and deletes
// v1 alone; a delete of the key (no version) still sends it. The stub answers as AWS does.
func TestDeleteOlderVersionSendsNoIfMatch(t *testing.T) {
	t.Parallel()
	etags := map[string]string{"v1": `"e1"`, "v2": `"e2"`}
	const current = "v2"
	var mu sync.Mutex
	var deleted []string
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		version := r.URL.Query().Get("versionId")
		if version == "" {
			version = current
		}
		etag, ok := etags[version]
		if !ok {
			w.WriteHeader(http.StatusNotFound)
			return
		}
		switch r.Method {
		case http.MethodHead:
			answerHead(w, r, etag)
		case http.MethodDelete:
			// AWS: If-Match is compared with the current version's ETag.
			if refuseIfMatch(w, r, etags[current]) {
				return
			}
			mu.Lock()
			deleted = append(deleted, version)
			mu.Unlock()
			w.WriteHeader(http.StatusNoContent)
		default:
			w.WriteHeader(http.StatusMethodNotAllowed)
		}
	})
	objs := objstore.NewObjects(s3At(srv.URL, 1))

	require.NoError(t, objs.Delete(testkit.Context(t), pipeline.ObjectRef{Bucket: "bkt", Key: "k", VersionID: "v1", ETag: "e1"}),
		"the rejected older version is deleted")
	require.Equal(t, []string{"v1"}, deleted, "v1 alone")

	// The key's current object, no version: If-Match still guards it.
	err := objs.Delete(testkit.Context(t), pipeline.ObjectRef{Bucket: "bkt", Key: "k", ETag: "e1"})
	require.ErrorIs(t, err, pipeline.ErrChanged, "a newer object took the key: left alone")
	require.Equal(t, []string{"v1"}, deleted)
}

// TestDeleteNullVersionSendsIfMatch: the "null" version (written while versioning was suspended)
// is overwritten in place by a PUT: an uploader that writes its key again between the HEAD and the
// DELETE replaces it, and a DELETE ?versionId=null without If-Match would delete the new object,
// uninspected. Its delete carries If-Match, which AWS evaluates against the current version, the
// null one: refused (ErrChanged), nothing deleted.
func TestDeleteNullVersionSendsIfMatch(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	etag := `"e1"`
	var deleted int
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		switch r.Method {
		case http.MethodHead:
			answerHead(w, r, etag)
			etag = `"e2"` // the uploader's PUT lands now, over the null version
		case http.MethodDelete:
			if refuseIfMatch(w, r, etag) {
				return
			}
			deleted++
			w.WriteHeader(http.StatusNoContent)
		}
	})
	objs := objstore.NewObjects(s3At(srv.URL, 1))
	err := objs.Delete(testkit.Context(t), pipeline.ObjectRef{Bucket: "bkt", Key: "k", VersionID: "null", ETag: "e1"})
	require.ErrorIs(t, err, pipeline.ErrChanged)
	require.Zero(t, deleted, "the new object under the null version is not deleted")
}

// answerHead answers a HEAD of an object of 5 bytes whose ETag is etag, as S3 does: 412 when the
// request's If-Match names another.
func answerHead(w http.ResponseWriter, r *http.Request, etag string) {
	if refuseIfMatch(w, r, etag) {
		return
	}
	w.Header().Set("ETag", etag)
	w.Header().Set("Content-Length", "5")
	w.WriteHeader(http.StatusOK)
}

// refuseIfMatch answers 412 PreconditionFailed, and reports that it did, when the request's
// If-Match names another ETag than etag.
func refuseIfMatch(w http.ResponseWriter, r *http.Request, etag string) bool {
	if m := r.Header.Get("If-Match"); m == "" || m == etag {
		return false
	}
	w.Header().Set("Content-Type", "application/xml")
	w.WriteHeader(http.StatusPreconditionFailed)
	if r.Method != http.MethodHead {
		_, _ = w.Write([]byte(s3Doc("PreconditionFailed")))
	}
	return true
}
