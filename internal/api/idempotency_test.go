package api

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/intakehq/intake/internal/store"
	"github.com/intakehq/intake/internal/store/dbq"
	"github.com/intakehq/intake/internal/testkit"
)

// idemCall is POST /v1/uploads as key's owner with an Idempotency-Key (none when idem is "").
func (b *testBundle) idemCall(t *testing.T, key, idem string, body any) (int, http.Header, map[string]any) {
	t.Helper()
	a := attack{method: "POST", path: "/v1/uploads", as: asKey(key), body: body}
	if idem != "" {
		a.header = map[string]string{IdempotencyKeyHeader: idem}
	}
	return b.send(t, a)
}

// intentRows counts the upload rows.
func (b *testBundle) intentRows(t *testing.T) int {
	t.Helper()
	var n int
	require.NoError(t, b.st.Pool.QueryRow(context.Background(), "SELECT count(*) FROM uploads").Scan(&n))
	return n
}

// TestIdempotencyKeyReplays: a request retried with its Idempotency-Key (its answer lost) gets the
// intent the first one created, for every method: the same id, key and multipart upload, one row,
// one S3 upload, and a URL that uploads. Without a key, the same request twice makes two intents.
func TestIdempotencyKeyReplays(t *testing.T) {
	t.Parallel()
	b := setup(t)
	content := []byte("retried, not duplicated")
	for _, method := range []string{MethodPut, MethodPost, MethodMultipart} {
		t.Run(method, func(t *testing.T) {
			body := map[string]any{"filename": "retry.txt", "content_type": "text/plain", "size": len(content), "method": method,
				"metadata": map[string]any{"order": 7}}
			idem := "retry-" + method
			rows := b.intentRows(t)
			s1, h1, first := b.idemCall(t, aliceKey, idem, body)
			require.Equal(t, http.StatusCreated, s1, first)
			require.Empty(t, h1.Get(IdempotentReplayedHeader))
			s2, h2, again := b.idemCall(t, aliceKey, idem, body)
			require.Equal(t, http.StatusCreated, s2, again)
			require.Equal(t, "true", h2.Get(IdempotentReplayedHeader))
			for _, f := range []string{"id", "key", "bucket", "method", "upload_id", "part_size", "max_parts"} {
				require.Equal(t, first[f], again[f], f)
			}
			require.Equal(t, rows+1, b.intentRows(t), "one intent for the two requests")
			exp1, err := time.Parse(time.RFC3339, first["expires_at"].(string))
			require.NoError(t, err)
			exp2, err := time.Parse(time.RFC3339, again["expires_at"].(string))
			require.NoError(t, err)
			require.False(t, exp2.After(exp1), "a replay never outlives the intent: %s after %s", exp2, exp1)

			switch method {
			case MethodPut:
				req, err := http.NewRequest(http.MethodPut, again["url"].(string), bytes.NewReader(content))
				require.NoError(t, err)
				for k, v := range headers(again) {
					req.Header.Set(k, v)
				}
				req.ContentLength = int64(len(content))
				resp, err := http.DefaultClient.Do(req)
				require.NoError(t, err)
				resp.Body.Close()
				require.Equal(t, http.StatusOK, resp.StatusCode, "the replayed URL uploads")
				require.Equal(t, content, b.get(t, first["key"].(string)))
			case MethodPost:
				require.Equal(t, first["fields"].(map[string]any)["key"], again["fields"].(map[string]any)["key"])
			case MethodMultipart:
				require.Contains(t, testkit.OpenUploads(t, t.Context(), b.s3, b.bucket), first["upload_id"], "the upload of the first request is open")
				require.NotContains(t, []string{"", "<nil>"}, fmt.Sprint(first["upload_id"]))
			}
		})
	}
	t.Run("the same request written otherwise", func(t *testing.T) {
		// Metadata members in another order and numbers in plain decimal (as intake returns them:
		// PostgreSQL's order and form), the content type in another case: the same request.
		first := map[string]any{"filename": "same.txt", "content_type": "text/plain", "size": 3,
			"metadata": json.RawMessage(`{"b": 2e0, "a": {"y": 1, "x": [1, 2]}, "n": [1e2, -0.0, 25E-1, 1.0E+1]}`)}
		again := map[string]any{"filename": "same.txt", "content_type": "TEXT/Plain", "size": 3,
			"metadata": json.RawMessage(`{"a":{"x":[1,2],"y":1},"b":2,"n":[100,0.0,2.5,10]}`)}
		s1, _, r1 := b.idemCall(t, aliceKey, "written-otherwise", first)
		require.Equal(t, http.StatusCreated, s1, r1)
		s2, h2, r2 := b.idemCall(t, aliceKey, "written-otherwise", again)
		require.Equal(t, http.StatusCreated, s2, r2)
		require.Equal(t, "true", h2.Get(IdempotentReplayedHeader))
		require.Equal(t, r1["id"], r2["id"])
		// An array's order is the value's: another request.
		other := map[string]any{"filename": "same.txt", "content_type": "text/plain", "size": 3,
			"metadata": json.RawMessage(`{"a":{"x":[2,1],"y":1},"b":2}`)}
		s3, _, r3 := b.idemCall(t, aliceKey, "written-otherwise", other)
		require.Equal(t, http.StatusUnprocessableEntity, s3, r3)
		// So is a number jsonb keeps apart (2.50 is not 2.5); the retry's metadata is what
		// PostgreSQL stored for the first request's.
		other = map[string]any{"filename": "same.txt", "content_type": "text/plain", "size": 3,
			"metadata": json.RawMessage(`{"a":{"x":[1,2],"y":1},"b":2,"n":[100,0.0,2.50,10]}`)}
		s3, _, r3 = b.idemCall(t, aliceKey, "written-otherwise", other)
		require.Equal(t, http.StatusUnprocessableEntity, s3, r3)
		var stored, retried string
		require.NoError(t, b.st.Pool.QueryRow(t.Context(), `SELECT metadata::text, $2::jsonb::text FROM uploads WHERE id = $1`,
			r1["id"], again["metadata"]).Scan(&stored, &retried))
		require.Equal(t, stored, retried, "the retry's metadata is the one stored")
		// Metadata intake refuses is refused as such with a key (400), never compared with the
		// key's intent.
		bad := map[string]any{"filename": "same.txt", "content_type": "text/plain", "size": 3,
			"metadata": json.RawMessage(`{"a":{"x":[1,2],"y":1},"b":2,"n":[1e2000]}`)}
		s4, _, r4 := b.idemCall(t, aliceKey, "written-otherwise", bad)
		require.Equal(t, http.StatusBadRequest, s4, r4)
		require.Contains(t, r4["type"], "invalid-metadata")
	})
	t.Run("without a key", func(t *testing.T) {
		body := map[string]any{"filename": "twice.txt", "content_type": "text/plain", "size": 3}
		rows := b.intentRows(t)
		_, _, first := b.idemCall(t, aliceKey, "", body)
		_, _, again := b.idemCall(t, aliceKey, "", body)
		require.NotEqual(t, first["id"], again["id"])
		require.Equal(t, rows+2, b.intentRows(t))
	})
}

