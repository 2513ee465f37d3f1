package jobsapi

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/hibiken/asynq"
	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/intakehq/intake/internal/auth"
	"github.com/intakehq/intake/internal/problem"
	"github.com/intakehq/intake/internal/ratelimit"
	"github.com/intakehq/intake/internal/store/dbq"
	"github.com/intakehq/intake/worker/tasks"
)

// Route is the pattern the handler serves.
const Route = "POST /v1/jobs"

// Defaults and limits.
const (
	// DefaultMinSweepAge is the smallest older_than a sweep may ask for: younger uploads are
	// probably still being written.
	DefaultMinSweepAge = tasks.MinSweepAge
	// MaxBody bounds the request body.
	MaxBody = 64 << 10
)

// Authenticator says who made a request; *auth.Authenticator satisfies it (use its WithoutCookie:
// browsers have no business here).
type Authenticator interface {
	Authenticate(r *http.Request) (auth.Caller, *problem.Problem)
}

var _ Authenticator = (*auth.Authenticator)(nil)

// Uploads finds a tenant's upload intent by its object key; *dbq.Queries satisfies it.
type Uploads interface {
	APIGetUploadByKey(ctx context.Context, arg dbq.APIGetUploadByKeyParams) (dbq.Upload, error)
}

var _ Uploads = (*dbq.Queries)(nil)

