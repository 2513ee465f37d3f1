package tasks

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
)

// Enqueuer is the part of *asynq.Client that [Enqueue] needs.
type Enqueuer interface {
	EnqueueContext(ctx context.Context, task *asynq.Task, opts ...asynq.Option) (*asynq.TaskInfo, error)
}

var _ Enqueuer = (*asynq.Client)(nil)

// Enqueue enqueues task and returns its TaskInfo.
//
// A task whose ID is already taken (asynq.ErrTaskIDConflict) is not an error when the ID is one of
// intake's: a [TypeAbortMultipart] task (the abort of that upload for the same reason, deadline or
// api, is already scheduled, running or kept), or a [TypeInspectObject] task given an ID (such as
// [EnqueueInspect]'s one inspection per object). Enqueue then returns nil and a TaskInfo
// with only ID, Queue, Type and Payload set (State is left zero, since the existing task's state
// is not known). A kept task (archived, or completed with a retention) never runs again:
// [EnqueueReplacingFinished] replaces it. Every other error, including a conflict for another task
// type, is returned wrapped; test it with errors.Is.
func Enqueue(ctx context.Context, c Enqueuer, task *asynq.Task, opts ...asynq.Option) (*asynq.TaskInfo, error) {
	info, err := c.EnqueueContext(ctx, task, opts...)
	if err == nil {
		return info, nil
	}
	if errors.Is(err, asynq.ErrTaskIDConflict) {
		if dup := conflictPlaceholder(task, opts); dup != nil {
			return dup, nil
		}
	}
	return nil, fmt.Errorf("enqueue %s: %w", task.Type(), err)
}

// conflictPlaceholder is the TaskInfo [Enqueue] returns for task when its ID is taken: the ID and
// queue its constructor gives it, as opts override them; nil when the ID is not known.
func conflictPlaceholder(task *asynq.Task, opts []asynq.Option) *asynq.TaskInfo {
	dup := &asynq.TaskInfo{Type: task.Type(), Payload: task.Payload()}
	switch task.Type() {
	case TypeAbortMultipart:
		p, err := ParseAbortMultipart(task.Payload())
		if err != nil {
			return nil
		}
		dup.ID, dup.Queue = p.taskID(), QueueCritical
	case TypeInspectObject:
		dup.Queue = QueueDefault
	default:
		return nil
	}
	for _, o := range opts {
		switch o.Type() {
		case asynq.QueueOpt:
			dup.Queue, _ = o.Value().(string)
		case asynq.TaskIDOpt:
			dup.ID, _ = o.Value().(string)
		}
	}
	if dup.ID == "" || dup.Queue == "" {
		return nil
	}
	return dup
}

// Duplicate reports whether info is the placeholder [Enqueue] returns for a task whose ID was
// already taken (an abort, or an inspection, already queued).
func Duplicate(info *asynq.TaskInfo) bool { return info != nil && info.State == 0 }

// TaskStates is the part of *asynq.Inspector that [EnqueueReplacingFinished] needs.
type TaskStates interface {
	GetTaskInfo(queue, id string) (*asynq.TaskInfo, error)
	DeleteTask(queue, id string) error
}

var _ TaskStates = (*asynq.Inspector)(nil)

// EnqueueReplacingFinished is [Enqueue] for a task (an abort, an inspection) whose ID may be held
// by a task that will never run again. asynq keeps an archived task (a permanent failure, or retries used up)
// and, with a retention, a completed one, under its ID: Enqueue would answer every later abort of
// the same ID as a duplicate, and none would run. So on a conflict the task holding the ID is
// looked at: archived or completed, it is deleted and task enqueued in its place; still to run
// (pending, scheduled, active, retry), Enqueue's duplicate placeholder is returned. A second
// conflict after the delete means another caller enqueued the same task meanwhile: a duplicate
// too. With states nil, it is Enqueue.
//
// asynq's Inspector takes no context: its calls are bounded by go-redis's own timeouts.
func EnqueueReplacingFinished(ctx context.Context, c Enqueuer, states TaskStates, task *asynq.Task, opts ...asynq.Option) (*asynq.TaskInfo, error) {
	info, err := Enqueue(ctx, c, task, opts...)
	if err != nil || !Duplicate(info) || states == nil {
		return info, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("enqueue %s: %w", task.Type(), err)
	}
	held, err := states.GetTaskInfo(info.Queue, info.ID)
	switch {
	case errors.Is(err, asynq.ErrTaskNotFound):
		// Run and deleted since the conflict: the ID is free again.
	case err != nil:
		return nil, fmt.Errorf("enqueue %s: look at task %s holding its ID: %w", task.Type(), info.ID, err)
	case held.State != asynq.TaskStateArchived && held.State != asynq.TaskStateCompleted:
		return info, nil
	default:
		if err := states.DeleteTask(info.Queue, info.ID); err != nil && !errors.Is(err, asynq.ErrTaskNotFound) {
			return nil, fmt.Errorf("enqueue %s: delete %s task %s holding its ID: %w", task.Type(), held.State, info.ID, err)
		}
	}
	return Enqueue(ctx, c, task, opts...)
}

