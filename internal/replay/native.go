package replay

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/smithy-go"
)

// ErrNativeUnsupported says the SQS server has no StartMessageMoveTask (emulators such as kumo).
var ErrNativeUnsupported = errors.New("the SQS server does not support StartMessageMoveTask; replay without --native")

// NativeResult is the end state of a message move task.
type NativeResult struct {
	// TaskHandle identifies the task (CancelMessageMoveTask takes it).
	TaskHandle string
	// Status is the task's last status: COMPLETED, CANCELLED or FAILED.
	Status string
	// Moved is ApproximateNumberOfMessagesMoved.
	Moved int64
	// ToMove is ApproximateNumberOfMessagesToMove when the task started.
	ToMove int64
	// FailureReason is set when the task failed.
	FailureReason string
}

// nativeCallTimeout bounds the calls MoveNative makes without ctx's cancellation: starting the
// task, and cancelling it once ctx is done.
const nativeCallTimeout = 10 * time.Second

// maxUnlistedPolls bounds the polls of MoveNative that do not find the task it started (the
// listing may lag behind the start and show the source's previous task): past it, MoveNative
// gives up following the task, with an error.
const maxUnlistedPolls = 30

// MoveNative starts an SQS message move task from o.From to o.To (o.To empty: back to each
// message's original source queue) at o.Rate messages per second, follows it every poll interval
// (reporting moved counts to o.Progress), and returns when it ends. Cancelling ctx cancels the task
// (messages already moved stay moved), even while StartMessageMoveTask is under way: that call is
// not aborted (it has nativeCallTimeout), and the task it started is cancelled at once. A task
// cancelled by someone else, or that failed, is an error: not everything was moved. Max is not
// supported by SQS's move tasks.
func MoveNative(ctx context.Context, c SQSAPI, o DLQOptions, poll time.Duration) (NativeResult, error) {
	if err := o.validate(false); err != nil {
		return NativeResult{}, err
	}
	if o.Max > 0 {
		return NativeResult{}, errors.New("--max is not supported with --native (SQS moves every message)")
	}
	o = o.withDefaults(60 * time.Second)
	if poll <= 0 {
		poll = 2 * time.Second
	}
	src, err := queueARN(ctx, c, o.From)
	if err != nil {
		return NativeResult{}, err
	}
	in := &sqs.StartMessageMoveTaskInput{SourceArn: aws.String(src)}
	if o.To != "" {
		dst, err := queueARN(ctx, c, o.To)
		if err != nil {
			return NativeResult{}, err
		}
		in.DestinationArn = aws.String(dst)
	}
	if o.Rate > 0 {
		in.MaxNumberOfMessagesPerSecond = aws.Int32(int32(max(1, min(o.Rate, 500))))
	}
	// The source's newest task before this one: a listing made soon after the start may still
	// show it (finished, its handle no longer listed), and its status is not this task's.
	prev, err := c.ListMessageMoveTasks(ctx, &sqs.ListMessageMoveTasksInput{SourceArn: aws.String(src), MaxResults: aws.Int32(1)})
	if err != nil {
		if unsupported(err) {
			return NativeResult{}, fmt.Errorf("%w (%v)", ErrNativeUnsupported, err)
		}
		return NativeResult{}, fmt.Errorf("list message move tasks of %s: %w", src, err)
	}
	isOurs := func(t types.ListMessageMoveTasksResultEntry, handle string) bool {
		if h := aws.ToString(t.TaskHandle); h != "" {
			return h == handle // listed only while the task runs
		}
		return len(prev.Results) == 0 || t.StartedTimestamp > prev.Results[0].StartedTimestamp
	}
	// Started without ctx's cancellation: a Ctrl-C that aborted the call after SQS had started the
	// task would leave it running, its handle lost, with nobody to cancel it. A stop during the call
	// cancels the task as soon as its handle is known.
	sctx, scancel := context.WithTimeout(context.WithoutCancel(ctx), nativeCallTimeout)
	started, err := c.StartMessageMoveTask(sctx, in)
	scancel()
	if err != nil {
		if unsupported(err) {
			return NativeResult{}, fmt.Errorf("%w (%v)", ErrNativeUnsupported, err)
		}
		return NativeResult{}, fmt.Errorf("start message move task from %s: %w", o.From, err)
	}
	res := NativeResult{TaskHandle: aws.ToString(started.TaskHandle), Status: "RUNNING"}
	o.Log.Info("message move task started", "task_handle", res.TaskHandle, "source", src)
	stop := func() (NativeResult, error) {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), nativeCallTimeout)
		defer cancel()
		if _, err := c.CancelMessageMoveTask(cctx, &sqs.CancelMessageMoveTaskInput{TaskHandle: started.TaskHandle}); err != nil {
			return res, fmt.Errorf("cancel message move task %s: %w", res.TaskHandle, err)
		}
		res.Status = "CANCELLED"
		return res, ctx.Err()
	}
	if ctx.Err() != nil {
		return stop()
	}
	ticker := time.NewTicker(poll)
	defer ticker.Stop()
	unlisted := 0
	for {
		select {
		case <-ctx.Done():
			return stop()
		case <-ticker.C:
		}
		out, err := c.ListMessageMoveTasks(ctx, &sqs.ListMessageMoveTasksInput{SourceArn: aws.String(src), MaxResults: aws.Int32(1)})
		if err != nil {
			if ctx.Err() != nil {
				continue // handled at the top of the loop
			}
			return res, fmt.Errorf("list message move tasks of %s: %w", src, err)
		}
		if len(out.Results) == 0 || !isOurs(out.Results[0], res.TaskHandle) {
			if unlisted++; unlisted >= maxUnlistedPolls {
				return res, fmt.Errorf("message move task %s: not listed by ListMessageMoveTasks after %d polls; follow it with aws sqs list-message-move-tasks", res.TaskHandle, unlisted)
			}
			continue
		}
		t := out.Results[0]
		if moved := t.ApproximateNumberOfMessagesMoved; moved > res.Moved {
			o.Progress.Add(int(moved - res.Moved))
			res.Moved = moved
		}
		res.ToMove = aws.ToInt64(t.ApproximateNumberOfMessagesToMove)
		res.Status = aws.ToString(t.Status)
		res.FailureReason = aws.ToString(t.FailureReason)
		switch res.Status {
		case "COMPLETED":
			return res, nil
		case "CANCELLED":
			// Not by this process (its own cancellation returns above): someone stopped the task
			// part-way, and what it did not move is still in the source queue.
			return res, fmt.Errorf("message move task %s was cancelled by someone else after moving %d of %d messages", res.TaskHandle, res.Moved, res.ToMove)
		case "FAILED":
			return res, fmt.Errorf("message move task %s failed: %s", res.TaskHandle, res.FailureReason)
		}
	}
}

// unsupported reports whether err says the server does not know the operation.
func unsupported(err error) bool {
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) {
		switch apiErr.ErrorCode() {
		case "InvalidAction", "UnsupportedOperation", "UnknownOperationException", "NotImplemented",
			"AWS.SimpleQueueService.UnsupportedOperation":
			return true
		}
	}
	var respErr interface{ HTTPStatusCode() int }
	if errors.As(err, &respErr) {
		switch respErr.HTTPStatusCode() {
		case 404, 501:
			return true
		}
	}
	return false
}
