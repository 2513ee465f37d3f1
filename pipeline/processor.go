package pipeline

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
)

// Tags set on rejected objects by [ActionTag].
const (
	TagStatus = "intake-status"
	TagReason = "intake-reason"
)

// ProcessorConfig configures a [Processor].
type ProcessorConfig struct {
	// Objects reads and acts on S3 objects (required).
	Objects ObjectStore
	// Records stores intents, object rows and archived events (required).
	Records RecordStore
	// Buckets are the buckets intake serves (required; the daemon passes INTAKE_BUCKET). An event,
	// message or inspection naming another bucket is refused with a [Refusal] of reason
	// [ReasonForeignBucket]: nothing of it is looked at, recorded or acted on.
	Buckets []string
	// EventTimeTolerance is how far in the future an event's time may lie before it is clamped to
	// the time of processing (0 means [DefaultEventTimeTolerance]).
	EventTimeTolerance time.Duration
	// Policy is the validation policy; nil means [DefaultPolicy]. The
	// Processor validates and keeps a copy.
	Policy *Policy
	// Log receives the Processor's logs; nil discards them.
	Log *slog.Logger
	// Registerer receives the intake_* metrics; nil means no metrics.
	Registerer prometheus.Registerer
	// HashMaxSize computes the SHA-256 of objects up to this size even when
	// their intent declared none (0 = only when the intent declared one).
	HashMaxSize int64
	// HashConcurrency bounds the hashes of objects larger than [HashSlotMinSize] run at once (0:
	// no bound); an inspection that needs one more waits for its turn, within its context. Hashes read whole objects, and those running at
	// once share the host's bandwidth: without a bound, 64 workers' hashes of large objects each
	// ran 64 times slower than one alone, all past their message timeout, and were retried, all
	// again, until dead-lettered. With one, some finish at each round, and the others after them.
	// The slots are shared fairly between owners (the intent's Owner; objects without an intent
	// form one group): a slot freed goes to the waiting owner holding the fewest, so one owner's
	// many large uploads cannot queue another owner's upload behind them all.
	HashConcurrency int
	// HashHandOff, when set (with HashConcurrency), takes out of an event's message the
	// inspection of an object whose hash would wait for a slot: when no slot is free at once, the
	// inspection is queued there ([HashHandOff.InspectLater]) and the event is done, nothing
	// recorded yet; the queued inspection records the verdict. Such a message neither runs out of
	// its timeout behind a backlog of large hashes (and is retried toward the dead-letter queue)
	// nor holds a consumer worker that other events need. So is the inspection of an object whose
	// hash would not end within what is left of the message's time at [HashRate] (the size
	// [Policy.HashWarnings] warns of), whatever the slots: it would run out of time at every
	// receive until dead-lettered. When the hand-off queues nothing (the object's inspection is
	// running or archived, no jobs server is active, or it failed), the event waits for its turn
	// as without one. Inspections without an event
	// ([Processor.InspectObject]: reconcile's, the object:inspect task's) are never handed off.
	HashHandOff HashHandOff
	// Archive stores every raw message body in the events table.
	Archive bool
	// Multipart, when set, is told when a multipart upload completed, so its
	// delayed abort task can be cancelled.
	Multipart MultipartCanceller
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Processor runs S3 events through inspection, validation, recording and
// action. It is safe for concurrent use; see the package documentation,
// section "Processing", for the rules it follows.
type Processor struct {
	objects     ObjectStore
	records     RecordStore
	buckets     []string
	tolerance   time.Duration
	policy      *Policy
	log         *slog.Logger
	m           *metrics
	hashMaxSize int64
	// hashSlots holds HashConcurrency slots, shared fairly between owners; nil: no bound.
	// Objects of at most hashSlotMin bytes take none (hashTurn).
	hashSlots   *hashGate
	hashSlotMin int64
	handOff     HashHandOff
	// hashRate is the rate at which a hash is assumed to read (HashRate; tests change it): an
	// event's hash that would not end within its context at it is handed off.
	hashRate  int64
	archive   bool
	multipart MultipartCanceller
	now       func() time.Time
}

// HashSlotMinSize is the largest object whose hash runs without taking one of HashConcurrency's
// slots: reading it is about one GET's latency, not a share of the host's bandwidth.
const HashSlotMinSize = 16 << 20

// NewProcessor checks cfg and returns a Processor.
func NewProcessor(cfg ProcessorConfig) (*Processor, error) {
	var errs []error
	if cfg.Objects == nil {
		errs = append(errs, errors.New("object store (Objects) is required"))
	}
	if cfg.Records == nil {
		errs = append(errs, errors.New("record store (Records) is required"))
	}
	if len(cfg.Buckets) == 0 || slices.Contains(cfg.Buckets, "") {
		errs = append(errs, errors.New("buckets (Buckets) are required, none empty"))
	}
	if cfg.HashMaxSize < 0 {
		errs = append(errs, errors.New("HashMaxSize must not be negative"))
	}
	if cfg.HashConcurrency < 0 {
		errs = append(errs, errors.New("HashConcurrency must not be negative"))
	}
	if cfg.EventTimeTolerance < 0 {
		errs = append(errs, errors.New("EventTimeTolerance must not be negative"))
	}
	policy := cfg.Policy
	if policy == nil {
		policy = DefaultPolicy()
	}
	// Validate fills defaults in place: work on a copy.
	policy = &Policy{Rules: slices.Clone(policy.Rules)}
	if err := policy.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("policy: %w", err))
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		errs = append(errs, fmt.Errorf("register metrics: %w", err))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("pipeline processor: %w", err)
	}
	p := &Processor{
		objects: cfg.Objects, records: cfg.Records, buckets: slices.Clone(cfg.Buckets),
		tolerance: cmp.Or(cfg.EventTimeTolerance, DefaultEventTimeTolerance), policy: policy, log: cfg.Log, m: m,
		hashMaxSize: cfg.HashMaxSize, handOff: cfg.HashHandOff, hashRate: HashRate, archive: cfg.Archive, multipart: cfg.Multipart, now: cfg.Now,
	}
	if cfg.HashConcurrency > 0 {
		p.hashSlots, p.hashSlotMin = newHashGate(cfg.HashConcurrency, m.hashWaiting), HashSlotMinSize
	}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	p.log = slog.New(withLazyAttrs(p.log.Handler()))
	if p.now == nil {
		p.now = time.Now
	}
	return p, nil
}

