package tasks_test

import (
	"context"
	"encoding/json"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/stretchr/testify/require"

	"github.com/intakehq/intake/internal/testkit"
	"github.com/intakehq/intake/worker/tasks"
)

func TestParse(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		typ     string
		payload string
		wantErr string // substring; empty means valid
	}{
		{"abort ok", tasks.TypeAbortMultipart, `{"bucket":"b","key":"a/b c.bin","upload_id":"u-1","deadline":"2030-01-01T00:00:00Z"}`, ""},
		{"abort later field", tasks.TypeAbortMultipart, `{"bucket":"b","key":"k","upload_id":"u","deadline":"2030-01-01T00:00:00Z","tenant_hint":{"x":1}}`, ""},
		{"abort no deadline", tasks.TypeAbortMultipart, `{"bucket":"b","key":"k","upload_id":"u"}`, "deadline: required"},
		{"abort no upload id", tasks.TypeAbortMultipart, `{"bucket":"b","key":"k","deadline":"2030-01-01T00:00:00Z"}`, "upload_id: required"},
		{"abort control char", tasks.TypeAbortMultipart, `{"bucket":"b","key":"a\u0000b","upload_id":"u","deadline":"2030-01-01T00:00:00Z"}`, "control characters"},
		{"abort bad bucket", tasks.TypeAbortMultipart, `{"bucket":"a/b","key":"k","upload_id":"u","deadline":"2030-01-01T00:00:00Z"}`, "not a bucket name"},
		{"abort every problem", tasks.TypeAbortMultipart, `{}`, "bucket: required; key: required; upload_id: required; deadline: required"},
		{"inspect ok", tasks.TypeInspectObject, `{"bucket":"b","key":"k"}`, ""},
		{"inspect long key", tasks.TypeInspectObject, `{"bucket":"b","key":"` + strings.Repeat("k", 1025) + `"}`, "longer than 1024"},
		{"inspect unknown field", tasks.TypeInspectObject, `{"bucket":"b","key":"k","size":1}`, ""}, // a later intake's field: ignored
		{"inspect trailing", tasks.TypeInspectObject, `{"bucket":"b","key":"k"} {}`, "trailing data"},
		{"inspect not json", tasks.TypeInspectObject, `bucket=b`, "decode object:inspect payload"},
		{"sweep ok string", tasks.TypeSweep, `{"bucket":"b","prefix":"in/","older_than":"36h"}`, ""},
		{"sweep ok seconds", tasks.TypeSweep, `{"bucket":"b","older_than":90}`, ""},
		{"sweep later field", tasks.TypeSweep, `{"bucket":"b","older_than":"36h","dry_run":true}`, ""},
		{"sweep zero", tasks.TypeSweep, `{"bucket":"b","older_than":"0s"}`, "older_than: must be positive"},
		{"sweep missing age", tasks.TypeSweep, `{"bucket":"b"}`, "older_than: must be positive"},
		{"sweep bad duration", tasks.TypeSweep, `{"bucket":"b","older_than":"a day"}`, "want a Go duration"},
		{"sweep bool duration", tasks.TypeSweep, `{"bucket":"b","older_than":true}`, "number of seconds"},
		// PostgreSQL refuses a NUL in text: the sweep would fail on every attempt.
		{"sweep NUL in prefix", tasks.TypeSweep, `{"bucket":"b","prefix":"in/\u0000","older_than":"36h"}`, "prefix: contains control characters"},
		{"sweep newline in prefix", tasks.TypeSweep, `{"bucket":"b","prefix":"in/\n","older_than":"36h"}`, "prefix: contains control characters"},
		{"sweep DEL in prefix", tasks.TypeSweep, `{"bucket":"b","prefix":"in/\u007f","older_than":"36h"}`, "prefix: contains control characters"},
	}
	parse := map[string]func([]byte) error{
		tasks.TypeAbortMultipart: func(b []byte) error { _, err := tasks.ParseAbortMultipart(b); return err },
		tasks.TypeInspectObject:  func(b []byte) error { _, err := tasks.ParseInspectObject(b); return err },
		tasks.TypeSweep:          func(b []byte) error { _, err := tasks.ParseSweep(b); return err },
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := parse[tt.typ]([]byte(tt.payload))
			if tt.wantErr == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, tasks.ErrInvalidPayload)
			require.ErrorContains(t, err, tt.wantErr)
		})
	}
}

