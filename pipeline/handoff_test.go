package pipeline_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/intakehq/intake/internal/objstore"
	"github.com/intakehq/intake/internal/testkit"
	"github.com/intakehq/intake/pipeline"
	"github.com/intakehq/intake/worker/jobs"
	"github.com/intakehq/intake/worker/tasks"
)

// TestHashHandOff: with a hand-off (INTAKE_CONSUMER_HASH_HANDOFF, the daemon's default), an
// event whose hash finds every slot busy does not wait in its message: its inspection becomes an
// object:inspect task in Redis (asynq, the real one), the event is done with nothing recorded,
// and the task's inspection records the verdict. Before, the event waited for a slot on the
// consumer's worker, within its message's timeout: behind one owner's backlog of large hashes it
// ran out of time at every receive and was dead-lettered after five, and meanwhile it held a
// worker other tenants' events needed.
//
// The hand-off never passes a waiter or queues an object twice: the same event received again
// while its task has yet to run is done (that task will read the object); one whose object's
// inspection will not run (archived) or may have read an older version (running) waits for its
// turn; an inspection without an event (the task's own, reconcile's) never hands off; and when
// Redis refuses, the event waits for its turn as without a hand-off.
func TestHashHandOff(t *testing.T) {
	t.Parallel()
	b := setupProc(t, procOpts{})
	client, insp := asynqClients(t)

	gated := &gatedHashes{ObjectStore: objstore.NewObjects(b.s3), gate: make(chan struct{})}
	b.proc = b.newProcessor(t, procOpts{hashes: 1, objects: gated, handOff: handOffTo(t, b, client, insp)})
	pipeline.SetHashSlotMin(b.proc, 4) // these objects are small: each takes a slot

	// upload stores key with an intent declaring its digest (so that it is hashed).
	upload := func(key string) []byte {
		content := []byte("hash me " + key)
		sum := sha256.Sum256(content)
		b.put(t, key, "text/plain", content)
		b.intent(t, intentSpec{key: key, contentType: "text/plain", size: int64(len(content)), sha256: sum[:]})
		return sum[:]
	}
	waiting := func() float64 { return metricValue(t, b.reg, "intake_hashes_waiting", nil) }
	handedOff := func(result string) float64 {
		return metricValue(t, b.reg, "intake_hashes_handed_off_total", map[string]string{"result": result})
	}
	taskOf := func(key string) (*asynq.TaskInfo, error) {
		return insp.GetTaskInfo(tasks.QueueDefault, tasks.InspectTaskID(b.bucket, key))
	}
	// bounded is a failure bound, not a measure: an event that waits for a slot instead of
	// handing off never returns while the slot is held.
	bounded := func() (context.Context, context.CancelFunc) { return context.WithTimeout(b.ctx, 30*time.Second) }

	// The only slot is held by a hash under way.
	heldSum := upload("held.txt")
	errs := make(chan error, 4)
	go func() { errs <- b.process(t, b.created("held.txt", "0A", t0)) }()
	require.Eventually(t, func() bool { running, _ := gated.counts(); return running == 1 }, 30*time.Second, 5*time.Millisecond,
		"held.txt's hash holds the slot")

	// 1. An event that needs a hash now: handed off, done, nothing recorded, nothing hashed.
	bigSum := upload("big.txt")
	ctx, cancel := bounded()
	err := b.proc.Process(ctx, "m-big", b.created("big.txt", "0A", t0))
	cancel()
	require.NoError(t, err, "the event is done once its inspection is queued")
	require.Equal(t, 1.0, handedOff("queued"))
	require.Zero(t, waiting(), "nothing waits for a slot")
	require.Equal(t, []string{"held.txt"}, gated.startedKeys(), "big.txt was not hashed by the event")
	require.Zero(t, count(b, "big.txt"), "nothing recorded: the task records the verdict")
	info, err := taskOf("big.txt")
	require.NoError(t, err, "an object:inspect task of big.txt is queued")
	require.Equal(t, tasks.TypeInspectObject, info.Type)
	require.Equal(t, asynq.TaskStatePending, info.State)
	p, err := tasks.ParseInspectObject(info.Payload)
	require.NoError(t, err)
	require.Equal(t, b.bucket, p.Bucket)
	require.Equal(t, "big.txt", p.Key)
	require.Equal(t, &tasks.HandedOffEvent{Sequencer: padded("0A"), Time: t0}, p.Event, "the event's semantics go with it")

	// Another one: its task alone will record it (below).
	big2Sum := upload("big2.txt")
	ctx, cancel = bounded()
	require.NoError(t, b.proc.Process(ctx, "m-big2", b.created("big2.txt", "0C", t0.Add(time.Second))))
	cancel()
	require.Equal(t, 2.0, handedOff("queued"))

	// 2. The same event received again (a lost ack, a redelivery) while its task has yet to run:
	// that task will read the object when it runs; the message is done, nothing more queued.
	ctx, cancel = bounded()
	require.NoError(t, b.proc.Process(ctx, "m-big", b.created("big.txt", "0A", t0)), "done: its inspection is queued")
	cancel()
	require.Equal(t, 3.0, handedOff("queued"))
	require.Zero(t, waiting())
	pending, err := insp.ListPendingTasks(tasks.QueueDefault)
	require.NoError(t, err)
	require.Len(t, pending, 2, "big.txt's and big2.txt's, no second one")

	// Once the task holding the ID will not run (archived; or running, which may have read an older
	// version), the event is not handed off: it waits for its turn.
	require.NoError(t, insp.ArchiveTask(tasks.QueueDefault, tasks.InspectTaskID(b.bucket, "big.txt")))
	go func() { errs <- b.process(t, b.created("big.txt", "0B", t0)) }()
	require.Eventually(t, func() bool { return waiting() == 1 }, 30*time.Second, 5*time.Millisecond, "the event waits for a slot")
	require.Equal(t, 1.0, handedOff("duplicate"))

	// 3. An inspection without an event (the object:inspect task's own, reconcile's) never hands
	// off: it waits for its turn.
	otherSum := upload("other.txt")
	go func() { errs <- b.proc.InspectObject(b.ctx, b.bucket, "other.txt") }()
	require.Eventually(t, func() bool { return waiting() == 2 }, 30*time.Second, 5*time.Millisecond, "the inspection waits for a slot")
	_, err = taskOf("other.txt")
	require.ErrorIs(t, err, asynq.ErrTaskNotFound, "an inspection without an event queued nothing")
	require.Equal(t, 3.0, handedOff("queued"))

	// 4. Redis refusing: the event waits for its turn, as without a hand-off.
	down := asynq.NewClient(asynq.RedisClientOpt{Addr: "127.0.0.1:1", DialTimeout: time.Second})
	t.Cleanup(func() { _ = down.Close() })
	failing := b.newProcessor(t, procOpts{hashes: 1, objects: gated, handOff: handOffTo(t, b, down, nil)})
	pipeline.SetHashSlotMin(failing, 4)
	lateSum := upload("late.txt")
	heldLate := make(chan error, 1)
	go func() { heldLate <- failing.Process(b.ctx, "m-held-late", b.created("held.txt", "0C", t0)) }()
	require.Eventually(t, func() bool { running, _ := gated.counts(); return running == 2 }, 30*time.Second, 5*time.Millisecond,
		"the second processor's slot is held")
	go func() { errs <- failing.Process(b.ctx, "m-late", b.created("late.txt", "0A", t0)) }()
	require.Eventually(t, func() bool { return waiting() == 3 }, 30*time.Second, 5*time.Millisecond, "late.txt waits for a slot")
	require.Equal(t, 1.0, handedOff("failed"))
	_, err = taskOf("late.txt")
	require.ErrorIs(t, err, asynq.ErrTaskNotFound)

	// The slots free up: everything that waited is hashed and recorded.
	close(gated.gate)
	for range 4 {
		require.NoError(t, <-errs)
	}
	require.NoError(t, <-heldLate)
	require.Zero(t, waiting())

	require.Zero(t, count(b, "big2.txt"), "big2.txt is its task's to record")

	// The queued task runs as the jobs workers run it (HandleInspect on its payload from Redis):
	// it records big2.txt with its event's sequencer and time, as the event would have.
	info, err = taskOf("big2.txt")
	require.NoError(t, err)
	p, err = tasks.ParseInspectObject(info.Payload)
	require.NoError(t, err)
	require.Equal(t, &tasks.HandedOffEvent{Sequencer: padded("0C"), Time: t0.Add(time.Second)}, p.Event)
	ctx, cancel = bounded()
	defer cancel()
	require.NoError(t, (&jobs.Handlers{Inspector: b.proc}).HandleInspect(ctx, asynq.NewTask(info.Type, info.Payload)))
	row := b.row(t, "big2.txt")
	require.Equal(t, pipeline.StatusValid, row.Status)
	require.Equal(t, big2Sum, row.Sha256)
	require.Equal(t, padded("0C"), *row.Sequencer, "the event's sequencer, which orders later events of the object")
	require.True(t, t0.Add(time.Second).Equal(*row.EventTime))
	require.Equal(t, "completed", intentStatus(b, "big2.txt"), "the intent completed by the task")
	for key, sum := range map[string][]byte{"held.txt": heldSum, "big.txt": bigSum, "other.txt": otherSum, "late.txt": lateSum} {
		row := b.row(t, key)
		require.Equal(t, pipeline.StatusValid, row.Status, key)
		require.Equal(t, sum, row.Sha256, key)
	}
}

