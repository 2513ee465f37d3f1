package jobs

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/hibiken/asynq"
	"github.com/robfig/cron/v3"
)

// PeriodicEntry is one task a [Periodic] enqueues every period.
type PeriodicEntry struct {
	// Cron is the schedule: a five-field cron spec ("*/15 * * * *") or a descriptor such as
	// "@daily" or "@every 30m".
	Cron string
	// Task is enqueued every period. Its type names the entry (one entry per type).
	Task *asynq.Task
	// ID names the task of the period that starts at window (see [SweepWindow]): replicas that
	// fire in the same period compute the same ID, and asynq enqueues it once.
	ID func(window time.Time) string
}

// PeriodicConfig configures [Periodic].
type PeriodicConfig struct {
	// Redis is asynq's connection (required).
	Redis asynq.RedisConnOpt
	// Entries are the tasks and their schedules (at least one).
	Entries []PeriodicEntry
	// Location is the cron's time zone (default UTC).
	Location *time.Location
	// Log receives the scheduler's and asynq's logs (default: discard).
	Log *slog.Logger
	// Now is the clock used to name periods (default time.Now).
	Now func() time.Time
}

// Periodic enqueues tasks on cron schedules with one asynq.Scheduler. Each period's task of an
// entry gets the ID entry.ID(period start), so any number of replicas running it enqueue one task
// per period (the others get asynq.ErrTaskIDConflict, logged at debug level).
type Periodic struct {
	redis    asynq.RedisConnOpt
	entries  []PeriodicEntry
	byType   map[string]PeriodicEntry
	location *time.Location
	log      *slog.Logger
	now      func() time.Time

	// mu is held from PreEnqueueFunc to PostEnqueueFunc: the pre-enqueue hook rewrites the TaskID
	// option in the entry's option slice, which asynq then passes to Enqueue.
	mu      sync.Mutex
	current string // type of the task being enqueued, under mu
}

// NewPeriodic checks cfg (including the cron specs) and returns the scheduler. Nothing connects
// before Run.
func NewPeriodic(cfg PeriodicConfig) (*Periodic, error) {
	if cfg.Redis == nil || len(cfg.Entries) == 0 {
		return nil, errors.New("periodic tasks: Redis and at least one entry are required")
	}
	p := &Periodic{
		redis: cfg.Redis, byType: map[string]PeriodicEntry{}, location: cfg.Location,
		log: cmp.Or(cfg.Log, slog.New(slog.DiscardHandler)), now: orNow(cfg.Now),
	}
	for _, e := range cfg.Entries {
		if e.Task == nil || e.ID == nil {
			return nil, errors.New("periodic tasks: every entry needs a task and an ID function")
		}
		e.Cron = strings.TrimSpace(e.Cron)
		if _, err := cron.ParseStandard(e.Cron); err != nil {
			return nil, fmt.Errorf("periodic %s: cron spec %q: %w", e.Task.Type(), e.Cron, err)
		}
		if _, dup := p.byType[e.Task.Type()]; dup {
			return nil, fmt.Errorf("periodic tasks: two entries of type %s", e.Task.Type())
		}
		p.byType[e.Task.Type()] = e
		p.entries = append(p.entries, e)
	}
	return p, nil
}

// Run starts the schedules and blocks until ctx is cancelled, then stops them and closes its
// Redis connections. It returns an error if Redis cannot be reached at start.
func (p *Periodic) Run(ctx context.Context) error {
	if err := pingRedis(ctx, p.redis); err != nil {
		return fmt.Errorf("periodic tasks: %w", err)
	}
	sched := asynq.NewScheduler(p.redis, &asynq.SchedulerOpts{
		Location:        p.location,
		Logger:          NewAsynqLogger(p.log),
		LogLevel:        asynqLevel(p.log),
		PreEnqueueFunc:  p.preEnqueue,
		PostEnqueueFunc: p.postEnqueue,
	})
	for _, e := range p.entries {
		// The placeholder ID is replaced by the period's ID before every enqueue (preEnqueue).
		if _, err := sched.Register(e.Cron, e.Task, asynq.TaskID(e.ID(time.Unix(0, 0)))); err != nil {
			return fmt.Errorf("periodic %s: cron spec %q: %w", e.Task.Type(), e.Cron, err)
		}
		p.log.Info("periodic task scheduled", "type", e.Task.Type(), "cron", e.Cron)
	}
	if err := sched.Start(); err != nil {
		return fmt.Errorf("periodic tasks: start: %w", err)
	}
	<-ctx.Done()
	sched.Shutdown()
	return nil
}

func (p *Periodic) preEnqueue(task *asynq.Task, opts []asynq.Option) {
	p.mu.Lock() // released in postEnqueue, which asynq always calls after Enqueue
	e := p.byType[task.Type()]
	p.current = task.Type()
	id := e.ID(SweepWindow(e.Cron, p.now()))
	for i, o := range opts {
		if o.Type() == asynq.TaskIDOpt {
			opts[i] = asynq.TaskID(id)
		}
	}
}

func (p *Periodic) postEnqueue(info *asynq.TaskInfo, err error) {
	typ := p.current
	defer p.mu.Unlock()
	switch {
	case err == nil:
		p.log.Info("periodic task enqueued", "type", typ, "task_id", info.ID)
	case errors.Is(err, asynq.ErrTaskIDConflict):
		p.log.Debug("periodic task of this period already enqueued (by another replica)", "type", typ)
	default:
		p.log.Warn("periodic task could not be enqueued", "type", typ, "err", err)
	}
}