// Config configures [Handler].
type Config struct {
	// Client enqueues the tasks (an *asynq.Client; required).
	Client tasks.Enqueuer
	// Inspector (an *asynq.Inspector) looks at the task holding an abort's or an inspection's ID
	// when it is posted again: one that asynq keeps archived or completed is replaced, since it
	// will never run (tasks.EnqueueReplacingFinished). When nil, such a task is answered as a
	// duplicate (an inspection with 409) and nothing runs until asynq drops the kept task.
	Inspector tasks.TaskStates
	// Auth authenticates callers (required). Operators may enqueue anything; tenants only act on
	// their own uploads.
	Auth Authenticator
	// Uploads checks a tenant's payload against its upload intents (required).
	Uploads Uploads
	// Buckets are the buckets tasks may name (required); the first is used when a payload names none.
	Buckets []string
	// MinSweepAge is the smallest older_than accepted for sweeps (default DefaultMinSweepAge).
	MinSweepAge time.Duration
	// SweepPrefix is the scope of intake's configured sweep (INTAKE_JOBS_SWEEP_PREFIX; empty: the
	// whole bucket). A sweep posted without prefix sweeps it; one whose prefix does not start with
	// it is refused (422): the bucket may hold other applications' multipart uploads, in use, that
	// the configuration keeps intake's sweep away from. An operator may narrow a sweep, never widen
	// it.
	SweepPrefix string
	// Limiter bounds each tenant's requests on this replica (INTAKE_API_OWNER_RATE), shared with
	// the API's routes so that a tenant's requests count against one budget; operators are not
	// bounded. Nil: no bound.
	Limiter *ratelimit.PerOwner
	// Log receives one line per accepted job (default: discard).
	Log *slog.Logger
	// Registerer, when set, receives the handler's request series: the API's
	// intake_http_requests_total{route="POST /v1/jobs", code} and
	// intake_http_request_duration_seconds{route}, shared with internal/api when it registered
	// them on the same registry (the daemon's).
	Registerer prometheus.Registerer
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Handler serves POST /v1/jobs.
type Handler struct {
	client      tasks.Enqueuer
	states      tasks.TaskStates
	auth        Authenticator
	uploads     Uploads
	buckets     []string
	limiter     *ratelimit.PerOwner
	minSweepAge time.Duration
	sweepPrefix string
	log         *slog.Logger
	now         func() time.Time
	metrics     *metrics
}

// New checks cfg and returns the handler.
func New(cfg Config) (*Handler, error) {
	var errs []error
	if cfg.Client == nil {
		errs = append(errs, errors.New("client required"))
	}
	if cfg.Auth == nil {
		errs = append(errs, errors.New("authenticator required"))
	}
	if cfg.Uploads == nil {
		errs = append(errs, errors.New("uploads query required"))
	}
	if len(cfg.Buckets) == 0 || slices.Contains(cfg.Buckets, "") {
		errs = append(errs, errors.New("buckets required"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("jobs api: %w", err)
	}
	h := &Handler{
		client: cfg.Client, states: cfg.Inspector, auth: cfg.Auth, uploads: cfg.Uploads, buckets: slices.Clone(cfg.Buckets), limiter: cfg.Limiter,
		minSweepAge: cmp.Or(cfg.MinSweepAge, DefaultMinSweepAge),
		sweepPrefix: cfg.SweepPrefix,
		log:         cmp.Or(cfg.Log, slog.New(slog.DiscardHandler)),
		now:         cfg.Now,
	}
	if h.now == nil {
		h.now = time.Now
	}
	if cfg.Registerer != nil {
		m, err := newMetrics(cfg.Registerer)
		if err != nil {
			return nil, fmt.Errorf("jobs api: register metrics: %w", err)
		}
		h.metrics = m
	}
	return h, nil
}

// Register adds the handler to mux under [Route], counted in the API's request series when
// Config.Registerer was set.
func (h *Handler) Register(mux *http.ServeMux) {
	var handler http.Handler = h
	if h.metrics != nil {
		handler = h.metrics.instrument(h)
	}
	mux.Handle(Route, handler)
}

// Request is the body of POST /v1/jobs.
type Request struct {
	// Type is one of tasks.Types.
	Type string `json:"type"`
	// Payload is the task's payload (see worker/tasks); bucket defaults to the configured bucket.
	Payload json.RawMessage `json:"payload"`
}

// Response is the body of a 202 answer.
type Response struct {
	// ID is the asynq task id.
	ID string `json:"id"`
	// Type and Queue echo the task's.
	Type  string `json:"type"`
	Queue string `json:"queue"`
	// State is the task's state (pending, scheduled); empty for a duplicate.
	State string `json:"state,omitempty"`
	// ProcessAt is when the task becomes due.
	ProcessAt *time.Time `json:"process_at,omitempty"`
	// Duplicate is true when an identical abort was already queued and is still to run (nothing
	// new was enqueued).
	Duplicate bool `json:"duplicate,omitempty"`
}

// ServeHTTP authenticates, validates, authorizes and enqueues one job.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	who, ap := h.auth.Authenticate(r)
	if ap != nil {
		problem.Write(w, *ap)
		return
	}
	if who.Dev {
		// Development auth asks for no credentials, so any page the developer's browser opens
		// could post here: a request the browser marks as another site's is refused.
		if why := auth.CrossSite(r, nil, false); why != "" {
			problem.Write(w, problem.Forbidden.With("cross-site request refused under development auth: "+why))
			return
		}
	}
	if !who.Operator {
		if p := h.limiter.Refuse(r.Context(), h.log, who.Owner); p != nil {
			problem.Write(w, *p)
			return
		}
	}
	if ct := r.Header.Get("Content-Type"); ct != "" {
		if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "application/json" {
			problem.Write(w, problem.UnsupportedMediaType.With("Content-Type must be application/json"))
			return
		}
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBody))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			problem.Write(w, problem.RequestTooLarge.With(fmt.Sprintf("the body exceeds %d bytes", MaxBody)))
			return
		}
		problem.Write(w, problem.InvalidJSON.With("could not read the body"))
		return
	}
	var req Request
	if p := strictDecode(body, &req); p != nil {
		problem.Write(w, p.kind.With(p.detail))
		return
	}
	task, p := h.build(req)
	if p != nil {
		problem.Write(w, p.kind.With(p.detail))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	if !who.Operator {
		if p := h.authorizeTenant(ctx, who.Owner, req.Type, task); p != nil {
			problem.Write(w, p.kind.With(p.detail))
			return
		}
	}
	var (
		opts   []asynq.Option
		states tasks.TaskStates
	)
	switch req.Type {
	case tasks.TypeAbortMultipart:
		// The task's ID is tasks.APIAbortTaskID (a ReasonAPI task's, from its constructor), not the
		// upload's deadline task's, so that it is not dropped as a duplicate until the deadline.
		// An earlier abort of the upload that failed for good (a 403, a wrong key) stays archived
		// under that ID: posting the abort again, once the cause is fixed, must run it.
		states = h.states
	case tasks.TypeInspectObject:
		// One inspection per object at a time: each one may hash gigabytes on the workers every
		// tenant shares, so repeating the request must not queue more of them. The task ID
		// (tasks.InspectTaskID, as tasks.EnqueueInspect gives it) stays taken while the inspection
		// is queued, running or retrying; one that failed for good is replaced.
		p, err := tasks.ParseInspectObject(task.Payload())
		if err != nil { // h.build checked it
			problem.Write(w, probInvalidPayload.With(err.Error()))
			return
		}
		opts, states = append(opts, asynq.TaskID(tasks.InspectTaskID(p.Bucket, p.Key))), h.states
	}
	info, err := tasks.EnqueueReplacingFinished(ctx, h.client, states, task, opts...)
	if err == nil && req.Type == tasks.TypeInspectObject && tasks.Duplicate(info) {
		problem.Write(w, probInspectionQueued.With(inspectionQueuedDetail))
		return
	}
	if err != nil {
		h.log.ErrorContext(ctx, "enqueue job failed", "type", req.Type, "caller", who.Name, "operator", who.Operator, "err", err)
		problem.Write(w, probQueueUnavailable.With("the task could not be enqueued; try again"))
		return
	}
	resp := Response{ID: info.ID, Type: req.Type, Queue: info.Queue, Duplicate: tasks.Duplicate(info)}
	if !resp.Duplicate {
		resp.State = info.State.String()
		at := info.NextProcessAt.UTC()
		resp.ProcessAt = &at
	}
	h.log.InfoContext(ctx, "job enqueued", "type", req.Type, "task_id", info.ID, "caller", who.Name, "operator", who.Operator, "duplicate", resp.Duplicate)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusAccepted)
	_ = json.NewEncoder(w).Encode(resp)
}

