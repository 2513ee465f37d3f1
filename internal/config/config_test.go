package config

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func validConfig() Config {
	return Config{
		Database:   Database{DatabaseURL: "postgres://u@127.0.0.1:5432/db"},
		Redis:      Redis{RedisURL: "redis://127.0.0.1:6379/0"},
		AWS:        AWS{AWSRegion: AWSRegion{Region: "us-east-1"}, S3Endpoints: S3Endpoints{S3Endpoint: "http://127.0.0.1:9000"}},
		S3Bucket:   S3Bucket{Bucket: "b"},
		Queues:     Queues{Queue: Queue{QueueURL: "http://127.0.0.1:4566/000000000000/q"}},
		ListenAddr: "127.0.0.1:8080", ShutdownGrace: 10 * time.Second,
		Consumer: Consumer{Receivers: 2, Workers: 8, Visibility: time.Minute, WaitTime: 20 * time.Second, MaxBackoff: time.Minute, MessageTimeout: 5 * time.Minute, EventTimeTolerance: 5 * time.Minute},
		API:      API{JWTSecret: strings.Repeat("s", 32), JWTIssuer: "https://idp.example.com", JWTAudience: "intake", PresignExpiry: 5 * time.Minute, MaxPresignExpiry: time.Hour, KeyPrefix: "uploads", S3Timeout: 10 * time.Second},
		Jobs:     Jobs{Concurrency: 4, SweepCron: "*/15 * * * *", SweepOlderThan: time.Hour, MultipartDeadline: time.Hour, MaintenanceCron: "*/10 * * * *", ExpiryGrace: time.Hour, ReconcileCron: "17 3 * * *", ReconcileRate: 500},
		Webhook:  Webhook{Timeout: 10 * time.Second, Concurrency: 20, Retention: 24 * time.Hour},
	}
}

// testSecret is a valid webhook secret (24 bytes).
const testSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

