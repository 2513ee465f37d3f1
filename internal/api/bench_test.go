package api

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/intakehq/intake/internal/gctune"
	mpart "github.com/intakehq/intake/internal/multipart"
	"github.com/intakehq/intake/internal/objstore"
	"github.com/intakehq/intake/internal/ratelimit"
	"github.com/intakehq/intake/internal/store"
	"github.com/intakehq/intake/internal/store/dbq"
	"github.com/intakehq/intake/internal/telemetry"
	"github.com/intakehq/intake/internal/testkit"
)

// Presign benchmarks. `make bench` runs them:
//
//   - BenchmarkSignerPresignPut / BenchmarkSDKPresignPut (internal/sigv4): one presign, lean vs SDK.
//   - BenchmarkRoute: POST /v1/uploads through the handler in-process (auth by API key, JSON, policy,
//     key, presign, JSON out), without and with the PostgreSQL intent row (group-committed by a
//     store.IntentWriter, as in the daemon); reports CPU µs per request.
//   - BenchmarkLoad: the same route over loopback HTTP at 64 connections for 10 s, against intake
//     (without and with the intent row) and a reference Node server (Hono + AWS SDK v3), reporting
//     requests/s, server CPU µs per request and intake/reference ratios.

const benchBody = `{"filename":"photo 1.jpg","content_type":"image/jpeg","size":1048576}`

// discardIntents drops intent rows: the "pure presign" variant of the route, to separate the cost of
// the PostgreSQL write from the rest. Production always writes the row.
type discardIntents struct{ Queries }

func (discardIntents) APICreateUpload(context.Context, dbq.APICreateUploadParams) error { return nil }

// benchServer builds a Server on the local stack; withDB selects real intent rows, recorded as the
// daemon records them (internal/cli/role_api.go): through a store.IntentWriter (group commit). The
// registry holds the Server's metrics and the IntentWriter's.
func benchServer(b *testing.B, withDB bool) (*Server, *prometheus.Registry) {
	b.Helper()
	gctune.Apply(os.Getenv) // the GC target the daemon runs with (internal/cli's run)
	st := testkit.DB(b)
	reg := prometheus.NewRegistry()
	var q Queries = discardIntents{Queries: st.Q}
	if withDB {
		w := store.NewIntentWriter(st.Pool, store.IntentWriterOptions{})
		b.Cleanup(w.Close) // runs before the pool closes
		reg.MustRegister(w)
		q = store.IntentQueries{Queries: st.Q, Intents: w}
	}
	s3c := testkit.S3()
	mpMetrics, err := mpart.NewMetrics(reg)
	require.NoError(b, err)
	mp, err := mpart.New(mpart.Config{S3: s3c, Store: st.Multipart(), Metrics: mpMetrics, CallTimeout: 10 * time.Second})
	require.NoError(b, err)
	srv, err := New(context.Background(), Options{
		API: testAPIConfig(), Bucket: testkit.Bucket(b, s3c), Policy: testPolicy(), Queries: q, S3: s3c, Multipart: mp,
		Presign: objstore.NewPresignClient(testkit.AWSConfig(), testkit.AWS()),
		Log:     telemetry.NewLogger(io.Discard, "json", "info"), Registerer: reg,
		// The daemon's per-owner limiter (on by default), at a rate the benchmark never reaches:
		// its cost is in the figures, its refusals are not.
		Limiter: ratelimit.New(1e6, 1e7),
	})
	require.NoError(b, err)
	return srv, reg
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func BenchmarkRoute(b *testing.B) {
	if testing.Short() {
		b.Skip("needs the local stack")
	}
	for _, v := range []struct {
		name   string
		withDB bool
	}{{"presign-only", false}, {"with-intent-row", true}} {
		b.Run(v.name, func(b *testing.B) {
			srv, reg := benchServer(b, v.withDB)
			h := srv.Handler()
			b.ReportAllocs()
			b.SetParallelism(16)
			cpu0 := cpuTime()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					req := httptest.NewRequest(http.MethodPost, "/v1/uploads", strings.NewReader(benchBody))
					req.Header.Set("X-API-Key", aliceKey)
					req.Header.Set("Content-Type", "application/json")
					rec := httptest.NewRecorder()
					h.ServeHTTP(rec, req)
					if rec.Code != http.StatusCreated {
						b.Fatalf("status %d: %s", rec.Code, rec.Body)
					}
				}
			})
			b.StopTimer()
			b.ReportMetric(float64(cpuTime()-cpu0)/float64(time.Microsecond)/float64(b.N), "cpu-µs/op")
			if v.withDB { // the group commit's batches: requests per insert
				b.ReportMetric(float64(b.N)/max(testkit.Metric(b, reg, "intake_intent_batch_rows"), 1), "rows/batch")
			}
		})
	}
}

// loadDuration bounds each load run.
const loadDuration = 10 * time.Second

