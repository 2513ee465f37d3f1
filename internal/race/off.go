//go:build !race

// Package race tells tests whether the race detector is on: its instrumentation allocates, so the
// tests that count allocations skip themselves under -race, and `make test` runs them again
// without it (the Makefile's ALLOC_TESTS and ALLOC_PKGS name them).
package race

// Enabled reports whether the binary was built with the race detector (-race).
const Enabled = false