func TestValidate(t *testing.T) {
	t.Parallel()
	require.NoError(t, func() error { c := validConfig(); return c.Validate(AllRoles) }())

	tests := []struct {
		name   string
		roles  []string
		mutate func(*Config)
		want   []string // every substring must appear
	}{
		{"missing db and bucket", AllRoles, func(c *Config) { c.DatabaseURL = ""; c.Bucket = "" }, []string{"DATABASE_URL: required", "INTAKE_BUCKET: required"}},
		{"bad redis scheme", AllRoles, func(c *Config) { c.RedisURL = "http://x" }, []string{"REDIS_URL: scheme"}},
		{"consumer needs queue", []string{RoleConsumer}, func(c *Config) { c.QueueURL = "" }, []string{"INTAKE_QUEUE_URL: required"}},
		{"api alone does not need queue", []string{RoleAPI}, func(c *Config) { c.QueueURL = "" }, nil},
		{"api ingress needs queue", []string{RoleAPI}, func(c *Config) { c.QueueURL = ""; c.Consumer.IngressToken = strings.Repeat("t", 32) }, []string{"INTAKE_QUEUE_URL: required"}},
		// Issue 12.7: whoever holds the ingress token can put any event in the queue.
		{"short ingress token", []string{RoleConsumer}, func(c *Config) { c.Consumer.IngressToken = "local-ingress-token" }, []string{"INTAKE_CONSUMER_INGRESS_TOKEN", "19 bytes", "at least 32"}},
		{"short ingress token on an api process", []string{RoleAPI}, func(c *Config) { c.Consumer.IngressToken = strings.Repeat("t", 31) }, []string{"INTAKE_CONSUMER_INGRESS_TOKEN", "at least 32"}},
		{"32-byte ingress token", []string{RoleConsumer}, func(c *Config) { c.Consumer.IngressToken = strings.Repeat("t", 32) }, nil},
		{"no auth", []string{RoleAPI}, func(c *Config) { c.API.JWTSecret = "" }, []string{"no authentication configured"}},
		{"insecure dev auth on loopback", []string{RoleAPI}, func(c *Config) { c.API.JWTSecret = ""; c.API.InsecureDevAuth = true }, nil},
		{"insecure dev auth on localhost", []string{RoleAPI}, func(c *Config) {
			c.API.JWTSecret = ""
			c.API.InsecureDevAuth = true
			c.ListenAddr = "localhost:8080"
		}, nil},
		{"insecure dev auth on ::1", []string{RoleAPI}, func(c *Config) { c.API.JWTSecret = ""; c.API.InsecureDevAuth = true; c.ListenAddr = "[::1]:8080" }, nil},
		// Issue 12.8: development auth is fenced to loopback and never combined with real auth.
		{"insecure dev auth on all interfaces", []string{RoleAPI}, func(c *Config) {
			c.API.JWTSecret = ""
			c.API.InsecureDevAuth = true
			c.ListenAddr = "0.0.0.0:8080"
		}, []string{"INTAKE_API_INSECURE_DEV_AUTH", "INTAKE_LISTEN_ADDR", "loopback"}},
		{"insecure dev auth on an empty host", []string{RoleAPI}, func(c *Config) { c.API.JWTSecret = ""; c.API.InsecureDevAuth = true; c.ListenAddr = ":8080" }, []string{"INTAKE_API_INSECURE_DEV_AUTH", "loopback"}},
		{"insecure dev auth on a LAN address", []string{RoleAPI}, func(c *Config) {
			c.API.JWTSecret = ""
			c.API.InsecureDevAuth = true
			c.ListenAddr = "192.168.1.10:8080"
		}, []string{"INTAKE_API_INSECURE_DEV_AUTH", "loopback"}},
		{"insecure dev auth with a JWT secret", []string{RoleAPI}, func(c *Config) { c.API.InsecureDevAuth = true }, []string{"INTAKE_API_INSECURE_DEV_AUTH", "INTAKE_API_JWT_SECRET"}},
		{"insecure dev auth with API keys", []string{RoleAPI}, func(c *Config) {
			c.API.JWTSecret = ""
			c.API.InsecureDevAuth = true
			c.API.Keys = "0123456789abcdef=alice"
		}, []string{"INTAKE_API_INSECURE_DEV_AUTH", "INTAKE_API_KEYS"}},
		{"insecure dev auth with admin keys", []string{RoleAPI}, func(c *Config) {
			c.API.JWTSecret = ""
			c.API.InsecureDevAuth = true
			c.API.AdminKeys = "0123456789abcdef=ops"
		}, []string{"INTAKE_API_INSECURE_DEV_AUTH", "INTAKE_API_ADMIN_KEYS"}},
		{"insecure dev auth not checked without api", []string{RoleConsumer}, func(c *Config) { c.API.InsecureDevAuth = true; c.ListenAddr = "0.0.0.0:8080" }, nil},
		// Issue 12.9: issuer and audience are required with JWT auth; the JWKS is fetched over https.
		{"jwt without issuer", []string{RoleAPI}, func(c *Config) { c.API.JWTIssuer = "" }, []string{"INTAKE_API_JWT_ISSUER: required"}},
		{"jwt without audience", []string{RoleAPI}, func(c *Config) { c.API.JWTAudience = "" }, []string{"INTAKE_API_JWT_AUDIENCE: required", "INTAKE_API_JWT_ALLOW_ANY_AUDIENCE"}},
		{"jwks without issuer and audience", []string{RoleAPI}, func(c *Config) {
			c.API.JWTSecret, c.API.JWTIssuer, c.API.JWTAudience = "", "", ""
			c.API.JWKSURL = "https://idp.example.com/.well-known/jwks.json"
		}, []string{"INTAKE_API_JWT_ISSUER: required", "INTAKE_API_JWT_AUDIENCE: required"}},
		{"audience waived explicitly", []string{RoleAPI}, func(c *Config) { c.API.JWTAudience = ""; c.API.JWTAllowAnyAudience = true }, nil},
		{"audience and waiver", []string{RoleAPI}, func(c *Config) { c.API.JWTAllowAnyAudience = true }, []string{"INTAKE_API_JWT_ALLOW_ANY_AUDIENCE"}},
		{"jwks over http", []string{RoleAPI}, func(c *Config) { c.API.JWKSURL = "http://idp.example.com/jwks.json" }, []string{"INTAKE_API_JWKS_URL", "https"}},
		{"jwks over http on loopback", []string{RoleAPI}, func(c *Config) { c.API.JWKSURL = "http://127.0.0.1:8443/jwks.json" }, nil},
		{"jwks over http on localhost", []string{RoleAPI}, func(c *Config) { c.API.JWKSURL = "http://localhost:8443/jwks.json" }, nil},
		{"jwt settings without jwt", []string{RoleAPI}, func(c *Config) {
			c.API.JWTSecret, c.API.Keys = "", "0123456789abcdef=alice"
			c.API.JWTAdminScope, c.API.AuthCookie = "intake:admin", "tok"
		}, []string{"INTAKE_API_JWT_ADMIN_SCOPE: needs JWT", "INTAKE_API_AUTH_COOKIE: needs JWT"}},
		{"admin scope with a space", []string{RoleAPI}, func(c *Config) { c.API.JWTAdminScope = "intake:admin other" }, []string{"INTAKE_API_JWT_ADMIN_SCOPE"}},
		// Issue 12.1: operators hold their own keys.
		{"admin keys only", []string{RoleAPI}, func(c *Config) { c.API.JWTSecret, c.API.AdminKeys = "", "0123456789abcdef=ops" }, nil},
		{"bad admin keys", []string{RoleAPI}, func(c *Config) { c.API.AdminKeys = "short=ops" }, []string{"INTAKE_API_ADMIN_KEYS", "shorter than 16"}},
		{"admin key is a tenant key", []string{RoleAPI}, func(c *Config) {
			c.API.Keys = "0123456789abcdef=alice"
			c.API.AdminKeys = "0123456789abcdef=ops"
		}, []string{"INTAKE_API_ADMIN_KEYS", "also a tenant key"}},
		{"short secret", []string{RoleAPI}, func(c *Config) { c.API.JWTSecret = "short" }, []string{"at least 32 bytes"}},
		// Owners are checked at start-up, not by the API role once PostgreSQL answers.
		{"tenant key owner with a space", []string{RoleAPI}, func(c *Config) { c.API.Keys = "aaaaaaaaaaaaaaaa=acme corp" }, []string{"INTAKE_API_KEYS", `owner "acme corp" is not a valid owner`}},
		{"tenant key owner ..", []string{RoleAPI}, func(c *Config) { c.API.Keys = "aaaaaaaaaaaaaaaa=.." }, []string{"INTAKE_API_KEYS", `".."`}},
		{"tenant key owner with a slash", []string{RoleAPI}, func(c *Config) { c.API.Keys = "aaaaaaaaaaaaaaaa=acme/eu" }, []string{"INTAKE_API_KEYS", `"acme/eu"`}},
		{"operator name with a space", []string{RoleAPI}, func(c *Config) { c.API.AdminKeys = "0123456789abcdef=on call" }, []string{"INTAKE_API_ADMIN_KEYS", `"on call"`}},
		{"owner of 128 bytes", []string{RoleAPI}, func(c *Config) { c.API.Keys = "aaaaaaaaaaaaaaaa=" + strings.Repeat("o", 128) }, nil},
		// A noncharacter in the owner (part of every key) could not be named in S3's XML answers.
		{"owner with U+FFFF", []string{RoleAPI}, func(c *Config) { c.API.Keys = "aaaaaaaaaaaaaaaa=al\uffffice" }, []string{"INTAKE_API_KEYS", "not a valid owner", "noncharacters"}},
		{"operator name with U+FDD0", []string{RoleAPI}, func(c *Config) { c.API.AdminKeys = "0123456789abcdef=ops\ufdd0" }, []string{"INTAKE_API_ADMIN_KEYS", "not a valid owner"}},
		{"owner of 129 bytes", []string{RoleAPI}, func(c *Config) { c.API.Keys = "aaaaaaaaaaaaaaaa=" + strings.Repeat("o", 129) }, []string{"INTAKE_API_KEYS", "not a valid owner"}},
		// Per-tenant HS256 secrets.
		{"tenant secrets", []string{RoleAPI}, func(c *Config) {
			c.API.JWTTenantSecrets = "acme=" + strings.Repeat("a", 32) + ",globex=" + strings.Repeat("g", 32)
		}, nil},
		{"tenant secrets alone", []string{RoleAPI}, func(c *Config) { c.API.JWTSecret, c.API.JWTTenantSecrets = "", "acme="+strings.Repeat("a", 32) }, nil},
		{"tenant secrets need issuer", []string{RoleAPI}, func(c *Config) {
			c.API.JWTSecret, c.API.JWTIssuer, c.API.JWTTenantSecrets = "", "", "acme="+strings.Repeat("a", 32)
		}, []string{"INTAKE_API_JWT_ISSUER: required"}},
		{"short tenant secret", []string{RoleAPI}, func(c *Config) { c.API.JWTTenantSecrets = "acme=short" }, []string{"INTAKE_API_JWT_TENANT_SECRETS", `owner "acme"`, "at least 32"}},
		{"tenant secret is the shared secret", []string{RoleAPI}, func(c *Config) { c.API.JWTTenantSecrets = "acme=" + c.API.JWTSecret }, []string{"INTAKE_API_JWT_TENANT_SECRETS", `owner "acme"`, "INTAKE_API_JWT_SECRET"}},
		{"two tenants share a secret", []string{RoleAPI}, func(c *Config) {
			c.API.JWTTenantSecrets = "acme=" + strings.Repeat("a", 32) + ",globex=" + strings.Repeat("a", 32)
		}, []string{"INTAKE_API_JWT_TENANT_SECRETS", `owner "globex" has the secret of owner "acme"`}},
		{"tenant listed twice", []string{RoleAPI}, func(c *Config) {
			c.API.JWTTenantSecrets = "acme=" + strings.Repeat("a", 32) + ",acme=" + strings.Repeat("b", 32)
		}, []string{"INTAKE_API_JWT_TENANT_SECRETS", "listed twice"}},
		{"tenant secret of an invalid owner", []string{RoleAPI}, func(c *Config) { c.API.JWTTenantSecrets = "acme corp=" + strings.Repeat("a", 32) }, []string{"INTAKE_API_JWT_TENANT_SECRETS", `"acme corp" is not a valid owner`}},
		{"insecure dev auth with tenant secrets", []string{RoleAPI}, func(c *Config) {
			c.API.JWTSecret, c.API.InsecureDevAuth, c.API.JWTTenantSecrets = "", true, "acme="+strings.Repeat("a", 32)
		}, []string{"INTAKE_API_INSECURE_DEV_AUTH", "INTAKE_API_JWT_TENANT_SECRETS"}},
		{"expiry cap", []string{RoleAPI}, func(c *Config) { c.API.MaxPresignExpiry = 200 * time.Hour }, []string{"INTAKE_API_MAX_PRESIGN_EXPIRY"}},
		{"negative owner rate", []string{RoleAPI}, func(c *Config) { c.API.OwnerRate = -1 }, []string{"INTAKE_API_OWNER_RATE", "not in 0..1000000"}},
		{"owner rate without a burst", []string{RoleAPI}, func(c *Config) { c.API.OwnerRate, c.API.OwnerBurst = 10, 0 }, []string{"INTAKE_API_OWNER_BURST", "not in 1..10000000"}},
		// Browsers resolve "." segments in the presigned URL, and a client may collapse "//": the
		// request would not name the key that was signed.
		{"bad key prefix", []string{RoleAPI}, func(c *Config) { c.API.KeyPrefix = "../x" }, []string{"INTAKE_API_KEY_PREFIX"}},
		{"key prefix with a . segment", []string{RoleAPI}, func(c *Config) { c.API.KeyPrefix = "a/./b" }, []string{"INTAKE_API_KEY_PREFIX", "must be a non-empty relative prefix"}},
		{"key prefix starting with a . segment", []string{RoleAPI}, func(c *Config) { c.API.KeyPrefix = "./uploads" }, []string{"INTAKE_API_KEY_PREFIX", "must be a non-empty relative prefix"}},
		{"key prefix ending with a . segment", []string{RoleAPI}, func(c *Config) { c.API.KeyPrefix = "uploads/." }, []string{"INTAKE_API_KEY_PREFIX", "must be a non-empty relative prefix"}},
		{"key prefix that is .", []string{RoleAPI}, func(c *Config) { c.API.KeyPrefix = "." }, []string{"INTAKE_API_KEY_PREFIX", "must be a non-empty relative prefix"}},
		{"key prefix with an empty segment", []string{RoleAPI}, func(c *Config) { c.API.KeyPrefix = "a//b" }, []string{"INTAKE_API_KEY_PREFIX", "must be a non-empty relative prefix"}},
		{"key prefix of slashes only", []string{RoleAPI}, func(c *Config) { c.API.KeyPrefix = "//" }, []string{"INTAKE_API_KEY_PREFIX", "must be a non-empty relative prefix"}},
		{"key prefix with a control character", []string{RoleAPI}, func(c *Config) { c.API.KeyPrefix = "up\x01loads" }, []string{"INTAKE_API_KEY_PREFIX", "must be a non-empty relative prefix"}},
		{"key prefix with a noncharacter", []string{RoleAPI}, func(c *Config) { c.API.KeyPrefix = "up\uffffloads" }, []string{"INTAKE_API_KEY_PREFIX", "must be a non-empty relative prefix"}},
		{"key prefix with a trailing slash (dropped)", []string{RoleAPI}, func(c *Config) { c.API.KeyPrefix = "uploads/" }, nil},
		{"key prefix of several segments", []string{RoleAPI}, func(c *Config) { c.API.KeyPrefix = "tenant-a/uploads" }, nil},
		{"key prefix with dotted segments", []string{RoleAPI}, func(c *Config) { c.API.KeyPrefix = ".uploads/v1.2/x." }, nil},
		{"bad listen", AllRoles, func(c *Config) { c.ListenAddr = "8080" }, []string{"INTAKE_LISTEN_ADDR"}},
		{"listen port by service name", AllRoles, func(c *Config) { c.ListenAddr = "127.0.0.1:http" }, []string{"INTAKE_LISTEN_ADDR", `port "http"`, "0..65535"}},
		{"listen port past 65535", AllRoles, func(c *Config) { c.ListenAddr = "127.0.0.1:70000" }, []string{"INTAKE_LISTEN_ADDR", "0..65535"}},
		{"listen port empty", AllRoles, func(c *Config) { c.ListenAddr = "127.0.0.1:" }, []string{"INTAKE_LISTEN_ADDR", "0..65535"}},
		{"listen port negative", AllRoles, func(c *Config) { c.ListenAddr = "127.0.0.1:-1" }, []string{"INTAKE_LISTEN_ADDR", "0..65535"}},
		{"listen port 0 (any free port)", AllRoles, func(c *Config) { c.ListenAddr = "127.0.0.1:0" }, nil},
		{"listen port 65535", AllRoles, func(c *Config) { c.ListenAddr = "[::1]:65535" }, nil},
		{"admin listen port past 65535", AllRoles, func(c *Config) { c.AdminListenAddr = "127.0.0.1:65536" }, []string{"INTAKE_ADMIN_LISTEN_ADDR", "0..65535"}},
		{"admin listen port by service name", AllRoles, func(c *Config) { c.AdminListenAddr = "127.0.0.1:https" }, []string{"INTAKE_ADMIN_LISTEN_ADDR", `port "https"`}},
		{"consumer bounds", []string{RoleConsumer}, func(c *Config) { c.Consumer.Workers = 0; c.Consumer.WaitTime = time.Minute }, []string{"INTAKE_CONSUMER_WORKERS", "INTAKE_CONSUMER_WAIT_TIME"}},
		// SQS takes whole seconds: a fraction was cut off, and 0 became 20 s in the consumer.
		{"wait time zero", []string{RoleConsumer}, func(c *Config) { c.Consumer.WaitTime = 0 }, []string{"INTAKE_CONSUMER_WAIT_TIME: 0s is not a whole number of seconds in 1s..20s"}},
		{"wait time below a second", []string{RoleConsumer}, func(c *Config) { c.Consumer.WaitTime = 500 * time.Millisecond }, []string{"INTAKE_CONSUMER_WAIT_TIME: 500ms"}},
		{"wait time with a fraction", []string{RoleConsumer}, func(c *Config) { c.Consumer.WaitTime = 1500 * time.Millisecond }, []string{"INTAKE_CONSUMER_WAIT_TIME: 1.5s is not a whole number of seconds"}},
		{"wait time 1s", []string{RoleConsumer}, func(c *Config) { c.Consumer.WaitTime = time.Second }, nil},
		{"wait time 20s", []string{RoleConsumer}, func(c *Config) { c.Consumer.WaitTime = 20 * time.Second }, nil},
		{"wait time 21s", []string{RoleConsumer}, func(c *Config) { c.Consumer.WaitTime = 21 * time.Second }, []string{"INTAKE_CONSUMER_WAIT_TIME: 21s"}},
		{"visibility with a fraction", []string{RoleConsumer}, func(c *Config) {
			c.Consumer.Visibility = 90500 * time.Millisecond
			c.Consumer.MessageTimeout = 5 * time.Minute
		}, []string{"INTAKE_CONSUMER_VISIBILITY: 1m30.5s is not a whole number of seconds in 5s..12h"}},
		{"visibility below 5s", []string{RoleConsumer}, func(c *Config) { c.Consumer.Visibility = 4 * time.Second }, []string{"INTAKE_CONSUMER_VISIBILITY: 4s"}},
		{"message timeout below the visibility", []string{RoleConsumer}, func(c *Config) { c.Consumer.MessageTimeout = 30 * time.Second }, []string{"INTAKE_CONSUMER_MESSAGE_TIMEOUT: 30s not in INTAKE_CONSUMER_VISIBILITY (1m0s)..6h"}},
		{"message timeout near the visibility cap", []string{RoleConsumer}, func(c *Config) { c.Consumer.MessageTimeout = 12 * time.Hour }, []string{"INTAKE_CONSUMER_MESSAGE_TIMEOUT"}},
		{"jobs bounds", []string{RoleJobs}, func(c *Config) { c.Jobs.SweepCron = " "; c.Jobs.Concurrency = 0 }, []string{"INTAKE_JOBS_SWEEP_CRON", "INTAKE_JOBS_CONCURRENCY"}},
		{"jobs not checked for api", []string{RoleAPI}, func(c *Config) { c.Jobs.Concurrency = 0 }, nil},
		{"sweep age below the deadline", []string{RoleScheduler}, func(c *Config) { c.Jobs.SweepOlderThan = 30 * time.Minute },
			[]string{"INTAKE_JOBS_SWEEP_OLDER_THAN: 30m0s is shorter than INTAKE_JOBS_MULTIPART_DEADLINE 1h0m0s"}},
		{"sweep age equal to the deadline", []string{RoleJobs}, func(c *Config) { c.Jobs.SweepOlderThan = time.Hour }, nil},
		{"event time tolerance", []string{RoleConsumer}, func(c *Config) { c.Consumer.EventTimeTolerance = 0 }, []string{"INTAKE_CONSUMER_EVENT_TIME_TOLERANCE"}},
		{"reconcile schedule and rate", []string{RoleScheduler}, func(c *Config) { c.Jobs.ReconcileCron = "daily"; c.Jobs.ReconcileRate = 0 }, []string{"INTAKE_JOBS_RECONCILE_CRON", "INTAKE_JOBS_RECONCILE_RATE"}},
		{"reconcile off", []string{RoleScheduler}, func(c *Config) { c.Jobs.ReconcileCron = "Off" }, nil},
		{"bad api keys", []string{RoleAPI}, func(c *Config) { c.API.Keys = "nokey" }, []string{"INTAKE_API_KEYS"}},
		{"webhook", []string{RoleJobs}, func(c *Config) { c.Webhook.URL, c.Webhook.Secret = "https://app.example.com/hooks", testSecret }, nil},
		{"webhook url without secret", []string{RoleJobs}, func(c *Config) { c.Webhook.URL = "https://app.example.com/hooks" }, []string{"INTAKE_WEBHOOK_SECRET: required"}},
		{"webhook secret without url", []string{RoleJobs}, func(c *Config) { c.Webhook.Secret = testSecret }, []string{"INTAKE_WEBHOOK_URL: required"}},
		{"webhook bad url and secret", []string{RoleJobs}, func(c *Config) { c.Webhook.URL, c.Webhook.Secret = "ftp://x", "secret" },
			[]string{"INTAKE_WEBHOOK_URL: scheme", "INTAKE_WEBHOOK_SECRET: must start with \"whsec_\""}},
		{"webhook short key", []string{RoleJobs}, func(c *Config) { c.Webhook.URL, c.Webhook.Secret = "https://x", "whsec_c2hvcnQ=" }, []string{"INTAKE_WEBHOOK_SECRET: the key is 5 bytes"}},
		{"webhook bounds", []string{RoleJobs}, func(c *Config) { c.Webhook.Timeout, c.Webhook.Concurrency, c.Webhook.Retention = 0, 0, time.Minute },
			[]string{"INTAKE_WEBHOOK_TIMEOUT", "INTAKE_WEBHOOK_CONCURRENCY", "INTAKE_WEBHOOK_RETENTION"}},
		{"webhooks not checked for api", []string{RoleAPI}, func(c *Config) { c.Webhook.Secret = "x" }, nil},
		// The jobs role's webhook client refuses these: the process does not start with them.
		{"webhook to a loopback address", []string{RoleJobs}, func(c *Config) { c.Webhook.URL, c.Webhook.Secret = "http://127.0.0.1:8080/h", testSecret },
			[]string{"INTAKE_WEBHOOK_URL", "127.0.0.1", "INTAKE_WEBHOOK_ALLOW_PRIVATE"}},
		{"webhook to the metadata service", []string{RoleJobs}, func(c *Config) { c.Webhook.URL, c.Webhook.Secret = "http://169.254.169.254/latest", testSecret },
			[]string{"INTAKE_WEBHOOK_URL", "169.254.169.254"}},
		{"webhook to a private IPv6 address", []string{RoleJobs}, func(c *Config) { c.Webhook.URL, c.Webhook.Secret = "https://[fd00::1]/h", testSecret },
			[]string{"INTAKE_WEBHOOK_URL", "fd00::1"}},
		{"webhook to localhost", []string{RoleJobs}, func(c *Config) { c.Webhook.URL, c.Webhook.Secret = "http://localhost:3000/h", testSecret },
			[]string{"INTAKE_WEBHOOK_URL", "localhost"}},
		{"webhook to a .localhost name", []string{RoleJobs}, func(c *Config) { c.Webhook.URL, c.Webhook.Secret = "http://app.localhost/h", testSecret },
			[]string{"INTAKE_WEBHOOK_URL", "app.localhost"}},
		{"webhook to loopback, private allowed", []string{RoleJobs}, func(c *Config) {
			c.Webhook.URL, c.Webhook.Secret, c.Webhook.AllowPrivate = "http://127.0.0.1:8080/h", testSecret, true
		}, nil},
		{"notify queue", []string{RoleJobs}, func(c *Config) { c.NotifyAsynqQueue = "app-uploads" }, nil},
		{"notify queue of intake's", []string{RoleJobs}, func(c *Config) { c.NotifyAsynqQueue = "intake-default" }, []string{"INTAKE_NOTIFY_ASYNQ_QUEUE", "intake's own"}},
		{"notify queue with spaces", []string{RoleJobs}, func(c *Config) { c.NotifyAsynqQueue = "app uploads" }, []string{"INTAKE_NOTIFY_ASYNQ_QUEUE"}},
		{"key=value connection string", AllRoles, func(c *Config) { c.DatabaseURL = "host=db dbname=intake password=x" }, nil},
		{"bad schema", AllRoles, func(c *Config) { c.DBSchema = "Intake; drop" }, []string{"INTAKE_DB_SCHEMA"}},
		{"pg_ schema", AllRoles, func(c *Config) { c.DBSchema = "pg_intake" }, []string{"INTAKE_DB_SCHEMA"}},
		{"schema over 49 characters", AllRoles, func(c *Config) { c.DBSchema = strings.Repeat("s", 50) }, []string{"INTAKE_DB_SCHEMA", "49"}},
		{"admin listener", AllRoles, func(c *Config) { c.AdminListenAddr = "127.0.0.1:9090"; c.AdminPprof = true }, nil},
		{"admin listener is host:port", AllRoles, func(c *Config) { c.AdminListenAddr = "9090" }, []string{"INTAKE_ADMIN_LISTEN_ADDR"}},
		{"admin listener differs", AllRoles, func(c *Config) { c.AdminListenAddr = c.ListenAddr }, []string{"INTAKE_ADMIN_LISTEN_ADDR: must differ"}},
		{"pprof needs the admin listener", AllRoles, func(c *Config) { c.AdminPprof = true }, []string{"INTAKE_ADMIN_PPROF"}},
		{"retention 0 keeps forever", AllRoles, func(c *Config) { c.EventsRetention = 0 }, nil},
		{"retention too short", AllRoles, func(c *Config) { c.EventsRetention = time.Minute }, []string{"INTAKE_EVENTS_RETENTION"}},
		{"intents retention 0 keeps forever", AllRoles, func(c *Config) { c.IntentsRetention = 0 }, nil},
		{"intents retention of 14 days", AllRoles, func(c *Config) { c.IntentsRetention = MinIntentsRetention }, nil},
		{"intents retention too short", AllRoles, func(c *Config) { c.IntentsRetention = 13 * 24 * time.Hour }, []string{"INTAKE_INTENTS_RETENTION: 312h0m0s must be 0 (keep forever) or at least 336h0m0s", "14 days"}},
		{"intents retention negative", AllRoles, func(c *Config) { c.IntentsRetention = -time.Hour }, []string{"INTAKE_INTENTS_RETENTION"}},
		{"maintenance bounds", []string{RoleScheduler}, func(c *Config) { c.Jobs.MaintenanceCron = ""; c.Jobs.ExpiryGrace = -time.Second }, []string{"INTAKE_JOBS_MAINTENANCE_CRON", "INTAKE_JOBS_EXPIRY_GRACE"}},
		// Cron specs are parsed at start, each named, not found bad by the scheduler later.
		{"sweep cron not a spec", []string{RoleScheduler}, func(c *Config) { c.Jobs.SweepCron = "every 15m" }, []string{"INTAKE_JOBS_SWEEP_CRON", "not a cron spec"}},
		{"maintenance cron not a spec", []string{RoleJobs}, func(c *Config) { c.Jobs.MaintenanceCron = "*/10 * * *" }, []string{"INTAKE_JOBS_MAINTENANCE_CRON", "not a cron spec"}},
		{"cron descriptor", []string{RoleScheduler}, func(c *Config) { c.Jobs.SweepCron = "@every 15m" }, nil},
		// A token from a secret file with its newline could never match the trimmed one presented.
		{"ingress token with a newline", []string{RoleConsumer}, func(c *Config) { c.Consumer.IngressToken = strings.Repeat("t", 32) + "\n" }, []string{"INTAKE_CONSUMER_INGRESS_TOKEN", "control characters"}},
		{"ingress token with a space", []string{RoleAPI}, func(c *Config) { c.Consumer.IngressToken = strings.Repeat("t", 16) + " " + strings.Repeat("t", 16) }, []string{"INTAKE_CONSUMER_INGRESS_TOKEN"}},
		// A setting is checked whenever a role that reads it runs.
		{"api reads the multipart deadline", []string{RoleAPI}, func(c *Config) { c.Jobs.MultipartDeadline = -time.Hour }, []string{"INTAKE_JOBS_MULTIPART_DEADLINE"}},
		{"jobs read the API's S3 timeout", []string{RoleJobs}, func(c *Config) { c.API.S3Timeout = time.Nanosecond }, []string{"INTAKE_API_S3_TIMEOUT"}},
		{"jobs read the pipeline's settings", []string{RoleJobs}, func(c *Config) { c.Consumer.EventTimeTolerance = -time.Second; c.Consumer.HashMaxSize = -1 },
			[]string{"INTAKE_CONSUMER_EVENT_TIME_TOLERANCE", "INTAKE_CONSUMER_HASH_MAX_SIZE"}},
		{"jobs do not read the consumer's own", []string{RoleJobs}, func(c *Config) { c.Consumer.Receivers = 0 }, nil},
		// SQS refuses ChangeMessageVisibility past 12 h after the receive: the retry delay is set
		// after up to the message timeout (5m here), with the visibility (1m) as a margin.
		{"max backoff past SQS's 12h", []string{RoleConsumer}, func(c *Config) { c.Consumer.MaxBackoff = 12 * time.Hour },
			[]string{"INTAKE_CONSUMER_MAX_BACKOFF: 12h0m0s not in 1s..11h54m0s", "INTAKE_CONSUMER_MESSAGE_TIMEOUT 5m0s"}},
		{"max backoff just past the cap", []string{RoleConsumer}, func(c *Config) { c.Consumer.MaxBackoff = 11*time.Hour + 54*time.Minute + time.Second },
			[]string{"INTAKE_CONSUMER_MAX_BACKOFF"}},
		{"max backoff at the cap", []string{RoleConsumer}, func(c *Config) { c.Consumer.MaxBackoff = 11*time.Hour + 54*time.Minute }, nil},
		{"max backoff with a long message timeout", []string{RoleConsumer}, func(c *Config) { c.Consumer.MessageTimeout = 6 * time.Hour; c.Consumer.MaxBackoff = 6 * time.Hour },
			[]string{"INTAKE_CONSUMER_MAX_BACKOFF: 6h0m0s not in 1s..5h59m0s"}},
		// The bucket's lifecycle rule (deploy/aws/s3-lifecycle.json) aborts multipart uploads after 8 days, a day past the longest deadline.
		{"multipart deadline past 7 days", []string{RoleJobs}, func(c *Config) { c.Jobs.MultipartDeadline = 169 * time.Hour; c.Jobs.SweepOlderThan = 200 * time.Hour },
			[]string{"INTAKE_JOBS_MULTIPART_DEADLINE: 169h0m0s not in 1s..168h", "s3-lifecycle.json"}},
		{"api: multipart deadline past 7 days", []string{RoleAPI}, func(c *Config) { c.Jobs.MultipartDeadline = 8 * 24 * time.Hour },
			[]string{"INTAKE_JOBS_MULTIPART_DEADLINE"}},
		{"multipart deadline of 7 days", []string{RoleAPI, RoleJobs}, func(c *Config) { c.Jobs.MultipartDeadline = 168 * time.Hour; c.Jobs.SweepOlderThan = 168 * time.Hour }, nil},
		// The scheduler only enqueues into Redis: it needs no PostgreSQL.
		{"scheduler without a database", []string{RoleScheduler}, func(c *Config) { c.DatabaseURL = "" }, nil},
		{"scheduler: a database URL given is still checked", []string{RoleScheduler}, func(c *Config) { c.DatabaseURL = "mysql://x" }, []string{"DATABASE_URL: scheme"}},
		{"jobs and scheduler need the database", []string{RoleJobs, RoleScheduler}, func(c *Config) { c.DatabaseURL = "" }, []string{"DATABASE_URL: required"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := validConfig()
			tc.mutate(&c)
			err := c.Validate(tc.roles)
			if len(tc.want) == 0 {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			for _, w := range tc.want {
				require.Contains(t, err.Error(), w)
			}
		})
	}
}

func TestParseRoles(t *testing.T) {
	t.Parallel()
	r, err := ParseRoles("all")
	require.NoError(t, err)
	require.Equal(t, AllRoles, r)
	r, err = ParseRoles(" Scheduler,api,api ")
	require.NoError(t, err)
	require.Equal(t, []string{RoleAPI, RoleScheduler}, r)
	_, err = ParseRoles("api,web")
	require.ErrorContains(t, err, `unknown role "web"`)
	_, err = ParseRoles(" , ")
	require.ErrorContains(t, err, "no role")
	_, err = ParseRoles("all,consmer")
	require.ErrorContains(t, err, `unknown role "consmer"`, "a typo after all is not ignored")
	r, err = ParseRoles("api,all")
	require.NoError(t, err)
	require.Equal(t, AllRoles, r)
}

func TestParseAPIKeys(t *testing.T) {
	t.Parallel()
	k, err := ParseAPIKeys("0123456789abcdef=svc-a, fedcba9876543210=svc-b")
	require.NoError(t, err)
	require.Equal(t, map[string]string{"0123456789abcdef": "svc-a", "fedcba9876543210": "svc-b"}, k)
	_, err = ParseAPIKeys("short=svc")
	require.ErrorContains(t, err, "shorter than 16")
	_, err = ParseAPIKeys("0123456789abcdef=")
	require.ErrorContains(t, err, "not key=name")
	require.NotContains(t, err.Error(), "0123456789abcdef", "keys are redacted in errors")
	// A key without its owner (the "=owner" forgotten): not even its first characters are shown.
	_, err = ParseAPIKeys("0123456789abcdef=svc-a,sk_liveABCDEF0123456789")
	require.ErrorContains(t, err, "entry 2 ")
	require.NotContains(t, err.Error(), "sk_l", "no prefix of a key")
}

// TestParseKeysShowNoKey: the mistakes an operator makes writing a key list put a key where the
// owner (or operator name) goes; the error printed at start (and logged) must not show it, for
// INTAKE_API_KEYS and INTAKE_API_ADMIN_KEYS alike: a pair written the wrong way round (the order of
// INTAKE_API_JWT_TENANT_SECRETS), entries one per line (a YAML block in a Secret) or separated by
// ';', and a key holding '=' (base64 padding), which would otherwise be cut at it and accepted.
func TestParseKeysShowNoKey(t *testing.T) {
	t.Parallel()
	for name, c := range map[string]struct{ list, secret string }{
		"owner=key":         {"alice=sk_live_9f8e7d6c5b4a39281706", "sk_live"},
		"one per line":      {"k-one-0123456789abc=alice\nk-two-0123456789abc=bob", "k-two-0123456789abc"},
		"semicolons":        {"k-one-0123456789abc=alice;k-two-0123456789abc=bob", "k-two-0123456789abc"},
		"key with padding":  {"c2VjcmV0LWtleS0wMTIzNDU2Nzg5==alice", "c2VjcmV0"},
		"duplicate, owner":  {"k-one-0123456789abc=sk_live_9f8e7d6c5b4a39281706,k-one-0123456789abc=bob", "sk_live"},
		"invalid long name": {"k-one-0123456789abc=sk live 9f8e7d6c5b4a39281706", "9f8e7d6c"},
	} {
		for _, variable := range []string{"INTAKE_API_KEYS", "INTAKE_API_ADMIN_KEYS"} {
			keys, err := ParseKeys(variable, c.list)
			if err == nil {
				err = validOwners(variable, "owner", keys)
			}
			require.Error(t, err, "%s %s: refused", name, variable)
			require.NotContains(t, err.Error(), c.secret, "%s %s", name, variable)
			require.Contains(t, err.Error(), variable)
		}
	}
	// Both lists written the wrong way round with one long name: the "key" is the same in both
	// (the name), and the error about it must not quote the operator's real key.
	err := API{Keys: "payments-service-prod=sk_live_abcdef0123456789", AdminKeys: "payments-service-prod=sk_admin_9876543210fedcba"}.ValidateAuth()
	require.ErrorContains(t, err, "also a tenant key")
	require.NotContains(t, err.Error(), "sk_admin_")
	// A short, valid name is still quoted, to find the entry by.
	_, err = ParseAPIKeys("short=svc-a")
	require.ErrorContains(t, err, `name "svc-a"`)
}

// TestStaticKeysRefuseSpaces: a key holding whitespace or a control character, most often a space
// left around the '=' ("key =alice"), could never match (a request's header value is trimmed), so
// the tenant or operator would be locked out with no error at start; it is refused by the start's
// validation, naming the variable and never the key. So is such an owner (ValidOwner).
func TestStaticKeysRefuseSpaces(t *testing.T) {
	t.Parallel()
	const key = "aaaaaaaaaaaaaaaaaaaa"
	for name, list := range map[string]string{
		"space before '='":    key + " =alice",
		"tab before '='":      key + "\t=alice",
		"no-break space":      key + "\u00a0=alice",
		"NUL":                 "aaaaaaaaaa\x00aaaaaaaaaa=alice",
		"DEL":                 key + "\x7f=alice",
		"space after '='":     key + "= alice",
		"control in the name": key + "=al\x01ice",
	} {
		for _, variable := range []string{"INTAKE_API_KEYS", "INTAKE_API_ADMIN_KEYS"} {
			c := validConfig()
			if variable == "INTAKE_API_KEYS" {
				c.API.Keys = list
			} else {
				c.API.AdminKeys = list
			}
			err := c.Validate(AllRoles)
			require.Error(t, err, "%s %s", name, variable)
			require.Contains(t, err.Error(), variable+": ", "%s %s", name, variable)
			require.NotContains(t, err.Error(), "aaaaa", "%s %s: the key is not shown", name, variable)
		}
	}
	_, err := ParseAPIKeys(key + " =alice")
	require.EqualError(t, err, `INTAKE_API_KEYS: the key of name "alice" starts or ends with a space, or holds a control character (often a space around '='), so no request could present it; remove it`)
	_, err = ParseKeys("INTAKE_API_ADMIN_KEYS", "bbbbbbbbbbbbbbbbbbbb=ops, "+key+"\t=oncall")
	require.ErrorContains(t, err, `INTAKE_API_ADMIN_KEYS: the key of name "oncall" starts or ends with a space`)
	// A space inside a key (a passphrase) reaches intake as sent: it is a key like any other.
	keys, err := ParseAPIKeys("aaaaaaaaaa aaaaaaaaaa=alice")
	require.NoError(t, err)
	require.Equal(t, map[string]string{"aaaaaaaaaa aaaaaaaaaa": "alice"}, keys)
}

// TestParseTenantSecrets: "owner=secret" pairs; a secret may hold '=' (base64); errors never
// show a secret, not even one written first by mistake ("secret=owner").
func TestParseTenantSecrets(t *testing.T) {
	t.Parallel()
	acme, globex := "YWNtZS1zZWNyZXQtMDEyMzQ1Njc4OWFiY2RlZg==", strings.Repeat("g", 32)
	got, err := ParseTenantSecrets(" acme=" + acme + " , globex=" + globex + ",")
	require.NoError(t, err)
	require.Equal(t, map[string]string{"acme": acme, "globex": globex}, got)
	got, err = ParseTenantSecrets("")
	require.NoError(t, err)
	require.Empty(t, got)

	for name, c := range map[string]struct{ in, want string }{
		"no '='":                 {globex, "entry 1 (of 32 characters) is not owner=secret"},
		"no secret":              {"acme=", "entry 1"},
		"secret written first":   {"acme=" + acme + "," + globex + "=globex", "entry 2 (its owner, of 32 bytes, not shown)"},
		"short secret":           {"acme=" + acme[:31], "the secret of owner \"acme\" is 31 bytes; want at least 32"},
		"shared by two owners":   {"acme=" + acme + ",globex=" + acme, "owner \"globex\" has the secret of owner \"acme\""},
		"owner twice":            {"acme=" + acme + ",acme=" + globex, "owner \"acme\" is listed twice"},
		"owner with a backslash": {`a\b=` + acme, `owner "a\\b" is not a valid owner`},
	} {
		_, err := ParseTenantSecrets(c.in)
		require.ErrorContains(t, err, "INTAKE_API_JWT_TENANT_SECRETS: ", name)
		require.ErrorContains(t, err, c.want, name)
		for _, secret := range []string{acme, globex, acme[:31], acme[:8], globex[:8]} {
			require.NotContains(t, err.Error(), secret, "%s: no secret in the error", name)
		}
	}
}

// TestValidOwnerRefusesNoncharacters: the owner is a segment of every object key, and XML 1.0
// cannot carry U+FFFE or U+FFFF: S3's answers naming such a key (CreateMultipartUpload, ListParts,
// ListMultipartUploads) fail to decode in the AWS SDK, or name another key (MinIO sends U+FFFD).
// Every Unicode noncharacter is refused; their neighbours are characters like any other.
func TestValidOwnerRefusesNoncharacters(t *testing.T) {
	t.Parallel()
	for _, owner := range []string{"a\uffff", "\ufffeb", "a\ufdd0b", "a\ufdefb", "a\U0001fffe", "a\U0001ffff", "a\U0010fffe", "a\U0010ffff"} {
		require.False(t, ValidOwner(owner), "%+q", owner)
	}
	for _, owner := range []string{"alice", "a\ufdcf", "a\ufdf0", "a\ufffd", "a\ufffc", "a\U0001fffd", "a\U00020000", "日本"} {
		require.True(t, ValidOwner(owner), "%+q", owner)
	}
	for _, r := range noncharacters() {
		require.False(t, ValidOwner("a"+string(r)), "%U", r)
	}
}

// noncharacters lists Unicode's 66 noncharacters: U+FDD0..U+FDEF and the last two code points of
// each of the 17 planes.
func noncharacters() []rune {
	var out []rune
	for r := rune(0xfdd0); r <= 0xfdef; r++ {
		out = append(out, r)
	}
	for plane := rune(0); plane <= 0x10; plane++ {
		out = append(out, plane<<16|0xfffe, plane<<16|0xffff)
	}
	return out
}

func TestLoopbackAddr(t *testing.T) {
	t.Parallel()
	for addr, want := range map[string]bool{
		"127.0.0.1:8080": true, "127.1.2.3:80": true, "[::1]:8080": true, "localhost:8080": true, "LOCALHOST:1": true,
		":8080": false, "0.0.0.0:8080": false, "[::]:8080": false, "10.0.0.1:8080": false, "example.com:80": false,
		"8080": false, "": false,
	} {
		require.Equal(t, want, LoopbackAddr(addr), addr)
	}
}

func TestUsePathStyle(t *testing.T) {
	t.Parallel()
	require.False(t, AWS{}.UsePathStyle())
	require.True(t, AWS{S3Endpoints: S3Endpoints{S3Endpoint: "http://x"}}.UsePathStyle())
	f := false
	require.False(t, AWS{S3Endpoints: S3Endpoints{S3Endpoint: "http://x", PathStyle: &f}}.UsePathStyle())
}

func TestRedact(t *testing.T) {
	t.Parallel()
	require.Equal(t, "postgres://u:REDACTED@h/db", Redact("postgres://u:secret@h/db"))
	require.Equal(t, "postgres://u@h/db?sslmode=disable&password=REDACTED", Redact("postgres://u@h/db?sslmode=disable&password=secret"))
	require.Equal(t, "host=h password=REDACTED dbname=db", Redact("host=h password=secret dbname=db"))
}

// TestValidateNeverEchoesSecrets: url.Parse's error quotes the raw URL; Validate's must not.
func TestValidateNeverEchoesSecrets(t *testing.T) {
	t.Parallel()
	c := validConfig()
	c.DatabaseURL = "postgres://u:pa55word@db:port/x?password=other-secret"
	c.RedisURL = "redis://:redis-secret@r:port/0"
	err := c.Validate(AllRoles)
	require.ErrorContains(t, err, "DATABASE_URL: not a valid postgres URL")
	require.ErrorContains(t, err, "REDIS_URL: not a valid redis URL")
	for _, s := range []string{"pa55word", "other-secret", "redis-secret"} {
		require.NotContains(t, err.Error(), s)
	}

	// A generated password with a '/' makes url.Parse fail on its "port" (`invalid port ":pa"`,
	// quoting the password's head) and hides the authority from a parser stopping at '/'.
	for _, pw := range []string{"Kq7/zW8x", "Kq7#zW8x", "Kq7?zW8x"} {
		c := validConfig()
		c.DatabaseURL = "postgres://app:" + pw + "@db/intake"
		err := c.Validate(AllRoles)
		require.ErrorContains(t, err, "DATABASE_URL: not a valid postgres URL", pw)
		require.NotContains(t, err.Error(), "Kq7", pw)
		require.NotContains(t, err.Error(), "zW8x", pw)
	}
}

func TestSecrets(t *testing.T) {
	t.Parallel()
	c := validConfig()
	c.DatabaseURL = "postgres://u@db/x?password=db-secret"
	c.RedisURL = "redis://:redis-secret@r:6379/0"
	c.Consumer.IngressToken = "ingress-secret-0123456789abcdef0123"
	c.API.Keys = "0123456789abcdef=svc-a, fedcba9876543210=svc-b"
	c.API.AdminKeys = "operator-key-0123456789=ops"
	c.API.JWTTenantSecrets = "acme=acme-jwt-secret-0123456789abcdef==, globex=globex-jwt-secret-0123456789abcdef"
	require.Subset(t, c.Secrets(), []string{"db-secret", "redis-secret", "ingress-secret-0123456789abcdef0123", c.API.JWTSecret, "0123456789abcdef", "fedcba9876543210", "operator-key-0123456789",
		"acme-jwt-secret-0123456789abcdef==", "globex-jwt-secret-0123456789abcdef"})

	// During a rotation each webhook secret is masked alone, wherever a log shows one of them.
	c.Webhook.Secret = "whsec_bmV3LXNlY3JldC0wMTIzNDU2Nzg5YWJjZGVm whsec_b2xkLXNlY3JldC0wMTIzNDU2Nzg5YWJjZGVm"
	require.Subset(t, c.Secrets(), []string{"whsec_bmV3LXNlY3JldC0wMTIzNDU2Nzg5YWJjZGVm", "whsec_b2xkLXNlY3JldC0wMTIzNDU2Nzg5YWJjZGVm"})
}

// TestS3ClientIsS3EndpointsWithoutPresigning: the operator commands' S3 settings are the daemon's,
// with the same flags, variables and help, less the endpoint of presigned URLs; Endpoints carries
// them over.
func TestS3ClientIsS3EndpointsWithoutPresigning(t *testing.T) {
	client, endpoints := reflect.TypeFor[S3Client](), reflect.TypeFor[S3Endpoints]()
	for i := range client.NumField() {
		f := client.Field(i)
		e, ok := endpoints.FieldByName(f.Name)
		require.True(t, ok, f.Name)
		require.Equal(t, e.Tag, f.Tag, f.Name)
		require.Equal(t, e.Type, f.Type, f.Name)
	}
	require.Equal(t, endpoints.NumField()-1, client.NumField(), "all but S3PublicEndpoint")
	_, ok := client.FieldByName("S3PublicEndpoint")
	require.False(t, ok)
	on := true
	require.Equal(t, S3Endpoints{S3Endpoint: "http://x", PathStyle: &on}, S3Client{S3Endpoint: "http://x", PathStyle: &on}.Endpoints())
}
