package multipart_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/stretchr/testify/require"

	"github.com/intakehq/intake/internal/multipart"
	"github.com/intakehq/intake/internal/testkit"
	"github.com/intakehq/intake/worker/tasks"
)

// TestSweep creates 200 stale uploads under the prefix, 40 stale ones outside it and 60 fresh ones
// under it, and checks that one sweep (listing in pages of 50) aborts exactly the 200, intake's own
// among them only when past its deadline.
func TestSweep(t *testing.T) {
	t.Parallel()
	b := setup(t, multipart.Config{PageSize: 50})
	ctx := b.ctx

	old := testkit.CreateUploads(t, ctx, b.s3, b.bucket, keys("in/old/", 201), 16)
	outside := testkit.CreateUploads(t, ctx, b.s3, b.bucket, keys("out/old/", 40), 16)
	overdueIntent := b.intent(t, old[7], time.Now().Add(-tasks.AbortGrace-time.Minute))
	kept := old[200]
	keptIntent := b.intent(t, kept, time.Now().Add(time.Hour))
	old = old[:200]
	time.Sleep(3 * time.Second)
	beforeFresh := time.Now()
	fresh := testkit.CreateUploads(t, ctx, b.s3, b.bucket, keys("in/new/", 60), 16)
	// 1.5 s older than the oldest fresh upload, 1.5 s younger than the youngest old one, however
	// long the creations took.
	olderThan := time.Since(beforeFresh) + 1500*time.Millisecond

	rep, err := b.mp.Sweep(ctx, multipart.SweepOptions{Bucket: b.bucket, Prefix: "in/", OlderThan: olderThan})
	require.NoError(t, err)
	require.Equal(t, 301, rep.Listed)
	require.Equal(t, 200, rep.Stale)
	require.Equal(t, 200, rep.Aborted)
	require.Equal(t, 1, rep.Protected)
	require.Zero(t, rep.Gone+rep.Failed+rep.Overdue)

	open := testkit.OpenUploads(t, ctx, b.s3, b.bucket)
	require.Len(t, open, 101)
	for _, u := range append(append(outside, fresh...), kept) {
		require.Contains(t, open, u.ID, "%s must stay open", u.Key)
	}
	rows := b.aborts(t)
	require.Len(t, rows, 200)
	for _, u := range old {
		require.Equal(t, "aborted", rows[u.ID].Outcome, u.Key)
		require.Equal(t, "sweep", rows[u.ID].Reason)
		require.NotNil(t, rows[u.ID].Initiated)
	}
	require.Equal(t, "aborted", b.status(t, overdueIntent))
	require.Equal(t, "pending", b.status(t, keptIntent))
	require.Equal(t, 200.0, testkit.Value(t, b.metrics.Aborted.WithLabelValues(multipart.ReasonSweep)))
	require.Zero(t, testkit.Value(t, b.metrics.SweepLastSuccess), "a sweep of a prefix is not the configured sweep of the whole bucket")

	// A second sweep finds nothing more to do.
	rep, err = b.mp.Sweep(ctx, multipart.SweepOptions{Bucket: b.bucket, Prefix: "in/", OlderThan: time.Hour})
	require.NoError(t, err)
	require.Equal(t, 101, rep.Listed)
	require.Zero(t, rep.Stale)
}

