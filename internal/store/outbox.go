package store

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/intakehq/intake/internal/store/dbq"
)

// Outbox is the webhook deliveries' side of the outbox table (queries/outbox.sql): it records
// deliveries with group commit, as Records does for the consumer: the records of concurrent
// deliveries go out as one UPDATE and one commit (one WAL flush) instead of one each. A lone call
// runs at once.
type Outbox struct {
	q     *dbq.Queries
	marks *batcher[delivery, struct{}]
}

// delivery is one endpoint's delivery of one notification.
type delivery struct {
	id       int64
	endpoint string
}

// NewOutbox starts the batching goroutine of an Outbox over s; call Close when done, before
// closing the pool. Zero options take Records' defaults, except that one batch runs at a time
// (Committers is ignored), so that two batches never lock the same rows in different orders.
func NewOutbox(s *Store, opts BatchOptions) *Outbox {
	o := &Outbox{q: s.Q}
	timeout := cmp.Or(opts.Timeout, 10*time.Second)
	o.marks = newBatcher(1, cmp.Or(opts.MaxBatch, 64), timeout, discard{}, o.markBatch,
		func(ctx context.Context, d delivery) (struct{}, error) { return struct{}{}, o.mark(ctx, []delivery{d}) })
	return o
}

// Close runs the queued calls and stops the batching goroutine; later calls run unbatched. It is
// idempotent.
func (o *Outbox) Close() { o.marks.close() }

// MarkDelivered records that the notification id was delivered to endpoint: the endpoint leaves
// the row's pending ones, and the row is delivered once none is left. Recording twice is harmless.
func (o *Outbox) MarkDelivered(ctx context.Context, id int64, endpoint string) error {
	_, err := o.marks.do(ctx, delivery{id, endpoint})
	return err
}

// MarkGaveUp records that the delivery of notification id to endpoint was given up: the endpoint
// leaves the row's pending ones for its given-up ones (counted by intake_outbox_gave_up, kept
// until `intake outbox redeliver` or `discard`). An endpoint already delivered to is left alone.
// Give-ups are rare (a day of failures, or a refusal): the statement runs at once, unbatched.
func (o *Outbox) MarkGaveUp(ctx context.Context, id int64, endpoint string) error {
	if err := o.q.OutboxMarkGaveUp(ctx, dbq.OutboxMarkGaveUpParams{ID: id, Endpoint: endpoint}); err != nil {
		return fmt.Errorf("record the give-up of notification %d to %q: %w", id, endpoint, err)
	}
	return nil
}

// ToDeliver returns those of the notifications ids still to deliver to endpoint, in id order:
// still in the outbox (a purged one was delivered everywhere), neither delivered to endpoint nor
// given up on it. A batch delivery task run again posts these only.
func (o *Outbox) ToDeliver(ctx context.Context, ids []int64, endpoint string) ([]int64, error) {
	left, err := o.q.OutboxToDeliver(ctx, dbq.OutboxToDeliverParams{Ids: ids, Endpoint: endpoint})
	if err != nil {
		return nil, fmt.Errorf("read the deliveries of %d notifications to %q: %w", len(ids), endpoint, err)
	}
	return left, nil
}

// markBatch records the deliveries of calls with one statement.
func (o *Outbox) markBatch(ctx context.Context, calls []*call[delivery, struct{}]) {
	ds := make([]delivery, len(calls))
	for i, c := range calls {
		ds[i] = c.arg
	}
	err := o.mark(ctx, ds)
	for _, c := range calls {
		c.answer(struct{}{}, err)
	}
}

// mark records deliveries in one statement, each row once (in id order) with its endpoints.
func (o *Outbox) mark(ctx context.Context, ds []delivery) error {
	byID := map[int64][]string{}
	for _, d := range ds {
		if !slices.Contains(byID[d.id], d.endpoint) {
			byID[d.id] = append(byID[d.id], d.endpoint)
		}
	}
	p := dbq.OutboxMarkDeliveredBatchParams{}
	for id := range byID {
		p.Ids = append(p.Ids, id)
	}
	slices.Sort(p.Ids)
	for _, id := range p.Ids {
		p.Endpoints = append(p.Endpoints, strings.Join(byID[id], ","))
	}
	if err := o.q.OutboxMarkDeliveredBatch(ctx, p); err != nil {
		return fmt.Errorf("record %d deliveries: %w", len(ds), err)
	}
	return nil
}

// discard is an Observer that keeps nothing (the outbox's batch sizes are not exported).
type discard struct{}

func (discard) Observe(float64) {}
