package testkit

import (
	"bytes"
	"context"
	"fmt"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
)

// Upload is an open multipart upload.
type Upload struct {
	// Key and ID are the object key and the S3 upload id.
	Key, ID string
}

// CreateUploads creates one multipart upload per key, `workers` at a time, and returns them in the
// keys' order.
func CreateUploads(t testing.TB, ctx context.Context, client *s3.Client, bucket string, keys []string, workers int) []Upload {
	t.Helper()
	out := make([]Upload, len(keys))
	err := InParallel(len(keys), workers, func(i int) error {
		res, err := client.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: aws.String(bucket), Key: aws.String(keys[i])})
		if err != nil {
			return fmt.Errorf("create upload %s: %w", keys[i], err)
		}
		out[i] = Upload{Key: keys[i], ID: aws.ToString(res.UploadId)}
		return nil
	})
	if err != nil {
		t.Fatalf("testkit: %v", err)
	}
	return out
}

// UploadPart1 uploads part as u's part 1; with complete, it then completes u (as a client holding
// presigned URLs would, past intake).
func UploadPart1(t testing.TB, ctx context.Context, client *s3.Client, bucket string, u Upload, part []byte, complete bool) {
	t.Helper()
	res, err := client.UploadPart(ctx, &s3.UploadPartInput{Bucket: aws.String(bucket), Key: aws.String(u.Key),
		UploadId: aws.String(u.ID), PartNumber: aws.Int32(1), Body: bytes.NewReader(part)})
	if err != nil {
		t.Fatalf("testkit: upload part 1 of %s: %v", u.Key, err)
	}
	if !complete {
		return
	}
	_, err = client.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{Bucket: aws.String(bucket), Key: aws.String(u.Key),
		UploadId: aws.String(u.ID), MultipartUpload: &types.CompletedMultipartUpload{
			Parts: []types.CompletedPart{{ETag: res.ETag, PartNumber: aws.Int32(1)}}}})
	if err != nil {
		t.Fatalf("testkit: complete %s: %v", u.Key, err)
	}
}

// OpenUploads lists every open multipart upload of the bucket (no prefix: MinIO's folder prefixes
// list nothing), by upload id.
func OpenUploads(t testing.TB, ctx context.Context, client *s3.Client, bucket string) map[string]string {
	t.Helper()
	open := map[string]string{}
	p := s3.NewListMultipartUploadsPaginator(client, &s3.ListMultipartUploadsInput{Bucket: aws.String(bucket)})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			t.Fatalf("testkit: list multipart uploads of %s: %v", bucket, err)
		}
		for _, u := range page.Uploads {
			open[aws.ToString(u.UploadId)] = aws.ToString(u.Key)
		}
	}
	return open
}
