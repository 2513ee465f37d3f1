package multipart

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/google/uuid"
)

// StoreTimeout is the default bound of each PostgreSQL call of an abort and of a sweep (a page of intents, of
// overdue uploads or of interrupted aborts, the rows of a page's aborts, one abort's rows): a
// PostgreSQL that stops answering fails the call after it, with an ErrStore error that the jobs
// retry, instead of holding the task for its whole timeout (16 minutes for an abort, 2 hours for
// a sweep).
const StoreTimeout = 30 * time.Second

// S3API is the part of the S3 client the package calls; *s3.Client satisfies it.
type S3API interface {
	ListMultipartUploads(ctx context.Context, in *s3.ListMultipartUploadsInput, opts ...func(*s3.Options)) (*s3.ListMultipartUploadsOutput, error)
	ListParts(ctx context.Context, in *s3.ListPartsInput, opts ...func(*s3.Options)) (*s3.ListPartsOutput, error)
	CompleteMultipartUpload(ctx context.Context, in *s3.CompleteMultipartUploadInput, opts ...func(*s3.Options)) (*s3.CompleteMultipartUploadOutput, error)
	AbortMultipartUpload(ctx context.Context, in *s3.AbortMultipartUploadInput, opts ...func(*s3.Options)) (*s3.AbortMultipartUploadOutput, error)
	HeadObject(ctx context.Context, in *s3.HeadObjectInput, opts ...func(*s3.Options)) (*s3.HeadObjectOutput, error)
}

var _ S3API = (*s3.Client)(nil)

// Store is what the package needs from PostgreSQL (internal/store.Multipart implements it).
type Store interface {
	// BeginAbort writes the abort about to be sent (outcome OutcomeAborting; r.Outcome and r.Object
	// are ignored) unless a row exists, and returns the outcome an earlier attempt left: "" when
	// this call wrote the row, OutcomeAborting when an attempt was interrupted (or runs now),
	// OutcomeAborted or OutcomeGone when one finished.
	BeginAbort(ctx context.Context, r AbortRecord) (string, error)
	// BeginAborts is BeginAbort for candidates of one bucket with one reason, in one statement: it
	// returns the outcome an earlier attempt left, by upload id.
	BeginAborts(ctx context.Context, bucket, reason string, cs []Candidate) (map[string]string, error)
	// PendingAborts returns up to q.Limit aborts of q.Bucket under q.Prefix begun before
	// q.StartedBefore and never settled, ordered by (Begun, UploadID) after the cursor.
	PendingAborts(ctx context.Context, q PendingQuery) ([]PendingAbort, error)
	// RecordAbort records an abort and settles the upload's intent (see AbortRecord). It returns the
	// status the intent was moved to, or "" when no intent moved.
	RecordAbort(ctx context.Context, r AbortRecord) (string, error)
	// MarkCompleted moves the intent of an upload S3 completed to completed (from pending, expired or
	// aborted) and reports whether one moved.
	MarkCompleted(ctx context.Context, bucket, uploadID string) (bool, error)
	// Intents returns intake's intents for the given upload ids of a bucket, by upload id (ids
	// without an intent are absent).
	Intents(ctx context.Context, bucket string, uploadIDs []string) (map[string]Intent, error)
	// Overdue returns up to limit of intake's uploads of bucket under prefix whose deadline is
	// before q.Now, still pending and with no abort recorded, ordered by (ExpiresAt, ID) after the
	// cursor.
	Overdue(ctx context.Context, q OverdueQuery) ([]Intent, error)
}

// AbortRecorder is a Store whose record of an abort also says whether it changed the abort's row.
// When the Store implements it, the Service counts an abort (intake_multipart_aborted_total and
// intake_bytes_reclaimed_total) only for the attempt whose record moved the row to "aborted". Two
// attempts racing on one upload (the deadline task and the sweep) would otherwise both count it:
// the one that finds the upload already gone, after the other's row said "aborting", records
// "aborted" too, since it cannot tell that race from a process that died after S3's answer.
type AbortRecorder interface {
	// RecordAbortChanged is Store.RecordAbort, and also reports whether this call wrote the
	// outcome (the row said "aborting", or "gone" and the outcome is "aborted"); false when an
	// earlier record already said as much.
	RecordAbortChanged(ctx context.Context, r AbortRecord) (intentStatus string, changed bool, err error)
}

// Intent statuses (column uploads.status).
const (
	StatusPending   = "pending"
	StatusCompleted = "completed"
	StatusAborted   = "aborted"
	StatusExpired   = "expired"
)

