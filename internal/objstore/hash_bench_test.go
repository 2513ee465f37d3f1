package objstore_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"runtime/pprof"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/stretchr/testify/require"

	"github.com/intakehq/intake/internal/objstore"
	"github.com/intakehq/intake/internal/testkit"
	"github.com/intakehq/intake/pipeline"
)

// hashChildEnv, when set (to a JSON hashChildSpec), makes the test binary a child that hashes one
// object with Objects.Hash and prints a hashChildResult (see TestMain): BenchmarkHashGiB measures
// the hash path's memory in a process of its own.
const hashChildEnv = "INTAKE_HASH_CHILD"

// hashProfileEnv names a file: the hash child writes its CPU profile there.
const hashProfileEnv = "INTAKE_HASH_CPUPROFILE"

type hashChildSpec struct {
	Bucket string `json:"bucket"`
	Key    string `json:"key"`
	ETag   string `json:"etag"`
}

type hashChildResult struct {
	SHA256  string        `json:"sha256"`
	Bytes   int64         `json:"bytes"`
	Elapsed time.Duration `json:"elapsed"`
}

// runHashChild is the child's main: it hashes the object of the spec in hashChildEnv.
func runHashChild() int {
	var spec hashChildSpec
	if err := json.Unmarshal([]byte(os.Getenv(hashChildEnv)), &spec); err != nil {
		fmt.Fprintln(os.Stderr, "hash child:", err)
		return 2
	}
	if path := os.Getenv(hashProfileEnv); path != "" {
		f, err := os.Create(path)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "hash child: profile:", err)
			return 2
		}
		defer func() { pprof.StopCPUProfile(); _ = f.Close() }()
	}
	ctx, cancel := context.WithTimeout(context.Background(), hashRunTimeout)
	defer cancel()
	objs := objstore.NewObjects(testkit.S3())
	start := time.Now()
	sum, n, err := objs.Hash(ctx, pipeline.ObjectRef{Bucket: spec.Bucket, Key: spec.Key, ETag: spec.ETag})
	if err != nil {
		fmt.Fprintln(os.Stderr, "hash child:", err)
		return 1
	}
	res := hashChildResult{SHA256: hex.EncodeToString(sum), Bytes: n, Elapsed: time.Since(start)}
	if err := json.NewEncoder(os.Stdout).Encode(res); err != nil {
		return 1
	}
	return 0
}

const (
	// hashBenchSize is the object BenchmarkHashGiB hashes: a declared-sha256 upload of 1 GiB.
	hashBenchSize = 1 << 30
	// hashBenchRounds is how many alternating pairs of runs (intake, sha256sum) it times.
	hashBenchRounds = 3
	// hashRunTimeout bounds each run (and the upload).
	hashRunTimeout = 3 * time.Minute
)

// hashRun is one timed hash of the object.
type hashRun struct {
	sum    string
	mbps   float64 // MB/s (10^6 bytes) over the run's wall time, process start to exit
	maxRSS int64   // bytes (intake's runs)
	cpu    time.Duration
}

// BenchmarkHashGiB measures the consumer's hash path on a 1 GiB object in MinIO against
// sha256sum on the same bytes: it uploads the object (streamed, untimed), then alternates (a) a
// child process (this binary) hashing it with Objects.Hash and (b) curl streaming it from a
// presigned GET into sha256sum, hashBenchRounds times each. It reports the medians of both
// throughputs (wall time from process start to exit, MB/s), their ratio, and the child's maximum
// RSS. The object and its bucket are deleted at the end.
func BenchmarkHashGiB(b *testing.B) {
	if testing.Short() {
		b.Skip("needs MinIO, curl and sha256sum")
	}
	curl, err := exec.LookPath("curl")
	require.NoError(b, err, "benchmark needs curl")
	sha256sum, err := exec.LookPath("sha256sum")
	require.NoError(b, err, "benchmark needs sha256sum")

	ctx, cancel := context.WithTimeout(context.Background(), hashRunTimeout)
	defer cancel()
	client := testkit.S3()
	bucket := testkit.Bucket(b, client)
	const key = "hash-gib"
	presign := s3.NewPresignClient(client)
	etag := uploadPattern(ctx, b, presign, bucket, key, hashBenchSize)
	b.Cleanup(func() {
		_, err := client.DeleteObject(context.Background(), &s3.DeleteObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
		if err != nil {
			b.Errorf("delete %s/%s: %v", bucket, key, err)
		}
	})
	get, err := presign.PresignGetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)},
		s3.WithPresignExpires(time.Hour))
	require.NoError(b, err)
	spec, err := json.Marshal(hashChildSpec{Bucket: bucket, Key: key, ETag: etag})
	require.NoError(b, err)

	var intake, ref []hashRun
	for range hashBenchRounds {
		intake = append(intake, hashIntake(b, string(spec)))
		ref = append(ref, hashSHA256Sum(b, curl, sha256sum, get.URL))
	}
	for i := range intake {
		require.Equal(b, ref[i].sum, intake[i].sum, "intake and sha256sum disagree on the object's digest")
		b.Logf("round %d: intake %.0f MB/s (max RSS %.1f MiB, CPU %s), curl | sha256sum %.0f MB/s",
			i+1, intake[i].mbps, float64(intake[i].maxRSS)/(1<<20), intake[i].cpu.Round(time.Millisecond), ref[i].mbps)
	}
	intakeMBps := median(intake, func(r hashRun) float64 { return r.mbps })
	refMBps := median(ref, func(r hashRun) float64 { return r.mbps })
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(intakeMBps, "intake-MB/s")
	b.ReportMetric(refMBps, "sha256sum-MB/s")
	b.ReportMetric(intakeMBps/refMBps, "intake/sha256sum")
	b.ReportMetric(median(intake, func(r hashRun) float64 { return float64(r.maxRSS) / (1 << 20) }), "intake-maxrss-MiB")
	b.ReportMetric(median(intake, func(r hashRun) float64 { return r.cpu.Seconds() }), "intake-cpu-s")
}

