package testkit

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
)

// Do sends one request (to a presigned URL, typically) and returns the status and body. Headers
// with an empty value are not sent. An S3 refusal without an XML error body is logged.
func Do(t testing.TB, method, url string, body []byte, headers map[string]string) (int, []byte) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatalf("testkit: %s %s: %v", method, url, err)
	}
	for k, v := range headers {
		if v != "" {
			req.Header.Set(k, v)
		}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("testkit: %s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("testkit: read the response of %s %s: %v", method, url, err)
	}
	if resp.StatusCode >= 300 && !strings.Contains(string(b), "Error") {
		t.Logf("%s %d: %s", method, resp.StatusCode, b)
	}
	return resp.StatusCode, b
}

// FreeAddr returns a 127.0.0.1 address with a port nothing listens on now (for a server the test
// starts later, or a connection that must be refused). The port lies below the kernel's ephemeral
// range, so that no outgoing connection takes it as its source port before the server binds it (a
// port the kernel handed out for :0 would be in that range), and in the lower half of that span:
// the upper half is for toxiproxy's proxies (NewProxy), so that a server some test starts never
// takes the port of a proxy that is Down, which its Up must bind again.
func FreeAddr(t testing.TB) string {
	t.Helper()
	from, mid, _ := portRanges()
	return freeAddrIn(t, from, mid, nil)
}

// portRanges splits the ports below the ephemeral range: [from, mid) for FreeAddr, [mid, to) for
// proxies.
func portRanges() (from, mid, to int) {
	from, to = 10000, ephemeralLow()
	return from, from + (to-from)/2, to
}

// freeAddrIn returns a 127.0.0.1 address with a port in [from, to) that nothing listens on now and
// that skip (when not nil) does not refuse.
func freeAddrIn(t testing.TB, from, to int, skip func(port int) bool) string {
	t.Helper()
	for range 200 {
		port := from + rand.IntN(to-from)
		if skip != nil && skip(port) {
			continue
		}
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			continue // taken
		}
		addr := ln.Addr().String()
		_ = ln.Close()
		return addr
	}
	t.Fatalf("testkit: no free port found in [%d, %d)", from, to)
	return ""
}

// ephemeralLow is the first port of the kernel's ephemeral range (32768 when unknown).
func ephemeralLow() int {
	low := 32768
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if n, err := strconv.Atoi(f[0]); err == nil && n > 11000 {
				low = n
			}
		}
	}
	return low
}