func FuzzParseSweep(f *testing.F) {
	for _, s := range []string{`{"bucket":"b","older_than":"36h"}`, `{"bucket":"b","older_than":1e300}`, `{"older_than":-5}`, `[]`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := tasks.ParseSweep(b)
		if err != nil {
			require.ErrorIs(t, err, tasks.ErrInvalidPayload)
			return
		}
		require.Positive(t, p.OlderThan)
		// A valid payload survives a round trip through its constructor.
		task, err := tasks.NewSweep(p)
		require.NoError(t, err)
		back, err := tasks.ParseSweep(task.Payload())
		require.NoError(t, err)
		require.Equal(t, p, back)
	})
}

func TestConstructorsRefuseInvalid(t *testing.T) {
	t.Parallel()
	_, err := tasks.NewAbortMultipart(tasks.AbortMultipart{Bucket: "b", Key: "k"})
	require.ErrorIs(t, err, tasks.ErrInvalidPayload)
	_, err = tasks.NewInspectObject(tasks.InspectObject{Key: "k"})
	require.ErrorIs(t, err, tasks.ErrInvalidPayload)
	_, err = tasks.NewSweep(tasks.Sweep{Bucket: "b"})
	require.ErrorIs(t, err, tasks.ErrInvalidPayload)
}

func TestDurationJSON(t *testing.T) {
	t.Parallel()
	b, err := json.Marshal(tasks.Duration(90 * time.Minute))
	require.NoError(t, err)
	require.Equal(t, `"1h30m0s"`, string(b))
	var d tasks.Duration
	require.NoError(t, json.Unmarshal([]byte(`1.5`), &d))
	require.Equal(t, tasks.Duration(1500*time.Millisecond), d)
	require.Error(t, json.Unmarshal([]byte(`1e300`), &d))
}

func TestKnownType(t *testing.T) {
	t.Parallel()
	for _, typ := range tasks.Types {
		require.True(t, tasks.KnownType(typ))
	}
	require.False(t, tasks.KnownType("email:send"))
	require.Len(t, tasks.Priorities(), 3)
}

