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
