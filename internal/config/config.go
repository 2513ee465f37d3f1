// Package config holds intake's settings: one struct, loaded from environment variables with
// command-line flags overriding them (kong tags), and one Validate that reports every problem at once
// with the variable's name.
//
// # Sources
//
// Every field has an environment variable (shown in its `env` tag) and a flag of the same meaning.
// The AWS SDK's own variables (AWS_REGION, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_PROFILE,
// AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL_SQS, …) are honoured through the SDK's credential chain; the
// endpoint fields here only exist so the start-up banner can print them and flags can override them.
package config

import (
	"encoding/base64"
	"errors"
	"fmt"
	"iter"
	"maps"
	"math"
	"net"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/robfig/cron/v3"

	"github.com/intakehq/intake/internal/redact"
	"github.com/intakehq/intake/internal/webhookurl"
)

// Roles a process can run. "all" is shorthand for every role.
const (
	RoleAPI       = "api"
	RoleConsumer  = "consumer"
	RoleJobs      = "jobs"
	RoleScheduler = "scheduler"
)

// MinIngressTokenLen is the shortest accepted INTAKE_CONSUMER_INGRESS_TOKEN: whoever holds the token
// can put any event into the queue, so it must not be guessable.
const MinIngressTokenLen = 32

// AllRoles lists every role in start order.
var AllRoles = []string{RoleAPI, RoleConsumer, RoleJobs, RoleScheduler}

// UsesDatabase reports whether a process running roles needs PostgreSQL: every role but the
// scheduler does. The scheduler only enqueues periodic tasks into Redis, so a process running it
// alone neither waits for PostgreSQL nor needs DATABASE_URL.
func UsesDatabase(roles []string) bool {
	return slices.ContainsFunc(roles, func(r string) bool { return r != RoleScheduler })
}

// MaxShutdownGraceWarn is the INTAKE_SHUTDOWN_GRACE above which [Config.Warnings] warns: the
// Kubernetes manifests of deploy/k8s give a pod 45 s (the scheduler 40 s) between SIGTERM and
// SIGKILL, which must hold the api's 5 s preStop pause, the grace, and the 10 s the components
// get past it to return.
const MaxShutdownGraceWarn = 30 * time.Second

// MaxShutdownDelay bounds INTAKE_SHUTDOWN_DELAY: load balancers' health checks take a replica out
// within a few intervals of a few seconds each; a longer delay only keeps a stopping process up.
const MaxShutdownDelay = 2 * time.Minute

// MaxMultipartDeadline bounds INTAKE_JOBS_MULTIPART_DEADLINE: the bucket's lifecycle rule
// (deploy/aws/s3-lifecycle.json) aborts every multipart upload 8 days after it was initiated (at
// the first UTC midnight past them), so a longer deadline would be a promise S3 breaks; the day
// between them covers the deadline's grace (a complete accepted just before it) and clock skew.
const MaxMultipartDeadline = 7 * 24 * time.Hour

// SQSMaxVisibility is the longest a received SQS message can stay hidden, counted from its receive:
// ChangeMessageVisibility past it is refused.
const SQSMaxVisibility = 12 * time.Hour

// Config is everything intake needs to run. The zero value is not usable: load it through the CLI
// (kong fills defaults, environment and flags), then call Validate.
//
// The settings that operator commands need too are grouped in sections (Database, Redis, Queues,
// S3Bucket, Logging, AWS), embedded here so that their fields read as Config's own
// (cfg.DatabaseURL). `intake run` takes every setting as a flag; each operator command takes only
// the sections it uses (internal/cli), so its --help lists what it needs. The help of the settings
// whose meaning depends on the command (is DATABASE_URL required? what is INTAKE_DLQ_URL for?) is
// a kong variable, ${name=default}: the default is the operator commands' wording, and a command
// whose wording differs sets its own with the tag set:"name=text" where it embeds the section
// (`intake run` does, in internal/cli).
type Config struct {
	// Database locates PostgreSQL and intake's schema.
	Database `embed:""`
	// Redis locates asynq's Redis.
	Redis `embed:""`

	// AWS holds the S3/SQS client settings.
	AWS AWS `embed:"" prefix:""`

	// S3Bucket names the bucket uploads go to and events come from.
	S3Bucket `embed:""`
	// Queues are the SQS queue of the bucket's events and its dead-letter queue.
	Queues `embed:""`

	// Logging is the log level and format. They are global flags of the command line (internal/cli
	// copies them in), so kong does not read them here.
	Logging `kong:"-"`

	// ListenAddr is where the HTTP server (API, ingress, health, metrics) listens.
	ListenAddr string `name:"listen" env:"INTAKE_LISTEN_ADDR" default:"127.0.0.1:8080" help:"HTTP listen address."`
	// AdminListenAddr, when set, is a second HTTP listener for operators: /metrics, /readyz with
	// each check's error, and /debug/pprof/ when AdminPprof is on. The public listener then keeps
	// only /healthz and a terse /readyz besides the API.
	AdminListenAddr string `name:"admin-listen" env:"INTAKE_ADMIN_LISTEN_ADDR" help:"Operators' HTTP listen address (/metrics, detailed /readyz, pprof); empty: /metrics stays on the main listener."`
	// AdminPprof serves net/http/pprof under /debug/pprof/ on the admin listener (never on the
	// public one).
	AdminPprof bool `name:"admin-pprof" env:"INTAKE_ADMIN_PPROF" help:"Serve /debug/pprof/ on the admin listener (needs INTAKE_ADMIN_LISTEN_ADDR)."`
	// Migrate runs pending migrations at start-up.
	Migrate bool `name:"migrate" env:"INTAKE_MIGRATE" help:"Run database migrations at start-up."`
	// ShutdownGrace bounds how long in-flight work may take after SIGTERM. Above
	// [MaxShutdownGraceWarn] (30s) the start-up logs a warning (see [Config.Warnings]).
	ShutdownGrace time.Duration `name:"shutdown-grace" env:"INTAKE_SHUTDOWN_GRACE" default:"25s" help:"Time allowed for in-flight work after SIGTERM (above 30s, raise the pods' terminationGracePeriodSeconds)."`
	// ShutdownDelay is how long a process serving the API keeps serving after SIGTERM, /readyz
	// answering 503, before it drains: a load balancer that learns of a stopping replica only from
	// its health checks (not from Kubernetes, whose manifests pause in preStop instead) takes it out
	// before its listener closes. 0, the default, drains at once. Counted with ShutdownGrace by
	// [Config.Warnings].
	ShutdownDelay time.Duration `name:"shutdown-delay" env:"INTAKE_SHUTDOWN_DELAY" default:"0s" help:"After SIGTERM, keep serving the API this long with /readyz answering 503, then drain (for load balancers that follow health checks; 0 = drain at once)."`
	// PolicyFile is an optional YAML validation policy (see README); built-in defaults otherwise.
	PolicyFile string `name:"policy-file" env:"INTAKE_POLICY_FILE" help:"YAML validation policy file."`
	// EventsRetention is how long archived events (the events table) are kept; the periodic
	// maintenance task deletes older ones. 0 keeps them forever.
	EventsRetention time.Duration `name:"events-retention" env:"INTAKE_EVENTS_RETENTION" default:"720h" help:"Delete archived events older than this (0 = keep forever)."`
	// IntentsRetention is how long intents that ended without an upload (status expired or aborted)
	// are kept after they ended and reached their deadline (the later of updated_at and
	// expires_at); the periodic maintenance task deletes older ones. 0 keeps them forever; else at
	// least [MinIntentsRetention]. A deleted intent's Idempotency-Key is free again.
	IntentsRetention time.Duration `name:"intents-retention" env:"INTAKE_INTENTS_RETENTION" default:"720h" help:"Delete intents that ended without an upload (expired, aborted) this long after they ended or reached their deadline, the later (0 = keep forever; else at least 336h)."`

	// Consumer tunes the SQS consumer.
	Consumer Consumer `embed:"" prefix:"consumer-" envprefix:"INTAKE_CONSUMER_"`
	// API tunes the HTTP API and its authentication.
	API API `embed:"" prefix:"api-" envprefix:"INTAKE_API_"`
	// Jobs tunes the asynq server and scheduler.
	Jobs Jobs `embed:"" prefix:"jobs-" envprefix:"INTAKE_JOBS_"`
	// Webhook configures the webhooks that tell apps the verdicts (sent by the jobs role).
	Webhook Webhook `embed:"" prefix:"webhook-" envprefix:"INTAKE_WEBHOOK_"`
	// NotifyAsynqQueue, when set, is the asynq queue (of the app) that receives every notification
	// as an "intake:upload.verdict" task (worker/tasks), besides the webhooks.
	NotifyAsynqQueue string `name:"notify-asynq-queue" env:"INTAKE_NOTIFY_ASYNQ_QUEUE" help:"asynq queue of the app that receives every verdict as an intake:upload.verdict task (empty: none; not one of intake's own intake-* queues)."`
}

// Database locates PostgreSQL and the schema of intake's tables.
type Database struct {
	// DatabaseURL is the PostgreSQL connection string (pgx syntax). Required, except by a
	// process that runs only the scheduler role (see [UsesDatabase]).
	DatabaseURL string `name:"database-url" env:"DATABASE_URL" help:"${database_url_help=PostgreSQL URL (required).}"`
	// DBSchema is the PostgreSQL schema that holds intake's tables (the pool's search_path). Empty
	// means the first schema of DATABASE_URL's search_path parameter when it has one, else "intake".
	DBSchema string `name:"db-schema" env:"INTAKE_DB_SCHEMA" help:"PostgreSQL schema of intake's tables (default: DATABASE_URL's search_path, else intake)."`
}

