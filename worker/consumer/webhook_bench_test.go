package consumer_test

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/intakehq/intake/internal/objstore"
	"github.com/intakehq/intake/internal/store"
	"github.com/intakehq/intake/internal/testkit"
	"github.com/intakehq/intake/internal/webhook"
	"github.com/intakehq/intake/pipeline"
	"github.com/intakehq/intake/worker/consumer"
)

// addIntents records an upload intent for each key (as POST /v1/uploads would), so that their
// verdicts are notified, and returns the intents' ids by key.
func addIntents(b *testing.B, st *store.Store, bucket string, keys []string) map[string]uuid.UUID {
	b.Helper()
	ids := make(map[string]uuid.UUID, len(keys))
	idList := make([]uuid.UUID, len(keys))
	for i, k := range keys {
		idList[i] = uuid.New()
		ids[k] = idList[i]
	}
	_, err := st.Pool.Exec(context.Background(), `INSERT INTO uploads (id, owner, bucket, key, method, filename,
		content_type, size, size_declared, metadata, expires_at)
		SELECT unnest($1::uuid[]), 'bench', $2, unnest($3::text[]), 'put', 'f.txt', 'text/plain', 0, false,
		       '{"app": "bench"}', now() + interval '1 hour'`, idList, bucket, keys)
	if err != nil {
		b.Fatal(err)
	}
	return ids
}

// notifications runs what the jobs role runs for notifications over st (testkit.StartNotifications,
// production retry schedule and concurrency): with webhooks, one endpoint, a receiver in this
// process that verifies every signature; without, no endpoint, so the relay only marks the rows
// relayed, as in a daemon without INTAKE_WEBHOOK_URL.
func notifications(b *testing.B, st *store.Store, withWebhooks bool) *testkit.WebhookReceiver {
	b.Helper()
	o := testkit.NotificationsOptions{}
	if !withWebhooks {
		o.Endpoints = func(string, string) []webhook.EndpointConfig { return nil }
	}
	return testkit.StartNotifications(b, st, o).Receiver
}

// BenchmarkEndToEndWebhooks is BenchmarkEndToEnd's consumer with every object an upload of an
// intent, so that every verdict commits a notification (the outbox row, in the record's batch), and
// the notifications running as in the jobs role of the same process: without webhook endpoints
// (the relay marks the rows relayed), and with one endpoint (the relay enqueues the deliveries;
// 20 workers post them, signed, to a receiver in this process that verifies them). The machine is
// shared: the two are measured three times each, in the order off, on, on, off, off, on (so that a
// drift of the machine's load weighs on both alike), and compared by their medians. Reported: the
// consumer's median events/s of both and their ratio (the target is at most 15% lost), and the
// least and greatest ratio of adjacent rounds (go test keeps only the first lines of a benchmark's
// log).
func BenchmarkEndToEndWebhooks(b *testing.B) {
	e := newBenchEnv(b, benchEvents)
	keys := make([]string, len(e.objs))
	for i, o := range e.objs {
		keys[i] = o.key
	}
	var off, on []float64
	for range b.N {
		for _, withWebhooks := range []bool{false, true, true, false, false, true} {
			b.StopTimer()
			queueURL, proc, st := e.round(b, benchEvents, newStageTimer(), e.s3, true)
			addIntents(b, st, e.bucket, keys)
			recv := notifications(b, st, withWebhooks)
			cpu := cpuTimes()
			b.StartTimer()
			took := drainWithConsumer(b, e.sqs, queueURL, proc, benchEvents)
			b.StopTimer()
			rate := benchEvents / took.Seconds()
			name := "webhooks off"
			if withWebhooks {
				name, on = "webhooks on", append(on, rate)
				recv.WaitDelivered(benchEvents, 5*time.Minute)
				b.Logf("%s: all %d webhooks received %s after the first", name, benchEvents, lastDelivered(recv).Round(time.Millisecond))
			} else {
				off = append(off, rate)
			}
			b.Logf("%s: %d events in %s (%.0f events/s); CPU used: %s", name, benchEvents, took.Round(time.Millisecond), rate, cpuSince(cpu))
			if got := countValid(b, st); got != benchEvents {
				b.Fatalf("%s: %d valid rows after draining %d events", name, got, benchEvents)
			}
			var notes int
			if err := st.Pool.QueryRow(context.Background(), "SELECT count(*) FROM outbox").Scan(&notes); err != nil || notes != benchEvents {
				b.Fatalf("%s: %d notifications for %d verdicts (%v)", name, notes, benchEvents, err)
			}
			b.StartTimer()
		}
	}
	// The rounds pair up as (off, on), (on, off), (off, on): their ratios show the spread.
	var pairs []float64
	for i := range min(len(off), len(on)) {
		pairs = append(pairs, on[i]/off[i])
	}
	b.ReportMetric(median(off), "events/s-webhooks-off")
	b.ReportMetric(median(on), "events/s-webhooks-on")
	b.ReportMetric(median(on)/median(off), "on/off")
	b.ReportMetric(slices.Min(pairs), "on/off-min-pair")
	b.ReportMetric(slices.Max(pairs), "on/off-max-pair")
}

