// Package pipeline is intake's domain: it turns the bodies of SQS messages
// carrying S3 event notifications into [Event] values, decides which of two
// events for the same object is the newer one, and runs each event through
// inspection, validation policy, recording and action ([Processor]).
//
// # Decoding
//
// [Decode] parses one message body. It accepts every shape that reaches the
// queue: an S3 notification ({"Records":[...]}) as sent by AWS (eventName
// "ObjectCreated:Put") or by MinIO and emulators ("s3:ObjectCreated:Put"),
// MinIO's webhook wrapper around it, the s3:TestEvent that S3 sends when a
// notification is configured, an SNS envelope around any of those (one level
// only), and an EventBridge "Object Created" or "Object Deleted" event.
//
// Object keys arrive form-encoded: '+' is a space and %XX an escaped byte, so
// "dir%2Fa+b%2Bc" is the key "dir/a b+c". Decoded keys are valid UTF-8.
//
// Each event is classified by its [Kind]: created objects are inspected,
// removed ones are marked deleted, tagging and ACL changes (including MinIO's
// "ObjectCreated:PutTagging") never trigger a new inspection, test events are
// acknowledged and logged, and anything else is [KindUnknown], which is not
// an error.
//
// A body that cannot be decoded will never decode: every error returned by
// [Decode] wraps [ErrPermanent], and the consumer sends such messages to the
// dead-letter queue instead of retrying them.
//
// # Ordering
//
// S3 delivers events at least once and in no particular order. For one
// (bucket, key), the sequencer orders events: [CompareSequencer] compares two
// sequencers after right-padding the shorter with '0', and [SequencerKey]
// gives a fixed-width form whose byte order is the same, for storage and
// comparison in PostgreSQL. [Newer] decides whether an event supersedes
// another, falling back to the event time when a sequencer is missing (as
// with some emulators). Equal events are duplicates and change nothing.
//
// # Processing
//
// A [Processor] runs each event of a body through inspect → verdict →
// record → act, using S3 and PostgreSQL through the small [ObjectStore] and
// [RecordStore] interfaces (adapters: internal/objstore.Objects and
// internal/store.Records). [Processor.Process] handles one SQS message body;
// [Processor.InspectObject] inspects one object without an event (reconcile,
// the object:inspect task). By kind:
//
//   - test and unknown events are logged and acknowledged;
//   - tagging and ACL events do nothing: the content did not change, so the
//     verdict stands (intake's own tagging action produces such events);
//   - removed events mark the row deleted (creating it if absent), with the
//     owner of the key's intent, if the event is newer than the row;
//   - created events are inspected, judged, recorded, then acted on.
//
// Inspection HEADs the object. A 404 records it as missing (reason
// "not_found") and the message is acknowledged; a bucket that does not exist
// answers HEAD with the same bare 404, so it reads as a missing object too.
// An object under any rule's quarantine prefix is recorded as rejected with
// reason "quarantined" and goes no further: it is never sniffed, hashed or
// acted on again. Otherwise one ranged GET reads the first [SniffLen] bytes,
// which gabriel-vasile/mimetype sniffs and, for PNG, JPEG and GIF,
// image.DecodeConfig measures (no dimensions when the header lies further).
// The checks then run in this order, the first failure giving the reason:
// the intent's declared size (when it declared one), the intent's declared
// content type against S3's, the rule's max size and allowed types
// ([Rule.CheckDeclared] on S3's content type), the sniffed type against the
// declared one when the rule has RequireSniffMatch ([SniffAgrees]), and last,
// only if all passed, the SHA-256: computed by streaming the whole object
// when the intent declared one or the object is no larger than HashMaxSize,
// compared with the declared digest, recorded either way. Every read is
// conditional on the ETag (and version) that HEAD returned; when the object
// is replaced mid-inspection the inspection starts over, up to three times.
//
// The intent is the uploads row of (bucket, key): it gives the owner and
// upload id, and a created event marks it completed (aborted intents stay
// aborted). When its method is multipart, the configured
// [MultipartCanceller] is told, so the delayed abort task is cancelled; its
// errors are logged, not returned.
//
// # Order and idempotency
//
// A row only moves forward. [RecordStore.Record] upserts it only when the
// event is newer than the stored one: by sequencer when both have one
// (stored as [SequencerKey] in a COLLATE "C" column, so SQL compares them as
// S3 does), else by event time, a missing time being the oldest. An equal
// event is a duplicate and changes nothing. The content recorded always
// comes from HEAD, never from the event, so processing an old event late
// records the current content; the newest event then records the same.
// Hence a stream processed in any order, with duplicates, concurrently,
// ends in the same rows (tested with shuffled streams on real MinIO objects
// and PostgreSQL).
//
// Emulators such as kumo send no sequencer and times to the second, so
// events of one key often tie. On a tie without sequencers, what S3 shows
// now decides: a record made from an observation (a HEAD, or a 404) replaces
// a row with other content, and between two absent states deleted replaces
// missing, so ties converge too. A removal without sequencer therefore
// HEADs the object: it counts as an observation only if the object is gone.
//
// [Processor.InspectObject] records with no sequencer and the object's
// LastModified as its time: it fills a missing row and refreshes a stale one,
// but never overrides a row written for a later event.
//
// # Record, then act
//
// The verdict is committed before the action (tag intake-status=rejected and
// intake-reason=<reason>, move under the rule's quarantine prefix, or delete).
// The other order would lose the reason of a crash between the two: the
// redelivered event would find the object moved or deleted and record it
// as missing, and a deleted object cannot be inspected again. With record
// first, a crash before or during the action leaves a committed row that
// still says rejected for this very content (same ETag); the redelivered
// event is a duplicate for the row but re-acts, since the Processor acts
// whenever the stored row is rejected for the content it inspected. Every
// action is idempotent and conditional on that content: tags are merged,
// a move copies with x-amz-copy-source-if-match then deletes, and an object
// already gone or replaced is left alone (its own events follow).
//
// Destructive actions change S3 itself, so order independence holds for
// the recorded verdicts, not for what a later event finds: after a
// quarantine, the removal event S3 sends for the original key marks it
// deleted, and the quarantined copy's event records it as "quarantined".
//
// # Errors
//
// Process returns nil once every effect is committed. Only a body that
// cannot be decoded returns an error wrapping [ErrPermanent]. Errors wrapping
// [ErrUnavailable] come from the adapters when PostgreSQL or S3 is
// unreachable, throttling or failing (5xx). Other errors are retried too:
// S3 refusing a request (403, or 400 for an invalid bucket name in an event)
// may be a permission to fix, so such messages go to the dead-letter queue
// through the redrive policy after their retries, not at once.
//
// With Archive set, each body is stored in the events table with its message
// id and outcome ("created:valid", "created:rejected:sniff_mismatch",
// "removed:deleted:stale", "malformed"...), after its effects are committed;
// a redelivered body is archived again. Invalid UTF-8 and NUL bytes, which
// PostgreSQL text refuses, are replaced by U+FFFD; an archive failure other
// than an outage is logged and does not fail the message.
package pipeline
