package outbox_test

import (
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/intakehq/intake/internal/outbox"
	"github.com/intakehq/intake/internal/testkit"
)

// TestListenerNoticesAHalfOpenConnection: the listener reaches PostgreSQL through a proxy (its
// configuration names the proxy first and PostgreSQL itself as the fallback host). A silent but
// healthy connection is kept (its checks pass: no reconnection, which would wake the subscriber,
// and a commit still wakes it). Then the proxy's path goes half-open: nothing it carries arrives,
// nothing is refused or reset, as after a failover or a partition. A commit made meanwhile still
// wakes the subscriber: the listener's check of the silent connection fails, it reconnects (the
// proxy's path times out, the fallback answers) and wakes everyone; a later commit wakes the
// subscriber through the new connection. Before, the listener waited on the dead connection for as
// long as TCP would keep it (the proxy answered its keepalives: for ever), and woke no one.
func TestListenerNoticesAHalfOpenConnection(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("needs PostgreSQL and toxiproxy (the local stack)")
	}
	ctx := testkit.Context(t)
	st := testkit.DB(t)
	direct := st.Pool.Config().ConnConfig
	proxy := testkit.NewProxy(t, "outbox-listener-pg", net.JoinHostPort(direct.Host, strconv.Itoa(int(direct.Port))))
	cfg := st.Pool.Config().Copy()
	host, port, err := net.SplitHostPort(proxy.Addr)
	require.NoError(t, err)
	p, err := strconv.ParseUint(port, 10, 16)
	require.NoError(t, err)
	cfg.ConnConfig.Host, cfg.ConnConfig.Port = host, uint16(p)
	cfg.ConnConfig.Fallbacks = []*pgconn.FallbackConfig{{Host: direct.Host, Port: direct.Port, TLSConfig: direct.TLSConfig}}
	cfg.ConnConfig.ConnectTimeout = 3 * time.Second // per host: the proxy's silent path, then PostgreSQL
	pool, err := pgxpool.NewWithConfig(ctx, cfg)    // connects nothing: the listener copies its configuration
	require.NoError(t, err)
	t.Cleanup(pool.Close)

	var logs testkit.SyncBuffer
	l := outbox.NewListener(pool, slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn})))
	l.SetIdleCheck(300*time.Millisecond, 2*time.Second)
	upload := uuid.New()
	wake, stop := l.Subscribe(upload)
	defer stop()
	testkit.Serve(t, l.Run)
	woken := func(what string) {
		t.Helper()
		select {
		case <-wake:
		case <-time.After(30 * time.Second):
			t.Fatalf("%s: not woken within 30 s; listener's log:\n%s", what, logs.String())
		}
	}
	commits := 0
	commit := func() {
		t.Helper()
		commits++
		_, err := st.Pool.Exec(ctx, `INSERT INTO outbox (dedupe_key, event_type, upload_id, bucket, key, data)
			VALUES ($1, 'upload.valid', $2, 'b', 'u/half-open.txt', '{}')`, fmt.Sprintf("test:half-open:%d", commits), upload)
		require.NoError(t, err)
	}
	listening := func() []int32 {
		t.Helper()
		rows, err := st.Pool.Query(ctx, `SELECT pid FROM pg_stat_activity WHERE query = $1 AND pid <> pg_backend_pid() ORDER BY pid`,
			"LISTEN "+pgx.Identifier{l.Channel()}.Sanitize())
		require.NoError(t, err)
		pids, err := pgx.CollectRows(rows, pgx.RowTo[int32])
		require.NoError(t, err)
		return pids
	}
	woken("listening") // every subscriber is woken once listening

	// Silent and healthy: checked again and again, kept.
	time.Sleep(1500 * time.Millisecond)
	select {
	case <-wake:
		t.Fatalf("woken without a commit: the listener reconnected on a healthy connection; its log:\n%s", logs.String())
	default:
	}
	first := listening()
	require.Len(t, first, 1, "one listening connection, through the proxy")
	commit()
	woken("a commit on the first connection")

	// Half-open: whatever either side sends vanishes, and nothing closes.
	proxy.Timeout(testkit.Upstream, 0)
	proxy.Timeout(testkit.Downstream, 0)
	commit()
	woken("a commit after the path went silent")
	require.Contains(t, logs.String(), "no answer to a ping", "the silent connection was found dead")
	require.Eventually(t, func() bool {
		return slices.ContainsFunc(listening(), func(pid int32) bool { return pid != first[0] })
	}, 30*time.Second, 50*time.Millisecond, "listening on a new connection")
	select {
	case <-wake: // a wake-up left from the reconnection, if any
	default:
	}
	commit()
	woken("a commit on the new connection")
}
