package sigv4_test

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/stretchr/testify/require"

	"github.com/intakehq/intake/internal/objstore"
	"github.com/intakehq/intake/internal/sigv4"
	"github.com/intakehq/intake/internal/testkit"
)

// fixedTimePresigner is the SDK's own SigV4 presigner with the signing time pinned, so that the SDK's
// output can be compared with the Signer's for the same instant.
type fixedTimePresigner struct {
	signer *v4.Signer
	at     time.Time
}

func (p fixedTimePresigner) PresignHTTP(ctx context.Context, creds aws.Credentials, r *http.Request, payloadHash, service, region string, _ time.Time, optFns ...func(*v4.SignerOptions)) (string, http.Header, error) {
	return p.signer.PresignHTTP(ctx, creds, r, payloadHash, service, region, p.at, optFns...)
}

func sdkPresigner(client *s3.Client, at time.Time, expires time.Duration) *s3.PresignClient {
	return s3.NewPresignClient(client, s3.WithPresignExpires(expires), func(o *s3.PresignOptions) {
		o.Presigner = fixedTimePresigner{signer: v4.NewSigner(func(so *v4.SignerOptions) { so.DisableURIPathEscaping = true }), at: at}
	})
}

func TestSignerMatchesSDK(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 3, 14, 15, 9, 26, 0, time.UTC)
	sum := sha256.Sum256([]byte("hello"))
	checksum := base64.StdEncoding.EncodeToString(sum[:])
	static := credentials.NewStaticCredentialsProvider("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "")
	withToken := credentials.NewStaticCredentialsProvider("ASIAEXAMPLE", "secret/with+chars", "FQoGZXIvYXdzE/token+with=chars")
	endpoints := []struct {
		name string
		opts func(*s3.Options)
	}{
		{"minio path-style", func(o *s3.Options) { o.BaseEndpoint = aws.String("http://127.0.0.1:9000"); o.UsePathStyle = true }},
		{"custom endpoint virtual", func(o *s3.Options) {
			o.BaseEndpoint = aws.String("https://storage.example.com")
			o.UsePathStyle = false
		}},
		{"custom endpoint default port", func(o *s3.Options) {
			o.BaseEndpoint = aws.String("https://storage.example.com:443")
			o.UsePathStyle = true
		}},
		{"aws virtual", func(o *s3.Options) {}},
		{"aws path-style", func(o *s3.Options) { o.UsePathStyle = true }},
	}
	keys := []string{
		"uploads/owner/0193c3f0-7c1e-7000-8000-000000000000/report.pdf",
		"uploads/o w/ü+x/a b (1)~!*'.txt",
		"k",
		"uploads/auth0|123/id/日本語 ファイル.png",
	}
	buckets := []string{"intake-bucket", "b.with.dots"}
	for _, ep := range endpoints {
		for _, region := range []string{"us-east-1", "eu-west-3"} {
			for ci, creds := range []aws.CredentialsProvider{static, withToken} {
				client := s3.New(s3.Options{Region: region, Credentials: creds}, ep.opts)
				signer, err := sigv4.NewSigner(client.Options())
				require.NoError(t, err)
				sdk := sdkPresigner(client, at, 5*time.Minute)
				ctx := context.Background()
				for _, bucket := range buckets {
					for _, key := range keys {
						name := fmt.Sprintf("%s/%s/creds%d/%s/%s", ep.name, region, ci, bucket, key)
						// PutObject with signed type and length, with and without a checksum.
						for _, ck := range []string{"", checksum} {
							want, err := sdk.PresignPutObject(ctx, &s3.PutObjectInput{
								Bucket: aws.String(bucket), Key: aws.String(key), ContentType: aws.String("image/png; charset=binary"),
								ContentLength: aws.Int64(12345), ChecksumSHA256: optional(ck),
							})
							require.NoError(t, err, name)
							got, err := signer.Presign(ctx, sigv4.Input{
								Method: "PUT", Op: sigv4.OpPutObject, Bucket: bucket, Key: key, Now: at, Expires: 5 * time.Minute,
								ContentType: "image/png; charset=binary", ContentLength: 12345, ChecksumSHA256: ck,
							})
							require.NoError(t, err)
							require.Equal(t, want.URL, got, "put "+name)
						}
						want, err := sdk.PresignGetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
						require.NoError(t, err)
						got, err := signer.Presign(ctx, sigv4.Input{Method: "GET", Op: sigv4.OpGetObject, Bucket: bucket, Key: key, Now: at, Expires: 5 * time.Minute, ContentLength: -1})
						require.NoError(t, err)
						require.Equal(t, want.URL, got, "get "+name)

						uploadID := "2~aB/c+d=e.f_g-h"
						want, err = sdk.PresignUploadPart(ctx, &s3.UploadPartInput{Bucket: aws.String(bucket), Key: aws.String(key), UploadId: aws.String(uploadID), PartNumber: aws.Int32(10000)})
						require.NoError(t, err)
						got, err = signer.Presign(ctx, sigv4.Input{Method: "PUT", Op: sigv4.OpUploadPart, Bucket: bucket, Key: key, Now: at, Expires: 5 * time.Minute, ContentLength: -1, PartNumber: 10000, UploadID: uploadID})
						require.NoError(t, err)
						require.Equal(t, want.URL, got, "part "+name)

						// UploadPart with its length signed.
						want, err = sdk.PresignUploadPart(ctx, &s3.UploadPartInput{Bucket: aws.String(bucket), Key: aws.String(key), UploadId: aws.String(uploadID), PartNumber: aws.Int32(7), ContentLength: aws.Int64(5 << 20)})
						require.NoError(t, err)
						got, err = signer.Presign(ctx, sigv4.Input{Method: "PUT", Op: sigv4.OpUploadPart, Bucket: bucket, Key: key, Now: at, Expires: 5 * time.Minute, ContentLength: 5 << 20, PartNumber: 7, UploadID: uploadID})
						require.NoError(t, err)
						require.Equal(t, want.URL, got, "sized part "+name)
					}
				}
			}
		}
	}
}