// Redis locates the Redis that holds asynq's tasks.
type Redis struct {
	// RedisURL is the Redis URL used by asynq (redis://host:port/db).
	RedisURL string `name:"redis-url" env:"REDIS_URL" default:"redis://127.0.0.1:6379/0" help:"${redis_url_help=Redis URL of asynq.}"`
}

// S3Bucket names intake's bucket.
type S3Bucket struct {
	// Bucket is the S3 bucket uploads go to and events come from.
	Bucket string `name:"bucket" env:"INTAKE_BUCKET" help:"S3 bucket for uploads (required)."`
}

// Queues are the SQS queues of the bucket's events.
type Queues struct {
	// Queue is the queue of the bucket's events.
	Queue `embed:""`
	// DLQ is its dead-letter queue.
	DLQ `embed:""`
}

// Queue is the SQS queue of the bucket's events.
type Queue struct {
	// QueueURL is the SQS queue that receives the bucket's event notifications.
	QueueURL string `name:"queue-url" env:"INTAKE_QUEUE_URL" help:"${queue_url_help=SQS queue URL of S3 events.}"`
}

// DLQ is the dead-letter queue of the bucket's events.
type DLQ struct {
	// DLQURL, when set, receives permanently failing messages explicitly (else the redrive policy does).
	DLQURL string `name:"dlq-url" env:"INTAKE_DLQ_URL" help:"${dlq_url_help=Dead-letter queue URL of S3 events.}"`
}

// Logging is the log level and format of every command.
type Logging struct {
	// LogLevel is debug, info, warn or error.
	LogLevel string `name:"log-level" env:"INTAKE_LOG_LEVEL" default:"info" enum:"debug,info,warn,error" help:"Log level."`
	// LogFormat is json (default) or text.
	LogFormat string `name:"log-format" env:"INTAKE_LOG_FORMAT" default:"json" enum:"json,text" help:"Log format."`
}

// Webhook configures the notifications sent to apps (internal/webhook, internal/outbox).
type Webhook struct {
	// URL is the default endpoint: every notification is posted there (empty: none). More
	// endpoints, per key prefix, are declared in the policy file.
	URL string `name:"url" env:"URL" help:"Default webhook endpoint (http or https URL; empty: none)."`
	// Secret signs the default endpoint's requests: "whsec_" + base64 of 24 to 64 random bytes.
	Secret string `name:"secret" env:"SECRET" help:"Secret of the default endpoint: whsec_ followed by base64 (Standard Webhooks)."`
	// AllowPrivate lets webhooks go to loopback, link-local and private addresses (development).
	AllowPrivate bool `name:"allow-private" env:"ALLOW_PRIVATE" help:"Allow webhook URLs that resolve to loopback, link-local or private addresses (development only)."`
	// Timeout bounds one delivery attempt.
	Timeout time.Duration `name:"timeout" env:"TIMEOUT" default:"10s" help:"Timeout of one webhook attempt (1s..5m)."`
	// Concurrency is how many deliveries run at once (an asynq server of their own).
	Concurrency int `name:"concurrency" env:"CONCURRENCY" default:"20" help:"Webhook deliveries run at once (1..1024)."`
	// Retention is how long delivered notifications stay in the outbox table.
	Retention time.Duration `name:"retention" env:"RETENTION" default:"24h" help:"How long delivered notifications are kept in the outbox (at least 1h)."`
}

// AWS holds client settings beyond the SDK's own environment.
type AWS struct {
	// AWSRegion is the region.
	AWSRegion `embed:""`
	// S3Endpoints are the S3 endpoint settings (commands that use only SQS leave them out).
	S3Endpoints `embed:""`
	// SQSEndpoints is the SQS endpoint setting.
	SQSEndpoints `embed:""`
}

// AWSRegion is the AWS region.
type AWSRegion struct {
	// Region is the AWS region.
	Region string `name:"aws-region" env:"AWS_REGION" default:"us-east-1" help:"AWS region."`
}

// S3Endpoints are where S3 is reached, by intake and by the clients of its presigned URLs. The
// operator commands, which presign nothing, take [S3Client] instead.
type S3Endpoints struct {
	// S3Endpoint overrides the S3 endpoint (MinIO, LocalStack…).
	S3Endpoint string `name:"s3-endpoint" env:"AWS_ENDPOINT_URL_S3" help:"S3 endpoint URL override."`
	// PathStyle forces path-style S3 addressing; on by default when S3Endpoint is set.
	PathStyle *bool `name:"s3-path-style" env:"INTAKE_S3_PATH_STYLE" help:"Force path-style S3 URLs (default: on with a custom endpoint)."`
	// S3PublicEndpoint, when set, is the endpoint written into presigned URLs (browsers may reach S3
	// under another name than the daemon does).
	S3PublicEndpoint string `name:"s3-public-endpoint" env:"INTAKE_S3_PUBLIC_ENDPOINT" help:"Endpoint used in presigned URLs (default: the S3 endpoint)."`
}

// S3Client is the part of [S3Endpoints] a command that calls S3 but presigns nothing reads (the
// same flags and variables); [S3Client.Endpoints] turns it into S3Endpoints.
type S3Client struct {
	// S3Endpoint overrides the S3 endpoint (MinIO, LocalStack…).
	S3Endpoint string `name:"s3-endpoint" env:"AWS_ENDPOINT_URL_S3" help:"S3 endpoint URL override."`
	// PathStyle forces path-style S3 addressing; on by default when S3Endpoint is set.
	PathStyle *bool `name:"s3-path-style" env:"INTAKE_S3_PATH_STYLE" help:"Force path-style S3 URLs (default: on with a custom endpoint)."`
}

// Endpoints returns the S3 endpoint settings of c, with no public endpoint.
func (c S3Client) Endpoints() S3Endpoints {
	return S3Endpoints{S3Endpoint: c.S3Endpoint, PathStyle: c.PathStyle}
}

// SQSEndpoints is where SQS is reached.
type SQSEndpoints struct {
	// SQSEndpoint overrides the SQS endpoint (kumo, LocalStack…).
	SQSEndpoint string `name:"sqs-endpoint" env:"AWS_ENDPOINT_URL_SQS" help:"SQS endpoint URL override."`
}

// UsePathStyle reports whether S3 requests should use path-style addressing.
func (a AWS) UsePathStyle() bool {
	if a.PathStyle != nil {
		return *a.PathStyle
	}
	return a.S3Endpoint != ""
}

// Consumer tunes the SQS consumer role.
type Consumer struct {
	// Receivers is the number of concurrent long-poll ReceiveMessage loops.
	Receivers int `name:"receivers" env:"RECEIVERS" default:"4" help:"Concurrent long-poll receivers (1..64)."`
	// Workers bounds how many messages are processed at once.
	Workers int `name:"workers" env:"WORKERS" default:"64" help:"Messages processed concurrently (1..4096)."`
	// Visibility is the visibility timeout requested for received messages; heartbeats extend it.
	// Whole seconds, 5s..12h.
	Visibility time.Duration `name:"visibility" env:"VISIBILITY" default:"60s" help:"Visibility timeout for received messages (whole seconds, 5s..12h)."`
	// WaitTime is the long-poll wait: whole seconds, 1s..20s.
	WaitTime time.Duration `name:"wait-time" env:"WAIT_TIME" default:"20s" help:"Long-poll wait time (whole seconds, 1s..20s)."`
	// MaxBackoff caps the visibility delay given to retried messages: 1s to 12h minus
	// MessageTimeout and Visibility (the delay is set after up to MessageTimeout of processing, and
	// SQS refuses a visibility that ends more than 12 h after the receive).
	MaxBackoff time.Duration `name:"max-backoff" env:"MAX_BACKOFF" default:"15m" help:"Cap of the retry backoff for failing messages (at least 1s, at most 12h minus the message timeout and the visibility)."`
	// MessageTimeout bounds the processing of one message (inspection, hash): past it the
	// processing is cancelled, the heartbeat stops extending the message, and it is retried later.
	MessageTimeout time.Duration `name:"message-timeout" env:"MESSAGE_TIMEOUT" default:"5m" help:"Longest processing of one message (inspection, hash) before it is cancelled and retried later."`
	// Archive stores raw bodies in the events table for replay.
	Archive bool `name:"archive" env:"ARCHIVE" help:"Archive raw event bodies in PostgreSQL."`
	// HashMaxSize is the largest object whose SHA-256 is computed (0 = only when the intent declared one).
	HashMaxSize int64 `name:"hash-max-size" env:"HASH_MAX_SIZE" default:"0" help:"Compute SHA-256 for objects up to this size in bytes even without a declared hash (0: only when declared)."`
	// HashConcurrency bounds the hashes a process runs at once (0: no bound): those running share
	// the host's bandwidth (pipeline.ProcessorConfig.HashConcurrency).
	HashConcurrency int `name:"hash-concurrency" env:"HASH_CONCURRENCY" default:"8" help:"Hashes of objects over 16 MiB (declared sha256, HASH_MAX_SIZE) run at once; more wait their turn (0: no bound)."`
	// HashHandOff passes an event's inspection to the jobs workers (an object:inspect task,
	// recorded in PostgreSQL first) when its hash finds no free slot or would outlast the
	// message's time, instead of waiting in the message (pipeline.ProcessorConfig.HashHandOff).
	HashHandOff bool `name:"hash-handoff" env:"HASH_HANDOFF" default:"true" negatable:"" help:"When every hash slot is busy (or a hash would outlast the message timeout), record the event's inspection in PostgreSQL, queue it as an object:inspect task for the jobs workers and finish the message, instead of waiting on a consumer worker within the message timeout (only while a jobs server works the queue; the maintenance task queues again what Redis loses)."`
	// IngressToken authenticates POST /v1/events/s3 (MinIO webhook auth_token). Empty disables the ingress.
	IngressToken string `name:"ingress-token" env:"INGRESS_TOKEN" help:"Bearer token for POST /v1/events/s3; empty disables the ingress."`
	// EventTimeTolerance is how far in the future an event's eventTime may lie (clock skew between
	// the S3 store and intake) before it is clamped to the time of processing. Event times never
	// decide what a row says; clamping keeps forged far-future times out of the objects table.
	EventTimeTolerance time.Duration `name:"event-time-tolerance" env:"EVENT_TIME_TOLERANCE" default:"5m" help:"Event times further in the future than this are clamped to now."`
}

