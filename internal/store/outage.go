package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/intakehq/intake/pipeline"
)

// classify wraps err with what was being done and, when the cause is the database being down or
// not accepting work (see Unavailable) rather than the statement, marks it as an outage of
// PostgreSQL (pipeline.UnavailableError): the consumer then pauses and checks the database itself.
// A caller that cancelled its own context gets no outage.
func classify(ctx context.Context, what string, err error) error {
	wrapped := fmt.Errorf("%s: %w", what, err)
	if !errors.Is(ctx.Err(), context.Canceled) && Unavailable(err) {
		return pipeline.Unavailable(pipeline.DependencyPostgres, wrapped)
	}
	return wrapped
}

// Unavailable reports whether a pgx error means PostgreSQL cannot be reached or cannot do the work
// right now, as opposed to an error in the statement:
//
//   - no connection: refused, reset, lost mid-statement (EOF), timed out, or a request pgx knows
//     was never sent;
//   - any error while connecting (*pgconn.ConnectError), including the server refusing the
//     session: 28P01 (wrong password, as during a password rotation), 28000 (no such role, or no
//     pg_hba entry, as on a new primary set up incompletely), 3D000 (no such database), 42501 (no
//     CONNECT privilege), 53300 (too many connections). Nothing was sent for the message, and its
//     statement cannot run anywhere until the connection settings or the server are fixed;
//   - class 08 (connection exception);
//   - 57P01, 57P02, 57P03, 57P05 (the server shuts down, crashed, is starting, or closed an idle
//     session);
//   - 25006 (read-only transaction): the server is a read-only standby or was just failed over,
//     or the database is set read-only;
//   - class 53 (insufficient resources: disk full, out of memory, too many connections);
//   - class 58 (system error, outside PostgreSQL: 58030 I/O error, a missing or duplicate file);
//   - 57014 (query canceled: statement_timeout, or a cancel request), also a call whose deadline
//     passed;
//   - 55P03 (lock not available: lock_timeout, set in DATABASE_URL or on the role, expired while
//     another session held a lock, such as a long migration or a manual LOCK TABLE): the statement
//     is fine and succeeds once the lock is free, like one cut short by statement_timeout.
//
// 40001 and 40P01 (serialization failure, deadlock) are not outages: the store retries them in
// place (retryConflicts).
func Unavailable(err error) bool {
	if err == nil {
		return false
	}
	// Before the codes: a server's refusal at connect time (28P01, 28000, 3D000, 42501, …) arrives
	// as a ConnectError wrapping a PgError whose code alone would read as a statement's error.
	var connErr *pgconn.ConnectError
	if errors.As(err, &connErr) {
		return true
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch code := pgErr.Code; {
		case strings.HasPrefix(code, "08"), strings.HasPrefix(code, "53"), strings.HasPrefix(code, "58"):
			return true
		case code == "57P01", code == "57P02", code == "57P03", code == "57P05", code == "25006", code == "57014", code == "55P03":
			return true
		}
		return false
	}
	var netErr net.Error
	return pgconn.SafeToRetry(err) || pgconn.Timeout(err) ||
		errors.Is(err, context.DeadlineExceeded) || errors.As(err, &netErr) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed)
}

// conflict reports whether err is a serialization failure (40001) or a deadlock (40P01): the
// transaction lost a race with another one and succeeds when run again.
func conflict(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && (pgErr.Code == "40001" || pgErr.Code == "40P01")
}

// Bounds of the in-place retries of retryConflicts.
const (
	conflictAttempts = 4                    // runs of the transaction, the first included
	conflictBackoff  = 5 * time.Millisecond // before the second run; doubles, with jitter
)

// retryConflicts runs f, which must be a whole transaction (or a statement in its own implicit
// one), again at once when it lost a serialization failure or a deadlock, up to conflictAttempts
// runs with a tiny jittered backoff, instead of failing the message and waiting for its
// redelivery. Other errors and the last conflict are returned as they are.
func retryConflicts[T any](ctx context.Context, f func(context.Context) (T, error)) (T, error) {
	backoff := conflictBackoff
	for attempt := 1; ; attempt++ {
		v, err := f(ctx)
		if err == nil || attempt >= conflictAttempts || !conflict(err) {
			return v, err
		}
		t := time.NewTimer(backoff/2 + rand.N(backoff/2+1))
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return v, err
		}
		backoff *= 2
	}
}

// ClockSkew measures how far now (this host's clock) is ahead of PostgreSQL's (negative: behind),
// from one query: PostgreSQL's time is compared with the middle of the round trip, so the error is
// at most half of it. Deadlines are written by one host's clock and judged by another's (an
// upload's expires_at by the API's, its abort by the jobs host's), and observations are stamped
// with PostgreSQL's: the hosts must agree.
func (s *Store) ClockSkew(ctx context.Context, now func() time.Time) (time.Duration, error) {
	before := now()
	db, err := s.Q.OpsNow(ctx)
	if err != nil {
		return 0, fmt.Errorf("read postgres's clock: %w", err)
	}
	after := now()
	return before.Add(after.Sub(before) / 2).Sub(db), nil
}

// ErrReadOnly is wrapped by CheckWritable when PostgreSQL answers but refuses writes.
var ErrReadOnly = errors.New("postgres is read-only")

// CheckWritable checks that PostgreSQL answers and accepts writes: a standby (the old primary
// after a failover) or a database set read-only counts as down, since the pipeline's records would
// fail there. It is the consumer's check of PostgreSQL while paused by an outage, and the
// readiness check of every role that opens the store.
//
// A read-only answer also resets the pool (pgxpool.Pool.Reset): idle connections are closed at
// once, those in use when they are released, and the next query dials again, resolving the host
// again. Without it, the sessions opened on the old primary while it was a standby (or while the
// database was set read-only, which a session keeps for its life) would stay read-only until
// MaxConnLifetime: the pool hands out its most recently used connection, so a check run again and
// again would ask the same stale session and never see the new primary (or the database writable
// again). The reset costs a reconnect of the pool per read-only answer; its callers pace their
// checks (the consumer's gate waits 1 s and more between probes, /readyz caches its checks for
// 1 s and runs them every 15 s), so a server that really is read-only is not redialled in a loop.
func (s *Store) CheckWritable(ctx context.Context) error {
	writable, err := s.Q.HealthWritable(ctx)
	if err != nil {
		return fmt.Errorf("check postgres: %w", err)
	}
	if !writable {
		if s.Pool != nil {
			s.Pool.Reset()
		}
		return fmt.Errorf("check postgres: %w (in recovery or default_transaction_read_only; the pool's connections are dropped)", ErrReadOnly)
	}
	return nil
}
