package cli

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/intakehq/intake/internal/api"
	"github.com/intakehq/intake/internal/config"
	"github.com/intakehq/intake/internal/gctune"
	"github.com/intakehq/intake/internal/health"
	"github.com/intakehq/intake/internal/multipart"
	"github.com/intakehq/intake/internal/objstore"
	"github.com/intakehq/intake/internal/outbox"
	"github.com/intakehq/intake/internal/problem"
	"github.com/intakehq/intake/internal/queue"
	"github.com/intakehq/intake/internal/store"
	"github.com/intakehq/intake/internal/telemetry"
	"github.com/intakehq/intake/pipeline"
	"github.com/intakehq/intake/worker/jobs"
	"github.com/intakehq/intake/worker/tasks"
)

// RunCmd runs the daemon.
type RunCmd struct {
	Roles string `name:"roles" env:"INTAKE_ROLES" default:"all" help:"Roles to run: api,consumer,jobs,scheduler or all."`
	// HealthInterval is how often the readiness checks run in the background (intake_dependency_up
	// stays current without /readyz probes). Hidden: tests shorten it.
	HealthInterval time.Duration `name:"health-interval" hidden:"" default:"15s" help:"How often the readiness checks run in the background (intake_dependency_up)."`
	// Config is every setting of the daemon, with the daemon's wording of the settings whose
	// meaning depends on the command (see config.Config). kong reads every set tag of a field.
	//lint:ignore SA5008 kong takes repeated set tags (one per variable)
	config.Config `embed:"" set:"database_url_help=PostgreSQL URL (required, except by --roles scheduler)." set:"queue_url_help=SQS queue URL of S3 events (required by the consumer role and the API's ingress)." set:"dlq_url_help=Dead-letter queue URL (optional: permanent failures go there at once; else the queue's redrive policy moves them; with no redrive policy, a message failing on its 5th receive goes there too)."`
}

// App holds what the roles share. It is built once by RunCmd and handed to each role's starter.
type App struct {
	// Cfg is the validated configuration.
	Cfg *config.Config
	// Roles are the roles this process runs.
	Roles []string
	// Log is the process logger.
	Log *slog.Logger
	// Registry receives every metric; /metrics serves it.
	Registry *prometheus.Registry
	// Store is the PostgreSQL store. It is nil until PostgreSQL has answered (serve waits for it
	// before starting the roles), and stays nil in a process that runs only the scheduler, which
	// does not use PostgreSQL (config.UsesDatabase).
	Store *store.Store
	// S3 is the daemon's S3 client; Presign signs URLs for clients.
	S3, Presign *s3.Client
	// SQS is the SQS client.
	SQS *sqs.Client
	// Redis is asynq's connection option.
	Redis asynq.RedisConnOpt
	// Mux is the public HTTP mux (INTAKE_LISTEN_ADDR); roles add their routes to it.
	Mux *http.ServeMux
	// Admin is the operators' mux: /metrics, /readyz with each check's error, /healthz and, with
	// INTAKE_ADMIN_PPROF, /debug/pprof/. It is served on INTAKE_ADMIN_LISTEN_ADDR; without one,
	// only /metrics is served (on Mux) and the detailed readiness is in the logs.
	Admin *http.ServeMux
	// Health holds the readiness checks; roles add theirs.
	Health *health.Checker
	// Policy is the validation policy (INTAKE_POLICY_FILE), loaded once at start: the API checks
	// declared uploads against it, the pipeline checks what landed.
	Policy *pipeline.Policy

	// stopSlack replaces the package's stopSlack (tests).
	stopSlack time.Duration
	// healthInterval is how often the readiness checks run in the background (health.Checker.Run).
	healthInterval time.Duration
	// pgErr is the last failure of the wait for PostgreSQL, which the postgres check reports until
	// the store is open.
	pgErr atomic.Pointer[error]
	// usesDB is whether the process's roles use PostgreSQL (config.UsesDatabase): a process that
	// runs only the scheduler neither waits for it nor checks it.
	usesDB bool
	// phase is what the starting process is doing (waiting for PostgreSQL, applying migrations,
	// starting a role): the detail of the early 503s and of the started check.
	phase atomic.Pointer[string]
	// started is set by openGates, once the roles serve: until then the started check fails.
	started atomic.Bool
	// stopping is set when SIGTERM starts INTAKE_SHUTDOWN_DELAY (holdBeforeDrain): the started
	// check fails again, so that load balancers take the replica out while it still serves.
	stopping atomic.Bool

	procOnce sync.Once
	proc     *pipeline.Processor
	procErr  error
	mpOnce   sync.Once
	mp       *multipart.Service
	mpErr    error
	closers  []func()

	listener *outbox.Listener
}

