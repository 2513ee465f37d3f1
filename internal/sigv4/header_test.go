package sigv4_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/stretchr/testify/require"

	"github.com/intakehq/intake/internal/sigv4"
)

// sdkAuthorization is the Authorization header the SDK's signer gives a request carrying exactly
// the headers HeaderSigner signs.
func sdkAuthorization(t *testing.T, creds aws.Credentials, region, service string, r sigv4.JSONRequest) string {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, "http://"+r.Host+r.Path, bytes.NewReader(r.Body))
	require.NoError(t, err)
	req.ContentLength = 0 // the SDK would sign content-length too; HeaderSigner does not
	req.Header.Set("Content-Type", r.ContentType)
	req.Header.Set("X-Amz-Target", r.Target)
	sum := sha256.Sum256(r.Body)
	require.NoError(t, v4.NewSigner().SignHTTP(context.Background(), creds, req, hex.EncodeToString(sum[:]), service, region, r.Now))
	return req.Header.Get("Authorization")
}

// TestHeaderSignerMatchesSDK: for the same signed headers, time and body, HeaderSigner's
// Authorization is the SDK's, byte for byte, with and without a session token, across hosts,
// paths, regions and bodies, and after midnight with the same signer (the cached key is derived
// again); X-Amz-Date and the token are the ones it signed.
func TestHeaderSignerMatchesSDK(t *testing.T) {
	t.Parallel()
	day := time.Date(2026, 12, 2, 23, 59, 59, 0, time.UTC)
	cases := []struct {
		name    string
		creds   aws.Credentials
		region  string
		request sigv4.JSONRequest
	}{
		{"static", aws.Credentials{AccessKeyID: "AKID", SecretAccessKey: "secret"}, "us-east-1", sigv4.JSONRequest{
			Host: "127.0.0.1:4566", Path: "/", ContentType: "application/x-amz-json-1.0", Target: "AmazonSQS.ReceiveMessage",
			Body: []byte(`{"QueueUrl":"http://127.0.0.1:4566/000000000000/q","MaxNumberOfMessages":10}`), Now: day,
		}},
		{"session token", aws.Credentials{AccessKeyID: "ASIA", SecretAccessKey: "s3cr3t/+=", SessionToken: "tok/en+=="}, "eu-west-3", sigv4.JSONRequest{
			Host: "sqs.eu-west-3.amazonaws.com", Path: "/", ContentType: "application/x-amz-json-1.0", Target: "AmazonSQS.DeleteMessageBatch",
			Body: []byte(`{"QueueUrl":"https://sqs.eu-west-3.amazonaws.com/1/q","Entries":[{"Id":"0","ReceiptHandle":"a+b/c=="}]}`), Now: day,
		}},
		{"path and empty body", aws.Credentials{AccessKeyID: "AKID", SecretAccessKey: "secret"}, "us-east-1", sigv4.JSONRequest{
			Host: "proxy.internal", Path: "/sqs/v1-x_y.z~", ContentType: "application/x-amz-json-1.0", Target: "AmazonSQS.ReceiveMessage", Now: day,
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s, err := sigv4.NewHeaderSigner(credentials.StaticCredentialsProvider{Value: c.creds}, c.region, "sqs")
			require.NoError(t, err)
			got, err := s.SignJSON(context.Background(), c.request)
			require.NoError(t, err)
			require.Equal(t, sdkAuthorization(t, c.creds, c.region, "sqs", c.request), got.Authorization)
			require.Equal(t, c.request.Now.UTC().Format("20060102T150405Z"), got.Date)
			require.Equal(t, c.creds.SessionToken, got.SecurityToken)
			// The comparison can fail: another body, target or host signs differently.
			other := c.request
			other.Body = append(append([]byte(nil), c.request.Body...), ' ')
			require.NotEqual(t, sdkAuthorization(t, c.creds, c.region, "sqs", other), got.Authorization)
			other = c.request
			other.Target = "AmazonSQS.SendMessage"
			require.NotEqual(t, sdkAuthorization(t, c.creds, c.region, "sqs", other), got.Authorization)
		})
	}
	creds := aws.Credentials{AccessKeyID: "AKID", SecretAccessKey: "secret"}
	s, err := sigv4.NewHeaderSigner(credentials.StaticCredentialsProvider{Value: creds}, "us-east-1", "sqs")
	require.NoError(t, err)
	for _, at := range []time.Time{day, day.Add(time.Second), day} {
		r := sigv4.JSONRequest{Host: "h:1", Path: "/", ContentType: "application/x-amz-json-1.0", Target: "AmazonSQS.ReceiveMessage", Body: []byte("{}"), Now: at}
		got, err := s.SignJSON(context.Background(), r)
		require.NoError(t, err)
		require.Equal(t, sdkAuthorization(t, creds, "us-east-1", "sqs", r), got.Authorization, at)
	}
}

