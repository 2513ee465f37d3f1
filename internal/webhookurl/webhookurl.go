// Package webhookurl holds the checks of a webhook URL that need no network: an absolute http(s)
// URL, and, unless private addresses are allowed, no host that is a non-public literal address or
// localhost. internal/config runs them on INTAKE_WEBHOOK_URL at start-up (config.Validate) and
// internal/webhook on every endpoint it builds, so both refuse the same URLs. The address ranges
// live here so that neither imports the other (webhook imports config).
package webhookurl

import (
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"strings"
)

// ErrForbiddenAddress is wrapped by the errors of [Check] that refuse a URL for its host: a
// literal address that is not public, or localhost.
var ErrForbiddenAddress = errors.New("webhook address not allowed")

// nonPublic lists ranges that [PublicAddress] refuses beyond what netip.Addr's predicates cover.
var nonPublic = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),       // "this network"
	netip.MustParsePrefix("100.64.0.0/10"),   // carrier-grade NAT (shared address space)
	netip.MustParsePrefix("192.0.0.0/24"),    // IETF protocol assignments
	netip.MustParsePrefix("192.0.2.0/24"),    // documentation (TEST-NET-1)
	netip.MustParsePrefix("192.88.99.0/24"),  // former 6to4 relay anycast
	netip.MustParsePrefix("198.18.0.0/15"),   // benchmarking
	netip.MustParsePrefix("198.51.100.0/24"), // documentation (TEST-NET-2)
	netip.MustParsePrefix("203.0.113.0/24"),  // documentation (TEST-NET-3)
	netip.MustParsePrefix("240.0.0.0/4"),     // reserved, and the broadcast address
	netip.MustParsePrefix("64:ff9b:1::/48"),  // local-use IPv4/IPv6 translation
	netip.MustParsePrefix("2001:db8::/32"),   // documentation
	netip.MustParsePrefix("3fff::/20"),       // documentation (RFC 9637)
	netip.MustParsePrefix("5f00::/16"),       // segment routing SIDs (RFC 9602), not hosts
	netip.MustParsePrefix("fec0::/10"),       // deprecated site-local
	netip.MustParsePrefix("100::/64"),        // discard-only
	netip.MustParsePrefix("2001::/23"),       // IETF protocol assignments (Teredo, ORCHID, ...)
	netip.MustParsePrefix("::ffff:0:0:0/96"), // IPv4-translated
	// IPv4-compatible (deprecated, RFC 4291 2.5.5.1): ::a.b.c.d, such as ::127.0.0.1 and
	// ::a9fe:a9fe (169.254.169.254). No receiver has such an address; a stack that still routes
	// them (automatic tunnelling) sends to the IPv4 address they carry. :: and ::1 are in it too.
	netip.MustParsePrefix("::/96"),
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
// NAT64, 64:ff9b::a9fe:a9fe reaches 169.254.169.254. The deprecated IPv4-compatible addresses
// (::/96, such as ::127.0.0.1) are refused whatever they carry.
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

// Check accepts an absolute http or https URL and, unless allowPrivate
// (INTAKE_WEBHOOK_ALLOW_PRIVATE), refuses one whose host is a literal address that is not public
// or localhost (or a name under .localhost). It resolves nothing: a name that resolves to an
// internal address is refused when connecting (internal/webhook's client). Its errors quote the
// host, never the rest of the URL (which may hold a password).
func Check(raw string, allowPrivate bool) error {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return errors.New("must be an absolute http or https URL")
	}
	if allowPrivate {
		return nil
	}
	host := u.Hostname()
	if ip, err := netip.ParseAddr(host); err == nil && !PublicAddress(ip) {
		return fmt.Errorf("%w: %s is not a public address (set INTAKE_WEBHOOK_ALLOW_PRIVATE=true to allow it)", ErrForbiddenAddress, ip)
	}
	if h := strings.ToLower(strings.TrimSuffix(host, ".")); h == "localhost" || strings.HasSuffix(h, ".localhost") {
		return fmt.Errorf("%w: %s is this machine (set INTAKE_WEBHOOK_ALLOW_PRIVATE=true to allow it)", ErrForbiddenAddress, host)
	}
	return nil
}
