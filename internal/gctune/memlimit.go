package gctune

import (
	"bufio"
	"bytes"
	"io/fs"
	"math"
	"path"
	"runtime/debug"
	"strconv"
	"strings"
)

// MemoryFraction is the share of the container's memory limit the daemon gives the Go runtime as
// its soft limit (GOMEMLIMIT) when GOMEMLIMIT is not set. The runtime's limit covers only what Go
// manages; the rest of the process (the binary's mapped text, C allocations of the resolver, the
// kernel's page cache charged to the cgroup) and the collector's reaction time need headroom, or a
// burst reaches the cgroup's limit, and the kernel's OOM killer, before the collector catches up.
const MemoryFraction = 0.9

// MemoryLimit sets the runtime's soft memory limit to MemoryFraction of the memory limit of the
// cgroup the process runs in, unless getenv("GOMEMLIMIT") is set (the runtime has already applied
// it) or no cgroup limit is found (nothing is changed). root is the file system at "/" (os.DirFS("/")
// in the daemon). It returns the limit in effect in bytes (math.MaxInt64: none) and where it came
// from: "GOMEMLIMIT", "cgroup" or "none".
func MemoryLimit(getenv func(string) string, root fs.FS) (limit int64, from string) {
	if getenv("GOMEMLIMIT") != "" {
		return debug.SetMemoryLimit(-1), "GOMEMLIMIT"
	}
	cg, ok := cgroupLimit(root)
	if !ok {
		return debug.SetMemoryLimit(-1), "none"
	}
	limit = int64(float64(cg) * MemoryFraction)
	debug.SetMemoryLimit(limit)
	return limit, "cgroup"
}

// cgroupLimit returns the smallest memory limit among the process's cgroup and its ancestors
// (cgroup v2's memory.max, or v1's memory.limit_in_bytes), false if none is set. In a container
// with its own cgroup namespace the process's cgroup is "/", which the walk reads too.
func cgroupLimit(root fs.FS) (int64, bool) {
	data, err := fs.ReadFile(root, "proc/self/cgroup")
	if err != nil {
		return 0, false
	}
	var v2, v1 string
	haveV2, haveV1 := false, false
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		// hierarchy-ID:controller-list:cgroup-path
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) != 3 {
			continue
		}
		switch {
		case parts[0] == "0" && parts[1] == "":
			v2, haveV2 = parts[2], true
		case hasController(parts[1], "memory"):
			v1, haveV1 = parts[2], true
		}
	}
	switch {
	case haveV1:
		return walkLimit(root, "sys/fs/cgroup/memory", v1, "memory.limit_in_bytes")
	case haveV2:
		return walkLimit(root, "sys/fs/cgroup", v2, "memory.max")
	}
	return 0, false
}

func hasController(list, name string) bool {
	for _, c := range strings.Split(list, ",") {
		if c == name {
			return true
		}
	}
	return false
}

// walkLimit reads file in the cgroup at dir/cg and in each of its ancestors up to dir and returns
// the smallest limit found. "max" (v2) and v1's page-rounded MaxInt64 mean no limit.
func walkLimit(root fs.FS, dir, cg, file string) (int64, bool) {
	best, found := int64(math.MaxInt64), false
	cg = path.Clean("/" + cg)
	for {
		p := path.Join(dir, cg, file)
		if data, err := fs.ReadFile(root, p); err == nil {
			s := strings.TrimSpace(string(data))
			if n, err := strconv.ParseInt(s, 10, 64); err == nil && n > 0 && n < 1<<62 && n < best {
				best, found = n, true
			}
		}
		if cg == "/" {
			return best, found
		}
		cg = path.Dir(cg)
	}
}