// TestSweepRespectsDeadlines is issue 12.5: the sweep never aborts an upload intake knows before
// the deadline it promised (expires_at), however old, while an upload intake did not create of the
// same age is aborted; intake's uploads past their deadline are aborted even when younger than the
// sweep age (their abort task may have been lost).
func TestSweepRespectsDeadlines(t *testing.T) {
	t.Parallel()
	b := setup(t, multipart.Config{})
	ups := testkit.CreateUploads(t, b.ctx, b.s3, b.bucket, []string{"uploads/alice/ours.bin", "theirs.bin", "uploads/alice/late.bin"}, 3)
	ours, theirs, late := ups[0], ups[1], ups[2]
	oursID := b.intent(t, ours, time.Now().Add(time.Hour))
	lateID := b.intent(t, late, time.Now().Add(-tasks.AbortGrace-time.Second))
	time.Sleep(1500 * time.Millisecond)

	for _, dry := range []bool{true, false} {
		var seen []string
		rep, err := b.mp.Sweep(b.ctx, multipart.SweepOptions{Bucket: b.bucket, OlderThan: time.Second, DryRun: dry,
			OnCandidate: func(c multipart.Candidate) { seen = append(seen, c.UploadID) }})
		require.NoError(t, err)
		require.ElementsMatch(t, []string{theirs.ID, late.ID}, seen, "dry run %v", dry)
		require.Equal(t, 1, rep.Protected)
	}
	open := testkit.OpenUploads(t, b.ctx, b.s3, b.bucket)
	require.Equal(t, map[string]string{ours.ID: ours.Key}, open)
	require.Equal(t, "pending", b.status(t, oursID))
	require.Equal(t, "aborted", b.status(t, lateID))
	rows := b.aborts(t)
	require.NotContains(t, rows, ours.ID)
	require.Equal(t, "aborted", rows[theirs.ID].Outcome)
}

// TestSweepDryRun is what `intake sweep --dry-run` calls: candidates are reported, nothing aborted.
func TestSweepDryRun(t *testing.T) {
	t.Parallel()
	b := setup(t, multipart.Config{})
	old := testkit.CreateUploads(t, b.ctx, b.s3, b.bucket, keys("a/", 20), 8)
	time.Sleep(1500 * time.Millisecond)

	var seen []string
	rep, err := b.mp.Sweep(b.ctx, multipart.SweepOptions{Bucket: b.bucket, OlderThan: time.Second, DryRun: true,
		OnCandidate: func(c multipart.Candidate) { seen = append(seen, c.UploadID) }})
	require.NoError(t, err)
	require.True(t, rep.DryRun)
	require.Equal(t, 20, rep.Stale)
	require.Zero(t, rep.Aborted+rep.Gone+rep.Failed)
	require.Len(t, seen, 20)
	open := testkit.OpenUploads(t, b.ctx, b.s3, b.bucket)
	for _, u := range old {
		require.Contains(t, seen, u.ID)
		require.Contains(t, open, u.ID, "a dry run aborts nothing")
	}
	require.Empty(t, b.aborts(t))
	require.Zero(t, testkit.Value(t, b.metrics.SweepLastSuccess), "a dry run is not a sweep")
}

// TestSweepOverdue uses MinIO's real behaviour with a server-side folder prefix (it lists nothing)
// to check that the sweep then aborts, by id, intake's uploads past their deadline that PostgreSQL
// knows, and says so; uploads before their deadline and uploads intake did not create stay.
func TestSweepOverdue(t *testing.T) {
	t.Parallel()
	b := setup(t, multipart.Config{ServerSidePrefix: true})
	ctx := b.ctx
	known := testkit.CreateUploads(t, ctx, b.s3, b.bucket, keys("a/known/", 5), 5)
	unknown := testkit.CreateUploads(t, ctx, b.s3, b.bucket, keys("a/unknown/", 2), 2)
	for _, u := range known {
		b.intent(t, u, time.Now().Add(-tasks.AbortGrace-time.Minute))
	}
	beforeDeadline := testkit.CreateUploads(t, ctx, b.s3, b.bucket, keys("a/waiting/", 1), 1)[0]
	b.intent(t, beforeDeadline, time.Now().Add(time.Hour))
	time.Sleep(1500 * time.Millisecond)

	rep, err := b.mp.Sweep(ctx, multipart.SweepOptions{Bucket: b.bucket, Prefix: "a/", OlderThan: time.Second})
	require.NoError(t, err)
	require.Zero(t, rep.Listed, "MinIO lists no uploads for a folder prefix")
	require.Equal(t, 5, rep.Overdue)
	require.Equal(t, 5, rep.Stale)
	require.Equal(t, 5, rep.Aborted)
	require.Contains(t, b.logBuf.String(), "object store listed no multipart uploads while PostgreSQL knows uploads past their deadline")

	open := testkit.OpenUploads(t, ctx, b.s3, b.bucket)
	for _, u := range known {
		require.NotContains(t, open, u.ID)
	}
	for _, u := range append(unknown, beforeDeadline) {
		require.Contains(t, open, u.ID, "uploads PostgreSQL does not know, or before their deadline, stay")
	}
	// The recorded aborts keep the next sweep from retrying them.
	rep, err = b.mp.Sweep(ctx, multipart.SweepOptions{Bucket: b.bucket, Prefix: "a/", OlderThan: time.Second})
	require.NoError(t, err)
	require.Zero(t, rep.Overdue)
	require.Zero(t, rep.Stale)
}

