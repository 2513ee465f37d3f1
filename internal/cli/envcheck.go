package cli

import (
	"slices"
	"strings"

	"github.com/alecthomas/kong"
)

// toolEnv are INTAKE_ variables that intake's own tooling sets (the local stack, its init
// container, the fault and benchmark suites), not settings of the binary: they are not reported.
var toolEnv = []string{"INTAKE_LOCAL_", "INTAKE_INIT_", "INTAKE_FAULTS", "INTAKE_BENCH_"}

// unknownEnv returns the variables of environ (KEY=value) named INTAKE_… that no flag of the
// grammar reads and that are not alsoKnown (the policy file's webhook secret_env names), sorted, each with the known name closest to it when one is a likely misspelling
// (at most 3 edits). A misspelled setting would otherwise be ignored without a word, and the
// daemon would run with its default: a policy file never loaded, a limit never set.
func unknownEnv(model *kong.Node, environ []string, alsoKnown ...string) (names, closest []string) {
	known := envNames(model)
	for _, name := range alsoKnown {
		known[name] = true
	}
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(name, "INTAKE_") || known[name] || slices.ContainsFunc(toolEnv, func(p string) bool {
			return strings.HasPrefix(name, p)
		}) {
			continue
		}
		names = append(names, name)
	}
	slices.Sort(names)
	names = slices.Compact(names)
	for _, name := range names {
		best, dist := "", 4
		for k := range known {
			if d := editDistance(name, k); d < dist || d == dist && k < best {
				best, dist = k, d
			}
		}
		closest = append(closest, best)
	}
	return names, closest
}

// envNames is the set of environment variables the flags of model (and its subcommands') read.
func envNames(model *kong.Node) map[string]bool {
	names := map[string]bool{}
	var walk func(*kong.Node)
	walk = func(n *kong.Node) {
		for _, f := range n.Flags {
			for _, e := range f.Envs {
				names[e] = true
			}
		}
		for _, c := range n.Children {
			walk(c)
		}
	}
	walk(model)
	return names
}

// editDistance is the Levenshtein distance between a and b (bytes).
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
