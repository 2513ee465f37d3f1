package consumer_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/intakehq/intake/pipeline"
)

// stageTimer accumulates the wall time of the Processor's calls to S3 and PostgreSQL, so the
// benchmark can say where the time goes.
type stageTimer struct {
	mu    sync.Mutex
	total map[string]time.Duration
	count map[string]int
}

func newStageTimer() *stageTimer {
	return &stageTimer{total: map[string]time.Duration{}, count: map[string]int{}}
}

// stageTimerIfAsked returns a stageTimer when $INTAKE_BENCH_STAGES is set, else nil: the timing
// wrappers run in the measured process and the daemon has no such work, so the CPU figures are
// taken without them.
func stageTimerIfAsked() *stageTimer {
	if os.Getenv("INTAKE_BENCH_STAGES") == "" {
		return nil
	}
	return newStageTimer()
}

func (s *stageTimer) since(stage string, began time.Time) {
	d := time.Since(began)
	s.mu.Lock()
	s.total[stage] += d
	s.count[stage]++
	s.mu.Unlock()
}

// String lists the mean latency and call count of each stage ("" when s is nil).
func (s *stageTimer) String() string {
	if s == nil {
		return ""
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	names := make([]string, 0, len(s.total))
	for n := range s.total {
		names = append(names, n)
	}
	sort.Strings(names)
	var b strings.Builder
	for _, n := range names {
		fmt.Fprintf(&b, "%s: %d calls, mean %s; ", n, s.count[n], (s.total[n] / time.Duration(s.count[n])).Round(10*time.Microsecond))
	}
	return b.String()
}

type timedObjects struct {
	pipeline.ObjectStore
	t *stageTimer
}

func (o timedObjects) Head(ctx context.Context, bucket, key string) (pipeline.ObjectInfo, error) {
	defer o.t.since("s3.head", time.Now())
	return o.ObjectStore.Head(ctx, bucket, key)
}

func (o timedObjects) ReadPrefix(ctx context.Context, obj pipeline.ObjectRef, n int) ([]byte, error) {
	defer o.t.since("s3.read_prefix", time.Now())
	return o.ObjectStore.ReadPrefix(ctx, obj, n)
}

// Peek passes the single-request inspection through when the wrapped store has it, as the daemon's
// objstore.Objects does.
func (o timedObjects) Peek(ctx context.Context, bucket, key string, n int) (pipeline.ObjectInfo, []byte, error) {
	defer o.t.since("s3.peek", time.Now())
	if pk, ok := o.ObjectStore.(pipeline.Peeker); ok {
		return pk.Peek(ctx, bucket, key, n)
	}
	info, err := o.ObjectStore.Head(ctx, bucket, key)
	if err != nil || info.Size == 0 {
		return info, nil, err
	}
	prefix, err := o.ObjectStore.ReadPrefix(ctx, pipeline.ObjectRef{Bucket: bucket, Key: key, ETag: info.ETag}, n)
	return info, prefix, err
}

type timedRecords struct {
	pipeline.RecordStore
	t *stageTimer
}

func (r timedRecords) Lookup(ctx context.Context, bucket, key string) (pipeline.Lookup, error) {
	defer r.t.since("pg.intent", time.Now())
	return r.RecordStore.Lookup(ctx, bucket, key)
}

func (r timedRecords) Record(ctx context.Context, rec pipeline.Record) (pipeline.Recorded, error) {
	defer r.t.since("pg.record", time.Now())
	return r.RecordStore.Record(ctx, rec)
}

// Names of the processes cpuTimes reports.
const (
	procIntake   = "intake" // this process: consumer, processor, SDK clients (and the benchmark's own loop)
	procMinIO    = "minio"
	procKumo     = "kumo"
	procPostgres = "postgres" // every PostgreSQL process: backends, WAL writer, checkpointer...
)

// cpuTimes reads the CPU time (user+system) used so far by the local stack's servers (from /proc,
// Linux only; empty elsewhere) and by this process (getrusage, microsecond resolution). Comparing
// two snapshots tells which process the benchmark's work landed on.
func cpuTimes() map[string]time.Duration {
	out := map[string]time.Duration{procIntake: selfUsage().cpu}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return out
	}
	self := strconv.Itoa(os.Getpid())
	for _, e := range entries {
		pid := e.Name()
		if pid[0] < '0' || pid[0] > '9' || pid == self {
			continue
		}
		raw, err := os.ReadFile("/proc/" + pid + "/stat")
		if err != nil {
			continue
		}
		// pid (comm) state ... field 14 utime, 15 stime (in clock ticks).
		open, closing := bytes.IndexByte(raw, '('), bytes.LastIndexByte(raw, ')')
		if open < 0 || closing < open {
			continue
		}
		name := string(raw[open+1 : closing])
		if name != procMinIO && name != procKumo && name != procPostgres {
			continue
		}
		if only, ok := stackPIDs()[name]; ok && only != pid {
			continue // another server of that name (a fault-suite world's MinIO): not the stack's
		}
		fields := strings.Fields(string(raw[closing+1:]))
		if len(fields) < 13 {
			continue
		}
		utime, _ := strconv.ParseInt(fields[11], 10, 64)
		stime, _ := strconv.ParseInt(fields[12], 10, 64)
		out[name] += time.Duration(utime+stime) * time.Second / 100 // USER_HZ is 100 on Linux
	}
	return out
}

