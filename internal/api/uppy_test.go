package api

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/intakehq/intake/internal/testkit"
)

// TestUppyRoutesShapes walks Uppy's Companion routes with the exact request and response shapes
// @uppy/aws-s3 uses (the browser test runs the real client).
func TestUppyRoutesShapes(t *testing.T) {
	t.Parallel()
	b := setup(t)

	// /s3/params → a POST policy bound by the policy's max size and the exact type.
	status, _, resp := b.call(t, "GET", "/s3/params?filename="+url.QueryEscape("pic 1.png")+"&type=image%2Fpng&metadata%5Bname%5D=pic", aliceKey, nil)
	require.Equal(t, http.StatusOK, status, resp)
	require.Equal(t, "POST", resp["method"])
	require.Equal(t, float64(300), resp["expires"])
	fields := resp["fields"].(map[string]any)
	for _, f := range []string{"key", "policy", "X-Amz-Signature", "X-Amz-Credential", "X-Amz-Date", "X-Amz-Algorithm", "Content-Type"} {
		require.NotEmpty(t, fields[f], f)
	}
	require.Equal(t, http.StatusNoContent, postForm(t, resp["url"].(string), fields, []byte("png bytes"), nil))
	require.Equal(t, http.StatusBadRequest, postForm(t, resp["url"].(string), fields, bytes.Repeat([]byte("x"), maxPolicy+1), nil), "over the policy's max size")

	// Multipart: create, sign one part, batch-sign, list, complete, then abort another.
	status, _, resp = b.call(t, "POST", "/s3/multipart", aliceKey, map[string]any{"filename": "v.bin", "type": "application/octet-stream", "metadata": map[string]string{"name": "v.bin"}})
	require.Equal(t, http.StatusOK, status, resp)
	key, uploadID := resp["key"].(string), resp["uploadId"].(string)
	require.Equal(t, b.bucket, resp["bucket"])
	q := "?key=" + url.QueryEscape(key)

	status, _, resp = b.call(t, "GET", "/s3/multipart/"+url.PathEscape(uploadID)+"/1"+q, aliceKey, nil)
	require.Equal(t, http.StatusOK, status, resp)
	require.NotEmpty(t, resp["url"])
	require.Equal(t, float64(300), resp["expires"])
	part1 := bytes.Repeat([]byte{1}, 5<<20)
	code, _ := testkit.Do(t, http.MethodPut, resp["url"].(string), part1, nil)
	require.Equal(t, http.StatusOK, code)

	status, _, resp = b.call(t, "GET", "/s3/multipart/"+url.PathEscape(uploadID)+"/batch"+q+"&partNumbers=2,3", aliceKey, nil)
	require.Equal(t, http.StatusOK, status, resp)
	urls := resp["presignedUrls"].(map[string]any)
	require.Len(t, urls, 2)
	req, _ := http.NewRequest(http.MethodPut, urls["2"].(string), bytes.NewReader([]byte("tail")))
	r2, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	_ = r2.Body.Close()
	require.Equal(t, http.StatusOK, r2.StatusCode)

	_, _, raw := b.raw(t, "GET", "/s3/multipart/"+url.PathEscape(uploadID)+q, aliceKey, nil)
	var listed []map[string]any
	require.NoError(t, json.Unmarshal(raw, &listed), string(raw))
	require.Len(t, listed, 2)
	require.Equal(t, float64(1), listed[0]["PartNumber"])
	require.Equal(t, float64(5<<20), listed[0]["Size"])
	etag1 := listed[0]["ETag"].(string)
	require.Equal(t, r2.Header.Get("ETag"), listed[1]["ETag"])

	status, _, resp = b.call(t, "POST", "/s3/multipart/"+url.PathEscape(uploadID)+"/complete"+q, aliceKey,
		map[string]any{"parts": []map[string]any{{"PartNumber": 2, "ETag": r2.Header.Get("ETag")}, {"PartNumber": 1, "ETag": etag1}}})
	require.Equal(t, http.StatusOK, status, resp)
	require.Equal(t, key, resp["key"])
	require.Equal(t, b.bucket, resp["bucket"])
	require.NotEmpty(t, resp["location"])
	require.Len(t, b.get(t, key), 5<<20+4)

	_, _, resp = b.call(t, "POST", "/s3/multipart", aliceKey, map[string]any{"filename": "w.bin", "type": "application/octet-stream", "metadata": map[string]string{}})
	q2 := "?key=" + url.QueryEscape(resp["key"].(string))
	status, _, raw = b.raw(t, "DELETE", "/s3/multipart/"+url.PathEscape(resp["uploadId"].(string))+q2, aliceKey, nil)
	require.Equal(t, http.StatusOK, status)
	require.JSONEq(t, "{}", string(raw))
}

