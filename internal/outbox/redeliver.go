package outbox

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hibiken/asynq"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/intakehq/intake/internal/store/dbq"
	"github.com/intakehq/intake/internal/webhook"
	"github.com/intakehq/intake/worker/tasks"
)

// Tasks finds and deletes asynq tasks by ID (*asynq.Inspector).
type Tasks interface {
	GetTaskInfo(queue, id string) (*asynq.TaskInfo, error)
	DeleteTask(queue, id string) error
}

var _ Tasks = (*asynq.Inspector)(nil)

// RedeliverOptions choose what [Redeliver] sends again.
type RedeliverOptions struct {
	// Tasks finds the tasks of an earlier run that did not commit (required unless DryRun).
	Tasks Tasks
	// Endpoint, when set, limits the redelivery to that endpoint's deliveries.
	Endpoint string
	// StuckBefore, when set, also sends again the deliveries still pending of notifications
	// relayed before it and not delivered since: their tasks were lost (Redis lost its data) or
	// their give-up could not be recorded. Deliveries still being retried are then sent twice,
	// under the same webhook-id. Only webhook deliveries are pending on a row: a verdict task
	// Redis lost is not found (see RelayConfig.VerdictQueue).
	StuckBefore time.Time
	// AttemptTimeout is the webhook attempt timeout the tasks are built with (default 10 s, as
	// INTAKE_WEBHOOK_TIMEOUT).
	AttemptTimeout time.Duration
	// DryRun counts what would be sent and changes nothing.
	DryRun bool
	// BatchSize caps the notifications of one transaction (default 100).
	BatchSize int
	// Progress, when set, is told how many notifications each transaction handled.
	Progress func(n int)
}

// RedeliverResult is what [Redeliver] sent (or, in a dry run, would send).
type RedeliverResult struct {
	// Notifications counts the notifications with a delivery sent again.
	Notifications int `json:"notifications"`
	// Deliveries counts the deliveries sent again, by endpoint.
	Deliveries map[string]int `json:"deliveries"`
	// DryRun is set when nothing was sent.
	DryRun bool `json:"dry_run,omitempty"`
}

// Redeliver sends again the given-up deliveries of the notifications in the outbox at its start
// (and, with StuckBefore, the stuck ones), as webhook delivery tasks with a fresh retry schedule.
// Per batch of notifications, in one transaction holding their rows, it enqueues one task per
// delivery, with an ID naming the row's redelivery count ([webhook.RedeliverTaskID]), and then
// moves the endpoints from gave_up back to pending. A redeliver that dies between the two leaves
// the rows as they were; run again, it enqueues the same task IDs. asynq refuses an ID while its
// task is kept: one still to run delivers (once), and one already archived (it was given up
// again, while the row was not locked) is deleted and enqueued anew, so that every endpoint put
// back in pending has a task to run. A delivery to an endpoint no longer configured is given up
// again by the deliverer, on the last attempt of its retry schedule; `intake outbox discard` drops
// those. It ends after one pass over the rows there at its start, whatever is given up meanwhile.
func Redeliver(ctx context.Context, pool *pgxpool.Pool, client Enqueuer, o RedeliverOptions) (RedeliverResult, error) {
	res := RedeliverResult{Deliveries: map[string]int{}, DryRun: o.DryRun}
	if o.Tasks == nil && !o.DryRun {
		return res, errors.New("redeliver: a task inspector is required")
	}
	last, err := dbq.New(pool).OutboxLastID(ctx)
	if err != nil {
		return res, fmt.Errorf("redeliver: newest notification: %w", err)
	}
	batch := cmp.Or(o.BatchSize, 100)
	timeout := cmp.Or(o.AttemptTimeout, 10*time.Second)
	for after := int64(0); ; {
		n, next, err := redeliverBatch(ctx, pool, client, o, batch, timeout, after, last, &res)
		if err != nil {
			return res, err
		}
		if o.Progress != nil && n > 0 {
			o.Progress(n)
		}
		if n < batch {
			return res, nil
		}
		after = next
	}
}

