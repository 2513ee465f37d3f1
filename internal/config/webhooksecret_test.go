package config

import (
	"crypto/rand"
	"encoding/base64"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// webhookSecret returns a fresh whsec_ secret of n random bytes, and its key.
func webhookSecret(t *testing.T, n int) (string, []byte) {
	t.Helper()
	key := make([]byte, n)
	_, err := rand.Read(key)
	require.NoError(t, err)
	return WebhookSecretPrefix + base64.StdEncoding.EncodeToString(key), key
}

// TestParseWebhookSecretRotation: INTAKE_WEBHOOK_SECRET (and a policy endpoint's secret_env) may
// hold several secrets separated by spaces while the receiver's secret is rotated; each decodes to
// its key, in order. Before, the value had to be one secret: "whsec_new whsec_old" was refused
// ("not standard base64"), so an endpoint could not sign with two keys at once.
func TestParseWebhookSecretRotation(t *testing.T) {
	t.Parallel()
	newS, newKey := webhookSecret(t, 32)
	oldS, oldKey := webhookSecret(t, 24)
	third, thirdKey := webhookSecret(t, 64)

	for name, in := range map[string]string{
		"two":              newS + " " + oldS,
		"extra whitespace": "  " + newS + "\t " + oldS + "\n",
	} {
		keys, err := ParseWebhookSecret(in)
		require.NoError(t, err, name)
		require.Equal(t, [][]byte{newKey, oldKey}, keys, name)
	}
	keys, err := ParseWebhookSecret(newS + " " + oldS + " " + third)
	require.NoError(t, err)
	require.Equal(t, [][]byte{newKey, oldKey, thirdKey}, keys)

	keys, err = ParseWebhookSecret(newS + "\n")
	require.NoError(t, err, "a mounted file's trailing newline")
	require.Equal(t, [][]byte{newKey}, keys)

	short, _ := webhookSecret(t, 16)
	for name, c := range map[string]struct{ in, want string }{
		"empty":               {"", "must start with"},
		"blank":               {"  \n", "must start with"},
		"one bad":             {strings.TrimPrefix(newS, "whsec_"), "must start with"},
		"second without tag":  {newS + " " + strings.TrimPrefix(oldS, "whsec_"), "secret 2 of 2: must start with"},
		"second not base64":   {newS + " whsec_!!!", "secret 2 of 2: the part after whsec_ is not standard base64"},
		"first too short":     {short + " " + oldS, "secret 1 of 2: the key is 16 bytes"},
		"the same twice":      {newS + " " + oldS + " " + newS, "secret 3 of 3 is secret 1 again"},
		"too many":            {strings.Repeat(newS+" ", 5), "5 secrets, want at most 4"},
		"comma, not a space":  {newS + "," + oldS, "not standard base64"},
		"a single bad secret": {"whsec_", "the key is 0 bytes"},
	} {
		keys, err := ParseWebhookSecret(c.in)
		require.ErrorContains(t, err, c.want, name)
		require.Nil(t, keys, name)
		for _, s := range []string{newS, oldS, short} {
			require.NotContains(t, err.Error(), strings.TrimPrefix(s, "whsec_"), "%s: the error shows no secret", name)
		}
	}
}

// TestValidateWebhookSecretRotation: the jobs role starts with INTAKE_WEBHOOK_SECRET holding two
// secrets, and names the one at fault when one is bad. Before, two secrets were refused at start.
func TestValidateWebhookSecretRotation(t *testing.T) {
	t.Parallel()
	newS, _ := webhookSecret(t, 32)
	c := validConfig()
	c.Webhook.URL, c.Webhook.Secret = "https://app.example.com/hooks", newS+" "+testSecret
	require.NoError(t, c.Validate([]string{RoleJobs}))
	c.Webhook.Secret = newS + " whsec_c2hvcnQ="
	require.ErrorContains(t, c.Validate([]string{RoleJobs}), "INTAKE_WEBHOOK_SECRET: secret 2 of 2: the key is 5 bytes")
}
