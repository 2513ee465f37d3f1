package cli

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/stretchr/testify/require"

	"github.com/intakehq/intake/internal/config"
	"github.com/intakehq/intake/internal/telemetry"
	"github.com/intakehq/intake/internal/testkit"
)

// s3Faults is a proxy in front of MinIO for the daemon: GETs of keys under stall/ hang until the
// client gives up (an inspection cancelled at shutdown), GETs under fail/ lose their connection (an
// S3 transport error), everything else goes through unchanged (the Host header is kept, so SigV4
// signatures still verify).
type s3Faults struct {
	*httptest.Server
	stalled chan string // the URL of each stalled GET, as the daemon sent it
}

func newS3Faults(t *testing.T) *s3Faults {
	t.Helper()
	target, err := url.Parse(testkit.AWS().S3Endpoint)
	require.NoError(t, err)
	proxy := httputil.NewSingleHostReverseProxy(target)
	f := &s3Faults{stalled: make(chan string, 16)}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/stall/"):
			select {
			case f.stalled <- r.URL.String():
			default:
			}
			<-r.Context().Done()
		case r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/fail/"):
			conn, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				_ = conn.Close()
			}
		default:
			proxy.ServeHTTP(w, r)
		}
	}))
	t.Cleanup(f.Close)
	return f
}

// s3Event is a MinIO-style notification body for one created object.
func s3Event(bucket, key string, size int) string {
	return fmt.Sprintf(`{"Records":[{"eventVersion":"2.0","eventSource":"minio:s3","awsRegion":"us-east-1",`+
		`"eventTime":%q,"eventName":"s3:ObjectCreated:Put","s3":{"s3SchemaVersion":"1.0","bucket":{"name":%q},`+
		`"object":{"key":%q,"size":%d,"sequencer":"18EB24A6C331BBF0"}}}]}`,
		time.Now().UTC().Format(time.RFC3339Nano), bucket, url.QueryEscape(key), size)
}

