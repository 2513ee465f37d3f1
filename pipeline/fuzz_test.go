package pipeline_test

import (
	"strings"
	"testing"
	"time"
	"unicode"
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
		require.LessOrEqual(t, len(events), pipeline.MaxRecords)
		for _, ev := range events {
			require.Equal(t, time.UTC, ev.Time.Location())
			if ev.Kind == pipeline.KindTest {
				continue
			}
			require.NotEmpty(t, ev.Bucket)
			require.NotEmpty(t, ev.Key)
			require.True(t, utf8.ValidString(ev.Key))
			require.LessOrEqual(t, len(ev.Key), pipeline.MaxKeyLen)
			require.LessOrEqual(t, len(ev.VersionID), pipeline.MaxVersionIDLen)
			require.False(t, strings.ContainsFunc(ev.VersionID, unicode.IsControl), "version id %q", ev.VersionID)
			require.GreaterOrEqual(t, ev.Size, int64(0))
			_, ok := pipeline.SequencerKey(ev.Sequencer)
			require.True(t, ok, "sequencer %q", ev.Sequencer)
		}
	})
}

// FuzzDecodeScan checks that dispatching on the scanned top-level names (Decode's fast path) and on
// a decoded map (its fallback) agree: same events, and an error for one only with an error for the
// other.
func FuzzDecodeScan(f *testing.F) {
	for _, body := range readFixtures(f) {
		f.Add(body)
	}
	for _, body := range negativeBodies {
		f.Add([]byte(body))
	}
	for _, body := range []string{
		`{"Recor\u0064s":[]}`, `{"records":[{}]}`, `{"Records":null,"Records":[]}`, `{"x":{"Records":[]},"Event":"s3:TestEvent"}`,
		`{"x":"}\"{","Type":"Notification","Message":"{}"}`, ` { "Event" : "s3:TestEvent" , "Time":"2024-01-01T00:00:00Z"} `,
		`{"detail-type":"Object Created","source":"aws.s3","detail":[1,{"a":[]}]}`, `{"a":1,}`, `{"a" 1}`, `{,}`, `{"Records":[]`,
	} {
		f.Add([]byte(body))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		fast, fastErr := pipeline.DecodeWith(body, true)
		slow, slowErr := pipeline.DecodeWith(body, false)
		if slowErr != nil {
			require.Error(t, fastErr, "the scan decoded what the map refused")
			return
		}
		require.NoError(t, fastErr, "the scan refused what the map decoded")
		require.Equal(t, slow, fast)
	})
}