// stackPIDs returns the pids of the local stack's MinIO and kumo, from the files
// deploy/local/stack.sh writes (.stack/<name>.pid at the repository's root), so that cpuTimes
// counts those servers alone: the CPU of any other process of the same name on the host (a
// fault-suite world starts MinIOs of its own) would otherwise be charged to them, and MinIO's is
// the denominator of x-minio-cpu. A name without a file (a stack started otherwise) is counted by
// name, every process of it. PostgreSQL is counted by name: every process of the host's server
// (its backends, writers and checkpointer), whoever's work it does.
var stackPIDs = sync.OnceValue(func() map[string]string {
	out := map[string]string{}
	dir, err := os.Getwd()
	if err != nil {
		return out
	}
	for ; ; dir = filepath.Dir(dir) {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			break
		}
		if filepath.Dir(dir) == dir {
			return out
		}
	}
	for _, name := range []string{procMinIO, procKumo} {
		raw, err := os.ReadFile(filepath.Join(dir, ".stack", name+".pid"))
		if err != nil {
			continue
		}
		pid := strings.TrimSpace(string(raw))
		if _, err := os.Stat("/proc/" + pid); err == nil {
			out[name] = pid
		}
	}
	return out
})

// cpuDelta is the CPU time each process used since before. A process that exited since (a
// PostgreSQL backend whose connection closed) takes its time with it, so the figures of the
// servers are lower bounds.
func cpuDelta(before map[string]time.Duration) map[string]time.Duration {
	after := cpuTimes()
	for n, d := range after {
		after[n] = d - before[n]
	}
	return after
}

// cpuSince formats the CPU time each process used since before.
func cpuSince(before map[string]time.Duration) string {
	return formatCPU(cpuDelta(before))
}

// formatCPU lists the CPU time of each process.
func formatCPU(used map[string]time.Duration) string {
	names := make([]string, 0, len(used))
	for n := range used {
		names = append(names, n)
	}
	sort.Strings(names)
	var b strings.Builder
	for _, n := range names {
		fmt.Fprintf(&b, "%s %s; ", n, used[n].Round(10*time.Millisecond))
	}
	return b.String()
}

// reportCPU reports the CPU time per event of intake and of each server, in ms, and intake's as a
// multiple of MinIO's ("x-minio-cpu": MinIO's share is the inspection read, the work no consumer
// can avoid).
func reportCPU(b *testing.B, used map[string]time.Duration, events int) {
	perEvent := func(name string) float64 {
		return float64(used[name]) / float64(time.Millisecond) / float64(events)
	}
	b.ReportMetric(perEvent(procIntake), "intake-cpu-ms/event")
	b.ReportMetric(perEvent(procMinIO), "minio-cpu-ms/event")
	b.ReportMetric(perEvent(procPostgres), "pg-cpu-ms/event")
	b.ReportMetric(perEvent(procKumo), "kumo-cpu-ms/event")
	if used[procMinIO] > 0 {
		b.ReportMetric(float64(used[procIntake])/float64(used[procMinIO]), "x-minio-cpu")
	}
}

// profileIfAsked writes a CPU profile of the timed part to $INTAKE_BENCH_CPUPROFILE, when set
// (go test's -cpuprofile would also cover the untimed uploads).
func profileIfAsked(b *testing.B) (stop func()) {
	path := os.Getenv("INTAKE_BENCH_CPUPROFILE")
	if path == "" {
		return func() {}
	}
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		b.Fatal(err)
	}
	return func() {
		pprof.StopCPUProfile()
		_ = f.Close()
	}
}