// API tunes the HTTP API role.
type API struct {
	// JWTSecret is the HS256 shared secret for bearer tokens. It is an operator-level secret: whoever
	// holds it can mint a token for any subject (any tenant) and, with JWTAdminScope in its scope,
	// an operator token. Give a tenant's backend its own secret in JWTTenantSecrets instead.
	JWTSecret string `name:"jwt-secret" env:"JWT_SECRET" help:"HS256 secret for bearer JWTs (operator-level: its holder can mint a token for any subject, and operator tokens with the admin scope)."`
	// JWTTenantSecrets are per-tenant HS256 secrets, "owner=secret" pairs separated by commas (see
	// [ParseTenantSecrets]). An HS256 token whose subject names an owner listed here is verified with
	// that owner's secret only, and acts for that owner only, never as an operator: a tenant's backend
	// can mint tokens for its own browsers without holding JWTSecret.
	JWTTenantSecrets string `name:"jwt-tenant-secrets" env:"JWT_TENANT_SECRETS" help:"Per-tenant HS256 secrets for bearer JWTs: owner=secret,owner2=secret2 (each at least 32 bytes; a token verified by one acts for that owner only, never as an operator)."`
	// JWKSURL is a JWKS endpoint for RS256/ES256 bearer tokens.
	JWKSURL string `name:"jwks-url" env:"JWKS_URL" help:"JWKS URL for RS256/ES256 bearer JWTs."`
	// JWTIssuer must equal the token's iss; required with a JWT secret or JWKS URL.
	JWTIssuer string `name:"jwt-issuer" env:"JWT_ISSUER" help:"Required JWT issuer (iss); required with JWT auth."`
	// JWTAudience must be among the token's aud; required with a JWT secret or JWKS URL unless
	// JWTAllowAnyAudience waives it.
	JWTAudience string `name:"jwt-audience" env:"JWT_AUDIENCE" help:"Required JWT audience (aud); required with JWT auth."`
	// JWTAllowAnyAudience accepts tokens whatever their aud (only for an identity provider that
	// issues tokens for intake alone): any token the issuer signed for any application is accepted.
	JWTAllowAnyAudience bool `name:"jwt-allow-any-audience" env:"JWT_ALLOW_ANY_AUDIENCE" help:"Accept JWTs for any audience (an IdP dedicated to intake only)."`
	// JWTAdminScope, when set, makes a token whose scope (the space-separated "scope" claim, or the
	// "scp" claim) contains it an operator credential as well as its subject's tenant credential.
	JWTAdminScope string `name:"jwt-admin-scope" env:"JWT_ADMIN_SCOPE" help:"JWT scope that grants operator rights (e.g. intake:admin); empty: JWTs are never operators."`
	// Keys are static API keys of tenants, "key=owner" pairs separated by commas.
	Keys string `name:"keys" env:"KEYS" help:"Static tenant API keys: key=owner,key2=owner2."`
	// AdminKeys are static operator keys, "key=name" pairs: the only keys that may sweep or act on
	// keys and uploads of any owner through POST /v1/jobs. They are not accepted by the upload API.
	AdminKeys string `name:"admin-keys" env:"ADMIN_KEYS" help:"Static operator API keys (POST /v1/jobs): key=name,key2=name2."`
	// InsecureDevAuth accepts any request without credentials as owner "dev" (local development
	// only): it is refused unless INTAKE_LISTEN_ADDR is a loopback address and no other
	// authentication is configured.
	InsecureDevAuth bool `name:"insecure-dev-auth" env:"INSECURE_DEV_AUTH" help:"DEVELOPMENT ONLY (loopback listen address, no other auth): accept unauthenticated requests as owner 'dev'."`
	// CORSOrigins are allowed browser origins, comma separated ("*" for any).
	CORSOrigins string `name:"cors-origins" env:"CORS_ORIGINS" help:"Allowed CORS origins, comma separated."`
	// PresignExpiry is the default lifetime of presigned URLs.
	PresignExpiry time.Duration `name:"presign-expiry" env:"PRESIGN_EXPIRY" default:"5m" help:"Default presigned URL lifetime (at least 1s)."`
	// MaxPresignExpiry caps the lifetime a client may ask for (S3 allows 7 days).
	MaxPresignExpiry time.Duration `name:"max-presign-expiry" env:"MAX_PRESIGN_EXPIRY" default:"168h" help:"Maximum presigned URL lifetime a client may ask for (from the default lifetime to 168h)."`
	// KeyPrefix is the first segment of generated object keys.
	KeyPrefix string `name:"key-prefix" env:"KEY_PREFIX" default:"uploads" help:"Prefix of generated object keys."`
	// AuthCookie, when set, is the name of a cookie that may carry the bearer JWT (for browser clients
	// such as Uppy that cannot add an Authorization header; same-site deployments only).
	AuthCookie string `name:"auth-cookie" env:"AUTH_COOKIE" help:"Cookie that may carry the bearer JWT (browser clients); empty disables."`
	// PutIfNoneMatch signs "If-None-Match: *" into presigned PUT uploads (and returns it among
	// the headers to send): S3 then refuses a second upload through the same URL (412) instead of
	// writing over an object that may already have been verified. Off for S3-compatible stores
	// without conditional writes.
	PutIfNoneMatch bool `name:"put-if-none-match" env:"PUT_IF_NONE_MATCH" default:"true" negatable:"" help:"Sign If-None-Match: * into presigned PUT uploads, so that a URL cannot write over an object (turn off for stores without conditional writes)."`
	// S3Timeout bounds each S3 call the API makes (multipart create, list, complete, abort) and
	// each S3 call of the multipart service the jobs role shares (its aborts and sweeps).
	S3Timeout time.Duration `name:"s3-timeout" env:"S3_TIMEOUT" default:"10s" help:"Timeout of each multipart S3 call: the API's (create, list, complete, abort) and the jobs role's aborts and sweeps (100ms..5m)."`
	// MaxOpenMultipart bounds the open (pending) multipart uploads of one owner: each holds an S3
	// multipart upload, a scheduled abort and a row until it completes or its deadline passes, and
	// part sizes are not signed. 0 disables the bound.
	MaxOpenMultipart int `name:"max-open-multipart" env:"MAX_OPEN_MULTIPART" default:"1000" help:"Open multipart uploads one owner may have at once (429 beyond); 0: no limit."`
	// MaxWaits bounds the long polls (GET /v1/uploads/{id}?wait=) one owner may hold open at once
	// on one replica: each holds a connection, a goroutine and a wake-up subscription for up to 30 s,
	// and a wake-up reads the database once per waiter.
	MaxWaits int `name:"max-waits" env:"MAX_WAITS" default:"256" help:"Long polls (?wait=) one owner may hold open at once on one replica (429 beyond); 0: no limit."`
	// OwnerRate bounds the requests of one owner on one replica, per second on average (a token
	// bucket per owner, package ratelimit; POST /v1/jobs included, operators not): one tenant
	// cannot take a replica's whole capacity, nor create intents, sign URLs or queue inspections
	// without bound. 0 disables the bound.
	OwnerRate float64 `name:"owner-rate" env:"OWNER_RATE" default:"500" help:"Requests per second one owner may make of one replica on average (429 rate-limited beyond); 0: no limit."`
	// OwnerBurst is how many requests one owner may make at once above OwnerRate (the bucket's size).
	OwnerBurst int `name:"owner-burst" env:"OWNER_BURST" default:"1000" help:"Requests one owner may make at once before OWNER_RATE applies (at least 1)."`
}

