package replay

import (
	"context"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/stretchr/testify/require"

	"github.com/intakehq/intake/internal/testkit"
)

// interruptedReceive is the real SQS client whose first ReceiveMessage is interrupted as a Ctrl-C
// interrupts it: SQS takes the messages (the real call is made without the caller's cancellation),
// then the run's ctx is cancelled (cancel) while the response is on its way, and the response
// reaches the caller only if the ctx the call was given is still live: an aborted HTTP request
// loses its response, and the receipt handles with it.
type interruptedReceive struct {
	SQSAPI
	cancel func()

	mu       sync.Mutex
	receives int
	took     int // messages the first receive took from the queue
}

func (r *interruptedReceive) ReceiveMessage(ctx context.Context, in *sqs.ReceiveMessageInput, opts ...func(*sqs.Options)) (*sqs.ReceiveMessageOutput, error) {
	r.mu.Lock()
	r.receives++
	first := r.receives == 1
	r.mu.Unlock()
	if !first {
		return r.SQSAPI.ReceiveMessage(ctx, in, opts...)
	}
	out, err := r.SQSAPI.ReceiveMessage(context.WithoutCancel(ctx), in, opts...)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	r.took = len(out.Messages)
	r.mu.Unlock()
	r.cancel() // Ctrl-C, while the response is on its way
	select {
	case <-ctx.Done():
		return nil, ctx.Err() // the request is aborted: its response is lost
	case <-time.After(100 * time.Millisecond):
		return out, nil
	}
}

// TestMoveDLQInterruptedReceive: a Ctrl-C during a receive does not abort it: the messages SQS
// took are moved, not left hidden for --visibility with nobody to move them or give them back, and
// the run stops after that batch. Before, the receive used the command's ctx: its messages stayed
// in flight in the dead-letter queue for the visibility timeout (a minute by default).
func TestMoveDLQInterruptedReceive(t *testing.T) {
	t.Parallel()
	c, q := kumoQueues(t)
	const n = 5
	fill(t, c, q.DLQURL, 0, n)
	ctx, cancel := context.WithCancel(testkit.Context(t))
	defer cancel()
	r := &interruptedReceive{SQSAPI: c, cancel: cancel}
	res, err := MoveDLQ(ctx, r, DLQOptions{From: q.DLQURL, To: q.URL, Concurrency: 1, Wait: time.Second})
	require.NoError(t, err)
	r.mu.Lock()
	took, receives := r.took, r.receives
	r.mu.Unlock()
	t.Logf("%+v; the interrupted receive took %d", res, took)
	require.Equal(t, n, took)
	require.Equal(t, 1, receives, "the run stops after the interrupted receive's batch")
	require.Equal(t, n, res.Received)
	require.Equal(t, n, res.Sent)
	require.Equal(t, n, res.Deleted)
	counts, err := Counts(context.Background(), c, q.DLQURL)
	require.NoError(t, err)
	require.Zero(t, counts.InFlight, "nothing left hidden in the dead-letter queue")
	require.Zero(t, counts.Visible)
	moved, _ := testkit.DrainQueue(t, c, q.URL)
	require.Len(t, moved, n)
}

// TestDryRunDLQInterruptedReceive: a Ctrl-C during a dry run's receive does not abort it: what it
// took is counted and given back at once. Before, those messages stayed hidden for the dry run's
// visibility.
func TestDryRunDLQInterruptedReceive(t *testing.T) {
	t.Parallel()
	c, q := kumoQueues(t)
	const n = 5
	fill(t, c, q.DLQURL, 0, n)
	ctx, cancel := context.WithCancel(testkit.Context(t))
	defer cancel()
	r := &interruptedReceive{SQSAPI: c, cancel: cancel}
	res, err := DryRunDLQ(ctx, r, DLQOptions{From: q.DLQURL, Concurrency: 1, Wait: time.Second})
	require.NoError(t, err)
	r.mu.Lock()
	took, receives := r.took, r.receives
	r.mu.Unlock()
	t.Logf("%+v; the interrupted receive took %d", res, took)
	require.Equal(t, n, took)
	require.Equal(t, 1, receives)
	require.Equal(t, n, res.Messages)
	require.Equal(t, n, res.Returned)
	// Visible again at once (kumo counts a message made visible again as in flight until it is
	// received again: receiving is the test).
	left, _ := testkit.DrainQueue(t, c, q.DLQURL)
	require.Len(t, left, n, "nothing left hidden")
}

// resendAsync runs Resend in a goroutine; the result arrives on the channel returned (buffered:
// a test that took it may put it back for its cleanup).
func resendAsync(ctx context.Context, c SQSAPI, src Source, o ResendOptions) chan resendOutcome {
	done := make(chan resendOutcome, 1)
	go func() {
		res, err := Resend(ctx, c, src, o)
		done <- resendOutcome{res, err}
	}()
	return done
}

type resendOutcome struct {
	res ResendResult
	err error
}

