// Package consumer is the SQS runtime that drives the pipeline: it long-polls the queue of S3 event
// notifications, hands each message to a [Processor], and settles the message according to the result.
//
// # Flow control
//
// Several receivers long-poll the queue concurrently, but a receiver only asks for as many messages
// as there are free worker slots: when the pool of Workers is busy the receivers wait, so nothing is
// received that cannot be processed at once (a received message's visibility timeout is running).
// Each message is processed in its own goroutine, holding one slot.
//
// # Settling a message
//
//   - Process returns nil: the effect is committed; the message is deleted, in batches of up to ten
//     (DeleteMessageBatch) flushed when full or after a few milliseconds. Entries the server reports
//     as failed are retried when the fault is the server's and logged and counted otherwise: such a
//     message is delivered again and processed again, which the pipeline makes harmless.
//   - The error wraps pipeline.ErrPermanent: the message can never succeed. With a DLQURL it is sent
//     to the dead-letter queue (body, attributes and the reason as the intake-dlq-reason attribute)
//     and only then deleted. Without one it is left to the queue's redrive policy: its visibility is
//     set short so that its receive count reaches maxReceiveCount quickly. When the queue has no
//     redrive policy the message is hidden for MaxBackoff instead, so a poison message is not
//     retried in a hot loop.
//   - Any other error: the message is retried later. Its visibility is set to an exponential backoff
//     computed from ApproximateReceiveCount (RetryBase doubled per receive, capped at MaxBackoff, with
//     jitter).
//
// A message is never deleted unless Process returned nil for it or it was accepted by the
// dead-letter queue.
//
// # Heartbeat
//
// While a message is processed its visibility is extended by Visibility every Visibility/2
// (ChangeMessageVisibility), so a long inspection is not delivered a second time. The heartbeat
// stops, and has stopped, before the message is settled.
//
// # Outages
//
// When Process reports that a dependency is down (pipeline.ErrUnavailable), every receiver pauses,
// for 1 s doubling up to 30 s, instead of receiving messages that would fail too. When a pause ends
// a single receiver probes with a single message; the first success resumes everyone, another
// outage error doubles the pause. Only results of messages received after the pause began count,
// so a burst of failures from messages already in flight does not inflate the pause. Errors of
// ReceiveMessage itself (queue unreachable) make that receiver back off the same way. The
// intake_consumer_paused gauge is 1 while paused.
//
// # Shutdown
//
// When the context given to [Consumer.Run] is cancelled, receiving stops at once. Messages in
// flight may finish within Grace; then their contexts are cancelled and those that did not commit
// are made visible again (ChangeMessageVisibility 0) so another replica takes them without waiting
// for the visibility timeout. Pending deletions are flushed and Run returns nil.
//
// # Metrics
//
// intake_messages_received_total, intake_messages_acked_total, intake_messages_retried_total,
// intake_messages_dead_lettered_total{reason}, intake_messages_ack_failed_total,
// intake_messages_released_total, intake_message_processing_seconds, intake_consumer_paused,
// intake_consumer_heartbeats_total, intake_consumer_inflight, intake_consumer_receive_errors_total
// and intake_queue_depth{queue="main"|"dlq",state="visible"|"inflight"}, polled every 30 s.
//
// Every log line about a message carries its message_id (telemetry.WithAttrs on the context that
// is also passed to Process).
package consumer