// Process runs every event of one message body through the pipeline.
// nil: the effect is committed (safe to ack). errors.Is(err, ErrPermanent):
// the body can never succeed (dead-letter it; a [Refusal] says why). Any
// other error: retry later; errors.Is(err, ErrUnavailable) tells that a
// dependency is down.
//
// Events of one body are processed in order; when one fails, the body is
// retried as a whole, which is safe because processing is idempotent. The
// created and removed events of one (bucket, key) in a body are processed as
// one (see coalesce): the object is looked at once, not once per event. A body
// with an event naming a bucket intake is not configured for is refused
// whole, before any of its events is processed. With Archive set, an
// archive failure is logged and does not fail the message, unless it is an
// outage or ctx ended: the message is then retried, to be archived. That
// holds for a refused body too (malformed, or naming a foreign bucket): the
// error then does not wrap ErrPermanent (it wraps the archive's, an
// ErrUnavailable for an outage), so that the body is dead-lettered only
// once a later receive has archived it.
func (p *Processor) Process(ctx context.Context, msgID string, body []byte) error {
	log := p.log.With("msg_id", msgID)
	events, err := Decode(body)
	if err != nil {
		log.WarnContext(ctx, "malformed message body", "err", err)
		if aerr := p.archiveRefused(ctx, log, msgID, "malformed", body); aerr != nil {
			return fmt.Errorf("message %s, refused (%v), not archived; retried to archive it: %w", msgID, err, aerr)
		}
		return err
	}
	if err := p.checkBuckets(events); err != nil {
		p.m.distrusted.WithLabelValues(DistrustForeignBucket).Inc()
		log.WarnContext(ctx, "message refused: foreign bucket", "err", err)
		if aerr := p.archiveRefused(ctx, log, msgID, "refused:"+ReasonForeignBucket, body); aerr != nil {
			return fmt.Errorf("message %s, refused (%v), not archived; retried to archive it: %w", msgID, err, aerr)
		}
		return fmt.Errorf("message %s: %w", msgID, err)
	}
	for i, ev := range events {
		events[i] = p.receive(ctx, log, ev)
	}
	hints := coalesce(events)
	outcomes := make([]string, 0, len(events))
	for i, ev := range events {
		if hints[i] == nil {
			log.DebugContext(ctx, "event superseded by a newer one of the same object in the body", "bucket", ev.Bucket, "key", ev.Key, "event", ev.Name)
			outcomes = append(outcomes, ev.Kind.String()+":superseded")
			continue
		}
		out, err := p.processEvent(ctx, log, ev, hints[i])
		if err != nil {
			return fmt.Errorf("message %s, event %d (%s %s/%s): %w", msgID, i, ev.Name, ev.Bucket, ev.Key, err)
		}
		outcomes = append(outcomes, out)
	}
	if p.archive {
		first := events[0]
		err := p.records.Archive(ctx, ArchivedEvent{
			MessageID: msgID, Bucket: first.Bucket, Key: first.Key, EventName: first.Name,
			Outcome: strings.Join(outcomes, ","), Body: archiveText(body),
		})
		switch {
		case errors.Is(err, ErrUnavailable):
			return fmt.Errorf("message %s: %w", msgID, err)
		case err != nil && ctx.Err() != nil:
			// Cancelled (shutdown, the message's deadline) between the effects' commit and the
			// archive: the store does not call that an outage, but the body was not refused
			// either. Failing the message has it processed again, which is idempotent, and
			// archived then; succeeding would ack it without its archive row.
			return fmt.Errorf("message %s: archive: %w", msgID, err)
		case err != nil:
			// The effects are committed; a body the archive refuses must not
			// block the message.
			log.WarnContext(ctx, "archive message body", "err", err)
		}
	}
	return nil
}

