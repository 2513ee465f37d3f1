package outbox_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/intakehq/intake/internal/outbox"
	"github.com/intakehq/intake/internal/testkit"
	"github.com/intakehq/intake/internal/webhook"
	"github.com/intakehq/intake/pipeline"
)

// stalledEnqueuer signals its first call and holds it until release is closed, then fails it.
type stalledEnqueuer struct {
	entered chan struct{}
	release chan struct{}
}

func (s *stalledEnqueuer) EnqueueContext(context.Context, *asynq.Task, ...asynq.Option) (*asynq.TaskInfo, error) {
	select {
	case s.entered <- struct{}{}:
	default:
	}
	<-s.release
	return nil, errors.New("redis: connection pool timeout")
}

// TestRelayVanishedClientReleasesItsRows: a relay's client vanishes while its transaction holds
// the claimed rows (its host lost, a network partition: nothing it sends reaches PostgreSQL, and
// its connection is not closed, as toxiproxy's timeout and slow_close toxics make it). PostgreSQL
// ends the transaction once it sat idle past the relay's own bound, and the rows are free again
// for the other relays and for the deliveries being recorded. Before, the server kept the
// transaction, and the locks, until the connection closed (its TCP keepalive: two hours by
// default; here the 60 s of the slow close).
func TestRelayVanishedClientReleasesItsRows(t *testing.T) {
	t.Parallel()
	b := setup(t, testkit.NotificationsOptions{NoRelay: true})
	id := b.intent(t, "u/vanished.txt", nil, "")
	b.verdict(t, id, "u/vanished.txt", pipeline.StatusValid, "")
	var row int64
	require.NoError(t, b.st.Pool.QueryRow(b.ctx, "SELECT id FROM outbox WHERE upload_id = $1", id).Scan(&row))

	pg := testkit.NewProxy(t, "postgres", "127.0.0.1:5432")
	via := testkit.StoreVia(t, b.st, pg.Addr)
	enq := &stalledEnqueuer{entered: make(chan struct{}, 1), release: make(chan struct{})}
	relay, err := outbox.NewRelay(outbox.RelayConfig{
		Pool: via.Pool, Client: enq, Endpoints: routeAll{webhook.DefaultEndpoint}, Timeout: time.Second, Log: b.log,
		Registerer: prometheus.NewRegistry(),
	})
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() {
		_, err := relay.RelayOnce(b.ctx)
		done <- err
	}()
	select {
	case <-enq.entered: // the row is claimed, the transaction open
	case err := <-done:
		t.Fatalf("the relay ended before enqueueing: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("the relay did not claim the row")
	}
	// From now on nothing the client sends reaches PostgreSQL, and its close neither, for 60 s.
	pg.SlowClose(testkit.Upstream, 60*time.Second)
	pg.Timeout(testkit.Upstream, 0)
	close(enq.release)
	start := time.Now()
	require.Error(t, <-done, "the relay failed (its rollback never arrived)")
	t.Logf("relay returned after %s", time.Since(start))

	free := func() bool {
		tx, err := b.st.Pool.Begin(b.ctx)
		require.NoError(t, err)
		defer func() { _ = tx.Rollback(context.Background()) }()
		_, err = tx.Exec(b.ctx, "SELECT id FROM outbox WHERE id = $1 FOR UPDATE NOWAIT", row)
		return err == nil
	}
	require.Eventually(t, free, 30*time.Second, 100*time.Millisecond,
		"the vanished relay's row is released once its transaction sat idle past the relay's bound")
	t.Logf("free after %s", time.Since(start))
}
