package pipeline

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image"
	_ "image/gif"  // image.DecodeConfig for GIF
	_ "image/jpeg" // image.DecodeConfig for JPEG
	_ "image/png"  // image.DecodeConfig for PNG
	"strings"
	"time"

	"github.com/gabriel-vasile/mimetype"
)

// SniffLen is how many leading bytes of an object are read (one ranged GET)
// to sniff its type and, for PNG, JPEG and GIF, its dimensions. It is
// mimetype's read limit (4096 in v1.4.16; intake never calls mimetype.SetLimit):
// mimetype's JSON detector (and others that parse, such as CSV's) takes an
// input shorter than the limit for the whole file, so a shorter prefix of a
// longer JSON document would not parse and be sniffed as text/plain.
// TestSniffLenIsMimetypeLimit ties the two.
const SniffLen = 4096

// inspectAttempts bounds how often an inspection restarts when the object
// changes under it (a read through an ObjectRef fails with ErrChanged).
const inspectAttempts = 3

// inspection is what the Processor learned about one object.
type inspection struct {
	// found is false when HEAD said 404.
	found bool
	info  ObjectInfo
	// quarantined is true for an object under a quarantine prefix; nothing
	// past HEAD is done for it.
	quarantined bool
	sniffed     *mimetype.MIME
	width       int
	height      int
	sha256      []byte
	rule        Rule
	hasRule     bool
	verdict     verdict
}

// ref names the inspected content.
func (in *inspection) ref(bucket, key string) ObjectRef {
	return ObjectRef{Bucket: bucket, Key: key, VersionID: in.info.VersionID, ETag: in.info.ETag}
}

// inspect looks at the object and judges it, restarting from HEAD when the
// object is replaced while being read.
//
// With ev (an event's inspection, which may be handed off), a hash that would wait for a slot is
// handed off ([ProcessorConfig.HashHandOff]): inspect then returns errHandedOff.
func (p *Processor) inspect(ctx context.Context, bucket, key string, intent *Intent, ev *HandedOff) (*inspection, error) {
	var err error
	for range inspectAttempts {
		var in *inspection
		in, err = p.inspectOnce(ctx, bucket, key, intent, ev)
		if !errors.Is(err, ErrChanged) {
			return in, err
		}
		p.log.DebugContext(ctx, "object changed during inspection; starting over", "bucket", bucket, "key", key)
	}
	return nil, fmt.Errorf("inspect %s/%s: changed %d times while being read: %w", bucket, key, inspectAttempts, err)
}

// Peeker is an optional [ObjectStore] extension: one request that returns the object's metadata
// and its first n bytes (a ranged GET carries both), saving the HEAD on the hot path.
type Peeker interface {
	// Peek returns the metadata and the first n bytes (fewer if the object is shorter). The
	// metadata must describe the bytes returned: when it cannot vouch for that (an empty object's
	// ranged GET answered 416 and a later HEAD shows another object), Peek returns [ErrChanged],
	// and the inspection starts over.
	Peek(ctx context.Context, bucket, key string, n int) (ObjectInfo, []byte, error)
}

// headAndPrefix learns the object's metadata and, unless skipPrefix, its first SniffLen bytes:
// with one Peek when the store offers it, else HEAD then a ranged GET of that content.
func (p *Processor) headAndPrefix(ctx context.Context, bucket, key string, skipPrefix bool) (ObjectInfo, []byte, error) {
	if pk, ok := p.objects.(Peeker); ok && !skipPrefix {
		return pk.Peek(ctx, bucket, key, SniffLen)
	}
	info, err := p.objects.Head(ctx, bucket, key)
	if err != nil || skipPrefix || info.Size == 0 {
		return info, nil, err
	}
	ref := ObjectRef{Bucket: bucket, Key: key, VersionID: info.VersionID, ETag: info.ETag}
	prefix, err := p.objects.ReadPrefix(ctx, ref, SniffLen)
	return info, prefix, err
}

