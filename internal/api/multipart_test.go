package api

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/hibiken/asynq"
	"github.com/stretchr/testify/require"

	mpart "github.com/intakehq/intake/internal/multipart"
	"github.com/intakehq/intake/internal/store/dbq"
	"github.com/intakehq/intake/internal/testkit"
	"github.com/intakehq/intake/worker/tasks"
)

const mib = 1 << 20

// mpUpload is a multipart upload created through the API, as its tenant sees it.
type mpUpload struct {
	id, key, uploadID string
	// uppy: created through POST /s3/multipart (its routes take ?key= and the S3 upload id).
	uppy bool
}

// createMP creates a multipart upload through /v1 (body) or, with uppy, through POST /s3/multipart.
func (b *testBundle) createMP(t *testing.T, key string, body map[string]any, uppy bool) mpUpload {
	t.Helper()
	if uppy {
		status, _, resp := b.call(t, "POST", "/s3/multipart", key, body)
		require.Equal(t, http.StatusOK, status, resp)
		u := mpUpload{key: resp["key"].(string), uploadID: resp["uploadId"].(string), uppy: true}
		require.NoError(t, b.st.Pool.QueryRow(context.Background(), "SELECT id::text FROM uploads WHERE key = $1", u.key).Scan(&u.id))
		return u
	}
	status, _, resp := b.call(t, "POST", "/v1/uploads", key, body)
	require.Equal(t, http.StatusCreated, status, resp)
	return mpUpload{id: resp["id"].(string), key: resp["key"].(string), uploadID: resp["upload_id"].(string)}
}

// signPart presigns part n as the caller and returns the status and the URL (and signed size).
func (b *testBundle) signPart(t *testing.T, apiKey string, u mpUpload, n int) (int, string, int64) {
	t.Helper()
	if u.uppy {
		status, _, resp := b.call(t, "GET", "/s3/multipart/"+url.PathEscape(u.uploadID)+fmt.Sprintf("/%d", n)+"?key="+url.QueryEscape(u.key), apiKey, nil)
		if status != http.StatusOK {
			return status, "", 0
		}
		return status, resp["url"].(string), 0
	}
	status, _, resp := b.call(t, "POST", "/v1/uploads/"+u.id+"/parts", apiKey, map[string]any{"part_numbers": []int{n}})
	if status != http.StatusOK {
		return status, "", 0
	}
	p := resp["parts"].([]any)[0].(map[string]any)
	size, _ := p["size"].(float64)
	return status, p["url"].(string), int64(size)
}

// putPart uploads body to a part URL and returns S3's status and the ETag.
func putPart(t *testing.T, partURL string, body []byte) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPut, partURL, bytes.NewReader(body))
	require.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	_ = resp.Body.Close()
	return resp.StatusCode, resp.Header.Get("ETag")
}

// uploadParts signs and uploads the parts (sizes in order) as the owner and returns the parts to
// complete with (in the route family's shape).
func (b *testBundle) uploadParts(t *testing.T, apiKey string, u mpUpload, sizes ...int) []map[string]any {
	t.Helper()
	var parts []map[string]any
	for i, size := range sizes {
		status, partURL, _ := b.signPart(t, apiKey, u, i+1)
		require.Equal(t, http.StatusOK, status, "sign part %d", i+1)
		code, etag := putPart(t, partURL, bytes.Repeat([]byte{byte(i)}, size))
		require.Equal(t, http.StatusOK, code, "upload part %d", i+1)
		if u.uppy {
			parts = append(parts, map[string]any{"PartNumber": i + 1, "ETag": etag})
		} else {
			parts = append(parts, map[string]any{"part_number": i + 1, "etag": etag})
		}
	}
	return parts
}

// complete sends the complete request of u's route family.
func (b *testBundle) completeMP(t *testing.T, apiKey string, u mpUpload, body any) (int, map[string]any) {
	t.Helper()
	path := "/v1/uploads/" + u.id + "/complete"
	if u.uppy {
		path = "/s3/multipart/" + url.PathEscape(u.uploadID) + "/complete?key=" + url.QueryEscape(u.key)
	}
	status, _, resp := b.call(t, "POST", path, apiKey, body)
	return status, resp
}

// state is what S3 and PostgreSQL hold for u.
type mpState struct {
	open, object bool
	parts        int
	status       string
	abortReason  string
	objectRows   int
}

