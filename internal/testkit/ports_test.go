package testkit

import (
	"net"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestProxyPortsStayReserved: a proxy's port is one no other test can take while the proxy is Down.
// FreeAddr (servers tests start) draws from the lower half of the ports below the ephemeral range
// and proxies from the upper half, and a proxy that is Down is still listed by the toxiproxy server,
// so that NewProxy in another package's tests skips its port. (The fault suite once failed its Up:
// a test server in another package had bound the port of its Redis proxy while it was Down.)
func TestProxyPortsStayReserved(t *testing.T) {
	if testing.Short() {
		t.Skip("needs toxiproxy")
	}
	from, mid, to := portRanges()
	require.Less(t, from, mid)
	require.Less(t, mid, to)
	for range 200 {
		port := portOf(t, FreeAddr(t))
		require.True(t, port >= from && port < mid, "FreeAddr gave %d, outside [%d, %d)", port, from, mid)
	}

	p := NewProxy(t, "reserved", ToxiproxyAddr())
	port := portOf(t, p.Addr)
	require.True(t, port >= mid && port < to, "NewProxy listens on %d, outside [%d, %d)", port, mid, to)
	p.Down()
	held, err := proxyPorts(Toxiproxy(t))
	require.NoError(t, err)
	require.True(t, held[port], "a proxy that is Down no longer holds its port %d", port)
	p.Up()
}

func portOf(t *testing.T, addr string) int {
	t.Helper()
	_, s, err := net.SplitHostPort(addr)
	require.NoError(t, err)
	n, err := strconv.Atoi(s)
	require.NoError(t, err)
	return n
}
