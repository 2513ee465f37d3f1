package api

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/url"
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
