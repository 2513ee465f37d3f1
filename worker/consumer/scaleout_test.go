package consumer_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/intakehq/intake/internal/gctune"
	"github.com/intakehq/intake/internal/objstore"
	"github.com/intakehq/intake/internal/queue"
	"github.com/intakehq/intake/internal/store"
	"github.com/intakehq/intake/internal/testkit"
	"github.com/intakehq/intake/pipeline"
	"github.com/intakehq/intake/worker/consumer"
)

// Environment of a consumer child process (BenchmarkScaleOut): the test binary run again with
// childEnv set runs one consumer, as the daemon's consumer role wires it, instead of the tests.
const (
	childEnv       = "INTAKE_CONSUMER_CHILD" // the queue URL
	childBucketEnv = "INTAKE_CONSUMER_CHILD_BUCKET"
	childDBEnv     = "INTAKE_CONSUMER_CHILD_DB" // a database URL selecting the schema
	// childProfileEnv names the file a child writes the CPU profile of its run to (set by the parent
	// when INTAKE_BENCH_CPUPROFILE_DIR names a directory: <procs>proc-<run>-<child>.pprof).
	childProfileEnv = "INTAKE_CONSUMER_CHILD_CPUPROFILE"
)

// scaleOutOrder is the order of BenchmarkScaleOut's drains by process count: ABBA BAAB, so that
// each count's runs stand as early and as late as the other's on average (positions 1, 4, 6, 7
// and 2, 3, 5, 8) and a steady drift of the machine's load favours neither.
var scaleOutOrder = []int{1, 2, 2, 1, 2, 1, 1, 2}

// scaleOutTimeout bounds each drain of BenchmarkScaleOut.
const scaleOutTimeout = 3 * time.Minute

// childReport is what a consumer child prints on its stdout when it stops.
type childReport struct {
	CPU       time.Duration `json:"cpu"`       // user+system CPU from Run's start to its return
	Switches  switches      `json:"switches"`  // context switches in the same span
	Processed int64         `json:"processed"` // Process calls (a redelivered message counts again); a baseline: its units of work
	Acked     float64       `json:"acked"`     // intake_messages_acked_total
	Receives  histSummary   `json:"receives"`  // intake_consumer_receive_batch_messages
	Deletes   histSummary   `json:"deletes"`   // intake_consumer_delete_batch_messages
	Records   histSummary   `json:"records"`   // intake_pipeline_batch_size{statement="record"}
	Lookups   histSummary   `json:"lookups"`   // intake_pipeline_batch_size{statement="intent_lookup"}
	Err       string        `json:"err,omitempty"`
}

// histSummary is a histogram's sample count and sum.
type histSummary struct {
	Count uint64  `json:"count"`
	Sum   float64 `json:"sum"`
}

func (h histSummary) add(o histSummary) histSummary {
	return histSummary{h.Count + o.Count, h.Sum + o.Sum}
}

func (h histSummary) mean() float64 { return h.Sum / float64(max(h.Count, 1)) }

// runChild is the main of a benchmark's child process (the test binary run again: see TestMain):
// it runs work (one consumer on the queue in $INTAKE_CONSUMER_CHILD until SIGTERM, or a baseline of
// BenchmarkScaleOutBare or BenchmarkScaleOutBatchProto), prints its childReport as JSON and returns
// the exit status.
func runChild(work func() (childReport, error)) int {
	rep, err := work()
	if err != nil {
		rep.Err = err.Error()
	}
	if err := json.NewEncoder(os.Stdout).Encode(rep); err != nil {
		return 2
	}
	if rep.Err != "" {
		return 1
	}
	return 0
}

