package jobs_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/hibiken/asynq"
	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/intakehq/intake/internal/store/dbq"
	"github.com/intakehq/intake/internal/testkit"
	"github.com/intakehq/intake/pipeline"
	"github.com/intakehq/intake/worker/jobs"
	"github.com/intakehq/intake/worker/tasks"
)

// handOffRow is what a test reads of a hand-off row; ok is false when there is none.
type handOffRow struct {
	ok       bool
	redrives int
	// dueIn is how long until the maintenance task looks at it (redrive_at - now(), on
	// PostgreSQL's clock).
	dueIn time.Duration
}

func handOffRowOf(t *testing.T, b *testBundle, key string) handOffRow {
	t.Helper()
	var r handOffRow
	var secs float64
	err := b.st.Pool.QueryRow(b.ctx, "SELECT redrives, extract(epoch FROM redrive_at - now())::float8 FROM handed_off WHERE bucket = $1 AND key = $2",
		b.bucket, key).Scan(&r.redrives, &secs)
	if err == nil {
		r.ok, r.dueIn = true, time.Duration(secs*float64(time.Second))
		return r
	}
	require.ErrorIs(t, err, pgx.ErrNoRows)
	return r
}

// asynqOf returns an asynq client and inspector of the bundle's Redis database (closed when the
// test ends), and the hand-off store of its schema.
func asynqOf(t *testing.T, b *testBundle) (*asynq.Client, *asynq.Inspector, jobs.HandedOffQueries) {
	t.Helper()
	client := asynq.NewClient(b.redis)
	t.Cleanup(func() { _ = client.Close() })
	insp := asynq.NewInspector(b.redis)
	t.Cleanup(func() { _ = insp.Close() })
	return client, insp, jobs.NewHandedOffStore(b.st.Q)
}

// handOffOf returns the daemon's hand-off over the bundle (tasks, task states and store of its
// own; no check of the jobs servers), after with, when set, has changed its configuration.
func handOffOf(t *testing.T, b *testBundle, with func(*jobs.HandOffConfig)) *jobs.HandOff {
	t.Helper()
	client, insp, st := asynqOf(t, b)
	cfg := jobs.HandOffConfig{Tasks: client, TaskStates: insp, Store: st}
	if with != nil {
		with(&cfg)
	}
	ho, err := jobs.NewHandOff(cfg)
	require.NoError(t, err)
	return ho
}

