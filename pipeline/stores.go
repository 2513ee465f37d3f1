package pipeline

import (
	"context"
	"errors"
	"time"

	"github.com/google/uuid"
)

// ErrUnavailable marks retryable failures caused by a dependency outage
// (PostgreSQL or S3 unreachable, 500/502/503/504 or 507, throttling). The consumer pauses
// receiving when it sees one. Adapters return an [UnavailableError], which
// matches it and names the dependency: Unavailable(DependencyPostgres, err).
var ErrUnavailable = errors.New("dependency unavailable")

// ErrNotFound is wrapped by [ObjectStore] methods when the object (or the
// version asked for) does not exist in a bucket that does. A missing bucket is
// no missing object: the S3 adapter reports it as an outage ([ErrUnavailable]).
var ErrNotFound = errors.New("object not found")

// ErrChanged is wrapped by [ObjectStore] methods when the object no longer
// has the ETag or version they were asked to read or act on: it was
// overwritten since it was inspected.
var ErrChanged = errors.New("object changed")

// Object statuses, as stored in objects.status.
const (
	// StatusPending is an object known but not inspected yet (not written by the Processor).
	StatusPending = "pending"
	// StatusValid is an object that passed every check.
	StatusValid = "valid"
	// StatusRejected is an object that failed a check; objects.reason says which.
	StatusRejected = "rejected"
	// StatusDeleted is an object whose removal S3 confirmed (a HEAD answered 404
	// while a removal event was processed).
	StatusDeleted = "deleted"
	// StatusMissing is an object announced as created that did not exist when
	// inspected.
	StatusMissing = "missing"
)

// ObjectInfo is what a HEAD request says about an object.
type ObjectInfo struct {
	// Size is the content length in bytes.
	Size int64
	// ContentType is the stored Content-Type ("" when S3 has none).
	ContentType string
	// ETag is the entity tag without quotes.
	ETag string
	// VersionID is the version, in a versioned bucket; else "".
	VersionID string
	// LastModified is when the object was written (second precision).
	LastModified time.Time
	// ContentEncoding is the stored Content-Encoding ("" when S3 has none). intake never signs
	// one, but S3 stores what an uploader adds to a presigned PUT besides the headers it signs.
	ContentEncoding string
}

// ObjectRef names one content of an object: reads and actions through a ref
// fail with [ErrChanged] when the object no longer has this VersionID (when
// set) or ETag (when set).
type ObjectRef struct {
	// Bucket and Key locate the object.
	Bucket, Key string
	// VersionID selects a version in a versioned bucket ("" = latest).
	VersionID string
	// ETag is the expected entity tag, unquoted ("" = any).
	ETag string
}

// ObjectStore is the part of S3 the Processor uses. Errors wrap [ErrNotFound]
// for an object missing from a bucket that exists, [ErrChanged] when a ref's
// ETag no longer matches, and [ErrUnavailable] for throttling, 500/502/503/504/507 and
// transport failures, a missing bucket (an empty volume, a wrong endpoint: S3
// cannot say whether the object exists), credentials or permissions S3
// refuses for the whole store (not for one object), and an answer cut off.
// Other errors are the one object's: its message is retried, then
// dead-lettered. The adapter is internal/objstore.Objects.
type ObjectStore interface {
	// Head returns the object's metadata.
	Head(ctx context.Context, bucket, key string) (ObjectInfo, error)
	// ReadPrefix returns the first n bytes of the object (fewer if it is
	// shorter) with one ranged GET.
	ReadPrefix(ctx context.Context, obj ObjectRef, n int) ([]byte, error)
	// Hash streams the whole object through SHA-256 in constant memory and
	// returns the digest and the number of bytes read.
	Hash(ctx context.Context, obj ObjectRef) (sum []byte, n int64, err error)
	// Tag merges tags into the object's tag set.
	Tag(ctx context.Context, obj ObjectRef, tags map[string]string) error
	// Move copies the object to dstKey in the same bucket, then deletes the
	// source. copied reports whether dstKey holds the copy when Move returns,
	// also when err is set (the source replaced or deleted between the copy and
	// its deletion: ErrChanged, ErrNotFound), so that the copy is recorded.
	Move(ctx context.Context, obj ObjectRef, dstKey string) (copied bool, err error)
	// Delete deletes the object.
	Delete(ctx context.Context, obj ObjectRef) error
}

// Intent is an upload handed out by the API (a row of uploads), as the
// Processor needs it.
type Intent struct {
	// ID is the upload id.
	ID uuid.UUID
	// Owner is who asked for the upload.
	Owner string
	// Method is put, post or multipart.
	Method string
	// ContentType is the declared content type.
	ContentType string
	// Size is the declared size in bytes, meaningful only when SizeDeclared.
	Size int64
	// SizeDeclared is false for intents created without a size (Uppy's S3
	// routes): the object's size is then not compared with Size.
	SizeDeclared bool
	// SHA256 is the declared digest, or nil.
	SHA256 []byte
	// MultipartUploadID is the S3 upload id of a multipart upload, or "".
	MultipartUploadID string
	// Status is pending, completed, aborted or expired.
	Status string
}