// TestIdempotencyKeyAttacks: what a key must not do. Another tenant's request with the same key gets
// its own intent, never the first one's; the same key with other parameters, a malformed key and a
// key whose intent is no longer open are refused with nothing created.
func TestIdempotencyKeyAttacks(t *testing.T) {
	t.Parallel()
	b := setup(t)
	body := map[string]any{"filename": "a.txt", "content_type": "text/plain", "size": 10}
	s, _, alice := b.idemCall(t, aliceKey, "shared-key", body)
	require.Equal(t, http.StatusCreated, s, alice)
	s, _, mp := b.idemCall(t, aliceKey, "to-abort", map[string]any{"filename": "m.bin", "content_type": "application/octet-stream", "size": 10, "method": "multipart"})
	require.Equal(t, http.StatusCreated, s, mp)
	s, _, _ = b.call(t, "DELETE", "/v1/uploads/"+mp["id"].(string), aliceKey, nil)
	require.Equal(t, http.StatusNoContent, s)

	// Bob's key namesake: a new intent of his own.
	s, h, bob := b.idemCall(t, bobKey, "shared-key", body)
	require.Equal(t, http.StatusCreated, s, bob)
	require.Empty(t, h.Get(IdempotentReplayedHeader))
	require.NotEqual(t, alice["id"], bob["id"], "another tenant's key names another intent")
	require.True(t, strings.HasPrefix(bob["key"].(string), "uploads/bob/"), bob["key"])

	cases := []attack{
		{attacker: "alice reusing a key with another size", as: asKey(aliceKey), header: map[string]string{IdempotencyKeyHeader: "shared-key"},
			body: map[string]any{"filename": "a.txt", "content_type": "text/plain", "size": 11}, status: http.StatusUnprocessableEntity,
			typ: "idempotency-key-reused", detail: alice["id"].(string), mustNot: "presign or record anything"},
		{attacker: "alice reusing a key with metadata added", as: asKey(aliceKey), header: map[string]string{IdempotencyKeyHeader: "shared-key"},
			body: map[string]any{"filename": "a.txt", "content_type": "text/plain", "size": 10, "metadata": map[string]any{"x": 1}}, status: http.StatusUnprocessableEntity,
			typ: "idempotency-key-reused", mustNot: "presign or record anything"},
		{attacker: "a retry of an aborted multipart upload", as: asKey(aliceKey), header: map[string]string{IdempotencyKeyHeader: "to-abort"},
			body:   map[string]any{"filename": "m.bin", "content_type": "application/octet-stream", "size": 10, "method": "multipart"},
			status: http.StatusConflict, typ: "upload-not-pending", detail: "aborted", mustNot: "create a multipart upload"},
		{attacker: "an empty key", as: asKey(aliceKey), header: map[string]string{IdempotencyKeyHeader: ""}, body: body,
			status: http.StatusBadRequest, typ: "invalid-idempotency-key", mustNot: "record anything"},
		{attacker: "a key of 256 characters", as: asKey(aliceKey), header: map[string]string{IdempotencyKeyHeader: strings.Repeat("k", 256)}, body: body,
			status: http.StatusBadRequest, typ: "invalid-idempotency-key", mustNot: "record anything"},
		{attacker: "a key with a space", as: asKey(aliceKey), header: map[string]string{IdempotencyKeyHeader: "two words"}, body: body,
			status: http.StatusBadRequest, typ: "invalid-idempotency-key", mustNot: "record anything"},
		{attacker: "a key with a non-ASCII byte", as: asKey(aliceKey), header: map[string]string{IdempotencyKeyHeader: "clé"}, body: body,
			status: http.StatusBadRequest, typ: "invalid-idempotency-key", mustNot: "record anything"},
	}
	for _, c := range cases {
		c.method, c.path = "POST", "/v1/uploads"
		t.Run(c.attacker, func(t *testing.T) {
			before := b.effects(t)
			status, _, out := b.send(t, c)
			require.Equal(t, c.status, status, out)
			if c.typ != "" {
				require.Equal(t, ProblemBase+c.typ, out["type"], out)
			}
			if c.detail != "" {
				require.Contains(t, out["detail"], c.detail)
			}
			if c.status >= 400 {
				require.Equal(t, before, b.effects(t), "must not %s", c.mustNot)
			}
		})
	}

	t.Run("the key given twice", func(t *testing.T) {
		before := b.effects(t)
		raw, err := json.Marshal(body)
		require.NoError(t, err)
		req, err := http.NewRequest("POST", b.srv.URL+"/v1/uploads", bytes.NewReader(raw))
		require.NoError(t, err)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-API-Key", aliceKey)
		req.Header.Add(IdempotencyKeyHeader, "one")
		req.Header.Add(IdempotencyKeyHeader, "two")
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, http.StatusBadRequest, resp.StatusCode)
		require.Equal(t, before, b.effects(t))
	})
}