// TestHandOffOutlivesRedisAndEnds: an event's inspection handed off by the consumer is recorded in
// PostgreSQL before its task is queued, and so outlives a Redis that loses the task (no AOF, a
// failover, an eviction): the maintenance task queues it again, with its event, once it is past
// its time (the task's timeout plus 10 minutes), and the object's intent does not expire
// meanwhile. Before, the message was deleted once the task was in Redis, and a task Redis lost
// left nothing of the upload anywhere (its intent then expired).
//
// The loop ends when "done" never comes: a task still in Redis (to run, retrying) is waited for,
// not counted; a task that failed for good is queued again at most five times, with a growing
// delay, then the row is given up (an error logged), and the intent is free to expire.
func TestHandOffOutlivesRedisAndEnds(t *testing.T) {
	t.Parallel()
	b := setup(t)
	client, insp, _ := asynqOf(t, b)
	ho := handOffOf(t, b, nil)

	now := time.Now().UTC()
	const key = "uploads/alice/lost.bin"
	// The upload's intent, past its deadline and the expiry grace (its object landed just in time;
	// the event comes late): only the hand-off row keeps it pending.
	id := uuid.New()
	_, err := testkit.CreateUpload(b.ctx, b.st.Pool, dbq.Upload{
		ID: id, Owner: "alice", Bucket: b.bucket, Key: key, Method: "put", Filename: "lost.bin",
		ContentType: "application/octet-stream", Size: 1, ExpiresAt: now.Add(-3 * time.Hour),
	})
	require.NoError(t, err)
	status := func() string {
		u, err := testkit.GetUpload(b.ctx, b.st.Pool, id)
		require.NoError(t, err)
		return u.Status
	}

	t0 := time.Date(2026, 12, 6, 7, 0, 0, 0, time.UTC)
	ev := pipeline.HandedOff{Bucket: b.bucket, Key: key, Sequencer: "0A", EventTime: t0, Removal: true, HashTime: 2 * time.Second}
	queued, err := ho.InspectLater(b.ctx, ev)
	require.NoError(t, err)
	require.True(t, queued)
	require.True(t, handOffRowOf(t, b, key).ok, "the hand-off is recorded in PostgreSQL")
	taskID := tasks.InspectTaskID(b.bucket, key)
	_, err = insp.GetTaskInfo(tasks.QueueDefault, taskID)
	require.NoError(t, err, "and queued in Redis")

	// Redis loses the task.
	require.NoError(t, insp.DeleteTask(tasks.QueueDefault, taskID))

	clock := now
	m, reg := newMaintenanceWith(t, b, &clock, client, insp)
	payload := jobs.MaintenancePayload{ExpiryGrace: tasks.Duration(time.Hour)}
	redrives := func(result string) float64 {
		return testkit.Metric(t, reg, "intake_hashes_handed_off_redrives_total", "result", result)
	}
	run := func() jobs.MaintenanceReport {
		t.Helper()
		rep, err := m.Run(b.ctx, payload)
		require.NoError(t, err)
		return rep
	}

	// Before its time, nothing is queued, and the intent stays pending.
	rep := run()
	require.Zero(t, rep.HandedOffRedriven)
	require.Zero(t, rep.Expired, "the intent of a handed-off object does not expire")
	require.Equal(t, "pending", status())
	_, err = insp.GetTaskInfo(tasks.QueueDefault, taskID)
	require.ErrorIs(t, err, asynq.ErrTaskNotFound)

	// Past its time (the task's timeout, 15 min + 2 × 2 s, plus 10 min): queued again, with its
	// event.
	clock = now.Add(tasks.HandedOffTimeout(2*time.Second) + 10*time.Minute + time.Minute)
	rep = run()
	require.Equal(t, 1, rep.HandedOffRedriven)
	require.Equal(t, 1.0, redrives("queued"))
	info, err := insp.GetTaskInfo(tasks.QueueDefault, taskID)
	require.NoError(t, err, "the inspection is back in Redis")
	p, err := tasks.ParseInspectObject(info.Payload)
	require.NoError(t, err)
	require.Equal(t, tasks.InspectObject{Bucket: b.bucket, Key: key,
		Event: &tasks.HandedOffEvent{Sequencer: "0A", Time: t0, Removal: true}}, p, "with the event's semantics")
	require.Equal(t, tasks.HandedOffTimeout(2*time.Second), info.Timeout)
	require.Equal(t, 1, handOffRowOf(t, b, key).redrives)
	require.Equal(t, "pending", status())

	// Its task still in Redis (to run, or retrying): waited for, whatever the time, not counted.
	for range 3 {
		clock = clock.Add(24 * time.Hour)
		rep = run()
		require.Zero(t, rep.HandedOffRedriven)
	}
	require.Equal(t, 3.0, redrives("waiting"))
	require.Equal(t, 1, handOffRowOf(t, b, key).redrives)

	// Its task fails for good (archived) every time: queued again up to five times in all, each
	// looked at later than the one before (the task's timeout plus 10 minutes doubled per
	// redrive), then given up.
	for n := 2; n <= 5; n++ {
		require.NoError(t, insp.ArchiveTask(tasks.QueueDefault, taskID))
		clock = clock.Add(24 * time.Hour)
		rep = run()
		require.Equal(t, 1, rep.HandedOffRedriven, "redrive %d", n)
		row := handOffRowOf(t, b, key)
		require.Equal(t, n, row.redrives)
		want := tasks.HandedOffTimeout(2*time.Second) + 10*time.Minute<<n
		require.InDelta(t, want.Seconds(), row.dueIn.Seconds(), 60, "redrive %d looked at %s later", n, row.dueIn)
	}
	require.Equal(t, 5.0, redrives("queued"))
	// The fifth is still to run: waited for, not given up.
	clock = clock.Add(24 * time.Hour)
	rep = run()
	require.Zero(t, rep.HandedOffGivenUp, "a hand-off whose task is still in Redis is not given up")
	require.True(t, handOffRowOf(t, b, key).ok)
	require.NoError(t, insp.ArchiveTask(tasks.QueueDefault, taskID))
	clock = clock.Add(24 * time.Hour)
	rep = run()
	require.Equal(t, 1, rep.HandedOffGivenUp)
	require.Equal(t, 1.0, redrives("given_up"))
	require.False(t, handOffRowOf(t, b, key).ok, "the row is given up")
	require.Contains(t, b.logBuf.String(), "handed-off inspection given up")
	info, err = insp.GetTaskInfo(tasks.QueueDefault, taskID)
	require.NoError(t, err)
	require.Equal(t, asynq.TaskStateArchived, info.State, "nothing queued a sixth time")

	// The loop has ended: later runs find nothing, and the intent is free to expire.
	clock = clock.Add(24 * time.Hour)
	rep = run()
	require.Zero(t, rep.HandedOffRedriven+rep.HandedOffGivenUp)
	require.Equal(t, 1, rep.Expired)
	require.Equal(t, "expired", status())
}