func (b *testBundle) state(t *testing.T, u mpUpload) mpState {
	t.Helper()
	ctx := context.Background()
	var s mpState
	_, s.open = testkit.OpenUploads(t, ctx, b.s3, b.bucket)[u.uploadID]
	if s.open {
		parts, err := b.mp.Parts(ctx, b.bucket, u.key, u.uploadID)
		require.NoError(t, err)
		s.parts = len(parts)
	}
	_, err := b.s3.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(b.bucket), Key: aws.String(u.key)})
	s.object = err == nil
	require.NoError(t, b.st.Pool.QueryRow(ctx, "SELECT status FROM uploads WHERE id = $1", u.id).Scan(&s.status))
	_ = b.st.Pool.QueryRow(ctx, "SELECT reason FROM multipart_aborts WHERE upload_id = $1", u.uploadID).Scan(&s.abortReason)
	require.NoError(t, b.st.Pool.QueryRow(ctx, "SELECT count(*) FROM objects WHERE key = $1", u.key).Scan(&s.objectRows))
	return s
}

// TestMultipartAttacks holds the attacks on the multipart routes (issue 12 items 2-4): each names
// the attacker, what they send, the status they must get, and checks what must NOT happen.
func TestMultipartAttacks(t *testing.T) {
	t.Parallel()
	b := setup(t) // policy max_size: maxPolicy (20 MiB)
	v1 := func(size int64, extra ...any) map[string]any {
		m := map[string]any{"filename": "f.bin", "content_type": "application/octet-stream", "size": size, "method": "multipart"}
		for i := 0; i+1 < len(extra); i += 2 {
			m[extra[i].(string)] = extra[i+1]
		}
		return m
	}
	uppy := func(meta map[string]any) map[string]any {
		return map[string]any{"filename": "f.bin", "type": "application/octet-stream", "metadata": meta}
	}
	refusedAndAborted := func(t *testing.T, s mpState) {
		require.False(t, s.object, "nothing completed")
		require.False(t, s.open, "the upload is aborted in MinIO")
		require.Equal(t, "aborted", s.status, "the intent is aborted")
		require.Equal(t, "too_large", s.abortReason)
		require.Zero(t, s.objectRows, "nothing recorded")
	}
	stillOpen := func(t *testing.T, s mpState) {
		require.False(t, s.object, "nothing completed")
		require.True(t, s.open, "the upload is not aborted")
		require.Equal(t, "pending", s.status)
		require.Empty(t, s.abortReason)
	}

	for _, tc := range []struct {
		attacker string
		create   map[string]any
		uppy     bool
		// attack sends the request and returns its status.
		attack func(t *testing.T, u mpUpload) int
		want   int
		// mustNot checks the side effects that must not happen.
		mustNot func(t *testing.T, s mpState)
	}{
		{
			attacker: "tenant declaring 1 byte, uploading 5 MiB as its one part, then completing",
			create:   v1(1),
			attack: func(t *testing.T, u mpUpload) int {
				status, _ := b.completeMP(t, aliceKey, u, map[string]any{"parts": b.uploadParts(t, aliceKey, u, 5*mib)})
				return status
			},
			want: http.StatusUnprocessableEntity, mustNot: refusedAndAborted,
		},
		{
			attacker: "tenant declaring 1 byte, asking for a second part URL",
			create:   v1(1),
			attack: func(t *testing.T, u mpUpload) int {
				status, _, _ := b.signPart(t, aliceKey, u, 2)
				return status
			},
			want: http.StatusBadRequest, mustNot: stillOpen,
		},
		{
			attacker: "tenant declaring 12 MiB in 5 MiB parts, uploading 6 MiB to part 1's URL",
			create:   v1(12*mib, "part_size", 5*mib),
			attack: func(t *testing.T, u mpUpload) int {
				status, partURL, size := b.signPart(t, aliceKey, u, 1)
				require.Equal(t, http.StatusOK, status)
				require.EqualValues(t, 5*mib, size, "the part's length is signed")
				code, _ := putPart(t, partURL, make([]byte, 6*mib))
				return code // S3's answer
			},
			want: http.StatusForbidden,
			mustNot: func(t *testing.T, s mpState) {
				stillOpen(t, s)
				require.Empty(t, s.parts, "no part stored")
			},
		},
		{
			attacker: "Uppy client declaring metadata.size 1, uploading 5 MiB",
			create:   uppy(map[string]any{"size": 1}), uppy: true,
			attack: func(t *testing.T, u mpUpload) int {
				status, _ := b.completeMP(t, aliceKey, u, map[string]any{"parts": b.uploadParts(t, aliceKey, u, 5*mib)})
				return status
			},
			want: http.StatusUnprocessableEntity, mustNot: refusedAndAborted,
		},
		{
			attacker: "Uppy client without a size, uploading 21 MiB (policy max 20 MiB)",
			create:   uppy(nil), uppy: true,
			attack: func(t *testing.T, u mpUpload) int {
				status, _ := b.completeMP(t, aliceKey, u, map[string]any{"parts": b.uploadParts(t, aliceKey, u, 5*mib, 5*mib, 5*mib, 6*mib)})
				return status
			},
			want: http.StatusUnprocessableEntity, mustNot: refusedAndAborted,
		},
		{
			attacker: "Uppy client without a size, asking for part 5 (4 parts of 5 MiB reach the 20 MiB policy max)",
			create:   uppy(nil), uppy: true,
			attack: func(t *testing.T, u mpUpload) int {
				status, _, _ := b.signPart(t, aliceKey, u, 5)
				return status
			},
			want: http.StatusBadRequest, mustNot: stillOpen,
		},
		{
			attacker: "Uppy client sending a huge complete (3 MiB of parts)",
			create:   uppy(nil), uppy: true,
			attack: func(t *testing.T, u mpUpload) int {
				parts := make([]map[string]any, 12000)
				for i := range parts {
					parts[i] = map[string]any{"PartNumber": i%10000 + 1, "ETag": strings.Repeat("e", 250)}
				}
				status, _, _ := b.send(t, attack{attacker: "Uppy client sending a huge complete", method: "POST", as: asKey(aliceKey),
					path: "/s3/multipart/" + url.PathEscape(u.uploadID) + "/complete?key=" + url.QueryEscape(u.key), body: map[string]any{"parts": parts}})
				return status
			},
			want: http.StatusRequestEntityTooLarge, mustNot: stillOpen,
		},
		{
			attacker: "another tenant completing alice's upload (its id)",
			create:   v1(6 * mib),
			attack: func(t *testing.T, u mpUpload) int {
				parts := b.uploadParts(t, aliceKey, u, 5*mib, mib)
				status, _ := b.completeMP(t, bobKey, u, map[string]any{"parts": parts})
				return status
			},
			want: http.StatusNotFound, mustNot: stillOpen,
		},
		{
			attacker: "another tenant aborting alice's upload (its id)",
			create:   v1(6 * mib),
			attack: func(t *testing.T, u mpUpload) int {
				status, _, _ := b.call(t, "DELETE", "/v1/uploads/"+u.id, bobKey, nil)
				return status
			},
			want: http.StatusNotFound, mustNot: stillOpen,
		},
		{
			attacker: "another tenant aborting alice's Uppy upload (its S3 upload id and key)",
			create:   uppy(nil), uppy: true,
			attack: func(t *testing.T, u mpUpload) int {
				status, _, _ := b.call(t, "DELETE", "/s3/multipart/"+url.PathEscape(u.uploadID)+"?key="+url.QueryEscape(u.key), bobKey, nil)
				return status
			},
			want: http.StatusNotFound, mustNot: stillOpen,
		},
		{
			attacker: "another tenant signing parts of alice's upload",
			create:   v1(6 * mib),
			attack: func(t *testing.T, u mpUpload) int {
				status, _, _ := b.signPart(t, bobKey, u, 1)
				return status
			},
			want: http.StatusNotFound, mustNot: stillOpen,
		},
	} {
		t.Run(tc.attacker, func(t *testing.T) {
			u := b.createMP(t, aliceKey, tc.create, tc.uppy)
			status := tc.attack(t, u)
			require.Equal(t, tc.want, status, tc.attacker)
			tc.mustNot(t, b.state(t, u))
		})
	}
}