// TestSweepInspectsCompletedUploads: an upload of intake's completed past intake (its client
// completed it with S3 directly) whose event never came keeps a pending intent; at its deadline the
// sweep finds it gone from the listing, aborts it by id, finds the object, and has it inspected
// (SweepOptions.Inspect: the jobs' sweep task enqueues an inspection). An upload still open is
// aborted and not inspected; a failing inspection is counted and returned (`intake sweep` exits
// non-zero), and the abort stays recorded. With InspectBestEffort (the jobs' sweep task, whose
// retry would list the bucket again and not find that upload, now recorded) it is logged and
// does not fail the sweep.
func TestSweepInspectsCompletedUploads(t *testing.T) {
	t.Parallel()
	b := setup(t, multipart.Config{})
	ups := testkit.CreateUploads(t, b.ctx, b.s3, b.bucket, []string{"u/done.bin", "u/open.bin", "v/done.bin"}, 3)
	done, open, failing := ups[0], ups[1], ups[2]
	for _, u := range []testkit.Upload{done, failing} {
		b.complete(t, u, b.uploadPart(t, u, 1, make([]byte, 100)))
	}
	past := time.Now().Add(-tasks.AbortGrace - time.Minute)
	doneID, openID, failingID := b.intent(t, done, past), b.intent(t, open, past), b.intent(t, failing, past)

	var (
		mu        sync.Mutex
		inspected []string
	)
	inspect := func(_ context.Context, bucket, key string) error { // called by the sweep's workers
		mu.Lock()
		defer mu.Unlock()
		inspected = append(inspected, bucket+"/"+key)
		if key == failing.Key {
			return errors.New("pipeline unavailable")
		}
		return nil
	}
	rep, err := b.mp.Sweep(b.ctx, multipart.SweepOptions{Bucket: b.bucket, Prefix: "u/", OlderThan: time.Hour, Inspect: inspect})
	require.NoError(t, err)
	require.Equal(t, 2, rep.Stale, "both of u/ are candidates")
	require.Equal(t, 1, rep.Aborted)
	require.Equal(t, 1, rep.Gone)
	require.Equal(t, 1, rep.Completed)
	require.Equal(t, 1, rep.Inspected)
	require.Equal(t, []string{b.bucket + "/" + done.Key}, inspected, "only the completed upload is inspected")
	require.Equal(t, "completed", b.status(t, doneID))
	require.Equal(t, "aborted", b.status(t, openID))

	inspected = nil
	rep, err = b.mp.Sweep(b.ctx, multipart.SweepOptions{Bucket: b.bucket, Prefix: "v/", OlderThan: time.Hour, Inspect: inspect})
	require.ErrorContains(t, err, "pipeline unavailable")
	require.Equal(t, []string{b.bucket + "/" + failing.Key}, inspected)
	require.Equal(t, 1, rep.Completed)
	require.Zero(t, rep.Inspected)
	require.Equal(t, 1, rep.Failed)
	require.Equal(t, "completed", b.status(t, failingID), "the abort's outcome is recorded whatever the inspection did")
	require.Contains(t, b.logBuf.String(), "the reconcile will inspect it")

	// The jobs' sweep task: best effort.
	best := testkit.CreateUploads(t, b.ctx, b.s3, b.bucket, []string{"v2/done.bin"}, 1)[0]
	b.complete(t, best, b.uploadPart(t, best, 1, make([]byte, 100)))
	bestID := b.intent(t, best, past)
	inspected = nil
	failing = best
	rep, err = b.mp.Sweep(b.ctx, multipart.SweepOptions{Bucket: b.bucket, Prefix: "v2/", OlderThan: time.Hour, Inspect: inspect, InspectBestEffort: true})
	require.NoError(t, err, "a failed inspection does not fail the sweep task")
	require.Equal(t, []string{b.bucket + "/" + best.Key}, inspected)
	require.Equal(t, 1, rep.Completed)
	require.Zero(t, rep.Inspected, "Completed - Inspected were not inspected")
	require.Zero(t, rep.Failed)
	require.Equal(t, 1, rep.Gone)
	require.Equal(t, "completed", b.status(t, bestID))

	// Without an inspector (`intake sweep`), a completed upload is counted, not inspected.
	c := testkit.CreateUploads(t, b.ctx, b.s3, b.bucket, []string{"w/done.bin"}, 1)[0]
	b.complete(t, c, b.uploadPart(t, c, 1, make([]byte, 100)))
	b.intent(t, c, past)
	rep, err = b.mp.Sweep(b.ctx, multipart.SweepOptions{Bucket: b.bucket, Prefix: "w/", OlderThan: time.Hour})
	require.NoError(t, err)
	require.Equal(t, 1, rep.Completed)
	require.Zero(t, rep.Inspected)

	// An inspection that panics (a pipeline bug on one object) fails its candidate, not the
	// process: the sweep's workers are not covered by the asynq server's recovery.
	x := testkit.CreateUploads(t, b.ctx, b.s3, b.bucket, []string{"x/done.bin"}, 1)[0]
	b.complete(t, x, b.uploadPart(t, x, 1, make([]byte, 100)))
	xID := b.intent(t, x, past)
	rep, err = b.mp.Sweep(b.ctx, multipart.SweepOptions{Bucket: b.bucket, Prefix: "x/", OlderThan: time.Hour,
		Inspect: func(context.Context, string, string) error { panic("pipeline bug") }})
	require.ErrorContains(t, err, "panicked: pipeline bug")
	require.Equal(t, 1, rep.Failed)
	require.Equal(t, "completed", b.status(t, xID), "the abort's outcome is recorded before the inspection")
}