// newMaintenanceWith returns a Maintenance with the hand-off step over the bundle's schema, on
// *clock.
func newMaintenanceWith(t *testing.T, b *testBundle, clock *time.Time, client tasks.Enqueuer, states tasks.TaskStates) (*jobs.Maintenance, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	m, err := jobs.NewMaintenance(jobs.MaintenanceConfig{
		Store: jobs.NewMaintenanceStore(b.st.Q), Registerer: reg, Log: b.log,
		Now:       func() time.Time { return *clock },
		HandedOff: jobs.NewHandedOffStore(b.st.Q), Tasks: client, TaskStates: states,
	})
	require.NoError(t, err)
	return m, reg
}

// TestHandOffRowSettledByALaterObservation: a hand-off row is deleted once its object's row
// records an observation made after it (S3 read after the event, by its task or by anything
// else: the event processed in its message when the hand-off queued nothing, a reconcile), by the
// task (Settle) or by the maintenance task (rows due); an observation made before it settles
// nothing, and the row is queued again instead.
func TestHandOffRowSettledByALaterObservation(t *testing.T) {
	t.Parallel()
	b := setup(t)
	client, insp, st := asynqOf(t, b)
	ho := handOffOf(t, b, nil)

	// observed records key's object as observed at PostgreSQL's now() plus offset.
	observed := func(key string, offset time.Duration) {
		_, err := b.st.Pool.Exec(b.ctx, `INSERT INTO objects (bucket, key, status, observed_at)
			VALUES ($1, $2, 'valid', now() + make_interval(secs => $3))
			ON CONFLICT (bucket, key) DO UPDATE SET observed_at = excluded.observed_at`, b.bucket, key, offset.Seconds())
		require.NoError(t, err)
	}
	handOff := func(key string) {
		queued, err := ho.InspectLater(b.ctx, pipeline.HandedOff{Bucket: b.bucket, Key: key, Sequencer: "0B", EventTime: time.Now()})
		require.NoError(t, err)
		require.True(t, queued)
		require.NoError(t, insp.DeleteTask(tasks.QueueDefault, tasks.InspectTaskID(b.bucket, key)))
	}

	// The task's own settle: only after a later observation.
	handOff("a.bin")
	settled, err := st.Settle(b.ctx, b.bucket, "a.bin")
	require.NoError(t, err)
	require.False(t, settled, "no observation of the object yet")
	observed("a.bin", -time.Minute)
	settled, err = st.Settle(b.ctx, b.bucket, "a.bin")
	require.NoError(t, err)
	require.False(t, settled, "an observation made before the hand-off proves nothing of its event")
	observed("a.bin", 0)
	settled, err = st.Settle(b.ctx, b.bucket, "a.bin")
	require.NoError(t, err)
	require.True(t, settled)
	require.False(t, handOffRowOf(t, b, "a.bin").ok)

	// The maintenance task's, for the rows due: one observed since (settled, nothing queued), one
	// observed before only (queued again).
	handOff("later.bin")
	handOff("before.bin")
	observed("later.bin", time.Second)
	observed("before.bin", -time.Hour)
	clock := time.Now().Add(2 * time.Hour)
	m, reg := newMaintenanceWith(t, b, &clock, client, insp)
	rep, err := m.Run(b.ctx, jobs.MaintenancePayload{})
	require.NoError(t, err)
	require.Equal(t, int64(1), rep.HandedOffSettled)
	require.Equal(t, 1, rep.HandedOffRedriven)
	require.Equal(t, 1.0, testkit.Metric(t, reg, "intake_hashes_handed_off_redrives_total", "result", "settled"))
	require.False(t, handOffRowOf(t, b, "later.bin").ok)
	_, err = insp.GetTaskInfo(tasks.QueueDefault, tasks.InspectTaskID(b.bucket, "later.bin"))
	require.ErrorIs(t, err, asynq.ErrTaskNotFound, "nothing queued for the settled one")
	require.Equal(t, 1, handOffRowOf(t, b, "before.bin").redrives)
	_, err = insp.GetTaskInfo(tasks.QueueDefault, tasks.InspectTaskID(b.bucket, "before.bin"))
	require.NoError(t, err, "the other is queued again")
}

