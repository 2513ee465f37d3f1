package replay

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/stretchr/testify/require"

	"github.com/intakehq/intake/internal/testkit"
)

// moveTasks is the real SQS client (kumo, for the queues' ARNs) with SQS's message move tasks,
// which kumo lacks, played from a script: ListMessageMoveTasks answers before until the task is
// started, then the answers of after in turn (the last one for ever).
type moveTasks struct {
	SQSAPI
	before []types.ListMessageMoveTasksResultEntry
	after  [][]types.ListMessageMoveTasksResultEntry

	mu        sync.Mutex
	started   bool
	lists     int
	cancelled bool
}

const scriptedHandle = "task-handle-1"

func (m *moveTasks) StartMessageMoveTask(context.Context, *sqs.StartMessageMoveTaskInput, ...func(*sqs.Options)) (*sqs.StartMessageMoveTaskOutput, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.started = true
	return &sqs.StartMessageMoveTaskOutput{TaskHandle: aws.String(scriptedHandle)}, nil
}

func (m *moveTasks) ListMessageMoveTasks(context.Context, *sqs.ListMessageMoveTasksInput, ...func(*sqs.Options)) (*sqs.ListMessageMoveTasksOutput, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.started {
		return &sqs.ListMessageMoveTasksOutput{Results: m.before}, nil
	}
	r := m.after[min(m.lists, len(m.after)-1)]
	m.lists++
	return &sqs.ListMessageMoveTasksOutput{Results: r}, nil
}

func (m *moveTasks) CancelMessageMoveTask(context.Context, *sqs.CancelMessageMoveTaskInput, ...func(*sqs.Options)) (*sqs.CancelMessageMoveTaskOutput, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.cancelled = true
	return &sqs.CancelMessageMoveTaskOutput{}, nil
}

// task is a ListMessageMoveTasks entry; handle is listed only while it runs, as SQS does.
func task(handle, status string, started, moved, toMove int64) types.ListMessageMoveTasksResultEntry {
	t := types.ListMessageMoveTasksResultEntry{
		Status: aws.String(status), StartedTimestamp: started,
		ApproximateNumberOfMessagesMoved: moved, ApproximateNumberOfMessagesToMove: aws.Int64(toMove),
	}
	if handle != "" {
		t.TaskHandle = aws.String(handle)
	}
	return t
}

// TestMoveNativeFollowsItsOwnTask: MoveNative reports the task it started, not the source's
// previous one that a listing right after the start may still show first; a task cancelled by
// someone else is an error (what it did not move is still in the dead-letter queue), as is a task
// never listed; its own cancellation (ctx) cancels the task.
func TestMoveNativeFollowsItsOwnTask(t *testing.T) {
	t.Parallel()
	c, q := kumoQueues(t)
	previous := task("", "COMPLETED", 1000, 100, 100)
	for _, tc := range []struct {
		name       string
		before     []types.ListMessageMoveTasksResultEntry
		after      [][]types.ListMessageMoveTasksResultEntry
		wantErr    string
		wantStatus string
		wantMoved  int64
	}{
		{
			name:   "the previous task is listed first",
			before: []types.ListMessageMoveTasksResultEntry{previous},
			after: [][]types.ListMessageMoveTasksResultEntry{
				{previous}, {previous},
				{task(scriptedHandle, "RUNNING", 2000, 4, 7)},
				{task("", "COMPLETED", 2000, 7, 7)},
			},
			wantStatus: "COMPLETED", wantMoved: 7,
		},
		{
			name:       "no previous task",
			after:      [][]types.ListMessageMoveTasksResultEntry{{}, {task("", "COMPLETED", 2000, 7, 7)}},
			wantStatus: "COMPLETED", wantMoved: 7,
		},
		{
			name:   "cancelled by someone else",
			before: []types.ListMessageMoveTasksResultEntry{previous},
			after: [][]types.ListMessageMoveTasksResultEntry{
				{task(scriptedHandle, "RUNNING", 2000, 3, 10)},
				{task("", "CANCELLED", 2000, 3, 10)},
			},
			wantErr: "cancelled by someone else after moving 3 of 10 messages", wantStatus: "CANCELLED", wantMoved: 3,
		},
		{
			name:    "never listed",
			before:  []types.ListMessageMoveTasksResultEntry{previous},
			after:   [][]types.ListMessageMoveTasksResultEntry{{previous}},
			wantErr: "not listed by ListMessageMoveTasks", wantStatus: "RUNNING",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			m := &moveTasks{SQSAPI: c, before: tc.before, after: tc.after}
			progress := &countAdds{}
			res, err := MoveNative(testkit.Context(t), m, DLQOptions{From: q.DLQURL, To: q.URL, Progress: progress}, 5*time.Millisecond)
			if tc.wantErr != "" {
				require.ErrorContains(t, err, tc.wantErr)
			} else {
				require.NoError(t, err)
			}
			require.Equal(t, scriptedHandle, res.TaskHandle)
			require.Equal(t, tc.wantStatus, res.Status)
			require.Equal(t, tc.wantMoved, res.Moved)
			require.Equal(t, tc.wantMoved, progress.n.Load())
			require.False(t, m.cancelled)
		})
	}

	t.Run("cancelled by this process", func(t *testing.T) {
		t.Parallel()
		m := &moveTasks{SQSAPI: c, after: [][]types.ListMessageMoveTasksResultEntry{{task(scriptedHandle, "RUNNING", 2000, 1, 10)}}}
		ctx, cancel := context.WithCancel(testkit.Context(t))
		progress := &stopAfter{at: 1, cancel: cancel}
		res, err := MoveNative(ctx, m, DLQOptions{From: q.DLQURL, To: q.URL, Progress: progress}, 5*time.Millisecond)
		require.ErrorIs(t, err, context.Canceled)
		require.Equal(t, "CANCELLED", res.Status)
		m.mu.Lock()
		defer m.mu.Unlock()
		require.True(t, m.cancelled, "the task is cancelled")
	})
}
