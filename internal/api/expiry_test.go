package api

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"strings"
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

// splitCredentials is objstore.LoadAWS's provider as the API's signers see it: the SDK clients'
// shared cache and a cache of the signers' own (sigv4.SigningSource), here holding two different
// sessions, as they do near a session's end (the signers' refreshed early, the shared one not).
type splitCredentials struct {
	*aws.CredentialsCache
	own *aws.CredentialsCache
}

func (c splitCredentials) SigningCredentials() *aws.CredentialsCache { return c.own }

// fixedSession is a session that expires at a fixed time: the local stack's key (MinIO accepts what
// it signs), or, with id set, a key and session token of that name, which MinIO does not know.
type fixedSession struct {
	id      string
	expires time.Time
}

func (s fixedSession) Retrieve(ctx context.Context) (aws.Credentials, error) {
	if s.id == "" {
		return expiringCredentials{s.expires}.Retrieve(ctx)
	}
	return aws.Credentials{AccessKeyID: s.id, SecretAccessKey: "secret-of-" + s.id, SessionToken: "token-of-" + s.id,
		CanExpire: true, Expires: s.expires}, nil
}

// postPolicy decodes a POST policy's expiration and its credential and session-token conditions.
func postPolicy(t *testing.T, fields map[string]any) (expiration time.Time, credential, token string) {
	t.Helper()
	raw, err := base64.StdEncoding.DecodeString(fields["policy"].(string))
	require.NoError(t, err)
	var doc struct {
		Expiration time.Time `json:"expiration"`
		Conditions []any     `json:"conditions"`
	}
	require.NoError(t, json.Unmarshal(raw, &doc), string(raw))
	for _, c := range doc.Conditions {
		m, _ := c.(map[string]any)
		for k, v := range m {
			switch strings.ToLower(k) { // the SDK writes X-Amz-Credential; S3 reads names in any case
			case "x-amz-credential":
				credential, _ = v.(string)
			case "x-amz-security-token":
				token, _ = v.(string)
			}
		}
	}
	return doc.Expiration, credential, token
}

