package pipeline

import (
	"errors"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the Processor's Prometheus collectors. Those of events (events, eventAge, distrusted)
// count processing attempts, not messages or events: Process cannot tell a message's first receive
// from a later one (the consumer's receive count is not given to it), and an attempt only reaches
// the events before the first that fails.
type metrics struct {
	verdicts *prometheus.CounterVec
	eventAge prometheus.Histogram
	inspect  prometheus.Histogram
	events   *prometheus.CounterVec
	// distrusted counts what was not taken at an event's word (trust.go).
	distrusted *prometheus.CounterVec
	// hashWaiting counts the inspections waiting for a hash slot (HashConcurrency).
	hashWaiting prometheus.Gauge
	// handOffs counts the hashes handed off, or not (ProcessorConfig.HashHandOff), by result.
	handOffs *prometheus.CounterVec
}

// Results of a hash hand-off (intake_hashes_handed_off_total's result label).
const (
	handOffQueued    = "queued"
	handOffDuplicate = "duplicate"
	handOffFailed    = "failed"
)

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		verdicts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "intake_verdicts_total",
			Help: "Verdicts recorded, by verdict (valid, rejected, missing) and reason (none when valid); duplicate and stale events, and intake's own records (quarantined copies, sources moved to quarantine), are not counted.",
		}, []string{"verdict", "reason"}),
		eventAge: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "intake_event_age_seconds",
			Help:    "Time from an S3 event to a processing attempt that reached it, observed on every attempt: an event of a message retried or redelivered (a later event of its body failed, an outage, a lost ack) is observed again, older.",
			Buckets: []float64{0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 4 * 3600, 24 * 3600},
		}),
		inspect: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "intake_inspect_seconds",
			Help:    "Duration of one object inspection (HEAD, sniff, optional hash).",
			Buckets: []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300},
		}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "intake_events_total",
			Help: "S3 events reached by processing attempts, by kind (created, removed, tagging, acl, test, unknown): counted on every attempt, so the events of a message retried or redelivered (a later event of its body failed, an outage, a lost ack) are counted again.",
		}, []string{"kind"}),
		distrusted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "intake_events_distrusted_total",
			Help: "What was not taken at an event's word, by reason, counted on every processing attempt (a message refused for foreign_bucket once per receive until it is dead-lettered: maxReceiveCount times under a redrive policy): foreign_bucket (message or inspection refused), removal_unconfirmed (S3 still has the object: not marked deleted), sequencer_implausible (longer than " + strconv.Itoa(MaxPlausibleSequencer) + " digits or not hexadecimal: ignored), event_time_future (clamped to now).",
		}, []string{"reason"}),
		hashWaiting: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "intake_hashes_waiting",
			Help: "Inspections waiting for a hash slot (INTAKE_CONSUMER_HASH_CONCURRENCY hashes run at once): when it stays up, hashes are the bottleneck, and other events wait behind them for a worker.",
		}),
		handOffs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "intake_hashes_handed_off_total",
			Help: "Hash hand-offs tried (INTAKE_CONSUMER_HASH_HANDOFF: an event's hash of an object over 16 MiB that found every slot busy, or any hash that would outlast what is left of its message), by result: queued (recorded in PostgreSQL and queued as an object:inspect task, or such a task not yet started was already there: the message is done), duplicate (the object's inspection is running or archived, or its state could not be read: the event is inspected in its message) or failed (no active jobs server works intake-default, or Redis or PostgreSQL refused or did not answer within 5 s: the event is inspected in its message). One event may be counted twice (too long for its message, then slots busy).",
		}, []string{"result"}),
	}
	if reg == nil {
		m.initLabels()
		return m, nil
	}
	// Several processors may share a registry (consumer and jobs roles in
	// one process): reuse the collectors registered first.
	var err error
	m.verdicts, err = register(reg, m.verdicts)
	if err != nil {
		return nil, err
	}
	m.eventAge, err = register(reg, m.eventAge)
	if err != nil {
		return nil, err
	}
	m.inspect, err = register(reg, m.inspect)
	if err != nil {
		return nil, err
	}
	m.events, err = register(reg, m.events)
	if err != nil {
		return nil, err
	}
	m.distrusted, err = register(reg, m.distrusted)
	if err != nil {
		return nil, err
	}
	m.hashWaiting, err = register(reg, m.hashWaiting)
	if err != nil {
		return nil, err
	}
	m.handOffs, err = register(reg, m.handOffs)
	if err != nil {
		return nil, err
	}
	m.initLabels()
	return m, nil
}

// initLabels creates the series that should read 0 before their first event.
func (m *metrics) initLabels() {
	for _, r := range distrustReasons {
		m.distrusted.WithLabelValues(r)
	}
	for _, r := range []string{handOffQueued, handOffDuplicate, handOffFailed} {
		m.handOffs.WithLabelValues(r)
	}
}

// register registers c, or returns the equal collector already registered.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	err := reg.Register(c)
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if existing, ok := are.ExistingCollector.(C); ok {
			return existing, nil
		}
	}
	return c, err
}
