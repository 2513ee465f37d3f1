// Package gctune sets the Go garbage collector's target for the intake daemon.
//
// intake's live heap is small (about 2 MB in a consumer draining at full speed: buffers are
// pooled, inspection reads a range, hashing streams), so with Go's default GOGC=100 the collector
// runs every 2 to 3 MB allocated, dozens of times a second under load, and each cycle's fixed work
// (stacks, globals, the write barrier's assists) is paid again and again. At 400 the heap goal is
// about 16 MB (Go's 4 MB minimum heap scales with the percent), the collector runs a sixth as
// often, and the consumer spends about 5% less CPU per event (BenchmarkEndToEnd, alternating runs;
// see the README's Benchmarks).
//
// An operator's GOGC always wins, and the soft memory limit (MemoryLimit: GOMEMLIMIT, or 90% of the
// container's cgroup limit) still makes the collector run earlier when memory gets short.
package gctune

import (
	"runtime/debug"
)

// DefaultPercent is the GC percent the daemon runs with when GOGC is not set.
const DefaultPercent = 400

// Apply sets the GC percent to DefaultPercent unless getenv("GOGC") is set (the runtime has
// already applied it). It returns the percent in effect (-1: the collector is off) and whether it
// came from GOGC.
func Apply(getenv func(string) string) (percent int, fromEnv bool) {
	if v := getenv("GOGC"); v != "" {
		// What the runtime made of it ("+50" is not 50 to it, a negative value is off): read, not
		// parsed again here.
		return current(), true
	}
	debug.SetGCPercent(DefaultPercent)
	return DefaultPercent, false
}

// current reads the GC percent in effect without changing it.
func current() int {
	p := debug.SetGCPercent(100)
	debug.SetGCPercent(p)
	return p
}
