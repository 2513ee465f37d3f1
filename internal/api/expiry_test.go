package api

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/stretchr/testify/require"

	"github.com/intakehq/intake/internal/config"
	"github.com/intakehq/intake/internal/testkit"
)

// expiringCredentials are the local stack's credentials presented as temporary ones (an STS or IRSA
// session) that expire at a fixed time.
type expiringCredentials struct{ expires time.Time }

func (c expiringCredentials) Retrieve(ctx context.Context) (aws.Credentials, error) {
	creds, err := testkit.AWSConfig().Credentials.Retrieve(ctx)
	creds.CanExpire, creds.Expires = true, c.expires
	return creds, err
}

// urlExpires returns a presigned URL's X-Amz-Expires in seconds.
func urlExpires(t *testing.T, raw string) int {
	t.Helper()
	u, err := url.Parse(raw)
	require.NoError(t, err)
	n, err := strconv.Atoi(u.Query().Get("X-Amz-Expires"))
	require.NoError(t, err, raw)
	return n
}

func expiresAt(t *testing.T, v any) time.Time {
	t.Helper()
	at, err := time.Parse(time.RFC3339, v.(string))
	require.NoError(t, err)
	return at
}

// TestPresignedURLsNeverOutliveCredentials (issue 12.11): with presigning credentials that expire
// in 10 minutes, every URL asked for an hour (PUT, POST policy, parts, download, Uppy's routes) is
// signed for at most the 10 minutes left, and the expiry returned is the real one. The URLs work.
func TestPresignedURLsNeverOutliveCredentials(t *testing.T) {
	t.Parallel()
	now := time.Now().UTC().Truncate(time.Second)
	credsExpire := now.Add(10 * time.Minute)
	b := setup(t, setupOpts{presignCreds: expiringCredentials{credsExpire}, now: func() time.Time { return now }})

	// PUT: X-Amz-Expires and expires_at are capped, and the URL uploads.
	body := []byte("short-lived")
	status, _, put := b.call(t, "POST", "/v1/uploads", aliceKey, map[string]any{"filename": "p.txt", "content_type": "text/plain", "size": len(body), "expires_in": 3600})
	require.Equal(t, http.StatusCreated, status, put)
	require.Equal(t, 600, urlExpires(t, put["url"].(string)))
	require.Equal(t, credsExpire, expiresAt(t, put["expires_at"]))
	code, _ := testkit.Do(t, http.MethodPut, put["url"].(string), body, map[string]string{"Content-Type": "text/plain", "If-None-Match": "*"})
	require.Equal(t, http.StatusOK, code)

	// A lifetime within the credentials' is left alone.
	status, _, short := b.call(t, "POST", "/v1/uploads", aliceKey, map[string]any{"filename": "s.txt", "content_type": "text/plain", "size": 1, "expires_in": 120})
	require.Equal(t, http.StatusCreated, status, short)
	require.Equal(t, 120, urlExpires(t, short["url"].(string)))
	require.Equal(t, now.Add(2*time.Minute), expiresAt(t, short["expires_at"]))

	// POST policy: the policy's expiration is within the credentials' (the SDK signs it).
	status, _, post := b.call(t, "POST", "/v1/uploads", aliceKey, map[string]any{"filename": "f.txt", "content_type": "text/plain", "size": 3, "method": "post", "expires_in": 3600})
	require.Equal(t, http.StatusCreated, status, post)
	postExpires := expiresAt(t, post["expires_at"])
	require.False(t, postExpires.After(credsExpire), "expires_at %s after %s", postExpires, credsExpire)
	require.True(t, postExpires.After(now.Add(9*time.Minute)), "capped, not shortened further: %s", postExpires)
	policy, err := base64.StdEncoding.DecodeString(post["fields"].(map[string]any)["policy"].(string))
	require.NoError(t, err)
	var doc struct {
		Expiration time.Time `json:"expiration"`
	}
	require.NoError(t, json.Unmarshal(policy, &doc))
	// The SDK dates the policy by the real clock, which has moved on from the API's frozen one by
	// the time the policy is signed (seconds on a loaded machine): the cap holds up to that lag.
	lag := time.Since(now).Truncate(time.Second) + time.Second
	require.False(t, doc.Expiration.After(credsExpire.Add(lag)), "policy expiration %s after %s (+%s)", doc.Expiration, credsExpire, lag)
	require.Equal(t, http.StatusNoContent, postForm(t, post["url"].(string), post["fields"].(map[string]any), []byte("abc"), nil))

	// Parts of a multipart upload.
	status, _, mp := b.call(t, "POST", "/v1/uploads", aliceKey, map[string]any{"filename": "m.bin", "content_type": "image/png", "size": 6 << 20, "method": "multipart"})
	require.Equal(t, http.StatusCreated, status, mp)
	status, _, parts := b.call(t, "POST", "/v1/uploads/"+mp["id"].(string)+"/parts", aliceKey, map[string]any{"part_numbers": []int{1, 2}, "expires_in": 3600})
	require.Equal(t, http.StatusOK, status, parts)
	require.Equal(t, credsExpire, expiresAt(t, parts["expires_at"]))
	for _, p := range parts["parts"].([]any) {
		require.Equal(t, 600, urlExpires(t, p.(map[string]any)["url"].(string)))
	}

	// Download.
	obj := insertObject(t, b, "alice", put["key"].(string), "valid", now)
	status, _, dl := b.call(t, "GET", "/v1/objects/"+obj+"/download?expires_in=3600", aliceKey, nil)
	require.Equal(t, http.StatusOK, status, dl)
	require.Equal(t, 600, urlExpires(t, dl["url"].(string)))
	require.Equal(t, credsExpire, expiresAt(t, dl["expires_at"]))
	code, got := testkit.Do(t, http.MethodGet, dl["url"].(string), nil, nil)
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, body, got)

	// Uppy's routes report the capped lifetime in seconds (their default expiry here is an hour).
	b2 := setup(t, setupOpts{presignCreds: expiringCredentials{credsExpire}, now: func() time.Time { return now },
		api: func(c *config.API) { c.PresignExpiry = time.Hour }})
	status, _, up := b2.call(t, "GET", "/s3/params?filename=u.png&type=image%2Fpng", aliceKey, nil)
	require.Equal(t, http.StatusOK, status, up)
	require.InDelta(t, 600, up["expires"], 1)
	status, _, ump := b2.call(t, "POST", "/s3/multipart", aliceKey, map[string]any{"filename": "v.bin", "type": "image/png", "metadata": map[string]string{}})
	require.Equal(t, http.StatusOK, status, ump)
	status, _, part := b2.call(t, "GET", "/s3/multipart/"+url.PathEscape(ump["uploadId"].(string))+"/1?key="+url.QueryEscape(ump["key"].(string)), aliceKey, nil)
	require.Equal(t, http.StatusOK, status, part)
	require.Equal(t, float64(600), part["expires"])
	require.Equal(t, 600, urlExpires(t, part["url"].(string)))
}
