package api

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	mpart "github.com/intakehq/intake/internal/multipart"
	"github.com/intakehq/intake/internal/store"
	"github.com/intakehq/intake/internal/store/dbq"
	"github.com/intakehq/intake/internal/testkit"
)

// This file holds the races between a tenant's request and the rest of an upload's life (another
// request, the deadline task, the sweep, the client leaving, a budget running out).

// afterLoad runs its hook (once, when armed) after the API loaded an upload for a request, before
// the request works on it: what another actor does in between.
type afterLoad struct {
	Queries
	hook atomic.Pointer[func(dbq.Upload)]
}

func (a *afterLoad) arm(f func(dbq.Upload)) { a.hook.Store(&f) }

func (a *afterLoad) fire(u dbq.Upload) {
	if f := a.hook.Swap(nil); f != nil {
		(*f)(u)
	}
}

func (a *afterLoad) APIGetUpload(ctx context.Context, arg dbq.APIGetUploadParams) (dbq.Upload, error) {
	u, err := a.Queries.APIGetUpload(ctx, arg)
	if err == nil {
		a.fire(u)
	}
	return u, err
}

func (a *afterLoad) APIGetUploadByKey(ctx context.Context, arg dbq.APIGetUploadByKeyParams) (dbq.Upload, error) {
	u, err := a.Queries.APIGetUploadByKey(ctx, arg)
	if err == nil {
		a.fire(u)
	}
	return u, err
}

// TestUploadGoneMeanwhileIsNotPending: a request loads the caller's pending upload, and before it
// reaches S3 another actor wins (a DELETE, the deadline task, the sweep): S3 answers NoSuchUpload.
// The upload is the caller's and its intent still exists, so the answer is 409 upload-not-pending
// with what became of it, as a DELETE raced by a complete is answered; not 404, which says the
// caller named an upload that does not exist. 404 stays for an intent that is gone too. Both route
// families, listing the parts and completing.
func TestUploadGoneMeanwhileIsNotPending(t *testing.T) {
	t.Parallel()
	hook := &afterLoad{}
	b := setup(t, setupOpts{queries: func(q Queries) Queries { hook.Queries = q; return hook }})
	ctx := context.Background()
	abortRecorded := func(u dbq.Upload) {
		_, err := b.mp.Abort(ctx, mpart.AbortRequest{Bucket: u.Bucket, Key: u.Key, UploadID: *u.MultipartUploadID, Reason: mpart.ReasonAPI})
		require.NoError(t, err)
	}
	abortInS3 := func(u dbq.Upload) { // begun: the row still says pending
		_, err := b.s3.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{Bucket: aws.String(u.Bucket), Key: aws.String(u.Key), UploadId: u.MultipartUploadID})
		require.NoError(t, err)
	}
	deleted := func(u dbq.Upload) {
		abortInS3(u)
		_, err := b.st.Pool.Exec(ctx, "DELETE FROM uploads WHERE id = $1", u.ID)
		require.NoError(t, err)
	}
	for _, c := range []struct {
		winner string
		hook   func(dbq.Upload)
		status int
		typ    string
		detail string
	}{
		{"a DELETE of another request, recorded", abortRecorded, http.StatusConflict, "upload-not-pending", "is aborted"},
		{"an abort S3 answered, not yet recorded", abortInS3, http.StatusConflict, "upload-not-pending", "no longer open in storage"},
		{"an abort, and the intent deleted", deleted, http.StatusNotFound, "not-found", ""},
	} {
		for _, uppy := range []bool{false, true} {
			for _, op := range []string{"list parts", "complete"} {
				name := fmt.Sprintf("%s wins against %s (uppy %v)", c.winner, op, uppy)
				in := map[string]any{"filename": "r.bin", "content_type": "application/octet-stream", "size": 6 * mib, "method": "multipart"}
				if uppy {
					in = map[string]any{"filename": "r.bin", "type": "application/octet-stream"}
				}
				u := b.createMP(t, aliceKey, in, uppy)
				parts := b.uploadParts(t, aliceKey, u, 5*mib)
				hook.arm(c.hook)
				var status int
				var resp map[string]any
				switch {
				case op == "complete":
					status, resp = b.completeMP(t, aliceKey, u, map[string]any{"parts": parts})
				case uppy:
					status, _, resp = b.call(t, "GET", "/s3/multipart/"+url.PathEscape(u.uploadID)+"?key="+url.QueryEscape(u.key), aliceKey, nil)
				default:
					status, _, resp = b.call(t, "GET", "/v1/uploads/"+u.id+"/parts", aliceKey, nil)
				}
				require.Nil(t, hook.hook.Load(), "%s: the race was run", name)
				require.Equal(t, c.status, status, "%s: %v", name, resp)
				require.Equal(t, ProblemBase+c.typ, resp["type"], name)
				detail := resp["detail"]
				if uppy {
					detail = resp["error"]
				}
				require.Contains(t, detail, c.detail, name)
				_, err := b.s3.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(b.bucket), Key: aws.String(u.key)})
				require.Error(t, err, "%s: nothing completed", name)
			}
		}
	}
}

