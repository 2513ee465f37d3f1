package objstore

import (
	"context"
	"net/http"
	"strings"
)

// SetCopyLimits lowers the size above which Move copies part by part, for tests.
func SetCopyLimits(o *Objects, maxCopySize, partSize int64) {
	o.maxCopySize, o.copyPartSize = maxCopySize, partSize
}

// CopySource exposes copySource to the tests.
var CopySource = copySource

// ClassifyPresignedError returns the error Peek returns for a failed presigned GET answered with
// status and body, and whether Peek repeats the GET through the SDK.
func ClassifyPresignedError(status int, body string) (err error, retried bool) {
	raw := responseError(status, http.Header{}, strings.NewReader(body))
	return wrap(context.Background(), "peek", "b", "k", raw), IsRetryable(raw)
}

// WithoutPresigned makes Peek use the SDK, for benchmarks.
func WithoutPresigned(o *Objects) { o.presigned = nil }

// WithoutFast makes Peek's presigned GETs go through the client's HTTP client (net/http) instead of
// fasthttp, for differential tests and benchmarks.
func WithoutFast(o *Objects) {
	if o.presigned != nil {
		o.presigned.fast = nil
	}
}

// FastIdle returns the number of connections the fasthttp sender holds idle (-1: Peek does not use
// it). Only a GET the sender completed puts a connection there, so a count that grows proves the
// fast path was taken.
func FastIdle(o *Objects) int {
	if o.presigned == nil || o.presigned.fast == nil {
		return -1
	}
	return o.presigned.fast.pool.Idle()
}
