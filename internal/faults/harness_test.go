package faults_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/intakehq/intake/internal/testkit"
)

// Credentials and names every scenario's world uses.
const (
	ingressToken = "faults-ingress-token-0123456789abcdef"
	goodKey      = "faults-alice-key-0001" // uploads what it declares
	badKey       = "faults-mallory-key-01" // declares image/png and sends text: rejected, quarantined
	minioUser    = "faultsadmin"
	minioSecret  = "faultsadmin-secret"
	quarantine   = "quarantine/"
)

var (
	// intakeBin is the daemon binary TestMain builds.
	intakeBin string
	// repoRoot is the module's root (bin/minio lives under it).
	repoRoot string
	// full selects the full-length scenarios (INTAKE_FAULTS=full).
	full = os.Getenv("INTAKE_FAULTS") == "full"
	// table collects one row per scenario; TestMain prints it.
	table results
)

// TestMain builds the intake binary once, runs the scenarios, prints their summary table and checks
// that no goroutine of the harness outlives them.
func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		os.Exit(m.Run()) // every scenario skips
	}
	// The shortened scenarios mostly wait (for an outage to end, a visibility timeout to pass): run
	// them all at once rather than GOMAXPROCS at a time, unless -parallel says otherwise.
	explicit := false
	flag.Visit(func(f *flag.Flag) { explicit = explicit || f.Name == "test.parallel" })
	if !full && !explicit {
		_ = flag.Set("test.parallel", "8")
	}
	root, err := moduleRoot()
	if err != nil {
		fmt.Fprintln(os.Stderr, "faults:", err)
		os.Exit(1)
	}
	repoRoot = root
	dir, err := os.MkdirTemp("", "intake-faults-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "faults:", err)
		os.Exit(1)
	}
	intakeBin = filepath.Join(dir, "intake")
	build := exec.Command("go", "build", "-o", intakeBin, "./cmd/intake")
	build.Dir, build.Stdout, build.Stderr = root, os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "faults: build intake:", err)
		_ = os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	_ = os.RemoveAll(dir)
	table.exited(code)
	table.print(os.Stdout)
	if path := os.Getenv("INTAKE_FAULTS_REPORT"); path != "" {
		if err := table.write(path); err != nil {
			fmt.Fprintln(os.Stderr, "faults: write report:", err)
			code = 1
		}
	}
	if code == 0 {
		if err := goleak.Find(goleak.IgnoreTopFunction("net/http.(*persistConn).readLoop"),
			goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
			goleak.IgnoreTopFunction("internal/poll.runtime_pollWait")); err != nil {
			fmt.Fprintln(os.Stderr, "faults: leaked goroutines:", err)
			code = 1
		}
	}
	os.Exit(code)
}

func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory")
		}
		dir = parent
	}
}

// length picks the shortened or the full-length value.
func length[T any](short, long T) T {
	if full {
		return long
	}
	return short
}

// scenario prepares a scenario test: skipped with -short, parallel in the shortened form (the
// full-length scenarios run one at a time, so that their figures are their own).
func scenario(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("the fault suite needs the local stack and toxiproxy")
	}
	t.Cleanup(func() {
		if t.Failed() {
			table.fail(t.Name())
		}
	})
	if !full {
		t.Parallel()
	}
}

// world is one scenario's installation: its own MinIO, database, Redis database and queue, each
// reached by the daemons through a toxiproxy proxy, and the daemons it started.
type world struct {
	t      *testing.T
	dir    string // data (MinIO's), removed at the end
	logs   string // processes' logs: dir, or under INTAKE_FAULTS_LOGS (kept)
	bucket string

	minio   *minioServer
	s3      *s3.Client // direct to the scenario's MinIO (the harness, the "browser")
	sqs     *sqs.Client
	q       testkit.Queues
	db      *pgxpool.Pool // direct to the scenario's database, for counting
	redisDB int           // the scenario's Redis database (asynq's queues, for counting archived tasks)
	admin   *pgxpool.Pool // to the test database: ALTER DATABASE and pg_terminate_backend
	dbName  string

	// Proxies between the daemons and each server.
	pg, redis, objects, queue *testkit.Proxy

	audit       *audit
	ingressAddr string // where MinIO's INTAKE webhook target posts
	env         []string

	mu    sync.Mutex
	procs []*daemon
}

// worldOptions tunes a world.
type worldOptions struct {
	// env is added to every daemon's environment (INTAKE_JOBS_* of the multipart scenarios).
	env []string
}

