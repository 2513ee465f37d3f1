// Package pipeline is intake's domain: it turns the bodies of SQS messages
// carrying S3 event notifications into [Event] values, and decides which of
// two events for the same object is the newer one.
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
// The Processor runs one decoded event through inspection, validation
// policy, recording and action; it is described with its own type.
package pipeline