// lookupBarrier holds the answers of the first n Idempotency-Key lookups until n were made: n
// requests with one key all miss before any of them records its row, the race the unique index
// settles. The lookups are PostgreSQL's own answers.
type lookupBarrier struct {
	Queries
	n    int
	mu   sync.Mutex
	seen int
	all  chan struct{}
}

func (l *lookupBarrier) APIGetUploadByIdempotencyKey(ctx context.Context, arg dbq.APIGetUploadByIdempotencyKeyParams) (dbq.Upload, error) {
	u, err := l.Queries.APIGetUploadByIdempotencyKey(ctx, arg)
	l.mu.Lock()
	l.seen++
	wait := l.seen <= l.n
	if l.seen == l.n {
		close(l.all)
	}
	l.mu.Unlock()
	if wait {
		select {
		case <-l.all:
		case <-time.After(30 * time.Second): // a request that never came: let the others on
		}
	}
	return u, err
}

// TestIdempotencyKeyRace: requests with one key that all pass the lookup before any row is written
// (a client retrying while its first request still runs, or retrying in parallel) each create a
// multipart upload in S3; the unique index keeps one row, and every other request aborts its own
// upload and answers the recorded one. Through the daemon's group commit (IntentWriter), where the
// rows may share a batch, and without it.
func TestIdempotencyKeyRace(t *testing.T) {
	t.Parallel()
	for _, batched := range []bool{false, true} {
		t.Run(fmt.Sprintf("batched=%v", batched), func(t *testing.T) {
			t.Parallel()
			const n = 6
			barrier := &lookupBarrier{n: n, all: make(chan struct{})}
			b := setup(t, setupOpts{queries: func(q Queries) Queries {
				barrier.Queries = q
				return barrier
			}})
			if batched { // the daemon's store (internal/cli): intents through the group commit
				w := store.NewIntentWriter(b.st.Pool, store.IntentWriterOptions{})
				t.Cleanup(w.Close)
				barrier.Queries = store.IntentQueries{Queries: b.st.Q, Intents: w}
			}
			body := map[string]any{"filename": "race.bin", "content_type": "application/octet-stream", "size": 10, "method": "multipart"}
			type answer struct {
				status   int
				replayed string
				out      map[string]any
			}
			answers := make([]answer, n)
			var wg sync.WaitGroup
			for i := range n {
				wg.Go(func() {
					s, h, out := b.idemCall(t, aliceKey, "raced", body)
					answers[i] = answer{s, h.Get(IdempotentReplayedHeader), out}
				})
			}
			wg.Wait()
			replays := 0
			for _, a := range answers {
				require.Equal(t, http.StatusCreated, a.status, a.out)
				require.Equal(t, answers[0].out["id"], a.out["id"])
				require.Equal(t, answers[0].out["upload_id"], a.out["upload_id"])
				if a.replayed == "true" {
					replays++
				}
			}
			require.Equal(t, n-1, replays, "one request created the intent, the others answered it")
			require.Equal(t, 1, b.intentRows(t))
			open := testkit.OpenUploads(t, t.Context(), b.s3, b.bucket)
			require.Len(t, open, 1, "the losers' multipart uploads are aborted")
			require.Contains(t, open, answers[0].out["upload_id"], "the recorded one is open")
		})
	}
}
