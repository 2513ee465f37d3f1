package store_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/intakehq/intake/internal/store"
	"github.com/intakehq/intake/internal/store/dbq"
	"github.com/intakehq/intake/internal/testkit"
	"github.com/intakehq/intake/pipeline"
)

type recordsBundle struct {
	ctx context.Context
	st  *store.Store
	rs  *store.Records
}

func setupRecords(t *testing.T) *recordsBundle {
	t.Helper()
	if testing.Short() {
		t.Skip("needs PostgreSQL")
	}
	st := testkit.DB(t)
	return &recordsBundle{ctx: testkit.Context(t), st: st, rs: store.NewRecords(st)}
}

// setupBatchedRecords is setupRecords with NewBatchedRecords; its metrics go to reg.
func setupBatchedRecords(t *testing.T, opts store.BatchOptions) (*recordsBundle, *prometheus.Registry) {
	t.Helper()
	if testing.Short() {
		t.Skip("needs PostgreSQL")
	}
	st := testkit.DB(t)
	rs := store.NewBatchedRecords(st, opts)
	t.Cleanup(rs.Close) // before the pool closes (cleanups run last-in first-out)
	reg := prometheus.NewRegistry()
	require.NoError(t, reg.Register(rs))
	return &recordsBundle{ctx: testkit.Context(t), st: st, rs: rs}, reg
}

// eachRecords runs test against the unbatched and the batched record store: both give the same
// results.
func eachRecords(t *testing.T, test func(t *testing.T, b *recordsBundle)) {
	t.Helper()
	t.Run("unbatched", func(t *testing.T) {
		t.Parallel()
		test(t, setupRecords(t))
	})
	t.Run("batched", func(t *testing.T) {
		t.Parallel()
		b, _ := setupBatchedRecords(t, store.BatchOptions{})
		test(t, b)
	})
}

// addUpload inserts an upload intent and returns its id.
func (b *recordsBundle) addUpload(t *testing.T, key, method, status string, sum []byte, mpID *string) uuid.UUID {
	t.Helper()
	id := uuid.New()
	_, err := b.st.Pool.Exec(b.ctx, `INSERT INTO uploads (id, owner, bucket, key, method, filename, content_type, size,
		sha256, multipart_upload_id, status, expires_at) VALUES ($1, 'alice', 'b', $2, $3, 'f.png', 'image/png', 42, $4, $5, $6, now() + interval '1 hour')`,
		id, key, method, sum, mpID, status)
	require.NoError(t, err)
	return id
}

func (b *recordsBundle) row(t *testing.T, key string) dbq.Object {
	t.Helper()
	row, err := testkit.GetObject(b.ctx, b.st.Pool, "b", key)
	require.NoError(t, err)
	return row
}

func (b *recordsBundle) uploadStatus(t *testing.T, id uuid.UUID) string {
	t.Helper()
	var status string
	require.NoError(t, b.st.Pool.QueryRow(b.ctx, "SELECT status FROM uploads WHERE id = $1", id).Scan(&status))
	return status
}

func TestRecordsIntent(t *testing.T) {
	t.Parallel()
	eachRecords(t, testRecordsIntent)
}

func testRecordsIntent(t *testing.T, b *recordsBundle) {
	before, err := b.st.Q.OpsNow(b.ctx)
	require.NoError(t, err)
	got, err := b.rs.Lookup(b.ctx, "b", "none")
	require.NoError(t, err)
	require.Nil(t, got.Intent)
	require.False(t, got.At.Before(before), "the database's time, read by the lookup")

	sum := sha256.Sum256([]byte("x"))
	mp := "mp-1"
	id := b.addUpload(t, "k", "multipart", "pending", sum[:], &mp)
	got, err = b.rs.Lookup(b.ctx, "b", "k")
	require.NoError(t, err)
	require.Equal(t, &pipeline.Intent{
		ID: id, Owner: "alice", Method: "multipart", ContentType: "image/png", Size: 42, SizeDeclared: true,
		SHA256: sum[:], MultipartUploadID: "mp-1", Status: "pending",
	}, got.Intent)
}

