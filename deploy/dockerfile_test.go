package deploy_test

import (
	"bufio"
	"bytes"
	"debug/buildinfo"
	"debug/elf"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// instruction is one Dockerfile instruction with its continuation lines joined.
type instruction struct {
	Cmd   string   // upper case: FROM, RUN, COPY…
	Flags []string // leading --name=value flags
	Args  string   // the rest
	Line  int
}

// stage is a FROM and the instructions that follow it.
type stage struct {
	Image, Name string
	From        instruction
	Body        []instruction
}

// parseDockerfile splits a Dockerfile into instructions: comments and blank lines dropped (also
// inside continued instructions, as Docker does), lines ending in a backslash joined.
func parseDockerfile(t *testing.T, src []byte) []instruction {
	t.Helper()
	var out []instruction
	var cur strings.Builder
	start := 0
	sc := bufio.NewScanner(bytes.NewReader(src))
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		trimmed := strings.TrimSpace(line)
		if trimmed == "" || strings.HasPrefix(trimmed, "#") {
			continue
		}
		if cur.Len() == 0 {
			start = n
		}
		if body, ok := strings.CutSuffix(strings.TrimRight(line, " \t"), `\`); ok {
			cur.WriteString(body + " ")
			continue
		}
		cur.WriteString(line)
		text := strings.TrimSpace(cur.String())
		cur.Reset()
		cmd, rest, _ := strings.Cut(text, " ")
		in := instruction{Cmd: strings.ToUpper(cmd), Line: start}
		rest = strings.TrimSpace(rest)
		for strings.HasPrefix(rest, "--") {
			flag, r, _ := strings.Cut(rest, " ")
			in.Flags = append(in.Flags, flag)
			rest = strings.TrimSpace(r)
		}
		in.Args = rest
		out = append(out, in)
	}
	require.NoError(t, sc.Err())
	require.Zero(t, cur.Len(), "Dockerfile ends inside a continued instruction")
	return out
}

func stages(t *testing.T, ins []instruction) []stage {
	t.Helper()
	var out []stage
	for _, in := range ins {
		switch {
		case in.Cmd == "FROM":
			f := strings.Fields(in.Args)
			s := stage{Image: f[0], From: in}
			if len(f) == 3 && strings.EqualFold(f[1], "AS") {
				s.Name = f[2]
			}
			out = append(out, s)
		case in.Cmd == "ARG" && len(out) == 0:
			// global ARG before the first FROM
		default:
			require.NotEmpty(t, out, "line %d: %s before FROM", in.Line, in.Cmd)
			out[len(out)-1].Body = append(out[len(out)-1].Body, in)
		}
	}
	return out
}

func find(body []instruction, cmd string) []instruction {
	var out []instruction
	for _, in := range body {
		if in.Cmd == cmd {
			out = append(out, in)
		}
	}
	return out
}

func jsonArray(t *testing.T, in instruction) []string {
	t.Helper()
	var v []string
	require.NoError(t, json.Unmarshal([]byte(in.Args), &v), "line %d: %s must use the JSON (exec) form, got %s", in.Line, in.Cmd, in.Args)
	return v
}

// makeLDFlags returns the Makefile's LDFLAGS, with $(VERSION) as ${VERSION}.
func makeLDFlags(t *testing.T) string {
	t.Helper()
	m := regexp.MustCompile(`(?m)^LDFLAGS\s*:=\s*(.+)$`).FindSubmatch(readFile(t, "Makefile"))
	require.NotNil(t, m, "LDFLAGS not found in the Makefile")
	return strings.ReplaceAll(strings.TrimSpace(string(m[1])), "$(VERSION)", "${VERSION}")
}

func TestDockerfile(t *testing.T) {
	t.Parallel()
	ins := parseDockerfile(t, readFile(t, "deploy", "Dockerfile"))
	st := stages(t, ins)
	require.GreaterOrEqual(t, len(st), 2, "multi-stage: a builder and a runtime stage")

	// Every base image is pinned by tag (or digest), never latest.
	for _, s := range st {
		img := s.Image
		if strings.HasPrefix(img, "$") {
			t.Fatalf("line %d: base image from a variable (%s) cannot be checked", s.From.Line, img)
		}
		_, tag, hasTag := strings.Cut(img[strings.LastIndex(img, "/")+1:], ":")
		require.True(t, hasTag || strings.Contains(img, "@sha256:"), "line %d: %s is not pinned", s.From.Line, img)
		require.NotEqual(t, "latest", tag, "line %d: %s", s.From.Line, img)
	}

	build, final := st[0], st[len(st)-1]
	require.True(t, strings.HasPrefix(build.Image, "golang:1.26"), "builder is golang:1.26, got %s", build.Image)
	require.NotEmpty(t, build.Name, "the builder stage is named")
	require.Contains(t, build.From.Flags, "--platform=$BUILDPLATFORM", "cross-compile instead of emulating")
	require.True(t, strings.HasPrefix(final.Image, "gcr.io/distroless/static") || final.Image == "scratch",
		"runtime is distroless static or scratch, got %s", final.Image)

	// No ADD at all (so no remote URLs or tarball surprises): COPY only.
	require.Empty(t, find(ins, "ADD"), "use COPY; ADD fetches URLs and unpacks archives")

	// The builder: module cache mounts and the Makefile's build flags.
	var goBuild instruction
	for _, in := range find(build.Body, "RUN") {
		require.Contains(t, strings.Join(in.Flags, " "), "--mount=type=cache,target=/go/pkg/mod",
			"line %d: every RUN in the builder reuses the module cache", in.Line)
		if strings.Contains(in.Args, "go build") {
			goBuild = in
		}
	}
	require.NotZero(t, goBuild.Line, "no go build in the builder stage")
	require.Contains(t, strings.Join(goBuild.Flags, " "), "--mount=type=cache,target=/root/.cache/go-build")
	for _, cmd := range strings.Split(goBuild.Args, "&&") {
		if !strings.Contains(cmd, "go build") {
			continue
		}
		require.Contains(t, cmd, "CGO_ENABLED=0", "static binaries only")
		require.Contains(t, cmd, "-trimpath")
	}
	ld := regexp.MustCompile(`-ldflags "([^"]*)"[^&]*\./cmd/intake`).FindStringSubmatch(goBuild.Args)
	require.NotNil(t, ld, "the intake build passes -ldflags")
	require.Equal(t, makeLDFlags(t), ld[1], "the image is built with the Makefile's LDFLAGS")
	require.Contains(t, ld[1], "-X github.com/intakehq/intake/internal/cli.Version=${VERSION}")
	require.Regexp(t, `(?m)^ARG VERSION`, string(readFile(t, "deploy", "Dockerfile")))

	// The runtime stage.
	copies := find(final.Body, "COPY")
	require.NotEmpty(t, copies)
	var shipped []string
	for _, c := range copies {
		require.Contains(t, c.Flags, "--from="+build.Name, "line %d: the runtime only takes build outputs", c.Line)
		f := strings.Fields(c.Args)
		require.Equal(t, "/usr/local/bin/", f[len(f)-1], "binaries go to a directory on distroless's PATH")
		for _, src := range f[:len(f)-1] {
			shipped = append(shipped, filepath.Base(src))
		}
	}
	require.Contains(t, shipped, "intake")

	users := find(final.Body, "USER")
	require.Len(t, users, 1)
	uid, _, _ := strings.Cut(users[0].Args, ":")
	n, err := strconv.Atoi(uid)
	require.NoError(t, err, "USER must be numeric so that Kubernetes' runAsNonRoot can verify it")
	require.NotZero(t, n, "USER must not be root")
	require.Equal(t, 65532, n, "the distroless nonroot user, which k8s/base runs as")

	env := map[string]string{}
	for _, e := range find(final.Body, "ENV") {
		k, v, ok := strings.Cut(e.Args, "=")
		require.True(t, ok, "line %d: ENV key=value", e.Line)
		env[k] = v
	}
	require.Equal(t, "0.0.0.0:8080", env["INTAKE_LISTEN_ADDR"], "the daemon defaults to 127.0.0.1, unreachable from outside a container")
	require.Empty(t, unknownEnv(keys(env)), "ENV names intake does not read")
	expose := find(final.Body, "EXPOSE")
	require.Len(t, expose, 1)
	require.Equal(t, "8080", expose[0].Args)

	labels := strings.Join(argsOf(find(final.Body, "LABEL")), " ")
	for _, l := range []string{"title", "description", "source", "version", "licenses"} {
		require.Contains(t, labels, "org.opencontainers.image."+l+"=")
	}

	ep, cmd := find(final.Body, "ENTRYPOINT"), find(final.Body, "CMD")
	require.Len(t, ep, 1)
	require.Len(t, cmd, 1)
	require.Equal(t, []string{"intake"}, jsonArray(t, ep[0]))
	require.Equal(t, []string{"run"}, jsonArray(t, cmd[0]))

	hc := find(final.Body, "HEALTHCHECK")
	require.Len(t, hc, 1)
	probe := jsonArray(t, instruction{Cmd: "HEALTHCHECK", Args: strings.TrimPrefix(hc[0].Args, "CMD "), Line: hc[0].Line})
	require.Contains(t, shipped, probe[0], "the healthcheck runs a binary the image contains")
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

func argsOf(ins []instruction) []string {
	out := make([]string, len(ins))
	for i, in := range ins {
		out[i] = in.Args
	}
	return out
}

func TestDockerignore(t *testing.T) {
	t.Parallel()
	var rules []string
	for line := range strings.SplitSeq(string(readFile(t, "deploy", "Dockerfile.dockerignore")), "\n") {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
			rules = append(rules, line)
		}
	}
	// Local state (binaries of MinIO and kumo, stack data) stays out of the build context…
	for _, out := range []string{"bin", ".stack", ".git"} {
		require.Contains(t, rules, out)
	}
	// …and nothing the build needs is excluded.
	for _, needed := range []string{"go.mod", "go.sum", "cmd", "internal", "pipeline", "worker", "deploy/healthcheck"} {
		for _, r := range rules {
			require.False(t, r == needed || strings.HasPrefix(needed, strings.TrimSuffix(r, "/")+"/"),
				"%s excludes %s, which the build needs", r, needed)
		}
	}
}