// count is the number of rows of key.
func count(b *procBundle, key string) int {
	var n int
	if err := b.st.Pool.QueryRow(b.ctx, "SELECT count(*) FROM objects WHERE key = $1", key).Scan(&n); err != nil {
		panic(err)
	}
	return n
}

// intentStatus is the status of key's intent.
func intentStatus(b *procBundle, key string) string {
	var s string
	if err := b.st.Pool.QueryRow(b.ctx, "SELECT status FROM uploads WHERE key = $1", key).Scan(&s); err != nil {
		panic(err)
	}
	return s
}

// TestHashHandOffTooLargeForTheMessage: an event whose hash would not end within what is left of
// its message's time (at the assumed read rate, HashRate; here 1 byte a second, so that a small
// object stands for one of many gigabytes) is handed off even with every slot free: in the
// message it would run out of time at every receive until dead-lettered (the startup warning's
// case); the object:inspect task has its own, longer, timeout. One that fits is hashed in the
// message, and an inspection without an event is never handed off.
func TestHashHandOffTooLargeForTheMessage(t *testing.T) {
	t.Parallel()
	b := setupProc(t, procOpts{})
	client, insp := asynqClients(t)
	b.proc = b.newProcessor(t, procOpts{hashes: 8, handOff: handOffTo(t, b, client, insp)})
	pipeline.SetHashRate(b.proc, 1)

	upload := func(key string) []byte {
		content := []byte("twenty-five bytes of it:" + key[:1]) // 25 bytes: 25 s at 1 B/s
		sum := sha256.Sum256(content)
		b.put(t, key, "text/plain", content)
		b.intent(t, intentSpec{key: key, contentType: "text/plain", size: int64(len(content)), sha256: sum[:]})
		return sum[:]
	}
	within := func(d time.Duration, f func(ctx context.Context) error) error {
		ctx, cancel := context.WithTimeout(b.ctx, d)
		defer cancel()
		return f(ctx)
	}

	// 25 s of hashing, 10 s left: handed off, nothing recorded.
	longSum := upload("long.txt")
	require.NoError(t, within(10*time.Second, func(ctx context.Context) error {
		return b.proc.Process(ctx, "m-long", b.created("long.txt", "0A", t0))
	}))
	require.Equal(t, 1.0, metricValue(t, b.reg, "intake_hashes_handed_off_total", map[string]string{"result": "queued"}))
	require.Zero(t, count(b, "long.txt"), "the task records the verdict")
	require.Greater(t, info0(t, insp, b.bucket, "long.txt").Timeout, tasks.InspectTimeout+40*time.Second,
		"the task's timeout leaves room for twice the hash's 25 s")
	info, err := insp.GetTaskInfo(tasks.QueueDefault, tasks.InspectTaskID(b.bucket, "long.txt"))
	require.NoError(t, err)
	require.Equal(t, tasks.TypeInspectObject, info.Type)

	// 25 s of hashing, 2 minutes left: hashed in the message.
	sum := upload("fits.txt")
	require.NoError(t, within(2*time.Minute, func(ctx context.Context) error {
		return b.proc.Process(ctx, "m-fits", b.created("fits.txt", "0A", t0))
	}))
	require.Equal(t, 1.0, metricValue(t, b.reg, "intake_hashes_handed_off_total", map[string]string{"result": "queued"}))
	row := b.row(t, "fits.txt")
	require.Equal(t, pipeline.StatusValid, row.Status)
	require.Equal(t, sum, row.Sha256)

	// The task's own inspection (no event) hashes whatever its time: it is the one handed to.
	require.NoError(t, within(10*time.Second, func(ctx context.Context) error {
		return b.proc.InspectObject(ctx, b.bucket, "long.txt")
	}))
	require.Equal(t, 1.0, metricValue(t, b.reg, "intake_hashes_handed_off_total", map[string]string{"result": "queued"}))
	row = b.row(t, "long.txt")
	require.Equal(t, pipeline.StatusValid, row.Status)
	require.Equal(t, longSum, row.Sha256)
}

