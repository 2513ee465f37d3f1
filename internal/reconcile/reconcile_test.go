package reconcile

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"
	"github.com/hibiken/asynq"
	"github.com/stretchr/testify/require"

	"github.com/intakehq/intake/internal/store"
	"github.com/intakehq/intake/internal/store/dbq"
	"github.com/intakehq/intake/internal/testkit"
	"github.com/intakehq/intake/worker/tasks"
)

type bundle struct {
	s3     *s3.Client
	st     *store.Store
	bucket string
	redis  asynq.RedisClientOpt
	etags  map[string]string // key -> S3 etag (unquoted)
}

// setup creates a bucket with n objects (keys from key(i)) and no rows.
func setup(t testing.TB, n int, key func(i int) string) *bundle {
	t.Helper()
	b := &bundle{s3: testkit.S3(), st: testkit.DB(t), etags: map[string]string{}}
	b.bucket = testkit.Bucket(t, b.s3)
	b.redis = asynq.RedisClientOpt{Addr: testkit.RedisAddr(), DB: testkit.RedisDB(t)}
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			k := key(i)
			out, err := b.s3.PutObject(context.Background(), &s3.PutObjectInput{
				Bucket: aws.String(b.bucket), Key: aws.String(k), Body: bytes.NewReader([]byte("content of " + k)),
			})
			if err != nil {
				errs <- err
				return
			}
			mu.Lock()
			b.etags[k] = normETag(aws.ToString(out.ETag))
			mu.Unlock()
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	return b
}

// row inserts an objects row.
func (b *bundle) row(t testing.TB, bucket, key, etag, status string) {
	t.Helper()
	_, err := b.st.Pool.Exec(context.Background(),
		`INSERT INTO objects (bucket, key, etag, status, reason)
		 VALUES ($1, $2, $3, $4, CASE WHEN $4 IN ('rejected', 'missing') THEN 'test' END)`, bucket, key, etag, status)
	require.NoError(t, err)
}

func (b *bundle) deleteObject(t testing.TB, key string) {
	t.Helper()
	_, err := b.s3.DeleteObject(context.Background(), &s3.DeleteObjectInput{Bucket: aws.String(b.bucket), Key: aws.String(key)})
	require.NoError(t, err)
}

func key(i int) string { return fmt.Sprintf("uploads/u%d/%04d.bin", i%3, i) }

func keysOf[T any](items []T, k func(T) string) []string {
	out := make([]string, len(items))
	for i, it := range items {
		out[i] = k(it)
	}
	sort.Strings(out)
	return out
}

func sorted(keys ...string) []string { slices.Sort(keys); return keys }

