package consumer

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/intakehq/intake/internal/queue"
	"github.com/intakehq/intake/internal/telemetry"
)

type metrics struct {
	received         prometheus.Counter
	acked            prometheus.Counter
	retried          prometheus.Counter
	deferred         prometheus.Counter
	timedOut         prometheus.Counter
	released         prometheus.Counter
	ackFailed        prometheus.Counter
	receiveErrors    prometheus.Counter
	heartbeats       prometheus.Counter
	deadLettered     *prometheus.CounterVec
	checksumMismatch *prometheus.CounterVec
	processing       prometheus.Histogram
	receiveSize      prometheus.Histogram
	deleteSize       prometheus.Histogram
	paused           *prometheus.GaugeVec
	inflight         prometheus.Gauge
	depth            *prometheus.GaugeVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	ns := telemetry.Namespace
	counter := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: name, Help: help})
	}
	m := &metrics{
		received:      counter("messages_received_total", "SQS messages received."),
		acked:         counter("messages_acked_total", "Messages deleted after their effect was committed."),
		retried:       counter("messages_retried_total", "Messages left for redelivery after a retryable failure."),
		deferred:      counter("messages_deferred_total", "Messages hidden until a dependency outage ends (not retries: the message did nothing wrong)."),
		timedOut:      counter("messages_timed_out_total", "Messages whose processing exceeded the message timeout (also counted as retried, deferred when their dependency failed its check, or dead-lettered when given up)."),
		released:      counter("messages_released_total", "Messages returned to the queue unprocessed at shutdown."),
		ackFailed:     counter("messages_ack_failed_total", "Settled messages whose deletion failed for good (they are delivered again)."),
		receiveErrors: counter("consumer_receive_errors_total", "Failed ReceiveMessage calls."),
		heartbeats:    counter("consumer_heartbeats_total", "Visibility extensions of messages processed for long."),
		deadLettered: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "messages_dead_lettered_total",
			Help: "Messages that failed permanently or exhausted their retries: sent to the DLQ and deleted, or on their last receive before the redrive policy moves them.",
		}, []string{"reason"}),
		checksumMismatch: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "messages_checksum_mismatch_total",
			Help: "Received messages whose digest did not match: body (left in the queue, received again after its visibility timeout) or attributes (processed: only the body is used).",
		}, []string{"digest"}),
		processing: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: ns, Name: "message_processing_seconds", Help: "Time spent processing one message.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300},
		}),
		receiveSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: ns, Name: "consumer_receive_batch_messages",
			Help:    "Messages returned by one non-empty ReceiveMessage call (small batches mean busy workers, not an empty queue).",
			Buckets: []float64{1, 2, 3, 5, 8, 10},
		}),
		deleteSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: ns, Name: "consumer_delete_batch_messages", Help: "Entries in one DeleteMessageBatch call.",
			Buckets: []float64{1, 2, 3, 5, 8, 10},
		}),
		paused: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: ns, Name: "consumer_paused",
			Help: "1 while receivers are paused by an outage of the dependency (postgres, s3; sqs when deletions keep failing; unknown when the error did not say).",
		}, []string{"dependency"}),
		inflight: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "consumer_inflight", Help: "Messages being processed."}),
		depth: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: ns, Name: "queue_depth", Help: "Approximate number of messages in the queues (GetQueueAttributes).",
		}, []string{"queue", "state"}),
	}
	m.deadLettered.WithLabelValues("permanent") // export the usual series at 0
	m.deadLettered.WithLabelValues(reasonRetriesExhausted)
	m.checksumMismatch.WithLabelValues(queue.DigestBody)
	m.checksumMismatch.WithLabelValues(queue.DigestAttributes)
	if reg == nil {
		return m, nil
	}
	var errs []error
	for _, c := range []prometheus.Collector{
		m.received, m.acked, m.retried, m.deferred, m.timedOut, m.released, m.ackFailed, m.receiveErrors, m.heartbeats,
		m.deadLettered, m.checksumMismatch, m.processing, m.receiveSize, m.deleteSize, m.paused, m.inflight, m.depth,
	} {
		if err := reg.Register(c); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("consumer: register metrics: %w", err)
	}
	return m, nil
}