// info0 is the object:inspect task of bucket/key.
func info0(t *testing.T, insp *asynq.Inspector, bucket, key string) *asynq.TaskInfo {
	t.Helper()
	info, err := insp.GetTaskInfo(tasks.QueueDefault, tasks.InspectTaskID(bucket, key))
	require.NoError(t, err)
	return info
}

// dyingDelete is the real object store whose first Delete deletes the object and then fails, as a
// worker killed between its action and its record would.
type dyingDelete struct {
	pipeline.ObjectStore
	once sync.Once
}

func (d *dyingDelete) Delete(ctx context.Context, obj pipeline.ObjectRef) error {
	err := d.ObjectStore.Delete(ctx, obj)
	d.once.Do(func() {
		if err == nil {
			err = errors.New("worker killed after the delete")
		}
	})
	return err
}

// TestHandedOffRetryAfterItsAction: a handed-off inspection keeps its event's semantics through
// its task's retries ("record, then act"). The upload's declared digest does not match, its rule
// deletes rejected objects, and the task's first run records the rejection, deletes the object and
// dies before recording the deletion. Its retry finds the object gone and records it deleted (the
// rule's own removal), not missing, as the event's own retry would. Run as an inspection without an
// event (what the hand-off queued before it carried its event), the retry recorded it missing.
func TestHandedOffRetryAfterItsAction(t *testing.T) {
	t.Parallel()
	policy := &pipeline.Policy{Rules: []pipeline.Rule{{Prefix: "", Action: pipeline.ActionDelete}}}
	b := setupProc(t, procOpts{policy: policy})
	client, insp := asynqClients(t)
	b.proc = b.newProcessor(t, procOpts{policy: policy, hashes: 8, handOff: handOffTo(t, b, client, insp)})
	pipeline.SetHashRate(b.proc, 1) // every hash outlasts the message: handed off

	content := []byte("what was uploaded")
	wrong := sha256.Sum256([]byte("what was declared"))
	b.put(t, "doc.txt", "text/plain", content)
	b.intent(t, intentSpec{key: "doc.txt", contentType: "text/plain", size: int64(len(content)), sha256: wrong[:]})
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	require.NoError(t, b.proc.Process(ctx, "m-doc", b.created("doc.txt", "0A", t0)))
	task := info0(t, insp, b.bucket, "doc.txt")

	// The jobs workers' processor, whose first delete dies after deleting.
	worker := b.newProcessor(t, procOpts{policy: policy, objects: &dyingDelete{ObjectStore: objstore.NewObjects(b.s3)}})
	h := &jobs.Handlers{Inspector: worker}
	run := func() error { return h.HandleInspect(ctx, asynq.NewTask(task.Type, task.Payload)) }
	require.ErrorContains(t, run(), "worker killed after the delete")
	require.Equal(t, pipeline.StatusRejected, b.row(t, "doc.txt").Status, "recorded, then acted")
	require.False(t, b.exists(t, "doc.txt"), "deleted before the worker died")

	require.NoError(t, run(), "the retry")
	row := b.row(t, "doc.txt")
	require.Equal(t, pipeline.StatusDeleted, row.Status, "the rule's removal, as the event's retry records it")
	require.Equal(t, padded("0A"), *row.Sequencer)
}

