package pipeline_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/intakehq/intake/internal/store"
	"github.com/intakehq/intake/pipeline"
)

// notificationTypes returns the event types of key's notifications, oldest first.
func (b *procBundle) notificationTypes(t *testing.T, key string) []string {
	t.Helper()
	types := []string{}
	for _, n := range b.notifications(t, key) {
		types = append(types, n.Type)
	}
	return types
}

// TestProcessRemovalOfUploadThatNeverLanded: a removal S3 confirms (404) for an upload whose
// object intake never saw, a removal forged through the ingress token or a stray delete marker,
// leaves a deleted row (a tombstone: a creation processed at the same time, which looked before
// the removal, must not outlive it) but notifies nobody: before, the tombstone took the pending
// intent's owner and upload id and the app got upload.deleted for an upload that never happened.
// The same holds however the absence was recorded first. The real upload, when it lands, is
// notified (upload.valid) and so is its deletion, once.
func TestProcessRemovalOfUploadThatNeverLanded(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		absent func(t *testing.T, b *procBundle, key string)
		status string
	}{
		{"a removal", func(t *testing.T, b *procBundle, key string) {
			require.NoError(t, b.process(t, b.removed(key, "0A", t0)))
		}, pipeline.StatusDeleted},
		{"a delete marker's removal naming a version", func(t *testing.T, b *procBundle, key string) {
			require.NoError(t, b.process(t, body(testEvent{name: "ObjectRemoved:DeleteMarkerCreated", bucket: b.bucket, key: key, seq: "0A", version: "marker", at: t0})))
		}, pipeline.StatusDeleted},
		{"a creation that found nothing, then a removal", func(t *testing.T, b *procBundle, key string) {
			require.NoError(t, b.process(t, b.created(key, "0A", t0)))
			require.NoError(t, b.process(t, b.removed(key, "0B", t0)))
		}, pipeline.StatusDeleted},
		{"a removal, then a creation that found nothing", func(t *testing.T, b *procBundle, key string) {
			require.NoError(t, b.process(t, b.removed(key, "0A", t0)))
			require.NoError(t, b.process(t, b.created(key, "0B", t0)))
		}, pipeline.StatusDeleted},
		{"an inspection that found nothing, then a removal", func(t *testing.T, b *procBundle, key string) {
			require.NoError(t, b.proc.InspectObject(b.ctx, b.bucket, key))
			require.NoError(t, b.process(t, b.removed(key, "0A", t0)))
		}, pipeline.StatusDeleted},
		{"one body: a creation and a removal", func(t *testing.T, b *procBundle, key string) {
			require.NoError(t, b.process(t, body(testEvent{name: "ObjectCreated:Put", bucket: b.bucket, key: key, seq: "0A", at: t0},
				testEvent{name: "ObjectRemoved:Delete", bucket: b.bucket, key: key, seq: "0B", at: t0})))
		}, pipeline.StatusDeleted},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := setupProc(t, procOpts{})
			const key = "uploads/alice/never.txt"
			id := b.intent(t, intentSpec{key: key, contentType: "text/plain", size: 2})

			tc.absent(t, b, key)
			row := b.row(t, key)
			require.Equal(t, tc.status, row.Status)
			require.Equal(t, "alice", *row.Owner, "the tombstone keeps the intent's owner")
			require.Empty(t, b.notificationTypes(t, key), "an upload that never landed is not notified")
			require.Equal(t, "pending", b.uploadStatus(t, id))

			// The upload lands: its verdict is notified.
			etag := b.put(t, key, "text/plain", []byte("hi"))
			require.NoError(t, b.process(t, b.created(key, "0C", t0)))
			require.Equal(t, etag, *b.row(t, key).Etag)
			require.Equal(t, "completed", b.uploadStatus(t, id))
			require.Equal(t, []string{"upload.valid"}, b.notificationTypes(t, key))

			// Deleted: notified once, however many removals say so.
			require.NoError(t, b.s3Delete(t, key))
			require.NoError(t, b.process(t, b.removed(key, "0D", t0)))
			require.NoError(t, b.process(t, b.removed(key, "0E", t0)))
			require.NoError(t, b.process(t, b.created(key, "0C", t0)), "the creation again finds nothing")
			require.Equal(t, pipeline.StatusDeleted, b.row(t, key).Status)
			require.Equal(t, []string{"upload.valid", "upload.deleted"}, b.notificationTypes(t, key))
		})
	}
}

// TestProcessDeletionSeenBeforeItsRemoval: the creation's processing saw the object, then stalled
// before its record committed; meanwhile the object was deleted and that absence recorded first.
// The creation's record loses (it was observed earlier), but it shows that the object landed: the
// deletion is notified (upload.deleted), once, whether the removal's record came before the
// creation's (the tombstone) or after it (the absence first recorded missing by an inspection).
// Redeliveries change nothing more.
func TestProcessDeletionSeenBeforeItsRemoval(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		// absent records the object's absence while the creation stalls; after runs once the
		// creation committed.
		absent, after func(t *testing.T, b *procBundle, key string)
	}{
		{
			name: "the removal recorded while the creation stalls",
			absent: func(t *testing.T, b *procBundle, key string) {
				require.NoError(t, b.process(t, b.removed(key, "0B", t0)))
			},
			after: func(t *testing.T, b *procBundle, key string) {},
		},
		{
			name: "an inspection found it missing while the creation stalls, the removal came after",
			absent: func(t *testing.T, b *procBundle, key string) {
				require.NoError(t, b.proc.InspectObject(b.ctx, b.bucket, key))
				require.Equal(t, pipeline.StatusMissing, b.row(t, key).Status)
			},
			after: func(t *testing.T, b *procBundle, key string) {
				require.Empty(t, b.notificationTypes(t, key), "missing is not notified")
				require.NoError(t, b.process(t, b.removed(key, "0B", t0)))
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := setupProc(t, procOpts{})
			const key = "uploads/alice/brief.txt"
			id := b.intent(t, intentSpec{key: key, contentType: "text/plain", size: 2})
			b.put(t, key, "text/plain", []byte("hi"))
			gate := &gatedRecords{RecordStore: store.NewRecords(b.st), key: key, reached: make(chan struct{}), open: make(chan struct{})}
			stalling := b.newProcessor(t, procOpts{records: gate})

			done := make(chan error, 1)
			go func() { done <- stalling.Process(b.ctx, "creation", b.created(key, "0A", t0)) }()
			select {
			case <-gate.reached: // it saw the object and holds its record
			case err := <-done:
				t.Fatalf("the creation ended early: %v", err)
			}
			require.NoError(t, b.s3Delete(t, key))
			tc.absent(t, b, key)
			require.Empty(t, b.notificationTypes(t, key), "no record showed the object yet")
			close(gate.open)
			require.NoError(t, <-done)
			tc.after(t, b, key)

			require.Equal(t, pipeline.StatusDeleted, b.row(t, key).Status)
			require.Equal(t, "completed", b.uploadStatus(t, id), "the object S3 showed completes its upload")
			require.Equal(t, []string{"upload.deleted"}, b.notificationTypes(t, key))

			require.NoError(t, b.process(t, b.created(key, "0A", t0)))
			require.NoError(t, b.process(t, b.removed(key, "0B", t0)))
			require.Equal(t, []string{"upload.deleted"}, b.notificationTypes(t, key), "redeliveries notify nothing more")
		})
	}
}