// TestEnqueue runs against Redis: the constructors' options land in the task, a duplicate abort is
// not an error, and other errors are.
func TestEnqueue(t *testing.T) {
	t.Parallel()
	_, client, _ := redisClients(t)
	ctx := testkit.Context(t)

	deadline := time.Now().Add(time.Hour).Truncate(time.Second)
	abort, err := tasks.NewAbortMultipart(tasks.AbortMultipart{Bucket: "b", Key: "k", UploadID: "upload-1", Deadline: deadline})
	require.NoError(t, err)
	info, err := tasks.Enqueue(ctx, client, abort)
	require.NoError(t, err)
	require.Equal(t, "upload-1", info.ID)
	require.Equal(t, tasks.QueueCritical, info.Queue)
	require.Equal(t, asynq.TaskStateScheduled, info.State)
	require.Equal(t, tasks.AbortMaxRetry, info.MaxRetry)
	require.Equal(t, tasks.AbortTimeout, info.Timeout)
	require.True(t, tasks.AbortDue(deadline).Equal(info.NextProcessAt), "due at %s, not %s", tasks.AbortDue(deadline), info.NextProcessAt)
	require.GreaterOrEqual(t, info.NextProcessAt.Sub(deadline), tasks.AbortGrace, "never before deadline + AbortGrace")

	dup, err := tasks.Enqueue(ctx, client, abort)
	require.NoError(t, err, "a duplicate abort is not an error")
	require.Equal(t, "upload-1", dup.ID)
	require.Equal(t, tasks.QueueCritical, dup.Queue)
	_, err = client.Enqueue(abort)
	require.ErrorIs(t, err, asynq.ErrTaskIDConflict, "asynq itself does see the conflict")

	sweep, err := tasks.NewSweep(tasks.Sweep{Bucket: "b", OlderThan: tasks.Duration(time.Hour)}, asynq.TaskID("sweep:b:1"))
	require.NoError(t, err)
	info, err = tasks.Enqueue(ctx, client, sweep)
	require.NoError(t, err)
	require.Equal(t, tasks.QueueLow, info.Queue)
	require.Equal(t, tasks.SweepRetention, info.Retention)
	_, err = tasks.Enqueue(ctx, client, sweep)
	require.ErrorIs(t, err, asynq.ErrTaskIDConflict, "only aborts treat a conflict as success")

	// An operator's abort is due at its deadline: nobody was promised anything past it.
	api, err := tasks.NewAbortMultipart(tasks.AbortMultipart{Bucket: "b", Key: "k", UploadID: "upload-2", Deadline: deadline, Reason: tasks.ReasonAPI})
	require.NoError(t, err)
	info, err = tasks.Enqueue(ctx, client, api)
	require.NoError(t, err)
	require.True(t, deadline.Equal(info.NextProcessAt), "%s != %s", deadline, info.NextProcessAt)

	inspect, err := tasks.NewInspectObject(tasks.InspectObject{Bucket: "b", Key: "k"})
	require.NoError(t, err)
	info, err = tasks.Enqueue(ctx, client, inspect)
	require.NoError(t, err)
	require.Equal(t, tasks.QueueDefault, info.Queue)
	require.Equal(t, asynq.TaskStatePending, info.State)
	require.Equal(t, tasks.InspectTimeout, info.Timeout)
}

// TestEnqueueReplacingFinished: an abort whose ID is held by a task asynq keeps archived (it failed
// for good, say on a 403 since fixed) or completed is enqueued again in its place, where Enqueue
// answered it as a duplicate and nothing ran; one whose task is still to run stays a duplicate.
func TestEnqueueReplacingFinished(t *testing.T) {
	t.Parallel()
	_, client, insp := redisClients(t)
	ctx := testkit.Context(t)

	abort, err := tasks.NewAbortMultipart(tasks.AbortMultipart{Bucket: "b", Key: "k", UploadID: "u-1", Deadline: time.Now(), Reason: tasks.ReasonAPI})
	require.NoError(t, err)
	id := tasks.APIAbortTaskID("u-1")
	info, err := tasks.EnqueueReplacingFinished(ctx, client, insp, abort, asynq.TaskID(id))
	require.NoError(t, err)
	require.False(t, tasks.Duplicate(info))

	info, err = tasks.EnqueueReplacingFinished(ctx, client, insp, abort, asynq.TaskID(id))
	require.NoError(t, err)
	require.True(t, tasks.Duplicate(info), "the first is still pending")
	require.Equal(t, id, info.ID)

	require.NoError(t, insp.ArchiveTask(tasks.QueueCritical, id))
	info, err = tasks.Enqueue(ctx, client, abort, asynq.TaskID(id))
	require.NoError(t, err)
	require.True(t, tasks.Duplicate(info), "Enqueue alone cannot tell an archived task from a queued one")

	info, err = tasks.EnqueueReplacingFinished(ctx, client, insp, abort, asynq.TaskID(id))
	require.NoError(t, err)
	require.False(t, tasks.Duplicate(info), "the archived task never runs again: replaced")
	require.Equal(t, asynq.TaskStatePending, info.State)
	got, err := insp.GetTaskInfo(tasks.QueueCritical, id)
	require.NoError(t, err)
	require.Equal(t, asynq.TaskStatePending, got.State)

	// Without an Inspector it is Enqueue.
	require.NoError(t, insp.ArchiveTask(tasks.QueueCritical, id))
	info, err = tasks.EnqueueReplacingFinished(ctx, client, nil, abort, asynq.TaskID(id))
	require.NoError(t, err)
	require.True(t, tasks.Duplicate(info))

	// Other conflicts are errors, as from Enqueue.
	sweep, err := tasks.NewSweep(tasks.Sweep{Bucket: "b", OlderThan: tasks.Duration(time.Hour)}, asynq.TaskID("sweep:b:1"))
	require.NoError(t, err)
	_, err = tasks.EnqueueReplacingFinished(ctx, client, insp, sweep)
	require.NoError(t, err)
	_, err = tasks.EnqueueReplacingFinished(ctx, client, insp, sweep)
	require.ErrorIs(t, err, asynq.ErrTaskIDConflict)
}

