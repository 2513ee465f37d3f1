// Package jobs is intake's asynq runtime: the server that runs the tasks described in worker/tasks,
// their handlers, the middleware around them and the periodic sweep scheduler.
//
// # Tasks and handlers
//
//   - multipart:abort ([Handlers.HandleAbort]): at an upload's deadline, sum its parts (ListParts)
//     and abort it (AbortMultipartUpload). An upload that no longer exists (NoSuchUpload: completed
//     or aborted elsewhere) is "gone" and the task succeeds. The outcome is recorded in
//     multipart_aborts, and intake's intent moves from pending to aborted when the upload really was
//     aborted. When the consumer sees the CompleteMultipartUpload event, tasks.Canceller deletes the
//     task before it runs.
//   - multipart:sweep ([Handlers.HandleSweep], [Multipart.Sweep]): list every open multipart upload
//     of the bucket page by page (KeyMarker + UploadIdMarker), keep those under the prefix initiated
//     before the threshold, and abort them with bounded concurrency (16 by default), including
//     uploads intake did not create; each abort is recorded like a deadline abort.
//   - object:inspect ([Handlers.HandleInspect]): run the pipeline again on one object through the
//     small [Inspector] interface (satisfied by pipeline.Processor).
//   - objects:reconcile ([TypeReconcile], [Reconciler]): the periodic reconcile of the bucket, what
//     `intake reconcile --fix` does (internal/reconcile), at the task's rate in objects per second:
//     it catches the uploads whose events the store never sent. Its findings are metrics. A task
//     naming a bucket intake does not serve is archived at once. Only the scheduler enqueues it.
//
// Invalid payloads and errors wrapping pipeline.ErrPermanent are permanent: the handler wraps
// asynq.SkipRetry and the task is archived at once. Everything else is retried with asynq's backoff.
//
// # Listing multipart uploads on S3-compatible stores
//
// MinIO lists every open upload of a bucket when ListMultipartUploads has no prefix, but returns
// none for a folder prefix such as "a/" (only an exact key matches). The sweep therefore lists the
// whole bucket and filters by prefix itself ([MultipartConfig.ServerSidePrefix] turns server-side
// prefix filtering back on for stores, such as AWS, that support it).
//
// Some stores list no multipart uploads at all. When a listing comes back empty while PostgreSQL
// knows pending multipart intents of the bucket older than the threshold, the sweep logs a warning
// ("object store listed no multipart uploads ...") and aborts those uploads by their ids instead
// ([SweepReport.Fallback]). Uploads intake did not create cannot be found that way on such stores.
//
// # Many replicas
//
// Every replica may run the scheduler role. A [Periodic] ([SweepEntry], [ReconcileEntry]) gives
// the task of each period an ID made of the bucket and the start of the period
// (tasks.SweepTaskID, [ReconcileTaskID]) and finished tasks are kept for a while
// (tasks.SweepRetention, [ReconcileRetention]), so replicas whose cron fire together (clocks within
// 30 s) enqueue one task per period; the others get asynq.ErrTaskIDConflict, logged at debug
// level. Aborts are idempotent:
// a second abort of the same upload finds it gone, and the first recorded row wins.
//
// # Shutdown
//
// [Server.Run] blocks until its context is cancelled, then stops fetching tasks, gives running
// handlers the shutdown timeout (the configuration's ShutdownGrace) to finish, cancels them after
// that, and returns; asynq puts unfinished tasks back for another worker.
//
// # Metrics
//
//   - intake_tasks_total{type,outcome}: outcome is success, retry (failed, will run again) or failed
//     (permanent, or out of retries: archived).
//   - intake_task_duration_seconds{type}
//   - intake_multipart_aborted_total{reason}: reason is deadline, sweep or api.
//   - intake_bytes_reclaimed_total: sum of the part sizes of aborted uploads (when ListParts worked).
//   - intake_sweep_last_success_timestamp_seconds: end of the last sweep that aborted everything
//     it should have.
//   - intake_reconcile_missing, intake_reconcile_stale, intake_reconcile_gone: what the last
//     completed periodic reconcile found (and repaired); intake_reconcile_last_success_timestamp_seconds.
package jobs
