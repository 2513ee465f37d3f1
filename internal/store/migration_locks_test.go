package store_test

import (
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/intakehq/intake/internal/store"
)

// TestMigrationsHoldNoLockWhileScanning: a migration must not scan, rewrite or index a table that
// already has rows while it holds the table's lock, nor change its rows in the migration's
// transaction (see lockHazards). The four migrations written before the rule are listed
// (README, Operations) with what they do, and never changed; every other one, those to come
// included, must follow it, or be listed with the reason it is safe.
func TestMigrationsHoldNoLockWhileScanning(t *testing.T) {
	// Each listed migration with the hazards it is known to have, and why it has them. The four
	// below were written before the rule and applied by every install since: a migration is never
	// changed once released, so they stay as they are (an install that applies them now is a new
	// one, whose tables are empty).
	allowed := map[string][]string{
		// Validated two CHECKs by a scan of objects under ACCESS EXCLUSIVE.
		"0002_objects_checks.sql": {
			"0002_objects_checks.sql: CHECK without NOT VALID scans objects",
			"0002_objects_checks.sql: CHECK without NOT VALID scans objects",
		},
		// Built an index of uploads in the migration's transaction (SHARE: no writes meanwhile).
		"0004_jobs.sql": {"0004_jobs.sql: index built in a transaction on uploads"},
		// Built an index of objects in the migration's transaction.
		"0005_ops.sql": {"0005_ops.sql: index built in a transaction on objects"},
		// Added a column with a CHECK: the CHECK scanned uploads under ACCESS EXCLUSIVE.
		"0009_outbox.sql": {"0009_outbox.sql: a new column's CHECK scans uploads"},
	}
	ms, err := store.Migrations()
	require.NoError(t, err)
	var found []string
	for _, m := range ms {
		bad := lockHazards(m)
		if want, ok := allowed[m.Name]; ok {
			require.NotEmpty(t, bad, "%s is listed as breaking the rule but follows it: drop it from the list", m.Name)
			require.Equal(t, want, bad, "%s: the list says what it does", m.Name)
			continue
		}
		found = append(found, bad...)
	}
	require.Empty(t, found)
}

// hazardName is a relation's name in a statement, maybe schema-qualified, maybe quoted: the
// submatch is the name without its schema.
const hazardName = `(?:(?:"[^"]+"|\w+)\.)?("[^"]+"|\w+)`

// hazardRE are the statements and ALTER TABLE actions lockHazards looks at.
var hazardRE = struct {
	createdTable, createIndex, indexStmt, alterTable, updateTable, deleteFrom       *regexp.Regexp
	addConstraint, addColumn, notValid, usingIndex, columnType, setNotNull, rewrite *regexp.Regexp
	check, references, index, rewritingColumn, defaultExpr, defaultEnd              *regexp.Regexp
	stringLiteral, functionCall, lineComment, concurrently                          *regexp.Regexp
}{
	createdTable: regexp.MustCompile(`(?is)^create\s+(?:(?:global\s+|local\s+)?(?:temp|temporary|unlogged)\s+)?table\s+(?:if\s+not\s+exists\s+)?` + hazardName),
	createIndex:  regexp.MustCompile(`(?is)^create\s+(?:unique\s+)?index\s+(?:concurrently\s+)?(?:(?:if\s+not\s+exists\s+)?(?:"[^"]+"|\w+)\s+)?on\s+(?:only\s+)?` + hazardName),
	indexStmt:    regexp.MustCompile(`(?is)^(?:create\s+(?:unique\s+)?index|drop\s+index|reindex)\b`),
	alterTable:   regexp.MustCompile(`(?is)^alter\s+table\s+(?:if\s+exists\s+)?(?:only\s+)?` + hazardName + `\s*\*?\s+(.*)$`),
	updateTable:  regexp.MustCompile(`(?is)^update\s+(?:only\s+)?` + hazardName),
	deleteFrom:   regexp.MustCompile(`(?is)^delete\s+from\s+(?:only\s+)?` + hazardName),

	// An ADD of a table constraint (any other ADD is a column's).
	addConstraint: regexp.MustCompile(`(?is)^add\s+(?:constraint\s+(?:"[^"]+"|\w+)\s+)?(check|foreign\s+key|unique|primary\s+key|exclude)\b`),
	addColumn:     regexp.MustCompile(`(?is)^add\b`),
	notValid:      regexp.MustCompile(`(?is)\bnot\s+valid\s*$`),
	usingIndex:    regexp.MustCompile(`(?is)\busing\s+index\b`),
	columnType:    regexp.MustCompile(`(?is)^alter\s+(?:column\s+)?(?:"[^"]+"|\w+)\s+(?:set\s+data\s+)?type\b`),
	setNotNull:    regexp.MustCompile(`(?is)^alter\s+(?:column\s+)?(?:"[^"]+"|\w+)\s+set\s+not\s+null\b`),
	rewrite:       regexp.MustCompile(`(?is)^set\s+(?:logged|unlogged|tablespace)\b`),

	// Parts of a new column's definition.
	check:           regexp.MustCompile(`(?is)\bcheck\b`),
	references:      regexp.MustCompile(`(?is)\breferences\b`),
	index:           regexp.MustCompile(`(?is)\b(?:unique|primary\s+key)\b`),
	rewritingColumn: regexp.MustCompile(`(?is)\b(?:small|big)?serial\b|\bgenerated\b.*\bidentity\b|\bgenerated\s+always\s+as\s*\(.*\)\s*stored\b`),
	defaultExpr:     regexp.MustCompile(`(?is)\bdefault\s+(.*)$`),
	defaultEnd:      regexp.MustCompile(`(?is)\s(?:not\s+null|null|check|references|unique|primary\s+key|constraint|collate|generated)\b`),

	stringLiteral: regexp.MustCompile(`'(?:[^']|'')*'`),
	functionCall:  regexp.MustCompile(`(?i)([a-z_][a-z0-9_.]*)\s*\(`),
	lineComment:   regexp.MustCompile(`(?m)--.*$`),
	concurrently:  regexp.MustCompile(`(?i)\bconcurrently\b`),
}