// runAll runs f in n goroutines and returns the first error any of them returned, once all have
// returned (the baselines' loops).
func runAll(n int, f func() error) error {
	var mu sync.Mutex
	var first error
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			if err := f(); err != nil {
				mu.Lock()
				if first == nil {
					first = err
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return first
}

// reportSplit logs and reports what a baseline's runs (by process count: 1 and 2) cost per unit
// of work (n units per run) under prefix: CPU and voluntary switches per unit, each count's spread,
// and the two-process ratio as prefix+"x-2proc-cpu".
func reportSplit(b *testing.B, name, prefix, unit string, runs [3][]scaleOutRun, n int) {
	var cpu [3]time.Duration
	for procs := 1; procs <= 2; procs++ {
		var sw switches
		for _, r := range runs[procs] {
			cpu[procs] += r.cpu
			sw = sw.add(r.sw)
		}
		units := float64(n * len(runs[procs]))
		perUnit := float64(cpu[procs].Microseconds()) / units
		b.Logf("%s, %d process(es): %.1f µs of CPU per %s, %.2f voluntary context switches per %s, spread %.2f",
			name, procs, perUnit, unit, float64(sw.Voluntary)/units, unit, spread(runs[procs], n))
		p := fmt.Sprintf("%s%dproc-", prefix, procs)
		b.ReportMetric(perUnit, p+"cpu-µs/"+unit)
		b.ReportMetric(float64(sw.Voluntary)/units, p+"vcsw/"+unit)
		b.ReportMetric(spread(runs[procs], n), p+"spread")
	}
	b.ReportMetric(float64(cpu[2])/float64(cpu[1]), prefix+"x-2proc-cpu")
}

func consumerChild() (childReport, error) {
	var rep childReport
	gctune.Apply(os.Getenv) // the GC target the daemon runs with (internal/cli's run)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	st, err := store.Open(ctx, os.Getenv(childDBEnv))
	if err != nil {
		return rep, fmt.Errorf("open store: %w", err)
	}
	defer st.Close()
	log, logFile, err := openDaemonLogger()
	if err != nil {
		return rep, err
	}
	defer logFile.Close()
	reg := prometheus.NewRegistry()
	records := store.NewBatchedRecords(st, store.BatchOptions{})
	defer records.Close()
	if err := reg.Register(records); err != nil {
		return rep, fmt.Errorf("register record metrics: %w", err)
	}
	// As newBenchEnv and the consumer role: an S3 client with an idle pool for the workers.
	cfg := testkit.AWSConfig()
	cfg.HTTPClient = objstore.HTTPClient(256)
	proc, err := pipeline.NewProcessor(pipeline.ProcessorConfig{
		Objects: objstore.NewObjects(objstore.NewClient(cfg, testkit.AWS())), Records: records,
		Buckets: []string{os.Getenv(childBucketEnv)}, Policy: pipeline.DefaultPolicy(),
		Log: log, Registerer: reg,
	})
	if err != nil {
		return rep, fmt.Errorf("processor: %w", err)
	}
	var processed atomic.Int64
	counted := consumer.ProcessorFunc(func(ctx context.Context, id string, body []byte) error {
		processed.Add(1)
		return proc.Process(ctx, id, body)
	})
	lean, err := queue.NewLean(testkit.SQS()) // as the consumer role
	if err != nil {
		return rep, err
	}
	c, err := consumer.New(consumer.Config{
		Client: lean, QueueURL: os.Getenv(childEnv), Processor: counted, Registerer: reg,
		Log: log, WaitTime: time.Second, DepthInterval: -1,
	})
	if err != nil {
		return rep, fmt.Errorf("consumer: %w", err)
	}
	if path := os.Getenv(childProfileEnv); path != "" {
		f, err := os.Create(path)
		if err != nil {
			return rep, err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return rep, err
		}
		defer pprof.StopCPUProfile()
	}
	began := selfUsage()
	if err := c.Run(ctx); err != nil {
		return rep, fmt.Errorf("run: %w", err)
	}
	ended := selfUsage()
	rep.CPU, rep.Switches = ended.cpu-began.cpu, ended.switches.sub(began.switches)
	rep.Processed = processed.Load()
	mfs, err := reg.Gather()
	if err != nil {
		return rep, fmt.Errorf("gather: %w", err)
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			switch mf.GetName() {
			case "intake_messages_acked_total":
				rep.Acked = m.GetCounter().GetValue()
			case "intake_consumer_receive_batch_messages":
				rep.Receives = summary(m)
			case "intake_consumer_delete_batch_messages":
				rep.Deletes = summary(m)
			case "intake_pipeline_batch_size":
				switch label(m, "statement") {
				case "record":
					rep.Records = summary(m)
				case "intent_lookup":
					rep.Lookups = summary(m)
				}
			}
		}
	}
	return rep, nil
}

func summary(m *dto.Metric) histSummary {
	h := m.GetHistogram()
	return histSummary{Count: h.GetSampleCount(), Sum: h.GetSampleSum()}
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// switches counts a process's context switches: voluntary ones (a thread went to sleep, on a
// futex, epoll or a socket, and was woken later) and involuntary ones (the kernel preempted it).
type switches struct {
	Voluntary   int64 `json:"voluntary"`
	Involuntary int64 `json:"involuntary"`
}

func (s switches) sub(o switches) switches {
	return switches{s.Voluntary - o.Voluntary, s.Involuntary - o.Involuntary}
}

func (s switches) add(o switches) switches {
	return switches{s.Voluntary + o.Voluntary, s.Involuntary + o.Involuntary}
}

// usage is this process's resource use so far.
type usage struct {
	cpu      time.Duration // user+system
	switches switches
}

// selfUsage reads this process's CPU time and context switches (all its threads) so far.
func selfUsage() usage {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return usage{}
	}
	return usage{
		cpu:      time.Duration(ru.Utime.Nano() + ru.Stime.Nano()),
		switches: switches{Voluntary: ru.Nvcsw, Involuntary: ru.Nivcsw},
	}
}

// runID numbers the scale-out runs of this process (names of the children's profiles).
var runID atomic.Int64

// child is a running consumer child process.
type child struct {
	cmd  *exec.Cmd
	out  chan childReport
	errc chan error
}

// startChild starts a consumer child on queueURL, recording into the schema of st.
func startChild(b *testing.B, name, queueURL, bucket string, st *store.Store, extraEnv ...string) *child {
	b.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), childEnv+"="+queueURL, childBucketEnv+"="+bucket,
		childDBEnv+"="+testkit.DatabaseURLFor(st.Schema))
	cmd.Env = append(cmd.Env, extraEnv...)
	if dir := os.Getenv("INTAKE_BENCH_CPUPROFILE_DIR"); dir != "" {
		cmd.Env = append(cmd.Env, childProfileEnv+"="+filepath.Join(dir, name+".pprof"))
	}
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatalf("start consumer child: %v", err)
	}
	ch := &child{cmd: cmd, out: make(chan childReport, 1), errc: make(chan error, 1)}
	go func() {
		var rep childReport
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		var decodeErr error
		for sc.Scan() { // the report is the last line; anything before it is noise
			decodeErr = json.Unmarshal(sc.Bytes(), &rep)
		}
		err := cmd.Wait()
		switch {
		case err != nil:
			ch.errc <- fmt.Errorf("consumer child: %w", err)
		case decodeErr != nil:
			ch.errc <- fmt.Errorf("consumer child report: %w", decodeErr)
		case rep.Err != "":
			ch.errc <- errors.New("consumer child: " + rep.Err)
		default:
			ch.out <- rep
		}
	}()
	b.Cleanup(func() { _ = cmd.Process.Kill() }) // after a failure; harmless once it exited
	return ch
}