// median is the median of xs (the mean of the middle two for an even count).
func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// lastDelivered is how long after the first webhook the last one was received.
func lastDelivered(recv *testkit.WebhookReceiver) time.Duration {
	var first, last time.Time
	for _, w := range recv.Received() {
		if first.IsZero() || w.DeliveredAt.Before(first) {
			first = w.DeliveredAt
		}
		if w.DeliveredAt.After(last) {
			last = w.DeliveredAt
		}
	}
	return last.Sub(first)
}

// BenchmarkWebhookLatency measures the time from an upload's S3 PUT to its webhook at the receiver,
// at 200 uploads/s for 10 s: each upload has an intent, is PUT into MinIO, and its S3 event is sent
// to the queue at once (as S3 would publish it; MinIO's own notification path is not timed here).
// The consumer (daemon defaults), the relay woken by LISTEN/NOTIFY and 20 webhook workers run in
// this process. Reported: p50, p99 and max latency, and the upload rate reached.
func BenchmarkWebhookLatency(b *testing.B) {
	if testing.Short() {
		b.Skip("needs the local stack")
	}
	const rate, seconds = 200, 10
	const n = rate * seconds
	s3c, sqsc := testkit.S3(), testkit.SQS()
	bucket := testkit.Bucket(b, s3c)
	var p50, p99, worst, achieved float64
	for range b.N {
		b.StopTimer()
		st := testkit.DB(b)
		q := testkit.Queue(b, sqsc, 10, time.Minute)
		keys := make([]string, n)
		for i := range keys {
			keys[i] = fmt.Sprintf("lat/%s/%05d.txt", uuid.NewString()[:8], i)
		}
		ids := addIntents(b, st, bucket, keys)
		recv := notifications(b, st, true)
		records := store.NewBatchedRecords(st, store.BatchOptions{})
		b.Cleanup(records.Close)
		proc, err := pipeline.NewProcessor(pipeline.ProcessorConfig{Objects: objstore.NewObjects(s3c), Records: records, Buckets: []string{bucket},
			Log: slog.New(slog.DiscardHandler), Registerer: prometheus.NewRegistry()})
		if err != nil {
			b.Fatal(err)
		}
		c, err := consumer.New(consumer.Config{Client: daemonSQS(b, sqsc), QueueURL: q.URL, Processor: proc,
			Registerer: prometheus.NewRegistry(), Log: slog.New(slog.DiscardHandler)})
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- c.Run(ctx) }()

		b.StartTimer()
		putAt := make([]time.Time, n)
		byID := make(map[uuid.UUID]int, n)
		for i, k := range keys {
			byID[ids[k]] = i
		}
		start := time.Now()
		var wg sync.WaitGroup
		errs := make(chan error, n)
		for i, key := range keys {
			time.Sleep(time.Until(start.Add(time.Duration(i) * time.Second / rate)))
			wg.Go(func() {
				body := fmt.Sprintf("upload %d of the latency benchmark\n", i)
				out, err := s3c.PutObject(context.Background(), &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(key),
					ContentType: aws.String("text/plain"), Body: strings.NewReader(body)})
				if err != nil {
					errs <- err
					return
				}
				putAt[i] = time.Now()
				etag := strings.Trim(aws.ToString(out.ETag), `"`)
				_, err = sqsc.SendMessage(context.Background(), &sqs.SendMessageInput{QueueUrl: aws.String(q.URL),
					MessageBody: aws.String(testkit.S3Event(bucket, key, etag, int64(len(body)), i))})
				if err != nil {
					errs <- err
				}
			})
		}
		wg.Wait()
		achieved = n / time.Since(start).Seconds()
		close(errs)
		for err := range errs {
			b.Fatal(err)
		}
		got := recv.WaitDelivered(n, 5*time.Minute)
		b.StopTimer()
		cancel()
		if err := <-done; err != nil {
			b.Fatal(err)
		}
		lat := make([]float64, 0, n)
		for _, w := range got {
			lat = append(lat, w.DeliveredAt.Sub(putAt[byID[w.Verdict.Data.UploadID]]).Seconds()*1000)
		}
		slices.Sort(lat)
		p50, p99, worst = lat[len(lat)/2], lat[len(lat)*99/100], lat[len(lat)-1]
		b.Logf("%d uploads at %.0f/s: PUT to webhook p50 %.1f ms, p99 %.1f ms, max %.1f ms", n, achieved, p50, p99, worst)
	}
	b.ReportMetric(p50, "p50-ms")
	b.ReportMetric(p99, "p99-ms")
	b.ReportMetric(worst, "max-ms")
	b.ReportMetric(achieved, "uploads/s")
}
