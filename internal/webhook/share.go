package webhook

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"
)

// Each endpoint's share of the webhook server's workers (DelivererConfig.MaxPerEndpoint).
//
// All the endpoints' tasks wait in one queue ([Queue]) for one pool of workers
// (INTAKE_WEBHOOK_CONCURRENCY), and an attempt at a receiver that does not answer holds its worker
// for the whole attempt timeout. Without a bound, the tasks of one such endpoint (a notification
// every ten seconds is enough) take every worker, and the other endpoints' notifications wait
// behind them without bound. So a Deliverer runs at most MaxPerEndpoint tasks of one endpoint at
// once, and at most one of an endpoint whose last [SuspectAfter] attempts timed out (until one of
// its attempts ends otherwise: one task at a time finds out whether it answers again). Endpoints
// that lately answered their posts in half the attempt timeout or more (slow receivers, which no
// timeout marks) hold at most three quarters of the workers together
// (DelivererConfig.Workers), so that two of them cannot take every worker. A task of
// an endpoint that has its share is not run: it is deferred, posting nothing, with a
// [DeferredError] that asynq retries after [DeferredError.RetryIn] without counting it as a
// failed attempt (the server's IsFailure is [Deliverer.IsFailure]; its RetryDelayFunc,
// [RetryDelay]). A task on its last attempt is run anyway: asynq archives a task whose last
// attempt returns any error, failure or not, and its give-up would not be recorded. Nor does a
// Deliverer defer anything before its server has asked its IsFailure about an error: a server
// that does not ask (IsFailure not wired) would count every deferral as a failed attempt, and a
// task deferred a second apart would use up its day of retries within a minute.

// SuspectAfter is how many attempts in a row at one endpoint must time out before the Deliverer
// runs only one of its tasks at once.
const SuspectAfter = 3

// Delays of a deferred task, plus up to half as much jitter. The least is deferBusy when its
// endpoint has its share of the workers, the attempt timeout when the endpoint's attempts time out
// (the one task it runs likely holds its slot that long: trying sooner only costs Redis round
// trips). With others of the endpoint's tasks deferred already, a task waits for its turn behind
// them: as long as their number over the endpoint's limit, times how long its tasks have held a
// slot lately, up to maxDefer. So the tasks of an endpoint that has a backlog come back for a slot
// about as fast as slots free up, however many there are (each retry of a deferred task is a
// round trip to Redis and a dequeue), and an endpoint that comes back to life has its backlog
// tried again within maxDefer and a half.
const (
	deferBusy = time.Second
	maxDefer  = 5 * time.Minute
)

// ErrEndpointBusy is wrapped by the error of a task deferred because its endpoint had its share of
// the workers ([DeferredError]).
var ErrEndpointBusy = errors.New("webhook endpoint has its share of the workers")

// DeferredError is the error of a task run deferred because its endpoint had its share of the
// workers: nothing was posted, and the run is not a failed attempt (see [Deliverer.IsFailure]).
type DeferredError struct {
	// Endpoint names the endpoint.
	Endpoint string
	// Running is how many of its tasks this worker was running, Limit how many it may.
	Running, Limit int
	// TimedOut is set when the limit is one because its last attempts timed out.
	TimedOut bool
	// Slow is set when the endpoint is below its limit but slow, and the slow endpoints hold their
	// share of the workers together (see share.slow).
	Slow bool
	// RetryIn is when to run the task again ([RetryDelay] returns it).
	RetryIn time.Duration
}

func (e *DeferredError) Error() string {
	why := "its share of the workers"
	switch {
	case e.TimedOut:
		why = fmt.Sprintf("its last %d attempts or more timed out: one at a time", SuspectAfter)
	case e.Slow:
		why = "its deliveries are slow, and the slow endpoints hold their share of the workers together"
	}
	return fmt.Sprintf("deferred, nothing posted: %d deliveries to %q are running (%s); runs again in %s",
		e.Running, e.Endpoint, why, e.RetryIn.Round(time.Millisecond))
}

// Unwrap makes a DeferredError an [ErrEndpointBusy].
func (e *DeferredError) Unwrap() error { return ErrEndpointBusy }

// Deferred reports that the run was put off on purpose: worker/jobs counts and logs it as a run to
// happen later (outcome "early"), not as a failure to retry.
func (e *DeferredError) Deferred() bool { return true }

// share counts the tasks of each endpoint a Deliverer runs, the attempts in a row that timed out,
// how long its tasks held a slot lately, and the tasks it deferred that have not come back yet. A
// nil share admits everything.
type share struct {
	limit int
	// slowCap bounds the slots the slow endpoints hold together (0: no bound): see slow.
	slowCap  int
	timeout  time.Duration // the attempt timeout: how long a deferred task of a suspect endpoint waits
	now      func() time.Time
	mu       sync.Mutex
	running  map[string]int
	timeouts map[string]int
	held     map[string]time.Duration // moving average of how long a task held a slot
	waiting  map[string]*deferred
	// latency is a moving average of how long an endpoint took to answer a post, seen when it
	// last changed (see slow).
	latency map[string]time.Duration
	seen    map[string]time.Time
}

// deferred is the tasks of one endpoint deferred and not seen since, by task ID: when each is
// forgotten (well after it was due: run by another worker process, or deleted).
type deferred struct {
	forget map[string]time.Time
	pruned time.Time
}

