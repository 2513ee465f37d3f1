package api

import (
	"bufio"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestDateHeader: every answer through the middleware, written with WriteHeader or with Write
// alone, carries exactly one Date header in http.TimeFormat, of the second it was written in (a
// long poll's answer says when it was written, not when the request came); a handler's own Date
// is kept, and a nil one (net/http's way to suppress it) sends none.
func TestDateHeader(t *testing.T) {
	srv := unitServer(t)
	mux := http.NewServeMux()
	mux.Handle("/status", srv.wrap("status", familyPublic, func(w http.ResponseWriter, _ *http.Request, _ principal) *Problem {
		w.WriteHeader(http.StatusAccepted)
		return nil
	}))
	mux.Handle("/write", srv.wrap("write", familyPublic, func(w http.ResponseWriter, _ *http.Request, _ principal) *Problem {
		_, _ = w.Write([]byte("ok"))
		return nil
	}))
	mux.Handle("/slow", srv.wrap("slow", familyPublic, func(w http.ResponseWriter, _ *http.Request, _ principal) *Problem {
		time.Sleep(1100 * time.Millisecond)
		w.WriteHeader(http.StatusOK)
		return nil
	}))
	mux.Handle("/own", srv.wrap("own", familyPublic, func(w http.ResponseWriter, _ *http.Request, _ principal) *Problem {
		w.Header().Set("Date", "Tue, 01 Dec 2026 00:00:00 GMT")
		w.WriteHeader(http.StatusOK)
		return nil
	}))
	mux.Handle("/none", srv.wrap("none", familyPublic, func(w http.ResponseWriter, _ *http.Request, _ principal) *Problem {
		w.Header()["Date"] = nil
		w.WriteHeader(http.StatusOK)
		return nil
	}))
	hs := httptest.NewServer(mux)
	t.Cleanup(hs.Close)

	// dates sends a request on a raw connection and returns the answer's Date lines, as written.
	dates := func(path string) []string {
		t.Helper()
		conn, err := net.Dial("tcp", hs.Listener.Addr().String())
		require.NoError(t, err)
		defer conn.Close()
		_, err = conn.Write([]byte("GET " + path + " HTTP/1.1\r\nHost: intake\r\nConnection: close\r\n\r\n"))
		require.NoError(t, err)
		var lines []string
		sc := bufio.NewScanner(conn)
		for sc.Scan() && sc.Text() != "" {
			if name, value, ok := strings.Cut(sc.Text(), ": "); ok && strings.EqualFold(name, "Date") {
				lines = append(lines, value)
			}
		}
		require.NoError(t, sc.Err())
		return lines
	}
	within := func(path string) {
		t.Helper()
		for range 3 { // the same second's answers share one formatted value
			before := time.Now().Truncate(time.Second)
			got := dates(path)
			after := time.Now()
			require.Len(t, got, 1, path)
			at, err := time.Parse(http.TimeFormat, got[0])
			require.NoError(t, err, path)
			require.False(t, at.Before(before) || at.After(after), "%s: Date %s not within [%s, %s]", path, got[0], before, after)
		}
	}
	within("/status")
	within("/write")

	start := time.Now()
	got := dates("/slow")
	require.Len(t, got, 1)
	at, err := time.Parse(http.TimeFormat, got[0])
	require.NoError(t, err)
	require.True(t, at.After(start.Truncate(time.Second)), "the slow answer's Date %s is its request's second, not its own", got[0])

	require.Equal(t, []string{"Tue, 01 Dec 2026 00:00:00 GMT"}, dates("/own"))
	require.Empty(t, dates("/none"))
}