// TestEnqueueInspect: one inspection per object at a time, and one that failed for good does not
// keep the next one out. With asynq.Unique (before), an archived inspection held its lock for
// about 8.5 hours after it was queued: POST /v1/jobs answered 409 and the reconcile skipped the
// object although nothing would run.
func TestEnqueueInspect(t *testing.T) {
	t.Parallel()
	_, client, insp := redisClients(t)
	ctx := testkit.Context(t)
	p := tasks.InspectObject{Bucket: "b", Key: "a/cat.png"}
	id := tasks.InspectTaskID(p.Bucket, p.Key)

	info, err := tasks.EnqueueInspect(ctx, client, insp, p)
	require.NoError(t, err)
	require.False(t, tasks.Duplicate(info))
	require.Equal(t, id, info.ID)
	require.Equal(t, tasks.QueueDefault, info.Queue)

	info, err = tasks.EnqueueInspect(ctx, client, insp, p)
	require.NoError(t, err)
	require.True(t, tasks.Duplicate(info), "the first is still pending")
	require.Equal(t, id, info.ID)
	require.Equal(t, tasks.QueueDefault, info.Queue)

	// Another object, and the same key in another bucket, are other inspections.
	for _, other := range []tasks.InspectObject{{Bucket: "b", Key: "a/dog.png"}, {Bucket: "c", Key: "a/cat.png"}} {
		info, err = tasks.EnqueueInspect(ctx, client, insp, other)
		require.NoError(t, err)
		require.False(t, tasks.Duplicate(info), other)
	}
	pending, err := insp.ListPendingTasks(tasks.QueueDefault)
	require.NoError(t, err)
	require.Len(t, pending, 3)

	// Failed for good: asked again, it runs again.
	require.NoError(t, insp.ArchiveTask(tasks.QueueDefault, id))
	info, err = tasks.EnqueueInspect(ctx, client, insp, p)
	require.NoError(t, err)
	require.False(t, tasks.Duplicate(info), "the archived inspection never runs again: replaced")
	got, err := insp.GetTaskInfo(tasks.QueueDefault, id)
	require.NoError(t, err)
	require.Equal(t, asynq.TaskStatePending, got.State)

	_, err = tasks.EnqueueInspect(ctx, client, insp, tasks.InspectObject{Bucket: "b", Key: ""})
	require.ErrorIs(t, err, tasks.ErrInvalidPayload)
	require.NotEqual(t, tasks.InspectTaskID("b", "a/cat.png"), tasks.InspectTaskID("b/a", "cat.png"))
}

