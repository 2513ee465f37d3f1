package pipeline

import (
	"strconv"
	"strings"
	"time"
)

// Kind classifies a notification by what it means for the object.
type Kind int

// The kinds of events, by the effect they have on the object's record.
const (
	// KindUnknown is any event intake does not act on (ObjectRestore,
	// Replication, ObjectAccessed, unknown EventBridge detail types, MinIO's
	// ObjectRemoved:NoOP: a delete of a key or version that did not exist,
	// which changed nothing...).
	KindUnknown Kind = iota
	// KindCreated is ObjectCreated:* (except MinIO's tagging, retention and
	// legal hold events): the object must be inspected.
	KindCreated
	// KindRemoved is ObjectRemoved:* (except MinIO's ObjectRemoved:NoOP and
	// ObjectRemoved:DeleteTagging), LifecycleExpiration:* and EventBridge
	// "Object Deleted": the object may be gone.
	KindRemoved
	// KindTagging is ObjectTagging:* and MinIO's ObjectCreated:PutTagging,
	// ObjectCreated:DeleteTagging and ObjectRemoved:DeleteTagging. The
	// content did not change, so it must not be re-inspected.
	KindTagging
	// KindACL is ObjectAcl:Put and MinIO's ObjectCreated:PutRetention and
	// ObjectCreated:PutLegalHold: metadata only.
	KindACL
	// KindTest is the s3:TestEvent sent when a notification is configured.
	KindTest
)

var kindNames = [...]string{
	KindUnknown: "unknown",
	KindCreated: "created",
	KindRemoved: "removed",
	KindTagging: "tagging",
	KindACL:     "acl",
	KindTest:    "test",
}

// String returns the lower-case name of the kind ("created", "removed"...),
// or "Kind(N)" for a value outside the defined kinds.
func (k Kind) String() string {
	if k >= 0 && int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "Kind(" + strconv.Itoa(int(k)) + ")"
}

// Event is one decoded notification about one object.
type Event struct {
	// Kind classifies the event; see [Kind].
	Kind Kind
	// Name is the event name without any "s3:" prefix, e.g.
	// "ObjectCreated:Put". EventBridge events are named after their detail
	// type and reason ("ObjectCreated:PutObject", "ObjectRemoved:DeleteObject"),
	// or carry the detail type itself when it is not one intake acts on.
	// Test events are named "TestEvent".
	Name string
	// Source is "aws:s3", "minio:s3", "aws.s3" (EventBridge), or "" for
	// test events.
	Source string
	// Region is the bucket's region, when the body carries it.
	Region string
	// Bucket is the bucket name. It is never empty except for test events.
	Bucket string
	// Key is the decoded object key ('+' is a space, %XX unescaped).
	// It is never empty except for test events.
	Key string
	// Size is the object size in bytes; 0 when absent (deletions).
	Size int64
	// ETag is the entity tag without surrounding quotes.
	ETag string
	// VersionID is the object version, when the bucket is versioned.
	VersionID string
	// Sequencer orders events of the same key, as received. It may be empty;
	// when it is not, it has at most [MaxPlausibleSequencer] hexadecimal
	// digits (so [SequencerKey] accepts it): [Decode] drops any other.
	Sequencer string
	// Time is the event time in UTC, or the zero time when absent.
	Time time.Time
	// ContentType is the object's content type when the body carries it
	// (MinIO does), else "".
	ContentType string

	// droppedSequencer is the length of the sequencer Decode dropped as implausible (0: none),
	// for the Processor to count and log.
	droppedSequencer int
}

// kindOf classifies an event name that has no "s3:" prefix.
func kindOf(name string) Kind {
	switch name {
	case "ObjectRemoved:NoOP":
		// MinIO's answer to a delete of a key (or version) it does not have: nothing was removed.
		return KindUnknown
	case "ObjectCreated:PutTagging", "ObjectCreated:DeleteTagging", "ObjectRemoved:DeleteTagging":
		return KindTagging
	case "ObjectCreated:PutRetention", "ObjectCreated:PutLegalHold":
		return KindACL
	}
	switch {
	case strings.HasPrefix(name, "ObjectCreated:"):
		return KindCreated
	case strings.HasPrefix(name, "ObjectRemoved:"), strings.HasPrefix(name, "LifecycleExpiration:"):
		return KindRemoved
	case strings.HasPrefix(name, "ObjectTagging:"):
		return KindTagging
	case strings.HasPrefix(name, "ObjectAcl:"):
		return KindACL
	}
	return KindUnknown
}