// EnqueueInspect queues the inspection of p's object ([NewInspectObject]) with the task ID
// [InspectTaskID], so that there is one inspection per object at a time: while one is queued,
// running or waiting for a retry, EnqueueInspect returns [Enqueue]'s placeholder ([Duplicate] is
// true) and queues nothing; the one under way reads the object as it is when it runs. An
// inspection that failed for good (archived: a permanent error, or its retries used up) or is kept
// completed is replaced at once through states ([EnqueueReplacingFinished]; an *asynq.Inspector):
// once the cause is fixed, asking again runs it. With states nil such a kept task holds the ID
// until asynq drops it from its archive (90 days, or 10,000 newer archived tasks).
func EnqueueInspect(ctx context.Context, c Enqueuer, states TaskStates, p InspectObject) (*asynq.TaskInfo, error) {
	task, err := NewInspectObject(p)
	if err != nil {
		return nil, err
	}
	return EnqueueReplacingFinished(ctx, c, states, task, asynq.TaskID(InspectTaskID(p.Bucket, p.Key)))
}

// Inspections queues inspections handed off by the consumer (pipeline.HashHandOff): an event
// whose hash finds every hash slot busy, or would outlast its message's time, becomes a
// [TypeInspectObject] task for the jobs workers, whose share per owner bounds one tenant's
// backlog, instead of waiting on a consumer worker within its message's timeout.
type Inspections struct {
	client Enqueuer
	states TaskStates
}

// NewInspections returns an Inspections that enqueues through c (usually an *asynq.Client) and
// looks at a task holding the ID through states (an *asynq.Inspector; nil: never).
func NewInspections(c Enqueuer, states TaskStates) *Inspections {
	return &Inspections{client: c, states: states}
}

// InspectLater enqueues p, an event's inspection (p.Event set), with the task ID [InspectTaskID],
// and reports whether the object's inspection is queued. Its timeout is [HandedOffTimeout] of
// hashTime, the hash's expected time.
//
// When the ID is taken, the task holding it is looked at (states): one that has not started
// (pending, scheduled, or waiting for a retry, a deferral by the jobs share included) will read the
// object as it is when it runs, and InspectLater reports true, queuing nothing more (an event
// received again while its inspection waits: its message is done). One running, or kept (archived,
// completed), may have read an older version of the object or will never run: InspectLater
// reports false, and the caller inspects the object itself; so it does when the state cannot be
// read (states nil, or an error).
//
// With anyHolder, a task holding the ID in any state will do, and InspectLater reports true on
// every conflict: for a caller that recorded the event's inspection durably elsewhere (the
// daemon's hand-off row, which the maintenance task queues again once the task holding the ID has
// ended without covering it) and cannot inspect the object itself (a hash longer than its
// message's time).
func (i *Inspections) InspectLater(ctx context.Context, p InspectObject, hashTime time.Duration, anyHolder bool) (bool, error) {
	if p.Event == nil {
		return false, fmt.Errorf("%w: %s: an event's inspection has its event", ErrInvalidPayload, TypeInspectObject)
	}
	task, err := NewInspectObject(p)
	if err != nil {
		return false, err
	}
	info, err := Enqueue(ctx, i.client, task,
		asynq.TaskID(InspectTaskID(p.Bucket, p.Key)), asynq.Timeout(HandedOffTimeout(hashTime)))
	if err != nil {
		return false, err
	}
	if !Duplicate(info) || anyHolder {
		return true, nil
	}
	if i.states == nil {
		return false, nil
	}
	state, err := taskState(ctx, i.states, info.Queue, info.ID)
	if err != nil {
		return false, nil // not known: inspect it
	}
	switch state {
	case asynq.TaskStatePending, asynq.TaskStateScheduled, asynq.TaskStateRetry:
		return true, nil
	}
	return false, nil
}

