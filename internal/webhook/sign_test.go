package webhook_test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
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

// TestSignAllVerifiedBySpecLibrary: while an endpoint's secret is rotated it holds two (or more),
// "whsec_new whsec_old"; every request carries a signature made with each, separated by a space,
// and the specification's own verifier accepts it holding either secret alone, and refuses it
// holding another. Before, an endpoint had one key and a request one signature: a receiver had to
// switch secrets at the very moment intake did, or refuse notifications meanwhile.
func TestSignAllVerifiedBySpecLibrary(t *testing.T) {
	t.Parallel()
	newS, oldS := newSecret(t, 32), newSecret(t, 24)
	keys, err := webhook.ParseSecrets(newS + " " + oldS)
	require.NoError(t, err)
	require.Len(t, keys, 2)
	body := []byte(`{"id":"e1","type":"upload.valid","timestamp":"2026-01-01T00:00:00Z","data":{"k":"v"}}`)
	now := time.Now()
	sig := webhook.SignAll(keys, "e1", now, body)
	parts := strings.Split(sig, " ")
	require.Len(t, parts, 2, "two signatures: %q", sig)
	require.Equal(t, webhook.Sign(keys[0], "e1", now, body), parts[0], "the new secret's first")
	require.Equal(t, webhook.Sign(keys[1], "e1", now, body), parts[1])

	h := http.Header{}
	h.Set(webhook.HeaderID, "e1")
	h.Set(webhook.HeaderTimestamp, strconv.FormatInt(now.Unix(), 10))
	h.Set(webhook.HeaderSignature, sig)
	for name, secret := range map[string]string{"new secret": newS, "old secret": oldS} {
		wh, err := standardwebhooks.NewWebhook(secret)
		require.NoError(t, err, name)
		require.NoError(t, wh.Verify(body, h), "a receiver holding the %s", name)
		require.Error(t, wh.Verify(append([]byte(nil), body[:len(body)-2]...), h), "%s: another body", name)
	}
	other, err := standardwebhooks.NewWebhook(newSecret(t, 32))
	require.NoError(t, err)
	require.Error(t, other.Verify(body, h), "a receiver holding neither")

	one, err := webhook.ParseSecrets(newS)
	require.NoError(t, err)
	require.Equal(t, webhook.Sign(one[0], "e1", now, body), webhook.SignAll(one, "e1", now, body), "one secret: one signature")
	_, err = webhook.ParseSecret(newS + " " + oldS)
	require.ErrorContains(t, err, "2 secrets, want one")
}

// TestDeliveryDuringRotation: an endpoint configured with two secrets (INTAKE_WEBHOOK_SECRET or a
// policy endpoint's variable holding "whsec_new whsec_old") delivers requests that a receiver
// verifies with the specification's library holding the old secret, and one holding the new. A
// receiver holding neither refuses them (401), and the delivery fails.
func TestDeliveryDuringRotation(t *testing.T) {
	t.Parallel()
	newS, oldS, stranger := newSecret(t, 32), newSecret(t, 32), newSecret(t, 32)
	verifiers := map[string]*standardwebhooks.Webhook{}
	for name, s := range map[string]string{"new": newS, "old": oldS, "stranger": stranger} {
		wh, err := standardwebhooks.NewWebhook(s)
		require.NoError(t, err)
		verifiers[name] = wh
	}
	var mu sync.Mutex
	verified := map[string]int{} // by the secret that verified
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		for name, wh := range verifiers {
			if wh.Verify(body, r.Header) == nil {
				verified[name]++
			}
		}
		want := strings.TrimPrefix(r.URL.Path, "/")
		if verifiers[want].Verify(body, r.Header) != nil {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(recv.Close)

	for _, holds := range []string{"old", "new", "stranger"} {
		endpoints, err := webhook.NewEndpoints([]webhook.EndpointConfig{
			{Name: "app", URL: recv.URL + "/" + holds, Secret: newS + " " + oldS, SecretFrom: "INTAKE_WEBHOOK_SECRET"},
		}, true)
		require.NoError(t, err)
		store := &giveUps{}
		d, err := webhook.NewDeliverer(webhook.DelivererConfig{Store: store, Endpoints: endpoints, Tasks: noTasks{},
			Client: webhook.NewClient(webhook.ClientOptions{Timeout: 5 * time.Second, AllowPrivate: true})})
		require.NoError(t, err)
		task, err := webhook.NewDeliverTask([]webhook.Item{{OutboxID: 1, Endpoint: "app", Body: []byte(`{"id":"e-` + holds + `","type":"upload.valid"}`)}}, time.Second)
		require.NoError(t, err)
		err = d.ProcessTask(context.Background(), task)
		if holds == "stranger" {
			require.ErrorContains(t, err, "answered 401", "a receiver holding neither secret")
			continue
		}
		require.NoError(t, err, "a receiver holding the %s secret", holds)
		require.Equal(t, []int64{1}, store.deliveries())
	}
	mu.Lock()
	defer mu.Unlock()
	require.Equal(t, map[string]int{"new": 3, "old": 3}, verified, "every request verifies with either secret, none with another")
}