// archiveRefused archives a body that was refused whole, when archiving is on. It returns an error
// (wrapping the archive's, never [ErrPermanent]) when the archive failed because of an outage or
// because ctx ended: the message must then be retried rather than dead-lettered, so that its body
// is archived when it is refused again (and an outage pauses the consumer, as any other would).
// Any other archive failure is logged, and the refusal stands.
func (p *Processor) archiveRefused(ctx context.Context, log *slog.Logger, msgID, outcome string, body []byte) error {
	if !p.archive {
		return nil
	}
	err := p.records.Archive(ctx, ArchivedEvent{MessageID: msgID, Outcome: outcome, Body: archiveText(body)})
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrUnavailable), ctx.Err() != nil:
		log.WarnContext(ctx, "archive refused body failed; the message is retried to archive it", "outcome", outcome, "err", err)
		return fmt.Errorf("archive refused body: %w", err)
	default:
		log.WarnContext(ctx, "archive refused body", "outcome", outcome, "err", err)
		return nil
	}
}

// archiveText is the body as PostgreSQL text: invalid UTF-8 sequences and
// NUL bytes, which text columns refuse, are replaced by U+FFFD.
func archiveText(body []byte) string {
	s := string(body)
	if utf8.ValidString(s) && !strings.ContainsRune(s, 0) {
		return s
	}
	return strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "\uFFFD")
}

// InspectObject re-runs inspection of one object without an event (used by
// reconcile and the object:inspect task). Its record is an observation like
// an event's: it replaces every state observed before it (a row marked
// deleted while the object exists, a row whose event was lost) and loses to
// later ones; a missing object is recorded missing (a row that says deleted
// stays deleted). The record has no sequencer; the object's LastModified is
// its event time. A bucket intake is not configured for is refused with a
// [Refusal] (permanent).
func (p *Processor) InspectObject(ctx context.Context, bucket, key string) error {
	log := p.log.With("bucket", bucket, "key", key, "event", "inspect")
	if err := p.refuseForeign(ctx, log, bucket, key); err != nil {
		return err
	}
	if _, err := p.created(ctx, log, bucket, key, "", time.Time{}, true, false, false); err != nil {
		return fmt.Errorf("inspect %s/%s: %w", bucket, key, err)
	}
	return nil
}

// refuseForeign refuses, with a [Refusal] counted and logged, an inspection of bucket/key in a
// bucket intake is not configured for.
func (p *Processor) refuseForeign(ctx context.Context, log *slog.Logger, bucket, key string) error {
	if err := p.checkBucket(bucket); err != nil {
		p.m.distrusted.WithLabelValues(DistrustForeignBucket).Inc()
		log.WarnContext(ctx, "inspection refused: foreign bucket")
		return fmt.Errorf("inspect %s/%s: %w", bucket, key, err)
	}
	return nil
}