// TestInspections: the consumer's hash hand-off (pipeline.HashHandOff) queues one inspection per
// object and says so; while one is queued (or kept archived) it queues nothing and reports false,
// so that the event is inspected by the consumer itself; Redis unreachable is an error.
func TestInspections(t *testing.T) {
	t.Parallel()
	_, client, insp := redisClients(t)
	ctx := testkit.Context(t)
	h := tasks.NewInspections(client, insp)
	id := tasks.InspectTaskID("b", "a/cat.png")
	ev := &tasks.HandedOffEvent{Sequencer: "0A", Time: time.Date(2026, 12, 6, 5, 0, 0, 0, time.UTC)}
	p := tasks.InspectObject{Bucket: "b", Key: "a/cat.png", Event: ev}

	queued, err := h.InspectLater(ctx, p, 30*time.Minute, false)
	require.NoError(t, err)
	require.True(t, queued)
	got, err := insp.GetTaskInfo(tasks.QueueDefault, id)
	require.NoError(t, err)
	require.Equal(t, asynq.TaskStatePending, got.State)
	require.Equal(t, tasks.TypeInspectObject, got.Type)
	require.Equal(t, tasks.InspectTimeout+time.Hour, got.Timeout, "room for twice the hash's expected time")
	back, err := tasks.ParseInspectObject(got.Payload)
	require.NoError(t, err)
	require.Equal(t, p, back, "the event goes with the task")

	queued, err = h.InspectLater(ctx, p, 0, false)
	require.NoError(t, err)
	require.True(t, queued, "one has yet to run: it will read the object then, and it is the event's")
	pending, err := insp.ListPendingTasks(tasks.QueueDefault)
	require.NoError(t, err)
	require.Len(t, pending, 1, "nothing more queued")
	queued, err = tasks.NewInspections(client, nil).InspectLater(ctx, p, 0, false)
	require.NoError(t, err)
	require.False(t, queued, "its state unknown: the caller inspects the object itself")

	require.NoError(t, insp.ArchiveTask(tasks.QueueDefault, id))
	queued, err = h.InspectLater(ctx, p, 0, false)
	require.NoError(t, err)
	require.False(t, queued, "an archived one holds the ID: the caller inspects the object itself")

	_, err = h.InspectLater(ctx, tasks.InspectObject{Bucket: "b", Key: "a/dog.png"}, 0, false)
	require.ErrorIs(t, err, tasks.ErrInvalidPayload, "a hand-off without its event")

	down := asynq.NewClient(asynq.RedisClientOpt{Addr: "127.0.0.1:1", DialTimeout: time.Second})
	t.Cleanup(func() { _ = down.Close() })
	queued, err = tasks.NewInspections(down, nil).InspectLater(ctx, tasks.InspectObject{Bucket: "b", Key: "a/dog.png", Event: ev}, 0, false)
	require.Error(t, err)
	require.False(t, queued)
}

// TestCanceller deletes scheduled aborts, ignores missing ones, and leaves a running one alone
// without error (a real asynq server runs it).
func TestCanceller(t *testing.T) {
	t.Parallel()
	redisOpt, client, insp := redisClients(t)
	ctx := testkit.Context(t)
	c := tasks.NewCanceller(insp)
	s := tasks.NewAborts(client)

	require.NoError(t, c.CancelMultipartAbort(ctx, "never-scheduled"), "no queue yet")
	require.NoError(t, s.ScheduleAbort(ctx, "b", "k", "later", time.Now().Add(time.Hour)))
	require.NoError(t, c.CancelMultipartAbort(ctx, "never-scheduled"), "queue exists, task does not")
	// An operator's abort queued through POST /v1/jobs for later goes with the deadline's.
	api, err := tasks.NewAbortMultipart(tasks.AbortMultipart{Bucket: "b", Key: "k", UploadID: "later", Deadline: time.Now().Add(2 * time.Hour), Reason: tasks.ReasonAPI})
	require.NoError(t, err)
	_, err = client.EnqueueContext(ctx, api, asynq.TaskID(tasks.APIAbortTaskID("later")))
	require.NoError(t, err)
	require.NoError(t, c.CancelMultipartAbort(ctx, "later"))
	_, err = insp.GetTaskInfo(tasks.QueueCritical, "later")
	require.ErrorIs(t, err, asynq.ErrTaskNotFound)
	_, err = insp.GetTaskInfo(tasks.QueueCritical, tasks.APIAbortTaskID("later"))
	require.ErrorIs(t, err, asynq.ErrTaskNotFound, "the upload is complete: no abort of it stays queued")

	// A task being processed cannot be deleted; cancelling it is still not an error.
	running, release := make(chan struct{}), make(chan struct{})
	srv := asynq.NewServer(redisOpt, asynq.Config{Queues: tasks.Priorities(), LogLevel: asynq.FatalLevel})
	mux := asynq.NewServeMux()
	mux.HandleFunc(tasks.TypeAbortMultipart, func(context.Context, *asynq.Task) error {
		close(running)
		<-release
		return nil
	})
	require.NoError(t, srv.Start(mux))
	t.Cleanup(srv.Shutdown)
	require.NoError(t, s.ScheduleAbort(ctx, "b", "k", "now", time.Now().Add(-tasks.AbortGrace-2*time.Second)))
	select {
	case <-running:
	case <-time.After(30 * time.Second):
		t.Fatal("abort task never ran")
	}
	info, err := insp.GetTaskInfo(tasks.QueueCritical, "now")
	require.NoError(t, err)
	require.Equal(t, asynq.TaskStateActive, info.State)
	require.NoError(t, c.CancelMultipartAbort(ctx, "now"))
	close(release)

	cctx, cancel := context.WithCancel(ctx)
	cancel()
	require.ErrorIs(t, c.CancelMultipartAbort(cctx, "x"), context.Canceled)
}