// TestHandOffNeedsAJobsServer: with Servers set (the daemon's), the consumer hands off only while
// an active jobs server works the inspections' queue. With none (a consumer deployed without a
// jobs process), nothing is recorded or queued and InspectLater fails: the event is inspected in
// its message, where it would otherwise wait for a task no one runs. A reading that found one is
// trusted for 10 s, one that found none for a second; a new reading serves the hand-offs after it.
func TestHandOffNeedsAJobsServer(t *testing.T) {
	t.Parallel()
	b := setup(t)
	_, insp, _ := asynqOf(t, b)
	clock := time.Now()
	var readings atomic.Int64
	servers := serversFunc(func() ([]*asynq.ServerInfo, error) { readings.Add(1); return insp.Servers() })
	ho := handOffOf(t, b, func(c *jobs.HandOffConfig) { c.Servers, c.Now = servers, func() time.Time { return clock } })
	ev := pipeline.HandedOff{Bucket: b.bucket, Key: "k.bin", Sequencer: "0A", EventTime: time.Now()}

	noneQueued := func() {
		t.Helper()
		queued, err := ho.InspectLater(b.ctx, ev)
		require.Error(t, err)
		require.False(t, queued)
		require.False(t, handOffRowOf(t, b, "k.bin").ok, "nothing recorded")
		_, err = insp.GetTaskInfo(tasks.QueueDefault, tasks.InspectTaskID(b.bucket, "k.bin"))
		require.Error(t, err, "nothing queued")
	}
	noneQueued()

	// A server of other queues only does not count.
	startServer := func(queues map[string]int) {
		t.Helper()
		srv, err := jobs.NewServer(jobs.ServerConfig{Redis: b.redis, Concurrency: 1, Queues: queues, Log: b.log}, asynq.NewServeMux())
		require.NoError(t, err)
		ctx, cancel := context.WithCancel(b.ctx)
		done := make(chan error, 1)
		go func() { done <- srv.Run(ctx) }()
		t.Cleanup(func() { cancel(); require.NoError(t, <-done) })
	}
	startServer(map[string]int{tasks.QueueLow: 1})
	require.Eventually(t, func() bool { s, err := insp.Servers(); return err == nil && len(s) == 1 }, 20*time.Second, 20*time.Millisecond)
	// A hand-off whose reading is stale starts a new one and uses the last answer meanwhile; a
	// reading starts only once the one before has been taken in. So when the third has started,
	// the answer of the second (the server above listed) has served a hand-off: none.
	start := readings.Load()
	for readings.Load() < start+2 {
		clock = clock.Add(2 * time.Second)
		noneQueued()
	}

	// The jobs server: the hand-off works once a new reading has found it.
	startServer(tasks.Priorities())
	require.Eventually(t, func() bool { s, err := insp.Servers(); return err == nil && len(s) == 2 }, 20*time.Second, 20*time.Millisecond)
	clock = clock.Add(2 * time.Second)
	require.Eventually(t, func() bool {
		queued, err := ho.InspectLater(b.ctx, ev)
		return err == nil && queued
	}, 20*time.Second, 10*time.Millisecond)
	require.True(t, handOffRowOf(t, b, "k.bin").ok)

	// That reading serves for 10 s: no other is made meanwhile; after, one more.
	read := readings.Load()
	for range 5 {
		clock = clock.Add(time.Second)
		queued, err := ho.InspectLater(b.ctx, ev)
		require.NoError(t, err)
		require.True(t, queued)
	}
	require.Equal(t, read, readings.Load(), "no reading within 10 s of one that found a server")
	clock = clock.Add(6 * time.Second)
	_, err := ho.InspectLater(b.ctx, ev)
	require.NoError(t, err)
	require.Eventually(t, func() bool { return readings.Load() == read+1 }, 20*time.Second, 10*time.Millisecond)
}