// deniedListing is a store whose ListMultipartUploads fails (a trimmed IAM policy, a store that
// does not implement it); every other call reaches MinIO.
type deniedListing struct{ multipart.S3API }

func (deniedListing) ListMultipartUploads(context.Context, *s3.ListMultipartUploadsInput, ...func(*s3.Options)) (*s3.ListMultipartUploadsOutput, error) {
	return nil, errors.New("AccessDenied: not allowed to list multipart uploads")
}

// markerlessListing is MinIO as a store that answers truncated pages without NextKeyMarker and
// NextUploadIdMarker.
type markerlessListing struct{ multipart.S3API }

func (m markerlessListing) ListMultipartUploads(ctx context.Context, in *s3.ListMultipartUploadsInput, opts ...func(*s3.Options)) (*s3.ListMultipartUploadsOutput, error) {
	out, err := m.S3API.ListMultipartUploads(ctx, in, opts...)
	if out != nil {
		out.NextKeyMarker, out.NextUploadIdMarker = nil, nil
	}
	return out, err
}

// TestSweepWhenListingFails: the promise that intake's uploads are aborted after their deadline
// rests on PostgreSQL, not on the store's listing: with the listing refused, the sweep still
// aborts intake's overdue uploads (and reports the listing's error); a store whose truncated pages
// carry no markers is listed on from each page's last upload, to the end.
func TestSweepWhenListingFails(t *testing.T) {
	t.Parallel()
	b := setup(t, multipart.Config{})
	ctx := b.ctx
	overdue := testkit.CreateUploads(t, ctx, b.s3, b.bucket, keys("d/overdue/", 3), 3)
	for _, u := range overdue {
		b.intent(t, u, time.Now().Add(-tasks.AbortGrace-time.Minute))
	}
	foreign := testkit.CreateUploads(t, ctx, b.s3, b.bucket, keys("d/foreign/", 5), 5)
	time.Sleep(1500 * time.Millisecond)

	denied, err := multipart.New(multipart.Config{S3: deniedListing{b.s3}, Store: b.st.Multipart(), Metrics: b.metrics})
	require.NoError(t, err)
	rep, err := denied.Sweep(ctx, multipart.SweepOptions{Bucket: b.bucket, OlderThan: time.Second})
	require.ErrorContains(t, err, "AccessDenied", "the listing's failure is reported")
	require.Equal(t, 3, rep.Overdue)
	require.Equal(t, 3, rep.Aborted, "intake's overdue uploads are aborted without the listing")
	open := testkit.OpenUploads(t, ctx, b.s3, b.bucket)
	for _, u := range overdue {
		require.NotContains(t, open, u.ID)
	}
	for _, u := range foreign {
		require.Contains(t, open, u.ID, "nothing listed, nothing foreign aborted")
	}

	markerless, err := multipart.New(multipart.Config{S3: markerlessListing{b.s3}, Store: b.st.Multipart(), Metrics: b.metrics, PageSize: 2})
	require.NoError(t, err)
	rep, err = markerless.Sweep(ctx, multipart.SweepOptions{Bucket: b.bucket, OlderThan: time.Second})
	require.NoError(t, err)
	require.Equal(t, 5, rep.Listed, "every page listed")
	require.Equal(t, 5, rep.Aborted)
	require.Empty(t, testkit.OpenUploads(t, ctx, b.s3, b.bucket))
}

