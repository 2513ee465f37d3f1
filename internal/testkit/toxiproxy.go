package testkit

import (
	"cmp"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2/client"
)

// DefaultToxiproxyAddr is the local stack's toxiproxy API (deploy/local/stack.sh).
const DefaultToxiproxyAddr = "127.0.0.1:8474"

// ToxiproxyAddr is the toxiproxy API address (TEST_TOXIPROXY_ADDR overrides it).
func ToxiproxyAddr() string { return cmp.Or(os.Getenv("TEST_TOXIPROXY_ADDR"), DefaultToxiproxyAddr) }

// Toxiproxy returns a client of the local stack's toxiproxy server, failing t when it does not answer.
func Toxiproxy(t testing.TB) *toxiproxy.Client {
	t.Helper()
	c := toxiproxy.NewClient(ToxiproxyAddr())
	if _, err := c.Version(); err != nil {
		t.Fatalf("testkit: toxiproxy %s: %v%s", ToxiproxyAddr(), err, hint)
	}
	return c
}

// Proxy is a toxiproxy proxy between a client under test and one server: point the client at Addr
// instead of the server. Its methods cut or degrade the path; each failure fails the test.
type Proxy struct {
	// Addr is where the proxy listens (127.0.0.1 and a port of its own).
	Addr string
	// Upstream is the server it forwards to.
	Upstream string

	t testing.TB
	p *toxiproxy.Proxy
}

// NewProxy creates a proxy named after name (made unique) that listens on a free port of 127.0.0.1
// and forwards to upstream ("host:port"). It is deleted when the test ends, which closes every
// connection through it.
//
// While a proxy is Down its port is closed, and Up binds it again, so nothing else may take it in
// between, in this process or in another package's tests running beside it: the port lies outside
// the ephemeral range (no outgoing connection takes it as its source port), in the half of that span
// FreeAddr leaves to proxies (no server a test starts takes it), and is not the port of any proxy
// the shared toxiproxy server holds, up or down (no other proxy takes it).
func NewProxy(t testing.TB, name, upstream string) *Proxy {
	t.Helper()
	c := Toxiproxy(t)
	_, from, to := portRanges()
	var p *toxiproxy.Proxy
	for attempt := 0; ; attempt++ {
		held, err := proxyPorts(c)
		if err != nil {
			t.Fatalf("testkit: list proxies: %v", err)
		}
		addr := freeAddrIn(t, from, to, func(port int) bool { return held[port] })
		if p, err = c.CreateProxy(Name(name+"-"), addr, upstream); err == nil {
			break
		}
		// Another process created a proxy on the same port between the listing and now.
		if attempt == 4 || !strings.Contains(err.Error(), "address already in use") {
			t.Fatalf("testkit: create proxy to %s on %s: %v", upstream, addr, err)
		}
	}
	t.Cleanup(func() {
		if err := p.Delete(); err != nil {
			t.Logf("testkit: delete proxy %s: %v", p.Name, err)
		}
	})
	if _, _, err := net.SplitHostPort(p.Listen); err != nil {
		t.Fatalf("testkit: proxy %s listens on %q: %v", p.Name, p.Listen, err)
	}
	return &Proxy{Addr: p.Listen, Upstream: upstream, t: t, p: p}
}

// proxyPorts returns the ports of every proxy the toxiproxy server holds, enabled or not.
func proxyPorts(c *toxiproxy.Client) (map[int]bool, error) {
	proxies, err := c.Proxies()
	if err != nil {
		return nil, err
	}
	held := make(map[int]bool, len(proxies))
	for _, p := range proxies {
		if _, port, err := net.SplitHostPort(p.Listen); err == nil {
			if n, err := strconv.Atoi(port); err == nil {
				held[n] = true
			}
		}
	}
	return held, nil
}

// URL is Addr as an http:// URL (for S3 and SQS endpoints).
func (p *Proxy) URL() string { return "http://" + p.Addr }

