// Package tasks is the public, importable description of intake's asynq tasks: their type names,
// queues, typed payloads and constructors, and small helpers to enqueue and cancel them. Application
// backends that share intake's Redis import it to ask intake for work without going through HTTP;
// intake's own API and operators' commands use it the same way. The handlers live in worker/jobs.
//
// # Tasks
//
//   - [TypeAbortMultipart] ("multipart:abort", queue [QueueCritical]): abort one multipart upload
//     if it is still open at its deadline (due at [AbortDue], a little after deadline +
//     [AbortGrace]; a deadline abort never aborts before deadline + AbortGrace). The deadline's
//     task has the S3 upload id as its task ID, so there is at most one deadline task per upload;
//     a [ReasonAPI] abort, which runs at once (POST /v1/jobs, or an app backend's
//     [NewAbortMultipart]), has the ID [APIAbortTaskID] ("api:" and the upload id), so an upload
//     has at most two abort tasks, the deadline's and one "api:" task, and an abort asked for now
//     never waits behind the deadline's task. [Enqueue] treats
//     a duplicate as success, [EnqueueReplacingFinished] replaces a task asynq keeps archived or
//     completed under that ID, and [Canceller] deletes both when the upload completes.
//   - [TypeInspectObject] ("object:inspect", queue [QueueDefault]): run intake's pipeline (HEAD,
//     sniff, policy, record, act) again on one object. [EnqueueInspect] gives it the task ID
//     [InspectTaskID], one per object at a time, and replaces one that failed for good.
//   - [TypeSweep] ("multipart:sweep", queue [QueueLow]): list every open multipart upload of a
//     bucket and abort those initiated before a threshold, including uploads intake did not create.
//     The scheduler role's cron gives each period's sweep the ID [SweepTaskID] so that many replicas
//     enqueue one. intake never aborts its own uploads before their deadline, whatever the age.
//
// Payloads are JSON objects (field names in snake_case), validated by the constructors and again by
// the handlers, so a task built by hand or posted to POST /v1/jobs gets the same checks. The
// handlers ignore fields they do not know: a task may wait in Redis for days, and a replica of an
// older intake must still run one that a newer replica wrote (POST /v1/jobs, reading a person's
// input, refuses unknown fields).
//
// # Trust
//
// Whoever can write to intake's Redis acts with an operator's rights: intake's jobs cannot tell who
// enqueued a task. POST /v1/jobs checks that a tenant's abort names one of its own uploads; an app
// backend sharing the Redis is not checked, and a [ReasonAPI] abort it enqueues aborts the upload
// at once, whoever owns it. A [ReasonDeadline] abort is held to the deadline PostgreSQL records for
// the upload (plus [AbortGrace]), whatever its payload says, and the sweep only to PostgreSQL's
// deadlines. Give Redis access only to what you would give operator credentials.
//
// # Queues
//
// intake's queues carry an "intake-" prefix ([QueueCritical], [QueueDefault], [QueueLow]) so that
// an application's own asynq servers on the same Redis, which process "default" unless told
// otherwise, never pick up intake's tasks. [Priorities] is the weighting intake's server uses.
//
// # Enqueueing
//
//	redis := asynq.RedisClientOpt{Addr: "127.0.0.1:6379"}
//	client, states := asynq.NewClient(redis), asynq.NewInspector(redis)
//	defer client.Close()
//	defer states.Close()
//	info, err := tasks.EnqueueInspect(ctx, client, states, tasks.InspectObject{Bucket: "uploads", Key: "a/b.png"})
//	if err != nil { ... }
//	// tasks.Duplicate(info): an inspection of the object was already queued, running or retrying.
//
// [Aborts] and [Canceller] are what intake's API and consumer use to schedule and cancel the
// abort of a multipart upload at its deadline.
//
// # Verdicts, for apps that run asynq
//
// With INTAKE_NOTIFY_ASYNQ_QUEUE set, intake enqueues every notification of an upload (the same as
// its webhooks: [EventTypes]) as a [TypeUploadVerdict] task ("intake:upload.verdict") on that
// queue, which the app's own asynq server serves. The payload is an [UploadVerdict]; decode it with
// [ParseUploadVerdict] (it ignores fields added by later versions). The task ID is the
// notification's id, and the same verdict may arrive twice (after a crash of intake's relay, or
// when the app's handler fails and asynq retries): handle it idempotently. See the examples.
package tasks