// TestReconcile: 500 objects, 50 without rows, 10 deleted behind intake's back, 6 stale rows,
// plus rows that agree in their own way; the report names exactly those, and --fix repairs them.
func TestReconcile(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("needs MinIO, PostgreSQL and Redis")
	}
	const n = 500
	b := setup(t, n, key)
	var wantMissing, wantGone, wantStale []string
	for i := range n {
		k := key(i)
		switch {
		case i%10 == 3: // 50 objects with no row
			wantMissing = append(wantMissing, k)
		case i >= 100 && i < 106: // 5 stale etags (103 has no row)
			b.row(t, b.bucket, k, "0123456789abcdef0123456789abcdef", "valid")
			wantStale = append(wantStale, k)
		case i == 200: // row says deleted, but the object exists: stale too
			b.row(t, b.bucket, k, b.etags[k], "deleted")
			wantStale = append(wantStale, k)
		default:
			status := []string{"valid", "rejected", "pending"}[i%3]
			etag := b.etags[k]
			if i%2 == 0 {
				etag = `"` + etag + `"` // quoted etags compare equal
			}
			b.row(t, b.bucket, k, etag, status)
		}
	}
	// 10 objects deleted from S3 while their rows still say present.
	for i := 400; i < 420; i += 2 {
		b.deleteObject(t, key(i))
		wantGone = append(wantGone, key(i))
	}
	// Absent objects whose rows already say so are in sync; other buckets are not looked at.
	b.row(t, b.bucket, "uploads/gone-long-ago", "x", "deleted")
	b.row(t, b.bucket, "uploads/never-found", "", "missing")
	b.row(t, "another-bucket", key(1), "x", "valid")
	slices.Sort(wantMissing)
	slices.Sort(wantGone)
	slices.Sort(wantStale)

	ctx := testkit.Context(t)
	rep, err := Run(ctx, b.s3, b.st.Q, Options{Bucket: b.bucket, PageSize: 64})
	require.NoError(t, err)
	require.Equal(t, n-10, rep.Listed)
	require.Equal(t, wantMissing, keysOf(rep.Missing, func(m Missing) string { return m.Key }))
	require.Equal(t, wantStale, keysOf(rep.Stale, func(s Stale) string { return s.Key }))
	require.Equal(t, wantGone, keysOf(rep.Gone, func(g Gone) string { return g.Key }))
	require.Equal(t, 50, len(rep.Missing))
	require.Equal(t, 10, len(rep.Gone))
	require.Equal(t, 6, len(rep.Stale))
	require.Equal(t, n-50-10-6+2, rep.InSync, "matching rows plus the two absent-and-known rows")
	require.Equal(t, n-50+2, rep.Rows)
	require.Nil(t, rep.Fixed)
	require.Equal(t, b.etags[key(3)], rep.Missing[0].ETag)
	require.EqualValues(t, len("content of "+key(3)), rep.Missing[0].Size)
	for _, s := range rep.Stale {
		require.Equal(t, b.etags[s.Key], s.S3ETag)
	}

	// A prefix limits both sides.
	rep, err = Run(ctx, b.s3, b.st.Q, Options{Bucket: b.bucket, Prefix: "uploads/u1/"})
	require.NoError(t, err)
	for _, m := range rep.Missing {
		require.Contains(t, m.Key, "uploads/u1/")
	}
	for _, g := range rep.Gone {
		require.Contains(t, g.Key, "uploads/u1/")
	}
	require.NotEmpty(t, rep.Missing)
	require.Less(t, rep.Listed, n/2)

	// --fix: one object:inspect task per missing or stale key, gone rows marked missing.
	client := asynq.NewClient(b.redis)
	t.Cleanup(func() { _ = client.Close() })
	insp := asynq.NewInspector(b.redis)
	t.Cleanup(func() { _ = insp.Close() })
	unique := TaskEnqueuer{Client: client, States: insp} // as the periodic reconcile does
	rep, err = Run(ctx, b.s3, b.st.Q, Options{Bucket: b.bucket, Fix: true, Enqueuer: unique})
	require.NoError(t, err)
	require.Equal(t, &Fixed{Enqueued: 56, MarkedMissing: 10}, rep.Fixed)

	pending, err := insp.ListPendingTasks(tasks.QueueDefault, asynq.PageSize(1000))
	require.NoError(t, err)
	var enqueued []string
	for _, task := range pending {
		require.Equal(t, tasks.TypeInspectObject, task.Type)
		p, err := tasks.ParseInspectObject(task.Payload)
		require.NoError(t, err)
		require.Equal(t, b.bucket, p.Bucket)
		enqueued = append(enqueued, p.Key)
	}
	slices.Sort(enqueued)
	require.Equal(t, sorted(append(slices.Clone(wantMissing), wantStale...)...), enqueued)

	for _, k := range wantGone {
		var status, reason string
		require.NoError(t, b.st.Pool.QueryRow(ctx, `SELECT status, reason FROM objects WHERE bucket = $1 AND key = $2`, b.bucket, k).Scan(&status, &reason))
		require.Equal(t, "missing", status, k)
		require.Equal(t, "reconcile", reason, k)
	}
	var untouched int
	require.NoError(t, b.st.Pool.QueryRow(ctx, `SELECT count(*) FROM objects WHERE reason = 'reconcile'`).Scan(&untouched))
	require.Equal(t, 10, untouched, "no other row was marked")

	// Again: the gone rows now agree; missing/stale stay until the tasks run.
	rep, err = Run(ctx, b.s3, b.st.Q, Options{Bucket: b.bucket})
	require.NoError(t, err)
	require.Empty(t, rep.Gone)
	require.Len(t, rep.Missing, 50)

	// The next period's fix, while the worker is down: every inspection is still queued, so none
	// is queued twice (a long outage would otherwise pile one task per period and object).
	rep, err = Run(ctx, b.s3, b.st.Q, Options{Bucket: b.bucket, Fix: true, Enqueuer: unique})
	require.NoError(t, err)
	require.Equal(t, &Fixed{AlreadyQueued: 56}, rep.Fixed)
	pending, err = insp.ListPendingTasks(tasks.QueueDefault, asynq.PageSize(1000))
	require.NoError(t, err)
	require.Len(t, pending, 56, "no inspection was queued twice")

	// One inspection failed for good (archived): the next period queues it again, at once. With
	// asynq.Unique (before), its lock kept it out for about 8.5 hours after it was first queued.
	archived := tasks.InspectTaskID(b.bucket, wantMissing[0])
	require.NoError(t, insp.ArchiveTask(tasks.QueueDefault, archived))
	rep, err = Run(ctx, b.s3, b.st.Q, Options{Bucket: b.bucket, Fix: true, Enqueuer: unique})
	require.NoError(t, err)
	require.Equal(t, &Fixed{Enqueued: 1, AlreadyQueued: 55}, rep.Fixed)
	got, err := insp.GetTaskInfo(tasks.QueueDefault, archived)
	require.NoError(t, err)
	require.Equal(t, asynq.TaskStatePending, got.State)
}

