package pipeline

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"time"
)

// ReasonForeignBucket is the [Refusal.Reason] (and the consumer's dead-letter reason label) of an
// event, message or task naming a bucket intake is not configured for.
const ReasonForeignBucket = "foreign_bucket"

// Reasons counted by intake_events_distrusted_total: what the Processor did not take at an event's
// word.
const (
	// DistrustForeignBucket: the message named a bucket intake is not configured for; it was
	// refused whole (dead-lettered) before anything was looked at.
	DistrustForeignBucket = ReasonForeignBucket
	// DistrustRemovalUnconfirmed: a removal event whose object S3 still has; it was not marked
	// deleted (the deletion of one version has the object looked at again, which records another
	// version S3 now holds, and changes nothing otherwise).
	DistrustRemovalUnconfirmed = "removal_unconfirmed"
	// DistrustSequencer: a sequencer longer than [MaxPlausibleSequencer] digits, or not
	// hexadecimal; [Decode] dropped it and the event was processed as if it had none.
	DistrustSequencer = "sequencer_implausible"
	// DistrustEventTime: an eventTime further in the future than the tolerance; it was clamped to
	// the time of processing.
	DistrustEventTime = "event_time_future"
)

var distrustReasons = []string{DistrustForeignBucket, DistrustRemovalUnconfirmed, DistrustSequencer, DistrustEventTime}

// MaxPlausibleSequencer is the longest sequencer intake keeps, in hexadecimal digits: [Decode]
// drops a longer one, or one holding anything but hexadecimal digits. The AWS
// documentation's examples have 18 and 16 ("0055AED6DCD90281E5", "617f08299329d189"); MinIO sends
// its modification time in nanoseconds, unpadded ("18EB24A6C331BBF0": 16 digits until the year
// 2554). Twice that leaves room for other stores; a longer one (such as 64 "F"s) is forged.
const MaxPlausibleSequencer = 32

// DefaultEventTimeTolerance is how far in the future an event's time may lie before it is clamped.
const DefaultEventTimeTolerance = 5 * time.Minute

// Refusal is a permanent failure with a stable, low-cardinality reason: the message or task can
// never be processed and is dead-lettered (or archived) at once. errors.Is(r, ErrPermanent) is
// true; DeadLetterReason gives the consumer's reason label.
type Refusal struct {
	// Reason is a stable label, such as [ReasonForeignBucket].
	Reason string
	// Detail says what was refused.
	Detail string
}

// Error implements error.
func (r *Refusal) Error() string { return r.Detail + " (" + r.Reason + ")" }

// Is makes errors.Is(r, ErrPermanent) true.
func (r *Refusal) Is(target error) bool { return target == ErrPermanent }

// DeadLetterReason is the reason label the consumer gives the dead-lettered message.
func (r *Refusal) DeadLetterReason() string { return r.Reason }

// checkBucket refuses a bucket intake is not configured for.
func (p *Processor) checkBucket(bucket string) error {
	if slices.Contains(p.buckets, bucket) {
		return nil
	}
	return &Refusal{Reason: ReasonForeignBucket, Detail: fmt.Sprintf("bucket %q is not one intake is configured for", bucket)}
}

// checkBuckets refuses events naming a bucket intake is not configured for; test events, which
// carry no object, and events intake does not act on that name no bucket are exempt. One foreign
// event refuses the whole message before anything of it is processed.
func (p *Processor) checkBuckets(events []Event) error {
	for i, ev := range events {
		if ev.Kind == KindTest || (ev.Kind == KindUnknown && ev.Bucket == "") {
			continue
		}
		if err := p.checkBucket(ev.Bucket); err != nil {
			return fmt.Errorf("event %d (%s %s): %w", i, ev.Name, ev.Key, err)
		}
	}
	return nil
}

// plausibleSequencer reports whether s is a sequencer intake keeps: empty, or 1 to
// MaxPlausibleSequencer hexadecimal digits.
func plausibleSequencer(s string) bool {
	if len(s) > MaxPlausibleSequencer {
		return false
	}
	_, ok := SequencerKey(s)
	return ok
}

// distrust returns ev with what cannot be believed removed: a sequencer no S3 sends (which Decode
// already dropped) is counted, and an eventTime further than the tolerance in the future is
// clamped to now. Neither decides what a row says (observations do; see "Order and idempotency"
// in doc.go): this keeps forged values out of the objects table and the event-age histogram. Its
// warnings name the event themselves: log carries no per-event attributes (a logger built per
// event on the hot path would cost every event for warnings that are rare).
func (p *Processor) distrust(ctx context.Context, log *slog.Logger, ev Event) Event {
	if n := ev.droppedSequencer; n > 0 || !plausibleSequencer(ev.Sequencer) {
		p.m.distrusted.WithLabelValues(DistrustSequencer).Inc()
		log.WarnContext(ctx, "implausible sequencer ignored", "bucket", ev.Bucket, "key", ev.Key, "event", ev.Name,
			"sequencer_length", max(n, len(ev.Sequencer)), "max", MaxPlausibleSequencer)
		ev.Sequencer, ev.droppedSequencer = "", 0
	}
	if now := p.now(); ev.Time.After(now.Add(p.tolerance)) {
		// The logger's attributes only then: this runs for every event.
		ev.Time = p.clampedEventTime(ctx, log.With("bucket", ev.Bucket, "key", ev.Key, "event", ev.Name), ev.Time, now)
	}
	return ev
}

// clampedEventTime counts and logs (to log) an event time t further in the future than the
// tolerance, and returns now, what it is clamped to.
func (p *Processor) clampedEventTime(ctx context.Context, log *slog.Logger, t, now time.Time) time.Time {
	p.m.distrusted.WithLabelValues(DistrustEventTime).Inc()
	log.WarnContext(ctx, "event time in the future clamped to now", "event_time", t, "now", now, "tolerance", p.tolerance)
	return now
}
