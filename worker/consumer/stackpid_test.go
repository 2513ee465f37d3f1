package consumer_test

import (
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestBurnCPUHelper is not a test: run as a child named "minio" by TestCPUTimesCountTheStacksMinIO,
// it burns CPU until killed.
func TestBurnCPUHelper(t *testing.T) {
	if os.Getenv("INTAKE_BURN_CPU") == "" {
		t.Skip("helper process")
	}
	for x := 0; ; x++ {
		_ = x * x
	}
}

// TestCPUTimesCountTheStacksMinIO: the benchmarks charge MinIO's CPU (the denominator of
// x-minio-cpu, issue 14's goal 1) to the local stack's MinIO alone. Another process named minio
// on the host (a fault-suite world starts its own) burning CPU during the measure must not be
// counted: before, every process of that name was.
func TestCPUTimesCountTheStacksMinIO(t *testing.T) {
	if testing.Short() {
		t.Skip("needs the local stack")
	}
	if _, ok := stackPIDs()[procMinIO]; !ok {
		t.Skip("the local stack's MinIO has no pid file (.stack/minio.pid)")
	}
	self, err := os.Executable()
	require.NoError(t, err)
	impostor := filepath.Join(t.TempDir(), procMinIO)
	src, err := os.Open(self)
	require.NoError(t, err)
	defer src.Close()
	dst, err := os.OpenFile(impostor, os.O_CREATE|os.O_WRONLY, 0o755)
	require.NoError(t, err)
	_, err = io.Copy(dst, src)
	require.NoError(t, err)
	require.NoError(t, dst.Close())

	before := cpuTimes()
	cmd := exec.Command(impostor, "-test.run=^TestBurnCPUHelper$")
	cmd.Env = append(os.Environ(), "INTAKE_BURN_CPU=1")
	require.NoError(t, cmd.Start())
	time.Sleep(time.Second)
	used := cpuDelta(before)
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	// The impostor burned up to a second of CPU; the stack's MinIO, idle, a few ticks at most.
	require.Less(t, used[procMinIO], 300*time.Millisecond, "another process named minio was counted")
}
