package outbox

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// ChannelSuffix ends the name of the PostgreSQL notification channel of the outbox:
// "<schema>.intake_outbox", where schema is the one holding intake's tables (migration 0009's
// trigger notifies it with the upload id of every row inserted, at commit, and 0027's with that of
// every upload an objects row makes done).
const ChannelSuffix = ".intake_outbox"

// Listener keeps one PostgreSQL connection (of its own, outside the pool) listening on the outbox
// channel and wakes, for every notification, the subscribers of its upload id and those of every
// notification. The API's long polls (GET /v1/uploads/{id}?wait=) and the relay subscribe to it;
// since PostgreSQL sends each notification to every listening session, a verdict committed by any
// replica wakes the waiters of every replica.
//
// A subscriber's channel has room for one wake-up: wake-ups coalesce, and the Listener never
// blocks on a slow subscriber. After (re)connecting it wakes every subscriber, since notifications
// sent while it was not listening are lost: a woken subscriber must look at the database itself.
//
// A connection that stays silent is checked: after listenIdleCheck (20 s) without a notification
// the Listener pings it (its LISTEN again), within listenPingTimeout (5 s), and reconnects when the
// ping fails. A half-open connection (PostgreSQL failed over, or a partition dropped the path
// without a reset) would otherwise go unnoticed until TCP's keepalives give up on it (about 50
// minutes with pgx's), or never when a proxy in between keeps answering them, while the long polls
// slept their whole wait and the relay waited for its 2 s poll.
//
// Run owns the connection; it returns when its context ends.
type Listener struct {
	cfg *pgx.ConnConfig
	log *slog.Logger

	// idle is how long a wait for a notification lasts before the connection is checked, ping how
	// long that check may take (listenIdleCheck, listenPingTimeout; tests shorten them).
	idle, ping time.Duration

	mu      sync.Mutex
	byID    map[uuid.UUID]map[chan struct{}]struct{}
	all     map[chan struct{}]struct{}
	channel string
	ready   chan struct{} // closed once listening
	readyOn sync.Once
}

// NewListener returns a Listener connecting with the configuration of pool (same server, user and
// search_path). Nothing connects before Run.
func NewListener(pool *pgxpool.Pool, log *slog.Logger) *Listener {
	return &Listener{
		cfg: pool.Config().ConnConfig.Copy(), log: cmp.Or(log, slog.New(slog.DiscardHandler)),
		byID: map[uuid.UUID]map[chan struct{}]struct{}{}, all: map[chan struct{}]struct{}{},
		ready: make(chan struct{}), idle: listenIdleCheck, ping: listenPingTimeout,
	}
}

// Subscribe returns a channel woken by the notifications of upload id (and after a reconnection),
// and the function that ends the subscription. Subscribe before reading the state the wake-up is
// about, so that a commit between the read and the wait is not missed.
func (l *Listener) Subscribe(id uuid.UUID) (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	l.mu.Lock()
	subs := l.byID[id]
	if subs == nil {
		subs = map[chan struct{}]struct{}{}
		l.byID[id] = subs
	}
	subs[ch] = struct{}{}
	l.mu.Unlock()
	return ch, func() {
		l.mu.Lock()
		delete(subs, ch)
		if cur, ok := l.byID[id]; ok && len(cur) == 0 {
			delete(l.byID, id)
		}
		l.mu.Unlock()
	}
}

// SubscribeAll returns a channel woken by every notification (and after a reconnection), and the
// function that ends the subscription.
func (l *Listener) SubscribeAll() (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	l.mu.Lock()
	l.all[ch] = struct{}{}
	l.mu.Unlock()
	return ch, func() {
		l.mu.Lock()
		delete(l.all, ch)
		l.mu.Unlock()
	}
}

// Ready is closed once the Listener listens for the first time.
func (l *Listener) Ready() <-chan struct{} { return l.ready }

// Channel is the channel listened to ("" before the first connection).
func (l *Listener) Channel() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.channel
}

// Backoff of the Listener's reconnections.
const (
	listenFirstBackoff = 100 * time.Millisecond
	listenMaxBackoff   = 5 * time.Second
)

// Checks of a silent connection: after listenIdleCheck without a notification, a ping that must
// answer within listenPingTimeout, or the Listener reconnects. A dead connection is noticed within
// their sum (25 s), inside a long poll's longest wait (30 s).
const (
	listenIdleCheck   = 20 * time.Second
	listenPingTimeout = 5 * time.Second
)

