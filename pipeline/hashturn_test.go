package pipeline_test

import (
	"context"
	"crypto/sha256"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/intakehq/intake/internal/objstore"
	"github.com/intakehq/intake/pipeline"
)

// gatedHashes is the real object store (MinIO) whose hashes wait at gate before reading,
// counting how many run at once.
type gatedHashes struct {
	pipeline.ObjectStore
	gate chan struct{}

	mu            sync.Mutex
	running, most int
	started       []string // the keys whose hash started, in order
}

func (g *gatedHashes) Hash(ctx context.Context, obj pipeline.ObjectRef) ([]byte, int64, error) {
	g.mu.Lock()
	g.running++
	g.most = max(g.most, g.running)
	g.started = append(g.started, obj.Key)
	g.mu.Unlock()
	defer func() {
		g.mu.Lock()
		g.running--
		g.mu.Unlock()
	}()
	select {
	case <-g.gate:
	case <-ctx.Done():
		return nil, 0, ctx.Err()
	}
	return g.ObjectStore.Hash(ctx, obj)
}

// startedKeys returns the keys whose hash started, in order.
func (g *gatedHashes) startedKeys() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.Clone(g.started)
}

func (g *gatedHashes) counts() (running, most int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.running, g.most
}

// TestHashConcurrency: hashes read whole objects, and those running at once share the host's
// bandwidth, so HashConcurrency bounds those of objects above HashSlotMinSize: with 2, five inspections that each need a hash run
// two hashes at once, the three others wait their turn (intake_hashes_waiting), and all five are
// recorded with their digests. An inspection whose context ends while it waits fails, saying so,
// and records nothing. Before, every worker's hash ran at once: 64 hashes of large objects each
// took 64 times one's time, all past the message timeout (a review measured 16 hashes of 256 MiB
// at 11.6 times one's time, and none finishing with a timeout 7.7 times one's).
func TestHashConcurrency(t *testing.T) {
	t.Parallel()
	b := setupProc(t, procOpts{})
	gated := &gatedHashes{ObjectStore: objstore.NewObjects(b.s3), gate: make(chan struct{})}
	b.proc = b.newProcessor(t, procOpts{hashMax: 1 << 20, hashes: 2, objects: gated})
	pipeline.SetHashSlotMin(b.proc, 4) // these objects are small: each takes a slot

	const n = 5
	errs := make(chan error, n)
	for i := range n {
		key := fmt.Sprintf("h%d.txt", i)
		b.put(t, key, "text/plain", []byte("hash me "+key))
		go func() { errs <- b.process(t, b.created(key, "0A", t0)) }()
	}
	require.Eventually(t, func() bool {
		running, _ := gated.counts()
		return running == 2 && metricValue(t, b.reg, "intake_hashes_waiting", nil) == n-2
	}, 30*time.Second, 5*time.Millisecond, "two hashes run, three wait")

	// One more, whose context ends while it waits: it fails, and records nothing.
	b.put(t, "late.txt", "text/plain", []byte("too late"))
	ctx, cancel := context.WithTimeout(b.ctx, 200*time.Millisecond)
	defer cancel()
	err := b.proc.Process(ctx, "late", b.created("late.txt", "0A", t0))
	require.ErrorContains(t, err, "wait for a hash slot (2 hashes run at once)")
	require.ErrorIs(t, err, context.DeadlineExceeded)

	close(gated.gate)
	for range n {
		require.NoError(t, <-errs)
	}
	_, most := gated.counts()
	require.Equal(t, 2, most, "hashes run at once")
	require.Zero(t, metricValue(t, b.reg, "intake_hashes_waiting", nil))
	for i := range n {
		key := fmt.Sprintf("h%d.txt", i)
		sum := sha256.Sum256([]byte("hash me " + key))
		row := b.row(t, key)
		require.Equal(t, pipeline.StatusValid, row.Status, key)
		require.Equal(t, sum[:], row.Sha256, key)
	}
	var late int
	require.NoError(t, b.st.Pool.QueryRow(b.ctx, "SELECT count(*) FROM objects WHERE key = 'late.txt'").Scan(&late))
	require.Zero(t, late, "the inspection that gave up its wait recorded nothing")

	// Objects of at most HashSlotMinSize take no slot: their hash is a GET's latency, and bounding
	// them would cap a consumer hashing small objects at a round trip per slot.
	small := &gatedHashes{ObjectStore: objstore.NewObjects(b.s3), gate: make(chan struct{})}
	b.proc = b.newProcessor(t, procOpts{hashMax: 1 << 20, hashes: 2, objects: small})
	for i := range n {
		key := fmt.Sprintf("s%d.txt", i)
		b.put(t, key, "text/plain", []byte("small "+key))
		go func() { errs <- b.process(t, b.created(key, "0A", t0)) }()
	}
	require.Eventually(t, func() bool { running, _ := small.counts(); return running == n }, 30*time.Second, 5*time.Millisecond,
		"every small hash runs at once")
	close(small.gate)
	for range n {
		require.NoError(t, <-errs)
	}
}