// state builds a record of an object present with the given ETag.
func state(key, seq string, at time.Time, etag string) pipeline.Record {
	size := int64(len(etag))
	status := pipeline.StatusValid
	if etag == "" {
		status, size = pipeline.StatusDeleted, -1
	}
	rec := pipeline.Record{Bucket: "b", Key: key, Status: status, ETag: etag, Sequencer: seq, EventTime: at, Observed: true}
	if size >= 0 {
		rec.Size = &size
	}
	return rec
}

func seqKey(s string) string {
	k, _ := pipeline.SequencerKey(s)
	return k
}

func TestRecordsOrdering(t *testing.T) {
	t.Parallel()
	eachRecords(t, testRecordsOrdering)
}

func testRecordsOrdering(t *testing.T, b *recordsBundle) {
	t0 := time.Date(2026, 11, 25, 1, 24, 18, 0, time.UTC)
	t1 := t0.Add(time.Millisecond)
	missing := func(rec pipeline.Record) pipeline.Record {
		rec.Status, rec.Reason, rec.ETag, rec.Size = pipeline.StatusMissing, pipeline.ReasonNotFound, "", nil
		return rec
	}
	unobserved := func(rec pipeline.Record) pipeline.Record { rec.Observed = false; return rec }

	tests := []struct {
		name          string
		first, second pipeline.Record
		applied       bool
		wantETag      string
		wantStatus    string
	}{
		{"newer sequencer", state("", seqKey("0A"), t1, "e1"), state("", seqKey("0B"), t0, "e2"), true, "e2", "valid"},
		{"older sequencer", state("", seqKey("0B"), t0, "e1"), state("", seqKey("0A"), t1, "e2"), false, "e1", "valid"},
		{"shorter sequencer padded", state("", seqKey("0A1"), t0, "e1"), state("", seqKey("0A"), t1, "e2"), false, "e1", "valid"},
		{"equal sequencer is a duplicate", state("", seqKey("0A"), t0, "e1"), state("", seqKey("0A"), t1, "e2"), false, "e1", "valid"},
		{"no sequencer: later time", state("", "", t0, "e1"), state("", "", t1, "e2"), true, "e2", "valid"},
		{"no sequencer: earlier time", state("", "", t1, "e1"), state("", "", t0, "e2"), false, "e1", "valid"},
		{"one sequencer missing: time decides", state("", seqKey("0B"), t0, "e1"), state("", "", t1, "e2"), true, "e2", "valid"},
		{"no time is oldest", state("", "", time.Time{}, "e1"), state("", "", t0, "e2"), true, "e2", "valid"},
		{"no time never overrides", state("", "", t0, "e1"), state("", "", time.Time{}, "e2"), false, "e1", "valid"},
		{"tie, same content", state("", "", t0, "e1"), state("", "", t0, "e1"), false, "e1", "valid"},
		{"tie, observed new content", state("", "", t0, "e1"), state("", "", t0, "e2"), true, "e2", "valid"},
		{"tie, unobserved new content", state("", "", t0, "e1"), unobserved(state("", "", t0, "")), false, "e1", "valid"},
		{"tie, observed removal", state("", "", t0, "e1"), state("", "", t0, ""), true, "", "deleted"},
		{"tie, observed re-upload", state("", "", t0, ""), state("", "", t0, "e1"), true, "e1", "valid"},
		{"tie, deleted beats missing", missing(state("", "", t0, "")), state("", "", t0, ""), true, "", "deleted"},
		{"tie, missing does not beat deleted", state("", "", t0, ""), missing(state("", "", t0, "")), false, "", "deleted"},
		{"tie with sequencers is a duplicate", state("", seqKey("0A"), t0, "e1"), state("", seqKey("0A"), t0, "e2"), false, "e1", "valid"},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b.recordPair(t, fmt.Sprintf("k%d", i), tc.first, tc.second, tc.applied, tc.wantETag, tc.wantStatus)
		})
	}
}

