package faults_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/hibiken/asynq"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/intakehq/intake/internal/testkit"
)

// warmUp sends a few uploads before the fault and waits for their rows: the path works, so what
// breaks later is the fault's doing.
func (w *world) warmUp(api *daemon) []*upload {
	w.t.Helper()
	ups := w.intents(api, uploadSpec{n: 10, badEvery: 5})
	w.send(ups, 0)
	missing, _ := w.converge(ups, time.Now(), 2*time.Minute)
	if len(missing) > 0 {
		w.explain(missing)
	}
	require.Empty(w.t, missing, "uploads before the fault were not recorded")
	return ups
}

// outage is the shape most scenarios share: the daemons run, a few uploads go through, intents are
// handed out, then the fault lasts length while the uploads land (spread over most of it), and after
// it heals the rows must converge.
type outage struct {
	name   string
	length time.Duration
	events int
	within time.Duration // how long the rows may take to converge after the fault
	// start starts the daemons and returns the API the uploads go through (default: an api process
	// serving the ingress and a worker process running the other roles).
	start     func(w *world) *daemon
	cut, heal func(w *world)
}

func (o outage) run(t *testing.T) {
	t.Helper()
	w := newWorld(t, worldOptions{})
	start := o.start
	if start == nil {
		start = func(w *world) *daemon {
			api := w.start("api", "api", w.ingressAddr)
			w.start("worker", "consumer,jobs,scheduler", "")
			return api
		}
	}
	api := start(w)
	warm := w.warmUp(api)
	ups := w.intents(api, uploadSpec{n: o.events, badEvery: 10}) // URLs handed out before the fault

	o.cut(w)
	down := time.Now()
	w.send(ups, o.length*8/10)
	sleepUntil(down.Add(o.length))
	o.heal(w)
	w.finish(o.name+" "+o.length.String(), append(warm, ups...), time.Now(), o.within,
		fmt.Sprintf("%d uploads during the fault, %d before", o.events, len(warm)))
}

// TestPostgresDown: PostgreSQL unreachable (toxiproxy: port closed, connections cut) for 5 minutes
// while 500 uploads land; the queue redrives after 5 receives.
func TestPostgresDown(t *testing.T) {
	scenario(t)
	outage{
		// The short outage outlasts the queue's redrive (5 receives, about 62 s of the consumer's
		// backoffs), so that a consumer that counted receives during the outage would dead-letter.
		name: "1. PostgreSQL down", length: length(75*time.Second, 5*time.Minute), events: length(40, 500),
		within: length(4*time.Minute, 10*time.Minute),
		cut:    func(w *world) { w.pg.Down() }, heal: func(w *world) { w.pg.Up() },
	}.run(t)
}

// TestFailoverReadOnly: the database turns read-only (every session cut, new ones read-only, as
// after a failover to a replica) for 60 s, then writable again (sessions cut again).
func TestFailoverReadOnly(t *testing.T) {
	scenario(t)
	outage{
		// The short outage outlasts the redrive (see TestPostgresDown); the full form keeps issue 11's
		// 60 s.
		name: "2. PostgreSQL read-only (failover)", length: length(75*time.Second, 60*time.Second), events: length(30, 200),
		within: length(3*time.Minute, 6*time.Minute),
		cut:    func(w *world) { w.readOnly(true) }, heal: func(w *world) { w.readOnly(false) },
	}.run(t)
}

// TestConsumersKilled: three consumer replicas; every few seconds one of them, at random, is killed
// with SIGKILL and started again, while the uploads land and are processed. Kills between a commit
// and its delete leave messages to be redelivered after the visibility timeout: their duplicates must
// be absorbed.
func TestConsumersKilled(t *testing.T) {
	scenario(t)
	events, every, run := length(300, 5000), length(2*time.Second, 3*time.Second), length(40*time.Second, 3*time.Minute)
	w := newWorld(t, worldOptions{})
	api := w.start("api", "api", w.ingressAddr)
	consumers := []*daemon{
		w.start("consumer-1", "consumer", ""), w.start("consumer-2", "consumer", ""), w.start("consumer-3", "consumer", ""),
	}
	ups := w.intents(api, uploadSpec{n: events, badEvery: 10})

	sent := make(chan error, 1)
	go func() { sent <- sendAll(ups, run*9/10) }()
	start, kills := time.Now(), 0
	for sending := true; sending || time.Since(start) < run; {
		select {
		case err := <-sent:
			require.NoError(t, err)
			sending = false
			continue
		case <-time.After(every):
		}
		c := pick(consumers)
		c.kill()
		kills++
		c.start()
	}
	w.finish("3. consumer replicas killed (kill -9)", ups, time.Now(), length(4*time.Minute, 8*time.Minute),
		fmt.Sprintf("3 consumers, %d kills (one every %s for %s)", kills, every, run))
}