// TestDaemonLogsNoSecrets runs the real daemon (every role, debug logs, JSON) through start, failing
// requests, an S3 error, an inspection cancelled at shutdown, and shutdown, with a DATABASE_URL whose
// password is in the query string, an ingress token and an API key, and checks that no log line
// holds the password, the token, the key, or any part of a presigned URL's authentication.
func TestDaemonLogsNoSecrets(t *testing.T) {
	if testing.Short() {
		t.Skip("needs the local stack")
	}
	const (
		dbPassword   = "db-Pa55word-in-the-query-string"
		ingressToken = "ingress-token-0123456789abcdef0123456789abcdef"
		apiKey       = "api-key-0123456789abcdef"
	)
	ctx := testkit.Context(t)
	schema := testkit.Schema(t)
	s3c := testkit.S3()
	bucket := testkit.Bucket(t, s3c)
	q := testkit.Queue(t, testkit.SQS(), 5, 30*time.Second)
	faults := newS3Faults(t)
	awsc := testkit.AWS()
	t.Setenv("AWS_ACCESS_KEY_ID", testkit.DefaultAccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", testkit.DefaultSecretKey)
	for _, key := range []string{"stall/slow.txt", "fail/broken.txt"} {
		_, err := s3c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(key),
			Body: strings.NewReader("hello"), ContentType: aws.String("text/plain")})
		require.NoError(t, err)
	}
	d := startDaemon(t, ctx,
		"--database-url", testkit.DatabaseURLFor(schema)+"&password="+dbPassword, "--migrate",
		"--redis-url", fmt.Sprintf("redis://%s/%d", testkit.RedisAddr(), testkit.RedisDB(t)),
		"--s3-endpoint", faults.URL, "--sqs-endpoint", awsc.SQSEndpoint, "--aws-region", awsc.Region,
		"--bucket", bucket, "--queue-url", q.URL, "--shutdown-grace", "1s",
		"--log-level", "debug", "--log-format", "json",
		"--api-keys", apiKey+"=alice", "--consumer-ingress-token", ingressToken)
	base, logs := d.base, d.logs

	send := func(method, path, auth, body string) int {
		req, err := http.NewRequestWithContext(ctx, method, base+path, strings.NewReader(body))
		require.NoError(t, err)
		req.Header.Set("Content-Type", "application/json")
		if auth != "" {
			req.Header.Set("Authorization", "Bearer "+auth)
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	// Failing requests: a wrong ingress token, secrets in a query string, an undecodable event, a
	// bad upload request.
	require.Equal(t, http.StatusUnauthorized, send(http.MethodPost, "/v1/events/s3", "wrong-"+ingressToken, s3Event(bucket, "x", 1)))
	require.Equal(t, http.StatusUnauthorized, send(http.MethodGet, "/v1/objects?access_token="+ingressToken+"&password="+dbPassword, "", ""))
	require.Less(t, 399, send(http.MethodPost, "/v1/events/s3", ingressToken, `{"Records":[{"s3":`))
	require.Less(t, 399, send(http.MethodPost, "/v1/uploads", apiKey, `{"filename":"../../etc/passwd","size":-1}`))
	// An S3 error (the inspection's GET loses its connection) and an inspection still waiting on
	// S3 when the daemon stops.
	require.Equal(t, http.StatusOK, send(http.MethodPost, "/v1/events/s3", ingressToken, s3Event(bucket, "fail/broken.txt", 5)))
	require.Equal(t, http.StatusOK, send(http.MethodPost, "/v1/events/s3", ingressToken, s3Event(bucket, "stall/slow.txt", 5)))
	var stalledURL string
	select {
	case stalledURL = <-faults.stalled:
	case <-time.After(60 * time.Second):
		t.Fatalf("the inspection never reached S3; logs:\n%s", logs.String())
	}
	require.Contains(t, stalledURL, "X-Amz-Signature=", "the inspection is a presigned GET")
	require.Eventually(t, func() bool { return strings.Contains(logs.String(), "fail/broken.txt") },
		60*time.Second, 100*time.Millisecond, "the S3 error was never logged; logs:\n%s", logs.String())

	require.Equal(t, 0, d.stop(), "logs:\n%s", logs.String())
	out := logs.String()
	require.Contains(t, out, "stall/slow.txt", "the cancelled inspection was logged")
	require.Contains(t, out, `"msg":"stopped cleanly"`)
	sig := stalledURL[strings.Index(stalledURL, "X-Amz-Signature=")+len("X-Amz-Signature="):]
	lines := bytes.Split([]byte(out), []byte("\n"))
	for i, line := range lines {
		for _, secret := range []string{dbPassword, ingressToken, apiKey, "X-Amz-Signature", "X-Amz-Credential", sig, testkit.DefaultSecretKey} {
			require.NotContains(t, string(line), secret, "log line %d of %d holds a secret:\n%s", i+1, len(lines), line)
		}
	}
}

// TestLogSecretsCoverThePolicyFile: the webhook secrets a policy file names (by their secret_env
// variables) and its URLs' credentials are masked in every log line, as the configuration's are.
func TestLogSecretsCoverThePolicyFile(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "policy.yaml")
	require.NoError(t, os.WriteFile(file, []byte(`rules:
  - prefix: ""
webhooks:
  - name: avatars
    prefix: uploads/avatars/
    url: https://hooks.example/in?token=url-token-0123456789
    secret_env: AVATARS_SECRET
`), 0o600))
	cfg := config.Config{PolicyFile: file}
	cfg.API.AdminKeys = "operator-key-0123456789=ops"
	env := map[string]string{"AVATARS_SECRET": "whsec_policy-secret-0123456789", "AWS_SECRET_ACCESS_KEY": "aws-secret-0123456789"}
	secrets := logSecrets(&cfg, startPolicy(&cfg), func(k string) string { return env[k] })
	require.Subset(t, secrets, []string{"whsec_policy-secret-0123456789", "url-token-0123456789", "operator-key-0123456789", "aws-secret-0123456789"})

	var buf bytes.Buffer
	log := telemetry.NewLogger(&buf, "json", "info", secrets...)
	log.Error("webhook attempt failed", "err", fmt.Errorf("post https://hooks.example/in?token=url-token-0123456789 with whsec_policy-secret-0123456789 as operator-key-0123456789"))
	for _, s := range []string{"whsec_policy-secret-0123456789", "url-token-0123456789", "operator-key-0123456789"} {
		require.NotContains(t, buf.String(), s)
	}
	require.Contains(t, buf.String(), "REDACTED")
}

