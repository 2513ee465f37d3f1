package api

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestUppyAttacks is the adversarial table of Uppy's /s3 routes (the runner and the side effects it
// checks are in adversarial_test.go). Their errors are {"error", "type"}.
func TestUppyAttacks(t *testing.T) {
	t.Parallel()
	b := setup(t)
	victim := hs256(t, nil) // dana's cookie, as her browser holds it
	alice := asKey(aliceKey)

	// Alice's open Uppy multipart upload, and a completed one.
	status, _, mp := b.call(t, "POST", "/s3/multipart", aliceKey, map[string]any{"filename": "v.bin", "type": "application/octet-stream", "metadata": map[string]string{}})
	require.Equal(t, http.StatusOK, status, mp)
	uid, q := url.PathEscape(mp["uploadId"].(string)), "?key="+url.QueryEscape(mp["key"].(string))
	status, _, done := b.call(t, "POST", "/s3/multipart", aliceKey, map[string]any{"filename": "d.bin", "type": "application/octet-stream", "metadata": map[string]string{}})
	require.Equal(t, http.StatusOK, status, done)
	_, err := b.st.Pool.Exec(context.Background(), "UPDATE uploads SET status = 'completed' WHERE key = $1", done["key"])
	require.NoError(t, err)
	doneUID, doneQ := url.PathEscape(done["uploadId"].(string)), "?key="+url.QueryEscape(done["key"].(string))
	// Dana's open upload, the target of cross-site requests riding her cookie.
	status, _, danaMP := b.send(t, attack{method: "POST", path: "/s3/multipart", as: asBearer(victim), body: map[string]any{"filename": "x.bin", "type": "image/png", "metadata": map[string]string{}}})
	require.Equal(t, http.StatusOK, status, danaMP)
	danaUID, danaQ := url.PathEscape(danaMP["uploadId"].(string)), "?key="+url.QueryEscape(danaMP["key"].(string))

	params := "/s3/params?filename=pic.png&type=image%2Fpng"
	host := strings.TrimPrefix(b.srv.URL, "http://") // intake's host, as requests name it
	complete := map[string]any{"parts": []any{map[string]any{"PartNumber": 1, "ETag": "x"}}}
	attacks := []attack{
		// Issue 12.10: a page on another site makes the victim's browser call the routes with her cookie.
		{attacker: "cross-site navigation to /s3/params with the victim's cookie", method: "GET", path: params, as: asCookie(victim),
			header: map[string]string{"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate"}, status: 403, typ: "forbidden", mustNot: "create an intent for the victim"},
		{attacker: "cross-site image tag on /s3/params from a browser without Sec-Fetch-Site", method: "GET", path: params, as: asCookie(victim),
			status: 403, typ: "forbidden", mustNot: "create an intent for the victim"},
		{attacker: "cross-site fetch of /s3/params from an unlisted origin", method: "GET", path: params, as: asCookie(victim),
			header: crossSite, status: 403, typ: "forbidden", mustNot: "create an intent for the victim"},
		{attacker: "cross-site form posting /s3/multipart", method: "POST", path: "/s3/multipart", as: asCookie(victim),
			body: map[string]any{"filename": "c.bin", "type": "image/png", "metadata": map[string]string{}}, header: crossSite, status: 403, typ: "forbidden", mustNot: "create a multipart upload for the victim"},
		{attacker: "cross-site page aborting the victim's upload", method: "DELETE", path: "/s3/multipart/" + danaUID + danaQ, as: asCookie(victim),
			header: crossSite, status: 403, typ: "forbidden", mustNot: "abort the victim's upload"},
		{attacker: "cross-site page signing parts of the victim's upload", method: "GET", path: "/s3/multipart/" + danaUID + "/batch" + danaQ + "&partNumbers=1,2", as: asCookie(victim),
			header: map[string]string{"Sec-Fetch-Site": "cross-site"}, status: 403, typ: "forbidden", mustNot: "sign part URLs"},
		{attacker: "cross-site page completing the victim's upload", method: "POST", path: "/s3/multipart/" + danaUID + "/complete" + danaQ, as: asCookie(victim),
			body: complete, header: map[string]string{"Origin": "https://evil.example.net"}, status: 403, typ: "forbidden", mustNot: "complete the victim's upload"},
		{attacker: "sibling subdomain with Uppy's header", method: "GET", path: params, as: asCookie(victim),
			header: map[string]string{"Origin": "https://evil.app.example.com", "Sec-Fetch-Site": "same-site", "Uppy-Versions": "@uppy/aws-s3=4.0.0"}, status: 403, typ: "forbidden", mustNot: "create an intent for the victim"},
		// ServeMux routes HEAD to GET patterns: a HEAD must not do what the GET does.
		{attacker: "prefetching proxy sending HEAD to /s3/params", method: "HEAD", path: params, as: alice, status: 405, mustNot: "create an intent or sign a POST policy"},
		{attacker: "HEAD signing a part", method: "HEAD", path: "/s3/multipart/" + uid + "/1" + q, as: alice, status: 405, mustNot: "sign a part URL"},
		{attacker: "HEAD batch-signing parts", method: "HEAD", path: "/s3/multipart/" + uid + "/batch" + q + "&partNumbers=1,2", as: alice, status: 405, mustNot: "sign part URLs"},
		// A page served on intake's own host over plain HTTP (by a network attacker, where the
		// deployment is https behind a TLS-terminating proxy): its Origin names intake's host, with
		// another scheme.
		{attacker: "page on http://<intake's host> riding the cookie to the https deployment", method: "GET", path: params, as: asCookie(victim),
			header: map[string]string{"Origin": "http://" + host, "Sec-Fetch-Site": "cross-site", "X-Forwarded-Proto": "https"}, status: 403, typ: "forbidden", mustNot: "create an intent for the victim"},
		{attacker: "page on http://<intake's host>, in a browser calling it same-site", method: "POST", path: "/s3/multipart", as: asCookie(victim),
			body:   map[string]any{"filename": "c.bin", "type": "image/png", "metadata": map[string]string{}},
			header: map[string]string{"Origin": "http://" + host, "Sec-Fetch-Site": "same-site", "Uppy-Versions": "@uppy/aws-s3=4.0.0"}, status: 403, typ: "forbidden", mustNot: "create a multipart upload for the victim"},
		{attacker: "page on http://<intake's host>, in a browser without Sec-Fetch-Site", method: "GET", path: params, as: asCookie(victim),
			header: map[string]string{"Origin": "http://" + host, "X-Forwarded-Proto": "https"}, status: 403, typ: "forbidden", mustNot: "create an intent for the victim"},
		// Credentials.
		{attacker: "anonymous caller", method: "GET", path: params, status: 401, typ: "unauthorized", mustNot: "create an intent"},
		{attacker: "operator key creating an upload (issue 12.1)", method: "GET", path: params, as: asKey(opsKey), status: 403, typ: "forbidden", mustNot: "create an intent"},
		// Bob reaches for Alice's upload: not found, as if it did not exist.
		{attacker: "tenant listing another's parts", method: "GET", path: "/s3/multipart/" + uid + q, as: asKey(bobKey), status: 404, typ: "not-found", mustNot: "list the parts"},
		{attacker: "tenant signing a part of another's upload", method: "GET", path: "/s3/multipart/" + uid + "/1" + q, as: asKey(bobKey), status: 404, typ: "not-found", mustNot: "sign a part URL"},
		{attacker: "tenant batch-signing parts of another's upload", method: "GET", path: "/s3/multipart/" + uid + "/batch" + q + "&partNumbers=1,2", as: asKey(bobKey), status: 404, typ: "not-found", mustNot: "sign part URLs"},
		{attacker: "tenant completing another's upload", method: "POST", path: "/s3/multipart/" + uid + "/complete" + q, as: asKey(bobKey), body: complete, status: 404, typ: "not-found", mustNot: "complete alice's upload"},
		{attacker: "tenant aborting another's upload", method: "DELETE", path: "/s3/multipart/" + uid + q, as: asKey(bobKey), status: 404, typ: "not-found", mustNot: "abort alice's upload"},
		{attacker: "tenant naming its own prefix with another's upload id", method: "GET", path: "/s3/multipart/" + uid + "?key=uploads/bob/" + mp["key"].(string)[len("uploads/alice/"):], as: asKey(bobKey), status: 404, typ: "not-found", mustNot: "list the parts"},
		{attacker: "tenant naming another's key with its upload id", method: "DELETE", path: "/s3/multipart/" + danaUID + q, as: alice, status: 404, typ: "not-found", mustNot: "abort anyone's upload"},
		// Bad input from a tenant.
		{attacker: "path traversal", method: "GET", path: "/s3/params?filename=..%2Fx&type=image%2Fpng", as: alice, status: 400, typ: "invalid-filename", mustNot: "create an intent"},
		{attacker: "type not allowed", method: "GET", path: "/s3/params?filename=x.exe&type=application%2Fx-msdownload", as: alice, status: 422, typ: "type-not-allowed", mustNot: "create an intent"},
		{attacker: "repeated filename", method: "GET", path: "/s3/params?filename=a&filename=b&type=image%2Fpng", as: alice, status: 400, typ: "invalid-parameter", mustNot: "create an intent"},
		{attacker: "unknown field", method: "POST", path: "/s3/multipart", as: alice, body: map[string]any{"filename": "a", "type": "image/png", "evil": 1}, status: 400, typ: "unknown-field", mustNot: "create a multipart upload"},
		// Bodies encoding/json would read as the last of repeated members, and with names in any case.
		{attacker: "Uppy client repeating size (the last one is the smallest)", method: "POST", path: "/s3/multipart", as: alice, body: `{"filename":"a","type":"image/png","size":99999999,"size":1}`, status: 400, typ: "invalid-json", mustNot: "create a multipart upload"},
		{attacker: "Uppy client adding a type in capitals", method: "POST", path: "/s3/multipart", as: alice, body: `{"filename":"a","type":"image/png","TYPE":"text/html"}`, status: 400, typ: "unknown-field", mustNot: "create a multipart upload"},
		{attacker: "Uppy client naming a part's number in two cases", method: "POST", path: "/s3/multipart/" + uid + "/complete" + q, as: alice, body: `{"parts":[{"PartNumber":1,"ETag":"x","partNumber":2}]}`, status: 400, typ: "unknown-field", mustNot: "complete the upload"},
		{attacker: "Uppy client repeating the parts of a complete", method: "POST", path: "/s3/multipart/" + uid + "/complete" + q, as: alice, body: `{"parts":[],"parts":[{"PartNumber":1,"ETag":"x"}]}`, status: 400, typ: "invalid-json", mustNot: "complete the upload"},
		{attacker: "no key", method: "GET", path: "/s3/multipart/" + uid, as: alice, status: 400, typ: "invalid-parameter", mustNot: "list the parts"},
		{attacker: "key with a NUL under its own prefix", method: "GET", path: "/s3/multipart/" + uid + "?key=uploads/alice/%00", as: alice, status: 400, typ: "invalid-parameter", mustNot: "send PostgreSQL a NUL (a 500)"},
		{attacker: "key with invalid UTF-8 under its own prefix", method: "DELETE", path: "/s3/multipart/" + uid + "?key=uploads/alice/%FF", as: alice, status: 400, typ: "invalid-parameter", mustNot: "abort anything"},
		{attacker: "Uppy client listing 400,000 part numbers in one batch (the last not a number)", method: "GET", path: "/s3/multipart/" + uid + "/batch" + q + "&partNumbers=" + strings.Repeat("1,", 399999) + "x", as: alice,
			status: 400, typ: "invalid-parts", detail: "list 1 to 1000 part numbers", mustNot: "parse the list past the cap, or sign part URLs"},
		{attacker: "Uppy client repeating partNumbers", method: "GET", path: "/s3/multipart/" + uid + "/batch" + q + "&partNumbers=1&partNumbers=2", as: alice,
			status: 400, typ: "invalid-parameter", detail: `"partNumbers"`, mustNot: "sign part URLs"},
		{attacker: "bad part number", method: "GET", path: "/s3/multipart/" + uid + "/0" + q, as: alice, status: 400, typ: "invalid-parts", mustNot: "sign a part URL"},
		{attacker: "part of a completed upload", method: "GET", path: "/s3/multipart/" + doneUID + "/1" + doneQ, as: alice, status: 409, typ: "upload-not-pending", mustNot: "sign a part URL"},
	}
	runAttacks(t, b, familyUppy, attacks)

	// Alice's upload is untouched and still hers.
	status, _, raw := b.raw(t, "GET", "/s3/multipart/"+uid+q, aliceKey, nil)
	require.Equal(t, http.StatusOK, status, string(raw))
}

