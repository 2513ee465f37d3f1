package config

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func validConfig() Config {
	return Config{
		DatabaseURL: "postgres://u@127.0.0.1:5432/db",
		RedisURL:    "redis://127.0.0.1:6379/0",
		AWS:         AWS{Region: "us-east-1", S3Endpoint: "http://127.0.0.1:9000"},
		Bucket:      "b",
		QueueURL:    "http://127.0.0.1:4566/000000000000/q",
		ListenAddr:  "127.0.0.1:8080", ShutdownGrace: 10 * time.Second,
		Consumer: Consumer{Receivers: 2, Workers: 8, Visibility: time.Minute, WaitTime: 20 * time.Second, MaxBackoff: time.Minute, MessageTimeout: 5 * time.Minute},
		API:      API{JWTSecret: strings.Repeat("s", 32), PresignExpiry: 5 * time.Minute, MaxPresignExpiry: time.Hour, KeyPrefix: "uploads", S3Timeout: 10 * time.Second},
		Jobs:     Jobs{Concurrency: 4, SweepCron: "*/15 * * * *", SweepOlderThan: time.Hour, MultipartDeadline: time.Hour},
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
		{"api ingress needs queue", []string{RoleAPI}, func(c *Config) { c.QueueURL = ""; c.Consumer.IngressToken = "t" }, []string{"INTAKE_QUEUE_URL: required"}},
		{"no auth", []string{RoleAPI}, func(c *Config) { c.API.JWTSecret = "" }, []string{"no authentication configured"}},
		{"insecure dev auth accepted", []string{RoleAPI}, func(c *Config) { c.API.JWTSecret = ""; c.API.InsecureDevAuth = true }, nil},
		{"short secret", []string{RoleAPI}, func(c *Config) { c.API.JWTSecret = "short" }, []string{"at least 32 bytes"}},
		{"expiry cap", []string{RoleAPI}, func(c *Config) { c.API.MaxPresignExpiry = 200 * time.Hour }, []string{"INTAKE_API_MAX_PRESIGN_EXPIRY"}},
		{"bad key prefix", []string{RoleAPI}, func(c *Config) { c.API.KeyPrefix = "../x" }, []string{"INTAKE_API_KEY_PREFIX"}},
		{"bad listen", AllRoles, func(c *Config) { c.ListenAddr = "8080" }, []string{"INTAKE_LISTEN_ADDR"}},
		{"consumer bounds", []string{RoleConsumer}, func(c *Config) { c.Consumer.Workers = 0; c.Consumer.WaitTime = time.Minute }, []string{"INTAKE_CONSUMER_WORKERS", "INTAKE_CONSUMER_WAIT_TIME"}},
		{"message timeout below the visibility", []string{RoleConsumer}, func(c *Config) { c.Consumer.MessageTimeout = 30 * time.Second }, []string{"INTAKE_CONSUMER_MESSAGE_TIMEOUT: 30s not in INTAKE_CONSUMER_VISIBILITY (1m0s)..6h"}},
		{"message timeout near the visibility cap", []string{RoleConsumer}, func(c *Config) { c.Consumer.MessageTimeout = 12 * time.Hour }, []string{"INTAKE_CONSUMER_MESSAGE_TIMEOUT"}},
		{"jobs bounds", []string{RoleJobs}, func(c *Config) { c.Jobs.SweepCron = " "; c.Jobs.Concurrency = 0 }, []string{"INTAKE_JOBS_SWEEP_CRON", "INTAKE_JOBS_CONCURRENCY"}},
		{"jobs not checked for api", []string{RoleAPI}, func(c *Config) { c.Jobs.Concurrency = 0 }, nil},
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
		{"notify queue", []string{RoleJobs}, func(c *Config) { c.NotifyAsynqQueue = "app-uploads" }, nil},
		{"notify queue of intake's", []string{RoleJobs}, func(c *Config) { c.NotifyAsynqQueue = "intake-default" }, []string{"INTAKE_NOTIFY_ASYNQ_QUEUE", "intake's own"}},
		{"notify queue with spaces", []string{RoleJobs}, func(c *Config) { c.NotifyAsynqQueue = "app uploads" }, []string{"INTAKE_NOTIFY_ASYNQ_QUEUE"}},
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
}

func TestParseAPIKeys(t *testing.T) {
	t.Parallel()
	k, err := ParseAPIKeys("0123456789abcdef=svc-a, fedcba9876543210=svc-b")
	require.NoError(t, err)
	require.Equal(t, map[string]string{"0123456789abcdef": "svc-a", "fedcba9876543210": "svc-b"}, k)
	_, err = ParseAPIKeys("short=svc")
	require.ErrorContains(t, err, "shorter than 16")
	_, err = ParseAPIKeys("0123456789abcdef=")
	require.ErrorContains(t, err, "not key=owner")
	require.NotContains(t, err.Error(), "0123456789abcdef", "keys are redacted in errors")
}

func TestUsePathStyle(t *testing.T) {
	t.Parallel()
	require.False(t, AWS{}.UsePathStyle())
	require.True(t, AWS{S3Endpoint: "http://x"}.UsePathStyle())
	f := false
	require.False(t, AWS{S3Endpoint: "http://x", PathStyle: &f}.UsePathStyle())
}

func TestRedact(t *testing.T) {
	t.Parallel()
	require.Equal(t, "postgres://u:xxxxx@h/db", Redact("postgres://u:secret@h/db"))
}