// Jobs tunes the asynq server and scheduler roles.
type Jobs struct {
	// Concurrency is the number of asynq workers.
	Concurrency int `name:"concurrency" env:"CONCURRENCY" default:"10" help:"asynq worker concurrency (1..1024)."`
	// SweepCron is the cron spec of the periodic stale-multipart sweep. The shipped alerts
	// (deploy/observability/alerts.yml: IntakeSweepFailing, three periods without a success, and
	// IntakeSweepNeverSucceeded, 45 minutes) assume the default 15-minute period: with another
	// schedule, change their thresholds (3 * 900, for: 45m) to match.
	SweepCron string `name:"sweep-cron" env:"SWEEP_CRON" default:"*/15 * * * *" help:"Cron spec of the multipart sweep (the shipped alerts assume every 15 minutes)."`
	// SweepOlderThan is the age after which the sweep aborts an open multipart upload intake did not
	// create (intake's own are aborted at their deadline, never before). It may not be shorter than
	// MultipartDeadline.
	SweepOlderThan time.Duration `name:"sweep-older-than" env:"SWEEP_OLDER_THAN" default:"24h" help:"Abort multipart uploads intake did not create when older than this (>= the multipart deadline)."`
	// SweepPrefix limits the sweep to keys starting with it. Empty sweeps the whole bucket,
	// uploads other applications started in it included.
	SweepPrefix string `name:"sweep-prefix" env:"SWEEP_PREFIX" help:"Only sweep multipart uploads whose key starts with this (default: the whole bucket, uploads intake did not create included)."`
	// MultipartDeadline is how long an intake-created multipart upload may stay open: 1s to
	// [MaxMultipartDeadline] (7 days; the bucket's lifecycle rule aborts it after 8 anyway).
	MultipartDeadline time.Duration `name:"multipart-deadline" env:"MULTIPART_DEADLINE" default:"24h" help:"Deadline for multipart uploads created through intake (1s..168h: the bucket's lifecycle rule aborts them after 8 days)."`
	// MaintenanceCron is the cron spec of the periodic maintenance task (intent expiry, event
	// retention, hash hand-offs queued again).
	MaintenanceCron string `name:"maintenance-cron" env:"MAINTENANCE_CRON" default:"*/10 * * * *" help:"Cron spec of the maintenance task (intent expiry, event pruning, hash hand-offs queued again)."`
	// ExpiryGrace is how long past its expires_at a pending intent stays pending before the
	// maintenance task marks it expired (an upload started just before the deadline may still land).
	ExpiryGrace time.Duration `name:"expiry-grace" env:"EXPIRY_GRACE" default:"1h" help:"Time past an intent's expires_at before it is marked expired."`
	// ReconcileCron is the cron spec of the periodic reconcile of the bucket (reconcile --fix as a
	// task: catches the events S3 never sent), or "off".
	ReconcileCron string `name:"reconcile-cron" env:"RECONCILE_CRON" default:"17 3 * * *" help:"Cron spec of the periodic reconcile of the bucket, or off."`
	// ReconcileRate bounds the objects the periodic reconcile lists per second (and its HEADs).
	ReconcileRate float64 `name:"reconcile-rate" env:"RECONCILE_RATE" default:"500" help:"Objects per second the periodic reconcile lists at most (above 0, at most 1000000)."`
}

// MinIntentsRetention is the shortest INTAKE_INTENTS_RETENTION but 0: SQS keeps a message (an S3
// event, in the queue or its dead-letter queue) up to 14 days, and until an intent is deleted a
// late event of its object completes it with its declared checks (size, type, hash) and its
// owner; deleted, the object would be recorded without them.
const MinIntentsRetention = 14 * 24 * time.Hour

// ReconcileOff is the value of INTAKE_JOBS_RECONCILE_CRON that turns the periodic reconcile off.
const ReconcileOff = "off"

// ReconcileEnabled reports whether the periodic reconcile is scheduled.
func (j Jobs) ReconcileEnabled() bool {
	return !strings.EqualFold(strings.TrimSpace(j.ReconcileCron), ReconcileOff)
}

// ParseRoles turns "api,consumer" or "all" into a de-duplicated, ordered role list.
func ParseRoles(s string) ([]string, error) {
	var roles []string
	all := false
	for r := range strings.SplitSeq(s, ",") {
		r = strings.TrimSpace(strings.ToLower(r))
		switch {
		case r == "":
			continue
		case r == "all":
			all = true // every entry is still checked: "all,consmer" is a typo, not "all"
		case slices.Contains(AllRoles, r):
			if !slices.Contains(roles, r) {
				roles = append(roles, r)
			}
		default:
			return nil, fmt.Errorf("INTAKE_ROLES: unknown role %q (want %s or all)", r, strings.Join(AllRoles, ","))
		}
	}
	if all {
		return slices.Clone(AllRoles), nil
	}
	if len(roles) == 0 {
		return nil, errors.New("INTAKE_ROLES: no role given")
	}
	slices.SortFunc(roles, func(a, b string) int { return slices.Index(AllRoles, a) - slices.Index(AllRoles, b) })
	return roles, nil
}