// markerlessParts is MinIO as a store that answers ListParts in pages of two without
// NextPartNumberMarker.
type markerlessParts struct{ multipart.S3API }

func (m markerlessParts) ListParts(ctx context.Context, in *s3.ListPartsInput, opts ...func(*s3.Options)) (*s3.ListPartsOutput, error) {
	in.MaxParts = aws.Int32(2)
	out, err := m.S3API.ListParts(ctx, in, opts...)
	if out != nil {
		out.NextPartNumberMarker = nil
	}
	return out, err
}

// TestPartsWithoutMarkers: Parts follows a store whose truncated pages carry no marker from each
// page's last part, and lists every part once.
func TestPartsWithoutMarkers(t *testing.T) {
	t.Parallel()
	b := setup(t, multipart.Config{})
	ctx := b.ctx
	u := testkit.CreateUploads(t, ctx, b.s3, b.bucket, []string{"p/x.bin"}, 1)[0]
	for n := int32(1); n <= 5; n++ {
		_, err := b.s3.UploadPart(ctx, &s3.UploadPartInput{Bucket: aws.String(b.bucket), Key: aws.String(u.Key), UploadId: aws.String(u.ID),
			PartNumber: aws.Int32(n), Body: strings.NewReader("part")})
		require.NoError(t, err)
	}
	mp, err := multipart.New(multipart.Config{S3: markerlessParts{b.s3}, Store: b.st.Multipart(), Metrics: b.metrics})
	require.NoError(t, err)
	parts, err := mp.Parts(ctx, b.bucket, u.Key, u.ID)
	require.NoError(t, err)
	var nums []int32
	for _, p := range parts {
		nums = append(nums, p.Number)
	}
	require.Equal(t, []int32{1, 2, 3, 4, 5}, nums)
}

