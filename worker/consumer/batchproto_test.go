package consumer_test

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/gabriel-vasile/mimetype"

	"github.com/intakehq/intake/internal/gctune"
	"github.com/intakehq/intake/internal/objstore"
	"github.com/intakehq/intake/internal/queue"
	"github.com/intakehq/intake/internal/store"
	"github.com/intakehq/intake/internal/testkit"
	"github.com/intakehq/intake/pipeline"
)

// protoChildEnv selects the batch-per-goroutine prototype in a child (BenchmarkScaleOutBatchProto);
// the queue, bucket and database come from the consumer child's variables.
const protoChildEnv = "INTAKE_BATCHPROTO_CHILD"

// protoLoops is the prototype's concurrency: loops of up to 10 messages each (80 in flight, about
// the consumer's 64 workers).
const protoLoops = 8

// protoChild is a consumer reduced to what the issue calls a lean one, each received batch carried
// through in one goroutine with no hand-off: receive 10, decode, one lookup statement (with the
// database's clock), the ranged GETs one after another, sniff, one record statement, one batched
// delete. It is a measurement, not a consumer: no policy, verdicts, ordering rules, retries,
// heartbeats, metrics or logs.
func protoChild() (childReport, error) {
	var rep childReport
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	gctune.Apply(os.Getenv)
	st, err := store.Open(context.Background(), os.Getenv(childDBEnv))
	if err != nil {
		return rep, err
	}
	defer st.Close()
	lean, err := queue.NewLean(testkit.SQS())
	if err != nil {
		return rep, err
	}
	objs := objstore.NewObjects(testkit.S3())
	queueURL, bucket := os.Getenv(protoChildEnv), os.Getenv(childBucketEnv)
	var processed atomic.Int64
	began := selfUsage()
	err = runAll(protoLoops, func() error {
		for ctx.Err() == nil {
			n, err := protoBatch(ctx, st, lean, objs, queueURL, bucket)
			processed.Add(int64(n))
			if err != nil && ctx.Err() == nil {
				return err
			}
		}
		return nil
	})
	ended := selfUsage()
	rep.CPU, rep.Switches = ended.cpu-began.cpu, ended.switches.sub(began.switches)
	rep.Processed = processed.Load()
	rep.Acked = float64(rep.Processed)
	return rep, err
}

func protoBatch(ctx context.Context, st *store.Store, lean *queue.Lean, objs *objstore.Objects, queueURL, bucket string) (int, error) {
	out, err := lean.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: aws.String(queueURL), MaxNumberOfMessages: 10, WaitTimeSeconds: 1})
	if err != nil || len(out.Messages) == 0 {
		return 0, err
	}
	// A batch received is carried through to its delete, SIGTERM or not (as the consumer finishes
	// its in-flight messages): the parent stops the children as soon as every row is recorded, and a
	// batch cut between its record and its delete went uncounted (4,980 processed of 5,000).
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	keys := make([]string, 0, len(out.Messages))
	for _, m := range out.Messages {
		evs, err := pipeline.Decode([]byte(aws.ToString(m.Body)))
		if err != nil {
			return 0, err
		}
		for _, ev := range evs {
			keys = append(keys, ev.Key)
		}
	}
	var at time.Time
	var intents int
	if err := st.Pool.QueryRow(ctx, `SELECT now(), count(*) FROM uploads WHERE bucket = $1 AND key = ANY($2)`, bucket, keys).Scan(&at, &intents); err != nil {
		return 0, fmt.Errorf("lookup: %w", err)
	}
	etags, sizes, sniffed := make([]string, len(keys)), make([]int64, len(keys)), make([]string, len(keys))
	for i, k := range keys {
		info, prefix, err := objs.Peek(ctx, bucket, k, pipeline.SniffLen)
		if err != nil {
			return 0, err
		}
		etags[i], sizes[i], sniffed[i] = info.ETag, info.Size, mimetype.Detect(prefix).String()
	}
	_, err = st.Pool.Exec(ctx, `INSERT INTO objects (bucket, key, etag, size, sniffed_type, status, updated_at)
		SELECT $1, k, e, s, t, 'valid', $6 FROM unnest($2::text[], $3::text[], $4::int8[], $5::text[]) AS u(k, e, s, t)
		ON CONFLICT (bucket, key) DO UPDATE SET etag = excluded.etag, size = excluded.size, sniffed_type = excluded.sniffed_type,
			status = excluded.status, updated_at = excluded.updated_at`, bucket, keys, etags, sizes, sniffed, at)
	if err != nil {
		return 0, fmt.Errorf("record: %w", err)
	}
	entries := make([]types.DeleteMessageBatchRequestEntry, len(out.Messages))
	for i, m := range out.Messages {
		entries[i] = types.DeleteMessageBatchRequestEntry{Id: aws.String(fmt.Sprint(i)), ReceiptHandle: m.ReceiptHandle}
	}
	del, err := lean.DeleteMessageBatch(ctx, &sqs.DeleteMessageBatchInput{QueueUrl: aws.String(queueURL), Entries: entries})
	if err != nil {
		return 0, err
	}
	if len(del.Failed) > 0 {
		return 0, fmt.Errorf("delete: %d failed", len(del.Failed))
	}
	return len(out.Messages), nil
}

// BenchmarkScaleOutBatchProto drains the same queue of 5,000 events as BenchmarkScaleOut, in the
// same order of one and two processes, with the prototype of protoChild instead of the consumer: it
// asks whether a consumer without hand-offs between goroutines pays less for being split in two.
func BenchmarkScaleOutBatchProto(b *testing.B) {
	e := newBenchEnv(b, benchEvents)
	for range b.N {
		var runs [3][]scaleOutRun
		for _, procs := range scaleOutOrder {
			queueURL := e.queueOfEvents(b, benchEvents)
			st := testkit.DB(b)
			began := time.Now()
			children := make([]*child, procs)
			for i := range children {
				children[i] = startChild(b, fmt.Sprintf("proto-%dproc-%d-%d", procs, runID.Add(1), i), queueURL, e.bucket, st, protoChildEnv+"="+queueURL)
			}
			for countValid(b, st) < benchEvents {
				if time.Since(began) > scaleOutTimeout {
					b.Fatalf("prototype: %d of %d recorded", countValid(b, st), benchEvents)
				}
				time.Sleep(20 * time.Millisecond)
			}
			run := scaleOutRun{procs: procs, took: time.Since(began)}
			var processed int64
			for _, c := range children {
				rep := c.stop(b)
				run.cpu += rep.CPU
				run.sw = run.sw.add(rep.Switches)
				processed += rep.Processed
			}
			if processed != benchEvents {
				b.Fatalf("prototype, %d processes: %d processed, want %d", procs, processed, benchEvents)
			}
			runs[procs] = append(runs[procs], run)
		}
		reportSplit(b, "prototype", "proto-", "event", runs, benchEvents)
	}
}