// padded is an event's sequencer as the Processor compares and records it (zero-padded to 64
// hexadecimal digits).
func padded(seq string) string { return seq + strings.Repeat("0", 64-len(seq)) }

// TestHandedOffOversizedEventReceivedAgain: an event whose hash outlasts its message, received
// again while its task has yet to run (SQS delivers at least once; a lost ack; a task deferred by
// the jobs share), is done at once: its task will read the object. Before, the second receive
// found the task ID taken and hashed in the message, ran out of its time, and five receives
// dead-lettered it (a review's case).
func TestHandedOffOversizedEventReceivedAgain(t *testing.T) {
	t.Parallel()
	b := setupProc(t, procOpts{})
	client, insp := asynqClients(t)
	gated := &gatedHashes{ObjectStore: objstore.NewObjects(b.s3), gate: make(chan struct{})} // a hash longer than the message
	b.proc = b.newProcessor(t, procOpts{hashes: 8, objects: gated, handOff: handOffTo(t, b, client, insp)})
	pipeline.SetHashRate(b.proc, 1)
	content := []byte("twenty-five bytes of it:x")
	sum := sha256.Sum256(content)
	b.put(t, "huge.bin", "text/plain", content)
	b.intent(t, intentSpec{key: "huge.bin", contentType: "text/plain", size: int64(len(content)), sha256: sum[:]})
	msg := b.created("huge.bin", "0A", t0)
	receive := func() error {
		ctx, cancel := context.WithTimeout(b.ctx, 3*time.Second)
		defer cancel()
		return b.proc.Process(ctx, "m-huge", msg)
	}
	require.NoError(t, receive(), "first receive: handed off")
	require.NoError(t, receive(), "received again, its task still queued: done")
	require.Empty(t, gated.startedKeys(), "never hashed in the message")
	require.Equal(t, 2.0, metricValue(t, b.reg, "intake_hashes_handed_off_total", map[string]string{"result": "queued"}))
	pending, err := insp.ListPendingTasks(tasks.QueueDefault)
	require.NoError(t, err)
	require.Len(t, pending, 1)
}

