// Package outbox moves intake's notifications (the verdicts apps are told about) from PostgreSQL to
// asynq, and wakes whoever waits for them.
//
// # The transactional outbox
//
// A notification is a row of the outbox table (migration 0009), inserted by the very statement that
// commits the verdict causing it, so that both commit or neither does:
//
//   - PipelineRecord (the consumer's record of an object, batched across messages in one
//     transaction): upload.valid, upload.rejected or upload.deleted, for objects of an intent,
//     keyed by (object id, verdict_seq). verdict_seq grows only when an applied record changes the
//     row's status, reason or content, so a duplicate or older event inserts nothing, and a
//     re-inspection that changes the verdict inserts a new notification.
//   - RecordMultipartAbort (the abort of a multipart upload, reason deadline, sweep, api — its
//     owner's DELETE or an operator, through the abort task — or too_large): upload.aborted, keyed
//     by the upload id, when it settles the intent.
//   - ExpireIntents (the maintenance task's expiry of pending intents past their deadline):
//     upload.expired, keyed by the upload id.
//
// Each row holds the event's data as it stood at commit (the intent's metadata included) and gets
// an event_id, the webhook-id of every delivery of it.
//
// # Relay
//
// [Relay] claims unrelayed rows (FOR UPDATE SKIP LOCKED: relays on several replicas share them),
// enqueues their webhook deliveries to the endpoints their keys route to (internal/webhook: per
// endpoint, batches of the rows claimed together, an upload's rows in one batch) and, with
// INTAKE_NOTIFY_ASYNQ_QUEUE, one
// tasks.TypeUploadVerdict task per row on the app's queue, then marks the rows relayed, with the
// endpoints still to deliver to, in the same transaction. The tasks are
// enqueued before that commit, under IDs derived from the rows (a batch's names every row of it,
// [webhook.NewDeliverTask]): a relay that dies in between leaves the rows to the next, whose
// enqueues of the same batches conflict with the tasks already there instead of adding more. A
// delivery removes its endpoint from the row; the row is delivered when none is left, and never
// before a relay has committed it: a relay whose enqueue fails after others succeeded rolls back,
// and its tasks deliver rows whose other deliveries (the verdict task among them) were never
// enqueued. Those deliveries are recorded on the row, and the next relay enqueues nothing to
// those endpoints again (their tasks, once finished, no longer hold their IDs).
//
// The row tracks the webhook deliveries only. The verdict task is handed to Redis once, when the
// row is relayed, and never again: intake is not told when the app runs it, the row does not wait
// for it (with no webhook endpoint the row is delivered once relayed), and if Redis loses it (a
// restart without persistence) nothing sends it again ([Redeliver] sends webhook deliveries). An
// app that must not miss a verdict runs Redis with persistence, or reads GET /v1/uploads/{id}
// itself for the uploads it still waits for. A relay that enqueued it and rolled back is retried
// over the same rows, enqueueing the same task (its ID is the notification's id): asynq refuses it
// while the first is queued or, once the app has run it, kept (asynq.Retention, an hour by
// default: RelayConfig.VerdictRetention); a relay still failing after that enqueues it again.
//
// Within one delivery task the notifications of an upload are posted in order (internal/webhook),
// and the relay puts the notifications of an upload it claims together in one task per endpoint
// (webhook.BatchSize at most: an upload with more in one claim fills tasks of its own, each in
// order, which run in parallel); across batches (relayed by different transactions or replicas,
// run by different workers) they are not ordered, and no field of the notification orders them.
//
// The relay wakes on every commit of outbox rows (see Listener) and polls every 2 s besides. It
// keeps intake_outbox_oldest_undelivered_seconds (the age of the oldest notification not yet
// relayed or not yet delivered to every endpoint: the alert IntakeWebhooksBehind watches it) and
// intake_outbox_unrelayed and intake_outbox_gave_up up to date (a relay failing for 10 minutes
// fires IntakeOutboxRelayFailing), and deletes relayed rows with no delivery left in progress or
// given up, older than INTAKE_WEBHOOK_RETENTION: every minute, beside the relaying (it never holds
// a relay up), batches of 5,000 rows while they come back full, for up to 10 s
// (RelayConfig.PurgeBudget). Each of its transactions and queries is bounded
// (RelayConfig.Timeout), so that a hung connection fails a relay instead of freezing the gauges.
//
// # Given-up deliveries
//
// A delivery whose retries are spent, or that retrying cannot mend, is given up: the deliverer
// moves its endpoint from the row's pending endpoints to gave_up (internal/webhook). The row then
// stays, whatever asynq's archive keeps, until [Redeliver] sends it again (`intake outbox
// redeliver`: one pass over the rows there at its start; per batch, the tasks are enqueued under
// IDs naming the row's redelivery count, then the endpoints go back to pending, in the transaction
// holding the rows) or [Discard] drops it. [ReadStatus] counts them by endpoint.
//
// # Listener
//
// A trigger on the outbox notifies the channel "<schema>.intake_outbox" with the row's upload id,
// and one on objects (migration 0027) does for each change of a row that makes its upload done
// without a notification row (a completed upload's object seen gone); PostgreSQL delivers
// notifications at commit, and only of committed transactions, to every
// listening session. [Listener] keeps one connection listening per process and wakes the relay
// and the API's long polls (GET /v1/uploads/{id}?wait=) of that upload, on every replica.
package outbox
