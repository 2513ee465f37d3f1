package cli

import (
	"os"
	"strings"
	"testing"

	"github.com/alecthomas/kong"
	"github.com/stretchr/testify/require"
)

// TestREADMEDocumentsEveryVariable: every environment variable the command line reads (the daemon's
// configuration and every subcommand's) appears in the README, so that a new setting cannot ship
// undocumented.
func TestREADMEDocumentsEveryVariable(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	require.NoError(t, err)
	var c CLI
	parser, err := kong.New(&c, kong.Name("intake"))
	require.NoError(t, err)
	seen := envNames(parser.Model.Node)
	require.Contains(t, seen, "DATABASE_URL", "the walk found the configuration")
	var missing []string
	for env := range seen {
		if !strings.Contains(string(readme), "`"+env+"`") {
			missing = append(missing, env)
		}
	}
	require.Empty(t, missing, "environment variables not documented in README.md (as `NAME`)")
}
