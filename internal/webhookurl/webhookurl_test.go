package webhookurl

import (
	"errors"
	"net/netip"
	"testing"

	"github.com/stretchr/testify/require"
)

// addresses are judged by PublicAddress, which internal/webhook's dialer uses.
var addresses = map[string]bool{
	"93.184.215.14": true, "2606:4700::1111": true, "8.8.8.8": true,
	"127.0.0.1": false, "127.1.2.3": false, "::1": false, // loopback
	"10.1.2.3": false, "172.16.0.1": false, "192.168.1.1": false, "fd00::1": false, // private
	"169.254.169.254": false, "fe80::1": false, // link-local (cloud metadata)
	"0.0.0.0": false, "::": false, "100.64.0.1": false, "224.0.0.1": false, "255.255.255.255": false,
	"::ffff:127.0.0.1": false, "::ffff:10.0.0.1": false, "::ffff:8.8.8.8": true, // IPv4-mapped
	"198.18.0.1": false, "2001:db8::1": false,
	"192.0.2.1": false, "198.51.100.7": false, "203.0.113.9": false, "3fff::1": false, // documentation
	"192.88.99.1": false, "5f00::1": false, "64:ff9b::c000:201": false, "2002:c000:201::1": false,
	"64:ff9b::a00:1": false, "64:ff9b::a9fe:a9fe": false, "64:ff9b::7f00:1": false, "64:ff9b::808:808": true, // NAT64
	"2002:a00:1::1": false, "2002:a9fe:a9fe::": false, "2002:808:808::1": true, // 6to4
	"2001::a00:1": false, // Teredo (the whole 2001::/23 is refused)
	// IPv4-compatible (deprecated ::/96): refused whatever IPv4 address they carry.
	"::127.0.0.1": false, "::7f00:1": false, "::a9fe:a9fe": false, "::169.254.169.254": false,
	"::10.0.0.1": false, "::192.168.1.1": false, "::8.8.8.8": false, "::0.0.0.2": false, "::ffff:ffff": false,
}

func TestPublicAddress(t *testing.T) {
	t.Parallel()
	for addr, want := range addresses {
		require.Equal(t, want, PublicAddress(netip.MustParseAddr(addr)), addr)
	}
}

// TestCheck: the URLs refused without a lookup, and what INTAKE_WEBHOOK_ALLOW_PRIVATE lets through.
func TestCheck(t *testing.T) {
	t.Parallel()
	for raw, c := range map[string]struct {
		want      string // "" when accepted
		forbidden bool   // refused for its address (with private addresses allowed, accepted)
	}{
		"https://app.example.com/hooks":   {"", false},
		"http://93.184.215.14:8080/h":     {"", false},
		"https://[2606:4700::1111]/h":     {"", false},
		"file:///etc/passwd":              {"absolute http or https URL", false},
		"/hooks":                          {"absolute http or https URL", false},
		"http://":                         {"absolute http or https URL", false},
		"http://127.0.0.1:8080/":          {"127.0.0.1 is not a public address", true},
		"http://user:pw@10.0.0.7/h":       {"10.0.0.7 is not a public address", true},
		"http://169.254.169.254/latest":   {"169.254.169.254", true},
		"http://[::1]:8080/":              {"::1", true},
		"http://[::ffff:127.0.0.1]:8080/": {"127.0.0.1", true},
		"http://[::127.0.0.1]:8080/":      {"::7f00:1 is not a public address", true},
		"http://[::a9fe:a9fe]/latest":     {"::a9fe:a9fe is not a public address", true},
		"http://localhost:3000/h":         {"localhost is this machine", true},
		"http://LOCALHOST./h":             {"LOCALHOST.", true},
		"http://app.localhost/h":          {"app.localhost", true},
	} {
		err := Check(raw, false)
		if c.want == "" {
			require.NoError(t, err, raw)
			continue
		}
		require.ErrorContains(t, err, c.want, raw)
		require.Equal(t, c.forbidden, errors.Is(err, ErrForbiddenAddress), raw)
		require.NotContains(t, err.Error(), "pw", raw)
		if c.forbidden {
			require.ErrorContains(t, err, "INTAKE_WEBHOOK_ALLOW_PRIVATE", raw)
			require.NoError(t, Check(raw, true), "%s with private addresses allowed", raw)
		} else {
			require.Error(t, Check(raw, true), "%s with private addresses allowed", raw)
		}
	}
}
