package api

import (
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/intakehq/intake/internal/race"
	"github.com/intakehq/intake/internal/store/dbq"
)

// discardWriter is a ResponseWriter that keeps nothing, its header map made once.
type discardWriter struct{ h http.Header }

func (d *discardWriter) Header() http.Header         { return d.h }
func (d *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (d *discardWriter) WriteHeader(int)             {}

// TestUploadAnswerStaysOffTheHeap: recording a single-PUT intent and writing its answer allocate
// nothing of their own. A pointer into the intent or the answer handed to the Queries interface
// (persistIntent once passed &resp.UploadID) moves that struct to the heap on every POST
// /v1/uploads, and this fails when one comes back; writeUpload writes through its pooled buffer.
// Whether createUpload's own answer escapes is TestUploadAnswerDoesNotEscape's question.
func TestUploadAnswerStaysOffTheHeap(t *testing.T) {
	if race.Enabled {
		t.Skip("the race detector's instrumentation allocates")
	}
	srv := unitServerQueries(t, discardIntents{Queries: dbq.New(nil)})

	expires := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	in := intent{spec: intentSpec{filename: "a.txt", contentType: "text/plain", size: 5, sizeDeclared: true, method: "put",
		expires: time.Hour}, owner: "alice", id: uuid.New(), key: "alice/a.txt", ct: "text/plain"}
	resp := uploadResponse{ID: in.id, Bucket: "b", Key: in.key, Method: "put", URL: "http://127.0.0.1:1/b/alice/a.txt?X-Amz-Signature=00",
		Headers: map[string]string{"Content-Type": "text/plain", "Content-Length": "5"}, ExpiresAt: expires}
	ctx := t.Context()

	persist := testing.AllocsPerRun(200, func() {
		if p := srv.persistIntent(ctx, in, resp); p != nil {
			t.Fatal(p)
		}
	})
	require.Zero(t, persist, "persistIntent allocates for a single-PUT intent")

	w := &discardWriter{h: http.Header{"Content-Type": nil, "Cache-Control": nil}}
	write := testing.AllocsPerRun(200, func() { writeUpload(w, http.StatusCreated, &resp) })
	require.Zero(t, write, "writeUpload allocates")
	require.Equal(t, headerJSON, w.h["Content-Type"])
}

// TestUploadAnswerDoesNotEscape asks the compiler's escape analysis (go build -gcflags=-m) whether
// POST /v1/uploads moves its intent or its answer to the heap: createUpload's resp escapes when it
// is passed to writeJSON (an interface) instead of writeUpload, persistIntent's in and resp when a
// pointer into them is passed to the Queries interface. Either is an allocation of several hundred
// bytes on every request that no test of behaviour would notice.
func TestUploadAnswerDoesNotEscape(t *testing.T) {
	goBin, err := exec.LookPath("go")
	require.NoError(t, err, "the go command runs this package's tests")
	out, err := exec.Command(goBin, "build", "-gcflags=-m", "-o", os.DevNull, ".").CombinedOutput()
	require.NoError(t, err, "%s", out)
	var seen int
	for line := range strings.Lines(string(out)) {
		// "./uploads.go:..." or, replayed from the build cache, as the first build printed it.
		if !strings.HasPrefix(line, "uploads.go:") && !strings.Contains(line, "/uploads.go:") {
			continue
		}
		seen++
		line = strings.TrimSpace(line)
		if strings.HasSuffix(line, "moved to heap: resp") || strings.HasSuffix(line, "moved to heap: in") {
			t.Errorf("escape analysis: %s", line)
		}
	}
	require.Positive(t, seen, "no escape analysis lines for uploads.go in:\n%s", out)
}

// TestMiddlewareAllocations: the middleware's own work for a request (its id, the context that
// carries it to handlers and logs, the status writer, the X-Request-Id and Date headers) is four
// allocations: the generated id, the request's scope, the log attributes' context and net/http's
// copy of the request for the new context. They were nine before requestScope; each separately
// allocated piece that comes back fails this.
func TestMiddlewareAllocations(t *testing.T) {
	if race.Enabled {
		t.Skip("the race detector's instrumentation allocates")
	}
	srv := unitServer(t)
	var gotID string
	h := srv.wrap("test", familyPublic, func(w http.ResponseWriter, r *http.Request, _ principal) *Problem {
		gotID = requestID(r.Context())
		w.WriteHeader(http.StatusNoContent)
		return nil
	})
	req, err := http.NewRequest(http.MethodGet, "http://intake/test", nil)
	require.NoError(t, err)
	w := &discardWriter{h: http.Header{}}
	allocs := testing.AllocsPerRun(200, func() {
		clear(w.h)
		h.ServeHTTP(w, req)
	})
	require.Equal(t, 4.0, allocs)
	require.Equal(t, []string{gotID}, w.h["X-Request-Id"], "the answer names the id the handler saw")
	require.Len(t, w.h["Date"], 1, "the middleware sets the Date header (a second's value, formatted once)")
	require.NotEmpty(t, gotID)

	req.Header.Set("X-Request-Id", "client-chosen-42")
	allocs = testing.AllocsPerRun(200, func() {
		clear(w.h)
		h.ServeHTTP(w, req)
	})
	require.Equal(t, 3.0, allocs, "a client's id is used as it is")
	require.Equal(t, "client-chosen-42", gotID)
	require.Equal(t, []string{"client-chosen-42"}, w.h["X-Request-Id"])
}
