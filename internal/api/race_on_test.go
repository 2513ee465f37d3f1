//go:build race

package api

// raceEnabled: the race detector's instrumentation allocates, so allocation counts are not checked.
const raceEnabled = true