// InspectHandedOff runs an event's inspection that was handed off ([ProcessorConfig.HashHandOff];
// the object:inspect task of the daemon's jobs workers) as the event's processing would have: with
// its sequencer and time, and, when the object is found gone, looking for the quarantined copy a
// crashed earlier run may have moved it to, and recording it deleted where a rule deletes. It is
// never handed off again. A bucket intake is not configured for is refused with a [Refusal].
func (p *Processor) InspectHandedOff(ctx context.Context, h HandedOff) error {
	log := p.log.With("bucket", h.Bucket, "key", h.Key, "event", "handed-off")
	if err := p.refuseForeign(ctx, log, h.Bucket, h.Key); err != nil {
		return err
	}
	// What comes back from Redis is checked as an event is (distrust): it may have been written by
	// another release, or edited.
	seq, ok := SequencerKey(h.Sequencer)
	if !ok {
		p.m.distrusted.WithLabelValues(DistrustSequencer).Inc()
		log.WarnContext(ctx, "implausible sequencer of a handed-off inspection ignored", "sequencer_length", len(h.Sequencer))
		seq = ""
	}
	evTime := h.EventTime
	if now := p.now(); evTime.After(now.Add(p.tolerance)) {
		evTime = p.clampedEventTime(ctx, log, evTime, now)
	}
	if _, err := p.created(ctx, log, h.Bucket, h.Key, seq, evTime, false, h.Removal, false); err != nil {
		return fmt.Errorf("inspect %s/%s: %w", h.Bucket, h.Key, err)
	}
	return nil
}

// receive counts one decoded event and returns it with what cannot be believed removed (see
// distrust).
func (p *Processor) receive(ctx context.Context, log *slog.Logger, ev Event) Event {
	p.m.events.WithLabelValues(ev.Kind.String()).Inc()
	ev = p.distrust(ctx, log, ev)
	if !ev.Time.IsZero() && ev.Kind != KindTest {
		p.m.eventAge.Observe(max(p.now().Sub(ev.Time).Seconds(), 0))
	}
	return ev
}

// lookHint is what the created and removed events of one object in a body ask of the one of them
// that is processed (see coalesce).
type lookHint struct {
	// removal: a removal of the object is among them. A creation that finds no object records it
	// deleted (the 404 confirms the removal), not missing.
	removal bool
	// created is the newest creation of the object among them, nil when none. A removal that
	// finds the object in S3 inspects it as that event would have.
	created *Event
	// reinspect: a removal among them calls for a new look at an object S3 still has
	// (reinspectAfterRemoval).
	reinspect bool
}

// objectKey names one object of one bucket.
type objectKey struct{ bucket, key string }

// coalesce returns, for each event of a body, the hint it is processed with, or nil when another
// event stands for it. Of the created and removed events of one (bucket, key), only the newest is
// processed ([Newer]; of equal ones, the last in the body), at its place in the body, with a hint
// that gathers what the others ask for: the object is then looked at (and, when judged, hashed)
// once, not once per event, and ends in the row processing every event in order would give when
// S3 does not change meanwhile. Events are hints and S3 is the truth: each processing of another
// event of the same object would only look at it again. Other events (test, tagging, ACL,
// unknown), which look at nothing, get an empty hint. S3 sends one record per message; a body
// naming one object many times (up to [MaxRecords]) is forged, or an emulator's.
func coalesce(events []Event) []*lookHint {
	hints := make([]*lookHint, len(events))
	looks := func(ev Event) bool { return ev.Kind == KindCreated || ev.Kind == KindRemoved }
	if len(events) == 1 {
		hints[0] = &lookHint{}
		if looks(events[0]) {
			hints[0].add(&events[0])
		}
		return hints
	}
	newest := make(map[objectKey]int, len(events))
	byKey := make(map[objectKey]*lookHint, len(events))
	for i, ev := range events {
		if !looks(ev) {
			hints[i] = &lookHint{}
			continue
		}
		k := objectKey{ev.Bucket, ev.Key}
		h := byKey[k]
		if h == nil {
			h = &lookHint{}
			byKey[k] = h
		}
		h.add(&events[i])
		if j, ok := newest[k]; !ok || !Newer(events[j], ev) {
			newest[k] = i
		}
	}
	for k, i := range newest {
		hints[i] = byKey[k]
	}
	return hints
}

// add gathers what ev, a created or removed event, asks for.
func (h *lookHint) add(ev *Event) {
	switch ev.Kind {
	case KindRemoved:
		h.removal = true
		h.reinspect = h.reinspect || reinspectAfterRemoval(*ev)
	case KindCreated:
		if h.created == nil || !Newer(*h.created, *ev) {
			h.created = ev
		}
	}
}