// fakeListing answers ListMultipartUploads with list (counting the calls); every other call
// reaches MinIO.
type fakeListing struct {
	multipart.S3API
	mu    sync.Mutex
	calls int
	list  func(call int, in *s3.ListMultipartUploadsInput) (*s3.ListMultipartUploadsOutput, error)
}

func (f *fakeListing) ListMultipartUploads(_ context.Context, in *s3.ListMultipartUploadsInput, _ ...func(*s3.Options)) (*s3.ListMultipartUploadsOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	return f.list(f.calls, in)
}

// TestSweepListingIsBounded: a store whose truncated pages never reach the end cannot keep a sweep
// listing forever. Upload id markers that go back under one key (the guard used to compare
// keys only, and a store alternating two ids looped) are refused at once; markers that always
// move on stop at MaxListPages.
func TestSweepListingIsBounded(t *testing.T) {
	t.Parallel()
	b := setup(t, multipart.Config{})
	const runaway = "the sweep is still listing"
	fresh := aws.Time(time.Now())

	alternating := &fakeListing{S3API: b.s3, list: func(call int, _ *s3.ListMultipartUploadsInput) (*s3.ListMultipartUploadsOutput, error) {
		if call > 1000 {
			return nil, errors.New(runaway)
		}
		id := fmt.Sprintf("id-%d", call%2)
		return &s3.ListMultipartUploadsOutput{IsTruncated: aws.Bool(true), NextKeyMarker: aws.String("k"), NextUploadIdMarker: aws.String(id),
			Uploads: []types.MultipartUpload{{Key: aws.String("k"), UploadId: aws.String(id), Initiated: fresh}}}, nil
	}}
	mp, err := multipart.New(multipart.Config{S3: alternating, Store: b.st.Multipart()})
	require.NoError(t, err)
	_, err = mp.Sweep(b.ctx, multipart.SweepOptions{Bucket: b.bucket, OlderThan: time.Hour})
	require.ErrorContains(t, err, "truncated page without a new marker")
	require.LessOrEqual(t, alternating.calls, 3, "the repeated upload id marker is seen at once")

	endless := &fakeListing{S3API: b.s3, list: func(call int, _ *s3.ListMultipartUploadsInput) (*s3.ListMultipartUploadsOutput, error) {
		if call > multipart.MaxListPages+10 {
			return nil, errors.New(runaway)
		}
		return &s3.ListMultipartUploadsOutput{IsTruncated: aws.Bool(true),
			NextKeyMarker: aws.String(fmt.Sprintf("k%09d", call)), NextUploadIdMarker: aws.String("x")}, nil
	}}
	mp, err = multipart.New(multipart.Config{S3: endless, Store: b.st.Multipart()})
	require.NoError(t, err)
	_, err = mp.Sweep(b.ctx, multipart.SweepOptions{Bucket: b.bucket, OlderThan: time.Hour})
	require.ErrorContains(t, err, fmt.Sprintf("more than %d pages", multipart.MaxListPages))
	require.NotContains(t, err.Error(), runaway)
	require.Equal(t, multipart.MaxListPages, endless.calls)
}

