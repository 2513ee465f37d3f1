package webhook

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"syscall"
	"time"

	"github.com/intakehq/intake/internal/webhookurl"
)

// ErrForbiddenAddress is wrapped by the errors of connections the client refused because the
// address is loopback, link-local, private or otherwise not public (webhookurl.PublicAddress), and
// by those of URLs refused for their host (webhookurl.Check). It is webhookurl's.
var ErrForbiddenAddress = webhookurl.ErrForbiddenAddress

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
	if !webhookurl.PublicAddress(ip) {
		return fmt.Errorf("%w: %s is not a public address (set INTAKE_WEBHOOK_ALLOW_PRIVATE=true to allow it)", ErrForbiddenAddress, ip)
	}
	return nil
}
