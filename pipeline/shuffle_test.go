package pipeline_test

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/stretchr/testify/require"

	"github.com/intakehq/intake/internal/store"
	"github.com/intakehq/intake/internal/testkit"
	"github.com/intakehq/intake/pipeline"
)

// history is a sequence of puts and deletes applied to real MinIO objects, with the event each
// one produced, and what the last operation on each key left.
type history struct {
	events [][]byte
	// final maps each key to its last operation: the ETag and expected status of a put, or ""
	// and "deleted" for a delete.
	final map[string]struct{ etag, status, seq string }
}

// play applies n random operations over keys to the bucket. withSequencer gives each event an
// increasing sequencer and millisecond times, as AWS and MinIO do; without it, every event has no
// sequencer and the same second, as kumo's.
func play(t *testing.T, b *procBundle, rng *rand.Rand, n, keys int, withSequencer bool) history {
	t.Helper()
	h := history{final: map[string]struct{ etag, status, seq string }{}}
	img := pngBytes(t, 2, 2)
	for i := range n {
		key := fmt.Sprintf("k%02d", rng.IntN(keys))
		ev := testEvent{bucket: b.bucket, key: key, at: t0}
		if withSequencer {
			ev.seq = fmt.Sprintf("%016X", 0x18EB24A6C331BB00+uint64(i)*0x10)
			ev.at = t0.Add(time.Duration(i) * time.Millisecond)
		}
		seqKey, _ := pipeline.SequencerKey(ev.seq)
		switch op := rng.IntN(10); {
		case op < 3 && i > 0:
			_, err := b.s3.DeleteObject(b.ctx, &s3.DeleteObjectInput{Bucket: aws.String(b.bucket), Key: aws.String(key)})
			require.NoError(t, err)
			ev.name = "ObjectRemoved:Delete"
			h.final[key] = struct{ etag, status, seq string }{"", pipeline.StatusDeleted, seqKey}
		case op < 6:
			ev.name, ev.etag = "ObjectCreated:Put", b.put(t, key, "image/png", img)
			h.final[key] = struct{ etag, status, seq string }{ev.etag, pipeline.StatusValid, seqKey}
		case op < 8: // declared image/png, content is text: rejected
			content := fmt.Appendf(nil, "not an image %d", i)
			ev.name, ev.etag = "ObjectCreated:Put", b.put(t, key, "image/png", content)
			h.final[key] = struct{ etag, status, seq string }{ev.etag, pipeline.StatusRejected, seqKey}
		default:
			content := fmt.Appendf(nil, "plain text %d", i)
			ev.name, ev.etag = "ObjectCreated:Put", b.put(t, key, "text/plain", content)
			h.final[key] = struct{ etag, status, seq string }{ev.etag, pipeline.StatusValid, seqKey}
		}
		h.events = append(h.events, body(ev))
	}
	return h
}

// rowState is a row without its identity and timestamps, which differ between runs.
type rowState struct {
	Key, Status, Reason, ETag, Sequencer, SniffedType string
	Size                                              int64
	EventTime                                         time.Time
}

func rows(t *testing.T, b *procBundle, st *store.Store) map[string]rowState {
	t.Helper()
	list, err := testkit.ListObjects(b.ctx, st.Pool, b.bucket)
	require.NoError(t, err)
	out := map[string]rowState{}
	for _, r := range list {
		s := rowState{Key: r.Key, Status: r.Status}
		for dst, src := range map[*string]*string{&s.Reason: r.Reason, &s.ETag: r.Etag, &s.Sequencer: r.Sequencer, &s.SniffedType: r.SniffedType} {
			if src != nil {
				*dst = *src
			}
		}
		if r.Size != nil {
			s.Size = *r.Size
		}
		if r.EventTime != nil {
			s.EventTime = r.EventTime.UTC()
		}
		out[r.Key] = s
	}
	return out
}

// runStream processes bodies with a Processor on a fresh schema, with workers goroutines, and
// returns the resulting rows.
func runStream(t *testing.T, b *procBundle, bodies [][]byte, workers int) map[string]rowState {
	t.Helper()
	st := testkit.DB(t)
	// The daemon's record store: concurrent workers' lookups and records go out in batches.
	records := store.NewBatchedRecords(st, store.BatchOptions{})
	t.Cleanup(records.Close)
	p := b.newProcessor(t, procOpts{records: records, policy: sniffPolicy(pipeline.ActionTag)})
	work := make(chan []byte)
	var wg sync.WaitGroup
	errs := make(chan error, len(bodies))
	for range workers {
		wg.Go(func() {
			for body := range work {
				if err := p.Process(b.ctx, "m", body); err != nil {
					errs <- err
				}
			}
		})
	}
	for _, body := range bodies {
		work <- body
	}
	close(work)
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	return rows(t, b, st)
}

// shuffledWithDuplicates returns a permutation of bodies with about a third of them repeated.
func shuffledWithDuplicates(rng *rand.Rand, bodies [][]byte) [][]byte {
	out := append([][]byte(nil), bodies...)
	for _, body := range bodies {
		if rng.IntN(3) == 0 {
			out = append(out, body)
		}
	}
	rng.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out
}

// TestProcessOrderIndependence puts, overwrites and deletes real objects, then processes their
// events in order, in several shuffled orders with duplicates, and concurrently: the rows must be
// the same every time, and match what the last operation on each key left.
func TestProcessOrderIndependence(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name          string
		withSequencer bool
	}{
		{"sequencers", true},
		{"kumo: no sequencer, one second", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := setupProc(t, procOpts{})
			seed := uint64(time.Now().UnixNano())
			t.Logf("seed %d", seed)
			rng := rand.New(rand.NewPCG(seed, 7))
			h := play(t, b, rng, 36, 10, tc.withSequencer)

			inOrder := runStream(t, b, h.events, 1)
			require.Len(t, inOrder, len(h.final))
			for key, want := range h.final {
				got := inOrder[key]
				require.Equal(t, want.status, got.Status, key)
				require.Equal(t, want.etag, got.ETag, key)
				if tc.withSequencer {
					require.Equal(t, want.seq, got.Sequencer, "%s: the newest event's sequencer is kept", key)
				} else {
					require.Empty(t, got.Sequencer)
				}
				if want.status == pipeline.StatusRejected {
					require.Equal(t, pipeline.ReasonSniffMismatch, got.Reason, key)
				}
			}

			for i := range 4 {
				got := runStream(t, b, shuffledWithDuplicates(rng, h.events), 1)
				require.Equal(t, inOrder, got, "permutation %d", i)
			}
			got := runStream(t, b, shuffledWithDuplicates(rng, h.events), 4)
			require.Equal(t, inOrder, got, "concurrent run")
		})
	}
}

// TestProcessConcurrentSameKey races many workers on events of one key against one schema.
func TestProcessConcurrentSameKey(t *testing.T) {
	t.Parallel()
	b := setupProc(t, procOpts{})
	etag := b.put(t, "k", "text/plain", []byte("x"))
	var bodies [][]byte
	for i := range 20 {
		bodies = append(bodies, b.created("k", fmt.Sprintf("%04X", i), t0))
	}
	got := runStream(t, b, bodies, 8)
	require.Equal(t, etag, got["k"].ETag)
	want, _ := pipeline.SequencerKey("0013")
	require.Equal(t, want, got["k"].Sequencer)
}