// redeliverBatch redelivers up to batch notifications after after (up to last) in one
// transaction, adds them to res once committed, and returns how many it read and the last id.
func redeliverBatch(ctx context.Context, pool *pgxpool.Pool, client Enqueuer, o RedeliverOptions, batch int,
	timeout time.Duration, after, last int64, res *RedeliverResult) (int, int64, error) {
	tx, err := beginIdleBounded(ctx, pool, redeliverIdle)
	if err != nil {
		return 0, 0, fmt.Errorf("redeliver: begin: %w", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	q := dbq.New(tx)
	rows, err := q.OutboxClaimRedeliver(ctx, dbq.OutboxClaimRedeliverParams{
		AfterID: after, LastID: last, Endpoint: o.Endpoint, StuckBefore: o.StuckBefore, MaxRows: int32(batch),
	})
	if err != nil {
		return 0, 0, fmt.Errorf("redeliver: read notifications after %d: %w", after, err)
	}
	if len(rows) == 0 {
		return 0, after, nil
	}
	mark := dbq.OutboxMarkRedeliveredParams{}
	var ts []*asynq.Task
	var ids []string
	counts := map[string]int{}
	for _, row := range rows {
		eps := redeliverable(row, o)
		if len(eps) == 0 {
			continue
		}
		body := tasks.AppendUploadVerdict(nil, row.EventID.String(), row.EventType, row.CreatedAt, row.Data)
		for _, ep := range eps {
			t, err := webhook.NewDeliverTask([]webhook.Item{{OutboxID: row.ID, Endpoint: ep, Body: body}}, timeout)
			if err != nil {
				return 0, 0, fmt.Errorf("redeliver notification %d to %q: %w", row.ID, ep, err)
			}
			ts = append(ts, t)
			ids = append(ids, webhook.RedeliverTaskID(row.ID, ep, int(row.Redeliveries)+1))
			counts[ep]++
		}
		mark.Ids = append(mark.Ids, row.ID)
		mark.Endpoints = append(mark.Endpoints, strings.Join(eps, ","))
	}
	next := rows[len(rows)-1].ID
	if o.DryRun || len(ts) == 0 {
		addCounts(res, len(mark.Ids), counts)
		return len(rows), next, nil
	}
	// Bounded within the transaction's idle bound: the run gives up before PostgreSQL ends it.
	ectx, cancel := context.WithTimeout(ctx, redeliverIdle-idleMargin)
	err = enqueueAll(ectx, client, ts, ids, o.Tasks, nil)
	cancel()
	if err != nil {
		return 0, 0, fmt.Errorf("redeliver: %w", err)
	}
	if err := q.OutboxMarkRedelivered(ctx, mark); err != nil {
		return 0, 0, fmt.Errorf("redeliver: record: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return 0, 0, fmt.Errorf("redeliver: commit: %w", err)
	}
	addCounts(res, len(mark.Ids), counts)
	return len(rows), next, nil
}

// redeliverable lists the endpoints of row to send again under o, sorted: its given-up ones and,
// when the row is stuck (relayed before o.StuckBefore, not delivered), its pending ones; only
// o.Endpoint when set.
func redeliverable(row dbq.OutboxClaimRedeliverRow, o RedeliverOptions) []string {
	eps := slices.Clone(row.GaveUp)
	if row.DeliveredAt == nil && row.RelayedAt != nil && row.RelayedAt.Before(o.StuckBefore) {
		eps = append(eps, row.Pending...)
	}
	if o.Endpoint != "" {
		eps = slices.DeleteFunc(eps, func(e string) bool { return e != o.Endpoint })
	}
	slices.Sort(eps)
	return slices.Compact(eps)
}

func addCounts(res *RedeliverResult, notifications int, counts map[string]int) {
	res.Notifications += notifications
	for ep, n := range counts {
		res.Deliveries[ep] += n
	}
}

// enqueueAll enqueues ts, 16 at a time, each under ids[i] when ids is not nil (else under the
// task's own ID), and with the options extra gives it when extra is not nil. A task already there
// (enqueued by a relay or redeliver that did not commit) is not an error, unless it has finished:
// with done set, a finished one (archived, completed) is deleted and the task enqueued again.
func enqueueAll(ctx context.Context, client Enqueuer, ts []*asynq.Task, ids []string, done Tasks,
	extra func(*asynq.Task) []asynq.Option) error {
	errs := make([]error, len(ts))
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	for i, t := range ts {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			var opts []asynq.Option
			if ids != nil {
				opts = append(opts, asynq.TaskID(ids[i]))
			}
			if extra != nil {
				opts = append(opts, extra(t)...)
			}
			_, err := client.EnqueueContext(ctx, t, opts...)
			if errors.Is(err, asynq.ErrTaskIDConflict) && done != nil {
				err = requeueFinished(ctx, client, done, t, ids[i])
			}
			if err != nil && !errors.Is(err, asynq.ErrTaskIDConflict) {
				errs[i] = fmt.Errorf("enqueue %s: %w", t.Type(), err)
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// requeueFinished enqueues t under id again when the task holding id has finished (archived or
// completed); one still to run is left to run (asynq.ErrTaskIDConflict is returned).
func requeueFinished(ctx context.Context, client Enqueuer, tasks Tasks, t *asynq.Task, id string) error {
	info, err := tasks.GetTaskInfo(webhook.Queue, id)
	switch {
	case errors.Is(err, asynq.ErrTaskNotFound):
		// Gone since the conflict (completed and deleted): enqueue it again.
	case err != nil:
		return fmt.Errorf("read task %s: %w", id, err)
	case info.State != asynq.TaskStateArchived && info.State != asynq.TaskStateCompleted:
		return asynq.ErrTaskIDConflict
	default:
		if err := tasks.DeleteTask(webhook.Queue, id); err != nil && !errors.Is(err, asynq.ErrTaskNotFound) {
			return fmt.Errorf("delete finished task %s: %w", id, err)
		}
	}
	_, err = client.EnqueueContext(ctx, t, asynq.TaskID(id))
	return err
}

// discardBatch is the number of notifications one statement of [Discard] changes at most: at
// about 45 µs a row, it holds its row locks for some 50 ms, while the deliveries recorded meanwhile
// (store.Outbox, whose batches time out after 10 s) wait for them.
const discardBatch = 1000

// discardTimeout bounds one statement of [Discard], waits for rows another transaction holds
// included.
const discardTimeout = time.Minute

// Discard drops the given-up deliveries (to endpoint, when set) of the notifications in the
// outbox at its start, and returns how many notifications it changed. Nothing is sent: use it for
// an endpoint removed for good, or once the app has caught up by other means. The notifications
// are then purged after the retention, once no delivery of theirs is left. It works in id order,
// in batches of discardBatch notifications, each its own statement (and transaction), so that the
// deliveries recorded meanwhile wait for one batch's row locks at most. A row another transaction
// holds is waited for, not skipped. Stopped part-way (ctx ended, or an error), it returns how many
// it changed so far, with the error: those stay changed, and running it again drops the rest.
func Discard(ctx context.Context, pool *pgxpool.Pool, endpoint string) (int64, error) {
	return discard(ctx, pool, endpoint, discardBatch, nil)
}

// discard is [Discard] with batch notifications per statement; between, when not nil, is called
// after each full batch (before the next one) with the count so far.
func discard(ctx context.Context, pool *pgxpool.Pool, endpoint string, batch int32, between func(done int64)) (int64, error) {
	q := dbq.New(pool)
	last, err := q.OutboxLastID(ctx)
	if err != nil {
		return 0, fmt.Errorf("discard: newest notification: %w", err)
	}
	var done int64
	for after := int64(0); ; {
		if err := ctx.Err(); err != nil {
			return done, fmt.Errorf("discard: stopped after %d notifications: %w", done, err)
		}
		bctx, cancel := context.WithTimeout(ctx, discardTimeout)
		res, err := q.OutboxDiscard(bctx, dbq.OutboxDiscardParams{Endpoint: endpoint, AfterID: after, LastID: last, MaxRows: batch})
		cancel()
		if err != nil {
			return done, fmt.Errorf("discard: stopped after %d notifications, at id %d: %w", done, after, err)
		}
		done += res.Notifications
		if res.Notifications < int64(batch) || res.ThroughID >= last {
			return done, nil
		}
		after = res.ThroughID
		if between != nil {
			between(done)
		}
	}
}

// Status is the state of the outbox's deliveries.
type Status struct {
	// Unrelayed counts the notifications not moved to asynq yet.
	Unrelayed int64 `json:"unrelayed"`
	// OldestUndeliveredSeconds is the age of the oldest notification with a delivery still being
	// tried (0: none).
	OldestUndeliveredSeconds float64 `json:"oldest_undelivered_seconds"`
	// GaveUp lists, by endpoint, the notifications whose delivery was given up.
	GaveUp []GaveUp `json:"gave_up"`
}

// GaveUp counts the given-up deliveries to one endpoint.
type GaveUp struct {
	Endpoint      string    `json:"endpoint"`
	Notifications int64     `json:"notifications"`
	Oldest        time.Time `json:"oldest"`
}

// ReadStatus reads the outbox's [Status].
func ReadStatus(ctx context.Context, pool *pgxpool.Pool) (Status, error) {
	q := dbq.New(pool)
	b, err := q.OutboxBacklog(ctx)
	if err != nil {
		return Status{}, fmt.Errorf("outbox backlog: %w", err)
	}
	rows, err := q.OutboxGaveUp(ctx)
	if err != nil {
		return Status{}, fmt.Errorf("outbox give-ups: %w", err)
	}
	s := Status{Unrelayed: b.Unrelayed, OldestUndeliveredSeconds: b.OldestAgeSeconds, GaveUp: []GaveUp{}}
	for _, r := range rows {
		s.GaveUp = append(s.GaveUp, GaveUp{Endpoint: r.Endpoint, Notifications: r.Notifications, Oldest: r.Oldest})
	}
	return s, nil
}