// TestMinIOSlowAndHalfOpen: the daemons' path to MinIO gets 2 s of latency (and a bandwidth limit, so
// that hashes take seconds), then turns half-open (bytes vanish, nothing is refused) while large
// objects are being peeked and hashed; then it heals.
func TestMinIOSlowAndHalfOpen(t *testing.T) {
	scenario(t)
	size, n := length(int64(8<<20), int64(64<<20)), length(4, 12)
	slow, halfOpen := length(10*time.Second, 30*time.Second), length(20*time.Second, 60*time.Second)
	w := newWorld(t, worldOptions{})
	api := w.start("api", "api", w.ingressAddr)
	worker := w.start("worker", "consumer,jobs,scheduler", "")
	ups := w.intents(api, uploadSpec{n: n, size: size}) // SHA-256 declared: the consumer hashes each

	w.objects.Latency(testkit.Downstream, 2*time.Second, 0)
	w.objects.Bandwidth(testkit.Downstream, size/1024/8) // about 8 s per full read
	start := time.Now()
	w.send(ups[:n/2], 0)
	sleepUntil(start.Add(slow))
	w.send(ups[n/2:], 0)
	// The path turns half-open while messages are being processed (their peeks and hashes reading
	// through the slow path), not before they arrive or after they are done.
	var inFlight float64
	for wait := time.Now().Add(30 * time.Second); inFlight == 0 && time.Now().Before(wait); {
		time.Sleep(200 * time.Millisecond)
		inFlight = worker.metric("intake_consumer_inflight")
	}
	require.Positive(t, inFlight, "no message was being processed when the path was to turn half-open: this scenario tests nothing")
	w.objects.Timeout(testkit.Downstream, 0)
	sleepUntil(time.Now().Add(halfOpen))
	w.objects.Clear()
	w.finish(fmt.Sprintf("4. MinIO slow (2 s) %s, then half-open %s", slow, halfOpen), ups, time.Now(), length(4*time.Minute, 8*time.Minute),
		fmt.Sprintf("%d objects of %d MiB, hashed; %.0f messages in process when it turned half-open", n, size>>20, inFlight))
}

// TestKumoDown: SQS (kumo) unreachable for 60 s: the ingress cannot forward (MinIO keeps the events),
// receives and deletes fail.
func TestKumoDown(t *testing.T) {
	scenario(t)
	outage{
		name: "5. kumo (SQS) down", length: length(20*time.Second, 60*time.Second), events: length(30, 200),
		within: length(3*time.Minute, 6*time.Minute),
		cut:    func(w *world) { w.queue.Down() }, heal: func(w *world) { w.queue.Up() },
	}.run(t)
}

// TestDaemonDownOnIngress: the process serving the ingress MinIO's webhook posts to is killed for
// 60 s while uploads continue through another API replica; MinIO's webhook queue directory keeps the
// events until it is back.
func TestDaemonDownOnIngress(t *testing.T) {
	scenario(t)
	var ingress *daemon
	outage{
		name: "7. daemon down on the webhook → ingress path", length: length(20*time.Second, 60*time.Second), events: length(30, 200),
		within: length(3*time.Minute, 6*time.Minute),
		start: func(w *world) *daemon {
			ingress = w.start("api-ingress", "api", w.ingressAddr)
			front := w.start("api-front", "api", "")
			w.start("worker", "consumer,jobs,scheduler", "")
			return front
		},
		cut: func(*world) { ingress.kill() }, heal: func(*world) { ingress.start() },
	}.run(t)
}

