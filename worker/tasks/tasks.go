package tasks

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/hibiken/asynq"
)

// Task type names.
const (
	// TypeAbortMultipart aborts one multipart upload if it is still open; payload [AbortMultipart].
	TypeAbortMultipart = "multipart:abort"
	// TypeInspectObject re-runs the pipeline on one object; payload [InspectObject].
	TypeInspectObject = "object:inspect"
	// TypeSweep aborts a bucket's stale multipart uploads (intake's own only past their deadline);
	// payload [Sweep].
	TypeSweep = "multipart:sweep"
)

// MinSweepAge is the smallest older_than a sweep is accepted with by POST /v1/jobs, `intake sweep`
// and the sweep task's handler: younger uploads are probably still being written, whoever asks.
const MinSweepAge = time.Minute

// Types lists every task type intake handles.
var Types = []string{TypeAbortMultipart, TypeInspectObject, TypeSweep}

// KnownType reports whether typ is one of [Types].
func KnownType(typ string) bool { return slices.Contains(Types, typ) }

// Queue names. They carry an "intake-" prefix so that other asynq servers sharing the Redis never
// process intake's tasks.
const (
	// QueueCritical holds deadline-bound work: multipart aborts.
	QueueCritical = "intake-critical"
	// QueueDefault holds object inspections.
	QueueDefault = "intake-default"
	// QueueLow holds sweeps.
	QueueLow = "intake-low"
)

// Priorities are the queue weights intake's asynq server uses (asynq.Config.Queues): with every
// queue busy, critical tasks get 6/10 of the workers, default 3/10 and low 1/10.
func Priorities() map[string]int {
	return map[string]int{QueueCritical: 6, QueueDefault: 3, QueueLow: 1}
}

// Retry and timeout settings the constructors give each task.
//
// asynq's default backoff (asynq.DefaultRetryDelayFunc, which intake's jobs server keeps) waits
// n⁴ + 15 + rand(0..29)·(n+1) seconds before retry n+1 (n = retries so far): ten retries wait
// 15,483 to 17,078 s in all, between 4 h 18 min and 4 h 45 min (about 4.5 h) after the first
// failure, besides the attempts' own run time; the tenth alone waits 1 h 50 min to 2 h.
const (
	// AbortMaxRetry is how often a failed abort is retried: ten retries over about 4.5 hours of
	// asynq's backoff (see above). The sweep aborts an upload whose task gave up.
	AbortMaxRetry = 10
	// AbortTimeout bounds one abort attempt: ListParts pages, AbortMultipartUpload and one row
	// (each S3 call bounded on its own), and, when the upload turns out completed, the inspection
	// of its object, inline (worker/jobs HandleAbort), which may hash a large object: hence the
	// inspection's bound and a minute. With one minute, a declared-sha256 upload of gigabytes timed
	// out on every retry and got no verdict until the periodic reconcile.
	AbortTimeout = InspectTimeout + time.Minute
	// InspectMaxRetry is how often a failed inspection is retried: ten retries over about 4.5 hours
	// of asynq's backoff (see above).
	InspectMaxRetry = 10
	// InspectTimeout bounds one inspection (it may hash a large object).
	InspectTimeout = 15 * time.Minute
	// SweepMaxRetry is how often a failed sweep is retried before the next period takes over.
	SweepMaxRetry = 3
	// SweepTimeout bounds one sweep of a bucket.
	SweepTimeout = 2 * time.Hour
	// SweepRetention keeps a finished sweep (and so its period's task ID) in Redis, so that a
	// replica whose scheduler fires a little late cannot enqueue the same period again. (For an
	// "@every" schedule longer than this, intake's scheduler keeps each period's task for the
	// whole period: worker/jobs.Periodic.)
	SweepRetention = time.Hour
	// AbortGrace is how long past the deadline promised to an upload's owner (its expires_at)
	// intake still leaves the upload alone: no abort of intake's, neither the deadline task nor the
	// sweep (its listing and its PostgreSQL pass), touches an upload of intake's before
	// deadline + AbortGrace. intake refuses a complete only from the deadline on, and one accepted
	// a moment before it may still be running (ListParts pages, then S3's CompleteMultipartUpload:
	// internal/multipart bounds the whole of it to less than AbortGrace); a part upload to a URL
	// signed up to the deadline may also still be sending its bytes. Aborting then would lose an
	// upload whose complete intake accepted. The deadline task is due shortly after
	// deadline + AbortGrace ([AbortDue]).
	AbortGrace = 2 * time.Minute
	// abortDueSlack puts a deadline abort's ProcessAt a little past deadline + AbortGrace: asynq
	// moves a scheduled task to pending by whole seconds (up to a second early) and the replicas'
	// clocks differ a little, so a task due exactly then would often run a moment early and have
	// to be retried.
	abortDueSlack = 2 * time.Second
)