// hazardStableDefaults are the functions (and types with a modifier) a new column's DEFAULT may call
// without rewriting the table: not VOLATILE (pg_proc.provolatile), so PostgreSQL evaluates the
// default once and stores it in the catalog. A function missing here is taken for volatile: add it
// only after checking its volatility.
var hazardStableDefaults = map[string]bool{
	"now": true, "transaction_timestamp": true, "statement_timestamp": true, "current_timestamp": true,
	"localtimestamp": true, "numeric": true, "decimal": true, "varchar": true, "char": true,
	"character": true, "bit": true, "timestamp": true, "timestamptz": true, "time": true, "interval": true,
}

// lockHazards returns what m does that holds a table's lock, and so its reads and writes, for as
// long as the table is large, each as "<file>: <what> <table>". A table the migration creates
// itself is empty and exempt. In a transaction:
//
//   - an index built on the table (build it CONCURRENTLY, in a no-transaction migration);
//   - a CHECK or FOREIGN KEY constraint added without NOT VALID (it scans the table; VALIDATE
//     CONSTRAINT later, under a lock that blocks no writes), a UNIQUE or PRIMARY KEY constraint
//     without USING INDEX (it builds its index), an EXCLUDE constraint;
//   - a new column with a CHECK, REFERENCES, UNIQUE or PRIMARY KEY (a scan or an index build), or
//     one that rewrites the table: a volatile DEFAULT (gen_random_uuid(), random(), clock_timestamp(),
//     nextval(): a constant or now() is stored in the catalog instead), serial, an identity, a
//     STORED generated column;
//   - ALTER COLUMN … TYPE (a rewrite, or a scan), ALTER COLUMN … SET NOT NULL (a scan, unless a
//     validated CHECK (c IS NOT NULL) proves it: list such a migration in the test, with that
//     reason), SET LOGGED,
//     UNLOGGED or TABLESPACE (a rewrite);
//   - an UPDATE or DELETE of the table: it holds the rows it changes, and its lock, until the whole
//     migration commits (backfill in batches, outside migrations).
//
// Outside a transaction: any CREATE INDEX, DROP INDEX or REINDEX without CONCURRENTLY.
func lockHazards(m store.Migration) []string {
	var bad []string
	flag := func(what, table string) { bad = append(bad, m.Name+": "+what+" "+table) }
	fresh := map[string]bool{}
	for _, stmt := range store.SplitStatements(m.SQL) {
		stmt = strings.TrimSpace(hazardRE.lineComment.ReplaceAllString(stmt, ""))
		if m.NoTransaction {
			if hazardRE.indexStmt.MatchString(stmt) && !hazardRE.concurrently.MatchString(stmt) {
				flag("index statement without CONCURRENTLY locks", hazardIndexTable(stmt))
			}
			continue
		}
		if c := hazardRE.createdTable.FindStringSubmatch(stmt); c != nil {
			fresh[hazardRelation(c[1])] = true
			continue
		}
		if c := hazardRE.createIndex.FindStringSubmatch(stmt); c != nil && !fresh[hazardRelation(c[1])] {
			flag("index built in a transaction on", hazardRelation(c[1]))
		}
		for _, re := range []*regexp.Regexp{hazardRE.updateTable, hazardRE.deleteFrom} {
			if c := re.FindStringSubmatch(stmt); c != nil && !fresh[hazardRelation(c[1])] {
				flag(strings.ToUpper(strings.Fields(stmt)[0])+" in the migration's transaction locks the rows it changes in", hazardRelation(c[1]))
			}
		}
		c := hazardRE.alterTable.FindStringSubmatch(stmt)
		if c == nil || fresh[hazardRelation(c[1])] {
			continue
		}
		table := hazardRelation(c[1])
		for _, action := range hazardSplitActions(c[2]) {
			switch kind := hazardRE.addConstraint.FindStringSubmatch(action); {
			case kind != nil:
				switch k := strings.Join(strings.Fields(strings.ToLower(kind[1])), " "); {
				case k == "check" && !hazardRE.notValid.MatchString(action):
					flag("CHECK without NOT VALID scans", table)
				case k == "foreign key" && !hazardRE.notValid.MatchString(action):
					flag("FOREIGN KEY without NOT VALID scans", table)
				case (k == "unique" || k == "primary key") && !hazardRE.usingIndex.MatchString(action):
					flag(strings.ToUpper(k)+" without USING INDEX builds an index of", table)
				case k == "exclude":
					flag("EXCLUDE constraint builds an index of", table)
				}
			case hazardRE.addColumn.MatchString(action):
				hazardColumn(action, table, flag)
			case hazardRE.columnType.MatchString(action):
				flag("ALTER COLUMN … TYPE rewrites", table)
			case hazardRE.setNotNull.MatchString(action):
				flag("SET NOT NULL scans", table)
			case hazardRE.rewrite.MatchString(action):
				flag("SET LOGGED, UNLOGGED or TABLESPACE rewrites", table)
			}
		}
	}
	return bad
}