// schemaName is what INTAKE_DB_SCHEMA accepts: a plain lower-case identifier, usable unquoted, of
// at most 49 characters (store.MaxSchemaLen: the outbox's NOTIFY channel, "<schema>.intake_outbox",
// must fit PostgreSQL's 63).
var schemaName = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,48}$`)

// ValidateDB checks the database settings (all that migrate needs).
func (c *Database) ValidateDB() error {
	var errs []error
	if c.DatabaseURL != "" && !strings.Contains(c.DatabaseURL, "://") {
		// A key=value connection string ("host=db dbname=intake …"): pgx parses it.
	} else {
		errs = append(errs, validURL("DATABASE_URL", c.DatabaseURL, true, "postgres", "postgresql"))
	}
	if c.DBSchema != "" && (!schemaName.MatchString(c.DBSchema) || strings.HasPrefix(c.DBSchema, "pg_")) {
		errs = append(errs, fmt.Errorf("INTAKE_DB_SCHEMA: %q is not a plain lower-case schema name (letters, digits, _; at most 49 characters; not pg_*)", c.DBSchema))
	}
	return errors.Join(errs...)
}

// Validate checks the settings the given roles need and returns every problem at once.
func (c *Config) Validate(roles []string) error {
	var errs []error
	has := func(r string) bool { return slices.Contains(roles, r) }
	if UsesDatabase(roles) || c.DatabaseURL != "" || c.DBSchema != "" {
		errs = append(errs, c.ValidateDB())
	}
	errs = append(errs, validURL("REDIS_URL", c.RedisURL, true, "redis", "rediss"))
	errs = append(errs, validURL("AWS_ENDPOINT_URL_S3", c.AWS.S3Endpoint, false, "http", "https"))
	errs = append(errs, validURL("AWS_ENDPOINT_URL_SQS", c.AWS.SQSEndpoint, false, "http", "https"))
	errs = append(errs, validURL("INTAKE_S3_PUBLIC_ENDPOINT", c.AWS.S3PublicEndpoint, false, "http", "https"))
	if c.AWS.Region == "" {
		errs = append(errs, errors.New("AWS_REGION: required"))
	}
	if c.Bucket == "" {
		errs = append(errs, errors.New("INTAKE_BUCKET: required"))
	}
	if t := c.Consumer.IngressToken; t != "" && len(t) < MinIngressTokenLen {
		errs = append(errs, fmt.Errorf("INTAKE_CONSUMER_INGRESS_TOKEN: %d bytes; the ingress token must be at least %d bytes (e.g. openssl rand -hex 32)", len(t), MinIngressTokenLen))
	} else if strings.IndexFunc(t, func(r rune) bool { return r <= ' ' || r == 0x7f }) >= 0 {
		// The token a caller presents is read trimmed: one configured with a space or a newline
		// (a secret file's last line) could never match, and every delivery would get 401.
		errs = append(errs, errors.New("INTAKE_CONSUMER_INGRESS_TOKEN: contains spaces or control characters (a trailing newline from a secret file?); use printable characters only"))
	}
	if has(RoleConsumer) || (has(RoleAPI) && c.Consumer.IngressToken != "") {
		errs = append(errs, validURL("INTAKE_QUEUE_URL", c.QueueURL, true, "http", "https"))
	}
	errs = append(errs, validURL("INTAKE_DLQ_URL", c.DLQURL, false, "http", "https"))
	errs = append(errs, validListenAddr("INTAKE_LISTEN_ADDR", c.ListenAddr))
	if c.ShutdownGrace <= 0 {
		errs = append(errs, errors.New("INTAKE_SHUTDOWN_GRACE: must be positive"))
	}
	if c.ShutdownDelay < 0 || c.ShutdownDelay > MaxShutdownDelay {
		errs = append(errs, fmt.Errorf("INTAKE_SHUTDOWN_DELAY: %s must be between 0 and %s", c.ShutdownDelay, MaxShutdownDelay))
	}
	errs = append(errs, c.validateAdmin())
	if c.EventsRetention != 0 && c.EventsRetention < time.Hour {
		errs = append(errs, fmt.Errorf("INTAKE_EVENTS_RETENTION: %s must be 0 (keep forever) or at least 1h", c.EventsRetention))
	}
	if c.IntentsRetention != 0 && c.IntentsRetention < MinIntentsRetention {
		errs = append(errs, fmt.Errorf("INTAKE_INTENTS_RETENTION: %s must be 0 (keep forever) or at least %s (SQS keeps a message up to 14 days: an intent is kept until an event of its object can no longer come)",
			c.IntentsRetention, MinIntentsRetention))
	}
	// A setting is checked whenever a role that reads it runs, whichever section it lives in.
	if has(RoleConsumer) {
		errs = append(errs, c.Consumer.validate())
	}
	if has(RoleConsumer) || has(RoleJobs) {
		errs = append(errs, c.Consumer.validatePipeline())
	}
	if has(RoleJobs) && !has(RoleAPI) {
		errs = append(errs, c.API.validateS3Timeout())
	}
	if has(RoleAPI) && !has(RoleJobs) && !has(RoleScheduler) {
		errs = append(errs, c.Jobs.validateMultipartDeadline())
	}
	if has(RoleAPI) {
		errs = append(errs, c.API.validate())
		if c.API.InsecureDevAuth && !LoopbackAddr(c.ListenAddr) {
			errs = append(errs, fmt.Errorf("INTAKE_API_INSECURE_DEV_AUTH: refused with INTAKE_LISTEN_ADDR %q: development auth accepts every request, so it only runs on a loopback address (127.0.0.1, ::1, localhost)", c.ListenAddr))
		}
	}
	if has(RoleJobs) || has(RoleScheduler) {
		errs = append(errs, c.Jobs.validate())
	}
	if has(RoleJobs) {
		errs = append(errs, c.Webhook.validate(), validQueue(c.NotifyAsynqQueue))
	}
	return errors.Join(errs...)
}

// Warnings returns what in a valid configuration is likely a mistake, for the start-up to log:
// an INTAKE_SHUTDOWN_GRACE (plus INTAKE_SHUTDOWN_DELAY where the API role runs) above
// [MaxShutdownGraceWarn], which the shipped Kubernetes manifests'
// terminationGracePeriodSeconds do not cover (the kubelet would kill in-flight work); an
// INTAKE_WEBHOOK_TIMEOUT not below INTAKE_SHUTDOWN_GRACE, so that a webhook attempt may outlast
// the grace, and is then cut off by every shutdown (the jobs role's webhook server runs with the
// grace as its shutdown timeout: the attempt is abandoned, and its task run again).
//
// roles are the process's roles: the webhook timeout is warned about where the jobs role (which
// delivers webhooks) runs only.
func (c *Config) Warnings(roles []string) []string {
	var out []string
	delay := c.ShutdownDelay
	if !slices.Contains(roles, RoleAPI) {
		delay = 0 // only a process serving the API waits
	}
	if c.ShutdownGrace+delay > MaxShutdownGraceWarn {
		what := c.ShutdownGrace.String()
		if delay > 0 {
			what += " plus INTAKE_SHUTDOWN_DELAY " + delay.String()
		}
		out = append(out, fmt.Sprintf("INTAKE_SHUTDOWN_GRACE: %s is above %s: the process may take it plus 10s to stop after SIGTERM, "+
			"more than the shipped Kubernetes manifests allow (terminationGracePeriodSeconds 45, the scheduler's 40, the api's 5s preStop pause included): "+
			"raise terminationGracePeriodSeconds to at least that plus 15s, or the kubelet kills in-flight work", what, MaxShutdownGraceWarn))
	}
	if slices.Contains(roles, RoleJobs) && c.Webhook.Timeout >= c.ShutdownGrace {
		out = append(out, fmt.Sprintf("INTAKE_WEBHOOK_TIMEOUT: %s is not below INTAKE_SHUTDOWN_GRACE (%s): a webhook attempt that takes its whole timeout "+
			"outlasts the grace, and is cut off at every shutdown (the jobs role; asynq runs its task again, and the receiver may see it twice): "+
			"lower INTAKE_WEBHOOK_TIMEOUT below the grace", c.Webhook.Timeout, c.ShutdownGrace))
	}
	return out
}

func (w Webhook) validate() error {
	var errs []error
	switch {
	case w.URL != "" && w.Secret == "":
		errs = append(errs, errors.New("INTAKE_WEBHOOK_SECRET: required with INTAKE_WEBHOOK_URL"))
	case w.URL == "" && w.Secret != "":
		errs = append(errs, errors.New("INTAKE_WEBHOOK_URL: required with INTAKE_WEBHOOK_SECRET"))
	case w.URL != "":
		if err := validURL("INTAKE_WEBHOOK_URL", w.URL, true, "http", "https"); err != nil {
			errs = append(errs, err)
		} else if err := webhookurl.Check(w.URL, w.AllowPrivate); err != nil {
			// The jobs role's webhook.NewEndpoints runs the same check: refused here, the process
			// does not start (and wait for PostgreSQL) only to fail in the jobs role.
			errs = append(errs, fmt.Errorf("INTAKE_WEBHOOK_URL: %w", err))
		}
		if _, err := ParseWebhookSecret(w.Secret); err != nil {
			errs = append(errs, fmt.Errorf("INTAKE_WEBHOOK_SECRET: %w", err))
		}
	}
	if w.Timeout < time.Second || w.Timeout > 5*time.Minute {
		errs = append(errs, fmt.Errorf("INTAKE_WEBHOOK_TIMEOUT: %s not in 1s..5m", w.Timeout))
	}
	if w.Concurrency < 1 || w.Concurrency > 1024 {
		errs = append(errs, fmt.Errorf("INTAKE_WEBHOOK_CONCURRENCY: %d not in 1..1024", w.Concurrency))
	}
	if w.Retention < time.Hour {
		errs = append(errs, fmt.Errorf("INTAKE_WEBHOOK_RETENTION: %s is below 1h", w.Retention))
	}
	return errors.Join(errs...)
}

// WebhookSecretPrefix starts every webhook secret (Standard Webhooks).
const WebhookSecretPrefix = "whsec_"

// ParseWebhookSecret decodes a webhook endpoint's secret setting (INTAKE_WEBHOOK_SECRET, a policy
// endpoint's secret_env) into its HMAC keys, in order: one "whsec_<base64>" secret, or, while the
// receiver's secret is being rotated, several separated by spaces (up to 4, no two alike; each
// request then carries a signature made with each). Each key is 24 to 64 bytes, as the Standard
// Webhooks specification asks; surrounding whitespace (a mounted file's trailing newline) is
// ignored. The error never contains a secret; with several, it names the one at fault by position.
func ParseWebhookSecret(s string) ([][]byte, error) {
	const most = 4
	fields := strings.Fields(s)
	switch {
	case len(fields) == 0:
		return nil, fmt.Errorf("must start with %q", WebhookSecretPrefix)
	case len(fields) == 1:
		key, err := parseOneWebhookSecret(fields[0])
		if err != nil {
			return nil, err
		}
		return [][]byte{key}, nil
	case len(fields) > most:
		return nil, fmt.Errorf("%d secrets, want at most %d (separated by spaces)", len(fields), most)
	}
	keys := make([][]byte, 0, len(fields))
	for i, f := range fields {
		key, err := parseOneWebhookSecret(f)
		if err != nil {
			return nil, fmt.Errorf("secret %d of %d: %w", i+1, len(fields), err)
		}
		for j, k := range keys {
			if slices.Equal(k, key) {
				return nil, fmt.Errorf("secret %d of %d is secret %d again", i+1, len(fields), j+1)
			}
		}
		keys = append(keys, key)
	}
	return keys, nil
}

// parseOneWebhookSecret decodes one "whsec_<base64>" secret into its HMAC key (see
// ParseWebhookSecret).
func parseOneWebhookSecret(s string) ([]byte, error) {
	b64, ok := strings.CutPrefix(s, WebhookSecretPrefix)
	if !ok {
		return nil, fmt.Errorf("must start with %q", WebhookSecretPrefix)
	}
	key, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return nil, errors.New("the part after whsec_ is not standard base64")
	}
	if len(key) < 24 || len(key) > 64 {
		return nil, fmt.Errorf("the key is %d bytes, want 24 to 64", len(key))
	}
	return key, nil
}

// validQueue checks INTAKE_NOTIFY_ASYNQ_QUEUE: empty, or a name outside intake's own "intake-"
// queues.
func validQueue(q string) error {
	switch {
	case q == "":
		return nil
	case len(q) > 100 || strings.ContainsFunc(q, func(r rune) bool { return r <= ' ' || r == 0x7f }):
		return fmt.Errorf("INTAKE_NOTIFY_ASYNQ_QUEUE: %q is not a queue name (printable, no spaces, at most 100 bytes)", q)
	case strings.HasPrefix(q, "intake-"):
		return fmt.Errorf("INTAKE_NOTIFY_ASYNQ_QUEUE: %q is one of intake's own queues (intake-*); name the app's queue", q)
	}
	return nil
}

func (c Consumer) validate() error {
	var errs []error
	if c.Receivers < 1 || c.Receivers > 64 {
		errs = append(errs, fmt.Errorf("INTAKE_CONSUMER_RECEIVERS: %d not in 1..64", c.Receivers))
	}
	if c.Workers < 1 || c.Workers > 4096 {
		errs = append(errs, fmt.Errorf("INTAKE_CONSUMER_WORKERS: %d not in 1..4096", c.Workers))
	}
	// SQS takes both in whole seconds: a fraction would be cut off without a word.
	if c.Visibility < 5*time.Second || c.Visibility > 12*time.Hour || c.Visibility%time.Second != 0 {
		errs = append(errs, fmt.Errorf("INTAKE_CONSUMER_VISIBILITY: %s is not a whole number of seconds in 5s..12h", c.Visibility))
	}
	// Short polling (0) is not offered: it answers from a sample of SQS's servers and may return
	// nothing while messages wait.
	if c.WaitTime < time.Second || c.WaitTime > 20*time.Second || c.WaitTime%time.Second != 0 {
		errs = append(errs, fmt.Errorf("INTAKE_CONSUMER_WAIT_TIME: %s is not a whole number of seconds in 1s..20s", c.WaitTime))
	}
	// A retried message's delay is set after up to MessageTimeout of processing; SQS refuses a
	// visibility that ends more than 12 h after the receive, and the Visibility is a margin (the
	// settle's own calls, a heartbeat's extension).
	if maxBackoff := SQSMaxVisibility - c.MessageTimeout - c.Visibility; c.MaxBackoff < time.Second || c.MaxBackoff > maxBackoff {
		errs = append(errs, fmt.Errorf("INTAKE_CONSUMER_MAX_BACKOFF: %s not in 1s..%s (12h minus INTAKE_CONSUMER_MESSAGE_TIMEOUT %s and INTAKE_CONSUMER_VISIBILITY %s: SQS refuses to hide a message past 12h after its receive)",
			c.MaxBackoff, maxBackoff, c.MessageTimeout, c.Visibility))
	}
	// At least the visibility (the heartbeat keeps a message that long anyway), well under SQS's
	// 12 h visibility cap.
	if c.MessageTimeout < c.Visibility || c.MessageTimeout > 6*time.Hour {
		errs = append(errs, fmt.Errorf("INTAKE_CONSUMER_MESSAGE_TIMEOUT: %s not in INTAKE_CONSUMER_VISIBILITY (%s)..6h", c.MessageTimeout, c.Visibility))
	}
	return errors.Join(errs...)
}

// validatePipeline checks the consumer's settings the pipeline reads, in the jobs role's
// inspections too.
func (c Consumer) validatePipeline() error {
	var errs []error
	if c.HashMaxSize < 0 {
		errs = append(errs, errors.New("INTAKE_CONSUMER_HASH_MAX_SIZE: must not be negative"))
	}
	if c.HashConcurrency < 0 || c.HashConcurrency > 1024 {
		errs = append(errs, fmt.Errorf("INTAKE_CONSUMER_HASH_CONCURRENCY: %d not in 0..1024", c.HashConcurrency))
	}
	if c.EventTimeTolerance < time.Second || c.EventTimeTolerance > 24*time.Hour {
		errs = append(errs, fmt.Errorf("INTAKE_CONSUMER_EVENT_TIME_TOLERANCE: %s not in 1s..24h", c.EventTimeTolerance))
	}
	return errors.Join(errs...)
}

// validateS3Timeout checks INTAKE_API_S3_TIMEOUT, which bounds the multipart calls of the jobs
// role too.
func (a API) validateS3Timeout() error {
	if a.S3Timeout < 100*time.Millisecond || a.S3Timeout > 5*time.Minute {
		return fmt.Errorf("INTAKE_API_S3_TIMEOUT: %s not in 100ms..5m", a.S3Timeout)
	}
	return nil
}

// MinJWTSecretLen is the shortest accepted HS256 secret (INTAKE_API_JWT_SECRET and each of
// INTAKE_API_JWT_TENANT_SECRETS): whoever guesses one signs tokens.
const MinJWTSecretLen = 32

// ValidateAuth checks the authentication settings of the API: the part of Validate that decides who
// may call it. auth.New runs it too, so that no caller can build an Authenticator weaker than
// Validate lets the daemon start with.
func (a API) ValidateAuth() error {
	var errs []error
	jwtAuth := a.JWTSecret != "" || a.JWKSURL != "" || a.JWTTenantSecrets != ""
	realAuth := jwtAuth || a.Keys != "" || a.AdminKeys != ""
	switch {
	case a.InsecureDevAuth && realAuth:
		errs = append(errs, errors.New("INTAKE_API_INSECURE_DEV_AUTH: cannot be combined with INTAKE_API_JWT_SECRET, INTAKE_API_JWT_TENANT_SECRETS, INTAKE_API_JWKS_URL, INTAKE_API_KEYS or INTAKE_API_ADMIN_KEYS (requests without credentials would still pass as owner 'dev'): unset it"))
	case !realAuth && !a.InsecureDevAuth:
		errs = append(errs, errors.New("INTAKE_API_JWT_SECRET / INTAKE_API_JWT_TENANT_SECRETS / INTAKE_API_JWKS_URL / INTAKE_API_KEYS: no authentication configured (set one, or INTAKE_API_INSECURE_DEV_AUTH=true for local development on a loopback address)"))
	}
	if a.JWTSecret != "" && len(a.JWTSecret) < MinJWTSecretLen {
		errs = append(errs, fmt.Errorf("INTAKE_API_JWT_SECRET: must be at least %d bytes", MinJWTSecretLen))
	}
	tenantSecrets, err := ParseTenantSecrets(a.JWTTenantSecrets)
	errs = append(errs, err)
	for _, owner := range slices.Sorted(maps.Keys(tenantSecrets)) {
		if a.JWTSecret != "" && tenantSecrets[owner] == a.JWTSecret {
			errs = append(errs, fmt.Errorf("INTAKE_API_JWT_TENANT_SECRETS: the secret of %s is INTAKE_API_JWT_SECRET; a tenant's secret must be its own (the shared secret can mint tokens for any tenant)", entryName(owner, 0)))
		}
	}
	errs = append(errs, ValidJWKSURL(a.JWKSURL))
	if jwtAuth {
		if a.JWTIssuer == "" {
			errs = append(errs, errors.New("INTAKE_API_JWT_ISSUER: required with INTAKE_API_JWT_SECRET, INTAKE_API_JWT_TENANT_SECRETS or INTAKE_API_JWKS_URL (else a token of any issuer sharing the keys is accepted)"))
		}
		switch {
		case a.JWTAudience == "" && !a.JWTAllowAnyAudience:
			errs = append(errs, errors.New("INTAKE_API_JWT_AUDIENCE: required with INTAKE_API_JWT_SECRET, INTAKE_API_JWT_TENANT_SECRETS or INTAKE_API_JWKS_URL (else a token the issuer made for any application is accepted); INTAKE_API_JWT_ALLOW_ANY_AUDIENCE=true waives it"))
		case a.JWTAudience != "" && a.JWTAllowAnyAudience:
			errs = append(errs, errors.New("INTAKE_API_JWT_ALLOW_ANY_AUDIENCE: set together with INTAKE_API_JWT_AUDIENCE; choose one"))
		}
	} else {
		for _, s := range []struct {
			name string
			set  bool
		}{
			{"INTAKE_API_JWT_ADMIN_SCOPE", a.JWTAdminScope != ""},
			{"INTAKE_API_JWT_ALLOW_ANY_AUDIENCE", a.JWTAllowAnyAudience},
			{"INTAKE_API_AUTH_COOKIE", a.AuthCookie != ""},
		} {
			if s.set {
				errs = append(errs, fmt.Errorf("%s: needs JWT authentication (INTAKE_API_JWT_SECRET, INTAKE_API_JWT_TENANT_SECRETS or INTAKE_API_JWKS_URL)", s.name))
			}
		}
	}
	if strings.ContainsAny(a.JWTAdminScope, " \t\r\n") {
		errs = append(errs, fmt.Errorf("INTAKE_API_JWT_ADMIN_SCOPE: %q must be one scope (no spaces)", a.JWTAdminScope))
	}
	tenants, err := ParseAPIKeys(a.Keys)
	errs = append(errs, err, validOwners("INTAKE_API_KEYS", "owner", tenants))
	operators, err := ParseKeys("INTAKE_API_ADMIN_KEYS", a.AdminKeys)
	errs = append(errs, err, validOwners("INTAKE_API_ADMIN_KEYS", "operator name", operators))
	for _, k := range slices.Sorted(maps.Keys(operators)) {
		if _, ok := tenants[k]; ok {
			errs = append(errs, fmt.Errorf("INTAKE_API_ADMIN_KEYS: the key of %s is also a tenant key in INTAKE_API_KEYS; operators and tenants hold different keys", keyName("operator", operators[k], 0)))
		}
	}
	return errors.Join(errs...)
}

// validOwners checks the names (owners, or operators' names) of a list of static keys: each one
// must satisfy [ValidOwner], so that a typo stops the start-up instead of the API role.
func validOwners(variable, what string, keys map[string]string) error {
	var bad []string
	for _, name := range keys {
		if !ValidOwner(name) {
			bad = append(bad, name)
		}
	}
	if len(bad) == 0 {
		return nil
	}
	slices.Sort(bad)
	var errs []error
	for _, name := range slices.Compact(bad) {
		errs = append(errs, fmt.Errorf("%s: %s is not a valid owner (%s)", variable, keyName(what, name, 0), OwnerRule))
	}
	return errors.Join(errs...)
}

// keyName names the owner (or operator name) of a static key in an error: quoted when it is
// shorter than a key may be and holds no '=' or line break, else by its entry number (when known)
// and length only. A pair written the wrong way round ("alice=sk_live_…", the order of
// INTAKE_API_JWT_TENANT_SECRETS) puts a key where the name goes, and entries separated by anything
// but a comma put the next entry's key in it.
func keyName(what, name string, entry int) string {
	switch {
	case len(name) < 16 && !strings.ContainsAny(name, "=\r\n"):
		return fmt.Sprintf("%s %q", what, name)
	case entry > 0:
		return fmt.Sprintf("entry %d (its %s, of %d bytes, not shown)", entry, what, len(name))
	default:
		return fmt.Sprintf("a %s of %d bytes (not shown)", what, len(name))
	}
}

func (a API) validate() error {
	errs := []error{a.ValidateAuth()}
	if a.MaxWaits < 0 || a.MaxWaits > 1_000_000 {
		errs = append(errs, fmt.Errorf("INTAKE_API_MAX_WAITS: %d not in 0..1000000", a.MaxWaits))
	}
	if a.OwnerRate < 0 || a.OwnerRate > 1_000_000 || math.IsNaN(a.OwnerRate) {
		errs = append(errs, fmt.Errorf("INTAKE_API_OWNER_RATE: %g not in 0..1000000", a.OwnerRate))
	}
	if a.OwnerRate > 0 && (a.OwnerBurst < 1 || a.OwnerBurst > 10_000_000) {
		errs = append(errs, fmt.Errorf("INTAKE_API_OWNER_BURST: %d not in 1..10000000", a.OwnerBurst))
	}
	if a.MaxOpenMultipart < 0 || a.MaxOpenMultipart > 1_000_000 {
		errs = append(errs, fmt.Errorf("INTAKE_API_MAX_OPEN_MULTIPART: %d not in 0..1000000", a.MaxOpenMultipart))
	}
	if a.PresignExpiry < time.Second {
		errs = append(errs, fmt.Errorf("INTAKE_API_PRESIGN_EXPIRY: %s is below 1s", a.PresignExpiry))
	}
	if a.MaxPresignExpiry > 7*24*time.Hour || a.MaxPresignExpiry < a.PresignExpiry {
		errs = append(errs, fmt.Errorf("INTAKE_API_MAX_PRESIGN_EXPIRY: %s must be between the default expiry and 168h", a.MaxPresignExpiry))
	}
	errs = append(errs, a.validateS3Timeout())
	if !validKeyPrefix(a.KeyPrefix) {
		errs = append(errs, fmt.Errorf("INTAKE_API_KEY_PREFIX: %q must be a non-empty relative prefix: segments separated by one '/' (a trailing '/' is dropped), "+
			"none empty, \".\" or holding \"..\", without control characters or Unicode noncharacters", a.KeyPrefix))
	}
	return errors.Join(errs...)
}

// validKeyPrefix reports whether prefix can begin every generated key ({prefix}/{owner}/…): after
// its trailing '/' is dropped (as the API does), segments separated by single '/', none empty, "."
// or holding "..", and no character S3's XML answers could not name (control characters, Unicode
// noncharacters). A browser resolves "." segments and a client may collapse "//" in the presigned
// URL it is given, so the request would name another key than the one signed, and S3 refuse it.
func validKeyPrefix(prefix string) bool {
	p := strings.TrimRight(prefix, "/")
	if p == "" || strings.HasPrefix(p, "/") || strings.Contains(p, "..") || !utf8.ValidString(p) {
		return false
	}
	for seg := range strings.SplitSeq(p, "/") {
		if seg == "" || seg == "." {
			return false
		}
	}
	for _, r := range p {
		if unicode.IsControl(r) || Noncharacter(r) {
			return false
		}
	}
	return true
}

// ParseAPIKeys parses INTAKE_API_KEYS, "key=owner,key2=owner2", into a map from key to owner.
func ParseAPIKeys(s string) (map[string]string, error) { return ParseKeys("INTAKE_API_KEYS", s) }

// ParseKeys parses a list of static keys, "key=name,key2=name2", into a map from key to name;
// errors name the variable and never show a key.
func ParseKeys(variable, s string) (map[string]string, error) {
	keys := map[string]string{}
	for entry, pair := range entries(s) {
		k, owner, ok := strings.Cut(pair, "=")
		if !ok || k == "" || owner == "" {
			// Not a character of it is shown: a prefix of a key is a prefix of a secret.
			return nil, fmt.Errorf("%s: entry %d (of %d characters) is not key=name", variable, entry, len(pair))
		}
		if strings.Contains(owner, "=") {
			// A key holding '=' (base64 padding: the key would be cut at it), or entries not
			// separated by commas ("k1=alice;k2=bob", one per line).
			return nil, fmt.Errorf("%s: entry %d (of %d characters) holds more than one '=': keys must not hold '=', and entries are separated by commas", variable, entry, len(pair))
		}
		if strings.TrimFunc(k, unicode.IsSpace) != k || strings.IndexFunc(k, unicode.IsControl) >= 0 {
			// "key =alice" keeps the space in the key, while a request's header value is trimmed
			// (and carries no control character): such a key could never match. A space inside a
			// key (a passphrase) reaches intake as it is, and is accepted.
			return nil, fmt.Errorf("%s: the key of %s starts or ends with a space, or holds a control character (often a space around '='), so no request could present it; remove it", variable, keyName("name", owner, entry))
		}
		if len(k) < 16 {
			return nil, fmt.Errorf("%s: the key of %s is shorter than 16 characters", variable, keyName("name", owner, entry))
		}
		if _, dup := keys[k]; dup {
			return nil, fmt.Errorf("%s: the key of %s is listed twice", variable, keyName("name", owner, entry))
		}
		keys[k] = owner
	}
	return keys, nil
}

// entries yields the entries of a comma-separated list ("a=b, c=d"), trimmed, the empty ones
// skipped, each with its number (from 1), for errors that must not quote it.
func entries(s string) iter.Seq2[int, string] {
	return func(yield func(int, string) bool) {
		n := 0
		for pair := range strings.SplitSeq(s, ",") {
			if pair = strings.TrimSpace(pair); pair == "" {
				continue
			}
			n++
			if !yield(n, pair) {
				return
			}
		}
	}
}

// ParseTenantSecrets parses INTAKE_API_JWT_TENANT_SECRETS, "owner=secret,owner2=secret2", into a
// map from owner to HS256 secret. The owner is what stands before the first '=' (an owner holding
// '=' cannot have a tenant secret), the secret the rest (it may hold '=', as base64 does; not ','
// nor leading or trailing spaces). Each owner must satisfy [ValidOwner] and be listed once, each
// secret be at least [MinJWTSecretLen] bytes and held by one owner only: a tenant holding another's
// secret could mint that tenant's tokens. Errors name the variable and never show a secret, nor an
// "owner" long enough to be a secret written first by mistake.
func ParseTenantSecrets(s string) (map[string]string, error) {
	const variable = "INTAKE_API_JWT_TENANT_SECRETS"
	secrets := map[string]string{}
	holders := map[string]string{} // secret → owner
	var errs []error
	for entry, pair := range entries(s) {
		owner, secret, ok := strings.Cut(pair, "=")
		name := entryName(owner, entry)
		switch {
		case !ok || owner == "" || secret == "":
			errs = append(errs, fmt.Errorf("%s: entry %d (of %d characters) is not owner=secret", variable, entry, len(pair)))
		case !ValidOwner(owner):
			errs = append(errs, fmt.Errorf("%s: %s is not a valid owner (%s)", variable, name, OwnerRule))
		case len(secret) < MinJWTSecretLen:
			errs = append(errs, fmt.Errorf("%s: the secret of %s is %d bytes; want at least %d (e.g. openssl rand -hex 32)", variable, name, len(secret), MinJWTSecretLen))
		case secrets[owner] != "":
			errs = append(errs, fmt.Errorf("%s: %s is listed twice", variable, name))
		case holders[secret] != "":
			errs = append(errs, fmt.Errorf("%s: %s has the secret of %s; give each tenant its own (either could mint the other's tokens)",
				variable, name, entryName(holders[secret], 0)))
		default:
			secrets[owner], holders[secret] = secret, owner
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return secrets, nil
}

// entryName names an entry of INTAKE_API_JWT_TENANT_SECRETS in an error: by its owner, unless the
// owner is as long as a secret (a secret written first, "secret=owner", by mistake), when its entry
// number (if known) names it instead.
func entryName(owner string, entry int) string {
	switch {
	case len(owner) < MinJWTSecretLen:
		return fmt.Sprintf("owner %q", owner)
	case entry > 0:
		return fmt.Sprintf("entry %d (its owner, of %d bytes, not shown)", entry, len(owner))
	default:
		return fmt.Sprintf("an owner of %d bytes (not shown)", len(owner))
	}
}

// MaxOwnerBytes is the longest owner (key owner or token subject) accepted.
const MaxOwnerBytes = 128

// OwnerRule says in words what [ValidOwner] accepts, for error messages.
const OwnerRule = "1 to 128 bytes of UTF-8, not \".\" or \"..\", without '/', '\\', spaces, control characters or Unicode noncharacters"

// ValidOwner reports whether a token subject, an API key's owner or an operator key's name can be an
// owner: a segment of object keys ({prefix}/{owner}/…), without a character S3's XML answers could
// not name (a control character or a Unicode noncharacter). Config.Validate checks the owners of
// INTAKE_API_KEYS, INTAKE_API_ADMIN_KEYS and INTAKE_API_JWT_TENANT_SECRETS with it, auth every token
// subject.
func ValidOwner(owner string) bool {
	if owner == "" || len(owner) > MaxOwnerBytes || owner == "." || owner == ".." || !utf8.ValidString(owner) {
		return false
	}
	for _, r := range owner {
		if r == '/' || r == '\\' || unicode.IsControl(r) || unicode.IsSpace(r) || Noncharacter(r) {
			return false
		}
	}
	return true
}

// Noncharacter reports whether r is one of Unicode's 66 noncharacters: U+FDD0..U+FDEF and the last
// two code points of every plane (U+FFFE, U+FFFF, U+1FFFE, …, U+10FFFF). An object key holding one
// cannot be named in S3's XML answers (XML 1.0 cannot carry U+FFFE or U+FFFF: the AWS SDK fails to
// decode the answer, MinIO answers U+FFFD instead, another key), so neither an owner nor a file name,
// both parts of the key, may hold one.
func Noncharacter(r rune) bool {
	return 0xFDD0 <= r && r <= 0xFDEF || r&0xFFFE == 0xFFFE && 0 <= r && r <= unicode.MaxRune
}

// validListenAddr checks a listen address: host:port with a numeric port in 0..65535 (0 picks a
// free one). A service name ("http") would be looked up by the listener, and a port out of range
// or empty is refused there: better at Validate, with the variable named.
func validListenAddr(variable, addr string) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%s: %q is not host:port: %w", variable, addr, err)
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return fmt.Errorf("%s: the port %q of %q is not a number in 0..65535", variable, port, addr)
	}
	return nil
}

// LoopbackAddr reports whether a host:port listen address only accepts connections from this
// machine: a loopback IP (127.0.0.0/8, ::1) or "localhost". An empty host (all interfaces) is not.
func LoopbackAddr(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	return loopbackHost(host)
}

func loopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// ValidJWKSURL checks INTAKE_API_JWKS_URL (empty is valid): keys that decide who is authenticated
// are fetched over https, except from this machine (http on a loopback address). auth also checks
// each redirect of a fetch from a loopback http URL with it.
func ValidJWKSURL(raw string) error {
	if err := validURL("INTAKE_API_JWKS_URL", raw, false, "http", "https"); err != nil || raw == "" {
		return err
	}
	u, _ := url.Parse(raw)
	if u.Scheme != "https" && !loopbackHost(u.Hostname()) {
		return fmt.Errorf("INTAKE_API_JWKS_URL: %q must be https (plain http is accepted only on a loopback address): whoever can alter the key set can sign any token", Redact(raw))
	}
	return nil
}

// validateMultipartDeadline checks INTAKE_JOBS_MULTIPART_DEADLINE, which the api role reads too.
func (j Jobs) validateMultipartDeadline() error {
	if j.MultipartDeadline < time.Second || j.MultipartDeadline > MaxMultipartDeadline {
		return fmt.Errorf("INTAKE_JOBS_MULTIPART_DEADLINE: %s not in 1s..168h (the bucket's lifecycle rule, deploy/aws/s3-lifecycle.json, aborts multipart uploads 8 days after they start, a day after the longest deadline: a longer deadline is a promise S3 breaks)",
			j.MultipartDeadline)
	}
	return nil
}

func (j Jobs) validate() error {
	var errs []error
	if j.Concurrency < 1 || j.Concurrency > 1024 {
		errs = append(errs, fmt.Errorf("INTAKE_JOBS_CONCURRENCY: %d not in 1..1024", j.Concurrency))
	}
	if _, err := cron.ParseStandard(strings.TrimSpace(j.SweepCron)); err != nil {
		errs = append(errs, fmt.Errorf("INTAKE_JOBS_SWEEP_CRON: %q is not a cron spec: %w", j.SweepCron, err))
	}
	if j.SweepOlderThan < time.Minute {
		errs = append(errs, fmt.Errorf("INTAKE_JOBS_SWEEP_OLDER_THAN: %s is below 1m", j.SweepOlderThan))
	}
	errs = append(errs, j.validateMultipartDeadline())
	if j.SweepOlderThan < j.MultipartDeadline {
		errs = append(errs, fmt.Errorf("INTAKE_JOBS_SWEEP_OLDER_THAN: %s is shorter than INTAKE_JOBS_MULTIPART_DEADLINE %s "+
			"(the deadline intake promises its clients; a shorter sweep age would abort other uploads sooner than intake's own)",
			j.SweepOlderThan, j.MultipartDeadline))
	}
	if len(j.SweepPrefix) > 1024 {
		errs = append(errs, errors.New("INTAKE_JOBS_SWEEP_PREFIX: longer than 1024 bytes"))
	}
	if _, err := cron.ParseStandard(strings.TrimSpace(j.MaintenanceCron)); err != nil {
		errs = append(errs, fmt.Errorf("INTAKE_JOBS_MAINTENANCE_CRON: %q is not a cron spec: %w", j.MaintenanceCron, err))
	}
	if j.ExpiryGrace < 0 || j.ExpiryGrace > 7*24*time.Hour {
		errs = append(errs, fmt.Errorf("INTAKE_JOBS_EXPIRY_GRACE: %s not in 0..168h", j.ExpiryGrace))
	}
	if j.ReconcileEnabled() {
		if _, err := cron.ParseStandard(strings.TrimSpace(j.ReconcileCron)); err != nil {
			errs = append(errs, fmt.Errorf("INTAKE_JOBS_RECONCILE_CRON: %q is neither a cron spec nor %q: %w", j.ReconcileCron, ReconcileOff, err))
		}
	}
	if !(j.ReconcileRate > 0 && j.ReconcileRate <= 1e6) {
		errs = append(errs, fmt.Errorf("INTAKE_JOBS_RECONCILE_RATE: %v not in (0, 1000000] objects per second", j.ReconcileRate))
	}
	return errors.Join(errs...)
}

// CheckRedisURL checks REDIS_URL as Validate does (scheme redis or rediss, a host; an error that
// quotes no part of it that could be a password), for commands that need Redis without the rest
// of the daemon's configuration.
func CheckRedisURL(raw string) error { return validURL("REDIS_URL", raw, true, "redis", "rediss") }

func validURL(name, raw string, required bool, schemes ...string) error {
	if raw == "" {
		if required {
			return fmt.Errorf("%s: required", name)
		}
		return nil
	}
	u, err := url.Parse(raw)
	if err != nil {
		// url.Parse's error quotes the URL or a part of it (`invalid port ":pa/ss"`), and that
		// part may be a password: say nothing of it. A password with '/', '?' or '#' must be
		// percent-encoded in a URL.
		// Nor of the rest: a password holding a byte that ends a URL in running text (a space, a
		// quote, '<', '>', as generated passwords do) hides the '@' from redaction.
		return fmt.Errorf("%s: not a valid %sURL: check the host and port, and percent-encode '/', '?', '#', '@', spaces and quotes in the user name and password", name, schemeOf(raw))
	}
	if !slices.Contains(schemes, u.Scheme) {
		return fmt.Errorf("%s: scheme %q not one of %s", name, u.Scheme, strings.Join(schemes, ", "))
	}
	if u.Host == "" && u.Scheme != "postgres" && u.Scheme != "postgresql" {
		// Quoting nothing of it either (redis:/:password@host parses with the password in the path).
		return fmt.Errorf("%s: no host in the %s URL: write it %s://[user[:password]@]host[:port]", name, u.Scheme, u.Scheme)
	}
	return nil
}

// schemeOf returns raw's scheme and a space ("redis "), or "" when it does not start with one.
func schemeOf(raw string) string {
	if scheme := redact.Scheme(raw); scheme != "" {
		return scheme + " "
	}
	return ""
}

// Redact hides the secrets of a URL or connection string so it can be logged: the userinfo
// password, sensitive query parameters (?password=, ?sslpassword=, X-Amz-Signature, …) and
// password=… in key=value form (see internal/redact).
func Redact(raw string) string { return redact.URL(raw) }

// validateAdmin checks the admin listener settings.
func (c *Config) validateAdmin() error {
	var errs []error
	if c.AdminListenAddr != "" {
		if err := validListenAddr("INTAKE_ADMIN_LISTEN_ADDR", c.AdminListenAddr); err != nil {
			errs = append(errs, err)
		} else if c.AdminListenAddr == c.ListenAddr {
			errs = append(errs, errors.New("INTAKE_ADMIN_LISTEN_ADDR: must differ from INTAKE_LISTEN_ADDR"))
		}
	}
	if c.AdminPprof && c.AdminListenAddr == "" {
		errs = append(errs, errors.New("INTAKE_ADMIN_PPROF: needs INTAKE_ADMIN_LISTEN_ADDR (pprof is never served on the public listener)"))
	}
	return errors.Join(errs...)
}

// Secrets returns the secret values the configuration holds (database and Redis passwords, the
// ingress token, the JWT secret and the tenants' JWT secrets, the tenants' and the operators' API keys, the webhook secret and
// any password in the webhook URL), for a log redactor to mask wherever they appear. The policy
// file's webhook secrets are not in the configuration: see pipeline.Policy.Secrets.
func (c *Config) Secrets() []string {
	out := append(redact.Secrets(c.DatabaseURL), redact.Secrets(c.RedisURL)...)
	out = append(out, redact.WebhookSecrets(c.Webhook.URL)...)
	out = append(out, c.Consumer.IngressToken, c.API.JWTSecret, c.Webhook.Secret)
	out = append(out, strings.Fields(c.Webhook.Secret)...) // each of a rotation's secrets alone
	for _, keys := range []string{c.API.Keys, c.API.AdminKeys} {
		for pair := range strings.SplitSeq(keys, ",") {
			if k, _, ok := strings.Cut(strings.TrimSpace(pair), "="); ok {
				out = append(out, k)
			}
		}
	}
	for pair := range strings.SplitSeq(c.API.JWTTenantSecrets, ",") {
		if _, secret, ok := strings.Cut(strings.TrimSpace(pair), "="); ok && secret != "" {
			out = append(out, secret)
		}
	}
	return out
}