// MaxRetryDelay is the longest asynq's default backoff (asynq.DefaultRetryDelayFunc, which
// intake's jobs server keeps) waits before retry n+1 of a task that has been retried n times:
// n⁴ + 15 + 29·(n+1) seconds.
func MaxRetryDelay(n int) time.Duration {
	return time.Duration(n*n*n*n+15+29*(n+1)) * time.Second
}

// RetryWindow is the longest a task with maxRetry retries, each run bounded by timeout, may take
// from the start of its first run to the end of its last under asynq's default backoff: maxRetry+1
// runs of timeout and the maxRetry delays between them at their longest ([MaxRetryDelay]). Time
// spent waiting in a queue behind other tasks is not included.
func RetryWindow(maxRetry int, timeout time.Duration) time.Duration {
	w := time.Duration(maxRetry+1) * timeout
	for n := range maxRetry {
		w += MaxRetryDelay(n)
	}
	return w
}

// AbortDue is when the deadline abort of an upload whose owner was promised deadline is due (the
// task's ProcessAt): deadline + [AbortGrace], and two seconds more.
func AbortDue(deadline time.Time) time.Time { return deadline.Add(AbortGrace + abortDueSlack) }

// ErrInvalidPayload marks a payload that can never be processed: malformed JSON, missing or
// out-of-range values. Handlers turn it into asynq.SkipRetry. Fields a payload type does not have
// are not an error: they are ignored (a newer intake may have added them).
var ErrInvalidPayload = errors.New("invalid task payload")

// Limits on payload fields.
const (
	maxBucketLen   = 255
	maxKeyLen      = 1024
	maxUploadIDLen = 1024
)

// AbortMultipart is the payload of [TypeAbortMultipart].
type AbortMultipart struct {
	// Bucket holds the upload.
	Bucket string `json:"bucket"`
	// Key is the object key the upload was created for.
	Key string `json:"key"`
	// UploadID is the S3 multipart upload id. It is also the task ID of a [ReasonDeadline] task
	// (one deadline task per upload); a [ReasonAPI] task's ID is [APIAbortTaskID](UploadID).
	UploadID string `json:"upload_id"`
	// Deadline is when the upload is aborted if it is still open: the deadline promised to its
	// owner. A [ReasonDeadline] task never aborts before deadline + [AbortGrace], by this
	// Deadline nor by the expires_at PostgreSQL holds for the upload (which wins: a payload cannot
	// move the owner's deadline earlier), and is due at [AbortDue] (the task's ProcessAt); a
	// [ReasonAPI] task is due at it.
	Deadline time.Time `json:"deadline"`
	// Reason is recorded with the abort: [ReasonDeadline] (the default) or [ReasonAPI] (its owner,
	// through POST /v1/jobs, or an operator asked for it). A [ReasonAPI] task is not held to the
	// deadline, and runs at once (its Deadline, the time it was asked for, is past or now: its task
	// ID, [APIAbortTaskID], is not the deadline task's, which holds the upload id until the
	// deadline). POST /v1/jobs checks the caller owns the upload before it enqueues one, but intake's
	// jobs cannot tell who wrote a task into Redis. Whoever can write to intake's Redis (an app
	// backend sharing it included) can therefore abort any upload at once: Redis access is
	// operator-level trust.
	Reason string `json:"reason,omitempty"`
}

