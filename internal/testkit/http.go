package testkit

import (
	"bytes"
	"io"
	"net"
	"net/http"
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
// starts later, or a connection that must be refused).
func FreeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("testkit: listen: %v", err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	return addr
}
