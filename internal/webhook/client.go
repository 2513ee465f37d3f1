package webhook

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"syscall"
	"time"
)

// ErrForbiddenAddress is wrapped by the errors of connections the client refused because the
// address is loopback, link-local, private or otherwise not public (see [PublicAddress]).
var ErrForbiddenAddress = errors.New("webhook address not allowed")

// nonPublic lists ranges that [PublicAddress] refuses beyond what netip.Addr's predicates cover.
var nonPublic = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),       // "this network"
	netip.MustParsePrefix("100.64.0.0/10"),   // carrier-grade NAT (shared address space)
	netip.MustParsePrefix("192.0.0.0/24"),    // IETF protocol assignments
	netip.MustParsePrefix("198.18.0.0/15"),   // benchmarking
	netip.MustParsePrefix("240.0.0.0/4"),     // reserved, and the broadcast address
	netip.MustParsePrefix("64:ff9b:1::/48"),  // local-use IPv4/IPv6 translation
	netip.MustParsePrefix("2001:db8::/32"),   // documentation
	netip.MustParsePrefix("fec0::/10"),       // deprecated site-local
	netip.MustParsePrefix("100::/64"),        // discard-only
	netip.MustParsePrefix("2001::/23"),       // IETF protocol assignments (Teredo, ORCHID, ...)
	netip.MustParsePrefix("::ffff:0:0:0/96"), // IPv4-translated
}

// Prefixes of IPv6 addresses that carry an IPv4 address a translator or relay delivers to.
var (
	nat64  = netip.MustParsePrefix("64:ff9b::/96") // well-known NAT64 prefix (RFC 6052): the last 4 bytes
	sixTo4 = netip.MustParsePrefix("2002::/16")    // 6to4 (RFC 3056): bytes 2 to 5
)

// PublicAddress reports whether a webhook may be sent to ip: not loopback, link-local, private
// (RFC 1918, unique local fc00::/7), unspecified, multicast, carrier-grade NAT or another reserved
// range. An IPv6 address that carries an IPv4 address (IPv4-mapped, NAT64's 64:ff9b::/96, 6to4's
// 2002::/16) is judged as the IPv4 address it carries: in an IPv6-only subnet with DNS64 and
// NAT64, 64:ff9b::a9fe:a9fe reaches 169.254.169.254.
func PublicAddress(ip netip.Addr) bool {
	ip = ip.Unmap()
	if ip.Is6() {
		b := ip.As16()
		switch {
		case nat64.Contains(ip):
			return PublicAddress(netip.AddrFrom4([4]byte(b[12:16])))
		case sixTo4.Contains(ip):
			return PublicAddress(netip.AddrFrom4([4]byte(b[2:6])))
		}
	}
	if !ip.IsValid() || ip.IsLoopback() || ip.IsPrivate() || ip.IsUnspecified() || ip.IsMulticast() ||
		ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast() || ip.IsInterfaceLocalMulticast() {
		return false
	}
	for _, p := range nonPublic {
		if p.Contains(ip) {
			return false
		}
	}
	return true
}

// ClientOptions configure [NewClient].
type ClientOptions struct {
	// Timeout bounds one attempt: connecting, sending, and reading the answer (default 10 s).
	Timeout time.Duration
	// AllowPrivate lets the client connect to any address (INTAKE_WEBHOOK_ALLOW_PRIVATE; local
	// development and tests).
	AllowPrivate bool
}

// NewClient returns the HTTP client of webhook deliveries. It follows no redirect (a 3xx answer is
// the attempt's result), uses no proxy from the environment, and, unless AllowPrivate, refuses to
// connect to an address that is not public: the check runs on the address being dialled, after
// DNS resolution, so a name that resolves (or is rebound) to an internal address is refused too.
func NewClient(o ClientOptions) *http.Client {
	timeout := o.Timeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	dialer := &net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second}
	if !o.AllowPrivate {
		dialer.Control = refuseNonPublic
	}
	tr := &http.Transport{
		Proxy:                 nil, // a proxy would be dialled instead of the receiver, escaping the check
		DialContext:           dialer.DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          100,
		MaxIdleConnsPerHost:   32,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   timeout,
		ResponseHeaderTimeout: timeout,
	}
	return &http.Client{
		Transport: tr,
		Timeout:   timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

// refuseNonPublic is a net.Dialer Control function: it runs before each connect, with the
// resolved address.
func refuseNonPublic(_, address string, _ syscall.RawConn) error {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return fmt.Errorf("%w: %q: %v", ErrForbiddenAddress, address, err)
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return fmt.Errorf("%w: %q is not an IP address", ErrForbiddenAddress, host)
	}
	if !PublicAddress(ip) {
		return fmt.Errorf("%w: %s is not a public address (set INTAKE_WEBHOOK_ALLOW_PRIVATE=true to allow it)", ErrForbiddenAddress, ip)
	}
	return nil
}
