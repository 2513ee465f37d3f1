package jobs

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/intakehq/intake/internal/multipart"
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
	// A deadline abort run early ([EarlyError]) runs again at tasks.AbortDue(deadline) whatever
	// it says.
	RetryDelayFunc asynq.RetryDelayFunc
	// TaskCheckInterval is how long the server waits before looking again when its queues are
	// empty (default asynq's 1s): the most a task enqueued into an idle server waits.
	TaskCheckInterval time.Duration
	// IsFailure, when set, tells which errors use up one of a task's retries (asynq's IsFailure):
	// the webhook server's is webhook.Deliverer.IsFailure, whose deferred runs (nothing posted,
	// the endpoint had its share of the workers) are retried without counting. A deadline abort
	// run early ([EarlyError]) and an inspection deferred for its owner's share
	// ([InspectDeferredError]) are never failures, whatever it says.
	IsFailure func(error) bool
	// Log receives the server's and asynq's logs (default: discard).
	Log *slog.Logger
}

// Server runs intake's asynq server.
type Server struct {
	redis   asynq.RedisConnOpt
	cfg     asynq.Config
	handler asynq.Handler
	log     *slog.Logger

	// The early runs being put back (rescheduleEarly), and what they use; set while Run runs.
	mu       sync.Mutex
	running  bool
	client   *asynq.Client
	insp     *asynq.Inspector
	requeues sync.WaitGroup
}

// requeueTimeout bounds the putting back of one early run with no retry left (rescheduleEarly):
// asynq archives the task a moment after its handler returned.
const requeueTimeout = 10 * time.Second

// NewServer returns a server that will run handler (usually NewMux's). Nothing connects before Run.
//
// A deadline abort run before its time ([EarlyError]) did nothing wrong: asynq retries it at
// tasks.AbortDue(deadline) without counting the run as a failure (it uses up none of the task's
// retries). asynq archives a failed run of a task with no retry left before it asks whether the
// run failed (a task enqueued with asynq.MaxRetry(0), or an archived task run again by hand, whose
// retries stay used up); for such an early run, the server puts the archived task back, under its
// ID and queue, with its options, due at tasks.AbortDue(deadline): so every deadline abort runs at
// its time, whatever retries it has. (Deleted meanwhile by the Canceller, its upload completed, it
// is left deleted.)
//
// An object:inspect run deferred because its owner had its share of the workers
// ([InspectDeferredError], Handlers.Concurrency) did nothing either: it is retried after its
// RetryIn without counting a failure. It needs no putting back: a run with no retry left is never
// deferred (it runs over the share).
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
	s := &Server{redis: cfg.Redis, handler: handler, log: log}
	s.cfg = asynq.Config{
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
		// Nor did an inspection deferred because its owner had its share of the workers: it did
		// nothing.
		IsFailure: func(err error) bool {
			var early *EarlyError
			var deferred *InspectDeferredError
			if errors.As(err, &early) || errors.As(err, &deferred) {
				return false
			}
			return cfg.IsFailure == nil || cfg.IsFailure(err)
		},
		// Called before asynq archives a run with no retry left: an early one is put back.
		ErrorHandler: asynq.ErrorHandlerFunc(s.handleError),
		HealthCheckFunc: func(err error) {
			if err != nil {
				log.Warn("asynq cannot reach redis", "err", err)
			}
		},
	}
	return s, nil
}

// handleError is asynq's ErrorHandler: it is called for every failed run, before asynq retries or
// archives the task. An [EarlyError] run with no retry left is about to be archived: it is put
// back (rescheduleEarly).
func (s *Server) handleError(ctx context.Context, t *asynq.Task, err error) {
	var early *EarlyError
	if !errors.As(err, &early) || errors.Is(err, asynq.SkipRetry) {
		return
	}
	retried, ok1 := asynq.GetRetryCount(ctx)
	maxRetry, ok2 := asynq.GetMaxRetry(ctx)
	id, ok3 := asynq.GetTaskID(ctx)
	queue, ok4 := asynq.GetQueueName(ctx)
	if !ok1 || !ok2 || !ok3 || !ok4 || retried < maxRetry {
		return // asynq retries it at its time (retryDelay)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.running {
		s.log.Error("deadline abort run early with no retry left is archived: the server is stopping; the sweep aborts its upload after its deadline",
			"task_id", id, "upload_id", early.UploadID)
		return
	}
	due := tasks.AbortDue(early.Deadline)
	s.requeues.Go(func() { s.rescheduleEarly(t, queue, id, due) })
}