// TestCancellerEndsWithItsContext: with Redis unreachable (a listener that accepts and never
// answers), cancelling returns when the event's context ends, not after go-redis's retries.
func TestCancellerEndsWithItsContext(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { _ = ln.Close() })
	var conns sync.WaitGroup
	held := make(chan net.Conn, 16)
	conns.Go(func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			held <- conn // never answered
		}
	})
	insp := asynq.NewInspector(asynq.RedisClientOpt{Addr: ln.Addr().String()})
	c := tasks.NewCanceller(insp)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	err = c.CancelMultipartAbort(ctx, "u-1")
	require.ErrorIs(t, err, context.DeadlineExceeded, "the context's end, not a Redis timeout: %v", err)
	// Closing the Inspector ends the abandoned call; then the fake Redis goes.
	require.NoError(t, insp.Close())
	_ = ln.Close()
	conns.Wait()
	close(held)
	for conn := range held {
		_ = conn.Close()
	}
}

// TestAbortTimeoutCoversAnInspection: an abort that finds its upload completed inspects the object
// inside the abort task (worker/jobs HandleAbort), so the task's timeout must leave an inspection
// its own bound; with a minute, a large declared-sha256 object was never judged by the task.
func TestAbortTimeoutCoversAnInspection(t *testing.T) {
	t.Parallel()
	require.Greater(t, tasks.AbortTimeout, tasks.InspectTimeout)
}

