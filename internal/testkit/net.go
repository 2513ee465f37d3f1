package testkit

import (
	"testing"
)

// Silent returns the address of a half-open server (a dead load balancer, a frozen process): it
// accepts connections and never answers. It is a toxiproxy proxy whose requests vanish (the timeout
// toxic, upstream); the proxy is removed when the test ends. Clients reach it with their request sent
// and wait for an answer that never comes.
func Silent(t testing.TB) string {
	t.Helper()
	// Any live upstream will do: nothing ever reaches it.
	p := NewProxy(t, "silent", ToxiproxyAddr())
	p.Timeout(Upstream, 0)
	p.Timeout(Downstream, 0)
	return p.Addr
}
