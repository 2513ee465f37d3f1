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
// Object keys of S3 notifications arrive form-encoded: '+' is a space and %XX an escaped byte, so
// "dir%2Fa+b%2Bc" is the key "dir/a b+c". EventBridge events carry the key as it is. Keys are valid
// UTF-8, without NUL.
//
// Each event is classified by its [Kind]: created objects are inspected,
// removed ones are marked deleted, tagging and ACL changes (including MinIO's
// "ObjectCreated:PutTagging") never trigger a new inspection, test events are
// acknowledged and logged, and anything else is [KindUnknown], which is not
// an error. MinIO's "ObjectRemoved:NoOP", sent for a delete of a key or
// version it does not have, removed nothing and is [KindUnknown] too.
//
// A body that cannot be decoded will never decode: every error returned by
// [Decode] wraps [ErrPermanent], and the consumer sends such messages to the
// dead-letter queue instead of retrying them. So do bodies no S3 sends,
// whose retries would only repeat the work they ask for: more than
// [MaxRecords] records (S3 sends one), a key longer than [MaxKeyLen] bytes
// (S3's limit), a version id longer than [MaxVersionIDLen] bytes or holding
// a control character.
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
// Events are hints, S3 is the truth: what a row says is decided by when
// intake looked at the object, not by the sequencer or time an event claims
// (see "Order and idempotency" below). Sequencers only break ties between
// observations made at the same instant.
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
//   - removed events HEAD the object: only a 404 (no object, or a delete
//     marker, under the key) confirms the removal, which marks the row
//     deleted (creating it if absent) with the owner of the key's intent,
//     without the event's version id (the 404 confirms none), whatever the
//     intent's status (a removal read while the creation is still being
//     inspected sees it pending). The deletion is notified (upload.deleted)
//     only for an object intake saw present: a removal of an upload that never
//     landed (forged, or a stray delete marker) leaves a tombstone that
//     notifies nobody, and a creation that saw the object before the removal
//     did, committed after it, notifies the deletion then. An
//     object S3 still has is never marked deleted, whatever the event says:
//     a forged or stray event, the removal of a non-current version, a key
//     written again since; the event is counted in
//     intake_events_distrusted_total{reason="removal_unconfirmed"}. The
//     deletion of one version (ObjectRemoved:Delete naming a version id, not
//     a lifecycle expiration) has the object looked at again as
//     [Processor.InspectObject] does, so that a version the removal made
//     current replaces the row's; when the row already says what S3 holds,
//     nothing changes. intake's own record of a delete or move
//     it made, finding the key written again before its HEAD, changes
//     nothing and is not counted: nothing forged it, and the new object's own
//     event records it; when intake deleted one version (a versioned bucket),
//     the object it finds is the version that deletion made current, which no
//     event announces, and it is looked at again the same way;
//   - created events are inspected, judged, recorded, then acted on.
//
// The created and removed events of one (bucket, key) in one body are
// processed as one: only the newest ([Newer]; of equal ones, the last in the
// body) is, at its place in the body, and the object is looked at (and
// hashed) once, not once per event; the others are archived as
// "created:superseded" or "removed:superseded". What the others ask for is
// kept, so that the row ends as processing every event in order would leave
// it (S3 not changing meanwhile): a removal that finds the object inspects it
// when the body also announced its creation (or the deletion of a version),
// and a creation that finds nothing records it deleted when the body also
// announced its removal. S3 sends one record per message: a body naming an
// object up to [MaxRecords] times is forged (the ingress token) or an
// emulator's, and would otherwise cost as many full reads of the object on
// each of its receives.
//
// Every event names a bucket: one intake is not configured for
// ([ProcessorConfig.Buckets]) refuses the whole message before anything of it
// is looked at, recorded or acted on, with a [Refusal] of reason
// [ReasonForeignBucket] (the consumer dead-letters it under that reason).
// [Processor.InspectObject] refuses such a bucket the same way. Test events,
// which carry no object, are exempt.
//
// Inspection looks at the object with one ranged GET of its first [SniffLen]
// bytes, whose answer carries the metadata too ([Peeker], which the S3
// adapter implements; a store without it: a HEAD, then a ranged GET
// conditional on HEAD's ETag). That first request is unconditional: what it
// returns is the content judged. An empty object has no byte 0 (416): its
// metadata comes from a HEAD, which must still show an empty object, or the
// object changed in between and the inspection starts over (see below).
// An object S3 says is missing (NoSuchKey, or a HEAD's 404 once a HeadBucket
// found the bucket) is recorded as missing (reason "not_found"; deleted under
// a rule whose action is delete: intake may have deleted it on an attempt
// that died before recording it) and the message is
// acknowledged. A bucket that does not exist is not a missing
// object: S3's adapter reports it as an outage of S3 ([ErrUnavailable]),
// since an empty volume or a wrong endpoint says nothing of the object.
// An object under any rule's quarantine prefix is only HEADed, recorded as
// rejected with reason "quarantined" and goes no further: it is never
// sniffed, hashed or acted on again. The prefix read is sniffed by
// gabriel-vasile/mimetype and, for PNG, JPEG and GIF, measured by
// image.DecodeConfig (no dimensions when the header lies further).
// The checks then run in this order, the first failure giving the reason:
// the intent's declared size (when it declared one), the intent's declared
// content type against S3's, the rule's max size and allowed types
// ([Rule.CheckDeclared] on S3's content type), the sniffed type against the
// declared one when the rule has RequireSniffMatch ([SniffAgrees]), and last,
// only if all passed, the SHA-256: computed by streaming the whole object
// when the intent declared one or the object is no larger than HashMaxSize,
// compared with the declared digest, recorded either way. Every read after
// the first (the hash; without Peek, the prefix too) is conditional on the
// ETag (and version) the first returned; when the object is replaced
// mid-inspection (a conditional read fails, or an empty object's HEAD finds
// another one), or deleted before its hash is read, the inspection starts
// over, up to three times (a deleted object is then recorded missing).
//
// Hashes of objects over [HashSlotMinSize] take one of HashConcurrency's
// slots, shared fairly between owners. With [ProcessorConfig.HashHandOff],
// an event's inspection whose hash finds no slot free at once, or would not
// end within what is left of its context at [HashRate], is not kept waiting
// when the hand-off queues it (otherwise it waits as without one):
// it is queued with its event ([HashHandOff]; the daemon's is worker/jobs'
// HandOff, which records it in PostgreSQL before it queues an object:inspect
// task), the task runs it with the event's semantics
// ([Processor.InspectHandedOff]) and records the verdict, and the event is done
// with nothing recorded. An inspection without an event never hands off.
//
// The intent is the uploads row of (bucket, key): it gives the owner and
// upload id, and an inspection that finds the object marks it completed
// (pending, expired, or aborted by an abort that raced the completion). When
// its method is multipart, the configured [MultipartCanceller] is then told,
// so the delayed abort task is cancelled; its errors are logged, not
// returned. An event whose object S3 does not have completes nothing and
// cancels nothing: a stray or forged ObjectCreated:CompleteMultipartUpload
// must not end an upload still in progress. An upload deleted before intake
// looked keeps its intent pending, for the expiry (a multipart upload: its
// deadline abort) to settle.
//
// # Order and idempotency
//
// Every record is an observation: the content comes from HEAD or the ranged
// GET (or their 404), never from the event. Before it looks, the Processor
// looks up the key's intent, and that lookup returns PostgreSQL's clock
// ([Lookup.At]); the observation made after it is stamped with that time
// ([Record.ObservedAt], objects.observed_at). One clock for every replica,
// read before the look, so an observation made later is never stamped
// earlier than one made before it.
//
// [RecordStore.Record] lets the latest observation decide the row: a record
// replaces the row's state only if it was observed later (a row from before
// observation times, NULL, is the oldest). Between two absent states (deleted
// and missing) only the label moves, missing to deleted, whatever the times.
// Among records observed at the same instant (their lookups answered by one
// statement), the older rules settle it: the newer sequencer, else the later
// event time, else an observation with other content, else deleted over
// missing. The observation time, sequencer and event time of a row keep the
// greatest value recorded, and a record that finds the same state only moves
// the observation time forward; an equal event is therefore a duplicate.
//
// Why it converges to what S3 shows: each change of an object is followed by
// its event, whose processing looks up (after the event was received, so
// after the change) and then looks at S3; its observation is stamped after
// the change and sees it or something newer. Whatever order the commits come
// in, nothing stamped before the last change can replace what an observation
// after it recorded. A processing that stalls between its look and its commit
// commits an older observation, which loses. A forged event with a sequencer
// of "FFFF…" or a time in the future pins nothing: it is one more look at S3.
// Hence a stream processed in any order, with duplicates, concurrently, ends
// in the same rows (tested with shuffled streams on real MinIO objects and
// PostgreSQL, with races between stalled and fresh processings, and with
// forged events through the ingress). The clock is PostgreSQL's: a step
// backwards of its clock could let an older observation win until the next
// event or reconcile of the key.
//
// [Processor.InspectObject] (reconcile, the object:inspect task) records an
// observation like any other: it repairs a row marked deleted while the
// object exists, a row whose event was lost, and loses only to later looks.
//
// # What an event is not taken at its word for
//
// A sequencer longer than [MaxPlausibleSequencer] digits, or holding anything
// but hexadecimal digits, is dropped, never a reason to refuse the body
// ([Decode] decodes the event as if it had none), and an eventTime further than
// [ProcessorConfig.EventTimeTolerance] in the future is clamped to the time of
// processing (clamped rather than refused: a store's clock may run a little
// ahead, and the event is still a good hint of where to look). Neither value
// decides what a row says; these checks keep forged values out of the objects
// table and the event-age histogram. Both are counted in
// intake_events_distrusted_total. MinIO's sequencer is its modification time
// in nanoseconds, unpadded hexadecimal, from the clock of the node that took
// the request (not synchronized between nodes), and its tagging events reuse
// the sequencer of the version they tag; emulators such as kumo send none.
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
// already gone or replaced is left alone (its own events follow); a
// quarantine copy made before the source turned out replaced or gone is
// recorded all the same.
//
// Destructive actions change S3 itself, so order independence holds for
// the recorded verdicts, not for what a later event finds. A quarantine or
// a delete records its own effect before the message is acknowledged, as S3
// shows it right after: the original key deleted (a HEAD that finds
// nothing), the quarantined copy "quarantined" (a HEAD of the copy). In a
// versioned bucket the action deletes the inspected version, which makes the
// previous one current without any creation event: when the HEAD finds such
// a version, it is inspected at once, as [Processor.InspectObject] would. The
// events S3 sends for them record the same again and change nothing. They
// alone would not do: MinIO sends an event only when the request succeeds
// for the client, and a copy committed for a client that died mid-request
// has none; the retry then finds the copy in place and only deletes the
// source (the fault suite lost a copy's row that way). A redelivered event
// that finds the source already gone (an attempt died after the copy, during
// or after the source's delete, before recording the move) cannot act, so it
// looks for the copy under the quarantine prefix; if S3 holds it, it records
// the copy and the source deleted (moved away), as the finished attempt
// would have, rather than missing: the delete's own event may never have
// been sent either.
//
// # Errors
//
// Process returns nil once every effect is committed. Only a body that
// cannot be decoded, or that names a bucket intake does not serve (a
// [Refusal]), returns an error wrapping [ErrPermanent] (unless its archive
// failed for an outage or an ended ctx: see below). Errors wrapping
// [ErrUnavailable] come from the adapters when PostgreSQL or S3 is
// unreachable, throttling or failing (500, 502, 503, 504; 507, a full disk), and when S3 refuses intake as a
// whole: its credentials (an expired or invalid session token, an unknown
// access key, a signature it does not accept), or an AccessDenied that a
// HeadBucket of the same bucket confirms (refused too). Such a refusal is
// no message's fault: the consumer pauses and checks S3 instead of spending
// every message's receives and dead-lettering the queue. Other errors are
// the one message's, and retried: S3 refusing one object (an AccessDenied
// while the bucket answers, such as a KMS key intake may not use; a 400 for
// an invalid bucket name in an event) may be a permission to fix, and a 409
// (a request racing another on the object) may pass, so such messages go to
// the dead-letter queue through the redrive policy after their retries, not
// at once.
//
// With Archive set, each body is stored in the events table with its message
// id and outcome ("created:valid", "created:rejected:sniff_mismatch",
// "removed:deleted", "removed:unconfirmed", "malformed",
// "refused:foreign_bucket"...), after its effects are committed;
// a redelivered body is archived again. Invalid UTF-8 and NUL bytes, which
// PostgreSQL text refuses, are replaced by U+FFFD; an archive failure other
// than an outage, or than ctx ending (a shutdown between the commit and the
// archive), is logged and does not fail the message. An outage or an ended
// ctx does: the message is retried, to be archived. A refused body
// ("malformed", "refused:foreign_bucket") follows the same rule: its archive
// failing for an outage or an ended ctx returns that error (wrapping
// [ErrUnavailable] for an outage, so the consumer pauses), not the refusal,
// so that it is dead-lettered only once archived.
package pipeline
