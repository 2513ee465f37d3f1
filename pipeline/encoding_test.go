package pipeline_test

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/stretchr/testify/require"

	"github.com/intakehq/intake/pipeline"
)

// TestProcessRejectsAnEncodingTheURLDidNotSign: a presigned PUT signs the type and length, and S3
// stores the standard headers an uploader adds besides (MinIO and S3 both do). With
// Content-Encoding: gzip the bytes intake inspects are the compressed ones, while a browser
// decompresses them first: an HTML page compressed and declared text/plain passes every check on
// its compressed bytes. The attacker is the holder of an upload URL; the side effect that must not
// happen is a "valid" verdict on an encoded object. An object written without an intent (another
// writer of the bucket) may carry any encoding.
func TestProcessRejectsAnEncodingTheURLDidNotSign(t *testing.T) {
	t.Parallel()
	var page bytes.Buffer
	zw := gzip.NewWriter(&page)
	_, err := zw.Write([]byte("<html><script>alert(document.cookie)</script></html>"))
	require.NoError(t, err)
	require.NoError(t, zw.Close())
	b := setupProc(t, procOpts{policy: &pipeline.Policy{Rules: []pipeline.Rule{{Prefix: "", Action: pipeline.ActionNone}}}})
	for i, c := range []struct {
		name, encoding string
		intent         bool
		status, reason string
	}{
		{"intent, gzip", "gzip", true, pipeline.StatusRejected, pipeline.ReasonEncoded},
		{"intent, mixed case", "GZip", true, pipeline.StatusRejected, pipeline.ReasonEncoded},
		{"intent, identity", "identity", true, pipeline.StatusValid, ""},
		{"intent, none", "", true, pipeline.StatusValid, ""},
		{"no intent, gzip", "gzip", false, pipeline.StatusValid, ""},
	} {
		key := fmt.Sprintf("enc-%d.txt", i)
		if c.intent {
			b.intent(t, intentSpec{key: key, contentType: "text/plain", size: int64(page.Len())})
		}
		in := &s3.PutObjectInput{Bucket: aws.String(b.bucket), Key: aws.String(key), Body: bytes.NewReader(page.Bytes()), ContentType: aws.String("text/plain")}
		if c.encoding != "" {
			in.ContentEncoding = aws.String(c.encoding)
		}
		_, err := b.s3.PutObject(b.ctx, in)
		require.NoError(t, err, c.name)
		require.NoError(t, b.process(t, b.created(key, "0A", t0)), c.name)
		row := b.row(t, key)
		require.Equal(t, c.status, row.Status, c.name)
		if c.reason == "" {
			require.Nil(t, row.Reason, c.name)
		} else {
			require.Equal(t, c.reason, *row.Reason, c.name)
		}
	}
}