// stop sends SIGTERM and returns the child's report.
func (c *child) stop(b *testing.B) childReport {
	b.Helper()
	if err := c.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		b.Fatalf("signal consumer child: %v", err)
	}
	select {
	case rep := <-c.out:
		return rep
	case err := <-c.errc:
		b.Fatal(err)
	case <-time.After(time.Minute):
		b.Fatal("consumer child did not stop within a minute")
	}
	return childReport{}
}

// scaleOutRun is the outcome of draining the queue with some consumer processes.
type scaleOutRun struct {
	procs   int
	took    time.Duration
	cpu     time.Duration // of the consumer processes together
	sw      switches      // of the consumer processes together
	reports []childReport
}

func (r scaleOutRun) perEvent(n int) float64 {
	return float64(r.cpu) / float64(time.Millisecond) / float64(n)
}

// spread is the largest CPU per event of runs divided by the smallest (1 for one run).
func spread(runs []scaleOutRun, n int) float64 {
	lo, hi := math.Inf(1), 0.0
	for _, r := range runs {
		lo, hi = min(lo, r.perEvent(n)), max(hi, r.perEvent(n))
	}
	return hi / lo
}

// drainWithProcesses fills a fresh queue and schema with n events, drains them with procs consumer
// child processes, and checks that every object has exactly one row, every message was deleted and
// none was processed twice.
func (e *benchEnv) drainWithProcesses(b *testing.B, procs, n int) scaleOutRun {
	b.Helper()
	queueURL := e.queueOfEvents(b, n)
	st := testkit.DB(b)

	began := time.Now()
	children := make([]*child, procs)
	for i := range children {
		children[i] = startChild(b, fmt.Sprintf("%dproc-%d-%d", procs, runID.Add(1), i), queueURL, e.bucket, st)
	}
	deadline := began.Add(scaleOutTimeout)
	for countValid(b, st) < n {
		if time.Now().After(deadline) {
			b.Fatalf("%d consumer processes recorded %d of %d objects in %s", procs, countValid(b, st), n, scaleOutTimeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
	run := scaleOutRun{procs: procs, took: time.Since(began)}
	var processed int64
	var acked float64
	for _, c := range children {
		rep := c.stop(b)
		run.reports = append(run.reports, rep)
		run.cpu += rep.CPU
		run.sw = run.sw.add(rep.Switches)
		processed += rep.Processed
		acked += rep.Acked
	}

	var rows, keys int
	err := st.Pool.QueryRow(context.Background(),
		`SELECT count(*), count(DISTINCT (bucket, key)) FROM objects`).Scan(&rows, &keys)
	if err != nil {
		b.Fatal(err)
	}
	if rows != n || keys != n {
		b.Fatalf("%d processes: %d rows for %d distinct objects, want %d of each", procs, rows, keys, n)
	}
	if processed != int64(n) || int(acked) != n {
		b.Fatalf("%d processes: %d Process calls and %v deletions for %d messages (duplicates or losses)", procs, processed, acked, n)
	}
	attrs, err := e.sqs.GetQueueAttributes(context.Background(), &sqs.GetQueueAttributesInput{
		QueueUrl: aws.String(queueURL),
		AttributeNames: []types.QueueAttributeName{
			types.QueueAttributeNameApproximateNumberOfMessages, types.QueueAttributeNameApproximateNumberOfMessagesNotVisible,
		},
	})
	if err != nil {
		b.Fatal(err)
	}
	for name, v := range attrs.Attributes {
		if v != "0" {
			b.Fatalf("%d processes: %s = %s after the drain, want 0", procs, name, v)
		}
	}
	return run
}

// BenchmarkScaleOut drains one queue of 5,000 S3 events (over real MinIO objects, into real
// PostgreSQL) with one consumer process and with two (real OS processes: this test binary run again
// as a consumer child), four times each in the order of scaleOutOrder so that a drift of the
// shared machine's load does not favour either, and checks each time that every object was
// recorded once, no message was processed twice and the queue is empty. Reported: the consumer processes' CPU per
// event together (one vs two, and their ratio), the events one consumer core carries (events per
// CPU second of the one process) and the cores a queue of 1 million events per hour needs at that
// rate, and the mean size of the group-commit record batches (logged with the lookup, receive and
// delete batches: they must still form with two processes sharing the load). Beside the ratio it
// reports each process count's spread (its slowest run's CPU per event ÷ its fastest's): in a
// noisy hour on this shared machine the same configuration's runs can differ by more than the two
// configurations do, and the ratio can be read only when both spreads are well below it. It also
// reports the processes' voluntary context switches per event (getrusage): a thread that finds no
// work sleeps and is woken again, and that is where two half-busy processes can spend more than one
// busy one.
func BenchmarkScaleOut(b *testing.B) {
	e := newBenchEnv(b, benchEvents)
	for range b.N {
		var runs [3][]scaleOutRun // by process count
		for _, procs := range scaleOutOrder {
			runs[procs] = append(runs[procs], e.drainWithProcesses(b, procs, benchEvents))
		}
		var cpu [3]time.Duration
		for procs := 1; procs <= 2; procs++ {
			var recs, lookups, receives, deletes histSummary
			var sw switches
			for _, r := range runs[procs] {
				cpu[procs] += r.cpu
				sw = sw.add(r.sw)
				for _, rep := range r.reports {
					recs, lookups = recs.add(rep.Records), lookups.add(rep.Lookups)
					receives, deletes = receives.add(rep.Receives), deletes.add(rep.Deletes)
				}
				b.Logf("%d process(es): %d events in %s (%.0f events/s), consumer CPU %s (%.3f ms/event), "+
					"context switches per event %.2f voluntary, %.2f involuntary",
					procs, benchEvents, r.took.Round(time.Millisecond), benchEvents/r.took.Seconds(), r.cpu.Round(time.Millisecond), r.perEvent(benchEvents),
					float64(r.sw.Voluntary)/benchEvents, float64(r.sw.Involuntary)/benchEvents)
			}
			events := benchEvents * len(runs[procs])
			b.Logf("%d process(es), all runs: %.3f ms of consumer CPU per event; record batches %d (mean %.1f), "+
				"lookup batches %d (mean %.1f), receives %d (mean %.1f), deletes %d (mean %.1f); "+
				"context switches per event %.2f voluntary, %.2f involuntary",
				procs, float64(cpu[procs])/float64(time.Millisecond)/float64(events), recs.Count, recs.mean(),
				lookups.Count, lookups.mean(), receives.Count, receives.mean(), deletes.Count, deletes.mean(),
				float64(sw.Voluntary)/float64(events), float64(sw.Involuntary)/float64(events))
			prefix := fmt.Sprintf("%dproc-", procs)
			b.ReportMetric(float64(cpu[procs])/float64(time.Millisecond)/float64(events), prefix+"cpu-ms/event")
			b.ReportMetric(recs.mean(), prefix+"record-batch")
			b.ReportMetric(spread(runs[procs], benchEvents), prefix+"spread")
			b.ReportMetric(float64(sw.Voluntary)/float64(events), prefix+"vcsw/event")
		}
		b.ReportMetric(float64(cpu[2])/float64(cpu[1]), "x-2proc-cpu")
		perCore := float64(benchEvents*len(runs[1])) / cpu[1].Seconds()
		b.ReportMetric(perCore, "events/core-s")
		b.ReportMetric(1e6/3600/perCore, "cores-per-1M/h")
	}
}

func TestSpread(t *testing.T) {
	ms := func(d float64) scaleOutRun { return scaleOutRun{cpu: time.Duration(d * float64(time.Millisecond))} }
	runs := []scaleOutRun{ms(300), ms(200), ms(250)} // 0.3, 0.2 and 0.25 ms per event over 1,000 events
	if got := spread(runs, 1000); math.Abs(got-1.5) > 1e-9 {
		t.Fatalf("spread = %v, want 1.5 (0.3 ÷ 0.2 ms per event)", got)
	}
	if got := spread(runs[:1], 1000); got != 1 {
		t.Fatalf("spread of one run = %v, want 1", got)
	}
}
