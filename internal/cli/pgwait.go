package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/intakehq/intake/internal/config"
	"github.com/intakehq/intake/internal/store"
)

// Backoff of waitStore between attempts: as the jobs server's wait for Redis, 1 s doubling to 30 s.
const (
	pgWaitMin = time.Second
	pgWaitMax = 30 * time.Second
)

// waitStore opens the store (openStore), trying again with backoff (pgWaitMin doubling to
// pgWaitMax, a warning each time) while PostgreSQL cannot be reached or cannot take the connection
// right now (see pgTransient: refused, reset, timed out, DNS, "the database system is starting up",
// too many connections, …), as during a failover or while the database starts beside intake. It
// gives up:
//
//   - at once on any other error, which waiting does not mend (see pgTransient): a wrong password
//     or a role without access, a database that does not exist, a DATABASE_URL that does not
//     parse, an invalid schema name;
//   - when ctx ends (SIGTERM), returning ctx's error;
//   - after the last attempt at or past deadline, when deadline is not zero (the zero time: no
//     deadline), returning the last error. A deadline already past makes one attempt.
//
// failed, when not nil, is called with each failure (the daemon's readiness reports it).
func waitStore(ctx context.Context, cfg *config.Config, log *slog.Logger, deadline time.Time, failed func(error)) (*store.Store, error) {
	began, wait := time.Now(), pgWaitMin
	for attempt := 1; ; attempt++ {
		st, err := openStore(ctx, cfg)
		if err == nil {
			if attempt > 1 {
				log.Info("postgres answers", "attempts", attempt, "waited", time.Since(began).Round(time.Millisecond).String())
			}
			return st, nil
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("waiting for postgres: %w (last error: %w)", ctx.Err(), err)
		}
		if !pgTransient(err) {
			return nil, err
		}
		if failed != nil {
			failed(err)
		}
		sleep := wait
		if !deadline.IsZero() {
			left := time.Until(deadline)
			if left <= 0 {
				return nil, fmt.Errorf("postgres did not answer within %s (%d attempts): %w", time.Since(began).Round(time.Second), attempt, err)
			}
			sleep = min(sleep, left)
		}
		log.Warn("postgres does not answer; waiting for it", "err", err, "attempt", attempt, "retry_in", sleep.String())
		t := time.NewTimer(sleep)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("waiting for postgres: %w (last error: %w)", ctx.Err(), err)
		case <-t.C:
		}
		wait = min(wait*2, pgWaitMax)
	}
}

// pgTransient reports whether a failure to open the store may pass by itself: PostgreSQL could not
// be reached or refused the connection for now (a connect error, or what store.Unavailable counts
// as an outage), unless the server refused the session for a reason that waiting does not mend,
// SQLSTATE class 28 (a wrong password, no such role, no pg_hba.conf entry), 3D000 (no such
// database) or 42501 (no CONNECT privilege): the settings, read once at start, must change, so the
// process fails at once and says why.
func pgTransient(err error) bool {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && (strings.HasPrefix(pgErr.Code, "28") || pgErr.Code == "3D000" || pgErr.Code == "42501") {
		return false
	}
	var connErr *pgconn.ConnectError
	return errors.As(err, &connErr) || store.Unavailable(err)
}
