package consumer_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/intakehq/intake/internal/gctune"
	"github.com/intakehq/intake/internal/objstore"
	"github.com/intakehq/intake/internal/queue"
	"github.com/intakehq/intake/internal/store"
	"github.com/intakehq/intake/internal/telemetry"
	"github.com/intakehq/intake/internal/testkit"
	"github.com/intakehq/intake/pipeline"
	"github.com/intakehq/intake/worker/consumer"
)

// Workload sizes: the consumer drains benchEvents messages; the naive loop, which is far slower,
// a sample of naiveEvents.
const (
	benchEvents = 5000
	naiveEvents = 300
)

// benchObject is one uploaded object and the S3 event announcing it.
type benchObject struct {
	key  string
	size int
	etag string
}

// uploadObjects puts n small text objects into a fresh bucket, 32 at a time.
func uploadObjects(b testing.TB, client *s3.Client, bucket string, n int) []benchObject {
	b.Helper()
	objs := make([]benchObject, n)
	err := testkit.InParallel(n, 32, func(i int) error {
		key := fmt.Sprintf("bench/%05d/object %d.txt", i, i)
		body := fmt.Sprintf("object %d of the end-to-end benchmark\n%s\n", i, strings.Repeat("x", i%200))
		out, err := client.PutObject(context.Background(), &s3.PutObjectInput{
			Bucket: aws.String(bucket), Key: aws.String(key), ContentType: aws.String("text/plain"),
			Body: strings.NewReader(body),
		})
		if err != nil {
			return err
		}
		objs[i] = benchObject{key: key, size: len(body), etag: strings.Trim(aws.ToString(out.ETag), `"`)}
		return nil
	})
	if err != nil {
		b.Fatalf("upload: %v", err)
	}
	return objs
}

// eventBody is the S3 notification AWS would send for obj (keys are form-encoded).
func eventBody(bucket string, obj benchObject, seq int) string {
	rec := map[string]any{
		"eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
		"eventTime": time.Now().UTC().Format(time.RFC3339Nano), "eventName": "ObjectCreated:Put",
		"s3": map[string]any{
			"s3SchemaVersion": "1.0", "configurationId": "intake",
			"bucket": map[string]any{"name": bucket, "arn": "arn:aws:s3:::" + bucket},
			"object": map[string]any{
				"key": url.QueryEscape(obj.key), "size": obj.size, "eTag": obj.etag,
				"sequencer": fmt.Sprintf("%016X", 0x0055AED6DCD90281+seq),
			},
		},
	}
	body, _ := json.Marshal(map[string]any{"Records": []any{rec}})
	return string(body)
}

// preload sends bodies to the queue.
func preload(b *testing.B, client *sqs.Client, queueURL string, bodies []string) {
	b.Helper()
	entries := make([]types.SendMessageBatchRequestEntry, len(bodies))
	for i, body := range bodies {
		entries[i] = types.SendMessageBatchRequestEntry{Id: aws.String(strconv.Itoa(i)), MessageBody: aws.String(body)}
	}
	testkit.SendMessages(b, client, queueURL, entries)
}

type benchEnv struct {
	s3     *s3.Client
	sqs    *sqs.Client
	bucket string
	objs   []benchObject
}

func newBenchEnv(b *testing.B, n int) *benchEnv {
	b.Helper()
	if testing.Short() {
		b.Skip("needs the local stack")
	}
	gctune.Apply(os.Getenv) // the GC target the daemon runs with (internal/cli's run)
	// The consumer role gives its S3 client an idle-connection pool sized for its workers (see
	// internal/cli/role_consumer.go); the SDK's default keeps 10 per host and redials the rest.
	cfg := testkit.AWSConfig()
	cfg.HTTPClient = awshttp.NewBuildableClient().WithTransportOptions(func(tr *http.Transport) {
		tr.MaxIdleConns, tr.MaxIdleConnsPerHost = 256, 256
	})
	e := &benchEnv{s3: objstore.NewClient(cfg, testkit.AWS()), sqs: testkit.SQS()}
	e.bucket = testkit.Bucket(b, e.s3)
	began := time.Now()
	e.objs = uploadObjects(b, e.s3, e.bucket, n)
	b.Logf("uploaded %d objects in %s (not timed)", n, time.Since(began).Round(time.Millisecond))
	return e
}