// Redrive queues p, an event's inspection (p.Event set) handed off earlier whose verdict is still
// not recorded (the maintenance task, from the row PostgreSQL keeps of the hand-off), as
// InspectLater does, but replacing a task holding the ID that will never run again (archived,
// completed: [EnqueueReplacingFinished]). It reports whether a task was queued: false when one
// holding the ID has yet to run or is running (it will record the verdict, or fail and be
// archived, and the next look replaces it).
func (i *Inspections) Redrive(ctx context.Context, p InspectObject, hashTime time.Duration) (bool, error) {
	if p.Event == nil {
		return false, fmt.Errorf("%w: %s: an event's inspection has its event", ErrInvalidPayload, TypeInspectObject)
	}
	task, err := NewInspectObject(p)
	if err != nil {
		return false, err
	}
	info, err := EnqueueReplacingFinished(ctx, i.client, i.states, task,
		asynq.TaskID(InspectTaskID(p.Bucket, p.Key)), asynq.Timeout(HandedOffTimeout(hashTime)))
	if err != nil {
		return false, err
	}
	return !Duplicate(info), nil
}

// Alive reports whether the object's inspection task (the one holding [InspectTaskID]) is still
// to run, running, or waiting for a retry: it will record the object's verdict, or fail for good.
// It is false only when Redis says so (no such task, or one archived or completed); a state that
// cannot be read is an error.
func (i *Inspections) Alive(ctx context.Context, bucket, key string) (bool, error) {
	if i.states == nil {
		return false, errors.New("inspections: no task states to read")
	}
	state, err := taskState(ctx, i.states, QueueDefault, InspectTaskID(bucket, key))
	switch {
	case errors.Is(err, asynq.ErrTaskNotFound):
		return false, nil
	case errors.Is(err, asynq.ErrQueueNotFound):
		// Not an answer: after Redis lost its data, the tasks long-lived clients queue are there
		// but their queue is not registered ([RegisterQueues]).
		return false, fmt.Errorf("read the inspection task of %s/%s: %w (see tasks.RegisterQueues)", bucket, key, err)
	case err != nil:
		return false, fmt.Errorf("read the inspection task of %s/%s: %w", bucket, key, err)
	}
	switch state {
	case asynq.TaskStatePending, asynq.TaskStateScheduled, asynq.TaskStateRetry, asynq.TaskStateActive,
		asynq.TaskStateAggregating:
		return true, nil
	}
	return false, nil
}

// HandedOffTimeout is the timeout of an event's inspection handed off by the consumer whose hash
// is expected to take hashTime: [InspectTimeout] plus twice hashTime, so that an object too large
// for its message's time is not too large for its task.
func HandedOffTimeout(hashTime time.Duration) time.Duration {
	return InspectTimeout + 2*max(hashTime, 0)
}