func newWorld(t *testing.T, opts worldOptions) *world {
	t.Helper()
	w := &world{t: t, dir: t.TempDir(), bucket: "faults", ingressAddr: testkit.FreeAddr(t)}
	w.logs = w.dir
	if keep := os.Getenv("INTAKE_FAULTS_LOGS"); keep != "" {
		w.logs = filepath.Join(keep, t.Name())
		require.NoError(t, os.RemoveAll(w.logs))
		require.NoError(t, os.MkdirAll(w.logs, 0o700))
	}
	w.audit = startAudit(t)
	w.minio = startMinIO(t, w.dir, w.logs, w.ingressAddr, w.audit.addr)
	w.s3 = w.minio.client()
	ctx := testkit.Context(t)
	// A MinIO that says it is ready may still answer "not initialized", or not know its webhook
	// targets yet, for a few seconds.
	retry(t, 30*time.Second, func() error {
		_, err := w.s3.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(w.bucket)})
		return err
	})
	retry(t, 30*time.Second, func() error {
		_, err := w.s3.PutBucketNotificationConfiguration(ctx, &s3.PutBucketNotificationConfigurationInput{
			Bucket: aws.String(w.bucket),
			NotificationConfiguration: &s3types.NotificationConfiguration{QueueConfigurations: []s3types.QueueConfiguration{
				{Id: aws.String("intake"), QueueArn: aws.String("arn:minio:sqs:us-east-1:INTAKE:webhook"),
					Events: []s3types.Event{s3types.EventS3ObjectCreated, s3types.EventS3ObjectRemoved}},
				{Id: aws.String("audit"), QueueArn: aws.String("arn:minio:sqs:us-east-1:AUDIT:webhook"),
					Events: []s3types.Event{s3types.EventS3ObjectCreated, s3types.EventS3ObjectRemoved}},
			}},
		})
		return err
	})

	w.sqs = testkit.SQS()
	w.q = testkit.Queue(t, w.sqs, 5, 60*time.Second) // as deploy/local/bootstrap creates it
	w.dbName, w.db, w.admin = database(t)
	w.redisDB = testkit.RedisDB(t)
	redisDB := w.redisDB

	w.pg = testkit.NewProxy(t, "faults-pg", "127.0.0.1:5432")
	w.redis = testkit.NewProxy(t, "faults-redis", testkit.RedisAddr())
	w.objects = testkit.NewProxy(t, "faults-minio", w.minio.addr)
	w.queue = testkit.NewProxy(t, "faults-kumo", strings.TrimPrefix(testkit.AWS().SQSEndpoint, "http://"))

	policy := filepath.Join(w.dir, "policy.yaml")
	require.NoError(t, os.WriteFile(policy, []byte(`rules:
  - prefix: ""
    max_size: 104857600
    require_sniff_match: true
    action: quarantine
    quarantine_prefix: `+quarantine+`
`), 0o600))
	w.env = append([]string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + w.dir,
		"DATABASE_URL=postgres://postgres@" + w.pg.Addr + "/" + w.dbName + "?sslmode=disable",
		fmt.Sprintf("REDIS_URL=redis://%s/%d", w.redis.Addr, redisDB),
		"AWS_REGION=us-east-1",
		"AWS_ACCESS_KEY_ID=" + minioUser,
		"AWS_SECRET_ACCESS_KEY=" + minioSecret,
		"AWS_ENDPOINT_URL_S3=" + w.objects.URL(),
		"AWS_ENDPOINT_URL_SQS=" + w.queue.URL(),
		"INTAKE_S3_PUBLIC_ENDPOINT=http://" + w.minio.addr, // uploaders reach MinIO directly
		"INTAKE_BUCKET=" + w.bucket,
		"INTAKE_QUEUE_URL=" + w.q.URL,
		"INTAKE_MIGRATE=true",
		"INTAKE_POLICY_FILE=" + policy,
		"INTAKE_API_KEYS=" + goodKey + "=alice," + badKey + "=mallory",
		"INTAKE_CONSUMER_INGRESS_TOKEN=" + ingressToken,
		"INTAKE_LOG_FORMAT=json",
	}, opts.env...)
	t.Cleanup(w.stopAll)
	return w
}

// retry calls f until it succeeds, failing t with its last error after within.
func retry(t *testing.T, within time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("still failing after %s: %v", within, err)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// database creates a database of the scenario's own (testkit.Database: so that ALTER DATABASE … SET
// is safe), dropped when the test ends; it returns its name, a pool on it and a pool on the test
// database (for ALTER DATABASE and pg_terminate_backend).
func database(t *testing.T) (string, *pgxpool.Pool, *pgxpool.Pool) {
	t.Helper()
	ctx := context.Background()
	u, err := url.Parse(testkit.Database(t))
	require.NoError(t, err)
	name := strings.TrimPrefix(u.Path, "/")
	admin, err := pgxpool.New(ctx, testkit.DatabaseURL())
	require.NoError(t, err)
	t.Cleanup(admin.Close)
	cfg, err := pgxpool.ParseConfig(u.String())
	require.NoError(t, err)
	cfg.ConnConfig.RuntimeParams["application_name"] = "faults-harness"
	cfg.ConnConfig.RuntimeParams["search_path"] = "intake,public" // wherever intake keeps its tables
	cfg.MaxConns = 4
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	require.NoError(t, err)
	t.Cleanup(pool.Close) // before the database is dropped (cleanups run last-in first-out)
	return name, pool, admin
}

// ---------------------------------------------------------------------------------------------------
// MinIO of the scenario's own.

type minioServer struct {
	addr string
	cmd  *exec.Cmd
	done chan struct{}
}

// startMinIO starts bin/minio on a free port with two webhook targets, each with a queue directory
// (MinIO keeps the events it could not deliver and sends them when the target answers again):
// INTAKE posts to the daemon's ingress at ingressAddr, AUDIT to the harness's recorder.
func startMinIO(t *testing.T, dir, logs, ingressAddr, auditAddr string) *minioServer {
	t.Helper()
	bin := filepath.Join(repoRoot, "bin", "minio")
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("bin/minio: %v (run `make up`)", err)
	}
	m := &minioServer{addr: testkit.FreeAddr(t), done: make(chan struct{})}
	data := filepath.Join(dir, "minio")
	for _, d := range []string{data, filepath.Join(dir, "events-intake"), filepath.Join(dir, "events-audit")} {
		require.NoError(t, os.MkdirAll(d, 0o700))
	}
	logf, err := os.Create(filepath.Join(logs, "minio.log"))
	require.NoError(t, err)
	t.Cleanup(func() { _ = logf.Close() })
	m.cmd = exec.Command(bin, "server", data, "--address", m.addr, "--console-address", testkit.FreeAddr(t), "--quiet")
	m.cmd.Env = []string{
		"PATH=" + os.Getenv("PATH"), "HOME=" + dir,
		"MINIO_ROOT_USER=" + minioUser, "MINIO_ROOT_PASSWORD=" + minioSecret,
		"MINIO_REGION=us-east-1", "MINIO_SITE_REGION=us-east-1", "MINIO_BROWSER=off",
		"MINIO_NOTIFY_WEBHOOK_ENABLE_INTAKE=on",
		"MINIO_NOTIFY_WEBHOOK_ENDPOINT_INTAKE=http://" + ingressAddr + "/v1/events/s3",
		"MINIO_NOTIFY_WEBHOOK_AUTH_TOKEN_INTAKE=" + ingressToken,
		"MINIO_NOTIFY_WEBHOOK_QUEUE_DIR_INTAKE=" + filepath.Join(dir, "events-intake"),
		"MINIO_NOTIFY_WEBHOOK_ENABLE_AUDIT=on",
		"MINIO_NOTIFY_WEBHOOK_ENDPOINT_AUDIT=http://" + auditAddr + "/",
		"MINIO_NOTIFY_WEBHOOK_QUEUE_DIR_AUDIT=" + filepath.Join(dir, "events-audit"),
	}
	m.cmd.Stdout, m.cmd.Stderr = logf, logf
	m.cmd.SysProcAttr = orphanless()
	require.NoError(t, m.cmd.Start())
	go func() { _ = m.cmd.Wait(); close(m.done) }()
	t.Cleanup(func() { stopProcess(m.cmd, m.done, 10*time.Second) })
	waitHTTP(t, "MinIO", "http://"+m.addr+"/minio/health/ready", m.done, 60*time.Second)
	return m
}

