package api

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/intakehq/intake/internal/testkit"
)

// stalledComplete sends, on a connection of its own, a complete request's headers announcing
// length bytes of body and then sent bytes of a part list, and sends no more: a tenant holding
// the server's memory with bodies it never finishes. The connection is closed when the test ends.
func stalledComplete(t *testing.T, addr, path, apiKey string, length, sent int) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	_, err = fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n",
		path, addr, apiKey, length)
	require.NoError(t, err)
	const part = `{"part_number":1,"etag":"\"0123456789abcdef0123456789abcdef\""},`
	body := `{"parts":[` + strings.Repeat(part, sent/len(part)+1)
	_, err = io.WriteString(c, body[:sent])
	require.NoError(t, err)
	return c
}

// answerOf reads the answer on c, waiting at most 30 s: a request answered only when its body is
// complete never is, and fails the test then.
func answerOf(t *testing.T, c net.Conn) *http.Response {
	t.Helper()
	require.NoError(t, c.SetReadDeadline(time.Now().Add(30*time.Second)))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	require.NoError(t, err, "no answer while the body is unfinished")
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// held is what owner's complete bodies hold of the budget now.
func (b *bodyBudget) heldBy(owner string) int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.held[owner]
}

// TestCompleteBodiesBounded (attacks as a table, each with what must not happen): a tenant cannot
// hold a replica's memory with complete requests' bodies. Before, each complete's body (up to
// 2.5 MB) was read whole before the upload was looked at, whatever the id, with nothing bounding
// how many: 140 connections sending most of a body and stalling pushed a replica past its pod's
// 512 MiB (a review's measurement).
func TestCompleteBodiesBounded(t *testing.T) {
	t.Parallel()
	b := setup(t)
	raw := httptest.NewServer(b.api.Handler()) // the contract's checker reads bodies whole first
	t.Cleanup(raw.Close)
	addr := strings.TrimPrefix(raw.URL, "http://")
	const length, sent = 2_500_000, 2_400_000 // 7 of them pass the owner's 16 MiB
	mine := b.createMP(t, aliceKey, map[string]any{"filename": "held.bin", "content_type": "application/octet-stream", "size": 5<<20 + 10, "method": "multipart"}, false)
	theirs := b.createMP(t, bobKey, map[string]any{"filename": "other.bin", "content_type": "application/octet-stream", "size": 5<<20 + 10, "method": "multipart"}, false)

	// Attacker: alice, naming uploads that do not exist (v1 and Uppy's route). Expected: 404
	// before the body is read. Must not happen: the request waiting for its body, bytes charged.
	for _, path := range []string{
		"/v1/uploads/" + uuid.NewString() + "/complete",
		"/s3/multipart/nope/complete?key=" + url.QueryEscape("uploads/alice/x/held.bin"),
	} {
		c := stalledComplete(t, addr, path, aliceKey, length, 100)
		resp := answerOf(t, c)
		require.Equal(t, http.StatusNotFound, resp.StatusCode, path)
		require.Zero(t, b.api.completeBodies.heldBy("alice"), path)
	}

	// Attacker: alice, with her one real pending upload, sending large part lists and stalling.
	// Six fit her budget and wait for their bodies (the server holds 14.4 MB for her).
	path := "/v1/uploads/" + mine.id + "/complete"
	for range 6 {
		stalledComplete(t, addr, path, aliceKey, length, sent)
	}
	require.Eventually(t, func() bool { return b.api.completeBodies.heldBy("alice") >= 6*sent }, 30*time.Second, 10*time.Millisecond)
	// The seventh passes it. Expected: 429 too-many-completes with Retry-After. Must not happen:
	// the server holding its body too.
	c := stalledComplete(t, addr, path, aliceKey, length, sent)
	resp := answerOf(t, c)
	require.Equal(t, http.StatusTooManyRequests, resp.StatusCode)
	require.Equal(t, "1", resp.Header.Get("Retry-After"))
	out, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Contains(t, string(out), "too-many-completes")
	require.Equal(t, 1.0, testkit.Value(t, b.api.metrics.refusedBodies))
	require.LessOrEqual(t, b.api.completeBodies.heldBy("alice"), int64(completeBodyOwnerBudget))

	// Bystander: bob, meanwhile. Expected: his complete is served (here: 400 for parts he never
	// uploaded, an answer from S3's listing). Must not happen: 429 or 503 for him.
	status, answer := b.completeMP(t, bobKey, theirs, map[string]any{"parts": []map[string]any{{"part_number": 1, "etag": `"0123456789abcdef0123456789abcdef"`}}})
	require.Equal(t, http.StatusBadRequest, status, answer)

	// The stalled connections closed, their bytes are given back, and alice completes her upload.
	raw.CloseClientConnections()
	require.Eventually(t, func() bool { return b.api.completeBodies.heldBy("alice") == 0 }, 30*time.Second, 10*time.Millisecond)
	parts := b.uploadParts(t, aliceKey, mine, 5<<20, 10)
	status, answer = b.completeMP(t, aliceKey, mine, map[string]any{"parts": parts})
	require.Equal(t, http.StatusOK, status, answer)
	require.Zero(t, b.api.completeBodies.heldBy("alice"))
}

// TestBodyBudget: the replica's budget refuses past its limit whoever reads (503 server-busy),
// an owner's past the owner's (429), and every byte given back is charged again.
func TestBodyBudget(t *testing.T) {
	t.Parallel()
	refused := 0
	b := newBodyBudget(10, 15, func() { refused++ })
	require.Nil(t, b.take("a", 10))
	p := b.take("a", 1)
	require.NotNil(t, p)
	require.Equal(t, http.StatusTooManyRequests, p.Status)
	require.Equal(t, time.Second, p.RetryAfter)
	require.Nil(t, b.take("b", 5))
	p = b.take("c", 1)
	require.NotNil(t, p)
	require.Equal(t, http.StatusServiceUnavailable, p.Status)
	require.Contains(t, p.Type, "server-busy")
	require.Equal(t, 2, refused)
	b.give("a", 10)
	b.give("b", 5)
	require.Empty(t, b.held, "owners holding nothing are forgotten")
	require.Nil(t, b.take("c", 10))
}
