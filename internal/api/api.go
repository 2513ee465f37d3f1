package api

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/intakehq/intake/internal/auth"
	"github.com/intakehq/intake/internal/config"
	"github.com/intakehq/intake/internal/multipart"
	"github.com/intakehq/intake/internal/problem"
	"github.com/intakehq/intake/internal/ratelimit"
	"github.com/intakehq/intake/internal/sigv4"
	"github.com/intakehq/intake/internal/store/dbq"
	"github.com/intakehq/intake/pipeline"
)

// S3API is the part of the S3 client the API calls itself (creating multipart uploads; the rest of
// their life is internal/multipart's); *s3.Client satisfies it.
type S3API interface {
	CreateMultipartUpload(ctx context.Context, in *s3.CreateMultipartUploadInput, optFns ...func(*s3.Options)) (*s3.CreateMultipartUploadOutput, error)
}

var _ S3API = (*s3.Client)(nil)

// Queries is the part of the generated queries the API runs; *dbq.Queries satisfies it.
type Queries interface {
	APICreateUpload(ctx context.Context, arg dbq.APICreateUploadParams) error
	APICountOpenMultipart(ctx context.Context, arg dbq.APICountOpenMultipartParams) (int32, error)
	APIGetUpload(ctx context.Context, arg dbq.APIGetUploadParams) (dbq.Upload, error)
	APIGetUploadByKey(ctx context.Context, arg dbq.APIGetUploadByKeyParams) (dbq.Upload, error)
	APIGetUploadByIdempotencyKey(ctx context.Context, arg dbq.APIGetUploadByIdempotencyKeyParams) (dbq.Upload, error)
	APIListObjects(ctx context.Context, arg dbq.APIListObjectsParams) ([]dbq.Object, error)
	APIGetObject(ctx context.Context, arg dbq.APIGetObjectParams) (dbq.Object, error)
	APIObjectOfUpload(ctx context.Context, arg dbq.APIObjectOfUploadParams) (dbq.Object, error)
}

var _ Queries = (*dbq.Queries)(nil)

// DeadlineAborter arranges for a multipart upload still open at its deadline to be aborted. The
// API calls it right after creating an upload; the daemon passes tasks.Aborts, which enqueues a
// delayed multipart:abort task in Redis (task id = upload id) that the jobs role runs. When it
// fails, the upload's deadline in PostgreSQL still gets it aborted by the sweep.
type DeadlineAborter interface {
	ScheduleAbort(ctx context.Context, bucket, key, uploadID string, deadline time.Time) error
}

// Options configure a Server.
type Options struct {
	// API is the API section of the configuration (auth, CORS, expiries, key prefix, S3 timeout).
	API config.API
	// Bucket receives the uploads.
	Bucket string
	// MultipartDeadline is how long a multipart upload created through the API may stay open.
	MultipartDeadline time.Duration
	// Policy is the validation policy the consumer enforces; declared uploads are checked against it.
	Policy *pipeline.Policy
	// Queries runs the API's SQL (store.Store.Q).
	Queries Queries
	// S3 creates multipart uploads.
	S3 S3API
	// Multipart lists, completes and aborts multipart uploads (required).
	Multipart *multipart.Service
	// Presign is the S3 client whose endpoint, region and credentials presigned URLs use.
	Presign *s3.Client
	// Aborts schedules the abort of each multipart upload at its deadline; nil skips scheduling
	// (the sweep aborts uploads past their deadline either way).
	Aborts DeadlineAborter
	// Limiter bounds each owner's requests on this replica (INTAKE_API_OWNER_RATE; shared with
	// the jobs API); nil: no bound.
	Limiter *ratelimit.PerOwner
	// Waits wakes the long polls of GET /v1/uploads/{id}?wait= (*outbox.Listener); nil answers
	// them at once.
	Waits Waiter
	// Log receives request and error logs.
	Log *slog.Logger
	// Registerer receives the API's metrics.
	Registerer prometheus.Registerer
	// Now is the clock (time.Now when nil).
	Now func() time.Time
}