// s3Order lists uploads as S3 does: by key, then by initiation (here: the order given), resuming
// after KeyMarker and UploadIdMarker, or, with a key marker alone, after every upload of that key.
// Its truncated pages carry NextKeyMarker and no NextUploadIdMarker.
func s3Order(uploads []types.MultipartUpload) func(int, *s3.ListMultipartUploadsInput) (*s3.ListMultipartUploadsOutput, error) {
	return func(_ int, in *s3.ListMultipartUploadsInput) (*s3.ListMultipartUploadsOutput, error) {
		key, id := aws.ToString(in.KeyMarker), aws.ToString(in.UploadIdMarker)
		start := 0
		if key != "" {
			start = len(uploads)
			for i, u := range uploads {
				if k := aws.ToString(u.Key); k > key {
					start = i
					break
				} else if k == key && id != "" && aws.ToString(u.UploadId) == id {
					start = i + 1
					break
				}
			}
		}
		end := min(start+int(aws.ToInt32(in.MaxUploads)), len(uploads))
		out := &s3.ListMultipartUploadsOutput{Uploads: uploads[start:end], IsTruncated: aws.Bool(end < len(uploads))}
		if end < len(uploads) {
			out.NextKeyMarker = uploads[end-1].Key
		}
		return out, nil
	}
}

// TestSweepListingKeyMarkerAlone: a store that gives NextKeyMarker without NextUploadIdMarker is
// listed on from the page's last upload: resuming after the key alone skipped the rest of that
// key's uploads (several clients uploading to one key), and the sweep never saw them.
func TestSweepListingKeyMarkerAlone(t *testing.T) {
	t.Parallel()
	b := setup(t, multipart.Config{})
	old := aws.Time(time.Now().Add(-2 * time.Hour))
	var uploads []types.MultipartUpload
	var want []string
	for _, u := range []struct{ key, id string }{{"a.bin", "a1"}, {"same.bin", "s1"}, {"same.bin", "s2"}, {"same.bin", "s3"}, {"same.bin", "s4"}, {"same.bin", "s5"}, {"z.bin", "z1"}} {
		uploads = append(uploads, types.MultipartUpload{Key: aws.String(u.key), UploadId: aws.String(u.id), Initiated: old})
		want = append(want, u.id)
	}
	mp, err := multipart.New(multipart.Config{S3: &fakeListing{S3API: b.s3, list: s3Order(uploads)}, Store: b.st.Multipart(), PageSize: 2})
	require.NoError(t, err)
	var seen []string
	rep, err := mp.Sweep(b.ctx, multipart.SweepOptions{Bucket: b.bucket, OlderThan: time.Hour, DryRun: true,
		OnCandidate: func(c multipart.Candidate) { seen = append(seen, c.UploadID) }})
	require.NoError(t, err)
	require.Equal(t, want, seen, "every upload listed once, in order")
	require.Equal(t, len(uploads), rep.Listed)
}

// TestSweepUnknownInitiation: an upload intake did not create is aborted by its age alone, so one
// whose initiation the store leaves unset (zero, or the Unix epoch) or gives after the sweep
// started is kept: it used to look decades old, and a fresh upload was aborted. intake's own
// uploads are judged by their deadline, whatever their initiation.
func TestSweepUnknownInitiation(t *testing.T) {
	t.Parallel()
	b := setup(t, multipart.Config{})
	now := time.Now()
	page := []types.MultipartUpload{
		{Key: aws.String("epoch.bin"), UploadId: aws.String("epoch"), Initiated: aws.Time(time.Unix(0, 0))},
		{Key: aws.String("future.bin"), UploadId: aws.String("future"), Initiated: aws.Time(now.Add(time.Hour))},
		{Key: aws.String("old.bin"), UploadId: aws.String("old"), Initiated: aws.Time(now.Add(-2 * time.Hour))},
		{Key: aws.String("ours.bin"), UploadId: aws.String("ours"), Initiated: aws.Time(time.Time{})},
		{Key: aws.String("zero.bin"), UploadId: aws.String("zero"), Initiated: aws.Time(time.Time{})},
	}
	b.intent(t, testkit.Upload{Key: "ours.bin", ID: "ours"}, now.Add(-tasks.AbortGrace-time.Minute))
	mp, err := multipart.New(multipart.Config{S3: &fakeListing{S3API: b.s3, list: s3Order(page)}, Store: b.st.Multipart()})
	require.NoError(t, err)
	var seen []string
	rep, err := mp.Sweep(b.ctx, multipart.SweepOptions{Bucket: b.bucket, OlderThan: time.Hour, DryRun: true,
		OnCandidate: func(c multipart.Candidate) { seen = append(seen, c.UploadID) }})
	require.NoError(t, err)
	require.Equal(t, 5, rep.Listed)
	require.Equal(t, []string{"old", "ours"}, seen)
}