// TestHandOffAfterRedisLostItsQueues: after Redis lost its data, asynq's long-lived clients do not
// register their queue again (asynq remembers having done it), and asynq's Inspector answers
// "queue not found" for every task queued since. Such an answer is not "no task": a row whose task
// is still to run is not given up (a.bin, at its fifth redrive), and one whose task failed for
// good is counted failed and looked at again, until the maintenance task registers intake's
// queues (tasks.RegisterQueues, at each run in the daemon): then the first waits for its task, and
// the second is queued again. Before (a review's case), a.bin was given up while its task was
// pending, and z.bin was counted failed at every run, never queued again nor given up.
func TestHandOffAfterRedisLostItsQueues(t *testing.T) {
	t.Parallel()
	b := setup(t)
	client, insp, _ := asynqOf(t, b)
	rc := redis.NewClient(&redis.Options{Addr: b.redis.Addr, DB: b.redis.DB})
	t.Cleanup(func() { _ = rc.Close() })
	ho := handOffOf(t, b, nil)
	for _, k := range []string{"a.bin", "z.bin"} {
		queued, err := ho.InspectLater(b.ctx, pipeline.HandedOff{Bucket: b.bucket, Key: k, Sequencer: "0A", EventTime: time.Now()})
		require.NoError(t, err)
		require.True(t, queued)
	}
	require.NoError(t, insp.ArchiveTask(tasks.QueueDefault, tasks.InspectTaskID(b.bucket, "z.bin")))
	_, err := b.st.Pool.Exec(b.ctx, `UPDATE handed_off SET redrives = 5 WHERE key = 'a.bin'`)
	require.NoError(t, err)
	// What a FLUSHDB followed by the same long-lived client's enqueues leaves: the tasks, not the
	// queue's registration.
	require.NoError(t, rc.SRem(b.ctx, "asynq:queues", tasks.QueueDefault).Err())
	_, err = insp.GetTaskInfo(tasks.QueueDefault, tasks.InspectTaskID(b.bucket, "a.bin"))
	require.ErrorIs(t, err, asynq.ErrQueueNotFound)

	clock := time.Now().Add(48 * time.Hour)
	results := func(reg *prometheus.Registry) map[string]float64 {
		out := map[string]float64{}
		for _, r := range []string{"settled", "waiting", "queued", "given_up", "failed"} {
			out[r] = testkit.Metric(t, reg, "intake_hashes_handed_off_redrives_total", "result", r)
		}
		return out
	}

	// Without the registration: nothing can be read, nothing is given up or counted.
	m, reg := newMaintenanceWith(t, b, &clock, client, insp)
	_, err = m.Run(b.ctx, jobs.MaintenancePayload{})
	require.NoError(t, err)
	require.Equal(t, map[string]float64{"settled": 0, "waiting": 0, "queued": 0, "given_up": 0, "failed": 2}, results(reg))
	require.Equal(t, 5, handOffRowOf(t, b, "a.bin").redrives, "not given up")
	require.Equal(t, 0, handOffRowOf(t, b, "z.bin").redrives)

	// With it (the daemon's), the states are read again.
	clock = clock.Add(24 * time.Hour)
	reg = prometheus.NewRegistry()
	m, err = jobs.NewMaintenance(jobs.MaintenanceConfig{
		Store: jobs.NewMaintenanceStore(b.st.Q), Registerer: reg, Log: b.log, Now: func() time.Time { return clock },
		HandedOff: jobs.NewHandedOffStore(b.st.Q), Tasks: client, TaskStates: insp,
		RegisterQueues: func(ctx context.Context) error {
			return tasks.RegisterQueues(ctx, b.redis, tasks.QueueCritical, tasks.QueueDefault, tasks.QueueLow)
		},
	})
	require.NoError(t, err)
	_, err = m.Run(b.ctx, jobs.MaintenancePayload{})
	require.NoError(t, err)
	require.Equal(t, map[string]float64{"settled": 0, "waiting": 1, "queued": 1, "given_up": 0, "failed": 0}, results(reg))
	require.True(t, handOffRowOf(t, b, "a.bin").ok, "a.bin waits for its task")
	require.Equal(t, 1, handOffRowOf(t, b, "z.bin").redrives, "z.bin queued again")
	info, err := insp.GetTaskInfo(tasks.QueueDefault, tasks.InspectTaskID(b.bucket, "z.bin"))
	require.NoError(t, err)
	require.Equal(t, asynq.TaskStatePending, info.State)
}

// blockedServers is a JobsServers whose reading never ends until released (a Redis that does not
// answer).
type blockedServers struct {
	release chan struct{}
	working bool
}

func (s blockedServers) Servers() ([]*asynq.ServerInfo, error) {
	<-s.release
	if !s.working {
		return nil, nil
	}
	return []*asynq.ServerInfo{{Status: "active", Queues: map[string]int{tasks.QueueDefault: 3}}}, nil
}