// TestBuildIsStatic runs `make build` (what the image contains) into a temporary directory and
// checks the binary: no ELF interpreter or dynamic section (static), built with CGO_ENABLED=0 and
// -trimpath (its build info), version stamped through -ldflags (`intake version`). The probe binary is built with the Dockerfile's
// flags and checked the same way.
func TestBuildIsStatic(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the whole binary")
	}
	t.Parallel()
	dir := t.TempDir()
	const version = "v0.0.0-deploytest"
	run(t, root(t), nil, "make", "--no-print-directory", "build", "BIN="+dir, "VERSION="+version)
	bin := filepath.Join(dir, "intake")
	requireStatic(t, bin)

	info, err := buildinfo.ReadFile(bin)
	require.NoError(t, err)
	settings := map[string]string{}
	for _, s := range info.Settings {
		settings[s.Key] = s.Value
	}
	require.Equal(t, "0", settings["CGO_ENABLED"])
	require.Equal(t, "true", settings["-trimpath"])
	// -trimpath keeps -ldflags out of the build info: the version stamp is checked by running it.
	require.Equal(t, "github.com/intakehq/intake", info.Main.Path)

	out := run(t, dir, nil, bin, "version")
	require.Equal(t, "intake "+version, strings.TrimSpace(out))

	probe := filepath.Join(dir, "intake-healthcheck")
	run(t, root(t), []string{"CGO_ENABLED=0"}, "go", "build", "-trimpath", "-ldflags", "-s -w", "-o", probe, "./deploy/healthcheck")
	requireStatic(t, probe)
}

func requireStatic(t *testing.T, bin string) {
	t.Helper()
	f, err := elf.Open(bin)
	require.NoError(t, err)
	defer f.Close()
	for _, p := range f.Progs {
		require.NotEqual(t, elf.PT_INTERP, p.Type, "%s has an ELF interpreter: it is dynamically linked", bin)
		require.NotEqual(t, elf.PT_DYNAMIC, p.Type, "%s has a dynamic segment", bin)
	}
	require.Nil(t, f.Section(".dynamic"), "%s has a .dynamic section", bin)
	libs, err := f.ImportedLibraries()
	require.NoError(t, err)
	require.Empty(t, libs)
	st, err := os.Stat(bin)
	require.NoError(t, err)
	require.NotZero(t, st.Mode()&0o111, "%s is not executable", bin)
}