// Listener returns the outbox Listener shared by the roles of this process (one PostgreSQL
// connection listening for committed notifications: the API's long polls and the relay wait on
// it), and, the first time only, the component that runs it.
func (a *App) Listener() (*outbox.Listener, []Component) {
	if a.listener != nil {
		return a.listener, nil
	}
	a.listener = outbox.NewListener(a.Store.Pool, a.Log.With("component", "outbox-listener"))
	return a.listener, []Component{{Name: "outbox-listener", Run: a.listener.Run}}
}

// Multipart returns the multipart service shared by the api and jobs roles (one set of metrics),
// building it on first use. Each of its S3 calls is bounded by INTAKE_API_S3_TIMEOUT.
func (a *App) Multipart() (*multipart.Service, error) {
	a.mpOnce.Do(func() {
		m, err := multipart.NewMetrics(a.Registry)
		if err != nil {
			a.mpErr = err
			return
		}
		a.mp, a.mpErr = multipart.New(multipart.Config{
			S3: a.S3, Store: a.Store.Multipart(), Log: a.Log.With("component", "multipart"), Metrics: m,
			CallTimeout: a.Cfg.API.S3Timeout,
			// Only a sweep of the configured scope tells IntakeSweepFailing that sweeping works.
			SweepBucket: a.Cfg.Bucket, SweepPrefix: a.Cfg.Jobs.SweepPrefix,
		})
	})
	return a.mp, a.mpErr
}

// Processor returns the pipeline Processor shared by the consumer and jobs roles (one set of
// metrics, one canceller of multipart-abort tasks), building it on first use.
func (a *App) Processor() (*pipeline.Processor, error) {
	a.procOnce.Do(func() {
		// Completed multipart uploads cancel their delayed abort task in Redis.
		insp := asynq.NewInspector(a.Redis)
		a.onClose(func() { _ = insp.Close() })
		// Lookups and records of concurrent messages share round trips and commits; closed after
		// the roles have stopped, before the pool.
		records := store.NewBatchedRecords(a.Store, store.BatchOptions{})
		a.onClose(records.Close)
		if err := a.Registry.Register(records); err != nil {
			a.procErr = fmt.Errorf("register record store metrics: %w", err)
			return
		}
		// An event's hash that finds every slot busy becomes an object:inspect task of the jobs
		// workers (their share per owner bounds one tenant's backlog) instead of waiting on a
		// consumer worker within its message's timeout; recorded in PostgreSQL first, so that a
		// task Redis loses is queued again (the maintenance task), and only while a jobs server
		// works the queue.
		var handOff pipeline.HashHandOff
		if a.Cfg.Consumer.HashHandOff {
			client := asynq.NewClient(a.Redis)
			a.onClose(func() { _ = client.Close() })
			h, err := jobs.NewHandOff(jobs.HandOffConfig{
				Tasks: client, TaskStates: insp, Store: jobs.NewHandedOffStore(a.Store.Q), Servers: insp,
			})
			if err != nil {
				a.procErr = err
				return
			}
			handOff = h
		}
		a.proc, a.procErr = pipeline.NewProcessor(pipeline.ProcessorConfig{
			Objects: objstore.NewObjects(a.S3),
			Records: records,
			Buckets: []string{a.Cfg.Bucket},
			Policy:  a.Policy,
			// Consumer setting: the jobs role's inspections carry no event time.
			EventTimeTolerance: a.Cfg.Consumer.EventTimeTolerance,
			Log:                a.Log.With("component", "pipeline"),
			Registerer:         a.Registry,
			HashMaxSize:        a.Cfg.Consumer.HashMaxSize,
			HashConcurrency:    a.Cfg.Consumer.HashConcurrency,
			HashHandOff:        handOff,
			Archive:            a.Cfg.Consumer.Archive,
			Multipart:          tasks.NewCanceller(insp),
		})
	})
	return a.proc, a.procErr
}

func (a *App) slack() time.Duration { return cmp.Or(a.stopSlack, stopSlack) }