// processEvent handles one decoded event, with what the body's other events of its object ask for
// (h), and returns its outcome for the archive.
func (p *Processor) processEvent(ctx context.Context, log *slog.Logger, ev Event, h *lookHint) (string, error) {
	kind := ev.Kind.String()
	log = log.With("bucket", ev.Bucket, "key", ev.Key, "event", ev.Name)
	switch ev.Kind {
	case KindTest:
		log.InfoContext(ctx, "test event acknowledged")
		return kind, nil
	case KindTagging, KindACL:
		// Metadata only (our own tagging action produces these too): the
		// content is unchanged, so the verdict stands.
		log.DebugContext(ctx, "metadata event: not re-inspected")
		return kind + ":ignored", nil
	case KindRemoved:
		return p.removed(ctx, log, ev, false, h)
	case KindCreated:
		seq, _ := SequencerKey(ev.Sequencer) // Decode checked it
		return p.created(ctx, log, ev.Bucket, ev.Key, seq, ev.Time, false, h.removal, true)
	default:
		log.InfoContext(ctx, "event ignored: not one intake acts on")
		return kind + ":ignored", nil
	}
}

// removed records the removal of an object if S3 confirms it is gone: HEAD
// answers 404 (no object, or a delete marker, under the key). The row is
// marked deleted, created if absent (a tombstone: a creation event processed
// concurrently, which looked before the removal, must not outlive it), with
// the owner of the key's intent, whatever the intent's status: a removal read
// alongside a creation still being inspected sees the intent pending, and the
// object did land (recording it missing would let the deletion go unnotified
// after the creation's upload.valid). The event's version id is not recorded:
// the 404 confirms none. The deletion is notified (upload.deleted) only for an
// object intake saw present: a tombstone of an upload that never landed (a
// forged or stray removal) notifies nobody, and a creation that saw the
// object before the removal did, recorded after it, notifies the deletion
// then (see PipelineRecord in internal/store/queries/objects.sql).
//
// An object S3 still has is not marked deleted, whatever the event says (a
// forged or stray event, a removal of an older version, a key written again
// since). After the deletion of one version it is looked at again, as
// [Processor.InspectObject] would (see reinspectAfterRemoval), so that the
// row records what S3 holds now (another version, made current by the
// deletion of the one the row names), which changes nothing when the row
// already says it; when the body also announced the object's creation
// (h.created), it is inspected as that event would have been. h is what the
// body's other events of the object ask for (coalesce); nil: ev alone.
// own is intake's record of its own delete or move
// (recordAction): an object found there is not a sign of a distrusted event.
// When intake deleted one version (ev.VersionID), it is the version that
// deletion made current (or one written since), which no creation event
// announces: it is looked at the same way, so that the row does not keep the
// rejected verdict of a version that no longer exists. Otherwise the key was
// written again after the removal, and the new object's own event records it.
func (p *Processor) removed(ctx context.Context, log *slog.Logger, ev Event, own bool, h *lookHint) (string, error) {
	if h == nil {
		h = &lookHint{}
		h.add(&ev)
	}
	lk, err := p.records.Lookup(ctx, ev.Bucket, ev.Key)
	if err != nil {
		return "", err
	}
	info, err := p.objects.Head(ctx, ev.Bucket, ev.Key)
	switch {
	case err == nil && own && ev.VersionID != "" && info.VersionID != ev.VersionID:
		log.InfoContext(ctx, "intake deleted a version and S3 serves another under the key; recording it", "version_id", ev.VersionID)
		if _, err := p.created(ctx, log, ev.Bucket, ev.Key, "", time.Time{}, true, false, false); err != nil {
			return "", fmt.Errorf("look again at %s/%s after deleting version %s: %w", ev.Bucket, ev.Key, ev.VersionID, err)
		}
		return "removed:reinspected", nil
	case err == nil && own:
		log.InfoContext(ctx, "key written again since intake removed it; its own event records it")
		return "removed:rewritten", nil
	case err == nil:
		if c := h.created; c != nil {
			log.InfoContext(ctx, "removal not confirmed: S3 still has the object; inspecting it for the creation in the same body", "version_id", ev.VersionID, "created_event", c.Name)
			seq, _ := SequencerKey(c.Sequencer)
			if _, err := p.created(ctx, log, ev.Bucket, ev.Key, seq, c.Time, false, false, true); err != nil {
				return "", fmt.Errorf("inspect %s/%s after an unconfirmed removal: %w", ev.Bucket, ev.Key, err)
			}
		} else if h.reinspect {
			log.InfoContext(ctx, "removal not confirmed: S3 still has the object; recording what it holds", "version_id", ev.VersionID)
			if _, err := p.created(ctx, log, ev.Bucket, ev.Key, "", time.Time{}, true, false, false); err != nil {
				return "", fmt.Errorf("look again at %s/%s after an unconfirmed removal: %w", ev.Bucket, ev.Key, err)
			}
		} else {
			log.InfoContext(ctx, "removal not confirmed: S3 still has the object; nothing changed", "version_id", ev.VersionID)
		}
		p.m.distrusted.WithLabelValues(DistrustRemovalUnconfirmed).Inc()
		return "removed:unconfirmed", nil
	case !errors.Is(err, ErrNotFound):
		return "", fmt.Errorf("check removal of %s/%s: %w", ev.Bucket, ev.Key, err)
	}
	seq, _ := SequencerKey(ev.Sequencer)
	rec := Record{
		Bucket: ev.Bucket, Key: ev.Key, Status: StatusDeleted,
		Sequencer: seq, EventTime: ev.Time, ObservedAt: lk.At, Observed: true,
	}
	if intent := lk.Intent; intent != nil {
		rec.Owner, rec.UploadID = intent.Owner, intent.ID
	}
	stored, err := p.records.Record(ctx, rec)
	if err != nil {
		return "", err
	}
	log.InfoContext(ctx, "object removed", "applied", stored.Applied, "status", stored.Status)
	return outcome("removed", StatusDeleted, "", stored.Applied), nil
}