// TestCompleteBodyLimit is issue 12.3: a complete listing 10,000 parts (long etags) is not refused
// for its size, on /v1 and on Uppy's route; it fails later, for what it names.
func TestCompleteBodyLimit(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for _, uppy := range []bool{false, true} {
		var u mpUpload
		if uppy {
			u = b.createMP(t, aliceKey, map[string]any{"filename": "big.bin", "type": "application/octet-stream"}, true)
		} else {
			u = b.createMP(t, aliceKey, map[string]any{"filename": "big.bin", "content_type": "application/octet-stream", "size": maxPolicy, "method": "multipart"}, false)
		}
		parts := make([]map[string]any, mpart.MaxParts)
		etag := `"` + strings.Repeat("0123456789abcdef", 7) + `-10000"`
		for i := range parts {
			if uppy {
				parts[i] = map[string]any{"PartNumber": i + 1, "ETag": etag}
			} else {
				parts[i] = map[string]any{"part_number": i + 1, "etag": etag}
			}
		}
		status, resp := b.completeMP(t, aliceKey, u, map[string]any{"parts": parts})
		require.NotEqual(t, http.StatusRequestEntityTooLarge, status, "uppy %v: %v", uppy, resp)
		require.Equal(t, http.StatusBadRequest, status, "uppy %v: %v", uppy, resp)
		require.Contains(t, fmt.Sprint(resp), "part 1 was not uploaded")
		require.True(t, b.state(t, u).open)
	}
}

