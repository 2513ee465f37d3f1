package tasks_test

import (
	"fmt"
	"time"

	"github.com/hibiken/asynq"

	"github.com/intakehq/intake/worker/tasks"
)

// Build the task that aborts a multipart upload if it is still open at its deadline. Enqueue it
// with tasks.Enqueue (or tasks.Aborts.ScheduleAbort) on an *asynq.Client.
func ExampleNewAbortMultipart() {
	task, err := tasks.NewAbortMultipart(tasks.AbortMultipart{
		Bucket:   "uploads",
		Key:      "uploads/alice/5f1c/report.pdf",
		UploadID: "b2a6c1f0-upload-id",
		Deadline: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC),
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(task.Type())
	fmt.Println(string(task.Payload()))
	// Output:
	// multipart:abort
	// {"bucket":"uploads","key":"uploads/alice/5f1c/report.pdf","upload_id":"b2a6c1f0-upload-id","deadline":"2030-01-02T03:04:05Z"}
}

// Ask intake to inspect an object again (for example after changing the validation policy).
func ExampleNewInspectObject() {
	task, err := tasks.NewInspectObject(tasks.InspectObject{Bucket: "uploads", Key: "uploads/bob/9a/cat.png"})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(task.Type(), string(task.Payload()))
	// Output:
	// object:inspect {"bucket":"uploads","key":"uploads/bob/9a/cat.png"}
}

// The task ID tasks.EnqueueInspect gives an inspection: the same for every request about one
// object, so that a second one is not queued while the first is under way.
func ExampleInspectTaskID() {
	fmt.Println(tasks.InspectTaskID("uploads", "uploads/bob/9a/cat.png"))
	fmt.Println(tasks.InspectTaskID("uploads", "uploads/bob/9a/cat.png") == tasks.InspectTaskID("uploads", "uploads/bob/9a/dog.png"))
	// Output:
	// inspect:86e4c60fbca6d03cd16c7d9a9d45a21e
	// false
}

// A sweep of one prefix for uploads older than a day, as one scheduler among several enqueues it
// for the period starting at 00:15: the period's task ID (asynq.TaskID(tasks.SweepTaskID(...)))
// makes it unique, so that the other schedulers' enqueues of the same period fail with
// asynq.ErrTaskIDConflict instead of queueing a second sweep.
func ExampleNewSweep() {
	period := time.Date(2030, 1, 1, 0, 15, 0, 0, time.UTC)
	id := tasks.SweepTaskID("uploads", period)
	task, err := tasks.NewSweep(tasks.Sweep{Bucket: "uploads", Prefix: "uploads/", OlderThan: tasks.Duration(24 * time.Hour)},
		asynq.TaskID(id))
	if err != nil {
		fmt.Println(err)
		return
	}
	// Then: client.Enqueue(task); a duplicate of the period answers asynq.ErrTaskIDConflict.
	fmt.Println(task.Type(), string(task.Payload()))
	fmt.Println(id)
	// Output:
	// multipart:sweep {"bucket":"uploads","prefix":"uploads/","older_than":"24h0m0s"}
	// sweep:uploads:1893456900
}

// Payloads are validated before a task is built; the error wraps tasks.ErrInvalidPayload.
func ExampleParseSweep() {
	_, err := tasks.ParseSweep([]byte(`{"bucket":"uploads","older_than":"soon"}`))
	fmt.Println(err)
	p, err := tasks.ParseSweep([]byte(`{"bucket":"uploads","older_than":3600}`))
	fmt.Println(p.OlderThan, err)
	// Output:
	// decode multipart:sweep payload: duration "soon": want a Go duration such as "24h": invalid task payload
	// 1h0m0s <nil>
}
