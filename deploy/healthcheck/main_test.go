package main

import (
	"net"
	"net/http"
	"net/http/httptest"
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