// TestReconcileRace: rows changed after the run started are not judged, and a gone row whose
// object reappeared before the fix is left alone.
func TestReconcileRace(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("needs MinIO, PostgreSQL and Redis")
	}
	b := setup(t, 3, func(i int) string { return fmt.Sprintf("k%d", i) })
	ctx := testkit.Context(t)
	for i := range 3 {
		b.row(t, b.bucket, fmt.Sprintf("k%d", i), b.etags[fmt.Sprintf("k%d", i)], "valid")
	}
	b.row(t, b.bucket, "k3", "e", "valid") // gone
	b.row(t, b.bucket, "k4", "e", "valid") // gone, but reappears before the fix
	rows := &touchRows{Rows: b.st.Q, touch: func() {
		// After the run started: k0 changes (etag now differs) and k3's row is updated.
		_, err := b.st.Pool.Exec(ctx, `UPDATE objects SET etag = 'zzz', updated_at = now() + interval '1 second' WHERE bucket = $1 AND key IN ('k0', 'k3')`, b.bucket)
		require.NoError(t, err)
	}}
	s3c := &reappear{S3API: b.s3, put: func() {
		_, err := b.s3.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(b.bucket), Key: aws.String("k4"), Body: bytes.NewReader([]byte("back"))})
		require.NoError(t, err)
	}}
	client := asynq.NewClient(b.redis)
	t.Cleanup(func() { _ = client.Close() })
	rep, err := Run(ctx, s3c, rows, Options{Bucket: b.bucket, Fix: true, Enqueuer: TaskEnqueuer{Client: client}})
	require.NoError(t, err)
	require.Equal(t, 2, rep.Changed, "k0 and k3 changed during the run")
	require.Empty(t, rep.Stale)
	require.Equal(t, []Gone{{Key: "k4", RowStatus: "valid"}}, rep.Gone)
	require.Equal(t, &Fixed{Reappeared: 1}, rep.Fixed)
}

// touchRows runs touch once, right after the run's start time is read.
type touchRows struct {
	Rows
	once  sync.Once
	touch func()
}

func (r *touchRows) OpsListObjects(ctx context.Context, arg dbqListParams) ([]dbqListRow, error) {
	r.once.Do(r.touch)
	return r.Rows.OpsListObjects(ctx, arg)
}

