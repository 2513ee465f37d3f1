package objstore_test

import (
	"io"
	"net/http"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/intakehq/intake/internal/objstore"
	"github.com/intakehq/intake/internal/testkit"
	"github.com/intakehq/intake/pipeline"
)

// TestMoveReportsTheCopyWhenTheSourceChanges: when the source is replaced (or deleted) between
// Move's copy and its delete, the delete's check fails with ErrChanged (ErrNotFound) and the source
// is left alone, but the copy exists: Move says so (copied), so that the pipeline records it rather
// than leaving a quarantined copy without a row. A copy that failed reports none.
func TestMoveReportsTheCopyWhenTheSourceChanges(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name       string
		afterCopy  int // the status of the delete's HEAD of the source once the copy is made
		copyStatus int
		want       error
		copied     bool
	}{
		{"replaced after the copy", http.StatusPreconditionFailed, http.StatusOK, pipeline.ErrChanged, true},
		{"deleted after the copy", http.StatusNotFound, http.StatusOK, pipeline.ErrNotFound, true},
		{"copy refused", http.StatusOK, http.StatusPreconditionFailed, pipeline.ErrChanged, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var copied, deleted atomic.Bool
			srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
				switch {
				case r.Method == http.MethodHead && r.URL.Path == "/bkt":
				case r.Method == http.MethodHead && r.URL.Path == "/bkt/src":
					if copied.Load() && tc.afterCopy != http.StatusOK {
						w.WriteHeader(tc.afterCopy)
						return
					}
					w.Header().Set("ETag", `"e"`)
					w.Header().Set("Content-Length", "3")
				case r.Method == http.MethodHead:
					w.WriteHeader(http.StatusNotFound)
				case r.Method == http.MethodPut && r.Header.Get("X-Amz-Copy-Source") != "":
					w.Header().Set("Content-Type", "application/xml")
					if tc.copyStatus != http.StatusOK {
						w.WriteHeader(tc.copyStatus)
						_, _ = io.WriteString(w, s3Doc("PreconditionFailed"))
						return
					}
					copied.Store(true)
					_, _ = io.WriteString(w, `<?xml version="1.0" encoding="UTF-8"?>`+
						`<CopyObjectResult><ETag>"e"</ETag><LastModified>2026-01-01T00:00:00.000Z</LastModified></CopyObjectResult>`)
				case r.Method == http.MethodDelete:
					deleted.Store(true)
					w.WriteHeader(http.StatusNoContent)
				default:
					w.WriteHeader(http.StatusNotImplemented)
				}
			})
			objs := objstore.NewObjects(s3At(srv.URL, 1))
			got, err := objs.Move(testkit.Context(t), pipeline.ObjectRef{Bucket: "bkt", Key: "src", ETag: "e"}, "q/src")
			require.ErrorIs(t, err, tc.want)
			require.Equal(t, tc.copied, got, "copied")
			require.Equal(t, tc.copied, copied.Load())
			require.False(t, deleted.Load(), "the source is left alone")
		})
	}
}