// onClose registers f to run when the daemon has stopped (after every component returned).
func (a *App) onClose(f func()) { a.closers = append(a.closers, f) }

func (a *App) close() {
	for i := len(a.closers) - 1; i >= 0; i-- {
		a.closers[i]()
	}
}

// Component is a long-running part of a role. Run blocks until ctx is cancelled, then stops taking
// new work, finishes (or returns) in-flight work within the grace period and returns.
type Component struct {
	// Name appears in logs.
	Name string
	// Run does the work.
	Run func(ctx context.Context) error
}

// roleStarters build each role's components. Each lives in its own role_*.go file.
var roleStarters = map[string]func(ctx context.Context, a *App) ([]Component, error){
	config.RoleAPI:       startAPI,
	config.RoleConsumer:  startConsumer,
	config.RoleJobs:      startJobs,
	config.RoleScheduler: startScheduler,
}

// Run validates the configuration (logging its warnings, config.Config.Warnings), serves /healthz
// and /readyz, waits for PostgreSQL when the roles use it (see serve), and runs the roles until
// SIGTERM.
func (r *RunCmd) Run(g *Globals) error {
	roles, err := config.ParseRoles(r.Roles)
	if err != nil {
		return err
	}
	cfg := g.Config
	if err := cfg.Validate(roles); err != nil {
		return fmt.Errorf("invalid configuration:\n%w", err)
	}
	ctx := g.Ctx
	log := g.Log
	gcPercent, gcFromEnv := gctune.Apply(os.Getenv)
	memLimit, memLimitFrom := gctune.MemoryLimit(os.Getenv, os.DirFS("/"))
	log.Info("starting intake",
		"version", Version, "roles", strings.Join(roles, ","), "listen", cfg.ListenAddr, "admin_listen", cfg.AdminListenAddr,
		"gc_percent", gcPercent, "gc_percent_from_gogc", gcFromEnv,
		"memory_limit", memLimit, "memory_limit_from", memLimitFrom,
		"bucket", cfg.Bucket, "queue_url", cfg.QueueURL, "dlq_url", cfg.DLQURL,
		"s3_endpoint", cfg.AWS.S3Endpoint, "sqs_endpoint", cfg.AWS.SQSEndpoint, "region", cfg.AWS.Region,
		"database", config.Redact(cfg.DatabaseURL), "redis", config.Redact(cfg.RedisURL),
		"policy_file", cmp.Or(cfg.PolicyFile, "(none: the built-in policy)"))
	for _, w := range cfg.Warnings(roles) {
		log.Warn(w)
	}

	app, err := build(ctx, cfg, roles, log)
	if err != nil {
		return err
	}
	app.healthInterval = r.HealthInterval
	return app.finish(app.serve(ctx))
}

// errForcedStop is returned by serve when it stopped waiting for the components: a second signal,
// or components still running past the grace period.
var errForcedStop = errors.New("forced stop")

// closeTimeout bounds the closers after a forced stop.
const closeTimeout = 3 * time.Second

// finish closes the App after serve returned err and returns err. After a forced stop the
// components still running may hold pool connections, which pgxpool.Close and the batchers'
// Close would wait for: the closers then get closeTimeout, and the process exits without them.
func (a *App) finish(err error) error {
	if !errors.Is(err, errForcedStop) {
		a.close()
		return err
	}
	closed := make(chan struct{})
	go func() { a.close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(closeTimeout):
		a.Log.Error("exiting without closing the dependencies: components still hold them", "waited", closeTimeout.String())
	}
	return err
}

