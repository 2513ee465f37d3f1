package pipeline_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/intakehq/intake/internal/objstore"
	"github.com/intakehq/intake/pipeline"
)

// counting is the real object store (Peek included, as the daemon's Processor has it) counting the
// requests that look at objects: Peek and ReadPrefix (ranged GETs), Head, and Hash (a full read).
type counting struct {
	*objstore.Objects
	mu    sync.Mutex
	calls map[string]int
}

func (c *counting) count(name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls[name]++
}

func (c *counting) snapshot() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string]int{}
	for k, v := range c.calls {
		out[k] = v
	}
	clear(c.calls)
	return out
}

func (c *counting) Head(ctx context.Context, bucket, key string) (pipeline.ObjectInfo, error) {
	c.count("head")
	return c.Objects.Head(ctx, bucket, key)
}

func (c *counting) Peek(ctx context.Context, bucket, key string, n int) (pipeline.ObjectInfo, []byte, error) {
	c.count("peek")
	return c.Objects.Peek(ctx, bucket, key, n)
}

func (c *counting) ReadPrefix(ctx context.Context, obj pipeline.ObjectRef, n int) ([]byte, error) {
	c.count("read")
	return c.Objects.ReadPrefix(ctx, obj, n)
}

func (c *counting) Hash(ctx context.Context, obj pipeline.ObjectRef) ([]byte, int64, error) {
	c.count("hash")
	return c.Objects.Hash(ctx, obj)
}

// TestProcessCoalescesEventsOfOneObject: one body naming one object many times (up to MaxRecords:
// forged through the ingress token, or an emulator's batch) looks at the object once, not once per
// record: before, 100 ObjectRemoved:Delete naming a version of a live object, or 100
// ObjectCreated, ran 100 inspections, each reading the whole object for its SHA-256, and again on
// each of the message's receives. The newest event (by sequencer) is the one processed, with what
// the others ask for, so that the row ends as processing every event in order would leave it.
func TestProcessCoalescesEventsOfOneObject(t *testing.T) {
	t.Parallel()
	// seqs are MaxRecords sequencers, all different, the greatest at index newest.
	const newest = 42
	seqs := make([]string, pipeline.MaxRecords)
	for i := range seqs {
		seqs[i] = fmt.Sprintf("%04X", (i*37)%pipeline.MaxRecords+1)
	}
	seqs[newest] = "FFFF"
	superseded := func(kind, kept string) []string {
		out := slices.Repeat([]string{kind + ":superseded"}, pipeline.MaxRecords)
		out[newest] = kept
		return out
	}

	tests := []struct {
		name string
		// gone deletes the object from S3 before the body is processed.
		gone bool
		body func(b *procBundle, key string) []byte
		// calls are the S3 requests the body makes (Peek: the inspection's ranged GET; hash: the
		// full read), status the row's status after it, outcomes the archived outcomes.
		calls    map[string]int
		status   string
		outcomes []string
	}{
		{
			name: "100 removals naming a version of a live object",
			body: func(b *procBundle, key string) []byte {
				var evs []testEvent
				for _, seq := range seqs {
					evs = append(evs, testEvent{name: "ObjectRemoved:Delete", bucket: b.bucket, key: key, seq: seq, version: "v1", at: t0})
				}
				return body(evs...)
			},
			calls:    map[string]int{"head": 1, "peek": 1, "hash": 1},
			status:   pipeline.StatusValid,
			outcomes: superseded("removed", "removed:unconfirmed"),
		},
		{
			name: "100 creations",
			body: func(b *procBundle, key string) []byte {
				var evs []testEvent
				for _, seq := range seqs {
					evs = append(evs, testEvent{name: "ObjectCreated:Put", bucket: b.bucket, key: key, seq: seq, at: t0})
				}
				return body(evs...)
			},
			calls:    map[string]int{"peek": 1, "hash": 1},
			status:   pipeline.StatusValid,
			outcomes: superseded("created", "created:valid:stale"), // the row already says it
		},
		{
			name: "100 removals without a sequencer, one time: the last one is processed",
			body: func(b *procBundle, key string) []byte {
				var evs []testEvent
				for range pipeline.MaxRecords {
					evs = append(evs, testEvent{name: "ObjectRemoved:Delete", bucket: b.bucket, key: key, version: "v1", at: t0})
				}
				return body(evs...)
			},
			calls:  map[string]int{"head": 1, "peek": 1, "hash": 1},
			status: pipeline.StatusValid,
			outcomes: append(slices.Repeat([]string{"removed:superseded"}, pipeline.MaxRecords-1),
				"removed:unconfirmed"),
		},
		{
			// In order: the creation would inspect the object, the removal (no version) change
			// nothing. The removal is newest: it finds the object, and inspects it for the creation.
			name: "an older creation and a newer removal of an object S3 still has",
			body: func(b *procBundle, key string) []byte {
				return body(testEvent{name: "ObjectCreated:Put", bucket: b.bucket, key: key, seq: "0A", at: t0},
					testEvent{name: "ObjectRemoved:Delete", bucket: b.bucket, key: key, seq: "0B", at: t0})
			},
			calls:    map[string]int{"head": 1, "peek": 1, "hash": 1},
			status:   pipeline.StatusValid,
			outcomes: []string{"created:superseded", "removed:unconfirmed"},
		},
		{
			// In order: the creation would record it missing, the removal deleted. The creation
			// is newest: its 404 confirms the removal too.
			name: "a newer creation and an older removal of an object S3 no longer has",
			gone: true,
			body: func(b *procBundle, key string) []byte {
				return body(testEvent{name: "ObjectCreated:Put", bucket: b.bucket, key: key, seq: "0B", at: t0},
					testEvent{name: "ObjectRemoved:Delete", bucket: b.bucket, key: key, seq: "0A", at: t0})
			},
			calls:    map[string]int{"peek": 1},
			status:   pipeline.StatusDeleted,
			outcomes: []string{"created:deleted", "removed:superseded"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := setupProc(t, procOpts{archive: true})
			objects := &counting{Objects: objstore.NewObjects(b.s3), calls: map[string]int{}}
			b.proc = b.newProcessor(t, procOpts{objects: objects, hashMax: 1 << 20, archive: true})
			const key = "k.txt"
			b.intent(t, intentSpec{key: key, contentType: "text/plain", size: 5})
			etag := b.put(t, key, "text/plain", []byte("hello"))
			require.NoError(t, b.process(t, b.created(key, "01", t0.Add(-time.Hour))))
			require.Equal(t, pipeline.StatusValid, b.row(t, key).Status)
			if tc.gone {
				require.NoError(t, b.s3Delete(t, key))
			}
			objects.snapshot()

			require.NoError(t, b.process(t, tc.body(b, key)))
			require.Equal(t, tc.calls, objects.snapshot(), "S3 requests of the body")
			row := b.row(t, key)
			require.Equal(t, tc.status, row.Status)
			if tc.status == pipeline.StatusValid {
				require.Equal(t, etag, *row.Etag)
				require.NotEmpty(t, row.Sha256)
			}
			got := archivedOutcomes(t, b)
			require.Len(t, got, 2)
			require.Equal(t, tc.outcomes, strings.Split(got[1], ","), "outcomes of the body's events")
			require.Equal(t, float64(1+len(tc.outcomes)), metricValue(t, b.reg, "intake_events_total", map[string]string{"kind": "created"})+
				metricValue(t, b.reg, "intake_events_total", map[string]string{"kind": "removed"}), "every event is counted")
		})
	}
}