// reinspectAfterRemoval reports whether a removal whose object S3 still has calls for a new look
// at it: the deletion of one version (ObjectRemoved:Delete naming a version id), which makes the
// previous version current when it was the current one. Not for lifecycle expirations (of
// noncurrent versions, in a versioned bucket: every one would re-read, and maybe re-hash, the
// current object) nor for removals without a version id (an unversioned key written again has its
// own creation event; a forged removal changes nothing S3 holds).
func reinspectAfterRemoval(ev Event) bool {
	return ev.VersionID != "" && !strings.HasPrefix(ev.Name, "LifecycleExpiration:")
}

// created inspects the object, records the verdict, then acts on it. For
// InspectObject (synthetic), the event time is the object's LastModified.
// removal tells that the body holds a removal of the object too (coalesce): an
// object S3 does not have is then recorded deleted (a removal the 404
// confirms), not missing.
//
// With handOff (an event's inspection, not one already handed off), a hash that would wait may be
// handed off (ProcessorConfig.HashHandOff): nothing is recorded then.
func (p *Processor) created(ctx context.Context, log *slog.Logger, bucket, key, seq string, evTime time.Time, synthetic, removal, handOff bool) (string, error) {
	lk, err := p.records.Lookup(ctx, bucket, key)
	if err != nil {
		return "", err
	}
	intent := lk.Intent
	start := time.Now()
	var ev *HandedOff
	if handOff && !synthetic {
		ev = &HandedOff{Bucket: bucket, Key: key, Sequencer: seq, EventTime: evTime, Removal: removal, LookedUpAt: lk.At}
	}
	in, err := p.inspect(ctx, bucket, key, intent, ev)
	if errors.Is(err, errHandedOff) {
		// Nothing recorded: the inspection queued in its place records the verdict (and is
		// the one intake_inspect_seconds observes).
		return "created:handed_off", nil
	}
	p.m.inspect.Observe(time.Since(start).Seconds())
	if err != nil {
		return "", err
	}
	if synthetic {
		evTime = in.info.LastModified // zero when missing
	}
	rec := in.record(bucket, key, intent)
	rec.Sequencer, rec.EventTime, rec.ObservedAt, rec.Observed = seq, evTime, lk.At, true
	if !in.found && !synthetic { // reconcile lists the copy itself
		moved, err := p.recordLeftCopy(ctx, bucket, key)
		if err != nil {
			return "", err
		}
		if moved || removal || p.deletes(key) {
			rec.Status, rec.Reason = StatusDeleted, ""
		}
	}
	// Only an object S3 showed completes its upload; an event naming an object S3 does not have
	// proves nothing (a stray or forged CompleteMultipartUpload must not end an upload still in
	// progress, nor cancel its abort). An upload deleted before intake looked keeps its intent
	// pending: the expiry (a multipart upload: its deadline abort) settles it.
	landed := in.found
	if intent != nil && landed {
		rec.CompleteIntent = intent.ID
	}

	// Record first, then act: see "Record, then act" in doc.go.
	stored, err := p.records.Record(ctx, rec)
	if err != nil {
		return "", err
	}
	if stored.Applied && p.countsVerdict(key, rec.Status) {
		p.m.verdicts.WithLabelValues(rec.Status, cmp.Or(rec.Reason, "none")).Inc()
	}
	// A valid object's verdict, newly recorded, is the common case: the row is its record, so the
	// line is debug. Anything else (a rejection, a missing object, an event that changed nothing
	// because a newer observation was recorded) is info.
	level := slog.LevelInfo
	if rec.Status == StatusValid && stored.Applied {
		level = slog.LevelDebug
	}
	if log.Enabled(ctx, level) {
		attrs := []any{"status", rec.Status, "reason", rec.Reason, "applied", stored.Applied}
		if in.verdict.detail != "" {
			attrs = append(attrs, "detail", in.verdict.detail)
		}
		log.Log(ctx, level, "object inspected", attrs...)
	}

	if intent != nil && landed && intent.Method == "multipart" && intent.MultipartUploadID != "" && p.multipart != nil {
		if err := p.multipart.CancelMultipartAbort(ctx, intent.MultipartUploadID); err != nil {
			log.WarnContext(ctx, "cancel multipart abort task", "upload_id", intent.MultipartUploadID, "err", err)
		}
	}

	if p.shouldAct(in, stored) {
		if err := p.act(ctx, log, in, bucket, key); err != nil {
			return "", err
		}
	}
	return outcome("created", rec.Status, rec.Reason, stored.Applied), nil
}