// TestAbortRacingComplete is issue 12.4: a tenant's complete and abort of the same upload, sent at
// once, many times over. Whichever S3 lets win, the intent's status must agree with S3 at the end:
// completed when the object exists, aborted when it does not.
func TestAbortRacingComplete(t *testing.T) {
	t.Parallel()
	b := setup(t)

	// The interleaving that free-running rounds rarely hit on a fast local MinIO, held still: the
	// complete has landed in S3 but its row update has not (the complete request is between its two
	// steps, or its update failed), and the abort comes now. S3 answers NoSuchUpload; the object
	// exists, so the intent must end completed, and the tenant is told the abort did not happen.
	body := []byte("held")
	u := b.createMP(t, aliceKey, map[string]any{"filename": "held.bin", "content_type": "application/octet-stream",
		"size": len(body), "method": "multipart"}, false)
	_, partURL, _ := b.signPart(t, aliceKey, u, 1)
	code, etag := putPart(t, partURL, body)
	require.Equal(t, http.StatusOK, code)
	_, err := b.s3.CompleteMultipartUpload(context.Background(), &s3.CompleteMultipartUploadInput{Bucket: aws.String(b.bucket), Key: aws.String(u.key),
		UploadId: aws.String(u.uploadID), MultipartUpload: &types.CompletedMultipartUpload{Parts: []types.CompletedPart{{PartNumber: aws.Int32(1), ETag: aws.String(etag)}}}})
	require.NoError(t, err)
	status, _, resp := b.call(t, "DELETE", "/v1/uploads/"+u.id, aliceKey, nil)
	require.Equal(t, http.StatusConflict, status, resp)
	s := b.state(t, u)
	require.True(t, s.object)
	require.Equal(t, "completed", s.status, "the object exists: the intent is completed, not aborted")

	const rounds = 40
	seen := map[string]int{}
	for i := range rounds {
		body := []byte(fmt.Sprintf("round %d", i))
		u := b.createMP(t, aliceKey, map[string]any{"filename": fmt.Sprintf("r%d.bin", i), "content_type": "application/octet-stream",
			"size": len(body), "method": "multipart"}, false)
		_, partURL, _ := b.signPart(t, aliceKey, u, 1)
		code, etag := putPart(t, partURL, body)
		require.Equal(t, http.StatusOK, code)

		start := make(chan struct{})
		var completeStatus, abortStatus int
		var wg sync.WaitGroup
		wg.Go(func() {
			<-start
			completeStatus, _ = b.completeMP(t, aliceKey, u, map[string]any{"parts": []map[string]any{{"part_number": 1, "etag": etag}}})
		})
		wg.Go(func() {
			<-start
			abortStatus, _, _ = b.call(t, "DELETE", "/v1/uploads/"+u.id, aliceKey, nil)
		})
		close(start)
		wg.Wait()

		s := b.state(t, u)
		require.False(t, s.open, "round %d: the upload is closed either way", i)
		if s.object {
			require.Equal(t, "completed", s.status, "round %d: the object exists (complete %d, abort %d)", i, completeStatus, abortStatus)
		} else {
			require.Equal(t, "aborted", s.status, "round %d: no object (complete %d, abort %d)", i, completeStatus, abortStatus)
			require.NotEqual(t, http.StatusOK, completeStatus, "round %d: complete said yes but there is no object", i)
		}
		seen[fmt.Sprintf("complete %d, abort %d, object %v", completeStatus, abortStatus, s.object)]++
	}
	t.Logf("outcomes over %d rounds: %v", rounds, seen)
}

