package store_test

import (
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/intakehq/intake/internal/store"
)

// TestMigrationsHoldNoLockWhileScanning: a transactional migration must not scan or index a
// table that already has rows while it holds the table's lock. A CHECK added to an existing table
// says NOT VALID (no scan), and an index on one is built CONCURRENTLY in a no-transaction
// migration; a table or column the migration creates itself is empty and exempt. The four
// migrations written before the rule are listed (README, Operations) and never changed.
func TestMigrationsHoldNoLockWhileScanning(t *testing.T) {
	predating := map[string]bool{
		"0002_objects_checks.sql": true, "0004_jobs.sql": true, "0005_ops.sql": true, "0009_outbox.sql": true,
	}
	ms, err := store.Migrations()
	require.NoError(t, err)
	created := regexp.MustCompile(`(?is)^create\s+table\s+(?:if\s+not\s+exists\s+)?(\w+)`)
	index := regexp.MustCompile(`(?is)^create\s+(?:unique\s+)?index\s+(?:if\s+not\s+exists\s+)?\w+\s+on\s+(\w+)`)
	check := regexp.MustCompile(`(?is)^alter\s+table\s+(\w+)\s+add\s+constraint\s+\w+\s+check\b`)
	inlineCheck := regexp.MustCompile(`(?is)^alter\s+table\s+(\w+)\s+add\s+column\s.*\bcheck\b`)
	comment := regexp.MustCompile(`(?m)--.*$`)
	var found []string
	for _, m := range ms {
		if m.NoTransaction {
			continue
		}
		fresh := map[string]bool{}
		var bad []string
		for _, stmt := range strings.Split(comment.ReplaceAllString(m.SQL, ""), ";") {
			stmt = strings.TrimSpace(stmt)
			if c := created.FindStringSubmatch(stmt); c != nil {
				fresh[strings.ToLower(c[1])] = true
				continue
			}
			if c := index.FindStringSubmatch(stmt); c != nil && !fresh[strings.ToLower(c[1])] {
				bad = append(bad, m.Name+": index built in a transaction on "+c[1])
			}
			if c := check.FindStringSubmatch(stmt); c != nil && !fresh[strings.ToLower(c[1])] &&
				!regexp.MustCompile(`(?i)\bnot\s+valid\s*$`).MatchString(stmt) {
				bad = append(bad, m.Name+": CHECK without NOT VALID on "+c[1])
			}
			if c := inlineCheck.FindStringSubmatch(stmt); c != nil && !fresh[strings.ToLower(c[1])] {
				bad = append(bad, m.Name+": a new column's CHECK scans "+c[1])
			}
		}
		if predating[m.Name] {
			require.NotEmpty(t, bad, "%s is listed as predating the rule but follows it: drop it from the list", m.Name)
			continue
		}
		found = append(found, bad...)
	}
	require.Empty(t, found)
}