func BenchmarkLoad(b *testing.B) {
	if testing.Short() {
		b.Skip("needs the local stack and node")
	}
	refDir := filepath.Join("testdata", "refserver")
	node := requireBenchTools(b, refDir)
	// Each run is bounded in time, not by b.N; one pass takes longer than -benchtime, so it runs once.
	results := map[string]float64{}
	cpuPerReq := map[string]float64{}

	for _, v := range []struct {
		name   string
		withDB bool
		native bool // the route's core served by fasthttp (nativecore_test.go), not the daemon's server
	}{
		{"intake-presign-only", false, false}, {"intake-with-intent-row", true, false},
		{"native-core-presign-only", false, true}, {"native-core-with-intent-row", true, true},
	} {
		srv, reg := benchServer(b, v.withDB)
		var addr string
		var stop func()
		if v.native {
			addr, stop = startNativeCore(b, srv)
		} else {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			require.NoError(b, err)
			// The daemon's public listener (internal/cli), its error log discarded.
			hs := NewHTTPServer(srv.Handler(), WriteTimeout, log.New(io.Discard, "", 0))
			go func() { _ = hs.Serve(ln) }()
			stop = func() { _ = hs.Close() }
			addr = ln.Addr().String()
		}
		checkCreated(b, addr)
		stopProfile := startLoadProfile(b, v.name)
		cpu0 := cpuTime()
		res, err := runLoad(loadSpec{Addr: addr, Conns: 64, Duration: loadDuration, Path: "/v1/uploads", APIKey: aliceKey, Body: benchBody})
		cpu := cpuTime() - cpu0
		stopProfile()
		stop()
		require.NoError(b, err)
		require.Zero(b, res.Errors+res.Non2xx, "%s: %+v", v.name, res)
		rps := float64(res.Requests) / res.Elapsed.Seconds()
		results[v.name] = rps
		cpuPerReq[v.name] = float64(cpu) / float64(time.Microsecond) / float64(res.Requests)
		b.Logf("%s: %.0f req/s, %.1f µs server CPU/req, mean latency %s", v.name, rps, cpuPerReq[v.name], res.MeanLat)
		if v.withDB { // the group commit's batches: requests (all recorded) per insert
			batches := testkit.Metric(b, reg, "intake_intent_batch_rows")
			b.Logf("%s: %.0f intent batches, mean %.1f rows", v.name, batches, float64(res.Requests)/max(batches, 1))
		}
	}

	// The reference server, with its URLs checked against MinIO first (fair comparison: it signs the
	// same headers and its URLs work).
	s3c := testkit.S3()
	bucket := testkit.Bucket(b, s3c)
	ref, port := startReference(b, node, refDir, bucket)
	addr := "127.0.0.1:" + strconv.Itoa(port)
	checkReferenceURL(b, addr)
	ticks0 := procCPU(b, ref.Process.Pid)
	res, err := runLoad(loadSpec{Addr: addr, Conns: 64, Duration: loadDuration, Path: "/v1/uploads", APIKey: aliceKey, Body: benchBody})
	require.NoError(b, err)
	refCPU := procCPU(b, ref.Process.Pid) - ticks0
	require.Zero(b, res.Errors+res.Non2xx, "reference: %+v", res)
	refRPS := float64(res.Requests) / res.Elapsed.Seconds()
	refCPUPerReq := float64(refCPU) / float64(time.Microsecond) / float64(res.Requests)
	b.Logf("reference node (hono + aws-sdk v3): %.0f req/s, %.1f µs server CPU/req, mean latency %s", refRPS, refCPUPerReq, res.MeanLat)

	b.ReportMetric(0, "ns/op")
	b.ReportMetric(refRPS, "ref-req/s")
	b.ReportMetric(refCPUPerReq, "ref-cpu-µs/req")
	b.ReportMetric(results["intake-presign-only"], "presign-req/s")
	b.ReportMetric(cpuPerReq["intake-presign-only"], "presign-cpu-µs/req")
	b.ReportMetric(results["intake-presign-only"]/refRPS, "presign-x-ref")
	b.ReportMetric(results["intake-with-intent-row"], "route-req/s")
	b.ReportMetric(cpuPerReq["intake-with-intent-row"], "route-cpu-µs/req")
	b.ReportMetric(results["intake-with-intent-row"]/refRPS, "route-x-ref")
	// CPU ratios: how many times less CPU per request intake spends than the reference.
	b.ReportMetric(refCPUPerReq/cpuPerReq["intake-presign-only"], "presign-cpu-x-less")
	b.ReportMetric(refCPUPerReq/cpuPerReq["intake-with-intent-row"], "route-cpu-x-less")
	// What a server swap would give: the same core with the row, served by fasthttp.
	b.ReportMetric(cpuPerReq["native-core-with-intent-row"], "native-route-cpu-µs/req")
	b.ReportMetric(refCPUPerReq/cpuPerReq["native-core-with-intent-row"], "native-route-cpu-x-less")
	b.ReportMetric(cpuPerReq["native-core-presign-only"], "native-presign-cpu-µs/req")
}