// Intent is intake's record of a multipart upload it created.
type Intent struct {
	// ID is the intent's id.
	ID uuid.UUID
	// Key and UploadID identify the upload in its bucket.
	Key, UploadID string
	// Status is one of the Status constants.
	Status string
	// CreatedAt is when the intent was recorded; ExpiresAt is the deadline promised to the client.
	CreatedAt, ExpiresAt time.Time
}

// OverdueQuery asks Store.Overdue for one page.
type OverdueQuery struct {
	// Bucket and Prefix scope the query.
	Bucket, Prefix string
	// Now: uploads whose deadline is before it are overdue. The sweep passes its start less
	// tasks.AbortGrace, so that an upload is overdue only once its grace has passed too.
	Now time.Time
	// AfterExpiresAt and AfterID are the cursor: the last row of the previous page (zero for the first).
	AfterExpiresAt time.Time
	AfterID        uuid.UUID
	// Limit is the page size.
	Limit int
}

// PendingQuery asks Store.PendingAborts for one page.
type PendingQuery struct {
	// Bucket and Prefix scope the query.
	Bucket, Prefix string
	// StartedBefore: only aborts begun before it.
	StartedBefore time.Time
	// AfterBegun and AfterUploadID are the cursor: the last row of the previous page (zero for the
	// first).
	AfterBegun    time.Time
	AfterUploadID string
	// Limit is the page size.
	Limit int
}

// PendingAbort is an abort begun (Store.BeginAbort) and never settled.
type PendingAbort struct {
	// Key and UploadID identify the upload.
	Key, UploadID string
	// Initiated is when the upload started, if known.
	Initiated *time.Time
	// Reason is the reason of the interrupted attempt.
	Reason string
	// Begun is when the attempt wrote its row.
	Begun time.Time
	// Known is true when intake has an intent for the upload.
	Known bool
}

// Abort outcomes (column multipart_aborts.outcome).
const (
	// OutcomeAborting: the abort is about to be sent, or was sent by a process that did not live to
	// record S3's answer (the sweep resumes it).
	OutcomeAborting = "aborting"
	// OutcomeAborted: S3 aborted the upload.
	OutcomeAborted = "aborted"
	// OutcomeGone: S3 no longer knew the upload (completed, or aborted by someone else).
	OutcomeGone = "gone"
)

// Abort reasons (column multipart_aborts.reason, label reason of intake_multipart_aborted_total).
const (
	// ReasonDeadline: the upload outlived the deadline intake gave it (the delayed abort task).
	ReasonDeadline = "deadline"
	// ReasonSweep: the periodic or manual sweep found it stale or past its deadline.
	ReasonSweep = "sweep"
	// ReasonAPI: its owner (DELETE on the API or Uppy's route) or an operator asked for it.
	ReasonAPI = "api"
	// ReasonTooLarge: complete refused it because its parts sum to more than allowed.
	ReasonTooLarge = "too_large"
)

// Reasons lists every abort reason.
var Reasons = []string{ReasonDeadline, ReasonSweep, ReasonAPI, ReasonTooLarge}

// ObjectState is what S3 showed at an upload's key after the abort.
type ObjectState int

const (
	// ObjectUnknown: not looked at (an upload intake did not create) or the look failed; the
	// intent, if any, is left alone.
	ObjectUnknown ObjectState = iota
	// ObjectAbsent: no object at the key: the upload did not complete.
	ObjectAbsent
	// ObjectExists: an object at the key: the upload completed (intake's keys are unique per
	// intent, so the object came from this upload).
	ObjectExists
)

// AbortRecord is one abort to record.
type AbortRecord struct {
	// Bucket, Key and UploadID identify the upload.
	Bucket, Key, UploadID string
	// Initiated is when the upload started, if known (the intent's created_at otherwise).
	Initiated *time.Time
	// Reason and Outcome are one of the Reason and Outcome constants.
	Reason, Outcome string
	// Object settles the intent: ObjectExists → completed, ObjectAbsent → aborted, ObjectUnknown →
	// unchanged.
	Object ObjectState
}

// ErrWrongKey is returned by Abort for an upload id of intake's named with another key than the one
// it was created for; retrying cannot fix it.
var ErrWrongKey = errors.New("upload id belongs to another key")

// ErrStore marks errors from PostgreSQL (the Store), as opposed to S3's: callers map it to
// "database unavailable" rather than "storage unavailable".
var ErrStore = errors.New("multipart store")

