package outbox_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/intakehq/intake/internal/testkit"
	"github.com/intakehq/intake/pipeline"
	"github.com/intakehq/intake/worker/tasks"
)

// TestAnUploadsNotificationsArriveInOrder: an upload is found valid, then deleted, and both
// notifications are relayed together (one batch). The receiver fails the first attempt of
// upload.valid: upload.deleted is not delivered before it, but after it, on the retry that
// delivers it (each attempted as often as it had to be). Before, the batch posted both at once:
// upload.deleted was delivered at once and upload.valid after its retry delay, so the app saw its
// upload deleted, then valid.
func TestAnUploadsNotificationsArriveInOrder(t *testing.T) {
	t.Parallel()
	b := setup(t, testkit.NotificationsOptions{NoRelay: true})
	id := b.intent(t, "u/order.txt", nil, "")
	b.verdict(t, id, "u/order.txt", pipeline.StatusValid, "")
	b.verdict(t, id, "u/order.txt", pipeline.StatusDeleted, "")
	b.recv.AnswerVerdict(func(v tasks.UploadVerdict, attempt int) int {
		if v.Type == tasks.EventUploadValid && attempt == 1 {
			return http.StatusServiceUnavailable
		}
		return http.StatusNoContent
	})
	n, err := b.relay.RelayOnce(b.ctx)
	require.NoError(t, err)
	require.Equal(t, 2, n, "one relay, one batch")

	got := map[string]testkit.Webhook{}
	for _, w := range b.recv.WaitDelivered(2, 60*time.Second) {
		got[w.Verdict.Type] = w
	}
	valid, deleted := got[tasks.EventUploadValid], got[tasks.EventUploadDeleted]
	require.True(t, valid.DeliveredAt.Before(deleted.DeliveredAt),
		"upload.valid delivered at %s, upload.deleted at %s", valid.DeliveredAt.Format(time.StampMicro), deleted.DeliveredAt.Format(time.StampMicro))
	require.Equal(t, 2, valid.Attempts)
	require.Equal(t, 1, deleted.Attempts)
}