// countsVerdict reports whether a record of key with status is a verdict intake_verdicts_total
// counts (valid, rejected or missing). intake's own records are not: a quarantined copy (any key
// under a quarantine prefix), whose rejection was counted when its source was judged, and the source
// a quarantine moved away (deleted).
func (p *Processor) countsVerdict(key, status string) bool {
	return status != StatusDeleted && !p.quarantined(key)
}

// record turns an inspection into the row to store.
func (in *inspection) record(bucket, key string, intent *Intent) Record {
	rec := Record{Bucket: bucket, Key: key}
	if intent != nil {
		rec.Owner, rec.UploadID = intent.Owner, intent.ID
	}
	if !in.found {
		rec.Status, rec.Reason = StatusMissing, ReasonNotFound
		return rec
	}
	size := in.info.Size
	rec.Size = &size
	rec.VersionID, rec.ETag, rec.ContentType = in.info.VersionID, in.info.ETag, in.info.ContentType
	rec.Status, rec.Reason = in.verdict.status, in.verdict.reason
	if in.sniffed != nil {
		rec.SniffedType = in.sniffed.String()
	}
	rec.SHA256, rec.Width, rec.Height = in.sha256, in.width, in.height
	return rec
}

// shouldAct reports whether the rejected object must be acted on: the
// stored row must say rejected for the very content inspected. That holds
// for a fresh verdict and for a redelivery after a crash between record and
// act (a duplicate, so the row is unchanged but still this content's), and
// fails when a newer event recorded another state.
func (p *Processor) shouldAct(in *inspection, stored Recorded) bool {
	return in.found && !in.quarantined && in.verdict.status == StatusRejected &&
		in.hasRule && in.rule.Action != ActionNone &&
		stored.Status == StatusRejected && stored.ETag == in.info.ETag && stored.VersionID == in.info.VersionID
}

// act applies the rule's action to a rejected object. Every action is
// idempotent and conditional on the inspected content; an object already
// gone or replaced is left alone (its own events will be processed). A
// quarantine whose copy was made before the source turned out replaced or gone
// (between the copy and the delete) still records the copy: nothing else
// would (see recordAction).
func (p *Processor) act(ctx context.Context, log *slog.Logger, in *inspection, bucket, key string) error {
	ref := in.ref(bucket, key)
	var err error
	copied := false
	switch in.rule.Action {
	case ActionTag:
		err = p.objects.Tag(ctx, ref, map[string]string{TagStatus: StatusRejected, TagReason: in.verdict.reason})
	case ActionQuarantine:
		copied, err = p.objects.Move(ctx, ref, in.rule.QuarantinePrefix+key)
	case ActionDelete:
		err = p.objects.Delete(ctx, ref)
	default:
		return nil
	}
	switch {
	case (errors.Is(err, ErrNotFound) || errors.Is(err, ErrChanged)) && copied:
		log.InfoContext(ctx, "rejected object replaced or gone after its quarantine copy was made; the source is left alone, the copy recorded", "err", err)
		return p.recordAction(ctx, in, bucket, key)
	case errors.Is(err, ErrNotFound), errors.Is(err, ErrChanged):
		log.InfoContext(ctx, "rejected object gone or replaced before "+in.rule.Action+"; left alone", "err", err)
		return nil
	case err != nil:
		return fmt.Errorf("%s rejected %s/%s: %w", in.rule.Action, bucket, key, err)
	}
	log.InfoContext(ctx, "acted on rejected object", "action", in.rule.Action, "reason", in.verdict.reason)
	if in.rule.Action == ActionTag {
		return nil
	}
	return p.recordAction(ctx, in, bucket, key)
}

