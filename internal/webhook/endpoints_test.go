package webhook_test

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/intakehq/intake/internal/webhook"
	"github.com/intakehq/intake/internal/webhookurl"
	"github.com/intakehq/intake/pipeline"
)

func TestEndpointsRouting(t *testing.T) {
	t.Parallel()
	secret, avatars, docs := newSecret(t, 32), newSecret(t, 32), newSecret(t, 32)
	env := map[string]string{"AVATARS_SECRET": avatars, "DOCS_SECRET": docs}
	cfgs := webhook.Configs("https://app.example.com/hooks", secret, []pipeline.WebhookEndpoint{
		{Name: "avatars", Prefix: "uploads/avatars/", URL: "https://avatars.example.com/h", SecretEnv: "AVATARS_SECRET"},
		{Name: "docs", Prefix: "uploads/docs/", URL: "http://docs.example.com/h", SecretEnv: "DOCS_SECRET"},
	}, func(k string) string { return env[k] })
	e, err := webhook.NewEndpoints(cfgs, false)
	require.NoError(t, err)
	require.Equal(t, []string{"default", "avatars", "docs"}, e.Names())
	require.Equal(t, []string{"default", "avatars"}, e.For("uploads/avatars/alice/x.png"), "the default endpoint, and every matching prefix")
	require.Equal(t, []string{"default"}, e.For("uploads/other/x"))
	ep, ok := e.Get("avatars")
	require.True(t, ok)
	require.Equal(t, "https://avatars.example.com/h", ep.URL)
	_, ok = e.Get("nope")
	require.False(t, ok)

	none, err := webhook.NewEndpoints(webhook.Configs("", "", nil, nil), false)
	require.NoError(t, err)
	require.Empty(t, none.For("k"))
	var nilEndpoints *webhook.Endpoints
	require.Empty(t, nilEndpoints.For("k"))
}

// TestEndpointsRefused: configurations that must not start, each named in the error.
func TestEndpointsRefused(t *testing.T) {
	t.Parallel()
	secret := newSecret(t, 32)
	for name, c := range map[string]struct {
		cfg          webhook.EndpointConfig
		allowPrivate bool
		want         string
	}{
		"no secret":        {webhook.EndpointConfig{Name: "a", URL: "https://x.example", SecretFrom: "A_SECRET"}, false, "A_SECRET: secret is empty"},
		"bad secret":       {webhook.EndpointConfig{Name: "a", URL: "https://x.example", Secret: "s3cret", SecretFrom: "A_SECRET"}, false, "A_SECRET: must start with"},
		"not http":         {webhook.EndpointConfig{Name: "a", URL: "file:///etc/passwd", Secret: secret}, false, "http or https"},
		"relative URL":     {webhook.EndpointConfig{Name: "a", URL: "/hooks", Secret: secret}, false, "http or https"},
		"loopback literal": {webhook.EndpointConfig{Name: "a", URL: "http://127.0.0.1:8080/", Secret: secret}, false, "127.0.0.1"},
		"metadata service": {webhook.EndpointConfig{Name: "a", URL: "http://169.254.169.254/latest", Secret: secret}, false, "169.254.169.254"},
		"private literal":  {webhook.EndpointConfig{Name: "a", URL: "https://10.0.0.7/h", Secret: secret}, false, "10.0.0.7"},
		"localhost":        {webhook.EndpointConfig{Name: "a", URL: "http://localhost:3000/h", Secret: secret}, false, "localhost"},
		"sub.localhost":    {webhook.EndpointConfig{Name: "a", URL: "http://app.localhost/h", Secret: secret}, false, "app.localhost"},
	} {
		_, err := webhook.NewEndpoints([]webhook.EndpointConfig{c.cfg}, c.allowPrivate)
		require.ErrorContains(t, err, c.want, name)
		require.ErrorContains(t, err, `"a"`, name)
	}
	_, err := webhook.NewEndpoints([]webhook.EndpointConfig{{Name: "a", URL: "http://127.0.0.1:8080/", Secret: secret}}, true)
	require.NoError(t, err, "INTAKE_WEBHOOK_ALLOW_PRIVATE allows it")
	_, err = webhook.NewEndpoints([]webhook.EndpointConfig{{Name: "a", URL: "https://x.example", Secret: secret}, {Name: "a", URL: "https://y.example", Secret: secret}}, false)
	require.ErrorContains(t, err, "defined twice")
}

