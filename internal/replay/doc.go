// Package replay moves S3 event messages back into intake's queue: from a dead-letter queue
// ([MoveDLQ], [DryRunDLQ], [MoveNative]) or from archived bodies, a JSONL file or the events
// table ([Resend] with [FileSource] or [ArchiveSource]).
//
// # Never lose a message
//
// [MoveDLQ] receives a batch from the dead-letter queue (the messages stay there, invisible for
// the visibility timeout), sends it to the target queue with SendMessageBatch, and deletes from the
// dead-letter queue only the entries that the target accepted (the batch's Successful list). A
// process killed at any moment therefore loses nothing: a message is either still in the
// dead-letter queue (it becomes visible again when its visibility timeout ends) or already in the
// target queue; at worst it is in both, a duplicate that intake's pipeline absorbs (processing an
// event twice ends in the same rows). Entries that fail to send are retried while the failure is
// the server's; the others stay in the dead-letter queue and are counted.
//
// Body, message attributes and, for FIFO targets, the message group id are preserved. A FIFO
// target's deduplication id is the run's id and the message id: stable within a run (a retried
// send is deduplicated by SQS), new in the next one (the original id, deduplicated by SQS for five
// minutes, would have a message replayed again within that time accepted, never delivered, and
// deleted from the dead-letter queue). [Resend] gives each body of a run the run's id and a
// sequence number, never a clock reading, which two batches could share.
//
// # Bounded by what was there
//
// [MoveDLQ] moves the messages the dead-letter queue holds when it starts, as SQS's own move task
// does: it reads the count of messages (visible and in flight) and the time first ([StartDLQ]),
// moves at most that many (or Max), and skips messages sent after that time or already moved by this run (a moved
// message the consumer fails on again comes back with the id its send got, through the redrive
// policy, or naming it in intake-source-message-id, when the consumer dead-letters it itself). So
// a message that fails for good is moved once per run, and the run ends however fast the consumer
// sends it back. A message the run receives again (its send or its delete failed, and its
// visibility ended) is not a new one: it is deleted if it was sent, else left. Skipped messages are
// made visible again when the run ends; past a bound of skipped or repeated receipts (the
// dead-letter queue filling faster than the run drains it) the run stops, and says so (SkipLimit).
// A dry run ([DryRunDLQ]) ends the same way, its count then marked Partial. Both results count the
// messages present at the start that the run never received (Unreached): in flight for the whole
// run (held by another reader, such as a stopped replay), they are still in the dead-letter queue.
// A message redriven into the dead-letter queue during the run keeps the SentTimestamp of its first
// send, before the start: the run cannot tell it from one present at the start, and moving it uses
// up the place of one that is then left. So a move ends by looking at what is left rather than
// trusting SQS's approximate count (see [DLQResult.Unaccounted]): it receives the visible messages
// without moving them, and gives them back at once. Those that arrived during the run, even after
// its last receive (new ones, or moved ones dead-lettered again), are skipped; those sent before
// the start that it never received, and the messages in flight beyond those it knows of, are left
// behind. They cap Unreached (a count at the start that was too high leaves nothing behind), and
// what they hold beyond it and the messages past Max is Unaccounted: not zero, messages present at
// the start may be left.
//
// # Stopping
//
// A stop (ctx cancelled: Ctrl-C, SIGTERM) never aborts a receive, which could leave the messages
// SQS had taken hidden with nobody to move them or give them back: the receive ends within its
// long-poll wait and its batch is finished. [MoveNative] does not abort StartMessageMoveTask
// either: it cancels the task it started. [FileSource] returns at once, even while its input
// blocks.
//
// # Batch size
//
// Every SendMessageBatch carries at most ten entries and 256 KiB of payload (bodies and message
// attributes); a larger entry goes alone. replay dlq, replay file and replay archive cut their
// batches with the same code.
//
// # Native moves
//
// [MoveNative] asks SQS to do the move (StartMessageMoveTask) and follows the task until it ends.
// Emulators such as kumo lack the call; [ErrNativeUnsupported] says so.
//
// # Rate and concurrency
//
// Every path takes a rate in messages per second ([ParseRate] reads "200", "200/s" or "6000/m")
// and a number of concurrent workers; each worker handles one batch of up to ten at a time.
package replay