// rescheduleEarly waits for asynq to archive task id of queue (its early run had no retry left),
// then deletes it and enqueues it again, with its options, due at due. A task that is gone (the
// Canceller deleted it: its upload completed) or that someone already put back stays as it is.
func (s *Server) rescheduleEarly(t *asynq.Task, queue, id string, due time.Time) {
	log := s.log.With("task_id", id, "queue", queue, "task_type", t.Type())
	ctx, cancel := context.WithTimeout(context.Background(), requeueTimeout)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		info, err := s.insp.GetTaskInfo(queue, id)
		switch {
		case errors.Is(err, asynq.ErrTaskNotFound) || errors.Is(err, asynq.ErrQueueNotFound):
			log.Info("early run with no retry left: the task was deleted meanwhile; nothing to put back")
			return
		case err != nil:
			log.Warn("early run with no retry left: cannot look at the task yet", "err", err)
		case info.State == asynq.TaskStateActive:
			// asynq archives it right after this run.
		case info.State != asynq.TaskStateArchived:
			log.Info("early run with no retry left: the task was put back meanwhile", "state", info.State.String())
			return
		default:
			if err := s.insp.DeleteTask(queue, id); err != nil && !errors.Is(err, asynq.ErrTaskNotFound) {
				log.Warn("early run with no retry left: cannot delete the archived task to put it back", "err", err)
				break
			}
			opts := []asynq.Option{asynq.Queue(queue), asynq.TaskID(id), asynq.ProcessAt(due),
				asynq.MaxRetry(info.MaxRetry)}
			if info.Timeout > 0 {
				opts = append(opts, asynq.Timeout(info.Timeout))
			}
			if info.Retention > 0 {
				opts = append(opts, asynq.Retention(info.Retention))
			}
			if _, err := s.client.EnqueueContext(ctx, asynq.NewTask(t.Type(), t.Payload()), opts...); err != nil {
				log.Error("early run with no retry left: could not put the task back; the sweep aborts its upload after its deadline", "err", err)
				return
			}
			log.Info("early run with no retry left: put back to run at its time", "process_at", due)
			return
		}
		select {
		case <-ctx.Done():
			log.Error("early run with no retry left: the task was not archived in time to be put back; the sweep aborts its upload after its deadline")
			return
		case <-tick.C:
		}
	}
}

// retryDelay is next (default asynq's), except for a deadline abort run before its deadline and
// grace ([EarlyError]), which is retried at tasks.AbortDue(deadline) (at least a second from now):
// the backoff would run it again at some arbitrary time, hours before the deadline or long after
// it; and for an inspection deferred because its owner had its share of the workers
// ([InspectDeferredError]), retried after its RetryIn (at least a second).
func retryDelay(next asynq.RetryDelayFunc) asynq.RetryDelayFunc {
	if next == nil {
		next = asynq.DefaultRetryDelayFunc
	}
	return func(n int, err error, t *asynq.Task) time.Duration {
		var early *EarlyError
		if errors.As(err, &early) {
			return max(time.Until(tasks.AbortDue(early.Deadline)), time.Second)
		}
		if deferred := (*InspectDeferredError)(nil); errors.As(err, &deferred) {
			return max(deferred.RetryIn, time.Second)
		}
		if t.Type() == tasks.TypeSweep {
			// A sweep resumes an abort left "aborting" (its S3 call failed) only once it is
			// multipart.ResumeAfter old: a retry sooner than that (asynq's first is 15-44 s) would
			// not try it again, and the upload would wait for the next period.
			return max(next(n, err, t), sweepRetryAfter)
		}
		return next(n, err, t)
	}
}

// sweepRetryAfter is the shortest retry delay of a sweep task: past multipart.ResumeAfter, with a
// margin for clocks.
const sweepRetryAfter = multipart.ResumeAfter + 15*time.Second

// Run starts processing and blocks until ctx is cancelled; then it stops fetching new tasks, waits
// up to the shutdown timeout for running ones (cancelling them after that; asynq requeues them),
// closes its Redis connections and returns nil. A Redis that does not answer at start is waited
// for (a warning per attempt, retried with backoff up to redisWaitMax), as an outage later is: the
// other roles of the process go on meanwhile, and the tasks run once Redis is back.
func (s *Server) Run(ctx context.Context) error {
	if !waitRedis(ctx, s.redis, s.log, "jobs server") {
		return nil
	}
	client, insp := asynq.NewClient(s.redis), asynq.NewInspector(s.redis)
	defer func() {
		_ = insp.Close()
		_ = client.Close()
	}()
	s.mu.Lock()
	s.client, s.insp, s.running = client, insp, true
	s.mu.Unlock()
	srv := asynq.NewServer(s.redis, s.cfg)
	if err := srv.Start(s.handler); err != nil {
		s.stopRequeues()
		return fmt.Errorf("jobs server: start: %w", err)
	}
	s.log.Info("jobs server started", "concurrency", s.cfg.Concurrency, "queues", s.cfg.Queues)
	<-ctx.Done()
	s.log.Info("jobs server stopping: no new tasks, waiting for running ones", "timeout", s.cfg.ShutdownTimeout)
	srv.Shutdown()
	s.stopRequeues()
	return nil
}

// stopRequeues lets no early run be put back any more and waits for those being put back.
func (s *Server) stopRequeues() {
	s.mu.Lock()
	s.running = false
	s.mu.Unlock()
	s.requeues.Wait()
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