// orphanless makes a child process die with the test binary (a test killed by its timeout runs no
// cleanup).
func orphanless() *syscall.SysProcAttr { return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} }

func (m *minioServer) client() *s3.Client {
	section := testkit.AWS()
	section.S3Endpoint = "http://" + m.addr
	cfg := testkit.AWSConfig()
	cfg.Credentials = aws.NewCredentialsCache(staticCreds{})
	return s3.NewFromConfig(cfg, func(o *s3.Options) {
		o.BaseEndpoint = aws.String(section.S3Endpoint)
		o.UsePathStyle = true
	})
}

type staticCreds struct{}

func (staticCreds) Retrieve(context.Context) (aws.Credentials, error) {
	return aws.Credentials{AccessKeyID: minioUser, SecretAccessKey: minioSecret, Source: "faults"}, nil
}

// stopProcess sends SIGTERM, waits up to grace for the process to exit, then kills it.
func stopProcess(cmd *exec.Cmd, done <-chan struct{}, grace time.Duration) {
	if cmd.Process == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(grace):
		_ = cmd.Process.Kill()
		<-done
	}
}

// waitHTTP waits until url answers 200, failing t when the process exits first or after timeout.
func waitHTTP(t *testing.T, what, url string, exited <-chan struct{}, timeout time.Duration) {
	t.Helper()
	client := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(timeout)
	for {
		resp, err := client.Get(url)
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case <-exited:
			t.Fatalf("%s exited before it answered on %s", what, url)
		case <-time.After(200 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not answer on %s within %s (last error: %v)", what, url, timeout, err)
		}
	}
}

// ---------------------------------------------------------------------------------------------------
// Daemons: real intake processes.

// daemon is one `intake run` process; it can be killed and started again on the same address.
type daemon struct {
	w           *world
	name, roles string
	addr        string
	env         []string
	logPath     string

	mu     sync.Mutex
	cmd    *exec.Cmd
	done   chan struct{}
	starts int
	kills  int
}

// start runs `intake run --roles roles` listening on addr (a free one when empty) and waits until it
// answers /healthz.
func (w *world) start(name, roles, addr string, env ...string) *daemon {
	w.t.Helper()
	if addr == "" {
		addr = testkit.FreeAddr(w.t)
	}
	d := &daemon{w: w, name: name, roles: roles, addr: addr, env: env, logPath: filepath.Join(w.logs, name+".log")}
	w.mu.Lock()
	w.procs = append(w.procs, d)
	w.mu.Unlock()
	d.start()
	return d
}

func (d *daemon) start() {
	t := d.w.t
	t.Helper()
	logf, err := os.OpenFile(d.logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	require.NoError(t, err)
	cmd := exec.Command(intakeBin, "run", "--roles", d.roles)
	cmd.Env = append(slices.Clone(d.w.env), "INTAKE_LISTEN_ADDR="+d.addr)
	cmd.Env = append(cmd.Env, d.env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = orphanless()
	require.NoError(t, cmd.Start())
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); _ = logf.Close(); close(done) }()
	d.mu.Lock()
	d.cmd, d.done = cmd, done
	d.starts++
	d.mu.Unlock()
	waitHTTP(t, d.name, "http://"+d.addr+"/healthz", done, 60*time.Second)
	waitConnected(t, d.name, "http://"+d.addr+"/readyz", done, 60*time.Second)
}

