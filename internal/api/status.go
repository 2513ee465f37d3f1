package api

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/intakehq/intake/internal/store/dbq"
	"github.com/intakehq/intake/pipeline"
)

// MaxWait caps ?wait= of GET /v1/uploads/{id} (below the HTTP server's write timeout).
const MaxWait = 30 * time.Second

// Waiter wakes long polls when a change that makes an upload done (a verdict, an absence after
// the completion) is committed, on any replica (*outbox.Listener, over PostgreSQL LISTEN/NOTIFY:
// the outbox's trigger and migration 0027's on objects). A wake-up may be spurious: the waiter reads
// the database again.
type Waiter interface {
	Subscribe(id uuid.UUID) (<-chan struct{}, func())
}

// uploadStatus is the body of GET /v1/uploads/{id}: the intent and, once the object landed, its
// verdict.
type uploadStatus struct {
	ID          uuid.UUID `json:"id"`
	Bucket      string    `json:"bucket"`
	Key         string    `json:"key"`
	Method      string    `json:"method"`
	Filename    string    `json:"filename"`
	ContentType string    `json:"content_type"`
	// Size is the declared size (absent for intents created without one, through Uppy's routes).
	Size   *int64 `json:"size,omitempty"`
	SHA256 string `json:"sha256,omitempty"`
	// Status is the intent's: pending, completed, aborted or expired.
	Status    string          `json:"status"`
	Metadata  json.RawMessage `json:"metadata,omitempty"`
	CreatedAt time.Time       `json:"created_at"`
	ExpiresAt time.Time       `json:"expires_at"`
	// Object is the object the upload produced, with its verdict (status, reason, size, types,
	// sha256, etag, width/height), once it landed.
	Object *objectJSON `json:"object,omitempty"`
	// Done is true once nothing more is expected: the object has a verdict (see isVerdict), or the
	// intent was aborted or expired.
	Done bool `json:"done"`
}

// parseWait reads ?wait=: a Go duration ("30s") or a number of seconds, from 0 to MaxWait.
func parseWait(v string) (time.Duration, *Problem) {
	if v == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		n, nerr := strconv.ParseUint(v, 10, 32)
		if nerr != nil {
			return 0, problemf(probInvalidParam, "wait %q is not a duration such as 30s", v)
		}
		d = time.Duration(n) * time.Second
	}
	if d < 0 || d > MaxWait {
		return 0, problemf(probInvalidParam, "wait must be between 0 and %s", MaxWait)
	}
	return d, nil
}

// getUpload serves GET /v1/uploads/{id}[?wait=30s]: the caller's upload and its verdict. With
// wait, it answers once the verdict is committed (woken through PostgreSQL LISTEN/NOTIFY, so a
// verdict committed by any replica wakes it) or when the wait ends, whichever comes first; and at
// once when the daemon starts to stop, so that long polls never hold its shutdown.
func (s *Server) getUpload(w http.ResponseWriter, r *http.Request, who principal) *Problem {
	id, err := uuid.Parse(r.PathValue("id"))
	if err != nil {
		return problemf(probNotFound, "no upload %q", r.PathValue("id"))
	}
	q := r.URL.Query()
	if p := uppySingle(q, "wait"); p != nil {
		return p
	}
	wait, p := parseWait(q.Get("wait"))
	if p != nil {
		return p
	}
	ctx := r.Context()
	var wake <-chan struct{}
	if wait > 0 && s.waits != nil {
		release, ok := s.open.acquire(who.owner, s.cfg.MaxWaits)
		if !ok {
			s.metrics.refusedWaits.Inc()
			w.Header().Set("Retry-After", "1")
			return problemf(probTooManyWaits, "%d long polls of yours are open on this replica, the limit (INTAKE_API_MAX_WAITS); wait for one to answer, or ask without wait", s.cfg.MaxWaits)
		}
		defer release()
		// Subscribe before reading, so that a verdict committed in between wakes us.
		ch, stop := s.waits.Subscribe(id)
		defer stop()
		wake = ch
	}
	st, p := s.uploadStatus(ctx, id, who.owner)
	if p != nil {
		return p
	}
	if wake != nil && !st.Done {
		timer := time.NewTimer(wait)
		defer timer.Stop()
		for expired := false; !st.Done && !expired; {
			select {
			case <-wake:
			case <-timer.C:
				expired = true
			case <-s.stopping: // the daemon stops: answer now rather than hold its shutdown
				expired = true
			case <-ctx.Done():
				return nil // the client left: recorded as statusClientClosed
			}
			if st, p = s.uploadStatus(ctx, id, who.owner); p != nil {
				if ctx.Err() != nil {
					return nil // the client left during the read: no failure of the database's
				}
				return p
			}
		}
	}
	writeJSON(w, http.StatusOK, st)
	return nil
}