// queueOfEvents returns a fresh queue holding the ObjectCreated events of the first n objects.
func (e *benchEnv) queueOfEvents(b *testing.B, n int) string {
	b.Helper()
	q := testkit.Queue(b, e.sqs, 10, time.Minute)
	bodies := make([]string, n)
	for i := range n {
		bodies[i] = eventBody(e.bucket, e.objs[i], i)
	}
	preload(b, e.sqs, q.URL, bodies)
	return q.URL
}

// round prepares one measured run: a fresh queue holding the events of the first n objects, a fresh
// database schema and a Processor over it, with the daemon's batched record store (lookups and
// records of concurrent messages share round trips and commits) or, for the naive loop, one
// statement per call. With stages (not nil) the Processor's S3 and PostgreSQL calls are timed
// through wrappers the daemon does not have.
func (e *benchEnv) round(b *testing.B, n int, stages *stageTimer, s3Client *s3.Client, batched bool) (queueURL string, proc *pipeline.Processor, st *store.Store) {
	b.Helper()
	queueURL = e.queueOfEvents(b, n)
	st = testkit.DB(b)
	records := store.NewRecords(st)
	if batched {
		records = store.NewBatchedRecords(st, store.BatchOptions{})
		b.Cleanup(records.Close)
	}
	var (
		objects pipeline.ObjectStore = objstore.NewObjects(s3Client)
		recs    pipeline.RecordStore = records
	)
	if stages != nil {
		objects, recs = timedObjects{objects, stages}, timedRecords{records, stages}
	}
	proc, err := pipeline.NewProcessor(pipeline.ProcessorConfig{
		Objects: objects, Records: recs,
		Buckets: []string{e.bucket}, Policy: pipeline.DefaultPolicy(), Log: daemonLogger(b), Registerer: prometheus.NewRegistry(),
	})
	if err != nil {
		b.Fatal(err)
	}
	return queueURL, proc, st
}

// daemonLogger is the logger the daemon gives the Processor and the consumer (internal/cli: JSON at
// the default level, info, every string redacted), writing to /dev/null instead of stderr: what the
// daemon logs per event is part of what it costs. It is closed when b ends.
func daemonLogger(b *testing.B) *slog.Logger {
	b.Helper()
	log, f, err := openDaemonLogger()
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = f.Close() })
	return log
}

// openDaemonLogger is daemonLogger for a child process; the caller closes the file.
func openDaemonLogger() (*slog.Logger, *os.File, error) {
	f, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		return nil, nil, err
	}
	return telemetry.NewLogger(f, "json", "info").With("service", "intake", "role", "consumer"), f, nil
}

func countValid(b *testing.B, st *store.Store) int {
	b.Helper()
	var n int
	if err := st.Pool.QueryRow(context.Background(), `SELECT count(*) FROM objects WHERE status = 'valid'`).Scan(&n); err != nil {
		b.Fatal(err)
	}
	return n
}

// ackedWatcher is a Registerer that remembers the consumer's acked counter as it is registered, so
// that the benchmark can poll that one counter instead of gathering the whole registry (which
// allocates every metric family, in the measured process).
type ackedWatcher struct {
	*prometheus.Registry
	acked prometheus.Metric
}

// Register registers c and keeps it when it is intake_messages_acked_total.
func (w *ackedWatcher) Register(c prometheus.Collector) error {
	if m, ok := c.(prometheus.Metric); ok && strings.Contains(m.Desc().String(), `"intake_messages_acked_total"`) {
		w.acked = m
	}
	return w.Registry.Register(c)
}

// daemonSQS is the consumer's SQS client as the consumer role builds it: queue.Lean over client.
func daemonSQS(b *testing.B, client *sqs.Client) *queue.Lean {
	b.Helper()
	lean, err := queue.NewLean(client)
	if err != nil {
		b.Fatal(err)
	}
	return lean
}