// hazardColumn flags what an ALTER TABLE's ADD [COLUMN] action does to table.
func hazardColumn(action, table string, flag func(what, table string)) {
	action = hazardRE.stringLiteral.ReplaceAllString(action, "''") // 'unique', 'f(x)' are constants
	if d := hazardRE.defaultExpr.FindStringSubmatchIndex(action); d != nil {
		def := action[d[2]:]
		if end := hazardRE.defaultEnd.FindStringIndex(def); end != nil {
			def = def[:end[0]]
		}
		// What follows DEFAULT is the column's other constraints.
		action = action[:d[0]] + " " + strings.TrimPrefix(action[d[2]:], def)
		volatile := false
		for _, f := range hazardRE.functionCall.FindAllStringSubmatch(def, -1) {
			if !hazardStableDefaults[strings.ToLower(f[1])] {
				volatile = true
			}
		}
		if volatile {
			flag("a new column's volatile DEFAULT rewrites", table)
		}
	}
	if hazardRE.check.MatchString(action) {
		flag("a new column's CHECK scans", table)
	}
	if hazardRE.references.MatchString(action) {
		flag("a new column's REFERENCES scans", table)
	}
	if hazardRE.index.MatchString(action) {
		flag("a new column's UNIQUE or PRIMARY KEY builds an index of", table)
	}
	if hazardRE.rewritingColumn.MatchString(action) {
		flag("a new serial, identity or stored generated column rewrites", table)
	}
}

// hazardRelation is a relation's name as hazardName matched it, unquoted, lower-cased unless it was
// quoted.
func hazardRelation(s string) string {
	if strings.HasPrefix(s, `"`) {
		return strings.Trim(s, `"`)
	}
	return strings.ToLower(s)
}

// hazardIndexTable is the table an index statement names, or the statement's start when it names none
// (DROP INDEX names the index).
func hazardIndexTable(stmt string) string {
	if c := hazardRE.createIndex.FindStringSubmatch(stmt); c != nil {
		return hazardRelation(c[1])
	}
	return "its table: " + strings.Join(strings.Fields(stmt), " ")
}

// hazardSplitActions splits an ALTER TABLE's actions at the commas outside parentheses and quotes.
func hazardSplitActions(s string) []string {
	var out []string
	depth, start := 0, 0
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '(':
			depth++
		case ')':
			depth--
		case '\'', '"':
			for i++; i < len(s) && s[i] != c; i++ {
			}
		case ',':
			if depth == 0 {
				out = append(out, strings.TrimSpace(s[start:i]))
				start = i + 1
			}
		}
	}
	return append(out, strings.TrimSpace(s[start:]))
}