// TestHandedOffEventDistrusted: what a handed-off inspection reads back from Redis is checked as
// an event is: a sequencer that is not one (another release's, an edited task) is ignored and
// counted, a time in the future is clamped to now. Before, both went straight into the row, where a
// far-future event time is kept forever and a malformed sequencer breaks the key's ordering.
func TestHandedOffEventDistrusted(t *testing.T) {
	t.Parallel()
	b := setupProc(t, procOpts{})
	content := []byte("plain text")
	b.put(t, "forged.txt", "text/plain", content)
	future := time.Now().Add(365 * 24 * time.Hour)
	require.NoError(t, b.proc.InspectHandedOff(b.ctx, pipeline.HandedOff{
		Bucket: b.bucket, Key: "forged.txt", Sequencer: "not-a-sequencer", EventTime: future,
	}))
	row := b.row(t, "forged.txt")
	require.Equal(t, pipeline.StatusValid, row.Status)
	require.Nil(t, row.Sequencer, "an implausible sequencer is not recorded")
	require.NotNil(t, row.EventTime)
	require.True(t, row.EventTime.Before(time.Now().Add(time.Minute)), "clamped: %s", row.EventTime)
	distrusted := func(reason string) float64 {
		return metricValue(t, b.reg, "intake_events_distrusted_total", map[string]string{"reason": reason})
	}
	require.Equal(t, 1.0, distrusted(pipeline.DistrustSequencer))
	require.Equal(t, 1.0, distrusted(pipeline.DistrustEventTime))
}

// handOffTo returns the daemon's durable hand-off through client and states, recording in b's
// PostgreSQL (with no check of the jobs servers: these tests run the tasks themselves).
func handOffTo(t *testing.T, b *procBundle, client tasks.Enqueuer, states tasks.TaskStates) pipeline.HashHandOff {
	t.Helper()
	h, err := jobs.NewHandOff(jobs.HandOffConfig{Tasks: client, TaskStates: states, Store: jobs.NewHandedOffStore(b.st.Q)})
	require.NoError(t, err)
	return h
}

// asynqClients returns a client and an inspector of a Redis database of the test's own.
func asynqClients(t *testing.T) (*asynq.Client, *asynq.Inspector) {
	t.Helper()
	_, client, insp := asynqOn(t)
	return client, insp
}

// asynqOn reserves a Redis database for the test and returns it, with a client and an inspector
// of it (closed when the test ends).
func asynqOn(t *testing.T) (asynq.RedisClientOpt, *asynq.Client, *asynq.Inspector) {
	t.Helper()
	redisOpt := asynq.RedisClientOpt{Addr: testkit.RedisAddr(), DB: testkit.RedisDB(t)}
	client := asynq.NewClient(redisOpt)
	t.Cleanup(func() { _ = client.Close() })
	insp := asynq.NewInspector(redisOpt)
	t.Cleanup(func() { _ = insp.Close() })
	return redisOpt, client, insp
}