// drainWithConsumer runs the consumer, receiving and deleting through daemonSQS(client), until n
// messages are acked and returns the time it took.
func drainWithConsumer(b *testing.B, client *sqs.Client, queueURL string, proc consumer.Processor, n int) time.Duration {
	b.Helper()
	reg := &ackedWatcher{Registry: prometheus.NewRegistry()}
	c, err := consumer.New(consumer.Config{
		Client: daemonSQS(b, client), QueueURL: queueURL, Processor: proc, Registerer: reg,
		Log: daemonLogger(b), WaitTime: time.Second, DepthInterval: -1,
	})
	if err != nil {
		b.Fatal(err)
	}
	if reg.acked == nil {
		b.Fatal("the consumer registered no intake_messages_acked_total")
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	began := time.Now()
	go func() { done <- c.Run(ctx) }()
	deadline := time.Now().Add(5 * time.Minute)
	for {
		got := testkit.Value(b, reg.acked)
		if int(got) >= n {
			break
		}
		if time.Now().After(deadline) {
			cancel()
			b.Fatalf("the consumer acked %v of %d messages in 5 minutes", got, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
	took := time.Since(began)
	cancel()
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	mfs, _ := reg.Gather()
	for _, mf := range mfs {
		switch name := mf.GetName(); name {
		case "intake_consumer_receive_batch_messages", "intake_consumer_delete_batch_messages":
			h := mf.GetMetric()[0].GetHistogram()
			b.Logf("%s: %d calls, mean %.1f", name, h.GetSampleCount(), h.GetSampleSum()/float64(max(h.GetSampleCount(), 1)))
		}
	}
	return took
}

// drainNaively is the baseline: receive one message, process it, delete it, one at a time.
func drainNaively(b *testing.B, client *sqs.Client, queueURL string, proc consumer.Processor, n int) time.Duration {
	b.Helper()
	ctx := context.Background()
	began := time.Now()
	for done := 0; done < n; {
		out, err := client.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{
			QueueUrl: aws.String(queueURL), MaxNumberOfMessages: 1, WaitTimeSeconds: 1, VisibilityTimeout: 60,
		})
		if err != nil {
			b.Fatal(err)
		}
		for _, m := range out.Messages {
			if err := proc.Process(ctx, aws.ToString(m.MessageId), []byte(aws.ToString(m.Body))); err != nil {
				b.Fatalf("process: %v", err)
			}
			if _, err := client.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: aws.String(queueURL), ReceiptHandle: m.ReceiptHandle}); err != nil {
				b.Fatal(err)
			}
			done++
		}
	}
	return time.Since(began)
}

// BenchmarkEndToEnd drains 5,000 S3 ObjectCreated events over 5,000 real objects in MinIO with the
// consumer and the real Processor (one ranged GET, sniff, policy, batched PostgreSQL lookups and
// upserts), and 300 with a naive one-at-a-time loop for comparison. Uploading the objects and
// filling the queues is not timed. Reported: events/s of both and their ratio; ns/op is the
// consumer's drain time.
func BenchmarkEndToEnd(b *testing.B) {
	e := newBenchEnv(b, benchEvents)
	e.compare(b, e.s3, e.sqs)
}

// BenchmarkEndToEndRemote is BenchmarkEndToEnd with S3 (MinIO) and SQS (kumo) a modeled network
// away: both consumers reach them through a proxy that delays every byte by half the round trip
// each way (PostgreSQL stays on loopback). Loopback hides what a round trip costs a consumer that
// waits for each one; this shows it. It is a model, not a measurement against AWS, where S3 and SQS
// round trips are longer than the ones modeled here.
func BenchmarkEndToEndRemote(b *testing.B) {
	e := newBenchEnv(b, benchEvents)
	for _, rtt := range []time.Duration{2 * time.Millisecond, 10 * time.Millisecond} {
		b.Run("rtt="+rtt.String(), func(b *testing.B) {
			remote := testkit.AWS()
			remote.S3Endpoint = delayed(b, "s3", remote.S3Endpoint, rtt/2)
			remote.SQSEndpoint = delayed(b, "sqs", remote.SQSEndpoint, rtt/2)
			cfg := testkit.AWSConfig()
			cfg.HTTPClient = objstore.HTTPClient(256)
			e.compare(b, objstore.NewClient(cfg, remote), queue.NewClient(cfg, remote))
		})
	}
}

// delayed returns the URL of a toxiproxy proxy in front of endpoint that delays every chunk of bytes
// by oneWay in each direction: a round trip of 2×oneWay, without a bandwidth limit (chunks in flight
// overlap).
func delayed(b *testing.B, name, endpoint string, oneWay time.Duration) string {
	p := testkit.NewProxy(b, name, strings.TrimPrefix(endpoint, "http://"))
	p.Latency(testkit.Upstream, oneWay, 0)
	p.Latency(testkit.Downstream, oneWay, 0)
	return p.URL()
}

// compare measures the consumer, then the naive loop, with the Processor reading objects through
// s3Client and both receiving and deleting through sqsClient.
func (e *benchEnv) compare(b *testing.B, s3Client *s3.Client, sqsClient *sqs.Client) {
	var consumerRate, naiveRate float64
	for range b.N {
		b.StopTimer()
		stages := stageTimerIfAsked()
		queueURL, proc, st := e.round(b, benchEvents, stages, s3Client, true)
		cpu := cpuTimes()
		stopProfile := profileIfAsked(b)
		b.StartTimer()
		took := drainWithConsumer(b, sqsClient, queueURL, proc, benchEvents)
		b.StopTimer()
		stopProfile()
		b.Logf("consumer: %d events in %s; %s", benchEvents, took.Round(time.Millisecond), stages)
		used := cpuDelta(cpu)
		b.Logf("consumer: CPU used: %s", formatCPU(used))
		reportCPU(b, used, benchEvents)
		if got := countValid(b, st); got != benchEvents {
			b.Fatalf("%d valid rows after draining %d events", got, benchEvents)
		}
		consumerRate = benchEvents / took.Seconds()

		stages = stageTimerIfAsked()
		queueURL, proc, st = e.round(b, naiveEvents, stages, s3Client, false)
		cpu = cpuTimes()
		took = drainNaively(b, sqsClient, queueURL, proc, naiveEvents)
		b.Logf("naive: %d events in %s; %s", naiveEvents, took.Round(time.Millisecond), stages)
		b.Logf("naive: CPU used: %s", cpuSince(cpu))
		if got := countValid(b, st); got != naiveEvents {
			b.Fatalf("naive: %d valid rows after %d events", got, naiveEvents)
		}
		naiveRate = naiveEvents / took.Seconds()
		b.StartTimer()
	}
	b.ReportMetric(consumerRate, "events/s")
	b.ReportMetric(naiveRate, "naive-events/s")
	b.ReportMetric(consumerRate/naiveRate, "x-naive")
}

// BenchmarkConsumerOverhead measures the runtime alone (receive, dispatch, batched delete against
// kumo) with a Processor that does nothing: the ceiling the consumer puts on the pipeline.
func BenchmarkConsumerOverhead(b *testing.B) {
	if testing.Short() {
		b.Skip("needs the local stack")
	}
	client := testkit.SQS()
	bodies := make([]string, benchEvents)
	for i := range bodies {
		bodies[i] = `{"n":` + strconv.Itoa(i) + `}`
	}
	noop := consumer.ProcessorFunc(func(context.Context, string, []byte) error { return nil })
	var rate float64
	for range b.N {
		b.StopTimer()
		q := testkit.Queue(b, client, 10, time.Minute)
		preload(b, client, q.URL, bodies)
		b.StartTimer()
		took := drainWithConsumer(b, client, q.URL, noop, benchEvents)
		rate = benchEvents / took.Seconds()
	}
	b.ReportMetric(rate, "events/s")
}

// BenchmarkMinIOCeiling measures the most the end-to-end benchmark could reach with this MinIO on
// these cores: the inspection reads alone (one presigned ranged GET per object, 64 at a time, the
// consumer's worker count), with nothing else running. No consumer can beat this rate here.
func BenchmarkMinIOCeiling(b *testing.B) {
	e := newBenchEnv(b, benchEvents)
	objects := objstore.NewObjects(e.s3)
	var rate float64
	for range b.N {
		cpu := cpuTimes()
		began := time.Now()
		err := testkit.InParallel(len(e.objs), 64, func(i int) error {
			_, _, err := objects.Peek(context.Background(), e.bucket, e.objs[i].key, pipeline.SniffLen)
			return err
		})
		took := time.Since(began)
		if err != nil {
			b.Fatal(err)
		}
		b.Logf("%d ranged GETs in %s; CPU used: %s", len(e.objs), took.Round(time.Millisecond), cpuSince(cpu))
		rate = float64(len(e.objs)) / took.Seconds()
	}
	b.ReportMetric(rate, "GETs/s")
}