// TestResendFileStopsOnCancel: replay file - with stdin open and idle (a pipe whose writer wrote a
// line and waits) stops when ctx is cancelled, and reports the line it read. Before, FileSource
// blocked in the next read and looked at ctx only between lines: Ctrl-C and SIGTERM did nothing
// until the input ended.
func TestResendFileStopsOnCancel(t *testing.T) {
	t.Parallel()
	c, q := kumoQueues(t)
	pr, pw := io.Pipe()
	ctx, cancel := context.WithCancel(testkit.Context(t))
	defer cancel()
	done := resendAsync(ctx, c, FileSource(pr), ResendOptions{To: q.URL, Concurrency: 1})
	t.Cleanup(func() {
		_ = pw.Close() // releases FileSource's reader, blocked in the pipe's Read
		<-done
	})
	_, err := io.WriteString(pw, body(0)+"\n") // returns once the line is read
	require.NoError(t, err)
	time.Sleep(200 * time.Millisecond)
	cancel()
	start := time.Now()
	select {
	case out := <-done:
		t.Logf("stopped %s after the cancel: %+v, %v", time.Since(start), out.res, out.err)
		require.ErrorIs(t, out.err, context.Canceled)
		require.Equal(t, 1, out.res.Read)
		require.Equal(t, 1, out.res.Sent+out.res.Failed, "the line read is sent or reported")
		done <- out // for the cleanup
	case <-time.After(2 * time.Second):
		t.Fatal("Resend did not return within 2s of the cancel while its input stayed open")
	}
}

// TestResendFileSendsWhenInputPauses: the bodies of a slow writer are sent within about a second
// of being read, not when ten have come or the input ends (before, a partial batch waited for the
// end of the input).
func TestResendFileSendsWhenInputPauses(t *testing.T) {
	t.Parallel()
	c, q := kumoQueues(t)
	pr, pw := io.Pipe()
	progress := &countAdds{}
	done := resendAsync(testkit.Context(t), c, FileSource(pr), ResendOptions{To: q.URL, Concurrency: 1, Progress: progress})
	closed := false
	t.Cleanup(func() {
		if !closed {
			_ = pw.Close()
			<-done
		}
	})
	_, err := io.WriteString(pw, body(0)+"\n"+body(1)+"\n")
	require.NoError(t, err)
	require.Eventually(t, func() bool { return progress.n.Load() == 2 }, 5*time.Second, 20*time.Millisecond,
		"the two bodies are sent while the input stays open")
	_, err = io.WriteString(pw, body(2)+"\n")
	require.NoError(t, err)
	require.NoError(t, pw.Close())
	closed = true
	out := <-done
	require.NoError(t, out.err)
	require.Equal(t, ResendResult{Read: 3, Sent: 3}, out.res)
	got, _ := testkit.DrainQueue(t, c, q.URL)
	require.Len(t, got, 3)
}

// interruptedStart is moveTasks whose StartMessageMoveTask is interrupted as a Ctrl-C interrupts
// it: SQS starts the task, then the run's ctx is cancelled (cancel) while the answer is on its
// way, and the answer, with the task's handle, reaches the caller only if the ctx the call was
// given is still live.
type interruptedStart struct {
	*moveTasks
	cancel func()
}

func (s *interruptedStart) StartMessageMoveTask(ctx context.Context, in *sqs.StartMessageMoveTaskInput, opts ...func(*sqs.Options)) (*sqs.StartMessageMoveTaskOutput, error) {
	out, err := s.moveTasks.StartMessageMoveTask(ctx, in, opts...)
	s.cancel()
	if ctx.Err() != nil {
		return nil, ctx.Err() // the request is aborted: the handle is lost
	}
	return out, err
}

// TestMoveNativeInterruptedStart: a Ctrl-C during StartMessageMoveTask cancels the task it
// started. Before, the call used the command's ctx: aborted, it lost the handle of a task SQS had
// started, and the task ran on with nobody to cancel it.
func TestMoveNativeInterruptedStart(t *testing.T) {
	t.Parallel()
	c, q := kumoQueues(t)
	ctx, cancel := context.WithCancel(testkit.Context(t))
	defer cancel()
	m := &moveTasks{SQSAPI: c, after: [][]types.ListMessageMoveTasksResultEntry{{task(scriptedHandle, "RUNNING", 2000, 0, 10)}}}
	res, err := MoveNative(ctx, &interruptedStart{moveTasks: m, cancel: cancel}, DLQOptions{From: q.DLQURL, To: q.URL}, 5*time.Millisecond)
	require.ErrorIs(t, err, context.Canceled)
	m.mu.Lock()
	defer m.mu.Unlock()
	require.True(t, m.started)
	require.True(t, m.cancelled, "the task started is cancelled")
	require.Equal(t, scriptedHandle, res.TaskHandle)
	require.Equal(t, "CANCELLED", res.Status)
	require.Zero(t, m.lists, "cancelled before following it")
}