// Server is the presign API: the /v1 routes, Uppy's /s3 routes and /openapi.json.
type Server struct {
	cfg      config.API
	bucket   string
	deadline time.Duration
	policy   *pipeline.Policy
	q        Queries
	s3       S3API
	presign  *s3.PresignClient // POST policies, signed with signer's credentials (newPostPresigner)
	signer   *sigv4.Signer
	mp       *multipart.Service
	aborts   DeadlineAborter
	waits    Waiter
	// limiter bounds each owner's requests (nil: none).
	limiter *ratelimit.PerOwner
	// open counts the long polls each owner holds on this replica (bounded by cfg.MaxWaits).
	open waitCounts
	// stopping is closed when the daemon stops (New's context): long polls answer at once.
	stopping  <-chan struct{}
	log       *slog.Logger
	metrics   *metrics
	auth      *auth.Authenticator
	cors      cors
	ids       *requestIDs
	dates     dateHeader
	now       func() time.Time
	s3Timeout time.Duration
	// completeBudget bounds a complete request (CompleteBudget; tests shorten it).
	completeBudget time.Duration
	// completions counts the multipart completions running, those that outlived their request's
	// answer included (Wait waits for them).
	completions inflight
	// completeBodies bounds the bytes of complete requests' bodies held at once (admitComplete).
	completeBodies *bodyBudget
}

// New builds the Server. ctx bounds the JWKS refresh goroutine, if a JWKS URL is configured, and
// the long polls of GET /v1/uploads/{id}?wait=: when it ends (the daemon stops) they answer at once.
func New(ctx context.Context, o Options) (*Server, error) {
	var errs []error
	if o.Bucket == "" {
		errs = append(errs, errors.New("bucket is required"))
	}
	if o.Queries == nil || o.S3 == nil || o.Presign == nil || o.Multipart == nil {
		errs = append(errs, errors.New("queries, S3 and presign clients and the multipart service are required"))
	}
	if o.Log == nil || o.Registerer == nil {
		errs = append(errs, errors.New("logger and registerer are required"))
	}
	if o.API.PresignExpiry <= 0 || o.API.MaxPresignExpiry < o.API.PresignExpiry || o.API.MaxPresignExpiry > sigv4.MaxExpiry {
		errs = append(errs, fmt.Errorf("presign expiry %s / max %s are inconsistent", o.API.PresignExpiry, o.API.MaxPresignExpiry))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("api: %w", err)
	}
	signer, err := sigv4.NewSigner(o.Presign.Options())
	if err != nil {
		return nil, fmt.Errorf("api: %w", err)
	}
	m, err := newMetrics(o.Registerer)
	if err != nil {
		return nil, fmt.Errorf("api: register metrics: %w", err)
	}
	authn, err := auth.New(ctx, o.API, o.Log)
	if err != nil {
		return nil, fmt.Errorf("api: %w", err)
	}
	s := &Server{
		cfg: o.API, bucket: o.Bucket, deadline: cmp.Or(o.MultipartDeadline, 24*time.Hour),
		policy: o.Policy, q: o.Queries, s3: o.S3, presign: newPostPresigner(o.Presign), signer: signer,
		mp: o.Multipart, aborts: o.Aborts, waits: o.Waits, limiter: o.Limiter, log: o.Log, metrics: m, auth: authn, cors: newCORS(o.API.CORSOrigins),
		ids: newRequestIDs(), now: o.Now, stopping: ctx.Done(),
		s3Timeout: cmp.Or(o.API.S3Timeout, 10*time.Second), completeBudget: CompleteBudget,
		completeBodies: newBodyBudget(completeBodyOwnerBudget, completeBodyTotalBudget, m.refusedBodies.Inc),
	}
	if s.policy == nil {
		s.policy = pipeline.DefaultPolicy()
	}
	if s.now == nil {
		s.now = time.Now
	}
	if o.API.InsecureDevAuth {
		o.Log.Warn("INSECURE DEV AUTH is on: API requests without credentials are accepted as owner 'dev'. Never run this outside a developer's machine.",
			"env", "INTAKE_API_INSECURE_DEV_AUTH")
	}
	return s, nil
}

// Wait returns once no multipart completion is running, those that outlived their request's
// answer (the complete budget) included, or with ctx's error when ctx ends first. The daemon calls
// it when it stops, within its shutdown grace, so that a completion S3 is finishing is not cut off
// by the process's exit. A completion started while Wait waits is waited for too.
func (s *Server) Wait(ctx context.Context) error { return s.completions.wait(ctx) }

// Authenticator returns the Server's authenticator, for the other endpoints of the same service
// (POST /v1/jobs) to share its credentials and its JWKS refresh.
func (s *Server) Authenticator() *auth.Authenticator { return s.auth }

// route is one registered endpoint.
type route struct {
	pattern string // "METHOD /path" (net/http ServeMux syntax)
	fam     family
	h       handlerFunc
	// head says how HEAD, which ServeMux routes to GET patterns, is answered on a GET route.
	head headPolicy
}

// headPolicy is how a GET route answers HEAD.
type headPolicy bool