// uploadStatus reads the caller's intent and its object.
func (s *Server) uploadStatus(ctx context.Context, id uuid.UUID, owner string) (uploadStatus, *Problem) {
	u, err := s.q.APIGetUpload(ctx, dbq.APIGetUploadParams{ID: id, Owner: owner})
	if errors.Is(err, pgx.ErrNoRows) {
		return uploadStatus{}, problemf(probNotFound, "no upload %s", id)
	}
	if err != nil {
		return uploadStatus{}, s.dbProblem(ctx, "load upload", err)
	}
	st := uploadStatus{
		ID: u.ID, Bucket: u.Bucket, Key: u.Key, Method: u.Method, Filename: u.Filename, ContentType: u.ContentType,
		Status: u.Status, Metadata: u.Metadata, CreatedAt: u.CreatedAt, ExpiresAt: u.ExpiresAt,
		Done: u.Status == "aborted" || u.Status == "expired",
	}
	if u.SizeDeclared {
		size := u.Size
		st.Size = &size
	}
	if u.Sha256 != nil {
		st.SHA256 = hex.EncodeToString(u.Sha256)
	}
	o, err := s.q.APIObjectOfUpload(ctx, dbq.APIObjectOfUploadParams{UploadID: &id, Owner: &owner})
	switch {
	case errors.Is(err, pgx.ErrNoRows):
	case err != nil:
		return uploadStatus{}, s.dbProblem(ctx, "load object of upload", err)
	default:
		j := toObjectJSON(o)
		st.Object = &j
		// Done too once S3 showed the upload (the intent completed) and its object was seen gone
		// since: no verdict is to come (an object deleted before intake inspected it). An absence
		// seen before the intent completed (a stray or forged event naming the key before the
		// upload landed) is no answer: the completed upload's own event is still to come.
		st.Done = st.Done || isVerdict(o) ||
			(u.Status == "completed" && absent(o.Status) && o.ObservedAt != nil && !o.ObservedAt.Before(u.UpdatedAt))
	}
	return st, nil
}

// isVerdict reports whether the object row holds a verdict, or an absence following one (deleted
// or missing after it was seen present: verdict_at set): what is notified (upload.valid,
// upload.rejected, upload.deleted; see the outbox in queries/objects.sql), and a row the reconcile
// marked missing after its verdict. An absence recorded for an object no record showed present (an
// event naming an object S3 did not have: `missing`; a stray removal's tombstone: `deleted`, both
// with no verdict_at) is none: the intent stays pending, and the real upload may still land. Every
// row change that makes an upload done wakes its long polls (migration 0027's trigger mirrors these
// rules: change both together).
func isVerdict(o dbq.Object) bool {
	switch {
	case o.Status == pipeline.StatusValid || o.Status == pipeline.StatusRejected:
		return true
	case absent(o.Status):
		return o.VerdictAt != nil
	}
	return false
}

// absent reports whether an object status says the key holds nothing.
func absent(status string) bool {
	return status == pipeline.StatusDeleted || status == pipeline.StatusMissing
}

// waitCounts counts the long polls each owner holds open (the zero value is ready to use).
type waitCounts struct {
	mu sync.Mutex
	n  map[string]int
}

// acquire takes one of owner's limit long polls (no limit when limit <= 0): ok is false when the
// owner holds limit already; otherwise release gives it back (once).
func (c *waitCounts) acquire(owner string, limit int) (release func(), ok bool) {
	if limit <= 0 {
		return func() {}, true
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n[owner] >= limit {
		return nil, false
	}
	if c.n == nil {
		c.n = map[string]int{}
	}
	c.n[owner]++
	var once sync.Once
	return func() {
		once.Do(func() {
			c.mu.Lock()
			defer c.mu.Unlock()
			if c.n[owner]--; c.n[owner] <= 0 {
				delete(c.n, owner) // the map holds the owners with long polls open, no more
			}
		})
	}, true
}