// failingAborts is MinIO whose AbortMultipartUpload fails for the keys in fail, and whose
// ListMultipartUploads fails with list when set.
type failingAborts struct {
	multipart.S3API
	fail map[string]error
	list error
}

func (f failingAborts) AbortMultipartUpload(ctx context.Context, in *s3.AbortMultipartUploadInput, opts ...func(*s3.Options)) (*s3.AbortMultipartUploadOutput, error) {
	if err := f.fail[aws.ToString(in.Key)]; err != nil {
		return nil, err
	}
	return f.S3API.AbortMultipartUpload(ctx, in, opts...)
}

func (f failingAborts) ListMultipartUploads(ctx context.Context, in *s3.ListMultipartUploadsInput, opts ...func(*s3.Options)) (*s3.ListMultipartUploadsOutput, error) {
	if f.list != nil {
		return nil, f.list
	}
	return f.S3API.ListMultipartUploads(ctx, in, opts...)
}

// TestSweepErrorKeepsEveryFailure: a sweep's error holds each candidate's failure beside the
// passes' (errors.Is finds every one), not the first candidate's alone, and the report's counts
// are what they were. A caller judging the error part by part (the jobs' sweep task) used to see
// one abort's 403 and not the other's 503, nor an abort's failure beside a failed listing.
func TestSweepErrorKeepsEveryFailure(t *testing.T) {
	t.Parallel()
	b := setup(t, multipart.Config{})
	ups := testkit.CreateUploads(t, b.ctx, b.s3, b.bucket, []string{"a/x.bin", "b/y.bin", "c/z.bin"}, 3)
	time.Sleep(1500 * time.Millisecond)
	errX, errY := errors.New("x refused"), errors.New("y unavailable")
	s3c := failingAborts{S3API: b.s3, fail: map[string]error{ups[0].Key: errX, ups[1].Key: errY}}
	mp, err := multipart.New(multipart.Config{S3: s3c, Store: b.st.Multipart(), Metrics: b.metrics})
	require.NoError(t, err)
	rep, err := mp.Sweep(b.ctx, multipart.SweepOptions{Bucket: b.bucket, OlderThan: time.Second})
	require.ErrorIs(t, err, errX)
	require.ErrorIs(t, err, errY)
	require.ErrorContains(t, err, "2 of 3 candidates failed (an abort, or a completed upload's inspection), first: ")
	require.Equal(t, 3, rep.Stale)
	require.Equal(t, 2, rep.Failed)
	require.Equal(t, 1, rep.Aborted)

	// The listing refused, and an overdue upload's abort fails: both are in the error.
	u := testkit.CreateUploads(t, b.ctx, b.s3, b.bucket, []string{"d/late.bin"}, 1)[0]
	b.intent(t, u, time.Now().Add(-tasks.AbortGrace-time.Minute))
	errList, errLate := errors.New("AccessDenied: listing"), errors.New("late unavailable")
	s3c = failingAborts{S3API: b.s3, fail: map[string]error{u.Key: errLate}, list: errList}
	mp, err = multipart.New(multipart.Config{S3: s3c, Store: b.st.Multipart(), Metrics: b.metrics})
	require.NoError(t, err)
	rep, err = mp.Sweep(b.ctx, multipart.SweepOptions{Bucket: b.bucket, Prefix: "d/", OlderThan: time.Hour})
	require.ErrorIs(t, err, errList)
	require.ErrorIs(t, err, errLate)
	require.Equal(t, 1, rep.Overdue)
	require.Equal(t, 1, rep.Failed)
}