// TestMultipartWithRedisDown is "an abort that could not be scheduled is not lost": with the
// API's asynq client pointed at a closed port, creating a multipart upload still succeeds (the
// failure is logged and counted), and the sweep, run after the upload's deadline, aborts it
// although the upload is younger than the sweep age: PostgreSQL's expires_at is the guarantee.
func TestMultipartWithRedisDown(t *testing.T) {
	t.Parallel()
	dead := asynq.NewClient(asynq.RedisClientOpt{Addr: "127.0.0.1:1", DialTimeout: time.Second})
	t.Cleanup(func() { _ = dead.Close() })
	b := setup(t, setupOpts{aborts: tasks.NewAborts(dead)})

	u := b.createMP(t, aliceKey, map[string]any{"filename": "orphan.bin", "content_type": "application/octet-stream", "size": 6 * mib, "method": "multipart"}, false)
	require.Equal(t, 1.0, testkit.Value(t, b.api.metrics.unscheduled), "the failed scheduling is counted")
	require.True(t, b.state(t, u).open)

	// The sweep before the deadline keeps it; after the deadline (2 h in setup) it aborts it, with
	// a sweep age (24 h) the upload is far from.
	for _, tc := range []struct {
		at   time.Time
		open bool
	}{{time.Now(), true}, {time.Now().Add(3 * time.Hour), false}} {
		mp, err := mpart.New(mpart.Config{S3: b.s3, Store: b.st.Multipart(), Now: func() time.Time { return tc.at }})
		require.NoError(t, err)
		rep, err := mp.Sweep(context.Background(), mpart.SweepOptions{Bucket: b.bucket, OlderThan: 24 * time.Hour})
		require.NoError(t, err)
		s := b.state(t, u)
		require.Equal(t, tc.open, s.open, "sweep at %s: %+v", tc.at, rep)
		if !tc.open {
			require.Equal(t, 1, rep.Aborted)
			require.Equal(t, "aborted", s.status)
			require.Equal(t, "sweep", s.abortReason)
		}
	}
}

// TestMultipartPartSize: a /v1 client that declares its part size gets part URLs with their
// Content-Length signed (the last part the rest), and completes.
func TestMultipartPartSize(t *testing.T) {
	t.Parallel()
	b := setup(t)
	status, _, resp := b.call(t, "POST", "/v1/uploads", aliceKey, map[string]any{
		"filename": "sized.bin", "content_type": "application/octet-stream", "size": 12 * mib, "part_size": 5 * mib,
	})
	require.Equal(t, http.StatusCreated, status, resp)
	require.Equal(t, "multipart", resp["method"], "a part size implies multipart")
	require.EqualValues(t, 5*mib, resp["part_size"])
	require.EqualValues(t, 3, resp["max_parts"])
	u := mpUpload{id: resp["id"].(string), key: resp["key"].(string), uploadID: resp["upload_id"].(string)}

	status, _, resp = b.call(t, "POST", "/v1/uploads/"+u.id+"/parts", aliceKey, map[string]any{"part_numbers": []int{1, 2, 3}})
	require.Equal(t, http.StatusOK, status, resp)
	var parts []map[string]any
	for i, p := range resp["parts"].([]any) {
		pm := p.(map[string]any)
		size := int(pm["size"].(float64))
		require.Equal(t, []int{5 * mib, 5 * mib, 2 * mib}[i], size)
		code, etag := putPart(t, pm["url"].(string), make([]byte, size))
		require.Equal(t, http.StatusOK, code)
		parts = append(parts, map[string]any{"part_number": i + 1, "etag": etag})
	}
	status, resp = b.completeMP(t, aliceKey, u, map[string]any{"parts": parts})
	require.Equal(t, http.StatusOK, status, resp)
	require.EqualValues(t, 12*mib, resp["size"])
	require.Equal(t, "completed", b.state(t, u).status)

	for _, bad := range []map[string]any{
		{"filename": "a", "content_type": "image/png", "size": 12 * mib, "part_size": mib},                      // below S3's minimum
		{"filename": "a", "content_type": "image/png", "size": 12 * mib, "part_size": 5 * mib, "method": "put"}, // not multipart
		{"filename": "a", "content_type": "image/png", "size": 12 * mib, "part_size": 0},
	} {
		status, _, resp := b.send(t, attack{attacker: "tenant declaring a bad part size", method: "POST", path: "/v1/uploads", as: asKey(aliceKey), body: bad})
		require.Equal(t, http.StatusBadRequest, status, "%v: %v", bad, resp)
		require.Equal(t, ProblemBase+"invalid-size", resp["type"])
	}
}

