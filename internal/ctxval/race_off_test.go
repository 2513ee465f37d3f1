//go:build !race

package ctxval_test

// raceEnabled: the race detector's instrumentation allocates, so allocation counts are not checked.
const raceEnabled = false