// Run connects, listens and dispatches notifications until ctx ends; a lost connection (an error,
// or a ping unanswered after a silence: see [Listener]) is re-established with backoff (100 ms
// doubling to 5 s while connecting fails, back to 100 ms once a connection has listened), and
// every subscriber is woken once listening again. It returns nil when ctx ends.
func (l *Listener) Run(ctx context.Context) error {
	backoff := listenFirstBackoff
	for ctx.Err() == nil {
		listened, err := l.listen(ctx)
		if ctx.Err() != nil {
			break
		}
		if listened {
			// The connection worked until it was lost (a PostgreSQL restart or failover, an idle
			// connection cut): the failures before it say nothing about this one. Without the
			// reset, a process whose connection had been cut a few times waited 5 s after every
			// later loss, delaying the relay's and the long polls' wake-ups by as much.
			backoff = listenFirstBackoff
		}
		l.log.WarnContext(ctx, "outbox listener lost its connection; reconnecting", "err", err, "in", backoff)
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, listenMaxBackoff)
	}
	return nil
}

// listen runs one connection: LISTEN, wake everyone, then dispatch until an error. listened
// reports whether the connection got as far as listening.
func (l *Listener) listen(ctx context.Context) (listened bool, err error) {
	connectCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	conn, err := pgx.ConnectConfig(connectCtx, l.cfg)
	cancel()
	if err != nil {
		return false, fmt.Errorf("connect: %w", err)
	}
	defer func() {
		closeCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer cancel()
		_ = conn.Close(closeCtx)
	}()
	// Bounded as the connection is: a path that goes silent right after connecting must not hold
	// the Listener before it even listens.
	setupCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var schema *string
	if err := conn.QueryRow(setupCtx, "SELECT current_schema()").Scan(&schema); err != nil {
		return false, fmt.Errorf("read current schema: %w", err)
	}
	if schema == nil {
		return false, errors.New("no current schema: check the search_path of DATABASE_URL")
	}
	channel := *schema + ChannelSuffix
	listen := "LISTEN " + pgx.Identifier{channel}.Sanitize()
	if _, err := conn.Exec(setupCtx, listen); err != nil {
		return false, fmt.Errorf("listen %s: %w", channel, err)
	}
	cancel()
	l.mu.Lock()
	l.channel = channel
	l.mu.Unlock()
	l.readyOn.Do(func() { close(l.ready) })
	l.log.DebugContext(ctx, "outbox listener listening", "channel", channel)
	l.wakeAll() // whatever was committed while not listening
	for {
		wctx, cancel := context.WithTimeout(ctx, l.idle)
		n, err := conn.WaitForNotification(wctx)
		cancel()
		if err != nil && ctx.Err() == nil && pgconn.Timeout(err) {
			// Silent for l.idle: a quiet database, or a connection whose path is gone without a
			// reset. A timed-out wait leaves the connection usable. The ping is the LISTEN again (a
			// no-op for a session already listening, which keeps pg_stat_activity showing what the
			// connection is for); a notification arriving meanwhile is kept for the next wait.
			pctx, cancel := context.WithTimeout(ctx, l.ping)
			_, err = conn.Exec(pctx, listen)
			cancel()
			if err == nil {
				continue
			}
			if ctx.Err() == nil {
				return true, fmt.Errorf("no answer to a ping after %s without a notification: %w", l.idle, err)
			}
		}
		if err != nil {
			return true, err
		}
		id, err := uuid.Parse(n.Payload)
		if err != nil {
			l.log.WarnContext(ctx, "outbox notification without an upload id", "payload", n.Payload)
			continue
		}
		l.wake(id)
	}
}

// wake wakes the subscribers of id and of everything.
func (l *Listener) wake(id uuid.UUID) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for ch := range l.byID[id] {
		poke(ch)
	}
	for ch := range l.all {
		poke(ch)
	}
}

// wakeAll wakes every subscriber.
func (l *Listener) wakeAll() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, subs := range l.byID {
		for ch := range subs {
			poke(ch)
		}
	}
	for ch := range l.all {
		poke(ch)
	}
}

// poke sends a wake-up unless one is already waiting.
func poke(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}
