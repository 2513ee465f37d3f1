package main

import (
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestProbeURL(t *testing.T) {
	t.Parallel()
	cases := []struct {
		listen, path, want string
		wantErr            bool
	}{
		{listen: "", path: "/healthz", want: "http://127.0.0.1:8080/healthz"},
		{listen: "0.0.0.0:8080", path: "/readyz", want: "http://127.0.0.1:8080/readyz"},
		{listen: ":9090", path: "readyz", want: "http://127.0.0.1:9090/readyz"},
		{listen: "[::]:8080", path: "/healthz", want: "http://127.0.0.1:8080/healthz"},
		{listen: "10.1.2.3:8081", path: "/healthz", want: "http://10.1.2.3:8081/healthz"},
		{listen: "[::1]:8080", path: "/healthz", want: "http://[::1]:8080/healthz"},
		{listen: "8080", path: "/healthz", wantErr: true},
	}
	for _, tc := range cases {
		t.Run(tc.listen+tc.path, func(t *testing.T) {
			t.Parallel()
			got, err := probeURL(tc.listen, tc.path)
			if tc.wantErr {
				require.Error(t, err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
		})
	}
}

func TestProbe(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/healthz":
			_, _ = w.Write([]byte(`{"status":"ok"}`))
		case "/readyz":
			http.Error(w, `{"status":"unavailable"}`, http.StatusServiceUnavailable)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)

	require.NoError(t, probe(srv.URL+"/healthz", 2*time.Second))
	err := probe(srv.URL+"/readyz", 2*time.Second)
	require.ErrorContains(t, err, "503")
	require.ErrorContains(t, err, "unavailable")
	require.Error(t, probe(srv.URL+"/nope", 2*time.Second))

	// Nothing listens on a port we just closed: a connection error, not a hang.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	require.Error(t, probe("http://"+addr+"/healthz", 2*time.Second))
}

// TestListenAddr: the probe finds the daemon's port as the daemon does: its --listen flag (from
// PID 1's command line: intake under the image's ENTRYPOINT, or an init running it) overrides
// INTAKE_LISTEN_ADDR. Before, only INTAKE_LISTEN_ADDR was read, and `docker run IMAGE run --listen
// 0.0.0.0:9000` was probed on the image's 8080: unhealthy for good.
func TestListenAddr(t *testing.T) {
	t.Parallel()
	const env = "0.0.0.0:8080" // the image's ENV
	cases := []struct {
		name    string
		cmdline []string
		want    string
	}{
		{"image default", []string{"intake", "run"}, env},
		{"flag", []string{"intake", "run", "--listen", "0.0.0.0:9000"}, "0.0.0.0:9000"},
		{"flag with =", []string{"/usr/local/bin/intake", "run", "--roles=api", "--listen=:9001"}, ":9001"},
		{"last flag wins", []string{"intake", "run", "--listen", ":1", "--listen", ":2"}, ":2"},
		{"under docker run --init", []string{"/sbin/docker-init", "--", "intake", "run", "--listen", "0.0.0.0:9002"}, "0.0.0.0:9002"},
		{"not intake's flag", []string{"/sbin/init", "--listen", ":7"}, env},
		{"after --", []string{"intake", "run", "--", "--listen", ":7"}, env},
		{"no value", []string{"intake", "run", "--listen"}, env},
		{"unreadable", nil, env},
	}
	for _, tc := range cases {
		require.Equal(t, tc.want, listenAddr(tc.cmdline, env), tc.name)
	}
	require.Equal(t, "", listenAddr([]string{"intake", "run"}, ""), "the daemon's default")
}

func TestReadCmdline(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "cmdline")
	require.NoError(t, os.WriteFile(path, []byte("intake\x00run\x00--listen\x000.0.0.0:9000\x00"), 0o600))
	require.Equal(t, []string{"intake", "run", "--listen", "0.0.0.0:9000"}, readCmdline(path))
	require.Nil(t, readCmdline(filepath.Join(t.TempDir(), "missing")))
}
