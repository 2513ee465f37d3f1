package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/intakehq/intake/internal/multipart"
	"github.com/intakehq/intake/internal/store"
	"github.com/intakehq/intake/internal/store/dbq"
	"github.com/intakehq/intake/internal/testkit"
)

// beginRace is a schema with one call's transaction holding the abort row of upload id "racing"
// (written by BeginMultipartAborts, not committed) and a second store whose statements wait for
// it: the second call of a race, blocked on the first one's insert.
type beginRace struct {
	ctx    context.Context
	first  *store.Store
	second *store.Store
	app    string
	tx     func() error // commits the first call
}

func setupBeginRace(t *testing.T) *beginRace {
	t.Helper()
	b := setupRecords(t)
	_, err := b.st.Pool.Exec(b.ctx, `INSERT INTO multipart_aborts (bucket, key, upload_id, reason, outcome)
		VALUES ('b', 'k-done', 'done', 'sweep', 'gone')`)
	require.NoError(t, err)
	tx, err := b.st.Pool.Begin(b.ctx)
	require.NoError(t, err)
	t.Cleanup(func() { _ = tx.Rollback(context.Background()) })
	rows, err := dbq.New(tx).BeginMultipartAborts(b.ctx, dbq.BeginMultipartAbortsParams{
		Bucket: "b", Reason: multipart.ReasonSweep, Keys: []string{"k-racing"}, UploadIds: []string{"racing"},
		Initiated: []time.Time{time.Now()},
	})
	require.NoError(t, err)
	require.Equal(t, []dbq.BeginMultipartAbortsRow{{UploadID: "racing", Prior: ""}}, rows, "the first call begins the abort")
	app := testkit.Name("begin-race-")
	schema := b.st.Pool.Config().ConnConfig.RuntimeParams["search_path"]
	return &beginRace{
		ctx: b.ctx, first: b.st, app: app,
		second: openOn(t, testkit.DatabaseURL(), schema, map[string]string{"application_name": app}),
		tx:     func() error { return tx.Commit(b.ctx) },
	}
}

// race runs call (on r.second) until it waits for the first call's row, commits the first call,
// and waits for call to return.
func (r *beginRace) race(t *testing.T, call func() error) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- call() }()
	require.Eventually(t, func() bool {
		var n int
		require.NoError(t, r.first.Pool.QueryRow(r.ctx,
			"SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 AND wait_event_type = 'Lock'", r.app).Scan(&n))
		return n > 0
	}, 20*time.Second, 5*time.Millisecond, "the second call did not wait for the first one's row")
	require.NoError(t, r.tx())
	require.NoError(t, <-done)
}

// TestBeginAbortRace: of two calls beginning the abort of one upload at once, the second waits for
// the first one's insert; once the first commits, the second is told the abort is running
// ("aborting"), not that it began it (""), although its statement's snapshot, taken before the
// first one committed, does not see the row. Otherwise both would take themselves for the first
// attempt (an upload S3 has forgotten would read "gone" instead of "aborted").
func TestBeginAbortRace(t *testing.T) {
	t.Parallel()
	t.Run("one", func(t *testing.T) {
		t.Parallel()
		r := setupBeginRace(t)
		var prior string
		r.race(t, func() (err error) {
			prior, err = r.second.Multipart().BeginAbort(r.ctx, multipart.AbortRecord{
				Bucket: "b", Key: "k-racing", UploadID: "racing", Reason: multipart.ReasonDeadline,
			})
			return err
		})
		require.Equal(t, multipart.OutcomeAborting, prior)

		// Without a race: a new row is begun, a finished one tells its outcome.
		m := r.second.Multipart()
		for id, want := range map[string]string{"new": "", "done": multipart.OutcomeGone, "racing": multipart.OutcomeAborting} {
			prior, err := m.BeginAbort(r.ctx, multipart.AbortRecord{Bucket: "b", Key: "k-" + id, UploadID: id, Reason: multipart.ReasonDeadline})
			require.NoError(t, err)
			require.Equal(t, want, prior, id)
		}
	})
	t.Run("many", func(t *testing.T) {
		t.Parallel()
		r := setupBeginRace(t)
		var priors map[string]string
		r.race(t, func() (err error) {
			priors, err = r.second.Multipart().BeginAborts(r.ctx, "b", multipart.ReasonSweep, []multipart.Candidate{
				{Key: "k-new", UploadID: "new", Initiated: time.Now()},
				{Key: "k-racing", UploadID: "racing", Initiated: time.Now()},
				{Key: "k-done", UploadID: "done", Initiated: time.Now()},
			})
			return err
		})
		require.Equal(t, map[string]string{"new": "", "racing": multipart.OutcomeAborting, "done": multipart.OutcomeGone}, priors)
	})
}
