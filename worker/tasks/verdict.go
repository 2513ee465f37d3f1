package tasks

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/google/uuid"
	"github.com/hibiken/asynq"
)

// TypeUploadVerdict is the task intake enqueues, for every notification, on the queue an app names
// (INTAKE_NOTIFY_ASYNQ_QUEUE); payload [UploadVerdict]. intake never handles it: the app's own asynq
// server does (see the package example).
const TypeUploadVerdict = "intake:upload.verdict"

// Event types of a notification ([UploadVerdict.Type], the webhook's "type").
const (
	// EventUploadValid: the object landed and passed every check of the policy.
	EventUploadValid = "upload.valid"
	// EventUploadRejected: the object landed and failed a check; Data.Reason says which.
	EventUploadRejected = "upload.rejected"
	// EventUploadDeleted: the object was removed from the bucket.
	EventUploadDeleted = "upload.deleted"
	// EventUploadAborted: the multipart upload was aborted (Data.Reason: deadline, sweep, api, or
	// too_large: a complete whose parts exceeded the declared size or the policy's max_size).
	EventUploadAborted = "upload.aborted"
	// EventUploadExpired: the intent expired without an object.
	EventUploadExpired = "upload.expired"
)

// EventTypes lists every event type this version knows. A later intake may send others: an app
// ignores (acknowledges) the types it does not handle rather than failing on them.
var EventTypes = []string{EventUploadValid, EventUploadRejected, EventUploadDeleted, EventUploadAborted, EventUploadExpired}

// VerdictMaxRetry is the MaxRetry of the tasks intake enqueues on the app's queue.
const VerdictMaxRetry = 25

// UploadVerdict is one notification: the payload of a [TypeUploadVerdict] task and, the same bytes,
// the body of a webhook request. Fields may be added in later versions: decode it leniently (as
// [ParseUploadVerdict] does).
type UploadVerdict struct {
	// ID identifies the notification; it is the webhook-id header of every delivery of it (the
	// same across retries and endpoints), so a receiver can de-duplicate on it.
	ID string `json:"id"`
	// Type is one of [EventTypes], or a type added by a later intake ([UploadVerdict.Known] tells):
	// an app ignores the types it does not handle.
	Type string `json:"type"`
	// Timestamp is when the verdict was committed.
	Timestamp time.Time `json:"timestamp"`
	// Data describes the upload and its verdict.
	Data UploadVerdictData `json:"data"`
}

// UploadVerdictData is the "data" of an [UploadVerdict]: the upload as it stood when the verdict
// was committed. Fields that do not apply are omitted (a deleted object has no size).
type UploadVerdictData struct {
	// UploadID is the intent's id (the "id" of POST /v1/uploads).
	UploadID uuid.UUID `json:"upload_id"`
	// Owner is the intent's owner.
	Owner string `json:"owner"`
	// Bucket and Key locate the object.
	Bucket string `json:"bucket"`
	Key    string `json:"key"`
	// Method (put, post, multipart) and Filename are the intent's.
	Method   string `json:"method,omitempty"`
	Filename string `json:"filename,omitempty"`
	// Status is valid, rejected, deleted, aborted or expired.
	Status string `json:"status"`
	// Reason is why an object was rejected (too_large, sniff_mismatch, ...) or why an upload was
	// aborted (deadline, sweep, api, too_large).
	Reason string `json:"reason,omitempty"`
	// ObjectID is the object's id in GET /v1/objects (object events only).
	ObjectID *uuid.UUID `json:"object_id,omitempty"`
	// Size is the object's size in bytes.
	Size *int64 `json:"size,omitempty"`
	// ContentType is the object's stored Content-Type; SniffedType what its bytes are.
	ContentType string `json:"content_type,omitempty"`
	SniffedType string `json:"sniffed_type,omitempty"`
	// SHA256 is the hex digest, when computed.
	SHA256 string `json:"sha256,omitempty"`
	// ETag and VersionID identify the content in S3.
	ETag      string `json:"etag,omitempty"`
	VersionID string `json:"version_id,omitempty"`
	// Width and Height are an image's dimensions, when known.
	Width  int `json:"width,omitempty"`
	Height int `json:"height,omitempty"`
	// MultipartUploadID is the S3 upload id of an aborted multipart upload.
	MultipartUploadID string `json:"multipart_upload_id,omitempty"`
	// Metadata is the app's object given with the intent, as PostgreSQL's jsonb renders it (the
	// same members and values; keys reordered, numbers in plain decimal).
	Metadata json.RawMessage `json:"metadata,omitempty"`
}

// AppendUploadVerdict appends the JSON of a notification to dst, with data (a JSON object: the
// stored "data") copied as it is. intake builds every webhook body and verdict task with it.
func AppendUploadVerdict(dst []byte, id, typ string, ts time.Time, data []byte) []byte {
	dst = append(dst, `{"id":`...)
	dst = strconv.AppendQuote(dst, id)
	dst = append(dst, `,"type":`...)
	dst = strconv.AppendQuote(dst, typ)
	dst = append(dst, `,"timestamp":"`...)
	dst = ts.UTC().AppendFormat(dst, time.RFC3339Nano)
	dst = append(dst, `","data":`...)
	dst = append(dst, bytes.TrimSpace(data)...)
	return append(dst, '}')
}

// Known reports whether v's type is one of [EventTypes], those this version of the package
// knows. A verdict of another type comes from a later intake: handle what you know and acknowledge
// the rest.
func (v UploadVerdict) Known() bool { return slices.Contains(EventTypes, v.Type) }

// Validate reports what is wrong with v, wrapping [ErrInvalidPayload]: an id, a type and
// data.upload_id are required. A type this version does not know is accepted (see
// [UploadVerdict.Known]), so that an app keeps working when intake adds one.
func (v UploadVerdict) Validate() error {
	var errs []error
	if v.ID == "" {
		errs = append(errs, errors.New("id: required"))
	}
	if v.Type == "" {
		errs = append(errs, errors.New("type: required"))
	}
	if v.Data.UploadID == uuid.Nil {
		errs = append(errs, errors.New("data.upload_id: required"))
	}
	return invalid(TypeUploadVerdict, errs)
}

// ParseUploadVerdict decodes and validates a [TypeUploadVerdict] payload (or a webhook body).
// Unknown fields are ignored and unknown event types accepted ([UploadVerdict.Known]), so that an
// app keeps working when intake adds some.
func ParseUploadVerdict(payload []byte) (UploadVerdict, error) {
	var v UploadVerdict
	if err := json.Unmarshal(payload, &v); err != nil {
		return v, fmt.Errorf("decode %s payload: %v: %w", TypeUploadVerdict, err, ErrInvalidPayload)
	}
	return v, v.Validate()
}

// NewUploadVerdictTask returns the task carrying payload (an [UploadVerdict], as built by
// [AppendUploadVerdict]) to the app's queue: task ID the notification's id (so that a second
// enqueue of the same notification while the first is kept is refused), MaxRetry [VerdictMaxRetry].
func NewUploadVerdictTask(queue string, payload []byte) (*asynq.Task, error) {
	v, err := ParseUploadVerdict(payload)
	if err != nil {
		return nil, err
	}
	if queue == "" {
		return nil, errors.New("upload verdict task: queue required")
	}
	return asynq.NewTask(TypeUploadVerdict, payload,
		asynq.Queue(queue), asynq.TaskID(v.ID), asynq.MaxRetry(VerdictMaxRetry)), nil
}
