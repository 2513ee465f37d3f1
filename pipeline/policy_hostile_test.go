package pipeline

import (
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// catchAll is a policy file's first lines with the catch-all rule every policy needs.
const catchAll = "rules:\n  - prefix: \"\"\n    max_size: 1000\n"

// TestPolicyNeedsCatchAll: a policy whose rules have no prefix "" rule would let every key no rule
// covers be recorded valid with no size, type or sniff check (judge's !hasRule): a file holding only
// webhooks, an empty rules list, rules for some prefixes only, or a '-' with nothing after it (a
// null entry, which decodes as a rule of prefix "" checking nothing) are refused, the error showing
// the built-in default's rule to add. That line, pasted into a file, is the default rule.
func TestPolicyNeedsCatchAll(t *testing.T) {
	t.Parallel()
	for name, doc := range map[string]string{
		"webhooks only":       "webhooks: [{name: a, url: 'https://x.example/h', secret_env: S}]",
		"rules empty":         "rules:\n",
		"rules an empty list": "rules: []\n",
		"some prefixes only":  "rules:\n  - prefix: avatars/\n    max_size: 100\n",
		"a comment only":      "# rules: to come\n{}\n",
	} {
		t.Run(name, func(t *testing.T) {
			_, err := ParsePolicy([]byte(doc))
			require.Error(t, err)
			require.ErrorContains(t, err, `no rule has the prefix "": keys under no rule would be accepted unchecked`)
			require.ErrorContains(t, err, `- {prefix: "", max_size: 5368709120, require_sniff_match: true, action: tag, quarantine_prefix: quarantine/}`)
		})
	}
	for name, doc := range map[string]string{
		"one null entry":           "rules:\n  - \n",
		"a null entry and a rule":  "rules:\n  -\n  - prefix: avatars/\n    max_size: 100\n",
		"a null beside a catchall": catchAll + "  - ~\n",
		"a null by alias":          "rules:\n  - &x\n  - *x\n",
	} {
		t.Run(name, func(t *testing.T) {
			_, err := ParsePolicy([]byte(doc))
			require.Error(t, err)
			require.ErrorContains(t, err, "is empty (a '-' with nothing after it)")
		})
	}

	// The suggested line is valid YAML for the default rule.
	_, err := ParsePolicy([]byte("rules: []"))
	msg := err.Error()
	line := msg[strings.Index(msg, `- {prefix: ""`):]
	line = line[:strings.Index(line, "}")+1]
	p, err := ParsePolicy([]byte("rules:\n  " + line + "\n"))
	require.NoError(t, err)
	require.Equal(t, DefaultPolicy().Rules, p.Rules)

	// Built in Go, the same is refused (NewProcessor validates its policy).
	_, err = NewProcessor(ProcessorConfig{Policy: &Policy{Rules: []Rule{{Prefix: "avatars/", MaxSize: 100}}}})
	require.ErrorContains(t, err, `no rule has the prefix ""`)
}

// TestPolicySniffUnsetWarns: require_sniff_match left out of a rule is false (the built-in default
// has it true, and a file keeps false for compatibility); a rule with allowed_types that leaves it
// out checks the declared type only, and Warnings says so. Written true or false, it says nothing.
func TestPolicySniffUnsetWarns(t *testing.T) {
	t.Parallel()
	require.Empty(t, DefaultPolicy().Warnings())
	p, err := ParsePolicy([]byte(catchAll + `
  - prefix: avatars/
    allowed_types: ["image/*"]
  - prefix: docs/
    allowed_types: ["application/pdf"]
    require_sniff_match: false
  - prefix: photos/
    allowed_types: ["image/*"]
    require_sniff_match: true
  - prefix: merged/
    <<: {require_sniff_match: false}
    allowed_types: ["image/*"]
  - prefix: any/
    max_size: 10
  - prefix: yaml11/
    allowed_types: ["image/*"]
    require_sniff_match: no
`))
	require.NoError(t, err)
	r, _ := p.For("avatars/u1/a.png")
	require.False(t, r.RequireSniffMatch, "the default in a file is unchanged")
	require.Equal(t, []string{
		`rule "avatars/" checks the declared type only: a file declared image/png that is HTML passes; set require_sniff_match: true (or false to silence)`,
	}, p.Warnings())
}

// TestPolicyMaxSizeMustBeInteger: a max_size written as a fraction or with an exponent would be
// truncated (0.5 to 0: no limit at all); it is refused. Integers in any YAML notation (hex,
// underscores) still read as before.
func TestPolicyMaxSizeMustBeInteger(t *testing.T) {
	t.Parallel()
	for _, v := range []string{"0.5", "1.5e9", "1e3", "100.0", "~", "''", ".inf"} {
		t.Run(v, func(t *testing.T) {
			_, err := ParsePolicy([]byte(catchAll + "  - prefix: avatars/\n    max_size: " + v + "\n"))
			require.Error(t, err)
		})
	}
	for _, v := range []string{"0.5", "1.5e9"} {
		_, err := ParsePolicy([]byte(catchAll + "  - prefix: avatars/\n    max_size: " + v + "\n"))
		require.ErrorContains(t, err, `rule 1 ("avatars/"): max_size "`+v+`" (line 5) is not a whole number of bytes`)
	}
	// Merged from another mapping, the value is checked too.
	_, err := ParsePolicy([]byte(catchAll + "  - prefix: avatars/\n    <<: {max_size: 0.5}\n"))
	require.ErrorContains(t, err, "is not a whole number of bytes")

	// A leading zero reads as octal (010 is 8 bytes, 0100 MiB-looking values far smaller): refused.
	for _, v := range []string{"010", "0100000000", "-010", "00"} {
		_, err := ParsePolicy([]byte(catchAll + "  - prefix: avatars/\n    max_size: " + v + "\n"))
		require.ErrorContains(t, err, "which YAML reads as octal", v)
	}
	for v, want := range map[string]int64{"104857600": 104857600, "0x10": 16, "1_000_000": 1_000_000, "0": 0, "0o10": 8} {
		p, err := ParsePolicy([]byte(catchAll + "  - prefix: avatars/\n    max_size: " + v + "\n"))
		require.NoError(t, err, v)
		r, _ := p.For("avatars/a.png")
		require.Equal(t, want, r.MaxSize, v)
	}
}

// TestPolicySecondDocumentRefused: the decoder reads the first YAML document only, so a second one
// (after a '---' line) would be ignored; it is refused. A '---' opening the only document is fine.
func TestPolicySecondDocumentRefused(t *testing.T) {
	t.Parallel()
	_, err := ParsePolicy([]byte(catchAll + "---\nrules:\n  - prefix: \"\"\n    max_size: 1\n"))
	require.ErrorContains(t, err, "more than one YAML document")
	_, err = ParsePolicy([]byte(catchAll + "---\n# the end\n---\nwebhooks: []\n"))
	require.ErrorContains(t, err, "more than one YAML document")
	_, err = ParsePolicy([]byte("---\n" + catchAll))
	require.NoError(t, err)
	// An empty document after the first loses nothing: a trailing '---', comments after it.
	_, err = ParsePolicy([]byte(catchAll + "---\n"))
	require.NoError(t, err)
	_, err = ParsePolicy([]byte(catchAll + "---\n# nothing more\n"))
	require.NoError(t, err)
}

// TestPolicyPrefixWithoutSlashWarns: a rule's prefix is a string prefix, so "uploads/acme" also
// covers "uploads/acme-evil/…"; Warnings names such a rule (it may be meant).
func TestPolicyPrefixWithoutSlashWarns(t *testing.T) {
	t.Parallel()
	p, err := ParsePolicy([]byte(catchAll + `
  - prefix: uploads/acme
    max_size: 10
    require_sniff_match: true
  - prefix: uploads/globex/
    max_size: 10
webhooks:
  - name: acme
    prefix: uploads/acme
    url: https://hooks.example/acme
    secret_env: ACME_SECRET
  - name: globex
    prefix: uploads/globex/
    url: https://hooks.example/globex
    secret_env: GLOBEX_SECRET
`))
	require.NoError(t, err)
	r, _ := p.For("uploads/acme-evil/a.png")
	require.Equal(t, "uploads/acme", r.Prefix, "why it warns")
	require.Equal(t, []string{
		`rule "uploads/acme": a prefix not ending in '/' also covers the keys of sibling names ("uploads/acme-other/a.png" too); end it with '/' ("uploads/acme/") unless that is meant`,
		`webhook "acme": a prefix not ending in '/' also sends it the notifications of sibling names ("uploads/acme-other/a.png" too); end it with '/' ("uploads/acme/") unless that is meant`,
	}, p.Warnings())
}

// TestQuarantinePrefixCoveringARule: every key under any rule's quarantine prefix (the default
// "quarantine/" of a rule that does not quarantine included) is taken for an object already
// quarantined: recorded rejected, never checked. A quarantine prefix that is a prefix of another
// rule's prefix, or equal to it, is refused; one under the catch-all's "" is the usual layout.
func TestQuarantinePrefixCoveringARule(t *testing.T) {
	t.Parallel()
	for name, rules := range map[string]string{
		"covers another rule": `
  - prefix: ""
    action: quarantine
    quarantine_prefix: uploads/
  - prefix: uploads/avatars/`,
		"equals another rule's prefix": `
  - prefix: ""
    action: quarantine
    quarantine_prefix: uploads/avatars/
  - prefix: uploads/avatars/`,
		"a rule under the default quarantine prefix": `
  - prefix: ""
  - prefix: quarantine/inbox/`,
		"of a rule that does not quarantine": `
  - prefix: ""
  - prefix: docs/
    action: tag
    quarantine_prefix: up
  - prefix: uploads/`,
	} {
		t.Run(name, func(t *testing.T) {
			_, err := ParsePolicy([]byte("rules:" + rules + "\n"))
			require.ErrorContains(t, err, "every key under it would be taken for an already quarantined object")
		})
	}
	_, err := ParsePolicy([]byte("rules:\n  - prefix: \"\"\n  - prefix: quarantine/inbox/\n"))
	require.ErrorContains(t, err, `quarantine_prefix "quarantine/" (rule 0 (""), by default) covers the prefix of rule 1 ("quarantine/inbox/")`)

	for name, rules := range map[string]string{
		"under the catch-all": `
  - prefix: ""
    action: quarantine
    quarantine_prefix: quarantine/
  - prefix: uploads/avatars/
    action: quarantine
    quarantine_prefix: quarantine/avatars/`,
		"a sibling of a rule": `
  - prefix: ""
  - prefix: uploads/
    action: quarantine
    quarantine_prefix: uploads-rejected/`,
	} {
		_, err := ParsePolicy([]byte("rules:" + rules + "\n"))
		require.NoError(t, err, name)
	}
}

// TestReadmePolicyExample: the policy of README's "Validation policy" section parses, with no
// warning.
func TestReadmePolicyExample(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile("../README.md")
	require.NoError(t, err)
	_, section, ok := strings.Cut(string(raw), "### Validation policy")
	require.True(t, ok)
	_, block, ok := strings.Cut(section, "```yaml\n")
	require.True(t, ok)
	block, _, ok = strings.Cut(block, "```")
	require.True(t, ok)
	p, err := ParsePolicy([]byte(block))
	require.NoError(t, err)
	require.Empty(t, p.Warnings())
}

// TestQuarantinePrefixWithoutSlashWarns: every key starting with a quarantine prefix is taken for an
// object intake quarantined, so "quarantine" (no '/') also takes the catch-all's
// "quarantine-reports/a.csv" for one, recorded rejected and never checked; Warnings names it.
func TestQuarantinePrefixWithoutSlashWarns(t *testing.T) {
	t.Parallel()
	p, err := ParsePolicy([]byte(`rules:
  - prefix: ""
    require_sniff_match: true
    action: quarantine
    quarantine_prefix: quarantine
`))
	require.NoError(t, err)
	require.Equal(t, []string{
		`rule "": quarantine_prefix "quarantine" does not end in '/': every key starting with it ("quarantine-reports/a.csv" too) is taken for an object intake quarantined, recorded rejected and never checked; end it with '/' ("quarantine/")`,
	}, p.Warnings())
}