// multipartEnv shortens the multipart deadline and the sweep so that a scenario can wait for them.
func multipartEnv(deadline, period time.Duration) []string {
	return []string{
		"INTAKE_JOBS_MULTIPART_DEADLINE=" + deadline.String(),
		"INTAKE_JOBS_SWEEP_CRON=@every " + period.String(),
		"INTAKE_JOBS_SWEEP_OLDER_THAN=1m", // the smallest allowed
	}
}

// openUploads returns the upload ids of the bucket's open multipart uploads.
func (w *world) openUploads() map[string]bool {
	w.t.Helper()
	open := map[string]bool{}
	p := s3.NewListMultipartUploadsPaginator(w.s3, &s3.ListMultipartUploadsInput{Bucket: aws.String(w.bucket)})
	for p.HasMorePages() {
		page, err := p.NextPage(context.Background())
		require.NoError(w.t, err)
		for _, u := range page.Uploads {
			open[aws.ToString(u.UploadId)] = true
		}
	}
	return open
}

// aborted returns the upload ids that multipart_aborts records aborted. It holds one row per upload
// (its primary key is (bucket, upload_id)), so it cannot tell an upload aborted twice: that is not
// counted here.
func (w *world) aborted() map[string]bool {
	w.t.Helper()
	rows, err := w.db.Query(context.Background(),
		`SELECT upload_id FROM multipart_aborts WHERE bucket = $1 AND outcome = 'aborted'`, w.bucket)
	require.NoError(w.t, err)
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(w.t, err)
	out := map[string]bool{}
	for _, id := range ids {
		out[id] = true
	}
	return out
}

// intentEnds describes, for each of the multipart upload ids, how its intent did not end as it
// must: status 'aborted' and exactly one upload.aborted notification. Empty: all did.
func (w *world) intentEnds(ids []string) []string {
	w.t.Helper()
	rows, err := w.db.Query(context.Background(), `SELECT u.multipart_upload_id, u.status,
		       (SELECT count(*) FROM outbox o WHERE o.upload_id = u.id AND o.event_type = 'upload.aborted')::int
		FROM uploads u WHERE u.bucket = $1 AND u.method = 'multipart'`, w.bucket)
	require.NoError(w.t, err)
	type end struct {
		status   string
		notified int
	}
	ends := map[string]end{}
	for rows.Next() {
		var id string
		var e end
		require.NoError(w.t, rows.Scan(&id, &e.status, &e.notified))
		ends[id] = e
	}
	require.NoError(w.t, rows.Err())
	var bad []string
	for _, id := range ids {
		e, ok := ends[id]
		switch {
		case !ok:
			bad = append(bad, id+": no intent")
		case e.status != "aborted" || e.notified != 1:
			bad = append(bad, fmt.Sprintf("%s: status %q, %d upload.aborted notifications", id, e.status, e.notified))
		}
	}
	return bad
}

// archived returns the tasks asynq archived (gave up on) in the scenario's Redis database, on every
// queue there (intake's queues: the scenario's database is its own), as "queue/type/id: last error".
func (w *world) archived() []string {
	w.t.Helper()
	insp := asynq.NewInspector(asynq.RedisClientOpt{Addr: testkit.RedisAddr(), DB: w.redisDB})
	defer insp.Close()
	queues, err := insp.Queues()
	require.NoError(w.t, err)
	var out []string
	for _, q := range queues {
		for page := 1; ; page++ {
			tasks, err := insp.ListArchivedTasks(q, asynq.Page(page), asynq.PageSize(100))
			require.NoError(w.t, err)
			for _, ti := range tasks {
				out = append(out, fmt.Sprintf("%s/%s/%s: %s", q, ti.Type, ti.ID, ti.LastErr))
			}
			if len(tasks) < 100 {
				break
			}
		}
	}
	return out
}

// waitAborted waits (at most within) until none of ids is open in S3 any more and no multipart
// intent of the bucket is pending, and returns the ids still open.
func (w *world) waitAborted(ids []string, within time.Duration) []string {
	w.t.Helper()
	deadline := time.Now().Add(within)
	for {
		open := w.openUploads()
		var left []string
		for _, id := range ids {
			if open[id] {
				left = append(left, id)
			}
		}
		// Converged when S3 holds none of them and PostgreSQL says so too: the sweep records each
		// abort after S3 confirms it, so the last rows lag the listing by a moment, and an abort
		// whose process was killed before recording is resumed by a sweep after ResumeAfter.
		if (len(left) == 0 && w.unsettledMultipart() == 0) || time.Now().After(deadline) {
			return left
		}
		time.Sleep(time.Second)
	}
}