// uploadPattern streams size pattern bytes to bucket/key through a presigned PUT that declares
// their SHA-256 (nothing held in memory) and returns the object's ETag.
func uploadPattern(ctx context.Context, b *testing.B, presign *s3.PresignClient, bucket, key string, size int64) string {
	b.Helper()
	// Signed with the declared digest, as intake presigns a declared-sha256 upload: S3 checks it and
	// keeps it as the object's checksum.
	sum := base64.StdEncoding.EncodeToString(testkit.PatternSHA256(size))
	put, err := presign.PresignPutObject(ctx, &s3.PutObjectInput{
		Bucket: aws.String(bucket), Key: aws.String(key), ContentLength: aws.Int64(size), ChecksumSHA256: aws.String(sum),
	})
	require.NoError(b, err)
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, put.URL, &testkit.PatternReader{Size: size})
	require.NoError(b, err)
	req.ContentLength = size
	for k, vs := range put.SignedHeader {
		if !strings.EqualFold(k, "Host") && !strings.EqualFold(k, "Content-Length") {
			req.Header[k] = vs
		}
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(b, err)
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	require.Equal(b, http.StatusOK, resp.StatusCode, "upload: %s", body)
	return strings.Trim(resp.Header.Get("ETag"), `"`)
}

// hashIntake runs the hash child once.
func hashIntake(b *testing.B, spec string) hashRun {
	b.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$", "-test.bench=^$")
	cmd.Env = append(os.Environ(), hashChildEnv+"="+spec)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	elapsed := time.Since(start)
	require.NoError(b, err, "hash child: %s", stderr.String())
	var res hashChildResult
	require.NoError(b, json.Unmarshal(stdout.Bytes(), &res), stdout.String())
	require.Equal(b, int64(hashBenchSize), res.Bytes)
	ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	return hashRun{
		sum: res.SHA256, mbps: float64(res.Bytes) / elapsed.Seconds() / 1e6, maxRSS: ru.Maxrss << 10,
		cpu: time.Duration(ru.Utime.Nano() + ru.Stime.Nano()),
	}
}

// hashSHA256Sum streams the object from its presigned GET URL through curl into sha256sum.
func hashSHA256Sum(b *testing.B, curl, sha256sum, url string) hashRun {
	b.Helper()
	get := exec.Command(curl, "-sS", "--fail", url)
	sum := exec.Command(sha256sum)
	r, w, err := os.Pipe()
	require.NoError(b, err)
	get.Stdout, sum.Stdin = w, r
	var out, getErr, sumErr bytes.Buffer
	sum.Stdout, sum.Stderr, get.Stderr = &out, &sumErr, &getErr
	start := time.Now()
	require.NoError(b, get.Start())
	require.NoError(b, sum.Start())
	// The children hold the pipe's ends now.
	_ = w.Close()
	_ = r.Close()
	errGet := get.Wait()
	errSum := sum.Wait()
	elapsed := time.Since(start)
	require.NoError(b, errGet, "curl: %s", getErr.String())
	require.NoError(b, errSum, "sha256sum: %s", sumErr.String())
	digest, _, _ := strings.Cut(out.String(), " ")
	return hashRun{sum: digest, mbps: hashBenchSize / elapsed.Seconds() / 1e6}
}

func median(runs []hashRun, f func(hashRun) float64) float64 {
	v := make([]float64, len(runs))
	for i, r := range runs {
		v[i] = f(r)
	}
	slices.Sort(v)
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}
