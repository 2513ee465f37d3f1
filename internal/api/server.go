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

// MaxHeaderBytes bounds a request's line and headers (Go's default is 1 MiB): the largest a client
// sends is a bearer token (auth.MaxTokenBytes) or Uppy's list of up to 1,000 part numbers, a few
// KiB. A larger request is answered 431 before any handler runs, and a slow client holds less.
const MaxHeaderBytes = 64 << 10

// NewHTTPServer returns the http.Server the daemon serves h with: the timeouts above, MaxHeaderBytes, writeTimeout
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
		MaxHeaderBytes:    MaxHeaderBytes,
		ErrorLog:          errorLog,
	}
}