// TestHashSlotsFairBetweenOwners: the hash slots are shared fairly between owners. Owner A's
// uploads hold both slots and three more of A's wait; then one of owner B's waits: the first slot
// freed goes to B, which holds none, not to A's next. Before, the slots went in arrival order: one
// owner's 50 large uploads queued another's single one behind them all, past its message timeout,
// retried until dead-lettered.
func TestHashSlotsFairBetweenOwners(t *testing.T) {
	t.Parallel()
	b := setupProc(t, procOpts{})
	gated := &gatedHashes{ObjectStore: objstore.NewObjects(b.s3), gate: make(chan struct{})}
	b.proc = b.newProcessor(t, procOpts{hashes: 2, objects: gated})
	pipeline.SetHashSlotMin(b.proc, 4) // these objects are small: each takes a slot

	// upload stores key with an intent of owner declaring its digest (so it is hashed), and
	// processes its event in a goroutine.
	errs := make(chan error, 6)
	upload := func(owner, key string) {
		content := []byte("hash me " + key)
		sum := sha256.Sum256(content)
		b.put(t, key, "text/plain", content)
		_, err := b.st.Pool.Exec(b.ctx, `INSERT INTO uploads (id, owner, bucket, key, method, filename, content_type, size,
			size_declared, sha256, expires_at)
			VALUES ($1, $2, $3, $4, 'put', 'name', 'text/plain', $5, true, $6, now() + interval '1 hour')`,
			uuid.New(), owner, b.bucket, key, len(content), sum[:])
		require.NoError(t, err)
		go func() { errs <- b.process(t, b.created(key, "0A", t0)) }()
	}
	waiting := func() float64 { return metricValue(t, b.reg, "intake_hashes_waiting", nil) }

	upload("tenant-a", "a0.txt")
	upload("tenant-a", "a1.txt")
	require.Eventually(t, func() bool { running, _ := gated.counts(); return running == 2 }, 30*time.Second, 5*time.Millisecond,
		"A's first two hashes hold both slots")
	for i, key := range []string{"a2.txt", "a3.txt", "a4.txt"} {
		upload("tenant-a", key)
		require.Eventually(t, func() bool { return waiting() == float64(i+1) }, 30*time.Second, 5*time.Millisecond,
			"%s waits", key)
	}
	upload("tenant-b", "b0.txt")
	require.Eventually(t, func() bool { return waiting() == 4 }, 30*time.Second, 5*time.Millisecond, "b0.txt waits")

	gated.gate <- struct{}{} // one of A's hashes runs, and frees its slot
	require.Eventually(t, func() bool { return len(gated.startedKeys()) == 3 }, 30*time.Second, 5*time.Millisecond,
		"the freed slot's hash starts")
	require.Equal(t, "b0.txt", gated.startedKeys()[2], "B, holding no slot, goes before A's next (started: %v)", gated.startedKeys())

	close(gated.gate)
	for range 6 {
		require.NoError(t, <-errs)
	}
	require.Len(t, gated.startedKeys(), 6)
	require.Zero(t, waiting())
	for _, key := range []string{"a0.txt", "a1.txt", "a2.txt", "a3.txt", "a4.txt", "b0.txt"} {
		row := b.row(t, key)
		require.Equal(t, pipeline.StatusValid, row.Status, key)
		require.NotNil(t, row.Owner, key)
		require.Equal(t, map[bool]string{true: "tenant-b", false: "tenant-a"}[key == "b0.txt"], *row.Owner, key)
	}
}

// panicOnce is the real object store whose first hash panics.
type panicOnce struct {
	pipeline.ObjectStore
	once sync.Once
}

func (p *panicOnce) Hash(ctx context.Context, obj pipeline.ObjectRef) ([]byte, int64, error) {
	p.once.Do(func() { panic("the store broke") })
	return p.ObjectStore.Hash(ctx, obj)
}

// TestHashSlotFreedByPanic: a hash that panics (the consumer recovers it and retries the message)
// gives its slot back: with one slot, the next hash runs.
func TestHashSlotFreedByPanic(t *testing.T) {
	t.Parallel()
	b := setupProc(t, procOpts{})
	b.proc = b.newProcessor(t, procOpts{hashMax: 1 << 20, hashes: 1, objects: &panicOnce{ObjectStore: objstore.NewObjects(b.s3)}})
	pipeline.SetHashSlotMin(b.proc, 4)
	b.put(t, "p.txt", "text/plain", []byte("panics"))
	b.put(t, "q.txt", "text/plain", []byte("hashes"))
	require.Panics(t, func() { _ = b.process(t, b.created("p.txt", "0A", t0)) })

	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	require.NoError(t, b.proc.Process(ctx, "q", b.created("q.txt", "0A", t0)), "the slot the panic held is free")
}