// TestUppyMetadataKeptAsV1Keeps: Uppy's metadata is kept and refused exactly as POST /v1/uploads
// keeps and refuses it (parseMetadata): an integer past float64's precision is stored digit for
// digit, and a lone surrogate (an escape in POST /s3/multipart's JSON, its WTF-8 bytes in a query)
// is refused with Uppy's error shape, nothing created, rather than turned into U+FFFD.
func TestUppyMetadataKeptAsV1Keeps(t *testing.T) {
	t.Parallel()
	b := setup(t)
	stored := func(key string) (meta string, size int64, declared bool) {
		t.Helper()
		require.NoError(t, b.st.Pool.QueryRow(context.Background(),
			"SELECT metadata::text, size, size_declared FROM uploads WHERE key = $1", key).Scan(&meta, &size, &declared))
		return meta, size, declared
	}

	status, _, resp := b.call(t, "POST", "/s3/multipart", aliceKey, `{"filename":"n.bin","type":"image/png","metadata":{"n":12345678901234567890}}`)
	require.Equal(t, http.StatusOK, status, resp)
	meta, _, declared := stored(resp["key"].(string))
	require.JSONEq(t, `{"n": 12345678901234567890}`, meta)
	require.Contains(t, meta, "12345678901234567890", "digit for digit, as /v1 keeps it")
	require.False(t, declared)
	id := strings.Split(resp["key"].(string), "/")[2]
	_, _, raw := b.raw(t, "GET", "/v1/uploads/"+id, aliceKey, nil)
	require.Contains(t, string(raw), `"n":12345678901234567890`, "returned with the status as stored")

	// metadata.size still declares the size, read from the metadata as sent.
	status, _, resp = b.call(t, "POST", "/s3/multipart", aliceKey, `{"filename":"s.bin","type":"image/png","metadata":{"size":6291456,"n":12345678901234567890}}`)
	require.Equal(t, http.StatusOK, status, resp)
	meta, size, declared := stored(resp["key"].(string))
	require.JSONEq(t, `{"size": 6291456, "n": 12345678901234567890}`, meta)
	require.True(t, declared)
	require.Equal(t, int64(6291456), size)

	// /s3/params: query values are strings, kept as sent.
	status, _, resp = b.call(t, "GET", "/s3/params?filename=p.png&type=image%2Fpng&metadata%5Bn%5D=12345678901234567890", aliceKey, nil)
	require.Equal(t, http.StatusOK, status, resp)
	meta, _, _ = stored(resp["fields"].(map[string]any)["key"].(string))
	require.JSONEq(t, `{"n": "12345678901234567890"}`, meta)

	runAttacks(t, b, familyUppy, []attack{
		{attacker: "Uppy client with a lone surrogate escape in metadata", method: "POST", path: "/s3/multipart", as: asKey(aliceKey),
			body:   `{"filename":"x.bin","type":"image/png","metadata":{"k":"\ud800"}}`,
			status: 400, typ: "invalid-metadata", detail: "surrogate", mustNot: "create an intent or a multipart upload"},
		{attacker: "Uppy client with a lone surrogate escape in a metadata key", method: "POST", path: "/s3/multipart", as: asKey(aliceKey),
			body:   `{"filename":"x.bin","type":"image/png","metadata":{"\udc00":1}}`,
			status: 400, typ: "invalid-metadata", mustNot: "create an intent or a multipart upload"},
		{attacker: "Uppy client with a lone surrogate (WTF-8) in a metadata query value", method: "GET", as: asKey(aliceKey),
			path:   "/s3/params?filename=x.png&type=image%2Fpng&metadata%5Bk%5D=%ED%A0%80",
			status: 400, typ: "invalid-metadata", detail: "UTF-8", mustNot: "create an intent or sign a policy"},
		{attacker: "Uppy client with invalid UTF-8 in a metadata query name", method: "GET", as: asKey(aliceKey),
			path:   "/s3/params?filename=x.png&type=image%2Fpng&metadata%5B%FF%5D=v",
			status: 400, typ: "invalid-metadata", mustNot: "create an intent or sign a policy"},
		{attacker: "Uppy client with metadata that is not an object", method: "POST", path: "/s3/multipart", as: asKey(aliceKey),
			body:   `{"filename":"x.bin","type":"image/png","metadata":["size"]}`,
			status: 400, typ: "invalid-metadata", mustNot: "create an intent or a multipart upload"},
	})
}
