package jobs

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/hibiken/asynq"
	"github.com/robfig/cron/v3"

	"github.com/intakehq/intake/worker/tasks"
)

// PeriodicConfig configures [Periodic].
type PeriodicConfig struct {
	// Redis is asynq's connection (required).
	Redis asynq.RedisConnOpt
	// Name names the task in logs ("sweep", "maintenance"; required).
	Name string
	// Task is enqueued every period (required). Give it a Retention of at least the time between
	// replicas' fires, so that a late replica finds the period's task ID taken. For an "@every d"
	// spec, Periodic raises it to d itself (see [Periodic]).
	Task *asynq.Task
	// TaskID names the task of the period starting at window (required): replicas that compute
	// the same window enqueue one task.
	TaskID func(window time.Time) string
	// Cron is the schedule: a five-field cron spec ("*/15 * * * *") or a descriptor such as
	// "@hourly" or "@every 30m" (required).
	Cron string
	// Location is the cron's time zone (default UTC).
	Location *time.Location
	// Log receives the scheduler's and asynq's logs (default: discard).
	Log *slog.Logger
	// Now is the clock used to name periods (default time.Now).
	Now func() time.Time
}

// Periodic enqueues one task every period on a cron schedule: it is what the scheduler role runs
// (one Periodic per periodic task). Each period's task gets the ID TaskID([PeriodStart](cron,
// now)), so any number of replicas running it enqueue one task per period; the others get
// asynq.ErrTaskIDConflict, logged at debug level.
//
// For an "@every d" spec, each replica's cron fires d after its own start, so the replicas' fires
// of one period may lie anywhere in it, up to d apart: the period's task is enqueued with
// asynq.Retention(max(d, tasks.SweepRetention)), which holds its ID until the period is over
// (from the enqueue, through the run, for the retention after it), whatever the Task's own
// retention. Other specs fire on the minute on every replica (clocks within 30 s), and the
// Task's retention (an hour for intake's periodic tasks) covers a late one.
//
// It drives an asynq.Client from a cron of its own rather than using asynq.Scheduler: the
// Scheduler enqueues with the options it was registered with, and the only way to give each
// period its ID is to rewrite them from PreEnqueueFunc, in the slice the Scheduler's heartbeat
// goroutine reads at the same time (a data race).
type Periodic struct {
	cfg PeriodicConfig
	log *slog.Logger
	now func() time.Time
	// every is d for an "@every d" spec, 0 for other specs.
	every time.Duration
}

// enqueueTimeout bounds one period's enqueue: a Redis that does not answer must not hold the
// cron's shutdown, nor pile up fires.
const enqueueTimeout = 30 * time.Second

// NewPeriodic checks cfg (including the cron spec) and returns the Periodic. Nothing connects
// before Run.
func NewPeriodic(cfg PeriodicConfig) (*Periodic, error) {
	cfg.Cron = strings.TrimSpace(cfg.Cron)
	if cfg.Redis == nil || cfg.Name == "" || cfg.Task == nil || cfg.TaskID == nil || cfg.Cron == "" {
		return nil, errors.New("periodic task: Redis, name, task, task ID and cron spec are required")
	}
	if _, err := cron.ParseStandard(cfg.Cron); err != nil {
		return nil, fmt.Errorf("%s scheduler: cron spec %q: %w", cfg.Name, cfg.Cron, err)
	}
	every, _ := everyPeriod(cfg.Cron)
	return &Periodic{cfg: cfg, log: cmp.Or(cfg.Log, slog.New(slog.DiscardHandler)), now: orNow(cfg.Now), every: every}, nil
}

// everyPeriod is d for an "@every d" spec (at least a second, as PeriodStart counts it).
func everyPeriod(spec string) (time.Duration, bool) {
	if rest, ok := strings.CutPrefix(strings.TrimSpace(spec), "@every "); ok {
		if d, err := time.ParseDuration(strings.TrimSpace(rest)); err == nil {
			return max(d, time.Second), true
		}
	}
	return 0, false
}

// enqueueOptions are the options of the enqueue of the period whose task ID is id: the ID and,
// for an "@every d" spec, a retention that holds the ID for the whole period.
func (p *Periodic) enqueueOptions(id string) []asynq.Option {
	opts := []asynq.Option{asynq.TaskID(id)}
	if p.every > 0 {
		opts = append(opts, asynq.Retention(max(p.every, tasks.SweepRetention)))
	}
	return opts
}

