package jobs_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/require"

	"github.com/intakehq/intake/internal/testkit"
	"github.com/intakehq/intake/worker/jobs"
	"github.com/intakehq/intake/worker/tasks"
)

// gatedInspector stands in for the object store's side of an inspection (what is under test is
// the scheduling): the inspections of the owner held wait for open; the others return at once.
type gatedInspector struct {
	held string
	gate chan struct{}
	once sync.Once

	mu      sync.Mutex
	running map[string]int // by owner
	most    map[string]int // the most running at once, by owner
	started map[string]int // by key
	done    map[string]int // by key
}

func newGatedInspector(held string) *gatedInspector {
	return &gatedInspector{held: held, gate: make(chan struct{}),
		running: map[string]int{}, most: map[string]int{}, started: map[string]int{}, done: map[string]int{}}
}

// owner is the test keys' owner: uploads/{owner}/{uuid}/f.bin.
func (g *gatedInspector) owner(key string) string { return strings.Split(key, "/")[1] }

func (g *gatedInspector) InspectObject(ctx context.Context, _, key string) error {
	owner := g.owner(key)
	g.mu.Lock()
	g.running[owner]++
	g.most[owner] = max(g.most[owner], g.running[owner])
	g.started[key]++
	g.mu.Unlock()
	defer func() {
		g.mu.Lock()
		g.running[owner]--
		g.mu.Unlock()
	}()
	if owner == g.held {
		select {
		case <-g.gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	g.mu.Lock()
	g.done[key]++
	g.mu.Unlock()
	return nil
}

func (g *gatedInspector) open() { g.once.Do(func() { close(g.gate) }) }

// get reads one of the maps under the lock.
func (g *gatedInspector) get(m map[string]int, k string) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return m[k]
}

// shareServer runs a jobs server of 4 workers (an owner's share: 2) over g, as the jobs role
// builds it; deferred runs come back within a fraction of a second of their delay.
type shareServer struct {
	client   *asynq.Client
	insp     *asynq.Inspector
	metrics  *jobs.Metrics
	deferred prometheus.Counter
	logs     *testkit.SyncBuffer
}

func startShareServer(t *testing.T, g *gatedInspector) *shareServer {
	t.Helper()
	redisOpt := asynqRedis(t)
	reg := prometheus.NewRegistry()
	m, err := jobs.NewMetrics(reg)
	require.NoError(t, err)
	deferred, err := jobs.NewInspectionsDeferred(reg)
	require.NoError(t, err)
	logs := &testkit.SyncBuffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	h := &jobs.Handlers{Inspector: g, Log: log, Concurrency: 4, InspectionsDeferred: deferred}
	srv, err := jobs.NewServer(jobs.ServerConfig{Redis: redisOpt, Concurrency: 4, ShutdownTimeout: 5 * time.Second, Log: log,
		DelayedTaskCheckInterval: 100 * time.Millisecond, TaskCheckInterval: 100 * time.Millisecond}, jobs.NewMux(h, m, log))
	require.NoError(t, err)
	testkit.Serve(t, srv.Run)
	t.Cleanup(g.open) // before the server stops: its held runs end
	s := &shareServer{client: asynq.NewClient(redisOpt), insp: asynq.NewInspector(redisOpt), metrics: m, deferred: deferred, logs: logs}
	t.Cleanup(func() {
		_ = s.client.Close()
		_ = s.insp.Close()
	})
	return s
}

// inspect enqueues the inspection of key as POST /v1/jobs does and returns its task ID.
func (s *shareServer) inspect(t *testing.T, key string, opts ...asynq.Option) string {
	t.Helper()
	task, err := tasks.NewInspectObject(tasks.InspectObject{Bucket: "b", Key: key})
	require.NoError(t, err)
	id := tasks.InspectTaskID("b", key)
	_, err = s.client.Enqueue(task, append([]asynq.Option{asynq.TaskID(id)}, opts...)...)
	require.NoError(t, err)
	return id
}

// deferredNotRun reports whether task id was deferred at least once and used up none of its
// retries.
func (s *shareServer) deferredNotRun(id string) bool {
	info, err := s.insp.GetTaskInfo(tasks.QueueDefault, id)
	return err == nil && strings.Contains(info.LastErr, "inspection deferred") && info.Retried == 0
}

// allDeferredNotRun reports whether every task of ids was deferred and used up none of its retries.
func (s *shareServer) allDeferredNotRun(ids []string) bool {
	for _, id := range ids {
		if !s.deferredNotRun(id) {
			return false
		}
	}
	return true
}

// gone reports whether task id completed (asynq keeps no completed inspection).
func (s *shareServer) gone(id string) bool {
	_, err := s.insp.GetTaskInfo(tasks.QueueDefault, id)
	return errors.Is(err, asynq.ErrTaskNotFound)
}

func ownerKey(owner string) string { return "uploads/" + owner + "/" + uuid.NewString() + "/f.bin" }

// TestInspectionsShareTheWorkers: a tenant's many inspections (a POST /v1/jobs per object) hold at
// most half the jobs workers: with 4 workers, tenant a's inspections (each hashing for long, here
// held) run 2 at a time and its others are deferred, not run, using up none of their retries;
// tenant b's inspection runs at once on a free worker. When a's runs end, all of a's tasks run.
// Without the share, a's inspections took all 4 workers and b's waited behind them.
func TestInspectionsShareTheWorkers(t *testing.T) {
	t.Parallel()
	skipShort(t)
	g := newGatedInspector("a")
	s := startShareServer(t, g)
	var aKeys, aIDs []string
	for range 6 {
		k := ownerKey("a")
		aKeys = append(aKeys, k)
		aIDs = append(aIDs, s.inspect(t, k))
	}
	require.Eventually(t, func() bool { return g.get(g.running, "a") >= 2 }, 30*time.Second, 10*time.Millisecond)

	bKey := ownerKey("b")
	bID := s.inspect(t, bKey)
	require.Eventually(t, func() bool { return g.get(g.done, bKey) == 1 && s.gone(bID) }, 30*time.Second, 20*time.Millisecond,
		"tenant b's inspection should run at once on a free worker; tenant a's hold %d of the 4", g.get(g.running, "a"))

	// a's other four are deferred (again and again), not run, their retries untouched.
	var waiting []string
	for i, k := range aKeys {
		if g.get(g.started, k) == 0 {
			waiting = append(waiting, aIDs[i])
		}
	}
	require.Len(t, waiting, 4, "a runs 2 inspections at once")
	require.Eventually(t, func() bool { return s.allDeferredNotRun(waiting) }, 30*time.Second, 20*time.Millisecond, "a's other tasks should be deferred without using up a retry")
	require.Equal(t, 2, g.get(g.running, "a"))
	require.Positive(t, testkit.Value(t, s.deferred))

	g.open()
	require.Eventually(t, func() bool {
		for i, k := range aKeys {
			if g.get(g.done, k) != 1 || !s.gone(aIDs[i]) {
				return false
			}
		}
		return true
	}, 60*time.Second, 50*time.Millisecond, "all of a's inspections should run once its runs end")
	require.Equal(t, 2, g.get(g.most, "a"), "never more than a's share at once")
	for _, k := range aKeys {
		require.Equal(t, 1, g.get(g.started, k), "a deferred task is not run: %s", k)
	}
	require.Positive(t, testkit.Value(t, s.metrics.Tasks.WithLabelValues(tasks.TypeInspectObject, jobs.OutcomeEarly)))
	require.Equal(t, 7.0, testkit.Value(t, s.metrics.Tasks.WithLabelValues(tasks.TypeInspectObject, jobs.OutcomeSuccess)))
	// The deferrals did nothing: their durations are not observed (they would hide the runs').
	var h dto.Metric
	require.NoError(t, s.metrics.Duration.WithLabelValues(tasks.TypeInspectObject).(prometheus.Histogram).Write(&h))
	require.Equal(t, uint64(7), h.GetHistogram().GetSampleCount(), "the 7 runs' durations only")
	require.Zero(t, testkit.Value(t, s.metrics.Tasks.WithLabelValues(tasks.TypeInspectObject, jobs.OutcomeRetry)))
	require.Zero(t, testkit.Value(t, s.metrics.Tasks.WithLabelValues(tasks.TypeInspectObject, jobs.OutcomeFailed)))
	require.Contains(t, s.logs.String(), `level=DEBUG msg="object inspection deferred`)
	require.Contains(t, s.logs.String(), "owner=a")
}

// TestInspectionWithoutRetriesRunsOverTheShare: a task with no retry left (asynq.MaxRetry(0), or
// an archived task run again by hand) over its owner's share is run anyway rather than deferred:
// asynq would archive it. A task of the same owner with its retries is deferred meanwhile.
func TestInspectionWithoutRetriesRunsOverTheShare(t *testing.T) {
	t.Parallel()
	skipShort(t)
	g := newGatedInspector("a")
	s := startShareServer(t, g)
	first, second := ownerKey("a"), ownerKey("a")
	firstID, secondID := s.inspect(t, first), s.inspect(t, second)
	require.Eventually(t, func() bool { return g.get(g.running, "a") == 2 }, 30*time.Second, 10*time.Millisecond)

	last, other := ownerKey("a"), ownerKey("a")
	lastID := s.inspect(t, last, asynq.MaxRetry(0))
	otherID := s.inspect(t, other)
	require.Eventually(t, func() bool { return g.get(g.started, last) == 1 }, 30*time.Second, 10*time.Millisecond,
		"the task with no retry left should run over the share")
	require.Eventually(t, func() bool { return s.deferredNotRun(otherID) }, 30*time.Second, 20*time.Millisecond,
		"the task with its retries should be deferred")
	require.Zero(t, g.get(g.started, other))
	require.Equal(t, 3, g.get(g.running, "a"))

	g.open()
	require.Eventually(t, func() bool {
		for _, id := range []string{firstID, secondID, lastID, otherID} {
			if !s.gone(id) {
				return false
			}
		}
		return true
	}, 60*time.Second, 50*time.Millisecond)
	for _, k := range []string{first, second, last, other} {
		require.Equal(t, 1, g.get(g.done, k))
	}
	require.Zero(t, testkit.Value(t, s.metrics.Tasks.WithLabelValues(tasks.TypeInspectObject, jobs.OutcomeFailed)))
}

// TestHandedOffInspectionDeferredBriefly: an event's inspection the consumer handed off
// (tasks.InspectObject.Event) waits for its owner's share like any other, but is deferred by at
// most 15 s, not by its turn behind the owner's backlog of re-inspections (up to an hour): its
// upload waits for its first verdict, and its intent may expire meanwhile. Before, it was deferred
// as a re-inspection: 40 of tenant a's ahead of it, 2 at a time, put it some 20 s away (an hour
// behind 100,000).
func TestHandedOffInspectionDeferredBriefly(t *testing.T) {
	t.Parallel()
	skipShort(t)
	g := newGatedInspector("a")
	s := startShareServer(t, g)
	for range 2 {
		s.inspect(t, ownerKey("a"))
	}
	require.Eventually(t, func() bool { return g.get(g.running, "a") == 2 }, 30*time.Second, 10*time.Millisecond)
	var backlog []string
	for range 40 {
		backlog = append(backlog, s.inspect(t, ownerKey("a")))
	}
	require.Eventually(t, func() bool { return s.allDeferredNotRun(backlog) }, 60*time.Second, 50*time.Millisecond, "a's backlog deferred")

	enqueue := func(ev *tasks.HandedOffEvent) string {
		key := ownerKey("a")
		task, err := tasks.NewInspectObject(tasks.InspectObject{Bucket: "b", Key: key, Event: ev})
		require.NoError(t, err)
		id := tasks.InspectTaskID("b", key)
		_, err = s.client.Enqueue(task, asynq.TaskID(id))
		require.NoError(t, err)
		require.Eventually(t, func() bool { return s.deferredNotRun(id) }, 30*time.Second, 20*time.Millisecond)
		return id
	}
	nextIn := func(id string) time.Duration {
		info, err := s.insp.GetTaskInfo(tasks.QueueDefault, id)
		require.NoError(t, err)
		return time.Until(info.NextProcessAt)
	}
	handedOff := enqueue(&tasks.HandedOffEvent{Sequencer: "0A", Time: time.Now()})
	require.LessOrEqual(t, nextIn(handedOff), 15*time.Second, "the handed-off inspection comes back within 15 s")
	plain := enqueue(nil)
	require.Greater(t, nextIn(plain), 15*time.Second, "a re-inspection waits its turn behind the backlog")
	g.open()
}