// inspectionQueuedDetail is the 409's detail: the rule tasks.EnqueueInspect enforces.
const inspectionQueuedDetail = "an inspection of this object is already queued, running or waiting for a retry: " +
	"one inspection per object at a time (one that failed for good does not count); it reads the object as it is when it runs"

// authorizeTenant checks that a tenant's task acts on one of its own uploads, as PostgreSQL
// records them: an abort must name the bucket, key and S3 upload id of one of its pending multipart
// uploads, an inspection the key of one of its uploads. Sweeps act on every tenant's uploads and
// need operator credentials. Another tenant's upload answers 404, like an unknown one.
func (h *Handler) authorizeTenant(ctx context.Context, owner, typ string, task *asynq.Task) *problemErr {
	var bucket, key, uploadID string
	switch typ {
	case tasks.TypeAbortMultipart:
		p, err := tasks.ParseAbortMultipart(task.Payload())
		if err != nil {
			return &problemErr{probInvalidPayload, err.Error()}
		}
		if p.Deadline.After(h.now().Add(time.Minute)) {
			// A far deadline would keep the task in Redis until then (the year 9999 if asked) and
			// hold the task ID an operator's abort of the same upload needs.
			return &problemErr{probInvalidPayload, "deadline: a tenant's abort runs now (the upload's own deadline abort is already scheduled); leave deadline out"}
		}
		bucket, key, uploadID = p.Bucket, p.Key, p.UploadID
	case tasks.TypeInspectObject:
		p, err := tasks.ParseInspectObject(task.Payload())
		if err != nil {
			return &problemErr{probInvalidPayload, err.Error()}
		}
		bucket, key = p.Bucket, p.Key
	default:
		return &problemErr{problem.Forbidden, fmt.Sprintf("%s acts on every tenant's uploads: it needs operator credentials (INTAKE_API_ADMIN_KEYS, or a JWT with the admin scope)", typ)}
	}
	if owner == "" {
		return &problemErr{problem.Forbidden, "these credentials act for no tenant"}
	}
	u, err := h.uploads.APIGetUploadByKey(ctx, dbq.APIGetUploadByKeyParams{Bucket: bucket, Key: key, Owner: owner})
	if errors.Is(err, pgx.ErrNoRows) || err == nil && uploadID != "" && (u.MultipartUploadID == nil || *u.MultipartUploadID != uploadID) {
		return &problemErr{problem.NotFound, fmt.Sprintf("no upload of yours has key %q%s in bucket %q (tenant credentials act on their own uploads only)", key, ifUpload(uploadID), bucket)}
	}
	if err != nil {
		h.log.WarnContext(ctx, "look up the tenant's upload", "owner", owner, "key", key, "err", err)
		return &problemErr{problem.DatabaseUnavailable, "could not check the upload's owner; try again"}
	}
	if uploadID != "" && u.Status != "pending" {
		return &problemErr{problem.UploadNotPending, fmt.Sprintf("upload %s is %s", u.ID, u.Status)}
	}
	return nil
}