// jobsRig is what the daemon's jobs role works with in a test: a Redis database of the test's own
// with asynq's client and inspector, and the hand-off store of b's schema.
type jobsRig struct {
	redis  asynq.RedisClientOpt
	client *asynq.Client
	insp   *asynq.Inspector
	store  jobs.HandedOffQueries
}

func newJobsRig(t *testing.T, b *procBundle) jobsRig {
	t.Helper()
	redisOpt, client, insp := asynqOn(t)
	return jobsRig{redis: redisOpt, client: client, insp: insp, store: jobs.NewHandedOffStore(b.st.Q)}
}

// runJobs starts a jobs server of concurrency workers on the rig's Redis, running b.proc's
// inspections and settling their hand-off rows as the daemon's does. It stops when the test ends,
// or when the returned function is called.
func (r jobsRig) runJobs(t *testing.T, b *procBundle, concurrency int) (stop func()) {
	t.Helper()
	metrics, err := jobs.NewMetrics(prometheus.NewRegistry())
	require.NoError(t, err)
	srv, err := jobs.NewServer(jobs.ServerConfig{Redis: r.redis, Concurrency: concurrency},
		jobs.NewMux(&jobs.Handlers{Inspector: b.proc, HandedOff: r.store}, metrics, nil))
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(b.ctx)
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			require.NoError(t, <-done)
		})
	}
	t.Cleanup(stop)
	return stop
}

// maintain runs the maintenance task once at clock, with its hand-off step as the daemon
// configures it (intake's queues registered first) and no intent expiring, and returns its report.
func (r jobsRig) maintain(t *testing.T, b *procBundle, clock time.Time) jobs.MaintenanceReport {
	t.Helper()
	m, err := jobs.NewMaintenance(jobs.MaintenanceConfig{
		Store: jobs.NewMaintenanceStore(b.st.Q), Now: func() time.Time { return clock },
		HandedOff: r.store, Tasks: r.client, TaskStates: r.insp,
		RegisterQueues: func(ctx context.Context) error {
			return tasks.RegisterQueues(ctx, r.redis, tasks.QueueCritical, tasks.QueueDefault, tasks.QueueLow)
		},
	})
	require.NoError(t, err)
	rep, err := m.Run(b.ctx, jobs.MaintenancePayload{ExpiryGrace: tasks.Duration(24 * time.Hour)})
	require.NoError(t, err)
	return rep
}

// owedRows counts b's hand-off rows.
func owedRows(t *testing.T, b *procBundle) int {
	t.Helper()
	var n int
	require.NoError(t, b.st.Pool.QueryRow(b.ctx, "SELECT count(*) FROM handed_off").Scan(&n))
	return n
}

