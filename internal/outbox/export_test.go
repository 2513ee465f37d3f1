package outbox

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// SetIdleCheck shortens the Listener's checks of a silent connection (listenIdleCheck,
// listenPingTimeout); call it before Run.
func (l *Listener) SetIdleCheck(idle, ping time.Duration) { l.idle, l.ping = idle, ping }

// DiscardInBatches is Discard with batch notifications per statement, calling between (when not
// nil) after each full batch, before the next one, with the count so far.
func DiscardInBatches(ctx context.Context, pool *pgxpool.Pool, endpoint string, batch int32,
	between func(done int64)) (int64, error) {
	return discard(ctx, pool, endpoint, batch, between)
}