// unsettledMultipart counts the bucket's multipart intents still pending and its aborts begun but
// not recorded.
func (w *world) unsettledMultipart() int {
	w.t.Helper()
	var n int
	require.NoError(w.t, w.db.QueryRow(context.Background(),
		`SELECT (SELECT count(*) FROM uploads WHERE bucket = $1 AND method = 'multipart' AND status = 'pending')
		      + (SELECT count(*) FROM multipart_aborts WHERE bucket = $1 AND outcome = 'aborting')`, w.bucket).Scan(&n))
	return n
}

// TestRedisDownMultipart: Redis unreachable for 60 s while multipart uploads are created. Creating
// answers (201) or refuses cleanly (503, nothing left behind), and every created upload is still
// aborted after its deadline although its abort task could not be scheduled.
func TestRedisDownMultipart(t *testing.T) {
	scenario(t)
	outage, creates := length(20*time.Second, 60*time.Second), length(10, 60)
	deadline, period := 20*time.Second, 20*time.Second
	w := newWorld(t, worldOptions{env: multipartEnv(deadline, period)})
	api := w.start("api", "api", w.ingressAddr)
	w.start("worker", "consumer,jobs,scheduler", "")

	w.redis.Down()
	down := time.Now()
	var (
		mu      sync.Mutex
		created []string // upload ids answered 201
		refused int      // 503
		other   []string
	)
	err := testkit.InParallel(creates, 4, func(i int) error {
		time.Sleep(time.Until(down.Add(outage * 8 / 10 * time.Duration(i) / time.Duration(creates))))
		var resp struct {
			UploadID string `json:"upload_id"`
		}
		status, err := postJSON(api.addr, "/v1/uploads", goodKey, map[string]any{
			"filename": fmt.Sprintf("big%03d.bin", i), "content_type": "application/octet-stream", "size": 10 << 20, "method": "multipart",
		}, &resp)
		mu.Lock()
		defer mu.Unlock()
		switch {
		case status == http.StatusCreated && err == nil && resp.UploadID != "":
			created = append(created, resp.UploadID)
		case status == http.StatusServiceUnavailable:
			refused++
		default:
			other = append(other, fmt.Sprintf("%d %v", status, err))
		}
		return nil
	})
	require.NoError(t, err)
	sleepUntil(down.Add(outage))
	w.redis.Up()
	healed := time.Now()
	require.Empty(t, other, "creating a multipart upload answers 201 or a clear 503")
	require.NotEmpty(t, created, "no upload was created while Redis was down: this scenario tests nothing")
	unscheduled := api.metric("intake_multipart_abort_unscheduled_total")
	require.Positive(t, unscheduled, "every abort task was scheduled: Redis was not down for the creates, and this scenario tests nothing")

	// The deadline passed long ago for the first ones; the sweep takes uploads older than 1 min,
	// intake's 2 minutes (tasks.AbortGrace) past their deadline.
	left := w.waitAborted(created, length(4*time.Minute, 5*time.Minute))
	took := time.Since(healed)
	if len(left) > 0 || w.unsettledMultipart() > 0 {
		took = -1 // never: uploads still open, or intents or aborts not settled
	}
	open := w.openUploads()
	unsettled := w.unsettledMultipart()
	wrong := w.intentEnds(created)
	// Duplicates: repeated notifications (an upload.aborted twice would be one). multipart_aborts
	// keeps one row per upload, so "aborted twice in S3" cannot be counted from it.
	w.report(tally{
		Scenario: "6. Redis down " + outage.String() + " while multipart uploads are created", Events: len(created),
		Recorded: len(created) - len(left), Lost: len(open), Duplicates: w.repeatedNotifications(), DeadLettered: w.deadLettered(),
		Converged: took,
		Notes: fmt.Sprintf("%d created (201), %d refused (503), %.0f abort tasks not scheduled; %d intents not ended aborted with one notification; lost = created uploads still open + anything else left open; deadline %s, sweep every %s",
			len(created), refused, unscheduled, len(wrong), deadline, period),
	})
	require.Zero(t, unsettled, "every abort recorded, no multipart intent left pending")
	require.Empty(t, wrong, "every created upload's intent ends aborted, with exactly one upload.aborted notification")
}