// build prepares the shared App: the AWS clients, Redis's connection option, the policy, the
// metrics, the readiness checks and the HTTP muxes. It connects to nothing: PostgreSQL, when the
// roles use it, is waited for by serve (connect), once the listeners answer /healthz and /readyz.
// The caller closes the App.
func build(ctx context.Context, cfg *config.Config, roles []string, log *slog.Logger) (*App, error) {
	awsCfg, err := objstore.LoadAWS(ctx, cfg.AWS, log)
	if err != nil {
		return nil, err
	}
	redisOpt, err := parseRedisURL(cfg.RedisURL)
	if err != nil {
		return nil, err
	}
	policy, err := pipeline.LoadPolicy(cfg.PolicyFile)
	if err != nil {
		return nil, fmt.Errorf("INTAKE_POLICY_FILE: %w", err)
	}
	for _, w := range policy.Warnings() {
		log.Warn("the validation policy (INTAKE_POLICY_FILE) may check less than it seems to", "detail", w)
	}
	reg := telemetry.NewRegistry()
	a := &App{
		Cfg: cfg, Roles: roles, Log: log, Registry: reg,
		S3: objstore.NewClient(awsCfg, cfg.AWS), Presign: objstore.NewPresignClient(awsCfg, cfg.AWS),
		SQS: queue.NewClient(awsCfg, cfg.AWS), Redis: redisOpt, Policy: policy,
		Mux: http.NewServeMux(), Admin: http.NewServeMux(),
		Health: health.NewChecker(health.Config{Timeout: 3 * time.Second, TTL: time.Second, Registerer: reg, Log: log.With("component", "health")}),
		usesDB: config.UsesDatabase(roles),
	}
	if a.usesDB {
		a.setPhase(phaseWaitPG)
	} else {
		a.setPhase(phaseRoles)
	}
	a.addChecks()
	a.mountHealth()
	return a, nil
}

// errNotConnected is what the postgres check reports before the first attempt to connect ended.
var errNotConnected = errors.New("postgres: not connected yet")

// What a starting process does (App.phase), as the early 503s and the started check say it.
const (
	phaseWaitPG  = "waiting for PostgreSQL"
	phaseMigrate = "applying the database migrations"
	phaseSchema  = "checking the database schema"
	phaseRoles   = "starting its roles"
)

func (a *App) setPhase(p string) { a.phase.Store(&p) }

// phaseNow returns what the starting process does (see setPhase).
func (a *App) phaseNow() string {
	if p := a.phase.Load(); p != nil {
		return *p
	}
	return phaseRoles
}

// startedCheck is the required readiness check "started": it fails, saying what the process does,
// until every role has started and the listeners serve the roles' routes (openGates). Without it,
// /readyz answered 200 as soon as the dependencies did, while a role still starting (the API's
// first JWKS fetch, up to 10 s) left every route answering 503.
func (a *App) startedCheck(context.Context) error {
	if a.stopping.Load() {
		return errors.New("intake is stopping (SIGTERM): it serves until INTAKE_SHUTDOWN_DELAY ends, then drains")
	}
	if a.started.Load() {
		return nil
	}
	return fmt.Errorf("intake is starting: %s", a.phaseNow())
}

// pgWaiting is the postgres readiness check while serve waits for PostgreSQL: the last failure.
func (a *App) pgWaiting(context.Context) error {
	if err := a.pgErr.Load(); err != nil {
		return *err
	}
	return errNotConnected
}

// connect waits for PostgreSQL (waitStore: with backoff while it is down or refuses connections
// for now, failing at once on a wrong password, an unknown database and the like; until ctx ends),
// then applies the migrations (INTAKE_MIGRATE) or checks that the tables are not in the layout of
// before schemas and that every migration of the binary is applied (checkMigrations), and makes
// the store the App's: the postgres check asks it whether it accepts writes from then on. A schema in the old layout or
// with pending migrations is an error, as a wrong password is: waiting would not mend it (someone
// must run `intake migrate up`), and a process that started anyway would answer 500 on every
// query of a missing table while its readiness passed.
func (a *App) connect(ctx context.Context) error {
	st, err := waitStore(ctx, a.Cfg, a.Log, time.Time{}, func(err error) { a.pgErr.Store(&err) })
	if err != nil {
		return err
	}
	a.setPhase(phaseSchema)
	if a.Cfg.Migrate {
		a.setPhase(phaseMigrate)
		res, err := store.Upgrade(ctx, st.Pool, store.WithMigrationLog(a.Log))
		if err != nil {
			st.Close()
			return err
		}
		if len(res.Moved) > 0 {
			a.Log.Warn("moved intake's tables from schema public to intake's own schema; replicas of older releases (which look in public) must be replaced",
				"schema", res.Schema, "moved", res.Moved)
		}
		a.Log.Info("migrations applied", "schema", res.Schema, "count", len(res.Applied), "names", res.Applied)
	} else if legacy, err := store.LegacyLayout(ctx, st.Pool); err != nil || legacy {
		st.Close()
		if err != nil {
			return err
		}
		return fmt.Errorf("intake's tables are in schema public, but intake now keeps them in schema %s: run `intake migrate` to move them (or set INTAKE_DB_SCHEMA=public to keep them there)", st.Schema)
	} else if err := checkMigrations(ctx, st); err != nil {
		st.Close()
		return err
	}
	a.Store = st
	a.onClose(st.Close)
	// Every role that opens the store writes to it (intents, records, aborts, the outbox): a
	// standby that answers pings (the old primary after a failover, DNS not yet moved) is not ready.
	watch, err := newClockWatch(a.Registry, a.Log.With("component", "clock"), func(ctx context.Context) (time.Duration, error) {
		return st.ClockSkew(ctx, time.Now)
	})
	if err != nil {
		return err
	}
	a.Health.Add("postgres", watch.after(st.CheckWritable))
	return nil
}

