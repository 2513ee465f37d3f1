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

	"github.com/intakehq/intake/worker/tasks"
)

// CronEntry is one periodic task.
type CronEntry struct {
	// Spec is the schedule: a five-field cron spec ("*/15 * * * *") or a descriptor such as
	// "@hourly" or "@every 30m".
	Spec string
	// Task is enqueued every period.
	Task *asynq.Task
	// ID names the task of the period starting at window (see PeriodStart), so that replicas firing
	// in the same period enqueue one task. The task should be kept (asynq.Retention) for longer
	// than the replicas' clocks differ.
	ID func(window time.Time) string
}

// CronConfig configures [Cron].
type CronConfig struct {
	// Redis is asynq's connection (required).
	Redis asynq.RedisConnOpt
	// Entries are the periodic tasks (at least one).
	Entries []CronEntry
	// Location is the cron's time zone (default UTC).
	Location *time.Location
	// Log receives the cron's and asynq's logs (default: discard).
	Log *slog.Logger
	// Now is the clock used to name periods (default time.Now).
	Now func() time.Time
}

// Cron enqueues periodic tasks with an asynq.Scheduler: it is what the scheduler role runs. Each
// period's task gets the ID its entry gives the period, so any number of replicas running it
// enqueue one task per period.
type Cron struct {
	redis    asynq.RedisConnOpt
	entries  []CronEntry
	location *time.Location
	log      *slog.Logger
	now      func() time.Time

	// mu is held from PreEnqueueFunc to PostEnqueueFunc: the pre-enqueue hook rewrites the TaskID
	// option in the entry's option slice, which asynq then passes to Enqueue; current is the entry
	// being enqueued.
	mu      sync.Mutex
	current *CronEntry
}

// NewCron checks cfg (including the cron specs) and returns the cron. Nothing connects before Run.
func NewCron(cfg CronConfig) (*Cron, error) {
	if cfg.Redis == nil || len(cfg.Entries) == 0 {
		return nil, errors.New("cron: Redis and at least one entry are required")
	}
	entries := make([]CronEntry, len(cfg.Entries))
	for i, e := range cfg.Entries {
		e.Spec = strings.TrimSpace(e.Spec)
		if e.Task == nil || e.ID == nil {
			return nil, fmt.Errorf("cron: entry %d has no task or ID", i)
		}
		if _, err := cron.ParseStandard(e.Spec); err != nil {
			return nil, fmt.Errorf("cron: %s: cron spec %q: %w", e.Task.Type(), e.Spec, err)
		}
		entries[i] = e
	}
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	return &Cron{
		redis: cfg.Redis, entries: entries, location: cfg.Location, now: now,
		log: cmp.Or(cfg.Log, slog.New(slog.DiscardHandler)),
	}, nil
}

// SweepEntry is the periodic multipart:sweep of bucket (under prefix) on spec: each period's task
// has the ID tasks.SweepTaskID(bucket, period start).
func SweepEntry(spec, bucket, prefix string, olderThan time.Duration) (CronEntry, error) {
	if bucket == "" || strings.TrimSpace(spec) == "" {
		return CronEntry{}, errors.New("sweep entry: bucket and cron spec are required")
	}
	task, err := tasks.NewSweep(tasks.Sweep{Bucket: bucket, Prefix: prefix, OlderThan: tasks.Duration(olderThan)})
	if err != nil {
		return CronEntry{}, fmt.Errorf("sweep entry: %w", err)
	}
	return CronEntry{Spec: spec, Task: task, ID: func(w time.Time) string { return tasks.SweepTaskID(bucket, w) }}, nil
}

// Run starts the schedule and blocks until ctx is cancelled, then stops it and closes its Redis
// connections. It returns an error if Redis cannot be reached at start.
func (c *Cron) Run(ctx context.Context) error {
	if err := pingRedis(ctx, c.redis); err != nil {
		return fmt.Errorf("cron: %w", err)
	}
	sched := asynq.NewScheduler(c.redis, &asynq.SchedulerOpts{
		Location:        c.location,
		Logger:          NewAsynqLogger(c.log),
		LogLevel:        asynqLevel(c.log),
		PreEnqueueFunc:  c.preEnqueue,
		PostEnqueueFunc: c.postEnqueue,
	})
	for _, e := range c.entries {
		// The placeholder ID is replaced by the period's ID before every enqueue (preEnqueue).
		if _, err := sched.Register(e.Spec, e.Task, asynq.TaskID(e.ID(time.Unix(0, 0)))); err != nil {
			return fmt.Errorf("cron: %s: cron spec %q: %w", e.Task.Type(), e.Spec, err)
		}
	}
	if err := sched.Start(); err != nil {
		return fmt.Errorf("cron: start: %w", err)
	}
	for _, e := range c.entries {
		c.log.Info("periodic task scheduled", "task_type", e.Task.Type(), "cron", e.Spec)
	}
	<-ctx.Done()
	sched.Shutdown()
	return nil
}

func (c *Cron) preEnqueue(task *asynq.Task, opts []asynq.Option) {
	c.mu.Lock() // released in postEnqueue, which asynq always calls after Enqueue
	c.current = nil
	for i := range c.entries {
		if c.entries[i].Task == task { // asynq passes the registered task itself
			c.current = &c.entries[i]
		}
	}
	if c.current == nil {
		return
	}
	id := c.current.ID(PeriodStart(c.current.Spec, c.now()))
	for i, o := range opts {
		if o.Type() == asynq.TaskIDOpt {
			opts[i] = asynq.TaskID(id)
		}
	}
}

func (c *Cron) postEnqueue(info *asynq.TaskInfo, err error) {
	defer c.mu.Unlock()
	typ := "unknown"
	if c.current != nil {
		typ = c.current.Task.Type()
	}
	switch {
	case err == nil:
		c.log.Info("periodic task enqueued", "task_type", typ, "task_id", info.ID)
	case errors.Is(err, asynq.ErrTaskIDConflict):
		c.log.Debug("periodic task of this period already enqueued (by another replica)", "task_type", typ)
	default:
		c.log.Warn("periodic task could not be enqueued", "task_type", typ, "err", err)
	}
}

// PeriodStart returns the start of the period a cron firing at now belongs to. For "@every d"
// specs it is now truncated to d (at least a second); for every other spec, whose ticks fall on
// whole minutes, it is now rounded to the nearest minute, so replicas whose clocks differ by less
// than 30 s name the same period.
func PeriodStart(spec string, now time.Time) time.Time {
	if rest, ok := strings.CutPrefix(strings.TrimSpace(spec), "@every "); ok {
		if d, err := time.ParseDuration(strings.TrimSpace(rest)); err == nil {
			return now.Truncate(max(d, time.Second))
		}
	}
	return now.Round(time.Minute)
}
