package api

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/intakehq/intake/internal/config"
	"github.com/intakehq/intake/internal/testkit"
)

// This file and uppy_adversarial_test.go hold the adversarial tables of the API's surfaces (the /v1
// routes, and Uppy's /s3 routes). Each row names the attacker, the request, the expected status and
// problem type, and the side effect that must NOT happen; the runner checks, around every row, that
// no intent appeared or changed status, no abort was recorded or scheduled, no S3 multipart upload
// appeared or went away and no presigned URL was handed out.

// creds are the credentials an attacker presents: an API key (X-API-Key), a bearer token, and/or
// the auth cookie.
type creds struct{ key, bearer, cookie string }

func asKey(k string) creds    { return creds{key: k} }
func asBearer(t string) creds { return creds{bearer: t} }
func asCookie(t string) creds { return creds{cookie: t} }

// attack is one row of an adversarial table. A row that names its attacker is an attack: its
// request may break openapi.json on purpose, so the contract checks only its response
// (testkit.OffContract); requests without an attacker must follow the document.
type attack struct {
	attacker     string // who, doing what
	method, path string
	as           creds
	body         any               // nil, a string or []byte sent as is, or a value sent as JSON
	header       map[string]string // extra request headers (Origin, Sec-Fetch-Site, ...)
	status       int
	typ          string // problem slug ("" skips the check)
	detail       string // a part of the problem's detail (Uppy's routes: its error) ("" skips the check)
	mustNot      string // the side effect that must not happen
}

// effects are what a request could change: the runner compares them before and after each row.
type effects struct {
	Intents   map[string]string // id → status
	Aborts    int               // rows of multipart_aborts
	S3Uploads []string          // open multipart uploads in the bucket
	Presigns  float64           // intake_presigns_total, all methods
	Scheduled int               // multipart aborts scheduled
}

func (b *testBundle) effects(t *testing.T) effects {
	t.Helper()
	ctx := context.Background()
	e := effects{Intents: map[string]string{}, Scheduled: len(b.aborts.calls)}
	rows, err := b.st.Pool.Query(ctx, "SELECT id::text, status FROM uploads")
	require.NoError(t, err)
	for rows.Next() {
		var id, st string
		require.NoError(t, rows.Scan(&id, &st))
		e.Intents[id] = st
	}
	require.NoError(t, rows.Err())
	require.NoError(t, b.st.Pool.QueryRow(ctx, "SELECT count(*) FROM multipart_aborts").Scan(&e.Aborts))
	out, err := b.s3.ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{Bucket: aws.String(b.bucket)})
	require.NoError(t, err)
	for _, u := range out.Uploads {
		e.S3Uploads = append(e.S3Uploads, aws.ToString(u.UploadId))
	}
	slices.Sort(e.S3Uploads)
	mfs, err := b.registry.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() == "intake_presigns_total" {
			for _, m := range mf.GetMetric() {
				e.Presigns += m.GetCounter().GetValue()
			}
		}
	}
	return e
}

// send makes the attacker's request and returns the status, headers and JSON body (nil when the
// body is not an object).
func (b *testBundle) send(t *testing.T, a attack) (int, http.Header, map[string]any) {
	t.Helper()
	status, h, raw := b.sendRaw(t, a)
	var out map[string]any
	if len(raw) > 0 && raw[0] == '{' {
		require.NoError(t, json.Unmarshal(raw, &out), string(raw))
	}
	return status, h, out
}