// checkCreated asks the server at addr for one upload as the load generator will, and checks the
// answer: 201, JSON with an id and a presigned PUT URL.
func checkCreated(b *testing.B, addr string) {
	b.Helper()
	req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/v1/uploads", strings.NewReader(benchBody))
	req.Header.Set("X-API-Key", aliceKey)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(b, err)
	defer resp.Body.Close()
	require.Equal(b, http.StatusCreated, resp.StatusCode)
	require.Equal(b, "application/json", resp.Header.Get("Content-Type"))
	var out struct{ ID, Method, URL string }
	require.NoError(b, json.NewDecoder(resp.Body).Decode(&out))
	require.NotEmpty(b, out.ID)
	require.Equal(b, "put", out.Method)
	require.Contains(b, out.URL, "X-Amz-Signature=")
}

// loadProfileEnv names a directory: BenchmarkLoad then writes a CPU profile of intake's process
// during each of its own load runs there (<variant>.pprof), without the reference's run.
const loadProfileEnv = "INTAKE_LOAD_CPUPROFILE"

// startLoadProfile starts the CPU profile of one load run when loadProfileEnv is set, and returns
// the function that stops it.
func startLoadProfile(b *testing.B, name string) func() {
	b.Helper()
	dir := os.Getenv(loadProfileEnv)
	if dir == "" {
		return func() {}
	}
	f, err := os.Create(filepath.Join(dir, name+".pprof"))
	require.NoError(b, err)
	require.NoError(b, pprof.StartCPUProfile(f))
	return func() {
		pprof.StopCPUProfile()
		require.NoError(b, f.Close())
	}
}

// requireBenchTools fails (does not skip) when node or the reference server's packages are missing.
func requireBenchTools(b *testing.B, dir string) string {
	b.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		b.Fatalf("benchmark: node not found: %v; run deploy/local/browser.sh (make bench does)", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules")); err != nil {
		b.Fatalf("benchmark: %s/node_modules missing; run deploy/local/browser.sh (make bench does)", dir)
	}
	return node
}

// startReference starts the Node reference server and returns it and its port; it is killed when
// the benchmark ends.
func startReference(b *testing.B, node, dir, bucket string) (*exec.Cmd, int) {
	b.Helper()
	cmd := exec.Command(node, "server.mjs")
	cmd.Dir = dir
	aws := testkit.AWS()
	cmd.Env = append(os.Environ(), "NODE_NO_WARNINGS=1", "NODE_ENV=production",
		"S3_ENDPOINT="+aws.S3Endpoint, "BUCKET="+bucket, "API_KEY="+aliceKey, "OWNER=alice",
		"MAX_SIZE="+strconv.Itoa(maxPolicy),
		"AWS_ACCESS_KEY_ID="+testkit.DefaultAccessKey, "AWS_SECRET_ACCESS_KEY="+testkit.DefaultSecretKey)
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	require.NoError(b, err)
	require.NoError(b, cmd.Start())
	b.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	line, err := bufio.NewReader(stdout).ReadString('\n')
	require.NoError(b, err, "reference server did not start")
	var info struct{ Port int }
	require.NoError(b, json.Unmarshal([]byte(line), &info), line)
	return cmd, info.Port
}

// checkReferenceURL asks the reference server for one URL and uploads through it.
func checkReferenceURL(b *testing.B, addr string) {
	b.Helper()
	req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/v1/uploads", strings.NewReader(`{"filename":"check.txt","content_type":"text/plain","size":5}`))
	req.Header.Set("X-API-Key", aliceKey)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(b, err)
	var out struct{ URL string }
	require.NoError(b, json.NewDecoder(resp.Body).Decode(&out))
	_ = resp.Body.Close()
	put, _ := http.NewRequest(http.MethodPut, out.URL, strings.NewReader("hello"))
	put.Header.Set("Content-Type", "text/plain")
	r, err := http.DefaultClient.Do(put)
	require.NoError(b, err)
	_ = r.Body.Close()
	require.Equal(b, http.StatusOK, r.StatusCode, "reference URL refused by MinIO")
	put, _ = http.NewRequest(http.MethodPut, out.URL, strings.NewReader("hello!"))
	put.Header.Set("Content-Type", "text/plain")
	r, err = http.DefaultClient.Do(put)
	require.NoError(b, err)
	_ = r.Body.Close()
	require.Equal(b, http.StatusForbidden, r.StatusCode, "reference URL must sign Content-Length too")
}

// procCPU returns a process's user+system CPU time from /proc.
func procCPU(b *testing.B, pid int) time.Duration {
	b.Helper()
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	require.NoError(b, err)
	// Fields after the command name (which is in parentheses): state is field 3; utime 14, stime 15.
	rest := string(raw[strings.LastIndexByte(string(raw), ')')+2:])
	f := strings.Fields(rest)
	utime, err := strconv.ParseInt(f[11], 10, 64)
	require.NoError(b, err)
	stime, err := strconv.ParseInt(f[12], 10, 64)
	require.NoError(b, err)
	const clkTck = 100 // sysconf(_SC_CLK_TCK) on Linux
	return time.Duration(utime+stime) * time.Second / clkTck
}