// checkMigrations fails when a migration of the binary is not applied to the store's schema,
// naming the schema, how many are pending, the latest applied and the binary's latest, and what to
// run. Migrations applied that the binary does not know pass: during a rollout, the pods of the
// older release run beside a schema the new release's init container has migrated (migrations are
// backward compatible).
func checkMigrations(ctx context.Context, st *store.Store) error {
	list, err := store.Status(ctx, st.Pool)
	if err != nil {
		return fmt.Errorf("check the migrations of schema %s: %w", st.Schema, err)
	}
	pending, latest := 0, "none"
	for _, m := range list {
		if m.AppliedAt == nil {
			pending++
		} else {
			latest = m.Name
		}
	}
	if pending == 0 {
		return nil
	}
	noun := "migrations"
	if pending == 1 {
		noun = "migration"
	}
	return fmt.Errorf("schema %s has %d pending %s (latest applied %s, binary has %s): run `intake migrate up` "+
		"(or set INTAKE_MIGRATE=true), and check that INTAKE_DB_SCHEMA names intake's schema",
		st.Schema, pending, noun, latest, list[len(list)-1].Name)
}

// mountHealth serves liveness, readiness, metrics and pprof on the App's muxes (see mountHealthOn).
func (a *App) mountHealth() { a.mountHealthOn(a.Mux, a.Admin) }

// mountHealthOn serves liveness, readiness, metrics and pprof: /healthz and the terse /readyz (names
// and ok/failed) on the public mux; /metrics, the detailed /readyz and pprof (when enabled) on the
// admin mux. Without an admin listener /metrics stays on the public mux, as before it existed.
// pprof's /debug/pprof/cmdline is not served: the command line may hold secrets (--database-url
// with its password, --api-jwt-secret, …).
func (a *App) mountHealthOn(public, admin *http.ServeMux) {
	metrics := promhttp.HandlerFor(a.Registry, promhttp.HandlerOpts{Registry: a.Registry})
	public.HandleFunc("GET /healthz", health.Healthz)
	public.HandleFunc("GET /readyz", a.Health.Readyz)
	admin.HandleFunc("GET /healthz", health.Healthz)
	admin.HandleFunc("GET /readyz", a.Health.ReadyzDetail)
	admin.Handle("GET /metrics", metrics)
	if a.Cfg.AdminListenAddr == "" {
		public.Handle("GET /metrics", metrics)
	}
	if a.Cfg.AdminPprof {
		// Registered by hand on the admin mux only (net/http/pprof's init also registers them on
		// http.DefaultServeMux, which intake never serves).
		admin.HandleFunc("GET /debug/pprof/", pprof.Index)
		admin.HandleFunc("GET /debug/pprof/cmdline", func(w http.ResponseWriter, _ *http.Request) {
			problem.Write(w, problem.NotFound.With("the command line is not served: it may hold secrets"))
		})
		admin.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		admin.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
		admin.HandleFunc("POST /debug/pprof/symbol", pprof.Symbol)
		admin.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	}
}

// listener is one HTTP server of the daemon.
type listener struct {
	name string
	ln   net.Listener
	srv  *http.Server
	gate *gate
}

// gate is a listener's handler: early until the roles have started (open), then the App's mux.
type gate struct {
	open         atomic.Bool
	early, ready http.Handler
}

func (g *gate) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if g.open.Load() {
		g.ready.ServeHTTP(w, r)
		return
	}
	g.early.ServeHTTP(w, r)
}

// startingRetryAfter is the Retry-After of the answers given while intake starts.
const startingRetryAfter = "5"