// recordPair records first, then second, under key, and checks what the second one left: whether
// it changed the row, and the row's ETag and status. It returns the row after each record.
func (b *recordsBundle) recordPair(t *testing.T, key string, first, second pipeline.Record, applied bool, wantETag, wantStatus string) (before, after dbq.Object) {
	t.Helper()
	first.Key, second.Key = key, key
	got, err := b.rs.Record(b.ctx, first)
	require.NoError(t, err)
	require.True(t, got.Applied, "a first record creates the row")
	before = b.row(t, key)
	got, err = b.rs.Record(b.ctx, second)
	require.NoError(t, err)
	require.Equal(t, applied, got.Applied)
	require.Equal(t, wantETag, got.ETag)
	require.Equal(t, wantStatus, got.Status)
	after = b.row(t, key)
	require.Equal(t, wantStatus, after.Status)
	if wantETag == "" {
		require.Nil(t, after.Etag)
	} else {
		require.Equal(t, wantETag, *after.Etag)
	}
	return before, after
}

// TestRecordsObservations: once records carry the time of their observation (every record the
// Processor writes), the later observation decides the row, whatever the events' sequencers and
// times say; observation time, sequencer and event time keep their greatest values.
func TestRecordsObservations(t *testing.T) {
	t.Parallel()
	eachRecords(t, testRecordsObservations)
}

func testRecordsObservations(t *testing.T, b *recordsBundle) {
	t0 := time.Date(2026, 11, 25, 1, 24, 18, 0, time.UTC)
	obs := func(rec pipeline.Record, at time.Time) pipeline.Record { rec.ObservedAt = at; return rec }
	missing := func(rec pipeline.Record) pipeline.Record {
		rec.Status, rec.Reason, rec.ETag, rec.Size = pipeline.StatusMissing, pipeline.ReasonNotFound, "", nil
		return rec
	}
	forged := seqKey(strings.Repeat("F", 64))
	future := t0.Add(1000 * time.Hour)
	tests := []struct {
		name          string
		first, second pipeline.Record
		applied       bool
		wantETag      string
		wantStatus    string
	}{
		{"later observation beats a newer sequencer", obs(state("", forged, future, ""), t0), obs(state("", seqKey("0A"), t0, "e1"), t0.Add(time.Second)), true, "e1", "valid"},
		{"later observation beats a newer sequencer, present", obs(state("", forged, future, "e1"), t0), obs(state("", seqKey("0A"), t0, "e2"), t0.Add(time.Second)), true, "e2", "valid"},
		{"earlier observation loses to an older sequencer", obs(state("", seqKey("0A"), t0, "e1"), t0.Add(time.Second)), obs(state("", forged, future, ""), t0), false, "e1", "valid"},
		{"same state observed again", obs(state("", seqKey("0A"), t0, "e1"), t0), obs(state("", seqKey("0B"), t0, "e1"), t0.Add(time.Second)), false, "e1", "valid"},
		{"row from before migration 0006 (never observed)", state("", forged, future, ""), obs(state("", "", time.Time{}, "e1"), t0), true, "e1", "valid"},
		{"a record without observation never beats an observed row", obs(state("", "", t0, "e1"), t0), state("", forged, future, "e2"), false, "e1", "valid"},
		{"absent then absent later: deleted stays deleted", obs(state("", "", t0, ""), t0), obs(missing(state("", "", t0, "")), t0.Add(time.Second)), false, "", "deleted"},
		{"absent then absent earlier: deleted replaces missing", obs(missing(state("", "", t0, "")), t0.Add(time.Second)), obs(state("", "", t0, ""), t0), true, "", "deleted"},
		{"absent, then present observed earlier", obs(state("", "", t0, ""), t0.Add(time.Second)), obs(state("", seqKey("FF"), future, "e1"), t0), false, "", "deleted"},
		{"same observation time: the newer event", obs(state("", seqKey("0A"), t0, "e1"), t0), obs(state("", seqKey("0B"), t0, "e2"), t0), true, "e2", "valid"},
		{"same observation time: an older event", obs(state("", seqKey("0B"), t0, "e1"), t0), obs(state("", seqKey("0A"), t0, "e2"), t0), false, "e1", "valid"},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before, row := b.recordPair(t, fmt.Sprintf("o%d", i), tc.first, tc.second, tc.applied, tc.wantETag, tc.wantStatus)
			if tc.applied {
				require.True(t, row.UpdatedAt.After(before.UpdatedAt), "a changed state moves updated_at")
			} else {
				require.Equal(t, before.UpdatedAt, row.UpdatedAt, "an unchanged state keeps updated_at (reconcile judges by it)")
			}
			// The greatest of each is kept, whichever record decided the state.
			wantObs := latest(tc.first.ObservedAt, tc.second.ObservedAt)
			if wantObs.IsZero() {
				require.Nil(t, row.ObservedAt)
			} else {
				require.True(t, wantObs.Equal(*row.ObservedAt), "observed_at %v, want %v", *row.ObservedAt, wantObs)
			}
			if seq := max(tc.first.Sequencer, tc.second.Sequencer); seq == "" {
				require.Nil(t, row.Sequencer)
			} else {
				require.Equal(t, seq, *row.Sequencer)
			}
			require.True(t, latest(tc.first.EventTime, tc.second.EventTime).Equal(*row.EventTime))
		})
	}
}