// Reasons an abort task may carry (column multipart_aborts.reason; the sweep records "sweep").
const (
	// ReasonDeadline: the upload outlived the deadline intake gave it at creation.
	ReasonDeadline = "deadline"
	// ReasonAPI: the upload's owner or an operator asked for the abort (POST /v1/jobs, which checks
	// the owner; a task written into Redis by other means is trusted as an operator's).
	ReasonAPI = "api"
)

// Validate reports what is wrong with p, wrapping [ErrInvalidPayload].
func (p AbortMultipart) Validate() error {
	errs := []error{checkBucket(p.Bucket), checkKey("key", p.Key)}
	if err := checkText("upload_id", p.UploadID, maxUploadIDLen); err != nil {
		errs = append(errs, err)
	}
	if p.Deadline.IsZero() {
		errs = append(errs, errors.New("deadline: required"))
	}
	if p.Reason != "" && p.Reason != ReasonDeadline && p.Reason != ReasonAPI {
		errs = append(errs, fmt.Errorf("reason: %q is not %q or %q", p.Reason, ReasonDeadline, ReasonAPI))
	}
	return invalid(TypeAbortMultipart, errs)
}

// NewAbortMultipart returns the task that aborts p's upload at p.Deadline unless it completes
// first: queue [QueueCritical], MaxRetry [AbortMaxRetry], Timeout [AbortTimeout], and
//   - for [ReasonDeadline] (or no reason): task ID p.UploadID (one deadline task per upload),
//     ProcessAt [AbortDue](p.Deadline);
//   - for [ReasonAPI]: task ID [APIAbortTaskID](p.UploadID), ProcessAt p.Deadline. The ID differs
//     from the deadline task's, scheduled when the upload was created, so that an abort asked for
//     now is not answered by [Enqueue] as a duplicate of that task and left to wait for the
//     deadline.
//
// Options given to Enqueue override these.
func NewAbortMultipart(p AbortMultipart) (*asynq.Task, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	p.Deadline = p.Deadline.UTC()
	payload, err := json.Marshal(p)
	if err != nil {
		return nil, fmt.Errorf("encode %s payload: %w", TypeAbortMultipart, err)
	}
	return asynq.NewTask(TypeAbortMultipart, payload,
		asynq.Queue(QueueCritical), asynq.TaskID(p.taskID()), asynq.ProcessAt(p.due()),
		asynq.MaxRetry(AbortMaxRetry), asynq.Timeout(AbortTimeout)), nil
}

// taskID is the ID [NewAbortMultipart] gives p's task.
func (p AbortMultipart) taskID() string {
	if p.Reason == ReasonAPI {
		return APIAbortTaskID(p.UploadID)
	}
	return p.UploadID
}

// due is the ProcessAt [NewAbortMultipart] gives p's task.
func (p AbortMultipart) due() time.Time {
	if p.Reason == ReasonAPI {
		return p.Deadline
	}
	return AbortDue(p.Deadline)
}

// ParseAbortMultipart decodes and validates a [TypeAbortMultipart] payload. Fields it does not know
// (added by a later version of intake) are ignored.
func ParseAbortMultipart(payload []byte) (AbortMultipart, error) {
	var p AbortMultipart
	if err := decode(TypeAbortMultipart, payload, &p); err != nil {
		return p, err
	}
	return p, p.Validate()
}

// InspectObject is the payload of [TypeInspectObject].
type InspectObject struct {
	// Bucket holds the object.
	Bucket string `json:"bucket"`
	// Key is the object's key (plain, not URL-encoded).
	Key string `json:"key"`
	// Event is set on an event's inspection the consumer handed off
	// (pipeline.ProcessorConfig.HashHandOff, [Inspections]): it runs with that event's semantics
	// (pipeline.Processor.InspectHandedOff). intake sets it; POST /v1/jobs does not take it.
	Event *HandedOffEvent `json:"event,omitempty"`
}