// TestOperatorCommandsQuoteNoRedisPassword: a REDIS_URL whose password holds a '/' (not
// percent-encoded) makes asynq's parser quote the part it could not read (`invalid port ":s3cr3t"`),
// the head of the password, which no redaction recognizes. Every command that reads REDIS_URL
// checks it as the daemon's configuration does first, and says what is wrong without quoting it.
func TestOperatorCommandsQuoteNoRedisPassword(t *testing.T) {
	t.Parallel()
	const redisURL = "redis://:s3cr3t/Pa55w0rd@127.0.0.1:6379/0"
	for _, args := range [][]string{
		{"jobs", "list"},
		{"outbox", "status"},
		{"reconcile", "--fix", "--bucket", "b"},
		{"sweep", "--bucket", "b"},
	} {
		var out, errOut bytes.Buffer
		code := MainContext(t.Context(), append(args, "--redis-url", redisURL, "--log-format", "json"), &out, &errOut)
		require.NotEqual(t, 0, code, "%v", args)
		all := out.String() + errOut.String()
		require.NotContains(t, all, "s3cr3t", "%v: %s", args, all)
		require.NotContains(t, all, "Pa55w0rd", "%v", args)
	}
}

// TestMalformedURLsQuoteNoPassword: a REDIS_URL or DATABASE_URL that does not parse, because its
// password was not percent-encoded and holds a byte that ends a URL in running text (a space, a
// quote, a backquote, '<': generated passwords hold them), or because the URL lacks a slash, is
// reported without its password, in the log line and on stderr. Before, both quoted the whole URL:
// redaction stopped at that byte and never reached the '@'.
func TestMalformedURLsQuoteNoPassword(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		flag, url string
		args      []string
	}{
		{"--redis-url", "redis://:s3cr3t Pa55w0rd@127.0.0.1:6379/0", []string{"jobs", "list"}},
		{"--redis-url", `redis://:s3cr3t"Pa55w0rd@127.0.0.1:6379/0`, []string{"jobs", "list"}},
		{"--redis-url", "redis://:s3cr3t<Pa55w0rd@127.0.0.1:6379/0", []string{"jobs", "list"}},
		{"--redis-url", "redis:/:s3cr3tPa55w0rd@127.0.0.1:6379/0", []string{"jobs", "list"}},
		{"--database-url", "postgres://app:s3cr3t Pa55w0rd@db/intake", []string{"outbox", "status"}},
		{"--database-url", "postgres://app:s3cr3t`Pa55w0rd@db/intake", []string{"outbox", "status"}},
	} {
		var out, errOut bytes.Buffer
		code := MainContext(t.Context(), append(tt.args, tt.flag, tt.url, "--log-format", "json"), &out, &errOut)
		require.NotEqual(t, 0, code, tt.url)
		all := out.String() + errOut.String()
		require.Contains(t, all, "URL", "%s: the error names what is wrong: %s", tt.url, all)
		require.NotContains(t, all, "Pa55w0rd", "%s: %s", tt.url, all)
		require.NotContains(t, all, "s3cr3t", "%s: %s", tt.url, all)
	}
}

// TestUsageErrorsQuoteNoPassword: a URL given where no argument is taken (`intake run
// postgres://…` instead of --database-url) is refused with a usage error that quotes the argument,
// its password masked. Before, it was printed as given.
func TestUsageErrorsQuoteNoPassword(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"run", "postgres://app:s3cr3tPa55w0rd@db/intake"},
		{"jobs", "list", "redis://:s3cr3tPa55w0rd@r:6379/0"},
		{"run", "postgres://app:s3cr3t Pa55w0rd@db/intake"},
		{"run", `postgres://app:s3cr3t"Pa55w0rd@db/intake`},
		{"run", "redis:/:s3cr3tPa55w0rd@r:6379/0"},
	} {
		var out, errOut bytes.Buffer
		code := MainContext(t.Context(), args, &out, &errOut)
		require.Equal(t, 2, code, "%v: a usage error", args)
		all := out.String() + errOut.String()
		require.Contains(t, all, "unexpected argument", "%v: %s", args, all)
		require.NotContains(t, all, "Pa55w0rd", "%v: %s", args, all)
	}
	// A short password, with a space: below the length a log's known secrets are searched for.
	var out, errOut bytes.Buffer
	require.Equal(t, 2, MainContext(t.Context(), []string{"run", "postgres://app:q7 z@db/intake"}, &out, &errOut))
	require.NotContains(t, out.String()+errOut.String(), "q7 z", errOut.String())
}