// TestHandOffReadsTheJobsServersWithinItsDeadline: a hand-off's reading of the jobs servers
// (asynq's Servers, which takes no context, a few Redis round trips) holds no hand-off past its
// own deadline: the first ones wait for it within theirs, the later ones use the last answer while
// a new reading runs. Before (a review's case), every hand-off waited, one behind the other, for
// the reading, whatever its deadline (about 20 s per reading with Redis unreachable, at each
// second). Nothing here measures time: a hand-off that waited would not return.
func TestHandOffReadsTheJobsServersWithinItsDeadline(t *testing.T) {
	t.Parallel()
	b := setup(t)
	srv := blockedServers{release: make(chan struct{}), working: true}
	clock := time.Now()
	ho := handOffOf(t, b, func(c *jobs.HandOffConfig) { c.Servers, c.Now = srv, func() time.Time { return clock } })
	ev := pipeline.HandedOff{Bucket: b.bucket, Key: "k.bin", Sequencer: "0A", EventTime: time.Now()}

	// The first reading does not answer: hand-offs end at their deadline, nothing recorded.
	for range 3 {
		ctx, cancel := context.WithTimeout(b.ctx, 50*time.Millisecond)
		queued, err := ho.InspectLater(ctx, ev)
		cancel()
		require.ErrorIs(t, err, context.DeadlineExceeded)
		require.False(t, queued)
	}
	require.False(t, handOffRowOf(t, b, "k.bin").ok)

	// It answers: the hand-off works.
	close(srv.release)
	require.Eventually(t, func() bool {
		queued, err := ho.InspectLater(b.ctx, ev)
		return err == nil && queued
	}, 20*time.Second, 10*time.Millisecond)

	// Stale, with a new reading that never answers: the last answer serves, nobody waits.
	blocked := blockedServers{release: make(chan struct{})}
	t.Cleanup(func() { close(blocked.release) })
	ho2 := handOffOf(t, b, func(c *jobs.HandOffConfig) {
		c.Servers, c.Now = &switchable{first: srv, then: blocked}, func() time.Time { return clock }
	})
	for i := range 4 {
		if i == 1 {
			clock = clock.Add(time.Minute)
		}
		// A hand-off that waited for the reading would end at its deadline, with its error.
		ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
		queued, err := ho2.InspectLater(ctx, pipeline.HandedOff{Bucket: b.bucket, Key: fmt.Sprintf("k%d.bin", i), Sequencer: "0A"})
		cancel()
		require.NoError(t, err)
		require.True(t, queued)
	}
}

// serversFunc adapts a function to a jobs.JobsServers.
type serversFunc func() ([]*asynq.ServerInfo, error)

func (f serversFunc) Servers() ([]*asynq.ServerInfo, error) { return f() }

// switchable answers with first's reading once, then with then's.
type switchable struct {
	mu          sync.Mutex
	used        bool
	first, then jobs.JobsServers
}

func (s *switchable) Servers() ([]*asynq.ServerInfo, error) {
	s.mu.Lock()
	next := s.then
	if !s.used {
		s.used, next = true, s.first
	}
	s.mu.Unlock()
	return next.Servers()
}