// TestEndpointsOwnSecrets: two endpoints with different URLs may not share a secret (a request
// captured at one would verify at the other); the error names both and where their secret came
// from. One receiver given two prefixes, at the same URL, may use one secret.
func TestEndpointsOwnSecrets(t *testing.T) {
	t.Parallel()
	secret, other := newSecret(t, 32), newSecret(t, 32)
	env := map[string]string{"CRM_SECRET": secret, "DOCS_SECRET": other}
	_, err := webhook.NewEndpoints(webhook.Configs("https://app.example.com/hooks", secret, []pipeline.WebhookEndpoint{
		{Name: "docs", Prefix: "uploads/docs/", URL: "https://docs.example.com/h", SecretEnv: "DOCS_SECRET"},
		{Name: "crm", Prefix: "uploads/", URL: "https://crm.example.com/h", SecretEnv: "CRM_SECRET"},
	}, func(k string) string { return env[k] }), false)
	require.ErrorContains(t, err, `webhook endpoint "crm": CRM_SECRET: the same secret as endpoint "default" (INTAKE_WEBHOOK_SECRET)`)
	require.NotContains(t, err.Error(), `"docs"`)

	e, err := webhook.NewEndpoints([]webhook.EndpointConfig{
		{Name: "avatars", Prefix: "uploads/avatars/", URL: "https://app.example.com/hooks", Secret: secret},
		{Name: "docs", Prefix: "uploads/docs/", URL: "https://app.example.com/hooks", Secret: secret},
	}, false)
	require.NoError(t, err, "one receiver, two prefixes")
	require.Equal(t, []string{"avatars", "docs"}, e.Names())

	// While one is rotated, none of its secrets may be another's.
	rotated := newSecret(t, 32) + " " + other
	_, err = webhook.NewEndpoints([]webhook.EndpointConfig{
		{Name: "docs", URL: "https://docs.example.com/h", Secret: other, SecretFrom: "DOCS_SECRET"},
		{Name: "crm", URL: "https://crm.example.com/h", Secret: rotated, SecretFrom: "CRM_SECRET"},
	}, false)
	require.ErrorContains(t, err, `webhook endpoint "crm": CRM_SECRET: the same secret as endpoint "docs" (DOCS_SECRET)`)
	e, err = webhook.NewEndpoints([]webhook.EndpointConfig{
		{Name: "docs", URL: "https://docs.example.com/h", Secret: other},
		{Name: "crm", URL: "https://crm.example.com/h", Secret: newSecret(t, 32) + " " + newSecret(t, 32)},
	}, false)
	require.NoError(t, err, "rotating, each its own secrets")
	require.Equal(t, []string{"docs", "crm"}, e.Names())
	_, err = webhook.NewEndpoints([]webhook.EndpointConfig{
		{Name: "crm", URL: "https://crm.example.com/h", Secret: other + " whsec_!!!", SecretFrom: "CRM_SECRET"},
	}, false)
	require.ErrorContains(t, err, `webhook endpoint "crm": CRM_SECRET: secret 2 of 2: the part after whsec_ is not standard base64`)
}

// TestEndpointsRefuseWhatStartupRefuses: NewEndpoints runs webhookurl.Check, the check
// config.Validate runs on INTAKE_WEBHOOK_URL, so that a URL refused here is refused at start-up
// already. (The client's dialer judges addresses with webhookurl.PublicAddress too: one table.)
func TestEndpointsRefuseWhatStartupRefuses(t *testing.T) {
	t.Parallel()
	secret := newSecret(t, 32)
	for _, raw := range []string{
		"https://app.example.com/h", "http://127.0.0.1:8080/", "http://[::1]/", "http://169.254.169.254/", "https://10.0.0.7/h",
		"http://localhost:3000/h", "http://app.localhost/h", "ftp://x.example/", "/hooks", "http://[64:ff9b::a9fe:a9fe]/",
	} {
		for _, allowPrivate := range []bool{false, true} {
			_, err := webhook.NewEndpoints([]webhook.EndpointConfig{{Name: "a", URL: raw, Secret: secret}}, allowPrivate)
			startup := webhookurl.Check(raw, allowPrivate)
			require.Equal(t, startup == nil, err == nil, "%s (allow private %v): endpoints %v, start-up %v", raw, allowPrivate, err, startup)
			if errors.Is(startup, webhookurl.ErrForbiddenAddress) {
				require.ErrorIs(t, err, webhook.ErrForbiddenAddress, raw)
			}
		}
	}
}