// HandedOffEvent is what an inspection handed off by the consumer keeps of its event.
type HandedOffEvent struct {
	// Sequencer is the event's S3 sequencer (empty when it had none, or one not believed).
	Sequencer string `json:"sequencer,omitempty"`
	// Time is the event's time.
	Time time.Time `json:"time,omitzero"`
	// Removal is set when the event's message also removed the object.
	Removal bool `json:"removal,omitempty"`
}

// Validate reports what is wrong with p, wrapping [ErrInvalidPayload].
func (p InspectObject) Validate() error {
	return invalid(TypeInspectObject, []error{checkBucket(p.Bucket), checkKey("key", p.Key)})
}

// NewInspectObject returns the task that re-runs the pipeline on one object: queue
// [QueueDefault], MaxRetry [InspectMaxRetry], Timeout [InspectTimeout]. Inspecting twice is
// harmless (the pipeline is idempotent), so the task has no ID of its own: [EnqueueInspect] gives
// it [InspectTaskID], which keeps a second one of the same object out while one is under way
// (intake's own callers enqueue it that way: each one may hash gigabytes on shared workers).
func NewInspectObject(p InspectObject) (*asynq.Task, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	payload, err := json.Marshal(p)
	if err != nil {
		return nil, fmt.Errorf("encode %s payload: %w", TypeInspectObject, err)
	}
	return asynq.NewTask(TypeInspectObject, payload,
		asynq.Queue(QueueDefault), asynq.MaxRetry(InspectMaxRetry), asynq.Timeout(InspectTimeout)), nil
}

// InspectTaskID is the task ID [EnqueueInspect] gives the inspection of the object key in bucket:
// "inspect:" and the first 16 bytes of the SHA-256 of bucket, a NUL byte and key, in hex (a bucket
// name holds no NUL, so two objects never share the input; a key of up to 1,024 bytes makes no
// long ID).
func InspectTaskID(bucket, key string) string {
	sum := sha256.Sum256([]byte(bucket + "\x00" + key))
	return "inspect:" + hex.EncodeToString(sum[:16])
}

// ParseInspectObject decodes and validates a [TypeInspectObject] payload. Fields it does not know
// (added by a later version of intake) are ignored.
func ParseInspectObject(payload []byte) (InspectObject, error) {
	var p InspectObject
	if err := decode(TypeInspectObject, payload, &p); err != nil {
		return p, err
	}
	return p, p.Validate()
}

// Sweep is the payload of [TypeSweep].
type Sweep struct {
	// Bucket is swept whole: its open multipart uploads are listed without a prefix (some stores,
	// MinIO among them, list nothing for a folder prefix) and filtered by Prefix afterwards.
	Bucket string `json:"bucket"`
	// Prefix, when set, limits the sweep to keys starting with it: valid UTF-8 of at most 1024
	// bytes, without control characters.
	Prefix string `json:"prefix,omitempty"`
	// OlderThan is the age (from the upload's initiation) past which an upload intake did not
	// create is aborted. intake's own uploads are aborted at their deadline, never before, whatever
	// OlderThan says.
	OlderThan Duration `json:"older_than"`
}

// Validate reports what is wrong with p, wrapping [ErrInvalidPayload].
func (p Sweep) Validate() error {
	errs := []error{checkBucket(p.Bucket)}
	switch {
	case len(p.Prefix) > maxKeyLen || !utf8.ValidString(p.Prefix):
		errs = append(errs, fmt.Errorf("prefix: must be valid UTF-8 of at most %d bytes", maxKeyLen))
	case strings.ContainsFunc(p.Prefix, unicode.IsControl):
		// PostgreSQL refuses a NUL in text (the sweep's passes filter by prefix there): such a
		// sweep would fail on every attempt. No key intake gives out has control characters.
		errs = append(errs, errors.New("prefix: contains control characters"))
	}
	if p.OlderThan <= 0 {
		errs = append(errs, errors.New("older_than: must be positive"))
	}
	return invalid(TypeSweep, errs)
}