// newShare returns the share of limit tasks per endpoint, nil when there is no limit or fewer than
// two endpoints (no other endpoint to leave workers to). With workers (the server's, 0: unknown),
// the slow endpoints hold at most three quarters of them together (see slow).
func newShare(limit, endpoints, workers int, timeout time.Duration, now func() time.Time) *share {
	if limit <= 0 || endpoints < 2 {
		return nil
	}
	s := &share{limit: limit, timeout: timeout, now: now, running: map[string]int{}, timeouts: map[string]int{},
		held: map[string]time.Duration{}, waiting: map[string]*deferred{},
		latency: map[string]time.Duration{}, seen: map[string]time.Time{}}
	if workers > 1 {
		s.slowCap = workers - max(1, workers/4)
	}
	return s
}

// slow reports whether endpoint lately answered its posts in half the attempt timeout or more (at
// least slowFloor): a receiver that answers late (or fails late: 5xx after 9 s of a 10 s timeout,
// which no timeout counts). Each such endpoint may hold its limit, but together they hold at most
// slowCap slots: two slow endpoints at half the workers each would otherwise take them all, and
// every other endpoint (the default one, which receives every tenant's notifications) would wait
// for theirs to free one. What counts is each post's time, not a task's (a batch of 16 posted 4 at
// a time takes four posts' time), and a measure older than two attempt timeouts is forgotten (the
// endpoint runs, and is measured again). s.mu is held.
func (s *share) slow(endpoint string) bool {
	l, ok := s.latency[endpoint]
	return ok && l >= max(s.timeout/2, slowFloor) && s.now().Sub(s.seen[endpoint]) < 2*s.timeout
}

// slowFloor is the least answer time that makes an endpoint slow, whatever the attempt timeout.
const slowFloor = 2 * time.Second

// slowRunning is how many slots the slow endpoints hold. s.mu is held.
func (s *share) slowRunning() int {
	n := 0
	for e, r := range s.running {
		if r > 0 && s.slow(e) {
			n += r
		}
	}
	return n
}

// admit takes a slot of endpoint for task (its asynq task ID; "" when unknown), or returns the
// task's DeferredError when the endpoint has its share (unless force: the task's last attempt).
// release gives the slot back.
func (s *share) admit(endpoint, task string, force bool) (release func(), err error) {
	if s == nil {
		return func() {}, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	w := s.waiting[endpoint]
	if w == nil {
		w = &deferred{forget: map[string]time.Time{}, pruned: now}
		s.waiting[endpoint] = w
	}
	if task != "" {
		delete(w.forget, task)
	}
	limit, suspect := s.limit, s.timeouts[endpoint] >= SuspectAfter
	if suspect {
		limit = 1
	}
	n := s.running[endpoint]
	slowCapped := n < limit && s.slowCap > 0 && s.slow(endpoint) && s.slowRunning() >= s.slowCap
	if (n >= limit || slowCapped) && !force {
		if now.Sub(w.pruned) >= pruneEvery {
			w.prune(now)
		}
		wait := deferBusy
		if suspect {
			wait = max(s.timeout, deferBusy)
		}
		// Its turn behind the tasks deferred before it, at limit slots of held each.
		if ahead := len(w.forget); ahead > 0 {
			turn := time.Duration(float64(s.held[endpoint]) * float64(ahead+1) / float64(limit))
			wait = max(wait, min(turn, maxDefer))
		}
		wait += rand.N(wait/2 + 1)
		if task != "" {
			w.forget[task] = now.Add(wait + forgetAfter)
		}
		return nil, &DeferredError{Endpoint: endpoint, Running: n, Limit: limit, TimedOut: suspect, Slow: slowCapped, RetryIn: wait}
	}
	s.running[endpoint]++
	var once sync.Once
	return func() {
		once.Do(func() {
			s.mu.Lock()
			defer s.mu.Unlock()
			s.running[endpoint]--
			took := s.now().Sub(now)
			if h, ok := s.held[endpoint]; ok {
				took = (4*h + took) / 5
			}
			s.held[endpoint] = took
		})
	}, nil
}

// A deferred task not seen again forgetAfter after it was due is forgotten: another worker process
// ran it (asynq gives a task back to any of them; each process counts the tasks it deferred), or
// it was deleted, or it waits in the queue behind others. Kept longer, the tasks other processes ran
// would count as ahead here and make waits too long; forgotten early, a task still on its way
// makes the next wait shorter, which costs round trips, not time. The tasks of an endpoint are
// looked through for those at most every pruneEvery.
const (
	forgetAfter = 10 * time.Second
	pruneEvery  = 10 * time.Second
)

// prune forgets the tasks due to be forgotten at now.
func (w *deferred) prune(now time.Time) {
	w.pruned = now
	for task, at := range w.forget {
		if now.After(at) {
			delete(w.forget, task)
		}
	}
}

// observe counts an attempt's result and how long it took: a timeout adds one to the endpoint's
// timeouts in a row, any other result (an answer, a refused connection) ends them; took goes into
// the endpoint's answer time (see slow).
func (s *share) observe(endpoint, result string, took time.Duration) {
	if s == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if l, ok := s.latency[endpoint]; ok && s.now().Sub(s.seen[endpoint]) < 2*s.timeout {
		took = (4*l + took) / 5
	}
	s.latency[endpoint], s.seen[endpoint] = took, s.now()
	if result == ResultTimeout {
		s.timeouts[endpoint]++
		return
	}
	delete(s.timeouts, endpoint)
}