// beginAbortHook is the multipart store with a hook run once an abort is begun (its row written
// "aborting"), before anything is sent to S3.
type beginAbortHook struct {
	store.Multipart
	after func()
}

func (h beginAbortHook) BeginAbort(ctx context.Context, r mpart.AbortRecord) (string, error) {
	prior, err := h.Multipart.BeginAbort(ctx, r)
	h.after()
	return prior, err
}

// TestAbortOutlivesClient: a client whose DELETE is cut (it left, its connection dropped) once the
// abort was begun does not leave the abort half done, its row "aborting", its intent pending and
// the S3 upload perhaps open until the sweep resumes it: the abort finishes (bounded by its own
// timeout), as a create and a complete do.
func TestAbortOutlivesClient(t *testing.T) {
	t.Parallel()
	b := setup(t)
	u := b.createMP(t, aliceKey, map[string]any{"filename": "left.bin", "content_type": "application/octet-stream", "size": 6 * mib, "method": "multipart"}, false)
	b.uploadParts(t, aliceKey, u, 5*mib)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	mp, err := mpart.New(mpart.Config{S3: b.s3, Store: beginAbortHook{Multipart: b.st.Multipart(), after: cancel}, CallTimeout: 10 * time.Second})
	require.NoError(t, err)
	b.api.mp = mp // before any request of this server uses it

	row, err := b.st.Q.APIGetUpload(context.Background(), dbq.APIGetUploadParams{ID: uuid.MustParse(u.id), Owner: "alice"})
	require.NoError(t, err)
	p := b.api.abort(ctx, row)
	require.Error(t, ctx.Err(), "the client left during the abort")
	require.Nil(t, p)
	s := b.state(t, u)
	require.False(t, s.open, "the S3 upload is aborted")
	require.Equal(t, "aborted", s.status, "the intent is settled")
	var outcome string
	require.NoError(t, b.st.Pool.QueryRow(context.Background(), "SELECT outcome FROM multipart_aborts WHERE upload_id = $1", u.uploadID).Scan(&outcome))
	require.Equal(t, mpart.OutcomeAborted, outcome, "the abort's row is settled, not left aborting")
}

// commitThenTimeOut writes the intent row and then answers as the IntentWriter does when the
// creation's budget ends while the row is in a batch that commits: ctx's error, the row committed.
type commitThenTimeOut struct{ Queries }

func (c commitThenTimeOut) APICreateUpload(ctx context.Context, arg dbq.APICreateUploadParams) error {
	if err := c.Queries.APICreateUpload(ctx, arg); err != nil {
		return err
	}
	return context.DeadlineExceeded
}

// TestMultipartCreateOutcomeUnknown: when recording a multipart upload's intent ends without an
// answer (the creation's budget ran out while the row sat in a batch the IntentWriter may still
// commit), the S3 upload is not aborted, since the row may name it: a committed row with a dead
// upload id would be an intent nobody can complete whose abort was never scheduled. The request is
// refused (503, retried by the client), and the upload's deadline abort is scheduled, as for a
// recorded one: it aborts the upload whether or not the row exists.
func TestMultipartCreateOutcomeUnknown(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{queries: func(q Queries) Queries { return commitThenTimeOut{Queries: q} }})
	_, p := b.api.newIntent(context.Background(), "alice", intentSpec{filename: "unknown.bin", contentType: "application/octet-stream",
		size: 6 * mib, sizeDeclared: true, method: MethodMultipart, expires: time.Hour})
	require.NotNil(t, p)
	require.Equal(t, http.StatusServiceUnavailable, p.Status, p.Detail)

	var id, uploadID, status string
	require.NoError(t, b.st.Pool.QueryRow(context.Background(), "SELECT id::text, multipart_upload_id, status FROM uploads").Scan(&id, &uploadID, &status))
	require.Equal(t, "pending", status)
	require.Contains(t, testkit.OpenUploads(t, context.Background(), b.s3, b.bucket), uploadID, "the committed row's upload was aborted: a pending intent with a dead upload")
	select {
	case call := <-b.aborts.calls:
		require.Contains(t, call, uploadID, "the deadline abort is scheduled")
	case <-time.After(10 * time.Second):
		t.Fatal("the deadline abort was not scheduled")
	}
}