// reappear puts an object back just before the fix checks it.
type reappear struct {
	S3API
	once sync.Once
	put  func()
}

func (r *reappear) HeadObject(ctx context.Context, in *s3.HeadObjectInput, opts ...func(*s3.Options)) (*s3.HeadObjectOutput, error) {
	r.once.Do(r.put)
	return r.S3API.HeadObject(ctx, in, opts...)
}

// notFoundProxy answers every HEAD with a bodiless 404, as a wrong endpoint or a proxy in front of
// a bucket that is not there does.
type notFoundProxy struct{ S3API }

func (notFoundProxy) HeadObject(context.Context, *s3.HeadObjectInput, ...func(*s3.Options)) (*s3.HeadObjectOutput, error) {
	return nil, &smithy.GenericAPIError{Code: "NotFound", Message: "Not Found"}
}

func (notFoundProxy) HeadBucket(context.Context, *s3.HeadBucketInput, ...func(*s3.Options)) (*s3.HeadBucketOutput, error) {
	return nil, &smithy.GenericAPIError{Code: "NotFound", Message: "Not Found"}
}

// TestReconcileFixNeedsTheBucket: the attacker is no one, the fault is a wrong endpoint or a bucket
// removed during the run: every HEAD answers 404. The side effect that must not happen: rows of
// objects that exist marked missing. The fix marks nothing and fails, naming the bucket.
func TestReconcileFixNeedsTheBucket(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("needs MinIO, PostgreSQL and Redis")
	}
	b := setup(t, 4, key)
	for i := range 4 {
		b.row(t, b.bucket, key(i), b.etags[key(i)], "valid")
	}
	b.deleteObject(t, key(0)) // one row the listing reports gone
	ctx := testkit.Context(t)
	client := asynq.NewClient(b.redis)
	t.Cleanup(func() { _ = client.Close() })
	_, err := Run(ctx, notFoundProxy{b.s3}, b.st.Q, Options{Bucket: b.bucket, Fix: true, Enqueuer: TaskEnqueuer{Client: client}})
	require.ErrorContains(t, err, "none marked missing")
	var missing int
	require.NoError(t, b.st.Pool.QueryRow(ctx, `SELECT count(*) FROM objects WHERE bucket = $1 AND status = 'missing'`, b.bucket).Scan(&missing))
	require.Zero(t, missing)

	// With the bucket there, the same run marks the one gone row.
	rep, err := Run(ctx, b.s3, b.st.Q, Options{Bucket: b.bucket, Fix: true, Enqueuer: TaskEnqueuer{Client: client}})
	require.NoError(t, err)
	require.Equal(t, 1, rep.Fixed.MarkedMissing)
}

func TestReportText(t *testing.T) {
	t.Parallel()
	rep := &Report{Bucket: "b", Listed: 3, Rows: 2, InSync: 1, Complete: true,
		Missing:      []Missing{{Key: "m", ETag: "e", Size: 1}},
		Stale:        []Stale{{Key: "s", S3ETag: "a", RowETag: "b", RowStatus: "valid"}},
		Gone:         []Gone{{Key: "g", RowStatus: "pending"}},
		MissingCount: 151, StaleCount: 1, GoneCount: 1, Problems: 153}
	for i := range 150 {
		rep.Missing = append(rep.Missing, Missing{Key: fmt.Sprintf("x%03d", i)})
	}
	var out bytes.Buffer
	require.NoError(t, rep.WriteText(&out))
	text := out.String()
	require.Contains(t, text, "reconcile: bucket b, prefix (none): done in")
	require.Regexp(t, `(?m)^  missing rows\s+151$`, text)
	require.Contains(t, text, "missing rows (object in the bucket, no row) (first 100 of 151):\n")
	require.Contains(t, text, "stale rows (row disagrees with the object) (1):\n")
	require.Contains(t, text, "  m  etag=e size=1\n")
	require.Contains(t, text, "  s  s3_etag=a row_etag=b row_status=valid\n")
	require.Contains(t, text, "  g  row_status=pending\n")
	require.Contains(t, text, "… and 51 more (--json lists them all)")
	require.Contains(t, text, "run again with --fix")
	raw, err := json.Marshal(rep)
	require.NoError(t, err)
	require.Contains(t, string(raw), `"missing_count":151`)
	require.Contains(t, string(raw), `"missing":[{"key":"m","etag":"e","size":1}`)

	// A run that stopped part-way says so; a fix that could not HEAD some rows lists them.
	rep = &Report{Bucket: "b", GoneCount: 2, Problems: 2, Gone: []Gone{{Key: "g1"}, {Key: "g2"}},
		Fixed: &Fixed{MarkedMissing: 1, HeadFailed: 1, HeadErrors: []HeadError{{Key: "g2", Error: "403 Forbidden"}}}}
	out.Reset()
	require.NoError(t, rep.WriteText(&out))
	text = out.String()
	require.Contains(t, text, ": stopped after")
	require.Contains(t, text, "stopped part-way")
	require.Contains(t, text, "marked 1 rows missing (0 reappeared, 0 changed meanwhile, 1 not checked: HEAD failed)")
	require.Contains(t, text, "gone rows not checked (HeadObject failed for the key; left as they are) (1):\n  g2  403 Forbidden\n")
}