const (
	// headServed: HEAD runs the GET and drops its body (ServeMux's default), for routes that only
	// read.
	headServed headPolicy = false
	// headRefused: HEAD is answered 405 (refuseHead), for routes whose GET creates or signs
	// something (an intent, a presigned URL).
	headRefused headPolicy = true
)

// routes lists every endpoint. The OpenAPI test checks that openapi.json documents them all.
func (s *Server) routes() []route {
	return []route{
		{"POST /v1/uploads", familyV1, s.createUpload, headServed},
		{"GET /v1/uploads/{id}", familyV1, s.getUpload, headServed},
		{"POST /v1/uploads/{id}/parts", familyV1, s.presignParts, headServed},
		{"GET /v1/uploads/{id}/parts", familyV1, s.listParts, headServed},
		{"POST /v1/uploads/{id}/complete", familyV1, s.completeUpload, headServed},
		{"DELETE /v1/uploads/{id}", familyV1, s.abortUpload, headServed},
		{"GET /v1/objects", familyV1, s.listObjects, headServed},
		{"GET /v1/objects/{id}", familyV1, s.getObject, headServed},
		{"GET /v1/objects/{id}/download", familyV1, s.downloadObject, headRefused},

		{"GET /s3/params", familyUppy, s.uppyParams, headRefused},
		{"POST /s3/multipart", familyUppy, s.uppyCreateMultipart, headServed},
		{"GET /s3/multipart/{uploadId}", familyUppy, s.uppyListParts, headServed},
		{"GET /s3/multipart/{uploadId}/batch", familyUppy, s.uppyBatchSign, headRefused},
		{"GET /s3/multipart/{uploadId}/{partNumber}", familyUppy, s.uppySignPart, headRefused},
		{"POST /s3/multipart/{uploadId}/complete", familyUppy, s.uppyComplete, headServed},
		{"DELETE /s3/multipart/{uploadId}", familyUppy, s.uppyAbort, headServed},

		{"GET /openapi.json", familyPublic, serveOpenAPI, headServed},
	}
}

// Register adds the API's routes, a CORS preflight (OPTIONS) handler for each of their paths, and a
// refusal of HEAD on the GET routes with an effect, to mux.
func (s *Server) Register(mux *http.ServeMux) {
	routes := s.routes()
	allow := map[string][]string{} // path → its methods
	for _, rt := range routes {
		method, path, _ := strings.Cut(rt.pattern, " ")
		allow[path] = append(allow[path], method)
	}
	paths := map[string]bool{}
	for _, rt := range routes {
		_, path, _ := strings.Cut(rt.pattern, " ")
		h := s.wrap(rt.pattern, rt.fam, rt.h)
		if rt.head == headRefused {
			// Within the GET's handler rather than as a HEAD pattern of its own: ServeMux refuses
			// "HEAD /s3/multipart/{uploadId}/{partNumber}" beside "GET /s3/multipart/{uploadId}/batch"
			// (neither is more specific).
			refusal := s.wrap("HEAD "+path, familyPublic, refuseHead(strings.Join(append(allow[path], http.MethodOptions), ", ")))
			h = headOr(refusal, h)
		}
		mux.Handle(rt.pattern, h)
		if !paths[path] {
			paths[path] = true
			mux.HandleFunc("OPTIONS "+path, s.preflight)
		}
	}
}

// headOr serves HEAD requests with head (a refusal), and the others with next. It is a
// [problem.HeadRefuser], so a 405 for another method on its path does not list HEAD in Allow.
func headOr(head, next http.Handler) http.Handler { return headRefusal{head, next} }

// headRefusal is the handler headOr returns.
type headRefusal struct{ head, next http.Handler }

func (h headRefusal) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodHead {
		h.head.ServeHTTP(w, r)
		return
	}
	h.next.ServeHTTP(w, r)
}

// RefusesHead implements [problem.HeadRefuser].
func (headRefusal) RefusesHead() bool { return true }

// refuseHead answers HEAD on a GET route with an effect: 405 with the path's methods in Allow.
// ServeMux serves HEAD with a GET pattern's handler, which would create the intent or sign the URL
// of the GET and only drop the body; a link checker, a prefetching proxy or a page's HEAD request
// riding a cookie would do so unseen. It answers before authentication, as ServeMux answers a method
// a path does not take.
func refuseHead(allow string) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request, _ principal) *Problem {
		w.Header().Set("Allow", allow)
		return problemf(problem.MethodNotAllowed, "HEAD is not allowed on %s: its GET creates or signs something; send GET", r.URL.Path)
	}
}

// Handler returns a mux serving only the API (tests and benchmarks).
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	s.Register(mux)
	return mux
}