func latest(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// TestRecordsAnyOrder records every permutation of sets of records, observed at different
// instants and some at the same one, and checks that each order ends in the same row: the newest
// record's state (by observation time, then sequencer, else event time), with the latest
// observation, the greatest sequencer and event time (diagnostics) and the newest record's event
// as the row's tie-break. Before, a record that lost on its observation time still raised the
// sequencer and event time a tie was decided against: A (t2, 01), B (t1, 09), C (t2, 05) ended with
// A's state in the order A, B, C and with C's in A, C, B.
func TestRecordsAnyOrder(t *testing.T) {
	t.Parallel()
	eachRecords(t, testRecordsAnyOrder)
}

func testRecordsAnyOrder(t *testing.T, b *recordsBundle) {
	t1 := time.Date(2026, 11, 25, 1, 0, 0, 0, time.UTC)
	t2 := t1.Add(time.Second)
	ev := func(m int) time.Time { return t1.Add(-time.Hour + time.Duration(m)*time.Minute) }
	rec := func(observed time.Time, seq string, evTime time.Time, etag string) pipeline.Record {
		r := state("", seqKey(seq), evTime, etag)
		r.ObservedAt = observed
		return r
	}
	var never time.Time // a record without an observation time (older than any)
	for _, set := range []struct {
		name string
		recs []pipeline.Record
	}{
		{"by sequencer", []pipeline.Record{
			rec(t2, "01", ev(1), "ea"),
			rec(t1, "09", ev(9), "eb"),
			rec(t2, "05", ev(5), "ec"),
			rec(t2, "03", ev(3), ""), // deleted
			rec(never, "FF", ev(50), "ee"),
		}},
		{"by event time", []pipeline.Record{
			rec(t2, "", ev(1), "ea"),
			rec(t1, "", ev(9), "eb"),
			rec(t2, "", ev(5), "ec"),
			rec(t2, "", ev(3), ""),
			rec(never, "", ev(50), "ee"),
		}},
		{"sequencers at one instant, none at another", []pipeline.Record{
			rec(t2, "01", ev(9), "ea"),
			rec(t1, "", ev(20), "eb"),
			rec(t2, "05", ev(1), "ec"),
			rec(t1, "", ev(2), ""),
			rec(t2, "03", ev(30), "ee"),
		}},
	} {
		t.Run(set.name, func(t *testing.T) {
			want := newestRecord(t, set.recs)
			var wantObs, wantEvent time.Time
			var wantSeq string
			for _, r := range set.recs {
				wantObs, wantEvent, wantSeq = latest(wantObs, r.ObservedAt), latest(wantEvent, r.EventTime), max(wantSeq, r.Sequencer)
			}
			// One key per order, recorded concurrently (the batched store groups records of
			// different orders in one batch), the records of each order one after the other.
			orders := permutations(len(set.recs))
			key := func(i int) string { return fmt.Sprintf("%s-%d", strings.ReplaceAll(set.name, " ", "-"), i) }
			errs := make([]error, len(orders))
			var wg sync.WaitGroup
			for i, order := range orders {
				wg.Go(func() {
					for _, j := range order {
						r := set.recs[j]
						r.Key = key(i)
						if _, err := b.rs.Record(b.ctx, r); err != nil {
							errs[i] = err
							return
						}
					}
				})
			}
			wg.Wait()
			for i, order := range orders {
				require.NoError(t, errs[i], "order %v", order)
				row := b.row(t, key(i))
				require.Equal(t, want.Status, row.Status, "order %v", order)
				require.Equal(t, want.ETag, valueOr(row.Etag), "order %v", order)
				require.True(t, wantObs.Equal(*row.ObservedAt), "order %v: observed_at %v", order, *row.ObservedAt)
				require.Equal(t, wantSeq, valueOr(row.Sequencer), "order %v: the greatest sequencer", order)
				require.True(t, wantEvent.Equal(*row.EventTime), "order %v: the latest event time", order)
				require.Equal(t, ptr(true), row.TiebreakSet, "order %v", order)
				require.Equal(t, want.Sequencer, valueOr(row.TiebreakSequencer), "order %v: the newest record's sequencer", order)
				require.True(t, want.EventTime.Equal(*row.TiebreakEventTime), "order %v: the newest record's event time", order)
			}
		})
	}
}

// TestRecordsTiebreakOfOlderRows: a row no record has written since migration 0020 (tiebreak_set
// NULL) is ordered by its sequencer and event time, as before; the first record sets its
// tie-break.
func TestRecordsTiebreakOfOlderRows(t *testing.T) {
	t.Parallel()
	b := setupRecords(t)
	t0 := time.Date(2026, 11, 25, 1, 0, 0, 0, time.UTC)
	for _, key := range []string{"older", "newer"} {
		_, err := b.st.Pool.Exec(b.ctx, `INSERT INTO objects (bucket, key, status, etag, sequencer, event_time, observed_at)
			VALUES ('b', $1, 'valid', 'e0', $2, $3, $3)`, key, seqKey("0B"), t0)
		require.NoError(t, err)
	}
	older := state("older", seqKey("0A"), t0, "e1")
	older.ObservedAt = t0
	got, err := b.rs.Record(b.ctx, older)
	require.NoError(t, err)
	require.False(t, got.Applied, "an older event than the row's, observed at the same instant")
	row := b.row(t, "older")
	require.Equal(t, "e0", *row.Etag)
	require.Equal(t, seqKey("0B"), *row.TiebreakSequencer, "the row's own event, from its sequencer")

	newer := state("newer", seqKey("0C"), t0, "e1")
	newer.ObservedAt = t0
	got, err = b.rs.Record(b.ctx, newer)
	require.NoError(t, err)
	require.True(t, got.Applied)
	row = b.row(t, "newer")
	require.Equal(t, ptr(true), row.TiebreakSet)
	require.Equal(t, seqKey("0C"), *row.TiebreakSequencer)
}

// newestRecord is the record of recs that decides the row by rules 2 and 3 of PipelineRecord: the
// latest observation, then the newer sequencer when both have one, else the later event time. The
// set must be ordered strictly (no exact tie).
func newestRecord(t *testing.T, recs []pipeline.Record) pipeline.Record {
	t.Helper()
	newer := func(a, b pipeline.Record) int {
		switch {
		case !a.ObservedAt.Equal(b.ObservedAt):
			return a.ObservedAt.Compare(b.ObservedAt)
		case a.Sequencer != "" && b.Sequencer != "":
			return strings.Compare(a.Sequencer, b.Sequencer)
		default:
			return a.EventTime.Compare(b.EventTime)
		}
	}
	best := recs[0]
	for _, r := range recs[1:] {
		if newer(r, best) > 0 {
			best = r
		}
	}
	for _, r := range recs {
		if r.ETag != best.ETag {
			require.Negative(t, newer(r, best), "the set has one newest record")
		}
	}
	return best
}

// permutations returns every order of 0, …, n-1.
func permutations(n int) [][]int {
	if n == 0 {
		return [][]int{{}}
	}
	var out [][]int
	for _, p := range permutations(n - 1) {
		for i := range n {
			q := append(append(append([]int{}, p[:i]...), n-1), p[i:]...)
			out = append(out, q)
		}
	}
	return out
}

func valueOr(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

func TestRecordsRecordFields(t *testing.T) {
	t.Parallel()
	eachRecords(t, testRecordsRecordFields)
}

func testRecordsRecordFields(t *testing.T, b *recordsBundle) {
	id := b.addUpload(t, "k", "put", "pending", nil, nil)
	size := int64(42)
	sum := sha256.Sum256([]byte("x"))
	at := time.Date(2026, 11, 25, 1, 12, 55, 96e6, time.UTC)
	got, err := b.rs.Record(b.ctx, pipeline.Record{
		Bucket: "b", Key: "k", Status: pipeline.StatusRejected, Reason: pipeline.ReasonSniffMismatch,
		VersionID: "v1", ETag: "e1", ContentType: "image/png", SniffedType: "text/plain; charset=utf-8",
		Size: &size, SHA256: sum[:], Width: 3, Height: 2, Owner: "alice", UploadID: id,
		Sequencer: seqKey("18EB24A6C331BBF0"), EventTime: at, Observed: true, CompleteIntent: id,
	})
	require.NoError(t, err)
	require.Equal(t, pipeline.Recorded{Applied: true, Status: "rejected", Reason: "sniff_mismatch", ETag: "e1", VersionID: "v1"}, got)
	row := b.row(t, "k")
	require.Equal(t, "v1", *row.VersionID)
	require.Equal(t, int64(42), *row.Size)
	require.Equal(t, "image/png", *row.ContentType)
	require.Equal(t, "text/plain; charset=utf-8", *row.SniffedType)
	require.Equal(t, sum[:], row.Sha256)
	require.Equal(t, int32(3), *row.Width)
	require.Equal(t, int32(2), *row.Height)
	require.Equal(t, "alice", *row.Owner)
	require.Equal(t, id, *row.UploadID)
	require.Equal(t, seqKey("18EB24A6C331BBF0"), *row.Sequencer)
	require.True(t, at.Equal(*row.EventTime))
	require.Equal(t, "completed", b.uploadStatus(t, id))

	// Only normalized sequencers are stored (migration 0002): others would compare wrongly.
	_, err = b.rs.Record(b.ctx, pipeline.Record{Bucket: "b", Key: "raw", Status: pipeline.StatusDeleted, Sequencer: "18eb24a6c331bbf0"})
	require.ErrorContains(t, err, "objects_sequencer_normalized")

	// Unknown values are NULL.
	_, err = b.rs.Record(b.ctx, pipeline.Record{Bucket: "b", Key: "bare", Status: pipeline.StatusDeleted})
	require.NoError(t, err)
	bare := b.row(t, "bare")
	require.Nil(t, bare.Etag)
	require.Nil(t, bare.Size)
	require.Nil(t, bare.Width)
	require.Nil(t, bare.Owner)
	require.Nil(t, bare.UploadID)
	require.Nil(t, bare.Sequencer)
	require.Nil(t, bare.EventTime)
	require.Nil(t, bare.Reason)
}

func TestRecordsCompleteIntent(t *testing.T) {
	t.Parallel()
	eachRecords(t, testRecordsCompleteIntent)
}

func testRecordsCompleteIntent(t *testing.T, b *recordsBundle) {
	// An aborted intent completes only when the object was seen: an abort racing a complete may
	// have marked it aborted before the object became visible (internal/multipart, "States").
	for _, tc := range []struct {
		from   string
		status string
		want   string
	}{
		{"pending", pipeline.StatusMissing, "completed"}, {"expired", pipeline.StatusMissing, "completed"},
		{"aborted", pipeline.StatusMissing, "aborted"}, {"aborted", pipeline.StatusValid, "completed"},
		{"aborted", pipeline.StatusRejected, "completed"}, {"completed", pipeline.StatusMissing, "completed"},
	} {
		key := "k-" + tc.from + "-" + tc.status
		id := b.addUpload(t, key, "put", tc.from, nil, nil)
		rec := pipeline.Record{Bucket: "b", Key: key, Status: tc.status, CompleteIntent: id}
		switch tc.status {
		case pipeline.StatusMissing:
			rec.Reason = pipeline.ReasonNotFound
		case pipeline.StatusRejected:
			rec.Reason = pipeline.ReasonTooLarge
		}
		_, err := b.rs.Record(b.ctx, rec)
		require.NoError(t, err)
		require.Equal(t, tc.want, b.uploadStatus(t, id), "from %s, object %s", tc.from, tc.status)
	}
}

func TestRecordsArchive(t *testing.T) {
	t.Parallel()
	b := setupRecords(t)
	require.NoError(t, b.rs.Archive(b.ctx, pipeline.ArchivedEvent{
		MessageID: "m1", Bucket: "b", Key: "k", EventName: "ObjectCreated:Put", Outcome: "created:valid", Body: `{"Records":[]}`,
	}))
	require.NoError(t, b.rs.Archive(b.ctx, pipeline.ArchivedEvent{MessageID: "m2", Outcome: "malformed", Body: "{"}))
	var n int
	var bucket, name *string
	require.NoError(t, b.st.Pool.QueryRow(b.ctx, "SELECT count(*) FROM events").Scan(&n))
	require.Equal(t, 2, n)
	require.NoError(t, b.st.Pool.QueryRow(b.ctx, "SELECT bucket, event_name FROM events WHERE message_id = 'm2'").Scan(&bucket, &name))
	require.Nil(t, bucket)
	require.Nil(t, name)
}

func TestRecordsUnavailable(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("dials a closed port")
	}
	cfg, err := pgxpool.ParseConfig("postgres://postgres@127.0.0.1:1/intake_test?sslmode=disable&connect_timeout=2")
	require.NoError(t, err)
	ctx := testkit.Context(t)
	pool, err := pgxpool.NewWithConfig(ctx, cfg) // connects lazily
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	rs := store.NewRecords(&store.Store{Pool: pool, Q: dbq.New(pool)})

	batched := store.NewBatchedRecords(&store.Store{Pool: pool, Q: dbq.New(pool)}, store.BatchOptions{})
	t.Cleanup(batched.Close)
	for _, rs := range []*store.Records{rs, batched} {
		_, err = rs.Lookup(ctx, "b", "k")
		require.ErrorIs(t, err, pipeline.ErrUnavailable)
		_, err = rs.Record(ctx, pipeline.Record{Bucket: "b", Key: "k", Status: pipeline.StatusDeleted})
		require.ErrorIs(t, err, pipeline.ErrUnavailable)
	}
	require.ErrorIs(t, rs.Archive(ctx, pipeline.ArchivedEvent{MessageID: "m", Outcome: "x", Body: "x"}), pipeline.ErrUnavailable)

	// A statement error is not an outage.
	eachRecords(t, func(t *testing.T, b *recordsBundle) {
		_, err := b.rs.Record(b.ctx, pipeline.Record{Bucket: "b", Key: "k", Status: "bogus"})
		require.ErrorContains(t, err, "objects_status_check")
		require.False(t, errors.Is(err, pipeline.ErrUnavailable), "%v", err)
	})
}

func TestUnavailable(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"connection exception", &pgconn.PgError{Code: "08006"}, true},
		{"admin shutdown", &pgconn.PgError{Code: "57P01"}, true},
		{"starting up", &pgconn.PgError{Code: "57P03"}, true},
		{"too many connections", &pgconn.PgError{Code: "53300"}, true},
		{"disk full", &pgconn.PgError{Code: "53100"}, true},
		{"out of memory", &pgconn.PgError{Code: "53200"}, true},
		{"crash shutdown", &pgconn.PgError{Code: "57P02"}, true},
		{"idle session timeout", &pgconn.PgError{Code: "57P05"}, true},
		{"read-only transaction (failover)", &pgconn.PgError{Code: "25006"}, true},
		{"statement timeout", &pgconn.PgError{Code: "57014"}, true},
		{"lock timeout", fmt.Errorf("record: %w", &pgconn.PgError{Code: "55P03"}), true},
		{"I/O error", &pgconn.PgError{Code: "58030"}, true},
		{"system error", &pgconn.PgError{Code: "58000"}, true},
		{"serialization failure: retried in place", &pgconn.PgError{Code: "40001"}, false},
		{"deadlock: retried in place", &pgconn.PgError{Code: "40P01"}, false},
		{"unique violation", &pgconn.PgError{Code: "23505"}, false},
		{"check violation", fmt.Errorf("upsert: %w", &pgconn.PgError{Code: "23514"}), false},
		{"deadline", fmt.Errorf("x: %w", context.DeadlineExceeded), true},
		{"connection lost", fmt.Errorf("read: %w", io.ErrUnexpectedEOF), true},
		{"net error", &net.OpError{Op: "dial", Err: errors.New("refused")}, true},
		{"plain", errors.New("boom"), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, store.Unavailable(tc.err))
		})
	}
}