// waitConnected waits until the daemon's /readyz reports its roles started (and PostgreSQL ok, for
// the roles that use it; a scheduler alone does not): the daemon answers /healthz as soon as it
// listens, and waits for PostgreSQL (and migrates) before it serves its routes.
func waitConnected(t *testing.T, what, url string, exited <-chan struct{}, timeout time.Duration) {
	t.Helper()
	client := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(timeout)
	for {
		var body struct {
			Checks map[string]string `json:"checks"`
		}
		resp, err := client.Get(url)
		if err == nil {
			err = json.NewDecoder(resp.Body).Decode(&body)
			_ = resp.Body.Close()
			if pg, ok := body.Checks["postgres"]; err == nil && body.Checks["started"] == "ok" && (!ok || pg == "ok") {
				return
			}
		}
		select {
		case <-exited:
			t.Fatalf("%s exited before its roles started", what)
		case <-time.After(200 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not start its roles within %s (last: %v %v)", what, timeout, body.Checks, err)
		}
	}
}

// metric is the sum of a metric's samples on the daemon's /metrics (served on its listener: the
// harness starts no admin listener).
func (d *daemon) metric(name string) float64 {
	t := d.w.t
	t.Helper()
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + d.addr + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	var sum float64
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		rest, ok := strings.CutPrefix(line, name)
		if !ok || rest == "" || rest[0] != ' ' && rest[0] != '{' {
			continue
		}
		var v float64
		_, err := fmt.Sscan(line[strings.LastIndexByte(line, ' ')+1:], &v)
		require.NoError(t, err, line)
		sum += v
	}
	require.NoError(t, sc.Err())
	return sum
}

// kill sends SIGKILL and waits for the process to be gone. A process already gone when the kill was
// to land crashed by itself: that fails the scenario (the restart that follows would hide it), and
// the kill is not counted.
func (d *daemon) kill() {
	d.mu.Lock()
	cmd, done := d.cmd, d.done
	d.mu.Unlock()
	select {
	case <-done:
		d.w.t.Errorf("%s (%s) had exited before it was to be killed: %v (see its log %s)", d.name, d.roles, cmd.ProcessState, d.logPath)
		return
	default:
	}
	_ = cmd.Process.Kill()
	<-done
	d.mu.Lock()
	d.kills++
	d.mu.Unlock()
}

// stop sends SIGTERM and waits for a clean exit (killing it after 45 s).
func (d *daemon) stop() {
	d.mu.Lock()
	cmd, done := d.cmd, d.done
	d.mu.Unlock()
	if cmd != nil {
		stopProcess(cmd, done, 45*time.Second)
	}
}

// stopAll stops every daemon; on failure it shows the end of each one's log.
func (w *world) stopAll() {
	w.mu.Lock()
	procs := slices.Clone(w.procs)
	w.mu.Unlock()
	var wg sync.WaitGroup
	for _, d := range procs {
		wg.Go(d.stop)
	}
	wg.Wait()
	if w.t.Failed() {
		for _, d := range procs {
			w.t.Logf("--- last lines of %s (%s):\n%s", d.name, d.roles, tail(d.logPath, 25))
		}
	}
}

func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// logLines returns the JSON log records of the daemons whose name starts with prefix whose msg is
// msg.
func (w *world) logLines(prefix, msg string) []map[string]any {
	var out []map[string]any
	w.eachLogLine(prefix, func(process string, line []byte) {
		var rec map[string]any
		if json.Unmarshal(line, &rec) == nil && rec["msg"] == msg {
			rec["process"] = process
			out = append(out, rec)
		}
	})
	return out
}

// eachLogLine calls fn with every line of the logs of the processes whose name starts with prefix.
func (w *world) eachLogLine(prefix string, fn func(process string, line []byte)) {
	w.mu.Lock()
	procs := slices.Clone(w.procs)
	w.mu.Unlock()
	for _, d := range procs {
		if !strings.HasPrefix(d.name, prefix) {
			continue
		}
		f, err := os.Open(d.logPath)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			fn(d.name, sc.Bytes())
		}
		_ = f.Close()
	}
}

// ---------------------------------------------------------------------------------------------------
// Audit: every event MinIO emits, recorded by the harness (its own webhook target).

type audit struct {
	addr string
	mu   sync.Mutex
	// created holds, per key, the distinct sequencers of its ObjectCreated events: two sequencers
	// for one key are two writes (a quarantine copied twice).
	created map[string]map[string]bool
}

func startAudit(t *testing.T) *audit {
	t.Helper()
	a := &audit{created: map[string]map[string]bool{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	a.addr = ln.Addr().String()
	srv := &http.Server{Handler: http.HandlerFunc(a.serve), ReadHeaderTimeout: 5 * time.Second}
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close(); <-done })
	return a
}

func (a *audit) serve(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Records []struct {
			EventName string `json:"eventName"`
			S3        struct {
				Object struct {
					Key       string `json:"key"`
					Sequencer string `json:"sequencer"`
				} `json:"object"`
			} `json:"s3"`
		} `json:"Records"`
	}
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
		w.WriteHeader(http.StatusOK) // MinIO's reachability probes carry no body
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, rec := range body.Records {
		if !strings.Contains(rec.EventName, "ObjectCreated") {
			continue
		}
		key, err := url.QueryUnescape(rec.S3.Object.Key)
		if err != nil {
			key = rec.S3.Object.Key
		}
		if a.created[key] == nil {
			a.created[key] = map[string]bool{}
		}
		a.created[key][rec.S3.Object.Sequencer] = true
	}
	w.WriteHeader(http.StatusOK)
}

// seen counts the keys under prefix written at least once.
func (a *audit) seen(prefix string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := 0
	for key := range a.created {
		if strings.HasPrefix(key, prefix) {
			n++
		}
	}
	return n
}

// duplicateWrites counts writes beyond the first of every key under prefix.
func (a *audit) duplicateWrites(prefix string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := 0
	for key, seqs := range a.created {
		if strings.HasPrefix(key, prefix) && len(seqs) > 1 {
			n += len(seqs) - 1
		}
	}
	return n
}

// ---------------------------------------------------------------------------------------------------
// Uploads through the API.