// TestHandOffKeepsTheNewerEvent: S3 delivers late and twice, so a later hand-off of an object may
// carry an older event. Its row keeps the newer one (by sequencer; by event time when either has
// none), with the later lookup and the longer hash: the inspection queued again, if Redis loses
// the task, runs with the newest event's semantics. Before (a review's case), the later hand-off's
// event always replaced it: an older duplicate turned a removal's "deleted" into "missing".
func TestHandOffKeepsTheNewerEvent(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ho := handOffOf(t, b, nil)
	t0 := time.Date(2026, 12, 6, 8, 0, 0, 0, time.UTC)
	type row struct {
		seq      string
		removal  bool
		evTime   time.Time
		hashMS   int64
		lookedUp time.Time
	}
	read := func(key string) row {
		var r row
		require.NoError(t, b.st.Pool.QueryRow(b.ctx, `SELECT sequencer, removal, event_time, hash_time_ms, looked_up_at
			FROM handed_off WHERE bucket = $1 AND key = $2`, b.bucket, key).Scan(&r.seq, &r.removal, &r.evTime, &r.hashMS, &r.lookedUp))
		r.evTime, r.lookedUp = r.evTime.UTC(), r.lookedUp.UTC()
		return r
	}
	hand := func(key, seq string, at time.Time, removal bool, hash time.Duration, lookedUp time.Time) {
		t.Helper()
		_, err := ho.InspectLater(b.ctx, pipeline.HandedOff{Bucket: b.bucket, Key: key, Sequencer: seq, EventTime: at,
			Removal: removal, HashTime: hash, LookedUpAt: lookedUp})
		require.NoError(t, err)
	}

	hand("a.bin", "0B", t0, true, 2*time.Second, t0.Add(time.Minute))
	hand("a.bin", "0A", t0.Add(time.Hour), false, time.Second, t0.Add(2*time.Minute)) // older sequencer, later time
	require.Equal(t, row{"0B", true, t0, 2000, t0.Add(2 * time.Minute)}, read("a.bin"), "the sequencer decides")
	hand("a.bin", "0C", t0.Add(-time.Hour), false, time.Second, t0.Add(time.Minute))
	require.Equal(t, row{"0C", false, t0.Add(-time.Hour), 2000, t0.Add(2 * time.Minute)}, read("a.bin"), "a newer sequencer replaces")

	hand("b.bin", "", t0, true, 0, t0)
	hand("b.bin", "0A", t0.Add(-time.Second), false, 0, t0)
	require.Equal(t, row{"", true, t0, 0, t0}, read("b.bin"), "without a sequencer on one side, the event time decides")
	hand("b.bin", "0A", t0.Add(time.Second), false, 0, t0)
	require.Equal(t, row{"0A", false, t0.Add(time.Second), 0, t0}, read("b.bin"))

	// An event without a time is the oldest.
	hand("c.bin", "", time.Time{}, false, 0, t0)
	hand("c.bin", "", t0, true, 0, t0)
	require.Equal(t, row{"", true, t0, 0, t0}, read("c.bin"), "a timed event replaces a timeless one")
	hand("c.bin", "", time.Time{}, false, 0, t0)
	require.Equal(t, row{"", true, t0, 0, t0}, read("c.bin"), "a timeless one does not replace it")
}

// TestHandOffSameEventKeepsItsBound: the same event handed off again (SQS delivers at least once;
// S3 sends duplicates) keeps the row's bound, the lookup of its first receipt: an observation made
// since covers it, the observation of a task that looked before the second receipt included.
// Before (a review's case), the bound moved to the second receipt's lookup, and that task's record
// settled nothing: the inspection was queued again about 26 minutes later, a second read and hash
// of an object too large for its message. Another event of the object moves the bound.
func TestHandOffSameEventKeepsItsBound(t *testing.T) {
	t.Parallel()
	b := setup(t)
	st := jobs.NewHandedOffStore(b.st.Q)
	ho := handOffOf(t, b, nil)
	var now time.Time
	require.NoError(t, b.st.Pool.QueryRow(b.ctx, "SELECT now()").Scan(&now))
	hand := func(seq string, lookedUp time.Time) {
		t.Helper()
		_, err := ho.InspectLater(b.ctx, pipeline.HandedOff{Bucket: b.bucket, Key: "d.bin", Sequencer: seq, EventTime: now, LookedUpAt: lookedUp})
		require.NoError(t, err)
	}
	observe := func(at time.Time) {
		t.Helper()
		_, err := b.st.Pool.Exec(b.ctx, `INSERT INTO objects (bucket, key, status, observed_at) VALUES ($1, 'd.bin', 'valid', $2)
			ON CONFLICT (bucket, key) DO UPDATE SET observed_at = excluded.observed_at`, b.bucket, at)
		require.NoError(t, err)
	}
	hand("0A", now)
	observe(now.Add(time.Second)) // a task looked after the first receipt
	hand("0A", now.Add(2*time.Second))
	settled, err := st.Settle(b.ctx, b.bucket, "d.bin")
	require.NoError(t, err)
	require.True(t, settled, "the task's look covers the event, received twice")

	hand("0A", now)
	hand("0B", now.Add(2*time.Second)) // a newer event, received after the look below
	observe(now.Add(time.Second))
	settled, err = st.Settle(b.ctx, b.bucket, "d.bin")
	require.NoError(t, err)
	require.False(t, settled, "a look made before the newer event's receipt does not cover it")
}

// racingStore is the real store with a step run before GiveUp or StillOwed (what another process
// does meanwhile).
type racingStore struct {
	jobs.HandedOffQueries
	beforeGiveUp, beforeStillOwed func(o jobs.OwedInspection)
}