// TestHandedOffSurvivesRedisLosingIt: the hand-off is durable. The event's message is deleted
// once its inspection is queued, but the hand-off was recorded in PostgreSQL first; when Redis
// loses the task (here FLUSHDB: a restart without persistence, a failover to a replica that had
// not received it), the maintenance task queues it again past its time, and its run records the
// verdict, with the event's sequencer, completes the intent, and settles the row. Before, nothing
// of the upload was left anywhere until a reconcile found its object without a row. Counted at the
// end: uploaded 1, recorded 1, lost 0, rows owed 0.
func TestHandedOffSurvivesRedisLosingIt(t *testing.T) {
	t.Parallel()
	b := setupProc(t, procOpts{})
	r := newJobsRig(t, b)
	gated := &gatedHashes{ObjectStore: objstore.NewObjects(b.s3), gate: make(chan struct{})}
	b.proc = b.newProcessor(t, procOpts{hashes: 1, objects: gated, handOff: handOffTo(t, b, r.client, r.insp)})
	pipeline.SetHashSlotMin(b.proc, 4)
	owed := func() int { return owedRows(t, b) }

	// The only slot is held; big.txt's event is handed off and its message done.
	content := []byte("hash me, Redis will forget")
	sum := sha256.Sum256(content)
	heldContent := []byte("held: takes the slot")
	heldSum := sha256.Sum256(heldContent)
	b.put(t, "held.txt", "text/plain", heldContent)
	b.intent(t, intentSpec{key: "held.txt", contentType: "text/plain", size: int64(len(heldContent)), sha256: heldSum[:]})
	b.put(t, "big.txt", "text/plain", content)
	id := b.intent(t, intentSpec{key: "big.txt", contentType: "text/plain", size: int64(len(content)), sha256: sum[:]})
	held := make(chan error, 1)
	go func() { held <- b.process(t, b.created("held.txt", "0A", t0)) }()
	require.Eventually(t, func() bool { running, _ := gated.counts(); return running == 1 }, 30*time.Second, 5*time.Millisecond)
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	require.NoError(t, b.proc.Process(ctx, "m-big", b.created("big.txt", "0D", t0)))
	require.Zero(t, count(b, "big.txt"))
	require.Equal(t, 1, owed(), "the hand-off is recorded in PostgreSQL before the message is done")
	close(gated.gate)
	require.NoError(t, <-held)

	// Redis loses everything.
	flush := redis.NewClient(&redis.Options{Addr: r.redis.Addr, DB: r.redis.DB})
	t.Cleanup(func() { _ = flush.Close() })
	require.NoError(t, flush.FlushDB(b.ctx).Err())
	_, err := r.insp.GetTaskInfo(tasks.QueueDefault, tasks.InspectTaskID(b.bucket, "big.txt"))
	require.Error(t, err, "the task is gone")

	// The maintenance task, past the hand-off's time, registers intake's queues again (FLUSHDB
	// removed them, and asynq's clients remember having registered them) and queues it again.
	rep := r.maintain(t, b, time.Now().Add(tasks.HandedOffTimeout(time.Second)+time.Hour))
	require.Equal(t, 1, rep.HandedOffRedriven)
	_, err = r.insp.GetTaskInfo(tasks.QueueDefault, tasks.InspectTaskID(b.bucket, "big.txt"))
	require.NoError(t, err, "asynq's Inspector finds the task queued again")

	// A jobs server runs it: it records the verdict and settles the row.
	stop := r.runJobs(t, b, 1)
	require.Eventually(t, func() bool { return owed() == 0 }, 30*time.Second, 20*time.Millisecond, "the task ran and settled its row")
	stop()
	row := b.row(t, "big.txt")
	require.Equal(t, pipeline.StatusValid, row.Status)
	require.Equal(t, sum[:], row.Sha256)
	require.Equal(t, padded("0D"), *row.Sequencer, "the event's sequencer")
	require.Equal(t, "completed", b.uploadStatus(t, id))
	require.Zero(t, owed(), "settled by its task")
	require.Equal(t, 1, count(b, "big.txt"), "recorded once")
}

// TestHandOffNotQueuedSettledByItsMessage: a hand-off recorded in PostgreSQL whose task is then
// not queued (Redis refusing) leaves the event to its message, whose own record of the object
// settles the row: the row's bound is the consumer's lookup before the inspection, which the
// message's record carries. Before (a review's case), the row's bound was the time of the
// hand-off, later than that lookup: the row stayed, held the intent from expiring, and was queued
// again 25 minutes later, a second read and hash of a large object.
func TestHandOffNotQueuedSettledByItsMessage(t *testing.T) {
	t.Parallel()
	b := setupProc(t, procOpts{})
	down := asynq.NewClient(asynq.RedisClientOpt{Addr: "127.0.0.1:1", DialTimeout: time.Second})
	t.Cleanup(func() { _ = down.Close() })
	b.proc = b.newProcessor(t, procOpts{hashes: 8, handOff: handOffTo(t, b, down, nil)})
	pipeline.SetHashRate(b.proc, 1) // every hash outlasts its message: handed off, if it can be
	content := []byte("twenty-five bytes of it:x")
	sum := sha256.Sum256(content)
	b.put(t, "f.txt", "text/plain", content)
	b.intent(t, intentSpec{key: "f.txt", contentType: "text/plain", size: int64(len(content)), sha256: sum[:]})
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second) // 25 bytes at 1 byte/s outlast it
	defer cancel()
	require.NoError(t, b.proc.Process(ctx, "m-f", b.created("f.txt", "0A", t0)))
	require.Equal(t, 1.0, metricValue(t, b.reg, "intake_hashes_handed_off_total", map[string]string{"result": "failed"}))
	require.Equal(t, pipeline.StatusValid, b.row(t, "f.txt").Status, "inspected in its message")
	require.Equal(t, 1, owedRows(t, b), "the hand-off was recorded before its task failed to queue")
	settled, err := jobs.NewHandedOffStore(b.st.Q).Settle(b.ctx, b.bucket, "f.txt")
	require.NoError(t, err)
	require.True(t, settled, "the message's record covers the event")
}