func ifUpload(uploadID string) string {
	if uploadID == "" {
		return ""
	}
	return fmt.Sprintf(" and S3 upload id %q", uploadID)
}

// build validates the request and returns its task.
func (h *Handler) build(req Request) (*asynq.Task, *problemErr) {
	if !tasks.KnownType(req.Type) {
		return nil, &problemErr{probUnknownType, fmt.Sprintf("type %q is not one of %s", req.Type, strings.Join(tasks.Types, ", "))}
	}
	if len(bytes.TrimSpace(req.Payload)) == 0 || string(bytes.TrimSpace(req.Payload)) == "null" {
		return nil, &problemErr{probInvalidPayload, "payload: required"}
	}
	var (
		task *asynq.Task
		err  error
	)
	switch req.Type {
	case tasks.TypeAbortMultipart:
		var p tasks.AbortMultipart
		if pe := h.decodePayload(req.Payload, &p, &p.Bucket); pe != nil {
			return nil, pe
		}
		if p.Deadline.IsZero() {
			p.Deadline = h.now()
		}
		p.Reason = tasks.ReasonAPI
		task, err = tasks.NewAbortMultipart(p)
	case tasks.TypeInspectObject:
		// The payload's own fields only: an inspection's event (tasks.InspectObject.Event) is the
		// consumer's hand-off, with the event's sequencer, which decides what later events of the
		// object may change. A caller must not forge one ("event" is an unknown field).
		var p struct {
			Bucket string `json:"bucket"`
			Key    string `json:"key"`
		}
		if pe := h.decodePayload(req.Payload, &p, &p.Bucket); pe != nil {
			return nil, pe
		}
		task, err = tasks.NewInspectObject(tasks.InspectObject{Bucket: p.Bucket, Key: p.Key})
	case tasks.TypeSweep:
		var p tasks.Sweep
		if pe := h.decodePayload(req.Payload, &p, &p.Bucket); pe != nil {
			return nil, pe
		}
		if time.Duration(p.OlderThan) < h.minSweepAge {
			return nil, &problemErr{probInvalidPayload, fmt.Sprintf("older_than: %s is below the minimum of %s (younger uploads may still be in progress)", p.OlderThan, h.minSweepAge)}
		}
		if p.Prefix == "" {
			p.Prefix = h.sweepPrefix
		} else if !strings.HasPrefix(p.Prefix, h.sweepPrefix) {
			return nil, &problemErr{probInvalidPayload, fmt.Sprintf("prefix: %q is outside the sweep's configured scope, keys starting with %q (INTAKE_JOBS_SWEEP_PREFIX): a sweep may be narrowed, not widened; leave prefix out to sweep that scope", p.Prefix, h.sweepPrefix)}
		}
		task, err = tasks.NewSweep(p)
	}
	if err != nil {
		return nil, &problemErr{probInvalidPayload, err.Error()}
	}
	return task, nil
}

// decodePayload decodes payload strictly into v, fills *bucket with the default bucket when empty
// and checks that it is one of intake's.
func (h *Handler) decodePayload(payload []byte, v any, bucket *string) *problemErr {
	if pe := strictDecode(payload, v); pe != nil {
		return pe.payload()
	}
	if *bucket == "" {
		*bucket = h.buckets[0]
	}
	if !slices.Contains(h.buckets, *bucket) {
		return &problemErr{problem.Forbidden, fmt.Sprintf("bucket %q is not one intake manages", *bucket)}
	}
	return nil
}

// strictDecode decodes one JSON value, refusing unknown fields and trailing data.
func strictDecode(b []byte, v any) *problemErr {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		if strings.HasPrefix(err.Error(), "json: unknown field") {
			return &problemErr{problem.UnknownField, err.Error()}
		}
		return &problemErr{problem.InvalidJSON, err.Error()}
	}
	if dec.More() {
		return &problemErr{problem.InvalidJSON, "trailing data after the JSON value"}
	}
	return nil
}
