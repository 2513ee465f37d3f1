package pipeline_test

import (
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stretchr/testify/require"

	"github.com/intakehq/intake/pipeline"
)

func FuzzDecode(f *testing.F) {
	for _, body := range readFixtures(f) {
		f.Add(body)
	}
	for _, body := range negativeBodies {
		f.Add([]byte(body))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		events, err := pipeline.Decode(body)
		if err != nil {
			require.ErrorIs(t, err, pipeline.ErrPermanent)
			require.Nil(t, events)
			return
		}
		require.NotEmpty(t, events)
		for _, ev := range events {
			require.Equal(t, time.UTC, ev.Time.Location())
			if ev.Kind == pipeline.KindTest {
				continue
			}
			require.NotEmpty(t, ev.Bucket)
			require.NotEmpty(t, ev.Key)
			require.True(t, utf8.ValidString(ev.Key))
			require.GreaterOrEqual(t, ev.Size, int64(0))
			_, ok := pipeline.SequencerKey(ev.Sequencer)
			require.True(t, ok, "sequencer %q", ev.Sequencer)
		}
	})
}