// starting answers every route but those of mountHealthOn until the roles serve (openGates): 503
// database-unavailable with Retry-After, whose detail says what the process does (waits for
// PostgreSQL, applies the migrations, starts its roles). The type stays database-unavailable in
// every phase: it is the 503 the API documents and clients retry. As the API's own answers, it
// carries X-Request-Id (the client's own when valid, else a new one), and its shape is the route's:
// Uppy's routes (/s3/…) get Companion's {"error", "type"} as application/json, the others an RFC
// 9457 problem whose instance is urn:request:<id>. A process that runs the API wraps it in the
// API's CORS (api.WithCORS, in listen): its preflights are answered as the API will answer them and
// a browser's script reads the 503 and its Retry-After instead of a network error.
func (a *App) starting() http.Handler {
	ids := api.NewRequestIDs()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := ids.For(r.Header.Get("X-Request-Id"))
		h := w.Header()
		h.Set("X-Request-Id", id)
		h.Set("Retry-After", startingRetryAfter)
		p := problem.DatabaseUnavailable.With("intake is starting (" + a.phaseNow() + "); try again shortly")
		if strings.HasPrefix(r.URL.Path, "/s3/") {
			h.Set("Content-Type", "application/json")
			h.Set("Cache-Control", "no-store")
			w.WriteHeader(p.Status)
			_ = json.NewEncoder(w).Encode(struct {
				Error string `json:"error"`
				Type  string `json:"type"`
			}{p.Detail, p.Type})
			return
		}
		p.Instance = api.InstanceURN(id)
		problem.Write(w, p)
	})
}

// listen opens the public listener and, when configured, the admin one. Until openGates, they
// serve only what mountHealthOn mounts (/healthz; /readyz, which fails until then: see
// startedCheck; /metrics; pprof) and answer anything else with starting's 503.
func (a *App) listen() ([]listener, error) {
	type spec struct {
		name, addr   string
		early, ready http.Handler
		writeTimeout time.Duration
	}
	earlyPublic, earlyAdmin := http.NewServeMux(), http.NewServeMux()
	a.mountHealthOn(earlyPublic, earlyAdmin)
	starting := a.starting()
	earlyAdmin.Handle("/", starting)
	if a.runs(config.RoleAPI) {
		starting = api.WithCORS(a.Cfg.API.CORSOrigins, starting)
	}
	earlyPublic.Handle("/", starting)
	specs := []spec{{"http", a.Cfg.ListenAddr, earlyPublic, a.Mux, api.WriteTimeout}}
	if a.Cfg.AdminListenAddr != "" {
		// CPU profiles and traces stream for ?seconds=N: give them room.
		specs = append(specs, spec{"admin", a.Cfg.AdminListenAddr, earlyAdmin, a.Admin, 10 * time.Minute})
	}
	var out []listener
	for _, sp := range specs {
		ln, err := net.Listen("tcp", sp.addr)
		if err != nil {
			for _, l := range out {
				_ = l.ln.Close()
			}
			return nil, fmt.Errorf("listen on %s (%s): %w", sp.addr, sp.name, err)
		}
		g := &gate{early: sp.early, ready: sp.ready}
		out = append(out, listener{name: sp.name, ln: ln, gate: g, srv: api.NewHTTPServer(g, sp.writeTimeout,
			slog.NewLogLogger(a.Log.With("listener", sp.name).Handler(), slog.LevelWarn))})
	}
	return out, nil
}

// openGates makes the listeners serve the App's muxes, once every route is on them: what matches
// none gets a problem+json 404 or 405. The started check passes from then on.
func (a *App) openGates(lns []listener) {
	a.Mux.Handle("/", problem.Unmatched(a.Mux))
	a.Admin.Handle("/", problem.Unmatched(a.Admin))
	for _, l := range lns {
		l.gate.open.Store(true)
	}
	a.started.Store(true)
}

// addChecks registers the readiness checks. "started" is required: it fails until the roles serve
// (startedCheck). A dependency counts for readiness when one of the process's roles cannot work
// without it: PostgreSQL for every role but the scheduler; the bucket for the consumer and the
// jobs; Redis for the jobs and the scheduler; the queue for the consumer. The others the process
// still uses are reported without counting (AddOptional): an API replica presigns without S3 (only
// multipart creation calls it), without Redis (only POST /v1/jobs needs it) and without SQS (only
// the event ingress, POST /v1/events/s3, calls it; presign, status and download never do), so
// their outage must not take every replica out of its Service. A dependency the process never
// calls is not checked: a process that runs only the scheduler (which enqueues into Redis) checks
// neither PostgreSQL nor S3. (The consumer adds its own checks: itself, and the DLQ as optional.)
// runs reports whether the process runs any of roles.
func (a *App) runs(roles ...string) bool {
	return slices.ContainsFunc(roles, func(r string) bool { return slices.Contains(a.Roles, r) })
}

