// Package jobs is intake's asynq runtime: the server that runs the tasks described in worker/tasks,
// their handlers, the middleware around them and the cron that enqueues periodic tasks (what the
// scheduler role runs).
//
// # Tasks and handlers
//
// The handlers decode and validate payloads and hand the work to small interfaces; intake's daemon
// passes internal/multipart's Service and pipeline.Processor.
//
//   - multipart:abort ([Handlers.HandleAbort], [Aborter]): at an upload's deadline, abort it if it
//     is still open and record the outcome in multipart_aborts. An upload that no longer exists
//     (completed, or aborted elsewhere) is "gone" and the task succeeds. intake's intent for the
//     upload then follows S3: completed when an object is at its key, aborted otherwise (see
//     internal/multipart, "States"). When the consumer sees the CompleteMultipartUpload event,
//     tasks.Canceller deletes the task before it runs; a task that runs and finds the upload
//     completed therefore inspects the object with the [Inspector] (the event is late, or S3 never
//     sent it), so its verdict does not wait for the periodic reconcile. The [Aborter] runs the
//     inspection once the outcome is recorded; its error is retried unless the pipeline calls it
//     permanent, whatever S3 status it carries (an S3 error of the abort itself is retried only
//     when objstore.IsRetryable). A deadline abort never aborts before the deadline promised to
//     the upload's owner plus tasks.AbortGrace (a complete accepted just before the deadline may
//     still be running): it is due at tasks.AbortDue(deadline), and one run earlier (by hand, on
//     a worker whose clock is behind the one that made it due, or a task whose payload names an
//     earlier deadline than the one PostgreSQL holds for the upload, which wins) does nothing and
//     fails with an [EarlyError], which the [Server] runs again at its time without counting a
//     retry, also when the task has no retry left. The check reads the worker's own clock: a
//     worker whose clock is ahead runs the abort early by as much, unnoticed, so the API and jobs
//     hosts need synchronised clocks (a skew above about 10 s eats the margin between a
//     complete's 110 s bound and the 120 s grace). An abort with reason "api" (POST /v1/jobs, which checks
//     the upload's owner first) runs at once: whoever can write to intake's Redis can enqueue
//     one, so Redis access is operator-level trust (see worker/tasks, "Trust").
//   - multipart:sweep ([Handlers.HandleSweep], [Sweeper]): list every open multipart upload of
//     the bucket and abort, with bounded concurrency, intake's own uploads past their deadline and
//     the uploads intake did not create (under the prefix) initiated before the threshold; then
//     intake's uploads past their deadline that the listing did not show. intake's uploads are
//     never aborted before their deadline. One of intake's uploads found completed (an object at
//     its key: its event and its abort task both lost) gets an object:inspect task of its own
//     (with [Handlers.Tasks]; one per object, as the reconcile's: tasks.EnqueueInspect) or, without, is inspected with the
//     [Inspector] inside the sweep; a failed inspection does not fail the sweep, whose retry
//     would not find that upload again (the reconcile inspects the object).
//   - object:inspect ([Handlers.HandleInspect], [Inspector]): run the pipeline again on one object
//     (satisfied by pipeline.Processor). One owner's inspections hold at most half the workers of
//     a process (max(1, [Handlers.Concurrency]/2)), and an owner running one gets another only
//     while a quarter of the workers (at least one) stays free of inspections, so that two busy
//     owners leave room for a third's (the owner is the key's segment before its upload id,
//     [InspectionOwner], "" for keys intake did not name): a tenant may queue one for
//     each of its objects (POST /v1/jobs), and an inspection may hash gigabytes, so without a bound
//     one tenant's thousands took every worker and the others' inspections (their own, the sweep's
//     and the reconcile's) waited behind them. A run over its owner's share does nothing and fails
//     with an [InspectDeferredError], which the [Server] runs again after about a second plus
//     jitter, longer the more of that owner's tasks are deferred, by the recent run time (at most an hour), without
//     counting a retry; a run with no retry left is run anyway (asynq would archive it). A
//     deferral ends once fewer than the owner's share of its runs are under way (see
//     inspectshare.go). The share is per process: with several jobs replicas, an owner holds at
//     most half of each one's workers.
//   - intake:maintenance ([TypeMaintenance], [Maintenance]): expire intents and prune archived
//     events (below). intake's own task: not in tasks.Types, so neither app backends nor
//     POST /v1/jobs can enqueue it.
//   - objects:reconcile ([TypeReconcile], [Reconciler]): the periodic reconcile of the bucket, what
//     `intake reconcile --fix` does (internal/reconcile), at the task's rate in objects per second:
//     it catches the uploads whose events the store never sent. Its findings are metrics. A task
//     naming a bucket intake does not serve is archived at once, and so is a run that used up its
//     time ([ReconcileTimeout]: the bucket is too large for the rate), rather than retried into
//     the next period's. intake's own task, like intake:maintenance: not in tasks.Types.
//
// Payloads are decoded leniently: a field this version does not know (a task enqueued by a newer
// replica, waiting in Redis for days) is ignored rather than archiving the task.
//
// Invalid payloads and errors wrapping pipeline.ErrPermanent are permanent: the handler wraps
// asynq.SkipRetry and the task is archived at once. So is a task naming a bucket that is not one
// of [Handlers.Buckets]. S3 errors that retrying cannot fix (403, 400…) are permanent too, unless
// joined with one that a retry may fix (a sweep's passes fail apart); refused credentials
// (ExpiredToken, TokenRefreshRequired, InvalidAccessKeyId…: a metadata service down, a token
// refresh lagging) are retried, as the pipeline retries them. Everything else is retried
// with asynq's backoff.
//
// # Many replicas
//
// Every replica may run the scheduler role: one [Periodic] per periodic task. [NewSweepPeriodic]
// gives the sweep of each period the task ID tasks.SweepTaskID(bucket, start of the period) and
// finished sweeps are kept for tasks.SweepRetention ([NewReconcilePeriodic]: [ReconcileTaskID],
// [ReconcileRetention]), so replicas whose crons fire together (clocks
// within 30 s) enqueue one sweep per period; the others get asynq.ErrTaskIDConflict, logged at debug
// level. With an "@every d" schedule the replicas' fires of a period may be up to d apart (each
// cron counts from its own start): its task is kept for at least d, so that the period still
// gets one. Aborts are idempotent: a second abort of the same upload finds it gone, and the first
// recorded row wins.
//
// # Maintenance: intent expiry, retention and hand-offs
//
// The scheduler role enqueues intake:maintenance on INTAKE_JOBS_MAINTENANCE_CRON (a [Periodic]:
// one task per period whatever the number of replicas). Each run:
//
//   - expires intents: a pending intent whose expires_at is more than INTAKE_JOBS_EXPIRY_GRACE in
//     the past becomes expired (put and post intents: the presigned URL is dead by then; the grace
//     lets an upload started just before the deadline land first). A multipart intent expires only
//     once an abort of its upload has been recorded in multipart_aborts: the expiry never takes an
//     intent away from the abort path, which finds uploads to abort through pending intents (the
//     deadline task, the sweep). So an upload still open at its deadline is aborted and its intent
//     ends aborted; one the abort found gone ends as S3 shows it (completed when an object is at its
//     key, aborted otherwise; internal/multipart, "States"), or expired when the abort could not
//     look. An object that lands after its intent expired still completes it
//     (expired → completed), with the intent's declared size, type and hash checked as usual.
//     An intent whose object's inspection was handed off (a handed_off row) does not expire.
//   - prunes events: archived events (INTAKE_CONSUMER_ARCHIVE) received more than
//     INTAKE_EVENTS_RETENTION ago are deleted (0 keeps them forever).
//   - prunes ended intents: intents that ended without an upload (expired, aborted) more than
//     INTAKE_INTENTS_RETENTION ago are deleted (0 keeps them forever); objects recorded against
//     one keep their row, upload_id NULL.
//   - settles and queues again the consumer's hash hand-offs ([HandOff]; MaintenanceConfig.HandedOff):
//     a handed_off row whose object's row records an observation that covers its events is
//     deleted; one past its time (the task's timeout plus 10 minutes, the 10 minutes doubled
//     after each redrive) whose task is gone from Redis or failed for good is queued again with
//     its event, at most five times, then given up with an error logged. A task still in Redis
//     is waited for (counted waiting, not as a redrive); one whose state cannot be read
//     (intake's queues are registered with asynq again first: MaintenanceConfig.RegisterQueues)
//     is looked at again 10 minutes later. This step runs when the ones before it succeeded.
//
// Each works in batches of 1,000 rows, one short statement each (rows another transaction holds are
// skipped), at most 1,000 batches of each per run, with cutoffs fixed when the run starts: a
// backlog larger than that is worked off over the next periods ([MaintenanceReport.Complete]).
// Metrics: intake_intents_expired_total{method}, intake_events_pruned_total,
// intake_intents_pruned_total, intake_hashes_handed_off_redrives_total{result} and
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
//   - intake_tasks_total{type,outcome}: outcome is success, retry (failed, will run again), failed
//     (permanent, or out of retries: archived), early (a deadline abort run before its time, or a
//     run deferred for its owner's or endpoint's share of the workers: it runs again later; logged
//     at info) or interrupted (its context cancelled under it: the server
//     stopping, whose unfinished tasks asynq puts back, or a cancel through asynq's Inspector;
//     logged at info). Only retry and failed are failures.
//   - intake_task_duration_seconds{type}
//   - intake_jobs_inspections_deferred_total: object:inspect runs deferred because their owner
//     had its share of the workers (each also counted under outcome early; logged at debug).
//   - intake_reconcile_missing, intake_reconcile_stale, intake_reconcile_gone: what the last
//     completed periodic reconcile found (and repaired); intake_reconcile_last_success_timestamp_seconds.
//
// The multipart series (intake_multipart_aborted_total, intake_bytes_reclaimed_total,
// intake_sweep_last_success_timestamp_seconds) are internal/multipart's.
package jobs