// TestCookieAuthLegitimate: the requests a browser makes from intake's own origin or a trusted one,
// and scripts that say so, keep working with the cookie (the counterparts of the cross-site rows).
func TestCookieAuthLegitimate(t *testing.T) {
	t.Parallel()
	b := setup(t)
	tok := hs256(t, nil)
	for _, h := range []map[string]string{
		{"Sec-Fetch-Site": "same-origin"},
		{"Sec-Fetch-Site": "same-origin", "Sec-Fetch-Mode": "navigate"},
		{"Origin": "https://app.example.com", "Sec-Fetch-Site": "cross-site"},
		{"Origin": "https://APP.example.com"},
		{"Origin": b.srv.URL},
		{"Origin": strings.Replace(b.srv.URL, "http://", "https://", 1), "X-Forwarded-Proto": "https"}, // behind a TLS-terminating proxy
		{"Origin": strings.Replace(b.srv.URL, "http://", "https://", 1), "Sec-Fetch-Site": "same-origin", "X-Forwarded-Proto": "https"},
		{"Origin": strings.Replace(b.srv.URL, "http://", "https://", 1), "Forwarded": `for=192.0.2.1;proto="https", for=10.0.0.1`}, // RFC 7239
		{"X-Requested-With": "XMLHttpRequest"},
		{"Uppy-Versions": "@uppy/aws-s3=4.0.0"},
	} {
		status, _, resp := b.send(t, attack{method: "GET", path: "/s3/params?filename=pic.png&type=image%2Fpng", as: asCookie(tok), header: h})
		require.Equal(t, http.StatusOK, status, "%v: %v", h, resp)
		status, _, resp = b.send(t, attack{method: "POST", path: "/s3/multipart", as: asCookie(tok), header: h,
			body: map[string]any{"filename": "c.bin", "type": "image/png", "metadata": map[string]string{}}})
		require.Equal(t, http.StatusOK, status, "%v: %v", h, resp)
	}
	var n int
	require.NoError(t, b.st.Pool.QueryRow(context.Background(), "SELECT count(*) FROM uploads WHERE owner = 'dana'").Scan(&n))
	require.Equal(t, 20, n)
}