func (a *App) addChecks() {
	cfg := a.Cfg
	runs := a.runs
	add := func(name string, check health.Check, required bool) {
		if required {
			a.Health.Add(name, check)
		} else {
			a.Health.AddOptional(name, check)
		}
	}
	add("started", a.startedCheck, true)
	if a.usesDB {
		add("postgres", a.pgWaiting, true) // until connect replaces it with the store's ping
	}
	if runs(config.RoleAPI, config.RoleConsumer, config.RoleJobs) {
		add("s3", func(ctx context.Context) error { return objstore.CheckBucket(ctx, a.S3, cfg.Bucket) }, runs(config.RoleConsumer, config.RoleJobs))
	}
	insp := asynq.NewInspector(a.Redis) // one client for every check, not a pool per probe
	a.onClose(func() { _ = insp.Close() })
	add("redis", redisPing(insp), runs(config.RoleJobs, config.RoleScheduler))
	ingress := cfg.Consumer.IngressToken != "" && runs(config.RoleAPI, config.RoleConsumer)
	if cfg.QueueURL != "" && (runs(config.RoleConsumer) || ingress) {
		add("sqs", func(ctx context.Context) error { return queue.CheckQueue(ctx, a.SQS, cfg.QueueURL) }, runs(config.RoleConsumer))
	}
}

func redisPing(insp *asynq.Inspector) health.Check {
	return func(ctx context.Context) error {
		done := make(chan error, 1)
		go func() { _, err := insp.Queues(); done <- err }()
		select {
		case err := <-done:
			if err != nil {
				return fmt.Errorf("redis: %w", err)
			}
			return nil
		case <-ctx.Done():
			return fmt.Errorf("redis: %w", ctx.Err())
		}
	}
}

// serve runs the daemon until ctx ends (SIGTERM) or a part of it fails:
//
//  1. the HTTP listeners open and serve /healthz (200) and /readyz (503 until step 3 is done,
//     naming started failed, and postgres too while it is waited for; the admin listener also
//     /metrics and pprof), and the readiness checks start running in the background every
//     healthInterval (intake_dependency_up);
//  2. when the roles use PostgreSQL (every role but the scheduler), it is waited for (connect), as
//     long as it takes: a process started during a failover or before its database comes up
//     waits, logging why, instead of exiting (and crash-looping); SIGTERM ends the wait, and the
//     process exits 0. A schema that needs `intake migrate` (the old layout, pending migrations)
//     ends the process with an error instead;
//  3. the roles start, the listeners serve their routes, /readyz may pass, and the components run;
//  4. on SIGTERM, a process serving the API with INTAKE_SHUTDOWN_DELAY keeps serving for the
//     delay, /readyz answering 503 (holdBeforeDrain); then the HTTP servers stop accepting, the
//     components drain within the grace period (drain), and serve returns.
func (a *App) serve(ctx context.Context) error {
	// The roles get runCtx too: what they start in the background (the JWKS refresh) stops when a
	// component fails and the daemon stops, not only at SIGTERM. SIGTERM (ctx's end) ends it once
	// the shutdown delay, if any, is over; a component's failure at once.
	runCtx, cancelRun := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelRun()
	go func() {
		select {
		case <-ctx.Done():
			a.holdBeforeDrain(runCtx)
			cancelRun()
		case <-runCtx.Done():
		}
	}()
	lns, err := a.listen()
	if err != nil {
		return err
	}
	var (
		wg   sync.WaitGroup
		errs errorList
	)
	fail := func(err error) {
		errs.add(err)
		cancelRun()
	}
	for _, l := range lns {
		a.Log.Info("http server listening", "listener", l.name, "addr", l.ln.Addr().String())
		wg.Go(func() {
			if err := l.srv.Serve(l.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				fail(fmt.Errorf("%s server: %w", l.name, err))
			}
		})
	}
	wg.Go(func() { a.Health.Run(runCtx, a.healthInterval) })

	if a.usesDB {
		if err := a.connect(runCtx); err != nil {
			if runCtx.Err() == nil {
				fail(err)
			} else if ctx.Err() != nil {
				a.Log.Info("stopping before PostgreSQL answered", "err", err)
			}
			return a.drain(&wg, lns, &errs)
		}
	} else if a.Cfg.Migrate {
		a.Log.Info("INTAKE_MIGRATE ignored: the scheduler role does not use PostgreSQL (the other roles' processes, or `intake migrate up`, apply the migrations)")
	}
	var comps []Component
	for _, role := range a.Roles {
		a.setPhase("starting role " + role)
		cs, err := roleStarters[role](runCtx, a)
		if err != nil {
			fail(fmt.Errorf("start role %s: %w", role, err))
			return a.drain(&wg, lns, &errs)
		}
		comps = append(comps, cs...)
	}
	a.openGates(lns)
	for _, c := range comps {
		wg.Go(func() {
			a.Log.Info("component started", "component", c.Name)
			if err := c.Run(runCtx); err != nil && !errors.Is(err, context.Canceled) {
				fail(fmt.Errorf("%s: %w", c.Name, err))
			}
			a.Log.Info("component stopped", "component", c.Name)
		})
	}

	<-runCtx.Done()
	return a.drain(&wg, lns, &errs)
}