// NewSweep returns a sweep task: queue [QueueLow], MaxRetry [SweepMaxRetry], Timeout
// [SweepTimeout], Retention [SweepRetention]. The periodic scheduler adds
// asynq.TaskID([SweepTaskID](...)) so that one sweep runs per period; extra options are applied
// last.
func NewSweep(p Sweep, opts ...asynq.Option) (*asynq.Task, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	payload, err := json.Marshal(p)
	if err != nil {
		return nil, fmt.Errorf("encode %s payload: %w", TypeSweep, err)
	}
	all := append([]asynq.Option{asynq.Queue(QueueLow), asynq.MaxRetry(SweepMaxRetry),
		asynq.Timeout(SweepTimeout), asynq.Retention(SweepRetention)}, opts...)
	return asynq.NewTask(TypeSweep, payload, all...), nil
}

// ParseSweep decodes and validates a [TypeSweep] payload. Fields it does not know (added by
// a later version of intake) are ignored.
func ParseSweep(payload []byte) (Sweep, error) {
	var p Sweep
	if err := decode(TypeSweep, payload, &p); err != nil {
		return p, err
	}
	return p, p.Validate()
}

// SweepTaskID is the task ID of the periodic sweep of bucket for the period starting at window:
// "sweep:<bucket>:<unix seconds>". Replicas that compute the same window enqueue one task.
func SweepTaskID(bucket string, window time.Time) string {
	return "sweep:" + bucket + ":" + strconv.FormatInt(window.Unix(), 10)
}

// Duration is a time.Duration that reads and writes JSON as a Go duration string ("24h0m0s") and
// also reads a number of seconds (86400).
type Duration time.Duration

// MarshalJSON writes d as a duration string.
func (d Duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(d).String())
}

// UnmarshalJSON reads a duration string or a number of seconds.
func (d *Duration) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		v, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("duration %q: want a Go duration such as \"24h\"", s)
		}
		*d = Duration(v)
		return nil
	}
	var secs float64
	if err := json.Unmarshal(b, &secs); err != nil {
		return fmt.Errorf("duration %s: want a string such as \"24h\" or a number of seconds", b)
	}
	if secs > float64(1<<63-1)/float64(time.Second) || secs < -float64(1<<63-1)/float64(time.Second) {
		return fmt.Errorf("duration %s: out of range", b)
	}
	*d = Duration(secs * float64(time.Second))
	return nil
}

// String formats d like time.Duration.
func (d Duration) String() string { return time.Duration(d).String() }

// decode reads one JSON value of payload into v, ignoring fields v does not have: a task may wait
// in Redis for days (a deadline abort, until the deadline intake allows) and be run by a replica
// older than the one that wrote it, whose newer fields it must not refuse (asynq would archive the
// task at once). Trailing data after the JSON value is refused. (A person's input is checked
// strictly where it is read: POST /v1/jobs decodes its payload refusing unknown fields before it
// builds the task.)
func decode(typ string, payload []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(payload))
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("decode %s payload: %v: %w", typ, err, ErrInvalidPayload)
	}
	if dec.More() {
		return fmt.Errorf("decode %s payload: trailing data: %w", typ, ErrInvalidPayload)
	}
	return nil
}

// invalid joins field errors into one that names the task type and wraps ErrInvalidPayload.
func invalid(typ string, errs []error) error {
	err := errors.Join(errs...)
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s payload: %s: %w", typ, strings.ReplaceAll(err.Error(), "\n", "; "), ErrInvalidPayload)
}

func checkBucket(b string) error {
	if b == "" {
		return errors.New("bucket: required")
	}
	if len(b) > maxBucketLen || strings.ContainsFunc(b, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) || r == '/' }) {
		return fmt.Errorf("bucket: %q is not a bucket name", b)
	}
	return nil
}

func checkKey(field, k string) error {
	return checkText(field, k, maxKeyLen)
}

func checkText(field, s string, maxLen int) error {
	switch {
	case s == "":
		return fmt.Errorf("%s: required", field)
	case len(s) > maxLen:
		return fmt.Errorf("%s: longer than %d bytes", field, maxLen)
	case !utf8.ValidString(s):
		return fmt.Errorf("%s: not valid UTF-8", field)
	case strings.ContainsFunc(s, unicode.IsControl):
		return fmt.Errorf("%s: contains control characters", field)
	}
	return nil
}