// TestHeaderSignerRefuses: a path SigV4 would escape, and credentials that cannot be retrieved,
// fail the signing instead of producing a signature the server refuses.
func TestHeaderSignerRefuses(t *testing.T) {
	t.Parallel()
	s, err := sigv4.NewHeaderSigner(credentials.StaticCredentialsProvider{Value: aws.Credentials{AccessKeyID: "a", SecretAccessKey: "b"}}, "us-east-1", "sqs")
	require.NoError(t, err)
	for _, p := range []string{"", "relative", "/a b", "/%41", "/é"} {
		_, err := s.SignJSON(context.Background(), sigv4.JSONRequest{Host: "h", Path: p, Now: time.Now()})
		require.Error(t, err, p)
	}
	failing := aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) { return aws.Credentials{}, errors.New("no credentials") })
	s, err = sigv4.NewHeaderSigner(failing, "us-east-1", "sqs")
	require.NoError(t, err)
	_, err = s.SignJSON(context.Background(), sigv4.JSONRequest{Host: "h", Path: "/", Now: time.Now()})
	require.ErrorContains(t, err, "no credentials")
	_, err = sigv4.NewHeaderSigner(nil, "us-east-1", "sqs")
	require.Error(t, err)
}

// BenchmarkHeaderSignerSignJSON: one ReceiveMessage signed (compare BenchmarkSDKSignHTTP).
func BenchmarkHeaderSignerSignJSON(b *testing.B) {
	s, err := sigv4.NewHeaderSigner(credentials.StaticCredentialsProvider{Value: aws.Credentials{AccessKeyID: "AKID", SecretAccessKey: "secret"}}, "us-east-1", "sqs")
	require.NoError(b, err)
	r := sigv4.JSONRequest{Host: "127.0.0.1:4566", Path: "/", ContentType: "application/x-amz-json-1.0", Target: "AmazonSQS.ReceiveMessage",
		Body: []byte(`{"QueueUrl":"http://127.0.0.1:4566/000000000000/q","MaxNumberOfMessages":10,"WaitTimeSeconds":20}`), Now: time.Now()}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.SignJSON(context.Background(), r); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSDKSignHTTP: the same request signed by the SDK's signer (an http.Request built each time,
// as a caller must).
func BenchmarkSDKSignHTTP(b *testing.B) {
	creds := aws.Credentials{AccessKeyID: "AKID", SecretAccessKey: "secret"}
	body := []byte(`{"QueueUrl":"http://127.0.0.1:4566/000000000000/q","MaxNumberOfMessages":10,"WaitTimeSeconds":20}`)
	signer := v4.NewSigner()
	b.ReportAllocs()
	for b.Loop() {
		req, _ := http.NewRequest(http.MethodPost, "http://127.0.0.1:4566/", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/x-amz-json-1.0")
		req.Header.Set("X-Amz-Target", "AmazonSQS.ReceiveMessage")
		sum := sha256.Sum256(body)
		if err := signer.SignHTTP(context.Background(), creds, req, hex.EncodeToString(sum[:]), "sqs", "us-east-1", time.Now()); err != nil {
			b.Fatal(err)
		}
	}
}