// TestMultipartEmptyPartSize: an empty upload that declares its part size has one part, of 0
// bytes: its URL carries size 0 (the Content-Length signed), not no size, and S3 takes exactly
// that part.
func TestMultipartEmptyPartSize(t *testing.T) {
	t.Parallel()
	b := setup(t)
	status, _, resp := b.call(t, "POST", "/v1/uploads", aliceKey, map[string]any{
		"filename": "empty.bin", "content_type": "application/octet-stream", "size": 0, "part_size": 5 * mib,
	})
	require.Equal(t, http.StatusCreated, status, resp)
	require.EqualValues(t, 1, resp["max_parts"])
	id := resp["id"].(string)
	status, _, resp = b.call(t, "POST", "/v1/uploads/"+id+"/parts", aliceKey, map[string]any{"part_numbers": []int{1}})
	require.Equal(t, http.StatusOK, status, resp)
	part := resp["parts"].([]any)[0].(map[string]any)
	size, ok := part["size"]
	require.True(t, ok, "size present: the part's signed Content-Length is 0 (%v)", part)
	require.Equal(t, float64(0), size)
	require.Contains(t, part["url"].(string), "content-length", "the length is signed")
	code, _ := putPart(t, part["url"].(string), []byte("x"))
	require.Equal(t, http.StatusForbidden, code, "a byte more than the signed size")
	code, _ = putPart(t, part["url"].(string), nil)
	require.Equal(t, http.StatusOK, code)

	// A plan without a part size signs no length: no size.
	status, _, resp = b.call(t, "POST", "/v1/uploads", aliceKey, map[string]any{
		"filename": "open.bin", "content_type": "application/octet-stream", "size": 6 * mib, "method": "multipart",
	})
	require.Equal(t, http.StatusCreated, status, resp)
	status, _, resp = b.call(t, "POST", "/v1/uploads/"+resp["id"].(string)+"/parts", aliceKey, map[string]any{"part_numbers": []int{1, 2}})
	require.Equal(t, http.StatusOK, status, resp)
	for _, p := range resp["parts"].([]any) {
		require.NotContains(t, p.(map[string]any), "size")
	}
}

// TestMultipartDeadlineKept: past an upload's deadline (its abort task late, or lost with Redis)
// the owner can no longer sign parts or complete, through either route family; listing the parts
// and aborting stay open, and nothing is aborted by the refusal.
func TestMultipartDeadlineKept(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	b := setup(t, setupOpts{now: clock})
	body := map[string]any{"filename": "late.bin", "content_type": "application/octet-stream", "size": 6 * mib, "method": "multipart"}
	for _, uppy := range []bool{false, true} {
		mu.Lock()
		now = time.Now()
		mu.Unlock()
		in := body
		if uppy {
			in = map[string]any{"filename": "late.bin", "type": "application/octet-stream"}
		}
		u := b.createMP(t, aliceKey, in, uppy)
		parts := b.uploadParts(t, aliceKey, u, 5*mib, 1*mib)

		mu.Lock()
		now = now.Add(2*time.Hour + time.Second) // setup's deadline is 2 h
		mu.Unlock()
		status, _, _ := b.signPart(t, aliceKey, u, 2)
		require.Equal(t, http.StatusConflict, status, "uppy=%v: a part signed past the deadline", uppy)
		var completeBody any = map[string]any{"parts": parts}
		status, resp := b.completeMP(t, aliceKey, u, completeBody)
		require.Equal(t, http.StatusConflict, status, "uppy=%v: completed past the deadline: %v", uppy, resp)
		require.Contains(t, fmt.Sprint(resp), "expired at", "uppy=%v", uppy)

		s := b.state(t, u)
		require.True(t, s.open, "uppy=%v: the refusal aborts nothing", uppy)
		require.False(t, s.object, "uppy=%v: nothing completed", uppy)
		require.Equal(t, 2, s.parts)
		require.Equal(t, "pending", s.status)

		if !uppy {
			status, _, _ = b.call(t, "GET", "/v1/uploads/"+u.id+"/parts", aliceKey, nil)
			require.Equal(t, http.StatusOK, status, "listing the parts stays open")
			status, _, _ = b.call(t, "DELETE", "/v1/uploads/"+u.id, aliceKey, nil)
			require.Equal(t, http.StatusNoContent, status, "aborting stays open")
			require.False(t, b.state(t, u).open)
		}
	}
}