// upload is one intent and what the uploader sends.
type upload struct {
	id, key  string
	bad      bool
	url      string
	headers  map[string]string
	body     []byte
	size     int64 // when body is nil: a testkit.PatternReader of this size
	uploaded bool
}

// uploadSpec describes the uploads to create.
type uploadSpec struct {
	n int
	// badEvery makes every badEvery-th upload a lie (declared image/png, text sent): rejected and
	// quarantined. 0: none.
	badEvery int
	// size, when set, makes each upload a PatternReader body of that size with its SHA-256 declared
	// (the consumer hashes it).
	size int64
}

// intents creates the uploads' intents through the API at api (eight at a time) with URLs valid for
// 30 minutes, so that they can be sent during a fault.
func (w *world) intents(api *daemon, spec uploadSpec) []*upload {
	w.t.Helper()
	ups := make([]*upload, spec.n)
	err := testkit.InParallel(spec.n, 8, func(i int) error {
		u := &upload{bad: spec.badEvery > 0 && i%spec.badEvery == spec.badEvery-1}
		req := map[string]any{"filename": fmt.Sprintf("f%05d.txt", i), "content_type": "text/plain", "expires_in": 1800}
		key := goodKey
		switch {
		case spec.size > 0:
			u.size = spec.size
			req["filename"] = fmt.Sprintf("f%05d.bin", i)
			req["content_type"] = "application/octet-stream"
			req["sha256"] = hex.EncodeToString(testkit.PatternSHA256(spec.size))
		case u.bad:
			key = badKey
			u.body = []byte(fmt.Sprintf("not a picture %d\n", i))
			req["filename"] = fmt.Sprintf("f%05d.png", i)
			req["content_type"] = "image/png"
		default:
			u.body = []byte(fmt.Sprintf("hello from upload %d\n", i))
		}
		req["size"] = int64(len(u.body))
		if u.body == nil {
			req["size"] = spec.size
		}
		var resp struct {
			ID      string            `json:"id"`
			Key     string            `json:"key"`
			URL     string            `json:"url"`
			Headers map[string]string `json:"headers"`
		}
		status, err := postJSON(api.addr, "/v1/uploads", key, req, &resp)
		if err != nil || status != http.StatusCreated {
			return fmt.Errorf("create intent %d: status %d: %v", i, status, err)
		}
		u.id, u.key, u.url, u.headers = resp.ID, resp.Key, resp.URL, resp.Headers
		ups[i] = u
		return nil
	})
	require.NoError(w.t, err)
	return ups
}

// postJSON posts body as apiKey's tenant and decodes the answer into out. A 429 rate-limited (the
// daemon's INTAKE_API_OWNER_RATE, at its default) is retried after its Retry-After, as a client
// honouring it does, at most 30 times.
func postJSON(addr, path, apiKey string, body, out any) (int, error) {
	for range 30 {
		status, wait, err := postJSONOnce(addr, path, apiKey, body, out)
		if status != http.StatusTooManyRequests || wait <= 0 {
			return status, err
		}
		time.Sleep(wait)
	}
	return http.StatusTooManyRequests, fmt.Errorf("POST %s: still rate-limited after 30 tries", path)
}

// postJSONOnce is one try of postJSON; wait is the Retry-After of a 429 rate-limited.
func postJSONOnce(addr, path, apiKey string, body, out any) (status int, wait time.Duration, err error) {
	status, h, err := postJSONRaw(addr, path, apiKey, body, out)
	if status == http.StatusTooManyRequests && strings.Contains(fmt.Sprint(err), "rate-limited") {
		if secs, perr := strconv.Atoi(h.Get("Retry-After")); perr == nil {
			wait = time.Duration(secs) * time.Second
		}
	}
	return status, wait, err
}

func postJSONRaw(addr, path, apiKey string, body, out any) (int, http.Header, error) {
	b, err := json.Marshal(body)
	if err != nil {
		return 0, nil, err
	}
	req, err := http.NewRequest(http.MethodPost, "http://"+addr+path, bytes.NewReader(b))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-API-Key", apiKey)
	client := &http.Client{Timeout: 30 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, resp.Header, err
	}
	if resp.StatusCode >= 300 {
		return resp.StatusCode, resp.Header, fmt.Errorf("%s", bytes.TrimSpace(raw))
	}
	return resp.StatusCode, resp.Header, json.Unmarshal(raw, out)
}

// send PUTs the uploads to their presigned URLs (straight to MinIO, as a browser would), spread
// evenly over the given duration (0: as fast as eight uploaders go). It fails t if a PUT fails.
func (w *world) send(ups []*upload, over time.Duration) {
	w.t.Helper()
	require.NoError(w.t, sendAll(ups, over))
}

// sendAll is send for any goroutine: it returns the first failure.
func sendAll(ups []*upload, over time.Duration) error {
	start := time.Now()
	client := &http.Client{Timeout: 5 * time.Minute}
	return testkit.InParallel(len(ups), 8, func(i int) error {
		if over > 0 {
			time.Sleep(time.Until(start.Add(over * time.Duration(i) / time.Duration(len(ups)))))
		}
		u := ups[i]
		var body io.Reader = bytes.NewReader(u.body)
		length := int64(len(u.body))
		if u.body == nil {
			body, length = &testkit.PatternReader{Size: u.size}, u.size
		}
		req, err := http.NewRequest(http.MethodPut, u.url, body)
		if err != nil {
			return err
		}
		req.ContentLength = length
		for k, v := range u.headers {
			if !strings.EqualFold(k, "Content-Length") {
				req.Header.Set(k, v)
			}
		}
		resp, err := client.Do(req)
		if err != nil {
			return fmt.Errorf("put %s: %w", u.key, err)
		}
		msg, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("put %s: %d %s", u.key, resp.StatusCode, msg)
		}
		u.uploaded = true
		return nil
	})
}