// recordAction records what a quarantine or a delete changed in S3, as S3 shows it now, before the
// message that caused it is acknowledged: the quarantined copy (a HEAD of it; recorded as
// "quarantined") and the source's removal (a HEAD that finds nothing; recorded as "deleted").
// The events S3 sends for both would record the same, but they are hints that may never come:
// MinIO sends an event only when the request's handler returns without error, and a request whose
// client died (a consumer killed during the copy) can commit and still fail. The fault suite lost a
// copy's row that way: the redelivered event's retry found the copy in place, only deleted the
// source, and the copy waited for an event that never came. When the events do come they record
// the same content again and change nothing.
func (p *Processor) recordAction(ctx context.Context, in *inspection, bucket, key string) error {
	event := "intake:" + in.rule.Action
	if in.rule.Action == ActionQuarantine {
		if err := p.recordCopy(ctx, bucket, in.rule.QuarantinePrefix+key, event); err != nil {
			return err
		}
	}
	log := p.log.With("bucket", bucket, "key", key, "event", event)
	// The version intake deleted (in a versioned bucket): removed then looks at the version its
	// deletion made current, which S3 announces with no event.
	ev := Event{Kind: KindRemoved, Name: event, Bucket: bucket, Key: key, VersionID: in.info.VersionID}
	if _, err := p.removed(ctx, log, ev, true, nil); err != nil {
		return fmt.Errorf("record removal of %s/%s: %w", bucket, key, err)
	}
	return nil
}

// recordCopy records the quarantined copy dst as a HEAD shows it now ("quarantined", or missing).
func (p *Processor) recordCopy(ctx context.Context, bucket, dst, event string) error {
	log := p.log.With("bucket", bucket, "key", dst, "event", event)
	if _, err := p.created(ctx, log, bucket, dst, "", time.Time{}, true, false, false); err != nil {
		return fmt.Errorf("record quarantined copy %s/%s: %w", bucket, dst, err)
	}
	return nil
}

// recordLeftCopy records the quarantined copy of key, if S3 holds one, when an event's inspection
// found key itself gone, and reports whether it did. That is the retry of a quarantine whose
// attempt died after the copy and before recording the move: the retry cannot act (nothing left
// to move), and neither the copy's event nor the source's removal event may ever have been sent
// (see recordAction: a request whose client died can commit and still fail, and MinIO then sends
// nothing), so S3 is asked. The caller then records key as deleted (moved away), as recordAction
// would have, instead of missing. A key no quarantine rule covers, or whose copy is not there,
// costs nothing or one HEAD and records nothing.
func (p *Processor) recordLeftCopy(ctx context.Context, bucket, key string) (bool, error) {
	rule, ok := p.policy.For(key)
	if !ok || rule.Action != ActionQuarantine || p.quarantined(key) {
		return false, nil
	}
	dst := rule.QuarantinePrefix + key
	switch _, err := p.objects.Head(ctx, bucket, dst); {
	case errors.Is(err, ErrNotFound):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("look for a quarantined copy %s/%s: %w", bucket, dst, err)
	}
	if err := p.recordCopy(ctx, bucket, dst, "intake:quarantine"); err != nil {
		return false, err
	}
	return true, nil
}

// deletes reports whether key's rule deletes rejected objects. An object such a rule covers that an
// event's inspection finds gone is recorded deleted, not missing: the likeliest cause is intake's
// own delete, on an attempt that died after S3 deleted it and before it was recorded (the attempt
// recorded the rejection first: see "Record, then act"), and neither its removal event (MinIO sends
// none for a request whose client died) nor the retry's record would ever say deleted. Recorded
// missing, the rejected row would turn missing, with no upload.deleted. A row that never saw the
// object present gets no verdict either way (a tombstone).
func (p *Processor) deletes(key string) bool {
	rule, ok := p.policy.For(key)
	return ok && rule.Action == ActionDelete && !p.quarantined(key)
}

// outcome formats an event's outcome for the archive, e.g.
// "created:rejected:sniff_mismatch" or "removed:deleted:stale".
func outcome(kind, status, reason string, applied bool) string {
	parts := []string{kind, status}
	if reason != "" {
		parts = append(parts, reason)
	}
	if !applied {
		parts = append(parts, "stale")
	}
	return strings.Join(parts, ":")
}