// Run starts the schedule and blocks until ctx is cancelled, then stops it (waiting for an
// enqueue in flight) and closes its Redis connections. A Redis that does not answer at start is
// waited for, as by Server.Run.
func (p *Periodic) Run(ctx context.Context) error {
	if !waitRedis(ctx, p.cfg.Redis, p.log, p.cfg.Name+" scheduler") {
		return nil
	}
	client := asynq.NewClient(p.cfg.Redis)
	defer client.Close()
	// A panic in an enqueue is logged and the schedule goes on, as asynq's scheduler did.
	c := cron.New(cron.WithLocation(cmp.Or(p.cfg.Location, time.UTC)), cron.WithLogger(cron.DiscardLogger),
		cron.WithChain(cron.Recover(cronLogger{p.log})))
	if _, err := c.AddFunc(p.cfg.Cron, func() { p.enqueue(ctx, client) }); err != nil {
		return fmt.Errorf("%s scheduler: cron spec %q: %w", p.cfg.Name, p.cfg.Cron, err)
	}
	c.Start()
	p.log.Info(p.cfg.Name+" scheduler started", "cron", p.cfg.Cron)
	<-ctx.Done()
	<-c.Stop().Done()
	return nil
}

// enqueue enqueues the task of the period now falls in, under that period's ID. Each fire builds
// its own options, so fires that overlap share nothing.
func (p *Periodic) enqueue(ctx context.Context, client *asynq.Client) {
	id := p.cfg.TaskID(PeriodStart(p.cfg.Cron, p.now()))
	// A fire that began before the shutdown still enqueues its period (within enqueueTimeout).
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), enqueueTimeout)
	defer cancel()
	info, err := client.EnqueueContext(ctx, p.cfg.Task, p.enqueueOptions(id)...)
	switch {
	case err == nil:
		p.log.Info(p.cfg.Name+" enqueued", "task_id", info.ID)
	case errors.Is(err, asynq.ErrTaskIDConflict):
		p.log.Debug(p.cfg.Name+" of this period already enqueued (by another replica)", "task_id", id)
	default:
		p.log.Warn(p.cfg.Name+" could not be enqueued", "task_id", id, "err", err)
	}
}

// PeriodStart returns the start of the period a Periodic firing at now belongs to. For "@every d"
// specs it is now truncated to d (at least a second); for every other spec, whose ticks fall on
// whole minutes, it is now rounded to the nearest minute, so replicas whose clocks differ by less
// than 30 s name the same period.
func PeriodStart(spec string, now time.Time) time.Time {
	if d, ok := everyPeriod(spec); ok {
		return now.Truncate(d)
	}
	return now.Round(time.Minute)
}

// SweepPeriodicConfig configures [NewSweepPeriodic].
type SweepPeriodicConfig struct {
	// Redis is asynq's connection (required).
	Redis asynq.RedisConnOpt
	// Bucket is swept every period (required).
	Bucket string
	// Prefix optionally limits the sweep.
	Prefix string
	// Cron is the schedule (required; see [PeriodicConfig]).
	Cron string
	// OlderThan is the age past which uploads intake did not create are aborted (required; intake's
	// own wait for their deadline).
	OlderThan time.Duration
	// Location is the cron's time zone (default UTC).
	Location *time.Location
	// Log receives the Periodic's and asynq's logs (default: discard).
	Log *slog.Logger
	// Now is the clock used to name periods (default time.Now).
	Now func() time.Time
}

// NewSweepPeriodic returns a [Periodic] that enqueues the multipart:sweep of the bucket every
// period, once per period whatever the number of replicas (task ID tasks.SweepTaskID(bucket,
// period start)).
func NewSweepPeriodic(cfg SweepPeriodicConfig) (*Periodic, error) {
	if cfg.Redis == nil || cfg.Bucket == "" || strings.TrimSpace(cfg.Cron) == "" {
		return nil, errors.New("sweep periodic: Redis, bucket and cron spec are required")
	}
	task, err := tasks.NewSweep(tasks.Sweep{Bucket: cfg.Bucket, Prefix: cfg.Prefix, OlderThan: tasks.Duration(cfg.OlderThan)})
	if err != nil {
		return nil, fmt.Errorf("sweep periodic: %w", err)
	}
	return NewPeriodic(PeriodicConfig{
		Redis: cfg.Redis, Name: "sweep", Task: task, Cron: cfg.Cron, Location: cfg.Location, Now: cfg.Now,
		Log:    cmp.Or(cfg.Log, slog.New(slog.DiscardHandler)).With("bucket", cfg.Bucket),
		TaskID: func(window time.Time) string { return tasks.SweepTaskID(cfg.Bucket, window) },
	})
}

func orNow(now func() time.Time) func() time.Time {
	if now == nil {
		return time.Now
	}
	return now
}

// cronLogger is robfig/cron's logger on slog: it logs the panics cron.Recover catches.
type cronLogger struct{ log *slog.Logger }

func (l cronLogger) Info(msg string, keysAndValues ...any) { l.log.Debug(msg, keysAndValues...) }

func (l cronLogger) Error(err error, msg string, keysAndValues ...any) {
	l.log.Error(msg, append(keysAndValues, "err", err)...)
}