func optional(s string) *string {
	if s == "" {
		return nil
	}
	return aws.String(s)
}

func TestSignerNextDayRederivesKey(t *testing.T) {
	t.Parallel()
	client := s3.New(s3.Options{Region: "us-east-1", Credentials: credentials.NewStaticCredentialsProvider("A", "S", "")})
	signer, err := sigv4.NewSigner(client.Options())
	require.NoError(t, err)
	for _, at := range []time.Time{
		time.Date(2026, 1, 1, 23, 59, 59, 0, time.UTC),
		time.Date(2026, 1, 2, 0, 0, 1, 0, time.UTC),
		time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC),
	} {
		want, err := sdkPresigner(client, at, time.Hour).PresignGetObject(context.Background(), &s3.GetObjectInput{Bucket: aws.String("bkt"), Key: aws.String("k")})
		require.NoError(t, err)
		got, err := signer.Presign(context.Background(), sigv4.Input{Method: "GET", Op: sigv4.OpGetObject, Bucket: "bkt", Key: "k", Now: at, Expires: time.Hour, ContentLength: -1})
		require.NoError(t, err)
		require.Equal(t, want.URL, got)
	}
}

func TestSignerRejectsBadExpiry(t *testing.T) {
	t.Parallel()
	client := s3.New(s3.Options{Region: "us-east-1", Credentials: credentials.NewStaticCredentialsProvider("A", "S", "")})
	signer, err := sigv4.NewSigner(client.Options())
	require.NoError(t, err)
	for _, d := range []time.Duration{0, -time.Second, sigv4.MaxExpiry + time.Second} {
		_, err := signer.Presign(context.Background(), sigv4.Input{Method: "GET", Op: sigv4.OpGetObject, Bucket: "b", Key: "k", Now: time.Now(), Expires: d, ContentLength: -1})
		require.Error(t, err, d)
	}
}