// TestHandedOffOversizedEventReceivedWhileItsTaskRuns: an event whose hash outlasts its message,
// received again while its task is running (SQS delivers at least once; a lost ack), is done at
// once, and so is a newer event of the object: the hand-off row makes sure an inspection covers
// them. The running task looked at the object after the first event was received (it covers its
// second receipt too) but before the newer one's: it leaves the row, the maintenance task queues
// the inspection again once that task has ended, and its run records the object with the newer
// event and settles the row.
// Before, the second receive found the task running and hashed in the message, ran out of its
// time, and five receives dead-lettered it (a gap the last note left open).
func TestHandedOffOversizedEventReceivedWhileItsTaskRuns(t *testing.T) {
	t.Parallel()
	b := setupProc(t, procOpts{})
	r := newJobsRig(t, b)
	gated := &gatedHashes{ObjectStore: objstore.NewObjects(b.s3), gate: make(chan struct{})}
	b.proc = b.newProcessor(t, procOpts{hashes: 8, objects: gated, handOff: handOffTo(t, b, r.client, r.insp)})
	pipeline.SetHashRate(b.proc, 1)
	owed := func() int { return owedRows(t, b) }
	content := []byte("twenty-five bytes of it:x")
	sum := sha256.Sum256(content)
	b.put(t, "huge.bin", "text/plain", content)
	id := b.intent(t, intentSpec{key: "huge.bin", contentType: "text/plain", size: int64(len(content)), sha256: sum[:]})
	msg := b.created("huge.bin", "0A", t0)
	receive := func() error {
		ctx, cancel := context.WithTimeout(b.ctx, 3*time.Second)
		defer cancel()
		return b.proc.Process(ctx, "m-huge", msg)
	}
	require.NoError(t, receive(), "first receive: handed off")

	// A jobs server runs the task; its hash is held, so the task stays running.
	r.runJobs(t, b, 2)
	require.Eventually(t, func() bool { running, _ := gated.counts(); return running == 1 }, 30*time.Second, 5*time.Millisecond)
	info, err := r.insp.GetTaskInfo(tasks.QueueDefault, tasks.InspectTaskID(b.bucket, "huge.bin"))
	require.NoError(t, err)
	require.Equal(t, asynq.TaskStateActive, info.State)

	// Received again: done at once, not hashed in the message. So is the event of the object
	// written again (the same bytes) meanwhile, which the running task may not have seen.
	require.NoError(t, receive(), "received again while its task runs: done")
	b.put(t, "huge.bin", "text/plain", content)
	ctx, cancel := context.WithTimeout(b.ctx, 3*time.Second)
	defer cancel()
	require.NoError(t, b.proc.Process(ctx, "m-huge-2", b.created("huge.bin", "0B", t0.Add(time.Second))), "a newer event while its task runs: done")
	require.Equal(t, []string{"huge.bin"}, gated.startedKeys(), "hashed by the task only")
	require.Equal(t, 3.0, metricValue(t, b.reg, "intake_hashes_handed_off_total", map[string]string{"result": "queued"}))

	// The task ends: it recorded the object, but looked before the newer event was received: the
	// row stays.
	close(gated.gate)
	require.Eventually(t, func() bool { return count(b, "huge.bin") == 1 }, 30*time.Second, 10*time.Millisecond)
	require.Eventually(t, func() bool {
		_, err := r.insp.GetTaskInfo(tasks.QueueDefault, tasks.InspectTaskID(b.bucket, "huge.bin"))
		return errors.Is(err, asynq.ErrTaskNotFound)
	}, 30*time.Second, 10*time.Millisecond, "the task has ended")
	require.Equal(t, 1, owed(), "the newer event's row is not covered by the task's look")

	// The maintenance task, past the row's time, queues the inspection again; its run settles it.
	rep := r.maintain(t, b, time.Now().Add(tasks.HandedOffTimeout(time.Minute)+time.Hour))
	require.Equal(t, 1, rep.HandedOffRedriven)
	require.Eventually(t, func() bool { return owed() == 0 }, 30*time.Second, 20*time.Millisecond, "settled by the task queued again")
	row := b.row(t, "huge.bin")
	require.Equal(t, pipeline.StatusValid, row.Status)
	require.Equal(t, sum[:], row.Sha256)
	require.Equal(t, padded("0B"), *row.Sequencer, "with the newer event")
	require.Equal(t, "completed", b.uploadStatus(t, id))
	require.Equal(t, 1, count(b, "huge.bin"), "recorded once")
}
