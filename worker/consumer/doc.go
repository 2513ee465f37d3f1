// Package consumer is the SQS runtime that drives the pipeline: it long-polls the queue of S3 event
// notifications, hands each message to a [Processor], and settles the message according to the result.
//
// # Flow control
//
// Several receivers long-poll the queue concurrently, but a receiver only asks for as many messages
// as there are free worker slots: when the pool of Workers is busy the receivers wait, so nothing is
// received that cannot be processed at once (a received message's visibility timeout is running).
// Each message holds one slot and is processed by one of Workers long-lived worker goroutines (a
// goroutine per message would grow a fresh stack for every message).
//
// # Settling a message
//
//   - Process returns nil: the effect is committed; the message is deleted, in batches of up to ten
//     (DeleteMessageBatch) flushed when full or after a few milliseconds. Entries the server reports
//     as failed are retried when the fault is the server's and logged and counted otherwise: such a
//     message is delivered again and processed again, which the pipeline makes harmless. Deletions
//     that keep failing for SQS's fault pause the receivers (see "Outages").
//   - The error wraps pipeline.ErrPermanent: the message can never succeed. With a DLQURL it is sent
//     to the dead-letter queue (body, attributes and the reason as the intake-dlq-reason attribute)
//     and only then deleted; refused for its content (InvalidParameterValue, InvalidMessageContents:
//     over the size limit once the attributes are added), it is sent once more with intake's three
//     attributes alone and a 256-byte reason; refused for anything else (throttling, KMS, a missing
//     queue, access denied), it is retried later like any failure. Without one it is left to the queue's redrive policy: its visibility is
//     set short so that its receive count reaches maxReceiveCount quickly; one that comes back past
//     maxReceiveCount (SQS could not move it: its dead-letter queue deleted, KMS denied) is hidden
//     for MaxBackoff instead, and that is warned about once. When the queue has no redrive policy
//     the message is hidden for MaxBackoff too, so a poison message is not retried in a hot loop.
//   - The error wraps pipeline.ErrUnavailable: a dependency is down. The message is hidden until
//     the dependency's next check and receiving pauses (see "Outages").
//   - Processing exceeded MessageTimeout, or any other error: the message is retried later. Its visibility is set to an exponential backoff
//     computed from ApproximateReceiveCount (RetryBase doubled per receive, capped at MaxBackoff, with
//     jitter). With a DLQURL and a queue known to have no redrive policy (nothing else would ever
//     move it), a message that fails so on its fifth receive or later is sent to the dead-letter
//     queue with the reason retries_exhausted and deleted, as a permanent failure is. An outage
//     never does that: a failure wrapping pipeline.ErrUnavailable (a message timeout caused by a
//     dependency that hangs included), or one of a message during whose processing the receivers
//     paused, is retried whatever its receive count. Receives an outage spent still count (as
//     they do towards a redrive policy). The consumer warns at start about a DLQURL without a
//     redrive policy.
//
// A message that is retried or hidden by an outage on the last receive the queue's redrive policy
// allows (its receive count has reached maxReceiveCount, read from the queue's attributes at start
// and every DepthInterval) will be moved to the dead-letter queue by SQS at its next receive: it is
// logged so, as an error, and counted in
// intake_messages_dead_lettered_total{reason="retries_exhausted"}. While the consumer has not read
// the policy, or the queue has none, nothing is counted. A RedrivePolicy the consumer cannot parse
// is logged and leaves what it knew of the policy unchanged. A message the consumer sends to the
// dead-letter queue itself is counted once its deletion from the queue succeeded (one whose
// deletion failed comes back and is sent again).
//
// A message is never deleted unless Process returned nil for it or it was accepted by the
// dead-letter queue.
//
// # Heartbeat
//
// While a message is processed its visibility is extended by Visibility every Visibility/2
// (ChangeMessageVisibility), the first time Visibility/2 after the message's receive (at once if
// its processing began later than that), so a long inspection is not delivered a second time,
// until the message timeout. An extension that fails is retried after a quarter of that interval (at most
// 2 s) for as long as the visibility it would have extended still runs, instead of at the next
// interval, when the message would already be visible to other consumers; each call is bounded by
// half the interval (and 10 s). An extension refused for good (MessageNotInflight,
// ReceiptHandleIsInvalid, InvalidParameterValue: the message was received again elsewhere, or the
// handle is refused) ends the heartbeat: no retry can succeed. The heartbeat stops, and has
// stopped, before the message is settled.
//
// # Outages
//
// An outage pauses; it never spends a message's receives. When Process reports that a dependency
// is down (an error wrapping pipeline.ErrUnavailable; a pipeline.UnavailableError names it:
// "postgres" from internal/store, "s3" from internal/objstore), every receiver stops receiving at
// once. No message is received to find out whether the dependency is back: the gate calls the
// dependency's Check from Config.Dependencies (the daemon's: a query that fails on a read-only or
// recovering PostgreSQL, a HeadBucket), 1 s after the first error, then with a backoff doubling to
// 30 s (with jitter), each check bounded by 5 s, until it passes; then the receivers resume. An
// outage that names no dependency is checked against all of them; a dependency without a Check
// ends its outage when the backoff does. A dependency reported down while the checks run is
// checked too before the receivers resume.
//
// SQS itself: when deleting settled messages keeps failing for SQS's fault (three batches given
// up in a row, after their retries, with no deletion succeeding in between; receives may still
// work), the receivers pause under "sqs": otherwise every committed message would be received
// and processed again after its visibility timeout until its receives dead-letter it. Its check
// deletes again the last messages given up (and calls the Check of a Dependency named "sqs", if
// configured); once SQS deletes, the receivers resume.
//
// The messages in flight when the outage began fail too. On its first receive, each is hidden
// (ChangeMessageVisibility) until the next check, at least 5 s; a message that an outage fails on
// a later receive is hidden 1 m, 2 m, 4 m, then 8 m (30 s doubled per earlier receive, or the
// pause doubled as often if longer, capped at MaxBackoff; the 1 m-8 m schedule is not capped by
// it). This is not a retry (intake_messages_deferred_total, not intake_messages_retried_total),
// and the 2 s retry schedule does not apply. Messages returned by a long poll during which a
// pause began are hidden the same way without being processed if the pause is still under way
// (if it has ended, they are processed). A message received before the last resume that fails
// after it (its work began during the pause) is hidden for 5 s and starts no new pause.
//
// Receive counts. A message counts one receive each time ReceiveMessage hands it out. With the
// queue's redrive after 5 receives: a message received just before a 5-minute outage (receive 1)
// fails, is hidden for a few seconds, then stays visible in the queue for the rest of the outage,
// but no receiver of this consumer asks for messages while it is paused, so it is received again
// only once the check passed (receive 2), and committed. The length of the outage does not matter.
// What can add receives: (1) other replicas that have not yet seen the outage: each replica
// learns it from the first message it processes, which can be such a message, so a message can
// take at most one receive per replica that was not paused yet; with the default redrive (the
// sixth receive dead-letters) that is safe with up to three other replicas idle at the moment of
// the outage (busy replicas learn from their own messages in flight); (2) a dependency that flaps, whose check passes while its work still fails
// (a lock that makes every statement hit statement_timeout while SELECT 1 answers): each resume
// lets the messages received then fail once more; (3) an outage of part of a dependency (S3
// throttling one hot prefix, a lock on some rows) that the check cannot see, while the other
// messages succeed. Against (2), a resume is confirmed only by a message received after it that
// succeeds; until then a new pause starts from double the last backoff. Against both, a message
// failed by an outage again is hidden 1 m, 2 m, 4 m, 8 m, whatever the pauses: it needs more than
// 7 minutes of such failures before its fifth receive, and more than 15 before its sixth.
//
// A failure that is not an outage (a message timeout included, unless its dependency's check fails
// too: see "Message timeout") is retried as described above, by
// its receive count. ReceiveMessage's own errors (queue unreachable, permission denied) make that
// receiver back off, 1 s doubling to 30 s; each receive is bounded by WaitTime plus 10 s, so a
// half-open connection does not hold a receiver. They are counted
// (intake_consumer_receive_errors_total), and once the last 5 × Receivers receives of all the
// receivers failed, Ready fails ("the last 20 receives failed, since …", with the last error) until
// a receive succeeds.
//
// # Damaged messages
//
// With queue.Lean as its Client (the daemon's), a receive checks each message's MD5OfBody and
// MD5OfMessageAttributes separately: one damaged message does not fail the receive of the others.
// A message whose body does not match is not processed; it stays in the queue and is received
// again after its retry backoff (its receives count towards the redrive policy). With a DLQURL and
// a queue known to have no redrive policy, one that does not match on its fifth receive is sent,
// as received, to the dead-letter queue (reason checksum_mismatch) and deleted; with a redrive
// policy, or while the consumer does not know whether there is one, it is left to the policy,
// which moves the message as the queue stores it. These messages are settled after the receive's
// other messages were handed to the workers, concurrently. A message
// whose attributes alone do not match is processed: the body is all the Processor gets. Both are
// logged with their message id and counted in intake_messages_checksum_mismatch_total{digest}.
// A receive that returns more messages than it asked for has the extra ones made visible again at
// once, unprocessed (counted and logged like a retry when that receive was the last the redrive
// policy allows, as is a message returned unprocessed at shutdown).
//
// While paused, Ready fails with "paused: postgres unavailable since …", and the gauge
// intake_consumer_paused{dependency} is 1 for each dependency found down. When the pause ends,
// the log line "dependency available again: receivers resume" gives its whole length (paused_for,
// from its start).
//
// # Message timeout
//
// Each Process call gets a context that ends after MessageTimeout (default 5 m): a stalled S3 read
// or a hash that cannot finish frees its worker, and the message is retried later by its receive
// count (an object that always stalls reaches the dead-letter queue, as a poison message does).
// The daemon's Processor hands a hash that would wait for a slot, or would not fit in what is left
// of the message's time, to the jobs workers instead (pipeline.ProcessorConfig.HashHandOff), so
// that a backlog of large hashes neither times messages out nor holds the workers.
// When the error of a timed-out message wraps a dependency's outage error (a read of S3 that hung),
// that dependency's check runs once: if it fails too, the dependency hangs rather than refuses, and
// it is an outage like any other (the receivers pause, the message is deferred, no receive is
// spent).
// The heartbeat stops with that context, so a Processor that ignores it does not keep its message
// invisible beyond the deadline and one more Visibility.
//
// # Shutdown
//
// When the context given to [Consumer.Run] is cancelled, no new receive starts. A long poll
// already waiting is not cut: SQS may hand it messages, which an abandoned poll would leave hidden
// for the visibility timeout at the cost of a receive each; it finishes (within WaitTime plus 2 s,
// at most Grace) and its messages are processed like the others. Messages in flight may finish
// within Grace, counted from the cancellation; then their contexts are cancelled and those that did not commit
// are made visible again (ChangeMessageVisibility 0) so another replica takes them without waiting
// for the visibility timeout. Pending deletions are flushed and Run returns nil. Whatever SQS does,
// Run returns within Grace plus 8 s (the daemon waits 10 s past the grace period): the cancelled
// handlers (at most 3 s) and the return of the messages of those that ignore their cancellation
// end 2 s before that deadline, the pending deletions at it.
//
// # Metrics
//
// intake_messages_received_total, intake_messages_acked_total, intake_messages_retried_total,
// intake_messages_deferred_total, intake_messages_timed_out_total,
// intake_messages_dead_lettered_total{reason} (permanent, retries_exhausted, checksum_mismatch, or
// the reason a permanent error names), intake_messages_checksum_mismatch_total{digest},
// intake_messages_ack_failed_total (settled messages left undeleted: not those whose deletion,
// failed for SQS's fault, the check of SQS retries successfully),
// intake_messages_released_total, intake_message_processing_seconds,
// intake_consumer_paused{dependency},
// intake_consumer_heartbeats_total, intake_consumer_inflight, intake_consumer_receive_errors_total
// and intake_queue_depth{queue="main"|"dlq",state="visible"|"inflight"}, polled every 30 s.
//
// Every log line about a message carries its message_id (telemetry.WithAttrs on the context that
// is also passed to Process).
package consumer
