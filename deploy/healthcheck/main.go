// Command intake-healthcheck probes a running intake daemon from inside its container, where the
// distroless image has no shell, curl or wget. It GETs http://127.0.0.1:PORT/PATH, with PORT taken
// from INTAKE_LISTEN_ADDR (the address the daemon listens on), and exits 0 on a 2xx answer, 1
// otherwise. Docker's HEALTHCHECK and Compose's healthcheck run it; Kubernetes uses httpGet probes
// instead.
//
//	intake-healthcheck                  # GET /healthz (alive)
//	intake-healthcheck -path /readyz    # GET /readyz (dependencies reachable)
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"time"
)

func main() {
	path := flag.String("path", "/healthz", "path to GET")
	timeout := flag.Duration("timeout", 4*time.Second, "request timeout")
	flag.Parse()
	url, err := probeURL(os.Getenv("INTAKE_LISTEN_ADDR"), *path)
	if err == nil {
		err = probe(url, *timeout)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "intake-healthcheck:", err)
		os.Exit(1)
	}
}

// probeURL turns the daemon's listen address into a URL reachable from inside the container: an
// unspecified or wildcard host becomes 127.0.0.1. An empty address is the daemon's default.
func probeURL(listen, path string) (string, error) {
	if listen == "" {
		listen = "127.0.0.1:8080"
	}
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return "", fmt.Errorf("INTAKE_LISTEN_ADDR %q: %w", listen, err)
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	if path == "" || path[0] != '/' {
		path = "/" + path
	}
	return "http://" + net.JoinHostPort(host, port) + path, nil
}

// probe GETs url and reports an error unless the answer is 2xx.
func probe(url string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("build request for %s: %w", url, err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("get %s: %w", url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("get %s: %s: %s", url, resp.Status, body)
	}
	return nil
}
