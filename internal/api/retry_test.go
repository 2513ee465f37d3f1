package api

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/intakehq/intake/internal/testkit"
)

// TestRetriedCompleteAndAbort: a client whose complete or DELETE was done but whose answer was
// lost (a timeout, a dropped connection) retries it and gets the answer again, on both route
// families: the complete with the same parts 200 with the object's ETag and size, the DELETE 204,
// and nothing more happens (no second abort, no change to the intent). A complete with other parts
// after the upload completed, or of another tenant, is still refused.
func TestRetriedCompleteAndAbort(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for _, uppy := range []bool{false, true} {
		name := map[bool]string{false: "v1", true: "uppy"}[uppy]
		t.Run(name, func(t *testing.T) {
			body := map[string]any{"filename": "retry.bin", "content_type": "application/octet-stream", "size": 5<<20 + 10, "method": "multipart"}
			if uppy {
				body = map[string]any{"filename": "retry.bin", "type": "application/octet-stream", "size": 5<<20 + 10}
			}
			u := b.createMP(t, aliceKey, body, uppy)
			parts := b.uploadParts(t, aliceKey, u, 5<<20, 10)
			status, first := b.completeMP(t, aliceKey, u, map[string]any{"parts": parts})
			require.Equal(t, http.StatusOK, status, first)

			before := b.effects(t)
			status, again := b.completeMP(t, aliceKey, u, map[string]any{"parts": []map[string]any{parts[1], parts[0]}})
			require.Equal(t, http.StatusOK, status, again)
			require.Equal(t, first["key"], again["key"])
			require.NotEmpty(t, first["location"])
			require.Equal(t, first["location"], again["location"], "the object's URL, as S3 gave it to the completion (Uppy's uploadURL)")
			if !uppy {
				require.Equal(t, first["etag"], again["etag"])
				require.Equal(t, first["size"], again["size"])
			}
			require.Equal(t, before, b.effects(t), "a retried complete changes nothing")

			// Other parts: not this completion.
			other := []map[string]any{parts[0]}
			status, resp := b.completeMP(t, aliceKey, u, map[string]any{"parts": other})
			require.Equal(t, http.StatusConflict, status, resp)
			// Another tenant: not found, whatever the parts.
			status, resp = b.completeMP(t, bobKey, u, map[string]any{"parts": parts})
			require.Equal(t, http.StatusNotFound, status, resp)

			// An abort, retried.
			a := b.createMP(t, aliceKey, body, uppy)
			path := "/v1/uploads/" + a.id
			if uppy {
				path = "/s3/multipart/" + url.PathEscape(a.uploadID) + "?key=" + url.QueryEscape(a.key)
			}
			want := map[bool]int{false: http.StatusNoContent, true: http.StatusOK}[uppy]
			status, _, resp = b.call(t, "DELETE", path, aliceKey, nil)
			require.Equal(t, want, status, resp)
			before = b.effects(t)
			status, _, resp = b.call(t, "DELETE", path, aliceKey, nil)
			require.Equal(t, want, status, resp)
			require.Equal(t, before, b.effects(t), "a retried DELETE sends and records nothing")
			require.Equal(t, "aborted", b.state(t, a).status)
			// The completed upload cannot be aborted, retried or not.
			cpath := "/v1/uploads/" + u.id
			if uppy {
				cpath = "/s3/multipart/" + url.PathEscape(u.uploadID) + "?key=" + url.QueryEscape(u.key)
			}
			status, _, resp = b.call(t, "DELETE", cpath, aliceKey, nil)
			require.Equal(t, http.StatusConflict, status, resp)
		})
	}
}

// TestCompleteLocationIsThePublicURL: with INTAKE_S3_PUBLIC_ENDPOINT set (browsers reach S3 under
// another name than intake does), a complete's location is the object's URL under the public
// endpoint, the one its presigned URLs name, on both route families, and a retried complete answers
// the same. Before, the first answer carried S3's own Location (the endpoint intake calls, which a
// browser may not reach) and a retry the public one: Uppy's uploadURL depended on whether the
// first answer was lost.
func TestCompleteLocationIsThePublicURL(t *testing.T) {
	t.Parallel()
	internal := testkit.AWS().S3Endpoint
	public := strings.Replace(internal, "127.0.0.1", "localhost", 1)
	require.NotEqual(t, internal, public, "the test's S3 endpoint is not on 127.0.0.1")
	b := setup(t, setupOpts{publicEndpoint: public})
	for _, uppy := range []bool{false, true} {
		body := map[string]any{"filename": "located.bin", "content_type": "application/octet-stream", "size": 10, "method": "multipart"}
		if uppy {
			body = map[string]any{"filename": "located.bin", "type": "application/octet-stream", "size": 10}
		}
		u := b.createMP(t, aliceKey, body, uppy)
		parts := b.uploadParts(t, aliceKey, u, 10)
		status, first := b.completeMP(t, aliceKey, u, map[string]any{"parts": parts})
		require.Equal(t, http.StatusOK, status, first)
		want := public + "/" + b.bucket + "/" + u.key
		require.Equal(t, want, first["location"], "uppy %v", uppy)
		status, again := b.completeMP(t, aliceKey, u, map[string]any{"parts": parts})
		require.Equal(t, http.StatusOK, status, again)
		require.Equal(t, want, again["location"], "uppy %v: retried", uppy)
	}
}
