package webhook_test

import (
	"crypto/rand"
	"encoding/base64"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
	"github.com/stretchr/testify/require"

	"github.com/intakehq/intake/internal/webhook"
)

// newSecret returns a fresh whsec_ secret of n random bytes.
func newSecret(t testing.TB, n int) string {
	t.Helper()
	key := make([]byte, n)
	_, err := rand.Read(key)
	require.NoError(t, err)
	return "whsec_" + base64.StdEncoding.EncodeToString(key)
}

// TestSignVerifiedBySpecLibrary: the specification's own verifier accepts intake's signatures, and
// refuses them when the body, the id, the timestamp or the secret differ.
func TestSignVerifiedBySpecLibrary(t *testing.T) {
	t.Parallel()
	secret := newSecret(t, 32)
	key, err := webhook.ParseSecret(secret)
	require.NoError(t, err)
	wh, err := standardwebhooks.NewWebhook(secret)
	require.NoError(t, err)
	other, err := standardwebhooks.NewWebhook(newSecret(t, 32))
	require.NoError(t, err)

	body := []byte(`{"id":"e1","type":"upload.valid","timestamp":"2026-01-01T00:00:00Z","data":{"k":"v"}}`)
	now := time.Now()
	headers := func(id string, ts time.Time, sig string) http.Header {
		h := http.Header{}
		h.Set(webhook.HeaderID, id)
		h.Set(webhook.HeaderTimestamp, strconv.FormatInt(ts.Unix(), 10))
		h.Set(webhook.HeaderSignature, sig)
		return h
	}
	sig := webhook.Sign(key, "e1", now, body)
	require.True(t, strings.HasPrefix(sig, "v1,"))
	require.NoError(t, wh.Verify(body, headers("e1", now, sig)))

	for name, c := range map[string]struct {
		wh   *standardwebhooks.Webhook
		body []byte
		h    http.Header
	}{
		"other body":      {wh, append([]byte(nil), body[:len(body)-2]...), headers("e1", now, sig)},
		"other id":        {wh, body, headers("e2", now, sig)},
		"other timestamp": {wh, body, headers("e1", now.Add(time.Second), sig)},
		"other secret":    {other, body, headers("e1", now, sig)},
		"too old":         {wh, body, headers("e1", now.Add(-10*time.Minute), webhook.Sign(key, "e1", now.Add(-10*time.Minute), body))},
	} {
		require.Error(t, c.wh.Verify(c.body, c.h), name)
	}
}

func TestParseSecret(t *testing.T) {
	t.Parallel()
	for name, c := range map[string]struct {
		in   string
		want string // error substring, "" = ok
	}{
		"32 bytes":        {newSecret(t, 32), ""},
		"24 bytes":        {newSecret(t, 24), ""},
		"64 bytes":        {newSecret(t, 64), ""},
		"no prefix":       {strings.TrimPrefix(newSecret(t, 32), "whsec_"), "must start with"},
		"not base64":      {"whsec_!!!", "not standard base64"},
		"too short":       {newSecret(t, 16), "16 bytes"},
		"too long":        {newSecret(t, 65), "65 bytes"},
		"empty after tag": {"whsec_", "0 bytes"},
	} {
		key, err := webhook.ParseSecret(c.in)
		if c.want == "" {
			require.NoError(t, err, name)
			require.NotEmpty(t, key, name)
			continue
		}
		require.ErrorContains(t, err, c.want, name)
		if b64 := strings.TrimPrefix(c.in, "whsec_"); len(b64) > 4 {
			require.NotContains(t, err.Error(), b64, "%s: the error shows no secret", name)
		}
	}
}