// TestAPIAbortRunsAtOnce: an app's "abort now" (ReasonAPI, built with NewAbortMultipart) of an
// upload whose deadline task was scheduled at creation is queued to run now under its own ID,
// instead of being answered as a duplicate of the deadline task and waiting for the deadline.
func TestAPIAbortRunsAtOnce(t *testing.T) {
	t.Parallel()
	_, client, insp := redisClients(t)
	ctx := testkit.Context(t)

	const uploadID = "upload-now"
	deadline := time.Now().Add(24 * time.Hour)
	require.NoError(t, tasks.NewAborts(client).ScheduleAbort(ctx, "b", "k", uploadID, deadline))

	now := time.Now()
	abort, err := tasks.NewAbortMultipart(tasks.AbortMultipart{Bucket: "b", Key: "k", UploadID: uploadID, Deadline: now, Reason: tasks.ReasonAPI})
	require.NoError(t, err)
	info, err := tasks.Enqueue(ctx, client, abort)
	require.NoError(t, err)
	require.False(t, tasks.Duplicate(info), "an abort asked for now is not the deadline task's duplicate")
	require.Equal(t, tasks.APIAbortTaskID(uploadID), info.ID)

	got, err := insp.GetTaskInfo(tasks.QueueCritical, tasks.APIAbortTaskID(uploadID))
	require.NoError(t, err)
	require.Equal(t, asynq.TaskStatePending, got.State, "due now, not at the deadline")
	p, err := tasks.ParseAbortMultipart(got.Payload)
	require.NoError(t, err)
	require.Equal(t, tasks.ReasonAPI, p.Reason)

	deadlineTask, err := insp.GetTaskInfo(tasks.QueueCritical, uploadID)
	require.NoError(t, err)
	require.Equal(t, asynq.TaskStateScheduled, deadlineTask.State, "the deadline task stays")
	require.True(t, tasks.AbortDue(deadline).Truncate(time.Second).Equal(deadlineTask.NextProcessAt.Truncate(time.Second)))

	// Asked twice, the second is the first's duplicate, under the api task's ID.
	dup, err := tasks.Enqueue(ctx, client, abort)
	require.NoError(t, err)
	require.True(t, tasks.Duplicate(dup))
	require.Equal(t, tasks.APIAbortTaskID(uploadID), dup.ID)

	// The canceller still removes both when the upload completes.
	require.NoError(t, tasks.NewCanceller(insp).CancelMultipartAbort(ctx, uploadID))
	for _, id := range []string{uploadID, tasks.APIAbortTaskID(uploadID)} {
		_, err := insp.GetTaskInfo(tasks.QueueCritical, id)
		require.ErrorIs(t, err, asynq.ErrTaskNotFound, id)
	}
}

// maxBackoff is the longest wait of asynq's default backoff before retry n+1, written out here
// from asynq's formula (n⁴ + 15 + rand(0..29)·(n+1) seconds) independently of the package.
func maxBackoff(n int) time.Duration {
	return time.Duration(n*n*n*n+15+29*(n+1)) * time.Second
}

// TestRetryWindowFollowsAsynq: RetryWindow's backoff bound is the largest delay
// asynq.DefaultRetryDelayFunc gives (it is reached, and never passed).
func TestRetryWindowFollowsAsynq(t *testing.T) {
	t.Parallel()
	for n := range tasks.InspectMaxRetry + 2 {
		var longest time.Duration
		for range 3000 { // rand(0..29) misses 29 in 3000 draws with probability (29/30)^3000 < 1e-44
			longest = max(longest, asynq.DefaultRetryDelayFunc(n, nil, nil))
		}
		require.Equal(t, tasks.MaxRetryDelay(n), longest, "retry %d", n+1)
		require.Equal(t, maxBackoff(n), tasks.MaxRetryDelay(n))
	}
	require.Equal(t, time.Minute, tasks.RetryWindow(0, time.Minute), "one run, no retry")
	require.Equal(t, 2*time.Minute+44*time.Second, tasks.RetryWindow(1, time.Minute), "two runs and the first backoff (15 + 29 s)")
	window := time.Duration(tasks.InspectMaxRetry+1) * tasks.InspectTimeout
	for n := range tasks.InspectMaxRetry {
		window += maxBackoff(n)
	}
	require.Equal(t, 7*time.Hour+29*time.Minute+38*time.Second, window, "11 runs of 15 min and ten backoffs at their longest")
	require.Equal(t, window, tasks.RetryWindow(tasks.InspectMaxRetry, tasks.InspectTimeout))
}

// redisClients skips the test in -short mode, else returns a Redis database of the test's own with
// an asynq client and inspector on it, closed when the test ends.
func redisClients(t *testing.T) (asynq.RedisClientOpt, *asynq.Client, *asynq.Inspector) {
	t.Helper()
	if testing.Short() {
		t.Skip("needs Redis")
	}
	redisOpt := asynq.RedisClientOpt{Addr: testkit.RedisAddr(), DB: testkit.RedisDB(t)}
	client := asynq.NewClient(redisOpt)
	t.Cleanup(func() { _ = client.Close() })
	insp := asynq.NewInspector(redisOpt)
	t.Cleanup(func() { _ = insp.Close() })
	return redisOpt, client, insp
}