// taskState reads the state of task id in queue, within ctx (asynq's Inspector takes no context:
// the call runs in a goroutine, which ends with go-redis's own timeouts).
func taskState(ctx context.Context, states TaskStates, queue, id string) (asynq.TaskState, error) {
	type result struct {
		info *asynq.TaskInfo
		err  error
	}
	done := make(chan result, 1)
	go func() {
		info, err := states.GetTaskInfo(queue, id)
		done <- result{info, err}
	}()
	select {
	case r := <-done:
		if r.err != nil {
			return 0, r.err
		}
		return r.info.State, nil
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// Aborts arranges for multipart uploads to be aborted at their deadline: each ScheduleAbort
// enqueues a delayed [TypeAbortMultipart] task (one per upload). intake's API calls it right after
// it creates an upload; [Canceller] removes the task when the upload completes.
type Aborts struct {
	client Enqueuer
}

// NewAborts returns an Aborts that enqueues through c (usually an *asynq.Client).
func NewAborts(c Enqueuer) *Aborts { return &Aborts{client: c} }

// ScheduleAbort enqueues a [TypeAbortMultipart] task that aborts the upload at deadline if it is
// still open. Scheduling the same upload twice is not an error (the first task stays).
func (a *Aborts) ScheduleAbort(ctx context.Context, bucket, key, uploadID string, deadline time.Time) error {
	task, err := NewAbortMultipart(AbortMultipart{Bucket: bucket, Key: key, UploadID: uploadID, Deadline: deadline})
	if err != nil {
		return err
	}
	if _, err := Enqueue(ctx, a.client, task); err != nil {
		return fmt.Errorf("schedule abort of upload %s: %w", uploadID, err)
	}
	return nil
}

// Canceller deletes the pending abort of a multipart upload once the upload is known to be complete.
// The pipeline calls it when it sees the CompleteMultipartUpload event.
type Canceller struct {
	insp *asynq.Inspector
}

// NewCanceller returns a Canceller over insp. The caller owns insp and closes it.
func NewCanceller(insp *asynq.Inspector) *Canceller { return &Canceller{insp: insp} }

// CancelMultipartAbort deletes the [TypeAbortMultipart] tasks of uploadID (the deadline's, and a
// [ReasonAPI] one, [APIAbortTaskID]). A task that does not
// exist (never scheduled, already run, already cancelled) is not an error, and neither is one that
// is running right now: the upload is complete, so that abort finds it gone and changes nothing.
//
// asynq's Inspector takes no context: the calls run in a goroutine and CancelMultipartAbort returns
// ctx's error when ctx ends first (Redis unreachable: go-redis would retry its dials for seconds,
// holding the event's message past its timeout). That goroutine ends with go-redis's own timeouts,
// or at once when the Inspector is closed.
func (c *Canceller) CancelMultipartAbort(ctx context.Context, uploadID string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() { done <- c.cancel(uploadID) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("cancel abort of upload %s: %w", uploadID, ctx.Err())
	}
}

func (c *Canceller) cancel(uploadID string) error {
	var errs []error
	for _, id := range []string{uploadID, APIAbortTaskID(uploadID)} {
		errs = append(errs, c.deleteTask(id))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("cancel abort of upload %s: %w", uploadID, err)
	}
	return nil
}

// deleteTask deletes the abort task id (the deadline's, or a [ReasonAPI] one): one that
// does not exist or is running is not an error.
func (c *Canceller) deleteTask(id string) error {
	err := c.insp.DeleteTask(QueueCritical, id)
	if err == nil || errors.Is(err, asynq.ErrTaskNotFound) || errors.Is(err, asynq.ErrQueueNotFound) {
		return nil
	}
	// DeleteTask refuses active tasks; asynq does not export that error, so look at the state.
	if info, ierr := c.insp.GetTaskInfo(QueueCritical, id); ierr == nil && info.State == asynq.TaskStateActive {
		return nil
	} else if ierr != nil && errors.Is(ierr, asynq.ErrTaskNotFound) {
		return nil
	}
	return err
}

// APIAbortTaskID is the task ID of a [ReasonAPI] abort of uploadID ("api:" and the S3 upload id),
// which [NewAbortMultipart] gives it, whoever enqueues it (POST /v1/jobs, an app backend): distinct
// from the deadline's task (ID uploadID), which it must neither replace nor wait for.
func APIAbortTaskID(uploadID string) string { return "api:" + uploadID }

// RegisterQueues adds queues to the set of queues asynq's Inspector knows (asynq's "asynq:queues";
// asynq v0.26), through a connection of its own, closed before it returns. An asynq client
// registers a queue once per process (it remembers having done it): after Redis lost its data (a
// restart without persistence, a failover to a replica that had not received it, FLUSHDB), the
// tasks long-lived clients queue again are run by the servers, but asynq's Inspector answers
// ErrQueueNotFound for every one of them until some process starts. The maintenance task calls it
// at each run, before it reads the states of the hand-offs' tasks.
func RegisterQueues(ctx context.Context, opt asynq.RedisConnOpt, queues ...string) error {
	rc, ok := opt.MakeRedisClient().(redis.UniversalClient)
	if !ok {
		return fmt.Errorf("register queues: %T is not a go-redis client", opt)
	}
	defer rc.Close()
	members := make([]any, len(queues))
	for i, q := range queues {
		members[i] = q
	}
	if err := rc.SAdd(ctx, asynqQueuesKey, members...).Err(); err != nil {
		return fmt.Errorf("register queues %v: %w", queues, err)
	}
	return nil
}

// asynqQueuesKey is the set of queue names asynq's Inspector reads (asynq's base.AllQueues).
const asynqQueuesKey = "asynq:queues"
