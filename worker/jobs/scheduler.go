package jobs

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/hibiken/asynq"

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

// SweepScheduler enqueues a multipart:sweep task every period (a [Periodic]). Each period's task
// gets the ID tasks.SweepTaskID(bucket, period start), so any number of replicas running it enqueue
// one sweep per period.
type SweepScheduler struct{ *Periodic }

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
	log := cmp.Or(cfg.Log, slog.New(slog.DiscardHandler)).With("bucket", cfg.Bucket)
	p, err := NewPeriodic(PeriodicConfig{
		Redis: cfg.Redis, Name: "sweep", Task: task, Cron: cfg.Cron, Location: cfg.Location, Log: log, Now: cfg.Now,
		TaskID: func(window time.Time) string { return tasks.SweepTaskID(cfg.Bucket, window) },
	})
	if err != nil {
		return nil, err
	}
	return &SweepScheduler{p}, nil
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