// ---------------------------------------------------------------------------------------------------
// Counting.

// tally is one scenario's row of the summary table.
type tally struct {
	Scenario     string
	Events       int
	Recorded     int
	Lost         int
	Duplicates   int
	DeadLettered int
	Converged    time.Duration // from the end of the fault until every row was right (-1: never)
	Notes        string
}

// pending lists the uploads whose rows are not (yet) what they must end as: a good upload `valid`; a
// lie `deleted` under its key (moved away) and `rejected` (quarantined) under the quarantine prefix.
func (w *world) pending(ups []*upload) []string {
	w.t.Helper()
	rows, err := w.db.Query(context.Background(), `SELECT key, status FROM objects WHERE bucket = $1`, w.bucket)
	require.NoError(w.t, err)
	status := map[string]string{}
	for rows.Next() {
		var k, s string
		require.NoError(w.t, rows.Scan(&k, &s))
		status[k] = s
	}
	require.NoError(w.t, rows.Err())
	var out []string
	for _, u := range ups {
		if !u.uploaded {
			continue
		}
		if u.bad {
			if status[u.key] != "deleted" || status[quarantine+u.key] != "rejected" {
				out = append(out, u.key)
			}
		} else if status[u.key] != "valid" {
			out = append(out, u.key)
		}
	}
	return out
}

// converge waits (at most within) until every sent upload's rows are right, and returns what is
// still missing and how long it took from since.
func (w *world) converge(ups []*upload, since time.Time, within time.Duration) ([]string, time.Duration) {
	w.t.Helper()
	deadline := time.Now().Add(within)
	for {
		missing := w.pending(ups)
		if len(missing) == 0 {
			return nil, time.Since(since)
		}
		if time.Now().After(deadline) {
			return missing, -1
		}
		time.Sleep(time.Second)
	}
}

// deadLettered drains the DLQ and returns how many messages it held (each an S3 event of a real
// upload: any is a good message dead-lettered).
func (w *world) deadLettered() int {
	w.t.Helper()
	n := 0
	for empty := 0; empty < 2 && n < 100_000; {
		out, err := w.sqs.ReceiveMessage(context.Background(), &sqs.ReceiveMessageInput{
			QueueUrl: aws.String(w.q.DLQURL), MaxNumberOfMessages: 10, WaitTimeSeconds: 1, VisibilityTimeout: 300,
		})
		require.NoError(w.t, err)
		if len(out.Messages) == 0 {
			empty++
		}
		n += len(out.Messages)
	}
	return n
}

// Bounds of drain: the queue's visibility timeout (a message received by a consumer killed after its
// commit comes back after it), the consumer's retry chain (a message that then kept failing is
// redriven to the DLQ after 5 receives, about 62 s of backoffs) and a margin.
const (
	visibilityTimeout = 60 * time.Second
	retryChain        = 90 * time.Second
	drainMargin       = 60 * time.Second
)

// drain waits until the main queue holds no message (none visible, none in flight, none delayed) on
// two reads a few seconds apart, and MinIO's webhook queue directories are empty: only then are the
// DLQ and the duplicates final. It fails the test when that takes longer than the visibility
// timeout, the retry chain and a margin.
func (w *world) drain() {
	w.t.Helper()
	within := visibilityTimeout + retryChain + drainMargin
	deadline := time.Now().Add(within)
	quiet := 0
	var last string
	for {
		state := w.queueState()
		if state == "" {
			quiet++
		} else {
			quiet = 0
			last = state
		}
		if quiet >= 2 {
			return
		}
		if time.Now().After(deadline) {
			w.t.Errorf("the queue and MinIO's event queues did not drain within %s after the rows converged "+
				"(visibility %s + retry chain %s + margin %s): %s; dead letters and duplicates counted now may not be final",
				within, visibilityTimeout, retryChain, drainMargin, last)
			return
		}
		time.Sleep(3 * time.Second)
	}
}

// queueState describes what is still on its way ("" when nothing): messages in the main queue, and
// events in MinIO's queue directories.
func (w *world) queueState() string {
	w.t.Helper()
	out, err := w.sqs.GetQueueAttributes(context.Background(), &sqs.GetQueueAttributesInput{QueueUrl: aws.String(w.q.URL),
		AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameApproximateNumberOfMessages,
			sqstypes.QueueAttributeNameApproximateNumberOfMessagesNotVisible, sqstypes.QueueAttributeNameApproximateNumberOfMessagesDelayed}})
	if err != nil {
		return fmt.Sprintf("queue attributes: %v", err)
	}
	var parts []string
	for _, a := range []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameApproximateNumberOfMessages,
		sqstypes.QueueAttributeNameApproximateNumberOfMessagesNotVisible, sqstypes.QueueAttributeNameApproximateNumberOfMessagesDelayed} {
		v, ok := out.Attributes[string(a)]
		if !ok {
			parts = append(parts, string(a)+" not reported")
		} else if v != "0" {
			parts = append(parts, string(a)+"="+v)
		}
	}
	// MinIO keeps each undelivered event as a file under the target's directory in these
	// (minio-webhook-INTAKE/<uuid>.event).
	for _, d := range []string{"events-intake", "events-audit"} {
		n := 0
		err := filepath.WalkDir(filepath.Join(w.dir, d), func(_ string, e os.DirEntry, err error) error {
			if err == nil && !e.IsDir() {
				n++
			}
			return err
		})
		if err != nil {
			parts = append(parts, fmt.Sprintf("%s: %v", d, err))
		} else if n > 0 {
			parts = append(parts, fmt.Sprintf("%d events in MinIO's %s", n, d))
		}
	}
	return strings.Join(parts, ", ")
}

