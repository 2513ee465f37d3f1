package objstore

import (
	"bytes"
	"io"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"
)

type recordingClient struct {
	body io.ReadCloser
}

func (r *recordingClient) Do(req *http.Request) (*http.Response, error) {
	r.body = req.Body
	return &http.Response{StatusCode: 200, Body: http.NoBody}, nil
}

// writerToBody is a request body with WriteTo, like smithy-go's safe closer.
type writerToBody struct{ *bytes.Reader }

func (writerToBody) Close() error { return nil }

func TestWrapHTTPClient(t *testing.T) {
	t.Parallel()
	rec := &recordingClient{}
	c := WrapHTTPClient(rec)
	req, err := http.NewRequest(http.MethodPost, "http://127.0.0.1:1/", nil)
	require.NoError(t, err)
	req.Body = writerToBody{bytes.NewReader([]byte(`{"QueueUrl":"q"}`))}
	req.ContentLength = 16
	_, err = c.Do(req)
	require.NoError(t, err)
	_, hasWriteTo := rec.body.(io.WriterTo)
	require.False(t, hasWriteTo, "the body reaching net/http must not offer WriteTo")
	got, err := io.ReadAll(rec.body)
	require.NoError(t, err)
	require.JSONEq(t, `{"QueueUrl":"q"}`, string(got))
	_, isWriterTo := req.Body.(io.WriterTo)
	require.True(t, isWriterTo, "the caller's request is not modified")

	// Bodiless requests pass through untouched.
	req, err = http.NewRequest(http.MethodGet, "http://127.0.0.1:1/", nil)
	require.NoError(t, err)
	_, err = c.Do(req)
	require.NoError(t, err)
	require.Nil(t, rec.body)
	require.NotNil(t, WrapHTTPClient(nil))
}