// slowS3 delays the listing of parts and the completion, as a loaded store does with an upload of
// many large parts.
type slowS3 struct {
	*s3.Client
	list, complete time.Duration
}

func (s slowS3) ListParts(ctx context.Context, in *s3.ListPartsInput, opts ...func(*s3.Options)) (*s3.ListPartsOutput, error) {
	time.Sleep(s.list)
	return s.Client.ListParts(ctx, in, opts...)
}

func (s slowS3) CompleteMultipartUpload(ctx context.Context, in *s3.CompleteMultipartUploadInput, opts ...func(*s3.Options)) (*s3.CompleteMultipartUploadOutput, error) {
	time.Sleep(s.complete)
	return s.Client.CompleteMultipartUpload(ctx, in, opts...)
}

// completed reports whether u's object exists and its intent is completed (safe to poll while a
// completion runs).
func completed(b *testBundle, u mpUpload) bool {
	ctx := context.Background()
	if _, err := b.s3.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(b.bucket), Key: aws.String(u.key)}); err != nil {
		return false
	}
	var status string
	err := b.st.Pool.QueryRow(ctx, "SELECT status FROM uploads WHERE id = $1", u.id).Scan(&status)
	return err == nil && status == "completed"
}

// TestCompleteAnsweredWithinBudget: a complete request is answered within its budget
// (CompleteBudget, below the listener's write timeout) counted from the handler's start, however the
// time went (the body, the listing of the parts, S3's completion): a completion S3 has not finished
// by then goes on, the answer (502 storage-unavailable) says so, and the upload ends completed. The
// budget used to start after the listing, and the write timeout could cut the answer off. Both route
// families; the budget is shortened to a second, the store slowed to take longer.
func TestCompleteAnsweredWithinBudget(t *testing.T) {
	t.Parallel()
	b := setup(t)
	mp, err := mpart.New(mpart.Config{S3: slowS3{Client: b.s3, list: 700 * time.Millisecond, complete: 1500 * time.Millisecond},
		Store: b.st.Multipart(), CallTimeout: 10 * time.Second})
	require.NoError(t, err)
	b.api.mp = mp // before any request of this server uses it
	const budget = time.Second
	b.api.completeBudget = budget

	for _, uppy := range []bool{false, true} {
		in := map[string]any{"filename": "slow.bin", "content_type": "application/octet-stream", "size": 6 * mib, "method": "multipart"}
		if uppy {
			in = map[string]any{"filename": "slow.bin", "type": "application/octet-stream"}
		}
		u := b.createMP(t, aliceKey, in, uppy)
		parts := b.uploadParts(t, aliceKey, u, 5*mib, mib)
		start := time.Now()
		status, resp := b.completeMP(t, aliceKey, u, map[string]any{"parts": parts})
		took := time.Since(start)
		require.Equal(t, http.StatusBadGateway, status, "uppy %v: %v", uppy, resp)
		require.Equal(t, ProblemBase+"storage-unavailable", resp["type"], "uppy %v", uppy)
		require.Less(t, took, budget+500*time.Millisecond, "uppy %v: answered %s after the start, the budget is %s", uppy, took, budget)
		// The completion goes on after the answer, and the daemon's shutdown waits for it: once
		// Wait returns, the upload is completed (S3's completion takes 1.5 s past its 0.7 s listing).
		wctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		require.NoError(t, b.api.Wait(wctx), "uppy %v", uppy)
		cancel()
		require.True(t, completed(b, u), "uppy %v: Wait returned before the completion that outlived its answer ended", uppy)
	}

	// Within the budget, the answer is S3's.
	b.api.completeBudget = 10 * time.Second
	u := b.createMP(t, aliceKey, map[string]any{"filename": "ok.bin", "content_type": "application/octet-stream", "size": 6 * mib, "method": "multipart"}, false)
	parts := b.uploadParts(t, aliceKey, u, 5*mib, mib)
	status, resp := b.completeMP(t, aliceKey, u, map[string]any{"parts": parts})
	require.Equal(t, http.StatusOK, status, resp)
	require.Equal(t, "completed", b.state(t, u).status)
}