// TestJobsKilledMidAbort: the jobs replica is killed (SIGKILL) while its sweep's aborts are in
// flight. MinIO answers through the proxy 500 ms late, so when the kill lands S3 has aborted the
// uploads (the requests got through) and the replica has not recorded its answers: the window where
// an abort used to be lost for good (S3 no longer lists the upload, so no later sweep found it).
// Every abort must still end recorded "aborted", once.
func TestJobsKilledMidAbort(t *testing.T) {
	scenario(t)
	period, stale := length(10*time.Second, 15*time.Second), length(10, 50)
	w := newWorld(t, worldOptions{env: multipartEnv(time.Minute, period)})
	w.start("scheduler", "scheduler", "")
	jobs := w.start("jobs", "jobs", "")

	ids := w.abandonedUploads(stale)
	eligible := time.Now().Add(time.Minute) // SWEEP_OLDER_THAN
	w.objects.Latency(testkit.Downstream, 500*time.Millisecond, 0)

	// Each abort: its row ("aborting"), ListParts answered 500 ms later, AbortMultipartUpload sent
	// then and answered 500 ms after that. 750 ms after the first row, the aborts are done in S3 and
	// their answers are on the way.
	begun := w.waitBegun(eligible.Add(4 * period))
	require.False(t, begun.IsZero(), "the sweep began no abort")
	sleepUntil(begun.Add(750 * time.Millisecond))
	jobs.kill()
	open := w.openUploads()
	inFlight := 0
	for _, id := range w.abortingRows() {
		if !open[id] {
			inFlight++ // aborted in S3, not recorded
		}
	}
	w.objects.Clear()
	time.Sleep(2 * time.Second)
	jobs.start()
	restarted := time.Now()

	left := w.waitAborted(ids, 4*time.Minute)
	took := time.Since(restarted)
	if len(left) > 0 || w.unsettledMultipart() > 0 {
		took = -1 // never: uploads still open, or intents or aborts not settled
	}
	recorded := w.recordedAborts(ids)
	archived := w.archived()
	w.report(tally{
		Scenario: "9. jobs replica killed while its aborts are in flight (S3 answering 500 ms late)", Events: stale,
		Recorded: recorded, Lost: stale - recorded, Duplicates: 0, DeadLettered: len(archived), Converged: took,
		Notes: fmt.Sprintf("%d aborts done in S3 and not recorded when the kill landed; converged = from the restart "+
			"(a retried sweep task or the first sweep a minute after the abort began records them); "+
			"dead-lettered = asynq tasks archived; duplicates not countable (one multipart_aborts row per upload)", inFlight),
	})
	require.Empty(t, archived, "no asynq task archived")
	require.Positive(t, inFlight, "the kill must land between S3's abort and its record, or this scenario tests nothing")
	require.Empty(t, left, "every stale upload is aborted in S3")
	require.Equal(t, stale, recorded, "every stale upload's abort is recorded aborted")
}

// abandonedUploads creates n multipart uploads straight in S3 (not through intake), each with one
// part, and returns their upload ids.
func (w *world) abandonedUploads(n int) []string {
	w.t.Helper()
	ctx := testkit.Context(w.t)
	var ids []string
	for i := range n {
		key := fmt.Sprintf("abandoned/%03d.bin", i)
		out, err := w.s3.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: aws.String(w.bucket), Key: aws.String(key)})
		require.NoError(w.t, err)
		_, err = w.s3.UploadPart(ctx, &s3.UploadPartInput{Bucket: aws.String(w.bucket), Key: aws.String(key), UploadId: out.UploadId,
			PartNumber: aws.Int32(1), Body: strings.NewReader("part one")})
		require.NoError(w.t, err)
		ids = append(ids, aws.ToString(out.UploadId))
	}
	return ids
}