func (s racingStore) GiveUp(ctx context.Context, o jobs.OwedInspection) (bool, error) {
	if s.beforeGiveUp != nil {
		s.beforeGiveUp(o)
	}
	return s.HandedOffQueries.GiveUp(ctx, o)
}

func (s racingStore) StillOwed(ctx context.Context, o jobs.OwedInspection) (bool, error) {
	if s.beforeStillOwed != nil {
		s.beforeStillOwed(o)
	}
	return s.HandedOffQueries.StillOwed(ctx, o)
}

// TestHandOffRedriveRacesTheRowsChanges: the maintenance task claims a row, then looks at Redis
// and acts; meanwhile the row may change. A row replaced by a new hand-off, or covered by an
// observation of its object, before its give-up is not given up nor counted so
// (IntakeHandOffGivenUp would fire for nothing); a row its task settled
// before it is queued again is not queued again (a second hash of a large object). Both are
// counted waiting. Before (a review's cases), the first counted a give-up and the second queued
// an inspection.
func TestHandOffRedriveRacesTheRowsChanges(t *testing.T) {
	t.Parallel()
	b := setup(t)
	client, insp, st := asynqOf(t, b)
	ho := handOffOf(t, b, nil)
	for _, k := range []string{"given.bin", "covered.bin", "settled.bin"} {
		queued, err := ho.InspectLater(b.ctx, pipeline.HandedOff{Bucket: b.bucket, Key: k, Sequencer: "0A", EventTime: time.Now()})
		require.NoError(t, err)
		require.True(t, queued)
		require.NoError(t, insp.ArchiveTask(tasks.QueueDefault, tasks.InspectTaskID(b.bucket, k)))
	}
	_, err := b.st.Pool.Exec(b.ctx, `UPDATE handed_off SET redrives = 5 WHERE key IN ('given.bin', 'covered.bin')`)
	require.NoError(t, err)

	clock := time.Now().Add(48 * time.Hour)
	reg := prometheus.NewRegistry()
	m, err := jobs.NewMaintenance(jobs.MaintenanceConfig{
		Store: jobs.NewMaintenanceStore(b.st.Q), Registerer: reg, Log: b.log, Now: func() time.Time { return clock },
		HandedOff: racingStore{HandedOffQueries: st,
			beforeGiveUp: func(o jobs.OwedInspection) {
				if o.Key == "given.bin" { // another consumer hands the object off again
					_, _ = ho.InspectLater(b.ctx, pipeline.HandedOff{Bucket: b.bucket, Key: "given.bin", Sequencer: "0B", EventTime: time.Now()})
					return
				}
				// Something records an observation of the object (a reconcile, the event received again).
				_, err := b.st.Pool.Exec(b.ctx, `INSERT INTO objects (bucket, key, status, observed_at) VALUES ($1, $2, 'valid', now())`, b.bucket, o.Key)
				require.NoError(t, err)
			},
			beforeStillOwed: func(jobs.OwedInspection) { // the task records the object and settles the row
				_, err := b.st.Pool.Exec(b.ctx, `INSERT INTO objects (bucket, key, status, observed_at) VALUES ($1, 'settled.bin', 'valid', now())`, b.bucket)
				require.NoError(t, err)
				_, err = st.Settle(b.ctx, b.bucket, "settled.bin")
				require.NoError(t, err)
			}},
		Tasks: client, TaskStates: insp,
	})
	require.NoError(t, err)
	rep, err := m.Run(b.ctx, jobs.MaintenancePayload{})
	require.NoError(t, err)
	require.Zero(t, rep.HandedOffGivenUp, "nothing was given up")
	require.Zero(t, rep.HandedOffRedriven, "nothing was queued again")
	require.Zero(t, testkit.Metric(t, reg, "intake_hashes_handed_off_redrives_total", "result", "given_up"))
	require.Equal(t, 3.0, testkit.Metric(t, reg, "intake_hashes_handed_off_redrives_total", "result", "waiting"))
	require.Equal(t, 0, handOffRowOf(t, b, "given.bin").redrives, "the new hand-off's row is there")
	require.True(t, handOffRowOf(t, b, "covered.bin").ok, "covered: settled by the next run, not given up")
	require.False(t, handOffRowOf(t, b, "settled.bin").ok)
	info, err := insp.GetTaskInfo(tasks.QueueDefault, tasks.InspectTaskID(b.bucket, "settled.bin"))
	require.NoError(t, err)
	require.Equal(t, asynq.TaskStateArchived, info.State, "the archived task was not replaced")
}
