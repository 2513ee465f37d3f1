package gctune

import (
	"math"
	"runtime/debug"
	"testing"
	"testing/fstest"
)

// TestCgroupLimit: the smallest limit on the way from the process's cgroup to the root, for
// cgroup v2 and v1, "max" and v1's unlimited value ignored.
func TestCgroupLimit(t *testing.T) {
	file := func(s string) *fstest.MapFile { return &fstest.MapFile{Data: []byte(s)} }
	for _, c := range []struct {
		name  string
		fs    fstest.MapFS
		want  int64
		found bool
	}{
		{"v2 namespaced", fstest.MapFS{
			"proc/self/cgroup":         file("0::/\n"),
			"sys/fs/cgroup/memory.max": file("536870912\n"),
		}, 536870912, true},
		{"v2 unlimited", fstest.MapFS{
			"proc/self/cgroup":         file("0::/\n"),
			"sys/fs/cgroup/memory.max": file("max\n"),
		}, 0, false},
		{"v2 nested, the parent smaller", fstest.MapFS{
			"proc/self/cgroup":                          file("0::/kubepods/pod1/c1\n"),
			"sys/fs/cgroup/kubepods/pod1/c1/memory.max": file("1073741824\n"),
			"sys/fs/cgroup/kubepods/pod1/memory.max":    file("268435456\n"),
			"sys/fs/cgroup/kubepods/memory.max":         file("max\n"),
		}, 268435456, true},
		{"v1", fstest.MapFS{
			"proc/self/cgroup": file("12:pids:/x\n4:memory:/process_api/abc\n1:cpu:/\n0::/\n"),
			"sys/fs/cgroup/memory/process_api/abc/memory.limit_in_bytes": file("2147483648\n"),
			"sys/fs/cgroup/memory/memory.limit_in_bytes":                 file("9223372036854771712\n"),
		}, 2147483648, true},
		{"v1 unlimited", fstest.MapFS{
			"proc/self/cgroup":                           file("4:cpuacct,memory:/\n"),
			"sys/fs/cgroup/memory/memory.limit_in_bytes": file("9223372036854771712\n"),
		}, 0, false},
		{"no cgroup file", fstest.MapFS{}, 0, false},
		{"garbage", fstest.MapFS{
			"proc/self/cgroup":         file("0::/\n"),
			"sys/fs/cgroup/memory.max": file("lots\n"),
		}, 0, false},
	} {
		got, found := cgroupLimit(c.fs)
		if found != c.found || (found && got != c.want) {
			t.Errorf("%s: got %d, %v; want %d, %v", c.name, got, found, c.want, c.found)
		}
	}
}

// TestMemoryLimit: 90% of the cgroup's limit without GOMEMLIMIT; GOMEMLIMIT's value left alone.
func TestMemoryLimit(t *testing.T) {
	before := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(before) })
	fs := fstest.MapFS{
		"proc/self/cgroup":         {Data: []byte("0::/\n")},
		"sys/fs/cgroup/memory.max": {Data: []byte("1000000000\n")},
	}
	env := map[string]string{}
	getenv := func(k string) string { return env[k] }

	debug.SetMemoryLimit(math.MaxInt64)
	limit, from := MemoryLimit(getenv, fs)
	if limit != 900000000 || from != "cgroup" || debug.SetMemoryLimit(-1) != 900000000 {
		t.Fatalf("cgroup: got %d from %s, runtime %d; want 900000000 from cgroup", limit, from, debug.SetMemoryLimit(-1))
	}

	debug.SetMemoryLimit(math.MaxInt64)
	limit, from = MemoryLimit(getenv, fstest.MapFS{})
	if limit != math.MaxInt64 || from != "none" {
		t.Fatalf("no cgroup: got %d from %s", limit, from)
	}

	env["GOMEMLIMIT"] = "300MiB"
	debug.SetMemoryLimit(300 << 20) // what the runtime made of it
	limit, from = MemoryLimit(getenv, fs)
	if limit != 300<<20 || from != "GOMEMLIMIT" || debug.SetMemoryLimit(-1) != 300<<20 {
		t.Fatalf("GOMEMLIMIT: got %d from %s; want %d from GOMEMLIMIT, unchanged", limit, from, 300<<20)
	}
}
