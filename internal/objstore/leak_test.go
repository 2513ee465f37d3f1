package objstore_test

import (
	"os"
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests when a goroutine outlives them (idle keep-alive connections of
// HTTP clients excepted). Started as BenchmarkHashGiB's child (hashChildEnv), it hashes instead.
func TestMain(m *testing.M) {
	if os.Getenv(hashChildEnv) != "" {
		os.Exit(runHashChild())
	}
	goleak.VerifyTestMain(m,
		goleak.IgnoreTopFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
		goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"),
	)
}
