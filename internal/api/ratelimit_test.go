package api

import (
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/intakehq/intake/internal/config"
	"github.com/intakehq/intake/internal/testkit"
)

// TestOwnerRateLimit: a tenant that sends more requests than INTAKE_API_OWNER_RATE allows is
// answered 429 rate-limited with Retry-After on every route family, before anything is read,
// created or signed; another tenant is served meanwhile; the tenant is served again once
// Retry-After has passed.
func TestOwnerRateLimit(t *testing.T) {
	t.Parallel()
	// One token per 100 s: within the test, bob has his burst of 3 and nothing more.
	b := setup(t, setupOpts{api: func(c *config.API) { c.OwnerRate, c.OwnerBurst = 0.01, 3 }})
	create := map[string]any{"filename": "a.txt", "content_type": "text/plain", "size": 10}

	// Alice's upload, which bob's reads would look for.
	status, _, up := b.call(t, "POST", "/v1/uploads", aliceKey, create)
	require.Equal(t, http.StatusCreated, status, up)
	// Bob's burst: three requests served.
	var mine map[string]any
	for i := range 3 {
		status, _, mine = b.call(t, "POST", "/v1/uploads", bobKey, create)
		require.Equal(t, http.StatusCreated, status, "bob's request %d of his burst: %v", i, mine)
	}
	bob := asKey(bobKey)
	limited := func(row attack) attack {
		row.as, row.status, row.typ, row.detail = bob, http.StatusTooManyRequests, "rate-limited", "requests per second"
		return row
	}
	runAttacks(t, b, familyV1, []attack{
		limited(attack{attacker: "a tenant past its rate creating intents", method: "POST", path: "/v1/uploads", body: create,
			mustNot: "create an intent or sign a URL"}),
		limited(attack{attacker: "a tenant past its rate reading its own upload", method: "GET", path: "/v1/uploads/" + mine["id"].(string),
			mustNot: "read the database"}),
		limited(attack{attacker: "a tenant past its rate creating a multipart upload", method: "POST", path: "/v1/uploads",
			body:    map[string]any{"filename": "m.bin", "content_type": "application/octet-stream", "size": 10 << 20, "method": "multipart"},
			mustNot: "create an S3 multipart upload"}),
		limited(attack{attacker: "a tenant past its rate listing objects", method: "GET", path: "/v1/objects", mustNot: "read the database"}),
	})
	runAttacks(t, b, familyUppy, []attack{
		limited(attack{attacker: "a tenant past its rate on Uppy's multipart route", method: "POST", path: "/s3/multipart",
			body:    map[string]any{"filename": "v.bin", "type": "application/octet-stream", "metadata": map[string]string{}},
			mustNot: "create an S3 multipart upload"}),
		limited(attack{attacker: "a tenant past its rate on Uppy's params", method: "GET", path: "/s3/params?filename=p.png&type=image%2Fpng",
			mustNot: "create an intent or sign a policy"}),
	})
	status, h, _ := b.call(t, "POST", "/v1/uploads", bobKey, create)
	require.Equal(t, http.StatusTooManyRequests, status)
	wait, err := strconv.Atoi(h.Get("Retry-After"))
	require.NoError(t, err, "Retry-After %q", h.Get("Retry-After"))
	require.InDelta(t, 100, wait, 1, "the time until bob's next token")
	require.Equal(t, 7.0, testkit.Metric(t, b.registry, "intake_api_rate_limited_total"), "every refusal counted")

	// Another tenant is not charged for bob's requests.
	status, _, body := b.call(t, "POST", "/v1/uploads", aliceKey, create)
	require.Equal(t, http.StatusCreated, status, body)
	status, _, body = b.call(t, "GET", "/v1/uploads/"+up["id"].(string), aliceKey, nil)
	require.Equal(t, http.StatusOK, status, body)
}

// TestOwnerRateLimitRefills: once Retry-After has passed, the tenant is served again.
func TestOwnerRateLimitRefills(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{api: func(c *config.API) { c.OwnerRate, c.OwnerBurst = 2, 1 }})
	create := map[string]any{"filename": "a.txt", "content_type": "text/plain", "size": 10}
	status, _, body := b.call(t, "POST", "/v1/uploads", bobKey, create)
	require.Equal(t, http.StatusCreated, status, body)
	var h http.Header
	for { // the next token comes within half a second: ask until refused (a slow machine may earn one)
		if status, h, body = b.call(t, "POST", "/v1/uploads", bobKey, create); status == http.StatusTooManyRequests {
			break
		}
		require.Equal(t, http.StatusCreated, status, body)
	}
	require.Equal(t, "1", h.Get("Retry-After"), "half a second, rounded up")
	time.Sleep(time.Second) // Retry-After
	status, _, body = b.call(t, "POST", "/v1/uploads", bobKey, create)
	require.Equal(t, http.StatusCreated, status, body)
}