// TestStorageFailureIsNotTheClients: S3 refusing intake's own credentials is intake's failure:
// 502 storage-unavailable, S3's words (which name accounts and keys) kept out of the answer,
// nothing recorded; on both route families.
func TestStorageFailureIsNotTheClients(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{s3Creds: credentials.NewStaticCredentialsProvider("AKIAWRONGWRONGWRONG0", "wrong-secret", "")})
	body := map[string]any{"filename": "denied.bin", "content_type": "application/octet-stream", "size": 6 * mib, "method": "multipart"}
	uppy := map[string]any{"filename": "denied.bin", "type": "application/octet-stream"}
	for path, body := range map[string]map[string]any{"/v1/uploads": body, "/s3/multipart": uppy} {
		status, _, raw := b.raw(t, "POST", path, aliceKey, body)
		require.Equal(t, http.StatusBadGateway, status, "%s: %s", path, raw)
		require.Contains(t, string(raw), "storage-unavailable")
		for _, leak := range []string{"AKIAWRONG", "InvalidAccessKeyId", "Access Key"} {
			require.NotContains(t, string(raw), leak, "%s: S3's words reach the client", path)
		}
	}
	var n int
	require.NoError(t, b.st.Pool.QueryRow(context.Background(), "SELECT count(*) FROM uploads").Scan(&n))
	require.Zero(t, n, "nothing recorded")
	require.Empty(t, testkit.OpenUploads(t, context.Background(), b.s3, b.bucket))
}

// TestDatabaseOutageIsUnavailable: with PostgreSQL cut off (a restart, a failover), the routes that
// read it answer 503 database-unavailable, which a client retries, not 500 internal; and they
// answer again once it is back.
func TestDatabaseOutageIsUnavailable(t *testing.T) {
	t.Parallel()
	b := setup(t)
	u := b.createMP(t, aliceKey, map[string]any{"filename": "o.bin", "content_type": "application/octet-stream", "size": 6 * mib, "method": "multipart"}, false)
	pg := testkit.NewProxy(t, "api-postgres", "127.0.0.1:5432")
	via := testkit.StoreVia(t, b.st, pg.Addr)
	cut := setup(t, setupOpts{share: b, queries: func(Queries) Queries { return via.Q }})

	pg.Down()
	for _, path := range []string{"/v1/uploads/" + u.id, "/v1/uploads/" + u.id + "/parts", "/v1/objects"} {
		status, _, raw := cut.raw(t, "GET", path, aliceKey, nil)
		require.Equal(t, http.StatusServiceUnavailable, status, "%s: %s", path, raw)
		require.Contains(t, string(raw), "database-unavailable", path)
	}
	pg.Up()
	require.Eventually(t, func() bool {
		status, _, _ := cut.raw(t, "GET", "/v1/uploads/"+u.id, aliceKey, nil)
		return status == http.StatusOK
	}, 20*time.Second, 100*time.Millisecond)
}

// cancelOnCreate cancels the request's context as the intent row is written: the client left
// between S3's answer and the row.
type cancelOnCreate struct {
	Queries
	cancel func()
}

func (c cancelOnCreate) APICreateUpload(ctx context.Context, arg dbq.APICreateUploadParams) error {
	c.cancel()
	return c.Queries.APICreateUpload(ctx, arg)
}

// TestMultipartCreateOutlivesClient: a client that leaves once S3 created its multipart upload
// does not leave an upload without a row, nor a row whose upload was aborted: the creation
// finishes (row, upload, scheduled abort).
func TestMultipartCreateOutlivesClient(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	b := setup(t, setupOpts{queries: func(q Queries) Queries { return cancelOnCreate{Queries: q, cancel: cancel} }})
	resp, p := b.api.newIntent(ctx, "alice", intentSpec{filename: "left.bin", contentType: "application/octet-stream",
		size: 6 * mib, sizeDeclared: true, method: MethodMultipart, expires: time.Hour})
	require.Nil(t, p)
	require.Error(t, ctx.Err(), "the client left during the creation")
	var status string
	require.NoError(t, b.st.Pool.QueryRow(context.Background(), "SELECT status FROM uploads WHERE id = $1", resp.ID).Scan(&status))
	require.Equal(t, "pending", status)
	require.Contains(t, testkit.OpenUploads(t, context.Background(), b.s3, b.bucket), resp.UploadID, "the recorded upload is open")
	select {
	case call := <-b.aborts.calls:
		require.Contains(t, call, resp.UploadID)
	case <-time.After(10 * time.Second):
		t.Fatal("the deadline abort was not scheduled")
	}
}