func TestRunOptions(t *testing.T) {
	t.Parallel()
	_, err := Run(context.Background(), nil, nil, Options{})
	require.ErrorContains(t, err, "bucket: required")
	_, err = Run(context.Background(), nil, nil, Options{Bucket: "b", Fix: true})
	require.ErrorContains(t, err, "no enqueuer")
}

type (
	dbqListParams = dbq.OpsListObjectsParams
	dbqListRow    = dbq.OpsListObjectsRow
)

// TestReconcileListingCutByRate: the rate limiter refuses a wait that would pass the context's
// deadline before the deadline comes. The listing is then cut short: the run must fail, not report
// the rows past the cut as gone with a nil error (the periodic reconcile would record a success).
func TestReconcileListingCutByRate(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("needs MinIO and PostgreSQL")
	}
	b := setup(t, 40, key)
	for k, etag := range b.etags {
		b.row(t, b.bucket, k, etag, "valid")
	}
	// 10 objects per page, 2 per second: the second page's wait (5 s) passes the 3 s deadline.
	ctx, cancel := context.WithTimeout(testkit.Context(t), 3*time.Second)
	defer cancel()
	rep, err := Run(ctx, b.s3, b.st.Q, Options{Bucket: b.bucket, PageSize: 10, Rate: 2})
	require.Error(t, err, "a listing cut short is not a complete one (report: %+v)", rep)
	require.NoError(t, ctx.Err(), "the limiter refused before the deadline came")
}

// cancelOnPage cancels the run's context when the listing asks for page n (counting from 1), once
// after is closed, and lets the request go on with it.
type cancelOnPage struct {
	S3API
	n      int
	after  <-chan struct{}
	cancel context.CancelFunc
	mu     sync.Mutex
	pages  int
}

func (c *cancelOnPage) ListObjectsV2(ctx context.Context, in *s3.ListObjectsV2Input, opts ...func(*s3.Options)) (*s3.ListObjectsV2Output, error) {
	c.mu.Lock()
	c.pages++
	page := c.pages
	c.mu.Unlock()
	if page == c.n {
		select {
		case <-c.after:
		case <-ctx.Done(): // the run ended first: no hang
		}
		c.cancel()
	}
	return c.S3API.ListObjectsV2(ctx, in, opts...)
}

// rowsRead closes read when the first page of rows has been read.
type rowsRead struct {
	Rows
	once sync.Once
	read chan struct{}
}

func (r *rowsRead) OpsListObjects(ctx context.Context, arg dbqListParams) ([]dbqListRow, error) {
	rows, err := r.Rows.OpsListObjects(ctx, arg)
	r.once.Do(func() { close(r.read) })
	return rows, err
}

