package gctune

import (
	"runtime/debug"
	"testing"
)

// TestApply: without GOGC the daemon's percent is set; with GOGC the runtime's is left alone and
// reported.
func TestApply(t *testing.T) {
	before := debug.SetGCPercent(100)
	t.Cleanup(func() { debug.SetGCPercent(before) })

	env := map[string]string{}
	getenv := func(k string) string { return env[k] }

	p, fromEnv := Apply(getenv)
	if p != DefaultPercent || fromEnv {
		t.Fatalf("no GOGC: got %d, fromEnv %v; want %d, false", p, fromEnv, DefaultPercent)
	}
	if got := current(); got != DefaultPercent {
		t.Fatalf("no GOGC: the runtime runs at %d, want %d", got, DefaultPercent)
	}

	for _, c := range []struct {
		gogc string
		want int
	}{{"50", 50}, {"off", -1}, {"nonsense", 77}} {
		debug.SetGCPercent(77) // what the runtime made of GOGC
		env["GOGC"] = c.gogc
		p, fromEnv := Apply(getenv)
		if p != c.want || !fromEnv {
			t.Errorf("GOGC=%s: got %d, fromEnv %v; want %d, true", c.gogc, p, fromEnv, c.want)
		}
		if got := current(); got != 77 {
			t.Errorf("GOGC=%s: Apply changed the runtime's percent to %d", c.gogc, got)
		}
	}
}