// Name is the proxy's name in toxiproxy.
func (p *Proxy) Name() string { return p.p.Name }

// Down closes the proxy's port and every connection through it: the server is gone (connections are
// refused) until Up.
func (p *Proxy) Down() {
	p.t.Helper()
	p.call("disable", p.p.Disable)
}

// Up reopens the proxy's port (the same Addr).
func (p *Proxy) Up() {
	p.t.Helper()
	p.call("enable", p.p.Enable)
}

// call runs one request to the toxiproxy API, trying again when it fails (after a long fault the
// client's idle keep-alive connection may have been closed by the server: "connection reset by
// peer"), and fails the test after three attempts. Every call it makes is idempotent.
func (p *Proxy) call(what string, f func() error) {
	p.t.Helper()
	var err error
	for attempt := range 3 {
		if attempt > 0 {
			time.Sleep(200 * time.Millisecond)
		}
		if err = f(); err == nil {
			return
		}
	}
	p.t.Fatalf("testkit: %s proxy %s: %v", what, p.p.Name, err)
}

// Stream names the direction a toxic acts on.
type Stream string

// Directions of a toxic: Upstream is client → server (requests), Downstream server → client
// (responses).
const (
	Upstream   Stream = "upstream"
	Downstream Stream = "downstream"
)

// Latency delays every chunk of data by latency (± jitter) in the given direction. It returns the
// toxic's name for Remove.
func (p *Proxy) Latency(s Stream, latency, jitter time.Duration) string {
	return p.add("latency", s, toxiproxy.Attributes{"latency": latency.Milliseconds(), "jitter": jitter.Milliseconds()})
}

// Timeout makes the path half-open: data in the given direction vanishes, nothing is refused, and
// after timeout the connection is closed (0: never; the peer waits forever).
func (p *Proxy) Timeout(s Stream, timeout time.Duration) string {
	return p.add("timeout", s, toxiproxy.Attributes{"timeout": timeout.Milliseconds()})
}

// ResetPeer resets connections (TCP RST) after timeout once data flows in the given direction
// (0: at once).
func (p *Proxy) ResetPeer(s Stream, timeout time.Duration) string {
	return p.add("reset_peer", s, toxiproxy.Attributes{"timeout": timeout.Milliseconds()})
}

// Bandwidth limits the given direction to kbPerSecond kilobytes per second.
func (p *Proxy) Bandwidth(s Stream, kbPerSecond int64) string {
	return p.add("bandwidth", s, toxiproxy.Attributes{"rate": kbPerSecond})
}

// SlowClose delays closing the connection in the given direction by delay.
func (p *Proxy) SlowClose(s Stream, delay time.Duration) string {
	return p.add("slow_close", s, toxiproxy.Attributes{"delay": delay.Milliseconds()})
}

// Remove removes one toxic (by the name a toxic method returned).
func (p *Proxy) Remove(name string) {
	p.t.Helper()
	p.call("remove toxic "+name+" of", func() error { return p.p.RemoveToxic(name) })
}

// Clear removes every toxic: the path is healthy again (Down is undone by Up, not Clear).
func (p *Proxy) Clear() {
	p.t.Helper()
	var toxics toxiproxy.Toxics
	p.call("list toxics of", func() (err error) { toxics, err = p.p.Toxics(); return err })
	for _, x := range toxics {
		p.Remove(x.Name)
	}
}

func (p *Proxy) add(kind string, s Stream, attrs toxiproxy.Attributes) string {
	p.t.Helper()
	name := fmt.Sprintf("%s_%s_%s", kind, s, Name(""))
	p.call("add "+kind+" toxic to", func() error {
		_, err := p.p.AddToxic(name, kind, string(s), 1, attrs)
		if err != nil && strings.Contains(err.Error(), "already exists") {
			return nil // an earlier attempt reached the server
		}
		return err
	})
	return name
}