// repeatedNotifications counts the outbox rows that repeat a notification already given: more than
// one row of one event type for one object key of one upload. The design notifies once per verdict
// (dedupe_key object:<object id>:<verdict_seq>, aborted:<upload id>, expired:<upload id>): a good
// upload's key gets one upload.valid; a lie's key one upload.rejected then one upload.deleted (the
// move), and its quarantine copy, a key of its own, one upload.rejected. A re-inspection that changes
// a verdict notifies again by design, but with another event type; none of the scenarios writes a key
// twice, so the same type twice for one key is a redelivery or a replay given a new verdict_seq
// instead of being absorbed: the repeat an exactly-once verdict must not produce.
func (w *world) repeatedNotifications() int {
	w.t.Helper()
	var n int
	require.NoError(w.t, w.db.QueryRow(context.Background(), `SELECT coalesce(sum(c - 1), 0)::int FROM (
		SELECT count(*) AS c FROM outbox WHERE bucket = $1 GROUP BY upload_id, key, event_type HAVING count(*) > 1) d`,
		w.bucket).Scan(&n))
	return n
}

// finish counts a scenario that sent ups: it waits for the rows to converge (at most within after
// healed), counts duplicates and dead letters, adds the row to the table and asserts that nothing was
// lost, duplicated or dead-lettered.
func (w *world) finish(name string, ups []*upload, healed time.Time, within time.Duration, notes string) tally {
	w.t.Helper()
	missing, took := w.converge(ups, healed, within)
	// Rows that look right are not the end: a message whose consumer was killed between its commit
	// and its delete comes back after the visibility timeout, and MinIO may still hold events in its
	// queue directories (the audit target's too: once they are empty, the audit saw every write).
	// Dead letters and duplicates are counted once all of that has settled. (Rows still missing
	// fail the scenario anyway: it does not wait more for them.)
	if len(missing) == 0 {
		w.drain()
	}
	sent, quarantined := 0, 0
	for _, u := range ups {
		if u.uploaded {
			sent++
		}
		if u.uploaded && u.bad && !slices.Contains(missing, u.key) {
			quarantined++
		}
	}
	// The duplicate count rests on the audit target having seen every quarantine copy. MinIO
	// delivers its events to it asynchronously, from a queue it retries; under the load of a whole
	// `make test` (every package with -race on two cores) one was not seen within 30 s, so the
	// wait is bounded at 90 s.
	for wait := time.Now().Add(90 * time.Second); w.audit.seen(quarantine) < quarantined && time.Now().Before(wait); {
		time.Sleep(200 * time.Millisecond)
	}
	require.GreaterOrEqual(w.t, w.audit.seen(quarantine), quarantined, "MinIO's audit webhook saw every quarantine copy")
	// Inspections that changed nothing: redeliveries (a duplicate or older event) the pipeline
	// absorbed, and S3's events for quarantine copies the move had already recorded (the pipeline
	// records its own effects before the ack; their events come after), counted apart.
	absorbed, copies := 0, 0
	for _, r := range w.logLines("", "object inspected") {
		switch {
		case r["applied"] != false:
		case r["event"] == "ObjectCreated:Copy":
			copies++
		default:
			absorbed++
		}
	}
	notified := w.repeatedNotifications()
	tl := tally{
		Scenario: name, Events: sent, Recorded: sent - len(missing), Lost: len(missing),
		Duplicates: w.audit.duplicateWrites(quarantine) + notified, DeadLettered: w.deadLettered(), Converged: took,
		Notes: fmt.Sprintf("%s; %d redelivered events absorbed; %d copy events found their copy already recorded; %d notifications repeated",
			notes, absorbed, copies, notified),
	}
	w.report(tl)
	if len(missing) > 0 {
		w.t.Errorf("%d uploads not recorded %s after the fault, e.g. %s", len(missing), within, missing[:min(5, len(missing))])
		w.explain(missing)
	}
	return tl
}

// explain logs what became of the first three missing keys (trace) and where the queue stands.
func (w *world) explain(missing []string) {
	w.t.Helper()
	for _, key := range missing[:min(3, len(missing))] {
		w.t.Logf("--- what became of %s:\n%s", key, w.trace(key))
	}
	for _, q := range []string{w.q.URL, w.q.DLQURL} {
		attrs, err := w.sqs.GetQueueAttributes(context.Background(), &sqs.GetQueueAttributesInput{QueueUrl: aws.String(q),
			AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameAll}})
		if err != nil {
			w.t.Logf("--- queue %s: %v", q, err)
			continue
		}
		w.t.Logf("--- queue %s: %v", q, attrs.Attributes)
	}
}

