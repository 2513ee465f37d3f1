package sigv4_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/stretchr/testify/require"

	"github.com/intakehq/intake/internal/sigv4"
)

// slowlyFailing gives a session with left to run on its first retrieval; every later one fails
// after delay (the credential source is down and slow to say so).
type slowlyFailing struct {
	left, delay time.Duration
	n           atomic.Int64
}

func (s *slowlyFailing) Retrieve(context.Context) (aws.Credentials, error) {
	if s.n.Add(1) == 1 {
		return aws.Credentials{AccessKeyID: "ASIA1", SecretAccessKey: "s", SessionToken: "t", CanExpire: true, Expires: time.Now().Add(s.left)}, nil
	}
	time.Sleep(s.delay)
	return aws.Credentials{}, errors.New("credential source down")
}

// TestSignerSignsWithItsSessionDuringARefresh: while a Signer asks its own cache for a fresher
// session (the old one is within RefreshWindow of its end) and the source is slow to fail, the
// calls made meanwhile sign with the old session at once, rather than wait for the refresh and
// fail with it; the source is asked once. When the old session is over, the source's error is
// returned.
func TestSignerSignsWithItsSessionDuringARefresh(t *testing.T) {
	t.Parallel()
	src := &slowlyFailing{left: 5 * time.Minute, delay: time.Second}
	signer, err := sigv4.NewSigner(s3.Options{Region: "us-east-1",
		Credentials: signingSource{aws.NewCredentialsCache(&sessions{left: time.Hour}), aws.NewCredentialsCache(src)}})
	require.NoError(t, err)
	in := sigv4.Input{Method: "GET", Op: sigv4.OpGetObject, Bucket: "b", Key: "k", Expires: time.Hour, ContentLength: -1}
	var wg sync.WaitGroup
	errs := make([]error, 20)
	took := make([]time.Duration, 20)
	for i := range 20 {
		wg.Go(func() {
			time.Sleep(time.Duration(i) * 10 * time.Millisecond) // the first call starts the refresh
			in := in
			in.Now = time.Now()
			var p sigv4.Presigned
			p, errs[i] = signer.Sign(context.Background(), in)
			took[i] = time.Since(in.Now)
			if errs[i] == nil && p.Expires.After(in.Now.Add(5*time.Minute)) {
				errs[i] = errors.New("not signed with the old session")
			}
		})
	}
	wg.Wait()
	for i := range 20 {
		require.NoError(t, errs[i], "call %d", i)
		if i > 0 {
			require.Less(t, took[i], 500*time.Millisecond, "call %d waited for the refresh", i)
		}
	}
	require.EqualValues(t, 2, src.n.Load(), "one refresh")

	in.Now = time.Now().Add(6 * time.Minute) // the old session is over
	_, err = signer.Sign(context.Background(), in)
	require.ErrorContains(t, err, "credential source down")
}

// TestNewSignerRefusesEndpointPathsItCannotSign: the SDK signs a custom endpoint's path with
// escapes, or characters that need them, its own way (it signs /a%2Fb as /a/b): NewSigner refuses
// such endpoints rather than hand out URLs whose signature differs from the SDK's. Paths of
// unreserved characters and slashes sign as the SDK does.
func TestNewSignerRefusesEndpointPathsItCannotSign(t *testing.T) {
	t.Parallel()
	creds := credentials.NewStaticCredentialsProvider("AKID", "SECRET", "")
	for _, ep := range []string{"https://h.example.com/a%2Fb", "https://h.example.com/pre fix/", "http://127.0.0.1:9000/%41", "https://h.example.com/ü"} {
		_, err := sigv4.NewSigner(s3.Options{Region: "us-east-1", Credentials: creds, BaseEndpoint: aws.String(ep)})
		require.ErrorContains(t, err, "path", ep)
	}
	at := time.Date(2026, 3, 14, 15, 9, 26, 0, time.UTC)
	for _, ep := range []string{"https://h.example.com/p/", "https://h.example.com/p//q", "http://127.0.0.1:9000/a-b_c.d~e/"} {
		client := s3.New(s3.Options{Region: "us-east-1", Credentials: creds, BaseEndpoint: aws.String(ep), UsePathStyle: true})
		signer, err := sigv4.NewSigner(client.Options())
		require.NoError(t, err, ep)
		want, err := sdkPresigner(client, at, 5*time.Minute).PresignGetObject(context.Background(), &s3.GetObjectInput{Bucket: aws.String("bkt"), Key: aws.String("a b/c")})
		require.NoError(t, err)
		got, err := signer.Presign(context.Background(), sigv4.Input{Method: "GET", Op: sigv4.OpGetObject, Bucket: "bkt", Key: "a b/c", Now: at, Expires: 5 * time.Minute, ContentLength: -1})
		require.NoError(t, err)
		require.Equal(t, want.URL, got, ep)
	}
}