// Record is one state of one object, written by [RecordStore.Record] only
// if it is newer than the stored one.
type Record struct {
	// Bucket and Key identify the object.
	Bucket, Key string
	// Status is one of the Status* constants; Reason explains a rejected
	// or missing status ("" = NULL).
	Status, Reason string
	// VersionID, ETag, ContentType and SniffedType describe the content ("" = NULL).
	VersionID, ETag, ContentType, SniffedType string
	// Size is the content length; nil for deleted and missing objects.
	Size *int64
	// SHA256 is the computed digest, or nil when not computed.
	SHA256 []byte
	// Width and Height are image dimensions (0 = unknown).
	Width, Height int
	// Owner and UploadID come from the matching intent ("" and uuid.Nil = none).
	Owner    string
	UploadID uuid.UUID
	// Sequencer is the event's [SequencerKey] ("" = none).
	Sequencer string
	// EventTime is the event time (zero = none, older than any time).
	EventTime time.Time
	// ObservedAt is when the state was observed in S3: the [Lookup.At] read
	// before the HEAD or ranged GET that saw it (zero = not an observation,
	// older than any). The record with the later ObservedAt decides the row;
	// see the package documentation, "Order and idempotency".
	ObservedAt time.Time
	// Observed is true when the record reflects what S3 showed during this
	// processing (a HEAD or a 404); the Processor's records always do. It
	// settles ties between records of the same ObservedAt without
	// sequencers: then only an observed record with other content replaces
	// the row.
	Observed bool
	// CompleteIntent, when not uuid.Nil, is the upload to mark completed in
	// the same transaction.
	CompleteIntent uuid.UUID
}

// Recorded is the row as it stands after [RecordStore.Record].
type Recorded struct {
	// Applied is true when the record changed the row's state (or created
	// the row); a record that only moved its observation time is not applied.
	Applied bool
	// Status, Reason, ETag and VersionID are the stored values ("" = NULL).
	Status, Reason, ETag, VersionID string
}

// ArchivedEvent is one message body kept in the events table.
type ArchivedEvent struct {
	// MessageID is the SQS message id (or the replay source's id).
	MessageID string
	// Bucket, Key and EventName describe the first event of the body ("" = NULL).
	Bucket, Key, EventName string
	// Outcome summarises what the Processor did, e.g. "created:valid".
	Outcome string
	// Body is the raw message body.
	Body string
}

// Lookup is what the Processor learns from PostgreSQL before it looks at an
// object.
type Lookup struct {
	// Intent is the upload intent of (bucket, key), or nil when there is none.
	Intent *Intent
	// At is the database's clock when the lookup ran. Any look at S3 made
	// after the lookup returned happened after At, so At stamps that
	// observation ([Record.ObservedAt]) on one clock for every replica.
	At time.Time
}

// RecordStore is the part of PostgreSQL the Processor uses. Errors caused by
// an unreachable database wrap [ErrUnavailable]. The adapter is
// internal/store.Records.
type RecordStore interface {
	// Lookup returns the upload intent of (bucket, key), if any, and the
	// database's time.
	Lookup(ctx context.Context, bucket, key string) (Lookup, error)
	// Record upserts the object row: it replaces the row's state if rec's
	// observation is later (on equal observation times, if rec's event is
	// newer: sequencers when both have one, else event times; see
	// [Record.Observed] for ties), keeps the greatest observation time,
	// sequencer and event time, marks rec.CompleteIntent completed, all in
	// one transaction, and returns the row as it stands.
	Record(ctx context.Context, rec Record) (Recorded, error)
	// Archive stores a raw message body.
	Archive(ctx context.Context, ev ArchivedEvent) error
}

// HashHandOff takes an event's inspection out of its message when its hash would have to wait for
// a slot, or would outlast the message's time ([ProcessorConfig.HashHandOff]): the inspection is
// queued to run later on other workers (the daemon's: an object:inspect task on the jobs workers,
// whose share per owner bounds one tenant's backlog), with the event's semantics
// ([Processor.InspectHandedOff]), and the message is done once it is queued.
type HashHandOff interface {
	// InspectLater queues an inspection of h's object that will look at the object as it is when
	// it runs. It reports false, and no error, when it queued nothing because an inspection of the
	// object is already queued or under way (one may have read an older version of the object):
	// the caller then inspects the object itself. An error means nothing was queued either.
	InspectLater(ctx context.Context, h HandedOff) (bool, error)
}

// HashHandOffFunc adapts a function to a [HashHandOff].
type HashHandOffFunc func(ctx context.Context, h HandedOff) (bool, error)

// InspectLater calls f.
func (f HashHandOffFunc) InspectLater(ctx context.Context, h HandedOff) (bool, error) {
	return f(ctx, h)
}

// HandedOff is an event's inspection handed off ([HashHandOff]).
type HandedOff struct {
	// Bucket and Key name the object.
	Bucket, Key string
	// Sequencer and EventTime are the event's (after [Processor]'s checks: an implausible
	// sequencer is empty, a future time clamped), for [Processor.InspectHandedOff].
	Sequencer string
	EventTime time.Time
	// Removal is set when the event's body also removed the object (events of one object in a
	// body are processed as one): an object then found gone is recorded deleted, not missing.
	Removal bool
	// HashTime is how long the object's hash is expected to take at [HashRate]: the queued
	// inspection's timeout must leave room for it.
	HashTime time.Duration
	// LookedUpAt is the time of the lookup (PostgreSQL's, [Lookup].At) made before the event's
	// inspection began, after the event was received: an observation of the object at or after
	// it covers the event. Zero when not known.
	LookedUpAt time.Time
	// Outlasts is set when the hash would not end within what is left of the message's time: the
	// event cannot be inspected in its message, and an inspection of the object already queued or
	// running (one that may have read an older version included) is better than none, when the
	// hand-off recorded it durably.
	Outlasts bool
}

// MultipartCanceller cancels the delayed "abort if unfinished" task of a
// multipart upload once intake saw its object (an event's inspection, or a
// re-inspection, found it): an event alone cancels nothing.
type MultipartCanceller interface {
	// CancelMultipartAbort cancels the abort task of the S3 multipart upload id.
	CancelMultipartAbort(ctx context.Context, uploadID string) error
}