// TestPostPolicySignedByTheSessionThatBoundsIt: the SDK clients' shared credentials cache and the
// signers' own hold different sessions (the signers' refreshed early). A POST policy, through /v1
// and Uppy's /s3/params, is signed by the session whose expiry bounds the expires_at answered and
// recorded, the signers' own: with a shared session that ends in 2 minutes and the signers' in 55,
// a 30-minute policy is signed by the latter (and uploads: MinIO knows only its key), and with the
// signers' ending in 2 minutes it is signed by that one and capped at its end. PUT and part URLs
// (the Signer's own signatures) are signed by the same session.
func TestPostPolicySignedByTheSessionThatBoundsIt(t *testing.T) {
	t.Parallel()
	now := time.Now().UTC().Truncate(time.Second)
	local, err := testkit.AWSConfig().Credentials.Retrieve(context.Background())
	require.NoError(t, err)
	split := func(shared, own fixedSession) splitCredentials {
		return splitCredentials{CredentialsCache: aws.NewCredentialsCache(shared), own: aws.NewCredentialsCache(own)}
	}
	longer := func(c *config.API) { c.PresignExpiry = 30 * time.Minute }

	t.Run("the shared session ends first", func(t *testing.T) {
		t.Parallel()
		ownExpires := now.Add(55 * time.Minute)
		b := setup(t, setupOpts{presignCreds: split(fixedSession{"SHAREDSESSION", now.Add(2 * time.Minute)}, fixedSession{"", ownExpires}),
			now: func() time.Time { return now }, api: longer})
		status, _, post := b.call(t, "POST", "/v1/uploads", aliceKey, map[string]any{"filename": "f.txt", "content_type": "text/plain", "size": 3, "method": "post", "expires_in": 1800})
		require.Equal(t, http.StatusCreated, status, post)
		fields := post["fields"].(map[string]any)
		at := expiresAt(t, post["expires_at"])
		require.Equal(t, now.Add(30*time.Minute), at, "not capped: the signing session has 55 minutes")
		require.False(t, at.After(ownExpires))
		require.True(t, strings.HasPrefix(fields["X-Amz-Credential"].(string), local.AccessKeyID+"/"), "signed by %s, not the signers' session", fields["X-Amz-Credential"])
		_, credential, _ := postPolicy(t, fields)
		require.Equal(t, fields["X-Amz-Credential"], credential)
		var recorded time.Time
		require.NoError(t, b.st.Pool.QueryRow(context.Background(), "SELECT expires_at FROM uploads WHERE id = $1", post["id"]).Scan(&recorded))
		require.True(t, recorded.Equal(at), "the intent's expires_at %s, answered %s", recorded, at)
		require.Equal(t, http.StatusNoContent, postForm(t, post["url"].(string), fields, []byte("abc"), nil))

		// Uppy's POST policy.
		status, _, up := b.call(t, "GET", "/s3/params?filename=u.png&type=image%2Fpng", aliceKey, nil)
		require.Equal(t, http.StatusOK, status, up)
		require.Equal(t, float64(1800), up["expires"])
		upFields := up["fields"].(map[string]any)
		require.True(t, strings.HasPrefix(upFields["X-Amz-Credential"].(string), local.AccessKeyID+"/"), "signed by %s", upFields["X-Amz-Credential"])
		require.Equal(t, http.StatusNoContent, postForm(t, up["url"].(string), upFields, []byte("png"), nil))

		// PUT and part URLs: signed by the Signer, with the same session.
		status, _, put := b.call(t, "POST", "/v1/uploads", aliceKey, map[string]any{"filename": "p.txt", "content_type": "text/plain", "size": 3, "expires_in": 1800})
		require.Equal(t, http.StatusCreated, status, put)
		require.Equal(t, now.Add(30*time.Minute), expiresAt(t, put["expires_at"]))
		code, _ := testkit.Do(t, http.MethodPut, put["url"].(string), []byte("abc"), map[string]string{"Content-Type": "text/plain", "If-None-Match": "*"})
		require.Equal(t, http.StatusOK, code)
		status, _, mp := b.call(t, "POST", "/v1/uploads", aliceKey, map[string]any{"filename": "m.bin", "content_type": "image/png", "size": 6 << 20, "method": "multipart"})
		require.Equal(t, http.StatusCreated, status, mp)
		status, _, parts := b.call(t, "POST", "/v1/uploads/"+mp["id"].(string)+"/parts", aliceKey, map[string]any{"part_numbers": []int{1}, "expires_in": 1800})
		require.Equal(t, http.StatusOK, status, parts)
		require.Equal(t, now.Add(30*time.Minute), expiresAt(t, parts["expires_at"]))
		partURL := parts["parts"].([]any)[0].(map[string]any)["url"].(string)
		code, _ = putPart(t, partURL, make([]byte, 5<<20))
		require.Equal(t, http.StatusOK, code)
	})

	t.Run("the signers' session ends first", func(t *testing.T) {
		t.Parallel()
		ownExpires := now.Add(2 * time.Minute)
		b := setup(t, setupOpts{presignCreds: split(fixedSession{"", now.Add(55 * time.Minute)}, fixedSession{"OWNSESSION", ownExpires}),
			now: func() time.Time { return now }, api: longer})
		for _, route := range []string{"/v1/uploads", "/s3/params"} {
			var fields map[string]any
			var at time.Time
			if route == "/v1/uploads" {
				status, _, post := b.call(t, "POST", route, aliceKey, map[string]any{"filename": "f.txt", "content_type": "text/plain", "size": 3, "method": "post", "expires_in": 1800})
				require.Equal(t, http.StatusCreated, status, post)
				fields, at = post["fields"].(map[string]any), expiresAt(t, post["expires_at"])
			} else {
				status, _, up := b.call(t, "GET", route+"?filename=u.png&type=image%2Fpng", aliceKey, nil)
				require.Equal(t, http.StatusOK, status, up)
				fields, at = up["fields"].(map[string]any), now.Add(time.Duration(up["expires"].(float64))*time.Second)
			}
			require.False(t, at.After(ownExpires), "%s: expires_at %s after the signing session's end %s", route, at, ownExpires)
			require.True(t, at.After(now.Add(time.Minute)), "%s: capped, not shortened further: %s", route, at)
			require.True(t, strings.HasPrefix(fields["X-Amz-Credential"].(string), "OWNSESSION/"), "%s: signed by %s, not by the session that bounds expires_at", route, fields["X-Amz-Credential"])
			require.Equal(t, "token-of-OWNSESSION", fields["X-Amz-Security-Token"], route)
			expiration, credential, token := postPolicy(t, fields)
			require.Equal(t, fields["X-Amz-Credential"], credential, route)
			require.Equal(t, "token-of-OWNSESSION", token, route)
			lag := time.Since(now).Truncate(time.Second) + time.Second // the SDK dates the policy by the real clock
			require.False(t, expiration.After(ownExpires.Add(lag)), "%s: policy expiration %s after %s (+%s)", route, expiration, ownExpires, lag)
		}
	})
}
