//go:build race

package telemetry_test

// raceEnabled: the race detector's instrumentation allocates, so allocation counts are not checked.
const raceEnabled = true
