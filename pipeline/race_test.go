package pipeline_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/intakehq/intake/internal/objstore"
	"github.com/intakehq/intake/internal/store"
	"github.com/intakehq/intake/pipeline"
)

// gatedRecords is the real record store with one gate: the first Record of a key holds until the
// test opens the gate, so that a processing that already looked at S3 commits after another one.
type gatedRecords struct {
	pipeline.RecordStore
	key     string
	reached chan struct{} // closed when the held Record arrives
	open    chan struct{} // closed by the test to let it through
	once    sync.Once
}

func (g *gatedRecords) Record(ctx context.Context, rec pipeline.Record) (pipeline.Recorded, error) {
	held := false
	if rec.Key == g.key {
		g.once.Do(func() { held = true })
	}
	if held {
		close(g.reached)
		select {
		case <-g.open:
		case <-ctx.Done():
			return pipeline.Recorded{}, ctx.Err()
		}
	}
	return g.RecordStore.Record(ctx, rec)
}

// TestProcessRaceLaterObservationWins runs two processings of one key concurrently: the first
// looks at S3, then stalls before its record commits; meanwhile S3 changes and the second
// processing records what it saw. Whatever the events' sequencers, the row must end as S3 is.
func TestProcessRaceLaterObservationWins(t *testing.T) {
	t.Parallel()
	forged := strings.Repeat("F", 32) // plausible length, highest value: the stalled event's
	tests := []struct {
		name string
		// before prepares S3 for the stalled processing; stalled processes the event (or inspection)
		// that stalls; change changes S3 while it stalls; then processes what follows the change.
		before  func(t *testing.T, b *procBundle, key string)
		stalled func(p *pipeline.Processor, b *procBundle, key string) error
		change  func(t *testing.T, b *procBundle, key string)
		then    func(t *testing.T, b *procBundle, key string)
		want    string // status
	}{
		{
			name:   "a stale event with a higher sequencer commits after the newer upload's",
			before: func(t *testing.T, b *procBundle, key string) { b.put(t, key, "text/plain", []byte("one")) },
			stalled: func(p *pipeline.Processor, b *procBundle, key string) error {
				return p.Process(b.ctx, "stale", b.created(key, forged, time.Now()))
			},
			change: func(t *testing.T, b *procBundle, key string) { b.put(t, key, "text/plain", []byte("two")) },
			then: func(t *testing.T, b *procBundle, key string) {
				require.NoError(t, b.process(t, b.created(key, "0A", time.Now())))
			},
			want: pipeline.StatusValid,
		},
		{
			name:   "an inspection (reconcile) that saw the object commits after its confirmed removal",
			before: func(t *testing.T, b *procBundle, key string) { b.put(t, key, "text/plain", []byte("one")) },
			stalled: func(p *pipeline.Processor, b *procBundle, key string) error {
				return p.InspectObject(b.ctx, b.bucket, key)
			},
			change: func(t *testing.T, b *procBundle, key string) { require.NoError(t, b.s3Delete(t, key)) },
			then: func(t *testing.T, b *procBundle, key string) {
				require.NoError(t, b.process(t, b.removed(key, "0A", time.Now())))
			},
			want: pipeline.StatusDeleted,
		},
		{
			name: "a removal confirmed before a re-upload commits after the re-upload's event",
			before: func(t *testing.T, b *procBundle, key string) {
				b.put(t, key, "text/plain", []byte("one"))
				require.NoError(t, b.s3Delete(t, key))
			},
			stalled: func(p *pipeline.Processor, b *procBundle, key string) error {
				return p.Process(b.ctx, "removal", b.removed(key, forged, time.Now()))
			},
			change: func(t *testing.T, b *procBundle, key string) { b.put(t, key, "text/plain", []byte("again")) },
			then: func(t *testing.T, b *procBundle, key string) {
				require.NoError(t, b.process(t, b.created(key, "0A", time.Now())))
			},
			want: pipeline.StatusValid,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := setupProc(t, procOpts{})
			const key = "raced.txt"
			gate := &gatedRecords{RecordStore: store.NewRecords(b.st), key: key, reached: make(chan struct{}), open: make(chan struct{})}
			stalling := b.newProcessor(t, procOpts{records: gate})
			tc.before(t, b, key)

			done := make(chan error, 1)
			go func() { done <- tc.stalled(stalling, b, key) }()
			select {
			case <-gate.reached: // it looked at S3 and holds its record
			case err := <-done:
				t.Fatalf("the stalled processing ended early: %v", err)
			}
			tc.change(t, b, key)
			tc.then(t, b, key)
			close(gate.open)
			require.NoError(t, <-done)

			row := b.row(t, key)
			require.Equal(t, tc.want, row.Status)
			if tc.want == pipeline.StatusValid {
				head, err := objstore.NewObjects(b.s3).Head(b.ctx, b.bucket, key)
				require.NoError(t, err)
				require.Equal(t, head.ETag, *row.Etag, "the row names the content S3 has")
			}
		})
	}
}
