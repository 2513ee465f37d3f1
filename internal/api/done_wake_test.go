package api

import (
	"context"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/intakehq/intake/internal/outbox"
	"github.com/intakehq/intake/internal/store"
	"github.com/intakehq/intake/internal/testkit"
	"github.com/intakehq/intake/pipeline"
)

// wakeSpy is a Waiter that reports each wake-up it passes on to a long poll, with its upload id.
type wakeSpy struct {
	Waiter
	woke chan uuid.UUID
}

// Subscribe subscribes to the wrapped Waiter and forwards its wake-ups, reporting each.
func (s *wakeSpy) Subscribe(id uuid.UUID) (<-chan struct{}, func()) {
	in, stop := s.Waiter.Subscribe(id)
	out := make(chan struct{}, 1)
	quit := make(chan struct{})
	go func() {
		for {
			select {
			case <-in:
				select {
				case s.woke <- id:
				default:
				}
				select {
				case out <- struct{}{}:
				default:
				}
			case <-quit:
				return
			}
		}
	}()
	var once sync.Once
	return out, func() {
		once.Do(func() { close(quit) })
		stop()
	}
}

// settled returns once l has woken its subscribers after listening (it does so right after Ready):
// a wake-up the spy reports later is one a commit sent. Two round trips of a notification of an id
// of its own: the listener dispatches in order, and the first may be answered by that wake-up.
func settled(t *testing.T, l *outbox.Listener, st *store.Store) {
	t.Helper()
	for range 2 {
		sentinel := uuid.New()
		ch, stop := l.Subscribe(sentinel)
		_, err := st.Pool.Exec(context.Background(), "SELECT pg_notify(current_schema() || $1, $2::text)", outbox.ChannelSuffix, sentinel)
		require.NoError(t, err)
		select {
		case <-ch:
		case <-time.After(30 * time.Second):
			t.Fatal("the listener never dispatched a notification")
		}
		stop()
	}
}

// TestLongPollWokenWhenGoneAfterCompletion: a long poll on a completed upload whose object is then
// seen gone, by the consumer's record or by the reconcile's marking, is woken through its
// subscription (the outbox channel) and answers done, although no notification (outbox row) is
// written for it. Before migration 0027 nothing woke it: it answered done only when its wait ended.
func TestLongPollWokenWhenGoneAfterCompletion(t *testing.T) {
	t.Parallel()
	a := setup(t)
	l := listen(t, a.st)
	settled(t, l, a.st)
	spy := &wakeSpy{Waiter: l, woke: make(chan uuid.UUID, 16)}
	reads := &readSignal{reads: make(chan struct{}, 16)}
	b := setup(t, setupOpts{share: a, waits: spy, queries: func(q Queries) Queries {
		reads.Queries = q
		return reads
	}})
	ctx := context.Background()
	complete := func(id uuid.UUID) { // as POST …/complete does once S3 completed the upload
		t.Helper()
		_, err := a.st.Pool.Exec(ctx, "UPDATE uploads SET status = 'completed', updated_at = now() WHERE id = $1", id)
		require.NoError(t, err)
	}
	// waits long-polls id and returns once the poll read the upload, found it not done and waits.
	waits := func(id uuid.UUID) <-chan pollAnswer {
		t.Helper()
		reads.drain()
		done := longPoll(t, b, id, 30*time.Second)
		select {
		case <-reads.reads:
		case got := <-done:
			t.Fatalf("the long poll was answered at once: %v", got.resp)
		}
		return done
	}
	// answered requires a wake-up of id through the subscription, then the poll's answer: done, its
	// object missing. 20 s bounds the failure only (the wait is 30 s).
	answered := func(id uuid.UUID, done <-chan pollAnswer) {
		t.Helper()
		select {
		case got := <-spy.woke:
			require.Equal(t, id, got)
		case <-time.After(20 * time.Second):
			t.Fatal("the long poll's subscription was not woken: it would answer only when its wait ends")
		}
		got := <-done
		require.Equal(t, http.StatusOK, got.status, got.resp)
		require.Equal(t, true, got.resp["done"], got.resp)
		require.Equal(t, pipeline.StatusMissing, got.resp["object"].(map[string]any)["status"])
		rows, err := testkit.ListOutbox(ctx, a.st.Pool, id)
		require.NoError(t, err)
		require.Empty(t, rows, "no notification row was written for it")
	}
	observe := func(id uuid.UUID, key string) { // the consumer's record: gone, seen now
		t.Helper()
		var at time.Time
		require.NoError(t, a.st.Pool.QueryRow(ctx, "SELECT clock_timestamp()").Scan(&at))
		_, err := store.NewRecords(a.st).Record(ctx, pipeline.Record{
			Bucket: a.bucket, Key: key, Status: pipeline.StatusMissing, Reason: pipeline.ReasonNotFound, Owner: "alice",
			UploadID: id, EventTime: time.Now(), ObservedAt: at, Observed: true,
		})
		require.NoError(t, err)
	}

	// The record: seen gone before the upload completed (no answer), then seen gone since.
	id, key := createIntent(t, a, nil)
	observe(id, key)
	complete(id)
	done := waits(id)
	observe(id, key)
	answered(id, done)

	// The reconcile: an object known but never inspected (pending), marked missing once the upload
	// completed.
	id, key = createIntent(t, a, nil)
	_, err := a.st.Pool.Exec(ctx, `INSERT INTO objects (bucket, key, status, upload_id, owner, observed_at)
		VALUES ($1, $2, 'pending', $3, 'alice', now())`, a.bucket, key, id)
	require.NoError(t, err)
	complete(id)
	done = waits(id)
	reconcileMarksMissing(t, ctx, a.st, a.bucket, key)
	answered(id, done)
}