// TestSignerAcceptedByMinIO uploads through Signer URLs into a real MinIO: the signed type, length
// and checksum are enforced, and GET and UploadPart URLs work.
func TestSignerAcceptedByMinIO(t *testing.T) {
	if testing.Short() {
		t.Skip("needs MinIO")
	}
	t.Parallel()
	ctx := testkit.Context(t)
	s3c := testkit.S3()
	bucket := testkit.Bucket(t, s3c)
	signer, err := sigv4.NewSigner(objstore.NewPresignClient(testkit.AWSConfig(), testkit.AWS()).Options())
	require.NoError(t, err)
	body := []byte("hello, signer")
	sum := sha256.Sum256(body)
	ck := base64.StdEncoding.EncodeToString(sum[:])
	put := func(key string) string {
		u, err := signer.Presign(ctx, sigv4.Input{Method: "PUT", Op: sigv4.OpPutObject, Bucket: bucket, Key: key, Now: time.Now(), Expires: time.Minute,
			ContentType: "text/plain", ContentLength: int64(len(body)), ChecksumSHA256: ck})
		require.NoError(t, err)
		return u
	}
	key := "uploads/o/x/hello world+ü.txt"
	u := put(key)
	type tc struct {
		name     string
		ct       string
		body     []byte
		checksum string
		want     int
	}
	for _, c := range []tc{
		{"wrong type", "text/html", body, ck, http.StatusForbidden},
		{"wrong checksum", "text/plain", body, base64.StdEncoding.EncodeToString(make([]byte, 32)), http.StatusForbidden},
		{"ok", "text/plain", body, ck, http.StatusOK},
	} {
		status, _ := testkit.Do(t, http.MethodPut, u, c.body, map[string]string{"Content-Type": c.ct, "x-amz-checksum-sha256": c.checksum})
		require.Equal(t, c.want, status, c.name)
	}
	get, err := signer.Presign(ctx, sigv4.Input{Method: "GET", Op: sigv4.OpGetObject, Bucket: bucket, Key: key, Now: time.Now(), Expires: time.Minute, ContentLength: -1})
	require.NoError(t, err)
	status, got := testkit.Do(t, http.MethodGet, get, nil, nil)
	require.Equal(t, http.StatusOK, status)
	require.Equal(t, body, got)

	// A different length than the signed one is refused.
	u = put("uploads/o/x/other")
	status, _ = testkit.Do(t, http.MethodPut, u, append(body, '!'), map[string]string{"Content-Type": "text/plain", "x-amz-checksum-sha256": ck})
	require.Equal(t, http.StatusForbidden, status)

	// A part URL with its length signed takes that length only.
	mp, err := s3c.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: aws.String(bucket), Key: aws.String("uploads/o/x/parts")})
	require.NoError(t, err)
	part, err := signer.Presign(ctx, sigv4.Input{Method: "PUT", Op: sigv4.OpUploadPart, Bucket: bucket, Key: "uploads/o/x/parts", Now: time.Now(), Expires: time.Minute,
		ContentLength: int64(len(body)), PartNumber: 1, UploadID: aws.ToString(mp.UploadId)})
	require.NoError(t, err)
	status, _ = testkit.Do(t, http.MethodPut, part, append(body, body...), nil)
	require.Equal(t, http.StatusForbidden, status, "a longer part than signed")
	status, _ = testkit.Do(t, http.MethodPut, part, body, nil)
	require.Equal(t, http.StatusOK, status)
}

func BenchmarkSignerPresignPut(b *testing.B) {
	client := s3.New(s3.Options{Region: "us-east-1", Credentials: aws.NewCredentialsCache(credentials.NewStaticCredentialsProvider("intakeadmin", "intakeadmin-secret", ""))},
		func(o *s3.Options) { o.BaseEndpoint = aws.String("http://127.0.0.1:9000"); o.UsePathStyle = true })
	signer, err := sigv4.NewSigner(client.Options())
	require.NoError(b, err)
	ctx := context.Background()
	in := sigv4.Input{Method: "PUT", Op: sigv4.OpPutObject, Bucket: "intake-local", Key: "uploads/owner/0193c3f0-7c1e-7000-8000-000000000000/photo 1.jpg",
		Expires: 5 * time.Minute, ContentType: "image/jpeg", ContentLength: 1 << 20}
	b.ReportAllocs()
	for b.Loop() {
		in.Now = time.Now()
		if _, err := signer.Presign(ctx, in); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSDKPresignPut(b *testing.B) {
	client := s3.New(s3.Options{Region: "us-east-1", Credentials: aws.NewCredentialsCache(credentials.NewStaticCredentialsProvider("intakeadmin", "intakeadmin-secret", ""))},
		func(o *s3.Options) { o.BaseEndpoint = aws.String("http://127.0.0.1:9000"); o.UsePathStyle = true })
	p := s3.NewPresignClient(client, s3.WithPresignExpires(5*time.Minute))
	ctx := context.Background()
	in := &s3.PutObjectInput{Bucket: aws.String("intake-local"), Key: aws.String("uploads/owner/0193c3f0-7c1e-7000-8000-000000000000/photo 1.jpg"),
		ContentType: aws.String("image/jpeg"), ContentLength: aws.Int64(1 << 20)}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := p.PresignPutObject(ctx, in); err != nil {
			b.Fatal(err)
		}
	}
}

// TestNewSignerRefusesOtherEndpoints: options that make the SDK address another endpoint than the
// Signer would (FIPS, dual-stack, accelerate) are refused rather than signed wrongly.
func TestNewSignerRefusesOtherEndpoints(t *testing.T) {
	t.Parallel()
	base := s3.Options{Region: "us-east-1", Credentials: credentials.NewStaticCredentialsProvider("AKID", "SECRET", "")}
	_, err := sigv4.NewSigner(base)
	require.NoError(t, err)
	for name, mutate := range map[string]func(*s3.Options){
		"fips":       func(o *s3.Options) { o.EndpointOptions.UseFIPSEndpoint = aws.FIPSEndpointStateEnabled },
		"dual-stack": func(o *s3.Options) { o.EndpointOptions.UseDualStackEndpoint = aws.DualStackEndpointStateEnabled },
		"accelerate": func(o *s3.Options) { o.UseAccelerate = true },
	} {
		t.Run(name, func(t *testing.T) {
			o := base
			mutate(&o)
			_, err := sigv4.NewSigner(o)
			require.ErrorContains(t, err, "not supported")
		})
	}
}
