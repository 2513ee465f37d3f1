package consumer_test

import (
	"os"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	if os.Getenv(protoChildEnv) != "" {
		// BenchmarkScaleOutBatchProto's prototype process.
		os.Exit(runChild(protoChild))
	}
	if os.Getenv(childEnv) != "" {
		// BenchmarkScaleOut's consumer process: run one consumer instead of the tests.
		os.Exit(runChild(consumerChild))
	}
	if os.Getenv(bareChildEnv) != "" {
		// BenchmarkScaleOutBare's client process: fetch its share of the URLs instead of the tests.
		os.Exit(runChild(bareChild))
	}
	goleak.VerifyTestMain(m,
		// Idle keep-alive connections of the SDK's shared HTTP transport.
		goleak.IgnoreTopFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
		goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"),
	)
}
