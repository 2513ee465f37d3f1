package pipeline

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestParsePolicy(t *testing.T) {
	t.Parallel()
	p, err := ParsePolicy([]byte(`
rules:
  - prefix: ""
    max_size: 1000
  - prefix: avatars/
    max_size: 100
    allowed_types: ["image/*"]
    require_sniff_match: true
    action: quarantine
    quarantine_prefix: rejected/
`))
	require.NoError(t, err)
	r, ok := p.For("avatars/u1/a.png")
	require.True(t, ok)
	require.Equal(t, "avatars/", r.Prefix)
	require.Equal(t, ActionQuarantine, r.Action)
	r, ok = p.For("docs/a.pdf")
	require.True(t, ok)
	require.Equal(t, "", r.Prefix)
	require.Equal(t, ActionTag, r.Action, "action defaults to tag")

	tests := []struct {
		name, key, ct string
		size          int64
		reason        string
	}{
		{"fits", "avatars/a.png", "image/png", 100, ""},
		{"type params ignored", "avatars/a.png", "IMAGE/PNG; charset=x", 1, ""},
		{"too large", "avatars/a.png", "image/png", 101, ReasonTooLarge},
		{"type refused", "avatars/a.pdf", "application/pdf", 1, ReasonTypeNotAllow},
		{"root rule any type", "x/a.pdf", "application/pdf", 1000, ""},
		{"root too large", "x/a.pdf", "application/pdf", 1001, ReasonTooLarge},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, _ := p.For(tc.key)
			v := r.CheckDeclared(tc.ct, tc.size)
			if tc.reason == "" {
				require.Nil(t, v)
				return
			}
			require.NotNil(t, v)
			require.Equal(t, tc.reason, v.Reason)
		})
	}
}

func TestParsePolicyErrors(t *testing.T) {
	t.Parallel()
	// Each has the catch-all rule every policy needs (TestPolicyNeedsCatchAll), so that each is
	// refused for its own mistake.
	for name, doc := range map[string]string{
		"unknown field":              "rules: [{prefix: ''}, {prefix: a, colour: red}]",
		"bad action":                 "rules: [{prefix: ''}, {prefix: a, action: burn}]",
		"negative size":              "rules: [{prefix: ''}, {prefix: a, max_size: -1}]",
		"duplicate prefix":           "rules: [{prefix: ''}, {prefix: a}, {prefix: a}]",
		"bad type pattern":           "rules: [{prefix: ''}, {prefix: a, allowed_types: ['png']}]",
		"quarantine inside":          "rules: [{prefix: ''}, {prefix: a/, action: quarantine, quarantine_prefix: a/q/}]",
		"webhook bad name":           "rules: [{prefix: ''}]\nwebhooks: [{name: 'A B', url: 'https://x', secret_env: S}]",
		"webhook default":            "rules: [{prefix: ''}]\nwebhooks: [{name: default, url: 'https://x', secret_env: S}]",
		"webhook twice":              "rules: [{prefix: ''}]\nwebhooks: [{name: a, url: 'https://x', secret_env: S}, {name: a, url: 'https://y', secret_env: S}]",
		"webhook bad url":            "rules: [{prefix: ''}]\nwebhooks: [{name: a, url: 'ftp://x', secret_env: S}]",
		"webhook no secret":          "rules: [{prefix: ''}]\nwebhooks: [{name: a, url: 'https://x'}]",
		"webhook secret in the file": "rules: [{prefix: ''}]\nwebhooks: [{name: a, url: 'https://x', secret: whsec_abc}]",
	} {
		t.Run(name, func(t *testing.T) {
			_, err := ParsePolicy([]byte(doc))
			require.Error(t, err)
			require.NotContains(t, err.Error(), `no rule has the prefix ""`)
		})
	}
}

func TestParsePolicyWebhooks(t *testing.T) {
	t.Parallel()
	p, err := ParsePolicy([]byte("rules: [{prefix: ''}]\nwebhooks: [{name: avatars, prefix: uploads/avatars/, url: 'https://a.example/h', secret_env: AVATARS_SECRET}]"))
	require.NoError(t, err)
	require.Equal(t, []WebhookEndpoint{{Name: "avatars", Prefix: "uploads/avatars/", URL: "https://a.example/h", SecretEnv: "AVATARS_SECRET"}}, p.Webhooks)
}

func TestDefaultPolicy(t *testing.T) {
	t.Parallel()
	r, ok := DefaultPolicy().For("anything")
	require.True(t, ok)
	require.Nil(t, r.CheckDeclared("application/x-whatever", 1<<30))
	require.NotNil(t, r.CheckDeclared("text/plain", 6<<30))
}

// TestPolicySecretsDuringRotation: a policy endpoint's secret variable holding two secrets (a
// rotation) gives each one alone to the log redactor, besides the whole value.
func TestPolicySecretsDuringRotation(t *testing.T) {
	t.Parallel()
	p := &Policy{Webhooks: []WebhookEndpoint{{Name: "billing", URL: "https://hooks.example.com/x", SecretEnv: "BILLING_SECRET"}}}
	env := map[string]string{"BILLING_SECRET": " whsec_bmV3LXNlY3JldA== whsec_b2xkLXNlY3JldA== "}
	got := p.Secrets(func(k string) string { return env[k] })
	require.Subset(t, got, []string{"whsec_bmV3LXNlY3JldA==", "whsec_b2xkLXNlY3JldA=="})
}

// TestHashWarnings: the consumer warns at start about the uploads it may not hash within its
// message timeout (at 64 MiB/s, 5 minutes is 18.75 GiB): a rule allowing more, a rule with no
// max_size, and INTAKE_CONSUMER_HASH_MAX_SIZE above it; the default policy (5 GiB) and a rule
// within it get none.
func TestHashWarnings(t *testing.T) {
	t.Parallel()
	require.Empty(t, DefaultPolicy().HashWarnings(5*time.Minute, 0))
	p := &Policy{Rules: []Rule{
		{Prefix: "small/", MaxSize: 18 << 30},
		{Prefix: "video/", MaxSize: 100 << 30},
		{Prefix: "any/"},
	}}
	w := p.HashWarnings(5*time.Minute, 20<<30)
	require.Len(t, w, 4)
	require.Contains(t, w[0], `no rule has the prefix "": keys no rule covers have no size limit`)
	require.Contains(t, w[1], `rule "video/": max_size 100.0 GiB takes about 26m41s to hash at 64.0 MiB/s, longer than 5m0s`)
	require.Contains(t, w[1], "larger than 18.8 GiB")
	require.Contains(t, w[2], `rule "any/" has no max_size`)
	require.Contains(t, w[3], "INTAKE_CONSUMER_HASH_MAX_SIZE 20.0 GiB")
	w = p.HashWarnings(30*time.Minute, 20<<30)
	require.Len(t, w, 2, "30 minutes: 112.5 GiB, only the keys without a size limit")
	require.Contains(t, w[1], `rule "any/" has no max_size`)
	// A policy file that declares only webhooks, or rules for some prefixes: the other keys have no
	// size limit.
	require.Len(t, (&Policy{}).HashWarnings(5*time.Minute, 0), 1)
	require.Len(t, (&Policy{Rules: []Rule{{Prefix: "img/", MaxSize: 1 << 20}}}).HashWarnings(5*time.Minute, 0), 1)
	require.Empty(t, (&Policy{Rules: []Rule{{Prefix: "img/", MaxSize: 1 << 20}, {MaxSize: 1 << 30}}}).HashWarnings(5*time.Minute, 0))
}
