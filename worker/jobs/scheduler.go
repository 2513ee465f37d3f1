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

// SweepSchedulerConfig configures [SweepScheduler].
type SweepSchedulerConfig struct {
	// Redis is asynq's connection (required).
	Redis asynq.RedisConnOpt
	// Bucket is swept every period (required).
	Bucket string
	// Prefix optionally limits the sweep.
	Prefix string
	// Cron is the schedule: a five-field cron spec ("*/15 * * * *") or a descriptor such as
	// "@hourly" or "@every 30m" (required).
	Cron string
	// OlderThan is the sweep's age threshold (required).
	OlderThan time.Duration
	// Location is the cron's time zone (default UTC).
	Location *time.Location
	// Log receives the scheduler's and asynq's logs (default: discard).
	Log *slog.Logger
	// Now is the clock used to name periods (default time.Now).
	Now func() time.Time
}

// SweepScheduler enqueues a multipart:sweep task every period with an asynq.Scheduler. Each
// period's task gets the ID tasks.SweepTaskID(bucket, period start), so any number of replicas
// running it enqueue one sweep per period.
type SweepScheduler struct {
	redis    asynq.RedisConnOpt
	task     *asynq.Task
	location *time.Location
	bucket   string
	cron     string
	log      *slog.Logger
	now      func() time.Time

	// mu is held from PreEnqueueFunc to PostEnqueueFunc: the pre-enqueue hook rewrites the TaskID
	// option in the entry's option slice, which asynq then passes to Enqueue.
	mu sync.Mutex
}

// NewSweepScheduler checks cfg (including the cron spec) and returns the scheduler. Nothing
// connects before Run.
func NewSweepScheduler(cfg SweepSchedulerConfig) (*SweepScheduler, error) {
	if cfg.Redis == nil || cfg.Bucket == "" || strings.TrimSpace(cfg.Cron) == "" {
		return nil, errors.New("sweep scheduler: Redis, bucket and cron spec are required")
	}
	task, err := tasks.NewSweep(tasks.Sweep{Bucket: cfg.Bucket, Prefix: cfg.Prefix, OlderThan: tasks.Duration(cfg.OlderThan)})
	if err != nil {
		return nil, fmt.Errorf("sweep scheduler: %w", err)
	}
	spec := strings.TrimSpace(cfg.Cron)
	if _, err := cron.ParseStandard(spec); err != nil {
		return nil, fmt.Errorf("sweep scheduler: cron spec %q: %w", spec, err)
	}
	return &SweepScheduler{
		redis: cfg.Redis, task: task, location: cfg.Location, bucket: cfg.Bucket, cron: spec,
		log: cmp.Or(cfg.Log, slog.New(slog.DiscardHandler)), now: orNow(cfg.Now),
	}, nil
}

// Run starts the schedule and blocks until ctx is cancelled, then stops it and closes its Redis
// connections. It returns an error if Redis cannot be reached at start.
func (s *SweepScheduler) Run(ctx context.Context) error {
	if err := pingRedis(ctx, s.redis); err != nil {
		return fmt.Errorf("sweep scheduler: %w", err)
	}
	sched := asynq.NewScheduler(s.redis, &asynq.SchedulerOpts{
		Location:        s.location,
		Logger:          NewAsynqLogger(s.log),
		LogLevel:        asynqLevel(s.log),
		PreEnqueueFunc:  s.preEnqueue,
		PostEnqueueFunc: s.postEnqueue,
	})
	// The placeholder ID is replaced by the period's ID before every enqueue (preEnqueue).
	if _, err := sched.Register(s.cron, s.task, asynq.TaskID(tasks.SweepTaskID(s.bucket, time.Unix(0, 0)))); err != nil {
		return fmt.Errorf("sweep scheduler: cron spec %q: %w", s.cron, err)
	}
	if err := sched.Start(); err != nil {
		return fmt.Errorf("sweep scheduler: start: %w", err)
	}
	s.log.Info("sweep scheduler started", "bucket", s.bucket, "cron", s.cron)
	<-ctx.Done()
	sched.Shutdown()
	return nil
}

func (s *SweepScheduler) preEnqueue(_ *asynq.Task, opts []asynq.Option) {
	s.mu.Lock() // released in postEnqueue, which asynq always calls after Enqueue
	id := tasks.SweepTaskID(s.bucket, SweepWindow(s.cron, s.now()))
	for i, o := range opts {
		if o.Type() == asynq.TaskIDOpt {
			opts[i] = asynq.TaskID(id)
		}
	}
}

func (s *SweepScheduler) postEnqueue(info *asynq.TaskInfo, err error) {
	defer s.mu.Unlock()
	switch {
	case err == nil:
		s.log.Info("sweep enqueued", "bucket", s.bucket, "task_id", info.ID)
	case errors.Is(err, asynq.ErrTaskIDConflict):
		s.log.Debug("sweep of this period already enqueued (by another replica)", "bucket", s.bucket)
	default:
		s.log.Warn("sweep could not be enqueued", "bucket", s.bucket, "err", err)
	}
}

// SweepWindow returns the start of the period a scheduler firing at now belongs to. For "@every d"
// specs it is now truncated to d (at least a second); for every other spec, whose ticks fall on
// whole minutes, it is now rounded to the nearest minute, so replicas whose clocks differ by less
// than 30 s name the same period.
func SweepWindow(spec string, now time.Time) time.Time {
	if rest, ok := strings.CutPrefix(strings.TrimSpace(spec), "@every "); ok {
		if d, err := time.ParseDuration(strings.TrimSpace(rest)); err == nil {
			return now.Truncate(max(d, time.Second))
		}
	}
	return now.Round(time.Minute)
}