// sendRaw makes the attacker's request and returns the status, headers and body.
func (b *testBundle) sendRaw(t *testing.T, a attack) (int, http.Header, []byte) {
	t.Helper()
	var rd io.Reader
	switch v := a.body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(v)
	case []byte:
		rd = bytes.NewReader(v)
	default:
		raw, err := json.Marshal(v)
		require.NoError(t, err)
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(a.method, b.srv.URL+a.path, rd)
	require.NoError(t, err)
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if a.as.key != "" {
		req.Header.Set("X-API-Key", a.as.key)
	}
	if a.as.bearer != "" {
		req.Header.Set("Authorization", "Bearer "+a.as.bearer)
	}
	if a.as.cookie != "" {
		req.AddCookie(&http.Cookie{Name: "intake_token", Value: a.as.cookie})
	}
	for k, v := range a.header {
		if k == "Host" {
			req.Host = v // what a page whose domain resolves to 127.0.0.1 sends
			continue
		}
		req.Header.Set(k, v)
	}
	if a.attacker != "" {
		req.Header.Set(testkit.OffContract, "attack")
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, resp.Header, raw
}

// runAttacks runs the rows one after the other (so that a side effect is attributed to its row)
// and checks each one's status, problem and absence of side effects. fam selects the error format
// (problem+json for /v1, {"error", "type"} for Uppy's routes).
func runAttacks(t *testing.T, b *testBundle, fam family, attacks []attack) {
	t.Helper()
	for _, a := range attacks {
		before := b.effects(t)
		status, h, body := b.send(t, a)
		require.Equal(t, a.status, status, "%s: %s %s: %v", a.attacker, a.method, a.path, body)
		if a.method == http.MethodHead {
			// A HEAD answer has no body: the problem shows in its headers only, on both families.
			require.True(t, strings.HasPrefix(h.Get("Content-Type"), "application/problem+json"), a.attacker)
			if a.status == http.StatusMethodNotAllowed {
				require.Contains(t, h.Get("Allow"), "GET", a.attacker)
			}
			require.Equal(t, before, b.effects(t), "%s: must not %s", a.attacker, a.mustNot)
			continue
		}
		require.NotContains(t, body, "url", a.attacker)
		switch fam {
		case familyV1:
			require.True(t, strings.HasPrefix(h.Get("Content-Type"), "application/problem+json"), a.attacker)
			require.Equal(t, float64(a.status), body["status"], a.attacker)
			require.Equal(t, "urn:request:"+h.Get("X-Request-Id"), body["instance"], a.attacker)
		case familyUppy:
			require.Equal(t, "application/json", h.Get("Content-Type"), a.attacker)
			require.NotEmpty(t, body["error"], a.attacker)
		}
		if a.typ != "" {
			require.Equal(t, ProblemBase+a.typ, body["type"], a.attacker)
		}
		if a.detail != "" {
			detail := body["detail"]
			if fam == familyUppy {
				detail = body["error"]
			}
			require.Contains(t, detail, a.detail, a.attacker)
		}
		require.Equal(t, before, b.effects(t), "%s: must not %s", a.attacker, a.mustNot)
	}
}

// hs256 signs a token with the test secret: the claims of a valid token for dana, changed by mod.
func hs256(t *testing.T, mod func(jwt.MapClaims)) string {
	t.Helper()
	c := jwt.MapClaims{"sub": "dana", "iss": "https://issuer.test", "aud": "intake", "exp": time.Now().Add(time.Minute).Unix()}
	if mod != nil {
		mod(c)
	}
	return testkit.SignJWT(t, jwt.SigningMethodHS256, []byte(jwtSecret), "", c)
}

// rawCursor builds a cursor from any microsecond count and id, as an attacker can.
func rawCursor(micros int64, id uuid.UUID) string {
	var b [24]byte
	binary.BigEndian.PutUint64(b[:8], uint64(micros))
	copy(b[8:], id[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// crossSite are the headers of a request a page on another site makes the victim's browser send.
var crossSite = map[string]string{"Origin": "https://evil.example.net", "Sec-Fetch-Site": "cross-site"}

// TestAPIAttacks is the adversarial table of the /v1 routes.
func TestAPIAttacks(t *testing.T) {
	t.Parallel()
	b := setup(t)
	// Alice's resources: a pending multipart upload, a pending PUT, a valid object.
	status, _, mp := b.call(t, "POST", "/v1/uploads", aliceKey, map[string]any{"filename": "m.bin", "content_type": "image/png", "size": 6 << 20, "method": "multipart"})
	require.Equal(t, http.StatusCreated, status, mp)
	status, _, put := b.call(t, "POST", "/v1/uploads", aliceKey, map[string]any{"filename": "p.png", "content_type": "image/png", "size": 10})
	require.Equal(t, http.StatusCreated, status, put)
	obj := insertObject(t, b, "alice", "uploads/alice/o/v", "valid", time.Now())
	mpID, putID := mp["id"].(string), put["id"].(string)
	// Dana's cookie, as her browser holds it, and her valid object.
	victim := hs256(t, nil)
	danaObj := insertObject(t, b, "dana", "uploads/dana/o/v", "valid", time.Now())

	upload := func(mod func(m map[string]any)) map[string]any {
		m := map[string]any{"filename": "a.txt", "content_type": "text/plain", "size": 10}
		if mod != nil {
			mod(m)
		}
		return m
	}
	post := func(attacker string, as creds, body any, status int, typ string) attack {
		return attack{attacker: attacker, method: "POST", path: "/v1/uploads", as: as, body: body, status: status, typ: typ, mustNot: "create an intent or sign a URL"}
	}
	alice := asKey(aliceKey)
	attacks := []attack{
		// Credentials.
		post("anonymous caller", creds{}, upload(nil), 401, "unauthorized"),
		post("key guesser", asKey("not-a-key-0123456789"), upload(nil), 401, "unauthorized"),
		post("client sending Basic credentials", creds{}, upload(nil), 401, "unauthorized"),
		post("forger with another secret", asBearer(testkit.SignJWT(t, jwt.SigningMethodHS256, []byte(strings.Repeat("x", 40)), "", jwt.MapClaims{"sub": "dana", "iss": "https://issuer.test", "aud": "intake", "exp": time.Now().Add(time.Minute).Unix()})), upload(nil), 401, "unauthorized"),
		post("user of another application of the same IdP (issue 12.9)", asBearer(hs256(t, func(c jwt.MapClaims) { c["aud"] = "other" })), upload(nil), 401, "unauthorized"),
		post("token without audience (issue 12.9)", asBearer(hs256(t, func(c jwt.MapClaims) { delete(c, "aud") })), upload(nil), 401, "unauthorized"),
		post("token of another issuer (issue 12.9)", asBearer(hs256(t, func(c jwt.MapClaims) { c["iss"] = "https://evil.test" })), upload(nil), 401, "unauthorized"),
		post("token without issuer (issue 12.9)", asBearer(hs256(t, func(c jwt.MapClaims) { delete(c, "iss") })), upload(nil), 401, "unauthorized"),
		post("holder of an expired token", asBearer(hs256(t, func(c jwt.MapClaims) { c["exp"] = time.Now().Add(-time.Hour).Unix() })), upload(nil), 401, "unauthorized"),
		post("holder of a token without expiry", asBearer(hs256(t, func(c jwt.MapClaims) { delete(c, "exp") })), upload(nil), 401, "unauthorized"),
		post("subject escaping its prefix", asBearer(hs256(t, func(c jwt.MapClaims) { c["sub"] = "a/b" })), upload(nil), 401, "unauthorized"),
		post("token without subject", asBearer(hs256(t, func(c jwt.MapClaims) { delete(c, "sub") })), upload(nil), 401, "unauthorized"),
		post("alg none", asBearer(testkit.SignJWT(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, "", jwt.MapClaims{"sub": "dana", "iss": "https://issuer.test", "aud": "intake", "exp": time.Now().Add(time.Minute).Unix()})), upload(nil), 401, "unauthorized"),
		post("garbage token", asBearer("not.a.jwt"), upload(nil), 401, "unauthorized"),
		// Issue 12.1: operator keys act for no tenant.
		post("operator key creating an upload", asKey(opsKey), upload(nil), 403, "forbidden"),
		{attacker: "operator key listing objects", method: "GET", path: "/v1/objects", as: asBearer(opsKey), status: 403, typ: "forbidden", mustNot: "list anyone's objects"},
		// Issue 12.10: a page on another site rides the victim's cookie.
		{attacker: "cross-site form posting /v1/uploads with the victim's cookie", method: "POST", path: "/v1/uploads", as: asCookie(victim), body: upload(nil), header: crossSite, status: 403, typ: "forbidden", mustNot: "create an intent for the victim"},
		{attacker: "cross-site form from a browser without Sec-Fetch-Site", method: "POST", path: "/v1/uploads", as: asCookie(victim), body: upload(nil), header: map[string]string{"Origin": "https://evil.example.net"}, status: 403, typ: "forbidden", mustNot: "create an intent for the victim"},
		{attacker: "sibling subdomain posting with the victim's cookie", method: "POST", path: "/v1/uploads", as: asCookie(victim), body: upload(nil), header: map[string]string{"Origin": "https://evil.app.example.com", "Sec-Fetch-Site": "same-site"}, status: 403, typ: "forbidden", mustNot: "create an intent for the victim"},
		{attacker: "cross-site script adding X-Requested-With", method: "POST", path: "/v1/uploads", as: asCookie(victim), body: upload(nil), header: map[string]string{"Origin": "https://evil.example.net", "Sec-Fetch-Site": "cross-site", "X-Requested-With": "XMLHttpRequest"}, status: 403, typ: "forbidden", mustNot: "create an intent for the victim"},
		{attacker: "cross-site navigation to a download with the victim's cookie", method: "GET", path: "/v1/objects/" + danaObj + "/download", as: asCookie(victim), header: map[string]string{"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate"}, status: 403, typ: "forbidden", mustNot: "sign a download URL"},
		{attacker: "cross-site image tag from a browser without Sec-Fetch-Site", method: "GET", path: "/v1/objects", as: asCookie(victim), status: 403, typ: "forbidden", mustNot: "answer with the victim's objects"},
		// Bob reaches for Alice's uploads and objects: not found, as if they did not exist.
		{attacker: "tenant presigning parts of another's upload", method: "POST", path: "/v1/uploads/" + mpID + "/parts", as: asKey(bobKey), body: map[string]any{"part_numbers": []int{1}}, status: 404, typ: "not-found", mustNot: "sign a part URL"},
		{attacker: "tenant listing another's parts", method: "GET", path: "/v1/uploads/" + mpID + "/parts", as: asKey(bobKey), status: 404, typ: "not-found", mustNot: "list the parts"},
		{attacker: "tenant completing another's upload", method: "POST", path: "/v1/uploads/" + mpID + "/complete", as: asKey(bobKey), body: map[string]any{"parts": []any{map[string]any{"part_number": 1, "etag": "x"}}}, status: 404, typ: "not-found", mustNot: "complete the upload"},
		{attacker: "tenant aborting another's multipart upload", method: "DELETE", path: "/v1/uploads/" + mpID, as: asKey(bobKey), status: 404, typ: "not-found", mustNot: "abort alice's upload"},
		{attacker: "tenant aborting another's PUT", method: "DELETE", path: "/v1/uploads/" + putID, as: asKey(bobKey), status: 404, typ: "not-found", mustNot: "change alice's intent"},
		{attacker: "tenant reading another's object", method: "GET", path: "/v1/objects/" + obj, as: asKey(bobKey), status: 404, typ: "not-found", mustNot: "show alice's object"},
		{attacker: "tenant downloading another's object", method: "GET", path: "/v1/objects/" + obj + "/download", as: asKey(bobKey), status: 404, typ: "not-found", mustNot: "sign a download URL"},
		{attacker: "tenant JWT downloading another's object", method: "GET", path: "/v1/objects/" + obj + "/download", as: asBearer(hs256(t, func(c jwt.MapClaims) { c["sub"] = "bob" })), status: 404, typ: "not-found", mustNot: "sign a download URL"},
		// Bad input from a tenant.
		post("path traversal", alice, upload(func(m map[string]any) { m["filename"] = "../../etc/passwd" }), 400, "invalid-filename"),
		post("dot dot", alice, upload(func(m map[string]any) { m["filename"] = ".." }), 400, "invalid-filename"),
		post("backslash", alice, upload(func(m map[string]any) { m["filename"] = `..\x.txt` }), 400, "invalid-filename"),
		post("control character", alice, upload(func(m map[string]any) { m["filename"] = "a\x00b.txt" }), 400, "invalid-filename"),
		post("newline", alice, upload(func(m map[string]any) { m["filename"] = "a\nb.txt" }), 400, "invalid-filename"),
		post("bidi override", alice, upload(func(m map[string]any) { m["filename"] = "gpj.\u202eexe" }), 400, "invalid-filename"),
		post("name over 255 bytes", alice, upload(func(m map[string]any) { m["filename"] = strings.Repeat("é", 128) }), 400, "invalid-filename"),
		post("empty name", alice, upload(func(m map[string]any) { m["filename"] = "" }), 400, "invalid-filename"),
		post("dot dot behind a space (the key is made of the trimmed name)", alice, upload(func(m map[string]any) { m["filename"] = " .." }), 400, "invalid-filename"),
		post("dot dot before an ideographic space", alice, upload(func(m map[string]any) { m["filename"] = "..\u3000" }), 400, "invalid-filename"),
		// Metadata PostgreSQL's jsonb refuses: a 500 for the caller, and a split batch that
		// slows every other tenant's intent rows, before these were checked.
		post("metadata with invalid UTF-8", alice, "{\"filename\":\"a.txt\",\"content_type\":\"text/plain\",\"size\":10,\"metadata\":{\"k\":\"a\xffb\"}}", 400, "invalid-metadata"),
		post("metadata with a lone high surrogate", alice, `{"filename":"a.txt","content_type":"text/plain","size":10,"metadata":{"k":"\ud800"}}`, 400, "invalid-metadata"),
		post("metadata with a lone low surrogate", alice, `{"filename":"a.txt","content_type":"text/plain","size":10,"metadata":{"k":"x\udc00"}}`, 400, "invalid-metadata"),
		post("metadata with a reversed surrogate pair", alice, `{"filename":"a.txt","content_type":"text/plain","size":10,"metadata":{"k":"\ude00\ud83d"}}`, 400, "invalid-metadata"),
		post("metadata with a number past numeric's range", alice, `{"filename":"a.txt","content_type":"text/plain","size":10,"metadata":{"k":1e200000}}`, 400, "invalid-metadata"),
		post("metadata with a number below numeric's range", alice, `{"filename":"a.txt","content_type":"text/plain","size":10,"metadata":{"k":-1e-20000}}`, 400, "invalid-metadata"),
		post("metadata with a NUL in a key", alice, `{"filename":"a.txt","content_type":"text/plain","size":10,"metadata":{"k\u0000":1}}`, 400, "invalid-metadata"),
		post("size over policy", alice, upload(func(m map[string]any) { m["size"] = maxPolicy + 1 }), 422, "too-large"),
		post("negative size", alice, upload(func(m map[string]any) { m["size"] = -1 }), 400, "invalid-size"),
		post("missing size", alice, upload(func(m map[string]any) { delete(m, "size") }), 400, "invalid-size"),
		post("type not allowed", alice, upload(func(m map[string]any) { m["content_type"] = "application/x-msdownload" }), 422, "type-not-allowed"),
		post("malformed type", alice, upload(func(m map[string]any) { m["content_type"] = "text" }), 400, "invalid-content-type"),
		post("type with CRLF", alice, upload(func(m map[string]any) { m["content_type"] = "text/plain\r\nX-Evil: 1" }), 400, "invalid-content-type"),
		post("type growing past 255 bytes when normalized", alice, upload(func(m map[string]any) { m["content_type"] = longParams() }), 400, "invalid-content-type"),
		post("expiry over the cap", alice, upload(func(m map[string]any) { m["expires_in"] = 3601 }), 400, "expiry-too-long"),
		post("negative expiry", alice, upload(func(m map[string]any) { m["expires_in"] = -5 }), 400, "invalid-expiry"),
		post("bad sha256", alice, upload(func(m map[string]any) { m["sha256"] = "zz" }), 400, "invalid-sha256"),
		post("bad method", alice, upload(func(m map[string]any) { m["method"] = "patch" }), 400, "invalid-method"),
		post("malformed JSON", alice, `{"filename": "a.txt",`, 400, "invalid-json"),
		post("wrong JSON type", alice, `{"filename": 5}`, 400, "invalid-json"),
		post("two JSON values", alice, `{"filename":"a","content_type":"text/plain","size":1} {}`, 400, "invalid-json"),
		post("tenant naming another owner", alice, upload(func(m map[string]any) { m["owner"] = "bob" }), 400, "unknown-field"),
		// A body that reads one way to a first-wins or case-sensitive reader (a gateway, a log) and
		// another to encoding/json, which keeps the last of repeated members and matches names in
		// any case.
		post("tenant repeating size (a first-wins reader sees 1 byte)", alice, `{"filename":"a.txt","content_type":"text/plain","size":1,"size":4000000}`, 400, "invalid-json"),
		post("tenant adding a content type in capitals after the allowed one", alice, `{"filename":"a.txt","content_type":"image/png","CONTENT_TYPE":"text/html","size":10}`, 400, "unknown-field"),
		post("tenant naming a member in another case only", alice, `{"filename":"a.txt","Content_Type":"text/plain","size":10}`, 400, "unknown-field"),
		post("tenant repeating a member behind an escape", alice, `{"filename":"a.txt","content_type":"text/plain","size":1,"s\u0069ze":2}`, 400, "invalid-json"),
		{attacker: "tenant repeating part_numbers", method: "POST", path: "/v1/uploads/" + mpID + "/parts", as: alice, body: `{"part_numbers":[1],"part_numbers":[2]}`, status: 400, typ: "invalid-json", mustNot: "sign a part URL"},
		{attacker: "tenant naming part_numbers in capitals", method: "POST", path: "/v1/uploads/" + mpID + "/parts", as: alice, body: `{"PART_NUMBERS":[1]}`, status: 400, typ: "unknown-field", mustNot: "sign a part URL"},
		{attacker: "tenant repeating the parts of a complete", method: "POST", path: "/v1/uploads/" + mpID + "/complete", as: alice, body: `{"parts":[],"parts":[{"part_number":1,"etag":"x"}]}`, status: 400, typ: "invalid-json", mustNot: "complete the upload"},
		{attacker: "tenant naming a part's number twice in two cases", method: "POST", path: "/v1/uploads/" + mpID + "/complete", as: alice, body: `{"parts":[{"part_number":1,"etag":"x","PART_NUMBER":2}]}`, status: 400, typ: "unknown-field", mustNot: "complete the upload"},
		post("body over 64 KiB", alice, upload(func(m map[string]any) { m["filename"] = strings.Repeat("a", 70<<10) }), 413, "request-too-large"),
		{attacker: "bad cursor", method: "GET", path: "/v1/objects?cursor=nope", as: alice, status: 400, typ: "invalid-cursor", mustNot: "query with a made-up cursor"},
		{attacker: "cursor before year 1", method: "GET", path: "/v1/objects?cursor=" + rawCursor(math.MinInt64, uuid.New()), as: alice, status: 400, typ: "invalid-cursor", mustNot: "send PostgreSQL an out-of-range time (a 500)"},
		{attacker: "cursor after year 9999", method: "GET", path: "/v1/objects?cursor=" + rawCursor(math.MaxInt64, uuid.New()), as: alice, status: 400, typ: "invalid-cursor", mustNot: "send PostgreSQL an out-of-range time (a 500)"},
		{attacker: "prefix with a NUL", method: "GET", path: "/v1/objects?prefix=uploads%00", as: alice, status: 400, typ: "invalid-parameter", mustNot: "send PostgreSQL a NUL (a 500)"},
		{attacker: "prefix with invalid UTF-8", method: "GET", path: "/v1/objects?prefix=%FF", as: alice, status: 400, typ: "invalid-parameter", mustNot: "query"},
		// Repeated query parameters: url.Values.Get reads the first, a proxy or a cache may read another.
		{attacker: "tenant repeating limit", method: "GET", path: "/v1/objects?limit=1&limit=500", as: alice, status: 400, typ: "invalid-parameter", detail: `"limit"`, mustNot: "query"},
		{attacker: "tenant repeating cursor", method: "GET", path: "/v1/objects?cursor=" + rawCursor(0, uuid.New()) + "&cursor=nope", as: alice, status: 400, typ: "invalid-parameter", detail: `"cursor"`, mustNot: "query"},
		{attacker: "tenant repeating a download's expires_in", method: "GET", path: "/v1/objects/" + obj + "/download?expires_in=60&expires_in=999999", as: alice, status: 400, typ: "invalid-parameter", detail: `"expires_in"`, mustNot: "sign a download URL"},
		{attacker: "limit zero", method: "GET", path: "/v1/objects?limit=0", as: alice, status: 400, typ: "invalid-limit", mustNot: "query"},
		{attacker: "limit too big", method: "GET", path: "/v1/objects?limit=100000", as: alice, status: 400, typ: "invalid-limit", mustNot: "query"},
		{attacker: "object id not a uuid", method: "GET", path: "/v1/objects/12", as: alice, status: 404, typ: "not-found", mustNot: "query"},
		{attacker: "unknown upload", method: "GET", path: "/v1/uploads/" + uuid.NewString() + "/parts", as: alice, status: 404, typ: "not-found", mustNot: "list anything"},
		// ServeMux routes HEAD to GET patterns: a HEAD must not do what the GET does.
		{attacker: "link checker sending HEAD to a download", method: "HEAD", path: "/v1/objects/" + obj + "/download", as: alice, status: 405, mustNot: "sign a download URL"},
		{attacker: "anonymous HEAD to a download", method: "HEAD", path: "/v1/objects/" + obj + "/download", status: 405, mustNot: "sign a download URL"},
		{attacker: "download expiry over the cap", method: "GET", path: "/v1/objects/" + obj + "/download?expires_in=999999", as: alice, status: 400, typ: "expiry-too-long", mustNot: "sign a download URL"},
		{attacker: "parts of a single-request upload", method: "POST", path: "/v1/uploads/" + putID + "/parts", as: alice, body: map[string]any{"part_numbers": []int{1}}, status: 409, typ: "not-multipart", mustNot: "sign a part URL"},
	}
	for _, nums := range [][]int{{}, {0}, {10001}, {1, 1}} {
		attacks = append(attacks, attack{attacker: "part numbers out of range", method: "POST", path: "/v1/uploads/" + mpID + "/parts", as: alice,
			body: map[string]any{"part_numbers": nums}, status: 400, typ: "invalid-parts", mustNot: "sign a part URL"})
	}
	runAttacks(t, b, familyV1, attacks)

	// Alice's upload is untouched and still hers.
	status, _, resp := b.call(t, "GET", "/v1/uploads/"+mpID+"/parts", aliceKey, nil)
	require.Equal(t, http.StatusOK, status, resp)
	status, _, resp = b.call(t, "GET", "/v1/objects", bobKey, nil)
	require.Equal(t, http.StatusOK, status)
	require.Empty(t, resp["objects"])
}

// TestOpenMultipartQuota: a tenant holding INTAKE_API_MAX_OPEN_MULTIPART open multipart uploads
// cannot open another (through the API or Uppy's route) until one completes, is aborted or passes
// its deadline; nothing is created for the refused request. Other tenants and single-request
// uploads are not held by it.
func TestOpenMultipartQuota(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{api: func(c *config.API) { c.MaxOpenMultipart = 3 }})
	mp := func(i int) map[string]any {
		return map[string]any{"filename": fmt.Sprintf("m%d.bin", i), "content_type": "image/png", "size": 6 << 20, "method": "multipart"}
	}
	var ids []string
	for i := range 3 {
		status, _, resp := b.call(t, "POST", "/v1/uploads", aliceKey, mp(i))
		require.Equal(t, http.StatusCreated, status, resp)
		ids = append(ids, resp["id"].(string))
	}
	alice := asKey(aliceKey)
	runAttacks(t, b, familyV1, []attack{
		{attacker: "tenant opening a fourth multipart upload over its quota of 3", method: "POST", path: "/v1/uploads", as: alice, body: mp(3),
			status: 429, typ: "too-many-open-uploads", mustNot: "create an S3 multipart upload, an intent or an abort"},
	})
	runAttacks(t, b, familyUppy, []attack{
		{attacker: "tenant opening one more through Uppy's route", method: "POST", path: "/s3/multipart", as: alice,
			body:   map[string]any{"filename": "u.bin", "type": "image/png", "metadata": map[string]string{}},
			status: 429, typ: "too-many-open-uploads", mustNot: "create an S3 multipart upload, an intent or an abort"},
	})
	require.Equal(t, 2.0, testkit.Metric(t, b.registry, "intake_multipart_open_refused_total"))

	// Not held by the quota: another tenant, and alice's single-request uploads.
	status, _, resp := b.call(t, "POST", "/v1/uploads", bobKey, mp(0))
	require.Equal(t, http.StatusCreated, status, resp)
	status, _, resp = b.call(t, "POST", "/v1/uploads", aliceKey, map[string]any{"filename": "p.png", "content_type": "image/png", "size": 10})
	require.Equal(t, http.StatusCreated, status, resp)

	// Once one of hers is aborted, she may open another.
	status, _, resp = b.call(t, "DELETE", "/v1/uploads/"+ids[0], aliceKey, nil)
	require.Less(t, status, 300, resp)
	status, _, resp = b.call(t, "POST", "/v1/uploads", aliceKey, mp(4))
	require.Equal(t, http.StatusCreated, status, resp)
}
