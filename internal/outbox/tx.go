package outbox

import (
	"context"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// idleMargin is added to a transaction's own time bound to get the longest PostgreSQL lets it sit
// idle between two statements (beginIdleBounded): past it, its client is gone.
const idleMargin = 5 * time.Second

// redeliverIdle bounds how long a redeliver batch's transaction may sit idle between two
// statements (while its tasks are enqueued into Redis).
const redeliverIdle = 2 * time.Minute

// beginIdleBounded begins a transaction that PostgreSQL itself ends (terminating its session) when
// it sits idle between two statements for longer than idle. A relay or redeliver holds its rows
// locked (FOR UPDATE) while it enqueues their tasks into Redis; if its client vanishes without
// closing its connection (its host lost, a network partition), the server would otherwise keep
// the transaction, and those locks, until its TCP keepalive gives up (two hours by default):
// meanwhile the other relays skip those rows (SKIP LOCKED), and the deliveries being recorded wait
// on them. Set in the BEGIN's own round trip (one simple-protocol query).
func beginIdleBounded(ctx context.Context, pool *pgxpool.Pool, idle time.Duration) (pgx.Tx, error) {
	return pool.BeginTx(ctx, pgx.TxOptions{
		BeginQuery: "BEGIN; SET LOCAL idle_in_transaction_session_timeout = " + strconv.FormatInt(idle.Milliseconds(), 10),
	})
}
