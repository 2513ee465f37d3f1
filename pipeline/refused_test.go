package pipeline_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/intakehq/intake/pipeline"
)

// archiveRecords is a RecordStore whose Archive fails with err (nil: it succeeds) and keeps what it
// archived; its Lookup fails with lookupErr. Nothing else of it is used.
type archiveRecords struct {
	pipeline.RecordStore
	mu        sync.Mutex
	err       error
	lookupErr error
	archived  []pipeline.ArchivedEvent
}

func (a *archiveRecords) Archive(ctx context.Context, ev pipeline.ArchivedEvent) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return err
	}
	if a.err != nil {
		return a.err
	}
	a.archived = append(a.archived, ev)
	return nil
}

func (a *archiveRecords) Lookup(context.Context, string, string) (pipeline.Lookup, error) {
	return pipeline.Lookup{}, a.lookupErr
}

func (a *archiveRecords) outcomes() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []string
	for _, ev := range a.archived {
		out = append(out, ev.Outcome)
	}
	return out
}

// TestProcessArchiveRefusedOutage: with Archive on, a refused body (malformed, or naming a foreign
// bucket) whose archive fails because PostgreSQL is down, or because the context ended, is not
// dead-lettered without its events row: Process returns a retryable error (not ErrPermanent; the
// outage as an outage of PostgreSQL, so that the consumer pauses), and once the archive works the
// body is archived and refused as before. An archive failure that is no outage keeps the refusal.
func TestProcessArchiveRefusedOutage(t *testing.T) {
	t.Parallel()
	bodies := map[string]struct {
		body    []byte
		outcome string
	}{
		"malformed":      {[]byte(`{"Records":[`), "malformed"},
		"foreign bucket": {body(testEvent{name: "ObjectCreated:Put", bucket: "someone-elses", key: "k", seq: "0A", at: t0}), "refused:" + pipeline.ReasonForeignBucket},
	}
	for name, tc := range bodies {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			records := &archiveRecords{err: pipeline.Unavailable(pipeline.DependencyPostgres, errors.New("dial tcp 127.0.0.1:5432: connection refused"))}
			p, err := pipeline.NewProcessor(pipeline.ProcessorConfig{Objects: nopObjects{}, Records: records, Buckets: []string{"mine"}, Archive: true})
			require.NoError(t, err)

			err = p.Process(context.Background(), "m1", tc.body)
			require.Error(t, err)
			require.False(t, errors.Is(err, pipeline.ErrPermanent), "not dead-lettered without its archive row: %v", err)
			require.ErrorIs(t, err, pipeline.ErrUnavailable, "an outage: the consumer pauses")
			require.Equal(t, pipeline.DependencyPostgres, pipeline.UnavailableDependency(err))
			var r *pipeline.Refusal
			require.False(t, errors.As(err, &r), "no dead-letter reason either")
			require.Empty(t, records.outcomes())

			// Cancelled (shutdown, the message's deadline) while archiving: retried too.
			records.err = nil
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			err = p.Process(ctx, "m1", tc.body)
			require.ErrorIs(t, err, context.Canceled)
			require.False(t, errors.Is(err, pipeline.ErrPermanent), "%v", err)
			require.Empty(t, records.outcomes())

			// PostgreSQL is back: archived, then refused for good.
			err = p.Process(context.Background(), "m1", tc.body)
			require.ErrorIs(t, err, pipeline.ErrPermanent)
			require.False(t, errors.Is(err, pipeline.ErrUnavailable))
			require.Equal(t, []string{tc.outcome}, records.outcomes())

			// An archive failure that is no outage (the store refusing this body) does not hold
			// the message back: it is refused as without Archive.
			records.err = errors.New("value too long for type text")
			err = p.Process(context.Background(), "m2", tc.body)
			require.ErrorIs(t, err, pipeline.ErrPermanent)
			require.False(t, errors.Is(err, pipeline.ErrUnavailable))
			if tc.outcome != "malformed" {
				require.ErrorAs(t, err, &r)
				require.Equal(t, pipeline.ReasonForeignBucket, r.DeadLetterReason())
			}
		})
	}
}

// TestProcessMetricsCountAttempts: Process cannot tell a message's first receive from a later one
// (the consumer does not give it the receive count), so the event metrics count processing
// attempts, and their help says so: a refused message is counted on every receive until it is
// dead-lettered, and a body retried because a later event failed has its earlier events counted
// (and their age observed) again.
func TestProcessMetricsCountAttempts(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	records := &archiveRecords{lookupErr: pipeline.Unavailable(pipeline.DependencyPostgres, errors.New("connection refused"))}
	p, err := pipeline.NewProcessor(pipeline.ProcessorConfig{Objects: nopObjects{}, Records: records, Buckets: []string{"mine"}, Registerer: reg})
	require.NoError(t, err)

	foreign := body(testEvent{name: "ObjectCreated:Put", bucket: "someone-elses", key: "k", seq: "0A", at: t0})
	for range 3 {
		require.ErrorIs(t, p.Process(context.Background(), "m1", foreign), pipeline.ErrPermanent)
	}
	require.Equal(t, 3.0, metricValue(t, reg, "intake_events_distrusted_total", map[string]string{"reason": pipeline.DistrustForeignBucket}),
		"one message received three times")

	// An ACL event, then a creation whose lookup fails: the body is retried whole.
	twice := body(testEvent{name: "ObjectAcl:Put", bucket: "mine", key: "a", at: t0}, testEvent{name: "ObjectCreated:Put", bucket: "mine", key: "b", at: t0})
	for range 2 {
		require.ErrorIs(t, p.Process(context.Background(), "m2", twice), pipeline.ErrUnavailable)
	}
	require.Equal(t, 2.0, metricValue(t, reg, "intake_events_total", map[string]string{"kind": "acl"}))
	require.Equal(t, 2.0, metricValue(t, reg, "intake_events_total", map[string]string{"kind": "created"}))
	require.Equal(t, 4.0, metricValue(t, reg, "intake_event_age_seconds", nil))

	families, err := reg.Gather()
	require.NoError(t, err)
	helps := map[string]string{}
	for _, f := range families {
		helps[f.GetName()] = f.GetHelp()
	}
	for _, name := range []string{"intake_events_total", "intake_event_age_seconds", "intake_events_distrusted_total"} {
		require.Contains(t, helps, name)
		require.True(t, strings.Contains(helps[name], "attempt"), "%s's help says it counts processing attempts: %q", name, helps[name])
	}
}
