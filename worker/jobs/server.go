package jobs

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/intakehq/intake/worker/tasks"
)

// ServerConfig configures [Server].
type ServerConfig struct {
	// Redis is asynq's connection (required).
	Redis asynq.RedisConnOpt
	// Concurrency is the number of tasks run at once (default 10).
	Concurrency int
	// Queues maps queue names to priorities (default tasks.Priorities()).
	Queues map[string]int
	// ShutdownTimeout is how long running tasks may take after Run's context ends (default 25s).
	ShutdownTimeout time.Duration
	// DelayedTaskCheckInterval is how often scheduled and retried tasks are moved to pending
	// (default asynq's 5s): an abort runs at most this long after its deadline.
	DelayedTaskCheckInterval time.Duration
	// RetryDelayFunc, when set, replaces asynq's retry delays (the webhook server's schedule).
	// A deadline abort run early ([EarlyError]) is retried at its deadline whatever it says.
	RetryDelayFunc asynq.RetryDelayFunc
	// TaskCheckInterval is how long the server waits before looking again when its queues are
	// empty (default asynq's 1s): the most a task enqueued into an idle server waits.
	TaskCheckInterval time.Duration
	// Log receives the server's and asynq's logs (default: discard).
	Log *slog.Logger
}

// Server runs intake's asynq server.
type Server struct {
	redis   asynq.RedisConnOpt
	cfg     asynq.Config
	handler asynq.Handler
	log     *slog.Logger
}

// NewServer returns a server that will run handler (usually NewMux's). Nothing connects before Run.
func NewServer(cfg ServerConfig, handler asynq.Handler) (*Server, error) {
	if cfg.Redis == nil {
		return nil, errors.New("jobs server: Redis connection required")
	}
	if handler == nil {
		return nil, errors.New("jobs server: handler required")
	}
	log := cmp.Or(cfg.Log, slog.New(slog.DiscardHandler))
	queues := cfg.Queues
	if len(queues) == 0 {
		queues = tasks.Priorities()
	}
	return &Server{redis: cfg.Redis, handler: handler, log: log, cfg: asynq.Config{
		Concurrency:              cmp.Or(cfg.Concurrency, 10),
		Queues:                   queues,
		ShutdownTimeout:          cmp.Or(cfg.ShutdownTimeout, 25*time.Second),
		DelayedTaskCheckInterval: cfg.DelayedTaskCheckInterval,
		RetryDelayFunc:           retryDelay(cfg.RetryDelayFunc),
		TaskCheckInterval:        cfg.TaskCheckInterval,
		Logger:                   NewAsynqLogger(log),
		LogLevel:                 asynqLevel(log),
		// An abort run before its deadline did nothing wrong: its retry must not use up one of the
		// retries its real run may need.
		IsFailure: func(err error) bool {
			var early *EarlyError
			return !errors.As(err, &early)
		},
		HealthCheckFunc: func(err error) {
			if err != nil {
				log.Warn("asynq cannot reach redis", "err", err)
			}
		},
	}}, nil
}

// retryDelay is next (default asynq's), except for a deadline abort run before its deadline
// ([EarlyError]), which is retried tasks.AbortGrace after the deadline (at least a second from
// now): the backoff would run it again at some arbitrary time, hours before the deadline or long
// after it.
func retryDelay(next asynq.RetryDelayFunc) asynq.RetryDelayFunc {
	if next == nil {
		next = asynq.DefaultRetryDelayFunc
	}
	return func(n int, err error, t *asynq.Task) time.Duration {
		var early *EarlyError
		if errors.As(err, &early) {
			return max(time.Until(early.Deadline)+tasks.AbortGrace, time.Second)
		}
		return next(n, err, t)
	}
}

// Run starts processing and blocks until ctx is cancelled; then it stops fetching new tasks, waits
// up to the shutdown timeout for running ones (cancelling them after that; asynq requeues them),
// closes its Redis connections and returns nil. A Redis that does not answer at start is waited
// for (a warning per attempt, retried with backoff up to redisWaitMax), as an outage later is: the
// other roles of the process go on meanwhile, and the tasks run once Redis is back.
func (s *Server) Run(ctx context.Context) error {
	if !waitRedis(ctx, s.redis, s.log, "jobs server") {
		return nil
	}
	srv := asynq.NewServer(s.redis, s.cfg)
	if err := srv.Start(s.handler); err != nil {
		return fmt.Errorf("jobs server: start: %w", err)
	}
	s.log.Info("jobs server started", "concurrency", s.cfg.Concurrency, "queues", s.cfg.Queues)
	<-ctx.Done()
	s.log.Info("jobs server stopping: no new tasks, waiting for running ones", "timeout", s.cfg.ShutdownTimeout)
	srv.Shutdown()
	return nil
}

// Backoff of waitRedis between attempts.
const (
	redisWaitMin = time.Second
	redisWaitMax = 30 * time.Second
)

// waitRedis pings Redis until it answers (true) or ctx ends (false), logging each failure as what's.
func waitRedis(ctx context.Context, opt asynq.RedisConnOpt, log *slog.Logger, what string) bool {
	wait, since := redisWaitMin, time.Now()
	for {
		err := pingRedis(ctx, opt)
		if err == nil {
			if wait > redisWaitMin {
				log.Info(what+": redis answers; starting", "waited", time.Since(since).Round(time.Millisecond).String())
			}
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		log.Warn(what+": redis does not answer; waiting for it before starting", "err", err, "retry_in", wait.String())
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return false
		case <-t.C:
		}
		wait = min(wait*2, redisWaitMax)
	}
}

// pingRedis checks that Redis answers, with a connection of its own that it closes.
func pingRedis(ctx context.Context, opt asynq.RedisConnOpt) error {
	rc, ok := opt.MakeRedisClient().(redis.UniversalClient)
	if !ok {
		return fmt.Errorf("unsupported Redis connection option %T", opt)
	}
	defer rc.Close()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := rc.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("ping redis: %w", err)
	}
	return nil
}