func storeErr(what string, err error) error { return fmt.Errorf("%s: %w: %w", what, ErrStore, err) }

// Config configures a Service.
type Config struct {
	// S3 is the S3 client (required).
	S3 S3API
	// Store records aborts and completions and knows intake's uploads (required).
	Store Store
	// Log receives the package's logs (default: discard).
	Log *slog.Logger
	// Metrics, when set, counts aborts, reclaimed bytes and sweeps.
	Metrics *Metrics
	// CallTimeout bounds each S3 call (default: none beyond the caller's context).
	CallTimeout time.Duration
	// StoreTimeout bounds each PostgreSQL call of an abort or a sweep (default [StoreTimeout]).
	StoreTimeout time.Duration
	// Concurrency bounds the aborts a sweep runs at once (default 16).
	Concurrency int
	// PageSize is the MaxUploads of each ListMultipartUploads call (default 1000, the S3 maximum).
	PageSize int32
	// ServerSidePrefix passes the sweep's prefix to ListMultipartUploads. Leave it off for MinIO,
	// which lists nothing for a folder prefix; the prefix is always applied client-side as well.
	ServerSidePrefix bool
	// Now is the clock (default time.Now).
	Now func() time.Time
	// SweepBucket and SweepPrefix are the configured sweep's scope (INTAKE_BUCKET,
	// INTAKE_JOBS_SWEEP_PREFIX): only a successful sweep that covers it (of that bucket, under a
	// prefix that SweepPrefix starts with) sets intake_sweep_last_success_timestamp_seconds, so that
	// an operator's sweep of a narrower prefix does not hide a failing configured sweep
	// (IntakeSweepFailing). With SweepBucket unset, only a sweep of a whole bucket (no prefix) sets
	// it.
	SweepBucket, SweepPrefix string
}

// Service is intake's one implementation of multipart uploads after their creation: list parts,
// complete within a size bound, abort and record, sweep. The API, the jobs' handlers and `intake
// sweep` all use it. It is safe for concurrent use.
type Service struct {
	s3               S3API
	store            Store
	log              *slog.Logger
	metrics          *Metrics
	callTimeout      time.Duration
	storeTimeout     time.Duration
	concurrency      int
	pageSize         int32
	serverSidePrefix bool
	now              func() time.Time
	sweepBucket      string
	sweepPrefix      string
}

// New checks cfg and returns a Service.
func New(cfg Config) (*Service, error) {
	var errs []error
	if cfg.S3 == nil {
		errs = append(errs, errors.New("S3 client required"))
	}
	if cfg.Store == nil {
		errs = append(errs, errors.New("store required"))
	}
	if cfg.Concurrency < 0 || cfg.Concurrency > 1024 {
		errs = append(errs, fmt.Errorf("concurrency %d not in 1..1024", cfg.Concurrency))
	}
	if cfg.PageSize < 0 || cfg.PageSize > 1000 {
		errs = append(errs, fmt.Errorf("page size %d not in 1..1000", cfg.PageSize))
	}
	if cfg.CallTimeout < 0 {
		errs = append(errs, fmt.Errorf("call timeout %s is negative", cfg.CallTimeout))
	}
	if cfg.StoreTimeout < 0 {
		errs = append(errs, fmt.Errorf("store timeout %s is negative", cfg.StoreTimeout))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("multipart: %w", err)
	}
	s := &Service{
		s3: cfg.S3, store: cfg.Store, metrics: cfg.Metrics, callTimeout: cfg.CallTimeout,
		serverSidePrefix: cfg.ServerSidePrefix, now: cfg.Now, sweepBucket: cfg.SweepBucket, sweepPrefix: cfg.SweepPrefix,
		log:         cmp.Or(cfg.Log, slog.New(slog.DiscardHandler)),
		concurrency: cmp.Or(cfg.Concurrency, 16), storeTimeout: cmp.Or(cfg.StoreTimeout, StoreTimeout),
		pageSize: cmp.Or(cfg.PageSize, 1000),
	}
	if s.now == nil {
		s.now = time.Now
	}
	return s, nil
}

// storeContext bounds one PostgreSQL call by the store timeout (Config.StoreTimeout).
func (s *Service) storeContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, s.storeTimeout)
}

// callContext bounds one S3 call by the configured timeout.
func (s *Service) callContext(ctx context.Context) (context.Context, context.CancelFunc) {
	if s.callTimeout <= 0 {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, s.callTimeout)
}