// trace gathers what the harness knows of one upload's key and its quarantine copy, for a lost
// upload's failure message: the writes MinIO's audit webhook saw, what S3 holds, the rows, and every
// log line of every process that names either key. The 25 last lines stopAll prints rarely reach
// back to a loss, and the processes' logs are gone after the test unless INTAKE_FAULTS_LOGS keeps
// them.
func (w *world) trace(key string) string {
	var b strings.Builder
	keys := []string{key, quarantine + key}
	w.audit.mu.Lock()
	for _, k := range keys {
		fmt.Fprintf(&b, "audit: %s written %d time(s)\n", k, len(w.audit.created[k]))
	}
	w.audit.mu.Unlock()
	for _, k := range keys {
		head, err := w.s3.HeadObject(context.Background(), &s3.HeadObjectInput{Bucket: aws.String(w.bucket), Key: aws.String(k)})
		if err != nil {
			fmt.Fprintf(&b, "s3: %s: %v\n", k, err)
		} else {
			fmt.Fprintf(&b, "s3: %s holds ETag %s, %d bytes, last modified %s\n", k, aws.ToString(head.ETag),
				aws.ToInt64(head.ContentLength), aws.ToTime(head.LastModified).Format(time.RFC3339Nano))
		}
	}
	for _, k := range keys {
		var status, reason string
		err := w.db.QueryRow(context.Background(), `SELECT status, coalesce(reason, '') FROM objects WHERE bucket = $1 AND key = $2`,
			w.bucket, k).Scan(&status, &reason)
		fmt.Fprintf(&b, "row: %s status %q reason %q (err %v)\n", k, status, reason, err)
	}
	w.eachLogLine("", func(process string, line []byte) {
		if bytes.Contains(line, []byte(key)) { // the quarantine copy's key contains it too
			fmt.Fprintf(&b, "%s: %s\n", process, line)
		}
	})
	return b.String()
}

// report adds tl to the table and checks the three zeros.
func (w *world) report(tl tally) {
	w.t.Helper()
	table.add(tl)
	w.t.Logf("%s: events %d, recorded %d, lost %d, duplicates %d, dead-lettered %d, converged in %s",
		tl.Scenario, tl.Events, tl.Recorded, tl.Lost, tl.Duplicates, tl.DeadLettered, fmtDur(tl.Converged))
	if tl.Duplicates != 0 {
		w.t.Errorf("%d duplicate effects", tl.Duplicates)
	}
	if tl.DeadLettered != 0 {
		w.t.Errorf("%d good messages dead-lettered", tl.DeadLettered)
	}
	if tl.Lost != 0 {
		w.t.Errorf("%d lost", tl.Lost)
	}
}

func fmtDur(d time.Duration) string {
	if d < 0 {
		return "never"
	}
	return d.Round(100 * time.Millisecond).String()
}

// results is the summary table of the run.
type results struct {
	mu     sync.Mutex
	rows   []tally
	failed []string // the scenarios (tests) that failed
	status int      // the run's exit status, when not 0
}

// fail records a failed scenario.
func (r *results) fail(name string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.failed = append(r.failed, name)
}

// exited records the run's exit status.
func (r *results) exited(code int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.status = code
}

func (r *results) add(t tally) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.rows = append(r.rows, t)
}

func (r *results) markdown() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	rows := slices.Clone(r.rows)
	slices.SortFunc(rows, func(a, b tally) int { return strings.Compare(a.Scenario, b.Scenario) })
	var b strings.Builder
	// A failed run's table is no result: it says so before anything else.
	switch failed := slices.Sorted(slices.Values(r.failed)); {
	case len(failed) > 0:
		fmt.Fprintf(&b, "FAILED: %s\n\n", strings.Join(failed, ", "))
	case r.status != 0:
		fmt.Fprintf(&b, "FAILED: the run exited with status %d\n\n", r.status)
	}
	form := "shortened"
	if full {
		form = "full-length"
	}
	fmt.Fprintf(&b, "Fault suite, %s form, %s\n\n", form, time.Now().UTC().Format(time.RFC3339))
	b.WriteString("| scenario | events | recorded | lost | duplicates | dead-lettered | converged after the fault | notes |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|\n")
	for _, t := range rows {
		fmt.Fprintf(&b, "| %s | %d | %d | %d | %d | %d | %s | %s |\n",
			t.Scenario, t.Events, t.Recorded, t.Lost, t.Duplicates, t.DeadLettered, fmtDur(t.Converged), t.Notes)
	}
	return b.String()
}

func (r *results) print(w io.Writer) {
	if len(r.rows) > 0 {
		_, _ = fmt.Fprintf(w, "\n%s\n", r.markdown())
	}
}

// historyMarker starts the part of the report file that a run keeps (earlier runs worth keeping,
// written by hand).
const historyMarker = "<!-- history: kept by every run -->"

// write replaces the report file's latest table, keeping what follows historyMarker.
func (r *results) write(path string) error {
	var history string
	if old, err := os.ReadFile(path); err == nil {
		if i := strings.Index(string(old), historyMarker); i >= 0 {
			history = "\n" + string(old[i:])
		}
	}
	head := "# Fault suite results\n\nWritten by `make faults` (internal/faults): the latest run first.\n\n"
	return os.WriteFile(path, []byte(head+r.markdown()+history), 0o644)
}

// ---------------------------------------------------------------------------------------------------
// Faults that are not a proxy toxic.

// readOnly makes the scenario's database read-only (on) or writable (off) as a failover does: the
// setting applies to new sessions, and every session of the daemons is terminated so that they
// reconnect to the "new primary".
func (w *world) readOnly(on bool) {
	w.t.Helper()
	ctx := context.Background()
	stmt := "ALTER DATABASE " + w.dbName + " RESET default_transaction_read_only"
	if on {
		stmt = "ALTER DATABASE " + w.dbName + " SET default_transaction_read_only = on"
	}
	_, err := w.admin.Exec(ctx, stmt)
	require.NoError(w.t, err)
	_, err = w.admin.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
		WHERE datname = $1 AND application_name <> 'faults-harness'`, w.dbName)
	require.NoError(w.t, err)
}

// sleepUntil sleeps until t (bounded by the test's own deadline through go test -timeout).
func sleepUntil(t time.Time) { time.Sleep(time.Until(t)) }

// pick returns a random element.
func pick[T any](xs []T) T { return xs[rand.IntN(len(xs))] }