func (p *Processor) inspectOnce(ctx context.Context, bucket, key string, intent *Intent, ev *HandedOff) (*inspection, error) {
	quarantined := p.quarantined(key)
	info, prefix, err := p.headAndPrefix(ctx, bucket, key, quarantined)
	if errors.Is(err, ErrNotFound) {
		return &inspection{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("inspect %s/%s: %w", bucket, key, err)
	}
	in := &inspection{found: true, info: info}
	if quarantined {
		in.quarantined = true
		in.verdict = verdict{status: StatusRejected, reason: ReasonQuarantined}
		return in, nil
	}
	in.rule, in.hasRule = p.policy.For(key)
	ref := in.ref(bucket, key)
	in.sniffed = mimetype.Detect(prefix)
	if t := MediaType(in.sniffed.String()); t == "image/png" || t == "image/jpeg" || t == "image/gif" {
		// Cheap only: a JPEG whose frame header lies past the prefix (big
		// EXIF block) has no recorded dimensions.
		if cfg, _, err := image.DecodeConfig(bytes.NewReader(prefix)); err == nil {
			in.width, in.height = cfg.Width, cfg.Height
		}
	}

	in.verdict = judge(info, intent, in.rule, in.hasRule, in.sniffed)
	declaredHash := intent != nil && intent.SHA256 != nil
	wantHash := declaredHash || (p.hashMaxSize > 0 && info.Size <= p.hashMaxSize)
	if in.verdict.status == StatusValid && wantHash {
		release, err := p.hashTurn(ctx, info.Size, intent, ev)
		if errors.Is(err, errHandedOff) {
			return nil, err
		}
		if err != nil {
			return nil, fmt.Errorf("inspect %s/%s: %w", bucket, key, err)
		}
		sum, n, err := func() ([]byte, int64, error) {
			defer release() // a panicking store gives its slot back too (the consumer recovers it)
			return p.objects.Hash(ctx, ref)
		}()
		if errors.Is(err, ErrNotFound) {
			// Deleted since it was peeked at: start over from HEAD, which records it missing.
			return nil, fmt.Errorf("hash %s/%s: gone since inspected (%v): %w", bucket, key, err, ErrChanged)
		}
		if err != nil {
			return nil, fmt.Errorf("inspect %s/%s: %w", bucket, key, err)
		}
		if n != info.Size {
			return nil, fmt.Errorf("hash %s/%s: read %d bytes of %d: %w", bucket, key, n, info.Size, ErrChanged)
		}
		in.sha256 = sum
		in.verdict = checkHash(intent, sum)
	}
	return in, nil
}

// errHandedOff is returned by inspect when the hash was handed off (hashTurn): the inspection
// queued in its place records the verdict.
var errHandedOff = errors.New("inspection handed off")

// hashTurn waits for a hash slot (ProcessorConfig.HashConcurrency) within ctx for an object of
// size bytes, and returns its release. The slots are shared fairly between owners (the intent's
// Owner; objects without an intent form one group): a slot freed goes to the waiting owner holding
// the fewest (hashGate), so one owner's many large uploads do not hold back another's past its
// message timeout. An object of at most p.hashSlotMin bytes takes none: its hash is a GET's
// latency, not a share of the bandwidth, and bounding those would only cap the throughput of a
// consumer hashing small objects (INTAKE_CONSUMER_HASH_MAX_SIZE) at a round trip.
//
// With ev (an event's inspection) and a hand-off configured, an inspection that finds no slot
// free at once (or others already waiting: it does not pass them) is queued elsewhere instead of
// waiting (HashHandOff), and hashTurn returns errHandedOff; so is one whose hash would not end
// within what is left of ctx at p.hashRate (an object too large for the message's timeout, which
// would run out of it at every receive until dead-lettered). When the hand-off queues nothing, it
// waits (and hashes) as without one.
func (p *Processor) hashTurn(ctx context.Context, size int64, intent *Intent, ev *HandedOff) (release func(), err error) {
	mayHandOff := ev != nil && p.handOff != nil
	if mayHandOff && p.outlasts(ctx, size) {
		long := *ev
		long.Outlasts = true
		if p.handOffHash(ctx, long, size, "too large for the message's time") {
			return nil, errHandedOff
		}
	}
	if p.hashSlots == nil || size <= p.hashSlotMin {
		return func() {}, nil
	}
	var owner string
	if intent != nil {
		owner = intent.Owner
	}
	if !mayHandOff {
		return p.hashSlots.acquire(ctx, owner)
	}
	if release, ok := p.hashSlots.tryAcquire(owner); ok {
		return release, nil
	}
	if p.handOffHash(ctx, *ev, size, "hash slots busy") {
		return nil, errHandedOff
	}
	return p.hashSlots.acquire(ctx, owner)
}

// outlasts reports whether hashing size bytes at p.hashRate would take longer than what is left
// of ctx.
func (p *Processor) outlasts(ctx context.Context, size int64) bool {
	deadline, ok := ctx.Deadline()
	if !ok {
		return false
	}
	left := time.Until(deadline)
	return left <= 0 || float64(size)/float64(p.hashRate) > left.Seconds()
}

// handOffTimeout bounds one hand-off (a Redis round trip): an unreachable queue must not take the
// message's time, which its hash, waiting for a slot instead, still needs.
const handOffTimeout = 5 * time.Second

// handOffHash queues the inspection of ev's object, of size bytes, elsewhere (HashHandOff), for
// why, and reports whether it did.
func (p *Processor) handOffHash(ctx context.Context, ev HandedOff, size int64, why string) bool {
	bucket, key := ev.Bucket, ev.Key
	ev.HashTime = time.Duration(float64(size) / float64(p.hashRate) * float64(time.Second))
	hctx, cancel := context.WithTimeout(ctx, handOffTimeout)
	defer cancel()
	queued, err := p.handOff.InspectLater(hctx, ev)
	switch {
	case err != nil:
		p.m.handOffs.WithLabelValues(handOffFailed).Inc()
		p.log.WarnContext(ctx, "hash hand-off failed; the event waits for a hash slot instead", "bucket", bucket, "key", key, "err", err)
		return false
	case !queued:
		p.m.handOffs.WithLabelValues(handOffDuplicate).Inc()
		p.log.DebugContext(ctx, "an inspection of the object is already queued or running; the event waits for a hash slot", "bucket", bucket, "key", key)
		return false
	}
	p.m.handOffs.WithLabelValues(handOffQueued).Inc()
	p.log.DebugContext(ctx, "inspection handed off", "why", why, "bucket", bucket, "key", key)
	return true
}

// quarantined reports whether key lies under a rule's quarantine prefix.
func (p *Processor) quarantined(key string) bool {
	for _, r := range p.policy.Rules {
		if r.QuarantinePrefix != "" && strings.HasPrefix(key, r.QuarantinePrefix) {
			return true
		}
	}
	return false
}