// TestReconcileListingCancelled: a run whose context ends (SIGINT, a deadline) while the bucket is
// listed fails with the context's error: the rows past the cut are not reported gone, and the
// command says interrupted instead of printing a report (or --exit-code 3, or a success).
func TestReconcileListingCancelled(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("needs MinIO and PostgreSQL")
	}
	b := setup(t, 20, func(i int) string { return fmt.Sprintf("k%02d", i) })
	// Rows for k00..k04 and k15..k18: fewer than a page, all read (in one query) before the cut,
	// which comes when the listing asks for its second page.
	for _, i := range []int{0, 1, 2, 3, 4, 15, 16, 17, 18} {
		k := fmt.Sprintf("k%02d", i)
		b.row(t, b.bucket, k, b.etags[k], "valid")
	}
	ctx, cancel := context.WithCancel(testkit.Context(t))
	defer cancel()
	rows := &rowsRead{Rows: b.st.Q, read: make(chan struct{})}
	s3c := &cancelOnPage{S3API: b.s3, n: 2, after: rows.read, cancel: cancel}
	rep, err := Run(ctx, s3c, rows, Options{Bucket: b.bucket, PageSize: 10})
	require.ErrorIs(t, err, context.Canceled, "a listing cut short is not a complete one (report: %+v)", rep)
	require.Empty(t, rep.Gone, "k15..k18 were not listed, not found gone")
	require.Equal(t, 2, s3c.pages)
}

// rowsThen runs then once, right after the run's start time is read, with that time.
type rowsThen struct {
	Rows
	once sync.Once
	then func(start time.Time)
}

func (r *rowsThen) OpsNow(ctx context.Context) (time.Time, error) {
	now, err := r.Rows.OpsNow(ctx)
	r.once.Do(func() { r.then(now) })
	return now, err
}

// TestReconcileObjectsChangedDuringRun: an object uploaded (or overwritten) after the run started
// has no row yet, or a row of its previous version, while its event is on its way: it is counted
// as changed during the run, not reported missing or stale (nor fixed).
func TestReconcileObjectsChangedDuringRun(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("needs MinIO and PostgreSQL")
	}
	b := setup(t, 3, func(i int) string { return fmt.Sprintf("k%d", i) })
	ctx := testkit.Context(t)
	for i := range 3 {
		k := fmt.Sprintf("k%d", i)
		b.row(t, b.bucket, k, b.etags[k], "valid")
	}
	b.row(t, b.bucket, "k9", "e", "valid") // gone: judged as before
	put := func(key, content string) {
		_, err := b.s3.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(b.bucket), Key: aws.String(key), Body: bytes.NewReader([]byte(content))})
		require.NoError(t, err)
	}
	rows := &rowsThen{Rows: b.st.Q, then: func(start time.Time) {
		// MinIO lists LastModified in milliseconds: written a millisecond after the start at the
		// earliest, the objects are listed as written after it.
		time.Sleep(time.Until(start.Add(time.Millisecond)))
		put("k1", "overwritten during the run") // its row has the old etag
		put("k5", "uploaded during the run")    // no row yet
	}}
	rep, err := Run(ctx, b.s3, rows, Options{Bucket: b.bucket})
	require.NoError(t, err)
	require.Empty(t, rep.Missing)
	require.Empty(t, rep.Stale)
	require.Equal(t, []Gone{{Key: "k9", RowStatus: "valid"}}, rep.Gone)
	require.Equal(t, 2, rep.Changed, "k1 and k5 changed during the run")
	require.Equal(t, 2, rep.InSync)
	require.Equal(t, 4, rep.Listed)

	// The next run judges them.
	rep, err = Run(ctx, b.s3, b.st.Q, Options{Bucket: b.bucket})
	require.NoError(t, err)
	require.Equal(t, []string{"k5"}, keysOf(rep.Missing, func(m Missing) string { return m.Key }))
	require.Equal(t, []string{"k1"}, keysOf(rep.Stale, func(s Stale) string { return s.Key }))
	require.Zero(t, rep.Changed)
}