// recordedAborts counts the uploads among ids recorded "aborted".
func (w *world) recordedAborts(ids []string) (recorded int) {
	w.t.Helper()
	aborted := w.aborted()
	for _, id := range ids {
		if aborted[id] {
			recorded++
		}
	}
	return recorded
}

// waitBegun waits until an abort of the bucket is begun and not recorded (a row "aborting") and
// returns when it saw it, or the zero time at deadline.
func (w *world) waitBegun(deadline time.Time) time.Time {
	w.t.Helper()
	for time.Now().Before(deadline) {
		if len(w.abortingRows()) > 0 {
			return time.Now()
		}
		time.Sleep(20 * time.Millisecond)
	}
	return time.Time{}
}

// abortingRows returns the upload ids of the bucket's aborts begun and not recorded.
func (w *world) abortingRows() []string {
	w.t.Helper()
	rows, err := w.db.Query(context.Background(), `SELECT upload_id FROM multipart_aborts WHERE bucket = $1 AND outcome = 'aborting'`, w.bucket)
	require.NoError(w.t, err)
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(w.t, err)
	return ids
}

// TestSweepReplicasKilled: two scheduler and two jobs replicas as processes; one of each is killed
// with SIGKILL in the middle of a period, while stale multipart uploads (created straight in S3, not
// through intake) wait to be swept. Each period is swept once, each stale upload aborted once.
func TestSweepReplicasKilled(t *testing.T) {
	scenario(t)
	period, stale, after := length(10*time.Second, 15*time.Second), length(10, 50), length(3, 6)
	w := newWorld(t, worldOptions{env: multipartEnv(time.Minute, period)})
	schedulers := []*daemon{w.start("scheduler-1", "scheduler", ""), w.start("scheduler-2", "scheduler", "")}
	jobs := []*daemon{w.start("jobs-1", "jobs", ""), w.start("jobs-2", "jobs", "")}

	ids := w.abandonedUploads(stale)
	eligible := time.Now().Add(time.Minute) // SWEEP_OLDER_THAN

	// Kill one scheduler and one jobs replica in the middle of the first period that sweeps.
	sleepUntil(eligible.Add(period/2 + time.Duration(rand.Int64N(int64(period/4)))))
	s, j := pick(schedulers), pick(jobs)
	s.kill()
	j.kill()
	time.Sleep(period / 2)
	s.start()
	j.start()

	left := w.waitAborted(ids, 3*time.Minute)
	took := time.Since(eligible)
	if len(left) > 0 || w.unsettledMultipart() > 0 {
		took = -1 // never: uploads still open, or intents or aborts not settled
	}
	sleepUntil(eligible.Add(time.Duration(after) * period)) // more periods, for the per-period count

	enqueued, finished := map[string]int{}, map[string]int{}
	for _, r := range w.logLines("scheduler-", "sweep enqueued") {
		enqueued[fmt.Sprint(r["task_id"])]++
	}
	for _, r := range w.logLines("jobs-", "sweep finished") {
		finished[fmt.Sprint(r["task_id"])]++
	}
	dups := 0
	for _, n := range enqueued {
		dups += n - 1
	}
	for _, n := range finished {
		dups += max(0, n-1)
	}
	recorded := w.recordedAborts(ids)
	archived := w.archived()
	w.report(tally{
		Scenario: "8. two schedulers and two jobs replicas, one of each killed mid-period", Events: stale,
		Recorded: recorded, Lost: len(left), Duplicates: dups, DeadLettered: len(archived), Converged: took,
		Notes: fmt.Sprintf("%d periods enqueued (each once: %t), %d sweeps finished; converged = from the uploads' eligibility (1 min old); "+
			"duplicates = periods enqueued or swept twice; dead-lettered = asynq tasks archived", len(enqueued), dups == 0, len(finished)),
	})
	require.Empty(t, archived, "no asynq task archived")
	require.Equal(t, stale, recorded, "every stale upload's abort is recorded")
	// The per-period counts read the daemons' logs: a renamed log line must fail here, not count zero.
	require.NotEmpty(t, enqueued, `"sweep enqueued" lines in the schedulers' logs`)
	require.NotEmpty(t, finished, `"sweep finished" lines in the jobs replicas' logs`)
}
