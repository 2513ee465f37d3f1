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

	// The runtime parsed GOGC at start, its own way ("+50" is not 50 to it; a negative value is
	// off): Apply reports what the runtime runs at, whatever the variable says.
	for _, c := range []struct {
		gogc    string
		runtime int
	}{{"50", 50}, {"off", -1}, {"nonsense", 100}, {"+50", 100}, {"-5", -1}} {
		debug.SetGCPercent(c.runtime) // what the runtime made of GOGC
		env["GOGC"] = c.gogc
		p, fromEnv := Apply(getenv)
		if p != c.runtime || !fromEnv {
			t.Errorf("GOGC=%s: got %d, fromEnv %v; want %d, true", c.gogc, p, fromEnv, c.runtime)
		}
		if got := current(); got != c.runtime {
			t.Errorf("GOGC=%s: Apply changed the runtime's percent to %d", c.gogc, got)
		}
	}
}