// holdBeforeDrain is the shutdown delay (INTAKE_SHUTDOWN_DELAY) of a started process serving the
// API: /readyz answers 503 at once (the started check fails, its cached report dropped) while every
// route, and every component, keeps serving for the delay, so that a load balancer following the
// health checks stops sending requests before the listener closes. It returns when the delay ends,
// at a second SIGINT/SIGTERM (the drain begins at once; a third stops waiting for it), or when
// runCtx ends (a component failed).
func (a *App) holdBeforeDrain(runCtx context.Context) {
	d := a.Cfg.ShutdownDelay
	if d <= 0 || !a.started.Load() || !a.runs(config.RoleAPI) || runCtx.Err() != nil {
		return // no delay, nothing served yet, or a component failed: drain at once
	}
	sig, stopSig := notifyTerm()
	defer stopSig()
	a.stopping.Store(true)
	a.Health.Add("started", a.startedCheck) // drops the cached report: the next /readyz fails
	a.Log.Info("stopping: /readyz answers 503 while the API serves for the shutdown delay, then the drain begins", "delay", d.String())
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-sig:
		a.Log.Info("second signal: the shutdown delay is cut short, draining now")
	case <-runCtx.Done():
	}
}

// errorList collects the errors of the daemon's goroutines.
type errorList struct {
	mu   sync.Mutex
	errs []error
}

func (l *errorList) add(err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.errs = append(l.errs, err)
}

// join returns the errors added so far, joined (nil: none).
func (l *errorList) join() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return errors.Join(l.errs...)
}

// stopSlack is how long past the grace period the components may take to return (the consumer
// returns within 8 s past its grace, its deletes flushed).
const stopSlack = 10 * time.Second

// drain stops the HTTP servers and waits for the components (wg) within one deadline, set when
// the shutdown starts: the grace period plus stopSlack. A second SIGINT/SIGTERM, at any point of
// it, stops waiting at once. It returns the errors the daemon's goroutines reported (errs).
func (a *App) drain(wg *sync.WaitGroup, lns []listener, errs *errorList) error {
	a.Log.Info("shutting down", "grace", a.Cfg.ShutdownGrace.String())
	sig, stopSig := notifyTerm()
	defer stopSig()
	hard := time.NewTimer(a.Cfg.ShutdownGrace + a.slack())
	defer hard.Stop()
	shutdownCtx, cancel := context.WithTimeout(context.Background(), a.Cfg.ShutdownGrace)
	defer cancel()
	for _, l := range lns {
		wg.Go(func() {
			if err := l.srv.Shutdown(shutdownCtx); err != nil {
				a.Log.Warn("http server shutdown", "listener", l.name, "err", err)
				_ = l.srv.Close()
			}
		})
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-sig:
		return fmt.Errorf("second signal: exiting without waiting for in-flight work: %w", errForcedStop)
	case <-hard.C:
		return fmt.Errorf("components did not stop within the shutdown grace period and %s: %w", a.slack(), errForcedStop)
	}
	err := errs.join()
	if err == nil {
		a.Log.Info("stopped cleanly")
	}
	return err
}
