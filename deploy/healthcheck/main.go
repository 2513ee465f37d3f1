// Command intake-healthcheck probes a running intake daemon from inside its container, where the
// distroless image has no shell, curl or wget. It GETs http://127.0.0.1:PORT/PATH and exits 0 on a
// 2xx answer, 1 otherwise. Docker's HEALTHCHECK and Compose's healthcheck run it; Kubernetes uses
// httpGet probes instead.
//
// The address is the daemon's, found as the daemon finds it: the --listen flag of its command line
// (which overrides the environment), else INTAKE_LISTEN_ADDR, else the daemon's default
// 127.0.0.1:8080. The command line is the container's PID 1's (/proc/1/cmdline): intake itself
// under the image's ENTRYPOINT, or an init (docker run --init) that runs it; only the arguments
// after the "intake" one are read. So `docker run IMAGE run --listen 0.0.0.0:9000` is probed on
// port 9000 without changing the HEALTHCHECK. -listen, when given, wins over both.
//
//	intake-healthcheck                  # GET /healthz (alive)
//	intake-healthcheck -path /readyz    # GET /readyz (dependencies reachable)
//	intake-healthcheck -listen :9000    # on another port than the daemon's own settings say
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// daemonCmdline is the command line of the container's PID 1: the daemon, or the init running it.
const daemonCmdline = "/proc/1/cmdline"

func main() {
	path := flag.String("path", "/healthz", "path to GET")
	timeout := flag.Duration("timeout", 4*time.Second, "request timeout")
	listen := flag.String("listen", "", "the daemon's listen address (default: its --listen flag, else INTAKE_LISTEN_ADDR)")
	flag.Parse()
	addr := *listen
	if addr == "" {
		addr = listenAddr(readCmdline(daemonCmdline), os.Getenv("INTAKE_LISTEN_ADDR"))
	}
	url, err := probeURL(addr, *path)
	if err == nil {
		err = probe(url, *timeout)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "intake-healthcheck:", err)
		os.Exit(1)
	}
}

// readCmdline returns the arguments of a /proc/PID/cmdline file (NUL-separated), or nil when it
// cannot be read (outside a container, another user's process).
func readCmdline(path string) []string {
	raw, err := os.ReadFile(path)
	if err != nil || len(raw) == 0 {
		return nil
	}
	return strings.Split(strings.TrimSuffix(string(raw), "\x00"), "\x00")
}

// listenAddr returns the address the daemon listens on, as it decides it: the value of --listen
// (--listen X or --listen=X; the last one given) among the arguments that follow the first one
// naming the intake binary in cmdline, else env (INTAKE_LISTEN_ADDR). Nothing after a "--" is a
// flag. Empty means the daemon's default.
func listenAddr(cmdline []string, env string) string {
	start := -1
	for i, arg := range cmdline {
		if filepath.Base(arg) == "intake" {
			start = i + 1
			break
		}
	}
	addr := env
	if start < 0 {
		return addr
	}
	args := cmdline[start:]
	for i := 0; i < len(args); i++ {
		switch arg := args[i]; {
		case arg == "--":
			return addr
		case arg == "--listen" && i+1 < len(args):
			addr = args[i+1]
			i++
		case strings.HasPrefix(arg, "--listen="):
			addr = strings.TrimPrefix(arg, "--listen=")
		}
	}
	return addr
}

// probeURL turns the daemon's listen address into a URL reachable from inside the container: an
// unspecified or wildcard host becomes 127.0.0.1. An empty address is the daemon's default.
func probeURL(listen, path string) (string, error) {
	if listen == "" {
		listen = "127.0.0.1:8080"
	}
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return "", fmt.Errorf("listen address %q: %w", listen, err)
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
