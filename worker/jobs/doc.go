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
//   - intake:maintenance ([TypeMaintenance], [Maintenance]): expire intents and prune archived
//     events (below). intake's own task: not in tasks.Types, so neither app backends nor
//     POST /v1/jobs can enqueue it.
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
// Every replica may run the scheduler role. [SweepScheduler] (a [Periodic]) gives the sweep of each period the
// task ID tasks.SweepTaskID(bucket, start of the period) and keeps finished sweeps for
// tasks.SweepRetention, so replicas whose cron fire together (clocks within 30 s) enqueue one sweep
// per period; the others get asynq.ErrTaskIDConflict, logged at debug level. Aborts are idempotent:
// a second abort of the same upload finds it gone, and the first recorded row wins.
//
// # Maintenance: intent expiry and event retention
//
// The scheduler role enqueues intake:maintenance on INTAKE_JOBS_MAINTENANCE_CRON (a [Periodic]:
// one task per period whatever the number of replicas). Each run:
//
//   - expires intents: a pending intent whose expires_at is more than INTAKE_JOBS_EXPIRY_GRACE in
//     the past becomes expired (put and post intents: the presigned URL is dead by then; the grace
//     lets an upload started just before the deadline land first). A multipart intent expires only
//     once an abort of its upload has been recorded in multipart_aborts: the expiry never takes an
//     intent away from the abort path, which finds uploads to abort through pending intents (the
//     deadline task, the sweep's fallback). So an upload still open at its deadline is aborted and
//     its intent ends aborted; one the abort found gone (completed or aborted outside intake) ends
//     expired. An object that lands after its intent expired still completes it
//     (expired → completed), with the intent's declared size, type and hash checked as usual.
//   - prunes events: archived events (INTAKE_CONSUMER_ARCHIVE) received more than
//     INTAKE_EVENTS_RETENTION ago are deleted (0 keeps them forever).
//
// Both work in batches of 1,000 rows, one short statement each (rows another transaction holds are
// skipped), at most 1,000 batches of each per run, with cutoffs fixed when the run starts: a
// backlog larger than that is worked off over the next periods ([MaintenanceReport.Complete]).
// Metrics: intake_intents_expired_total{method}, intake_events_pruned_total and
// intake_maintenance_last_success_timestamp_seconds.
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
package jobs