// TestPartURLsEndAtTheDeadline: a part URL signed shortly before its upload's deadline expires at
// the deadline, whatever lifetime was asked (expires_in on /v1, the presign default on Uppy's
// routes); with less than a second left the upload is refused as past its deadline, on both route
// families, and nothing is signed.
func TestPartURLsEndAtTheDeadline(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	setClock := func(at time.Time) { mu.Lock(); defer mu.Unlock(); now = at }
	b := setup(t, setupOpts{now: clock})
	v1 := b.createMP(t, aliceKey, map[string]any{"filename": "d.bin", "content_type": "application/octet-stream", "size": 6 * mib, "method": "multipart"}, false)
	uppy := b.createMP(t, aliceKey, map[string]any{"filename": "d.bin", "type": "application/octet-stream"}, true)
	deadline := func(u mpUpload) time.Time {
		var at time.Time
		require.NoError(t, b.st.Pool.QueryRow(context.Background(), "SELECT expires_at FROM uploads WHERE id = $1", u.id).Scan(&at))
		return at.UTC()
	}

	// Ten seconds (and a fraction) before the deadline: the URL lives ten seconds, not the hour asked.
	setClock(deadline(v1).Add(-10*time.Second + 300*time.Millisecond))
	status, _, resp := b.call(t, "POST", "/v1/uploads/"+v1.id+"/parts", aliceKey, map[string]any{"part_numbers": []int{1, 2}, "expires_in": 3600})
	require.Equal(t, http.StatusOK, status, resp)
	require.Equal(t, deadline(v1), expiresAt(t, resp["expires_at"]))
	for _, p := range resp["parts"].([]any) {
		require.Equal(t, 10, urlExpires(t, p.(map[string]any)["url"].(string)))
	}
	setClock(deadline(uppy).Add(-10*time.Second + 300*time.Millisecond))
	uq := "?key=" + url.QueryEscape(uppy.key)
	status, _, resp = b.call(t, "GET", "/s3/multipart/"+url.PathEscape(uppy.uploadID)+"/1"+uq, aliceKey, nil)
	require.Equal(t, http.StatusOK, status, resp)
	require.Equal(t, 10, urlExpires(t, resp["url"].(string)), "not the 5 minutes of the presign default")
	require.Equal(t, float64(10), resp["expires"])
	status, _, resp = b.call(t, "GET", "/s3/multipart/"+url.PathEscape(uppy.uploadID)+"/batch"+uq+"&partNumbers=1,2", aliceKey, nil)
	require.Equal(t, http.StatusOK, status, resp)
	for _, u := range resp["presignedUrls"].(map[string]any) {
		require.Equal(t, 10, urlExpires(t, u.(string)))
	}

	// Half a second before the deadline: no URL of at least a second fits.
	alice := asKey(aliceKey)
	setClock(deadline(v1).Add(-500 * time.Millisecond))
	runAttacks(t, b, familyV1, []attack{
		{attacker: "tenant asking for a week-long part URL half a second before the deadline", method: "POST", path: "/v1/uploads/" + v1.id + "/parts", as: alice,
			body: map[string]any{"part_numbers": []int{1}, "expires_in": 3600}, status: 409, typ: "upload-not-pending", mustNot: "sign a part URL that outlives the upload's deadline"},
	})
	setClock(deadline(uppy).Add(-500 * time.Millisecond))
	runAttacks(t, b, familyUppy, []attack{
		{attacker: "Uppy client signing a part half a second before the deadline", method: "GET", path: "/s3/multipart/" + url.PathEscape(uppy.uploadID) + "/1" + uq, as: alice,
			status: 409, typ: "upload-not-pending", mustNot: "sign a part URL that outlives the upload's deadline"},
		{attacker: "Uppy client batch-signing parts half a second before the deadline", method: "GET", path: "/s3/multipart/" + url.PathEscape(uppy.uploadID) + "/batch" + uq + "&partNumbers=1,2", as: alice,
			status: 409, typ: "upload-not-pending", mustNot: "sign part URLs that outlive the upload's deadline"},
	})
}
