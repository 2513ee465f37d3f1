package store

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/intakehq/intake/internal/store/dbq"
)

// Notification is an outbox row as a delivery needs it.
type Notification = dbq.OutboxGetBatchRow

// Outbox is the webhook deliveries' side of the outbox table (queries/outbox.sql): it reads
// notifications and records deliveries with group commit, as Records does for the consumer: the
// reads of concurrent deliveries are answered by one SELECT, and their delivery records go out as
// one UPDATE and one commit. A lone call runs at once. Errors caused by an unreachable database
// are classified with Unavailable.
type Outbox struct {
	q     *dbq.Queries
	reads *batcher[int64, Notification]
	marks *batcher[delivery, struct{}]
}

// delivery is one endpoint's delivery of one notification.
type delivery struct {
	id       int64
	endpoint string
}

// NewOutbox starts the batching goroutines of an Outbox over s; call Close when done, before
// closing the pool. Zero options take Records' defaults, except that records of deliveries run one
// batch at a time (Committers applies to reads), so that two batches never lock the same rows in
// different orders.
func NewOutbox(s *Store, opts BatchOptions) *Outbox {
	o := &Outbox{q: s.Q}
	timeout := cmp.Or(opts.Timeout, 10*time.Second)
	maxBatch := cmp.Or(opts.MaxBatch, 64)
	o.reads = newBatcher(cmp.Or(opts.Committers, 2), maxBatch, timeout, discard{}, o.readBatch,
		func(ctx context.Context, id int64) (Notification, error) { return o.read(ctx, []int64{id}, id) })
	o.marks = newBatcher(1, maxBatch, timeout, discard{}, o.markBatch,
		func(ctx context.Context, d delivery) (struct{}, error) { return struct{}{}, o.mark(ctx, []delivery{d}) })
	return o
}

// Close runs the queued calls and stops the batching goroutines; later calls run unbatched. It is
// idempotent.
func (o *Outbox) Close() {
	o.reads.close()
	o.marks.close()
}

// Notification returns the outbox row id; an error wrapping pgx.ErrNoRows when there is none (it
// was purged).
func (o *Outbox) Notification(ctx context.Context, id int64) (Notification, error) {
	return o.reads.do(ctx, id)
}

// MarkDelivered records that the notification id was delivered to endpoint: the endpoint leaves
// the row's pending ones, and the row is delivered once none is left. Recording twice is harmless.
func (o *Outbox) MarkDelivered(ctx context.Context, id int64, endpoint string) error {
	_, err := o.marks.do(ctx, delivery{id, endpoint})
	return err
}

// read reads ids with one statement and returns the row of want.
func (o *Outbox) read(ctx context.Context, ids []int64, want int64) (Notification, error) {
	rows, err := o.q.OutboxGetBatch(ctx, ids)
	if err != nil {
		return Notification{}, fmt.Errorf("read notification %d: %w", want, err)
	}
	for _, r := range rows {
		if r.ID == want {
			return r, nil
		}
	}
	return Notification{}, fmt.Errorf("notification %d: %w", want, pgx.ErrNoRows)
}

// readBatch answers the reads of calls with one statement.
func (o *Outbox) readBatch(ctx context.Context, calls []*call[int64, Notification]) {
	ids := make([]int64, len(calls))
	for i, c := range calls {
		ids[i] = c.arg
	}
	rows, err := o.q.OutboxGetBatch(ctx, ids)
	byID := make(map[int64]Notification, len(rows))
	for _, r := range rows {
		byID[r.ID] = r
	}
	for _, c := range calls {
		switch r, ok := byID[c.arg]; {
		case err != nil:
			c.answer(Notification{}, fmt.Errorf("read notification %d (with %d others): %w", c.arg, len(calls)-1, err))
		case !ok:
			c.answer(Notification{}, fmt.Errorf("notification %d: %w", c.arg, pgx.ErrNoRows))
		default:
			c.answer(r, nil)
		}
	}
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
