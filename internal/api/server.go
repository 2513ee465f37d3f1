package api

import (
	"log"
	"net/http"
	"time"
)

// HTTP server timeouts of the daemon's listeners. A client gets ReadHeaderTimeout to send its
// request line and headers, ReadTimeout for the whole request, and the listener's write timeout
// (WriteTimeout on the public listener) to read the whole answer; an idle keep-alive connection is
// closed after IdleTimeout.
const (
	ReadHeaderTimeout = 10 * time.Second
	ReadTimeout       = 60 * time.Second
	// WriteTimeout bounds each response of the public listener; MaxWait (long polls) stays below it.
	WriteTimeout = 60 * time.Second
	IdleTimeout  = 120 * time.Second
)

// NewHTTPServer returns the http.Server the daemon serves h with: the timeouts above, writeTimeout
// for responses (WriteTimeout on the public listener; the admin listener's streams profiles for
// longer), and errorLog for the server's own errors (malformed requests, TLS and accept errors).
// The API's benchmarks serve through it too, so that they measure the server the daemon runs.
func NewHTTPServer(h http.Handler, writeTimeout time.Duration, errorLog *log.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: ReadHeaderTimeout,
		ReadTimeout:       ReadTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       IdleTimeout,
		ErrorLog:          errorLog,
	}
}
