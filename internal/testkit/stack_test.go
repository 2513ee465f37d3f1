package testkit_test

import (
	"bytes"
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/intakehq/intake/internal/objstore"
	"github.com/intakehq/intake/internal/queue"
	"github.com/intakehq/intake/internal/testkit"
)

// These tests prove the local stack is real: each does a round trip through one server.

func TestRedisThroughAsynq(t *testing.T) {
	if testing.Short() {
		t.Skip("needs Redis")
	}
	t.Parallel()
	opt := asynq.RedisClientOpt{Addr: testkit.RedisAddr(), DB: testkit.RedisDB(t)}
	client := asynq.NewClient(opt)
	t.Cleanup(func() { _ = client.Close() })
	insp := asynq.NewInspector(opt)
	t.Cleanup(func() { _ = insp.Close() })

	info, err := client.Enqueue(asynq.NewTask("test:roundtrip", []byte(`{"n":1}`)),
		asynq.TaskID("rt-1"), asynq.Queue("stack"), asynq.ProcessIn(time.Hour))
	require.NoError(t, err)
	require.Equal(t, asynq.TaskStateScheduled, info.State)

	got, err := insp.GetTaskInfo("stack", "rt-1")
	require.NoError(t, err)
	require.Equal(t, "test:roundtrip", got.Type)
	require.JSONEq(t, `{"n":1}`, string(got.Payload))

	_, err = client.Enqueue(asynq.NewTask("test:roundtrip", nil), asynq.TaskID("rt-1"), asynq.Queue("stack"))
	require.ErrorIs(t, err, asynq.ErrTaskIDConflict, "task ids are unique")

	require.NoError(t, insp.DeleteTask("stack", "rt-1"))
	_, err = insp.GetTaskInfo("stack", "rt-1")
	require.ErrorIs(t, err, asynq.ErrTaskNotFound)
}

func TestMinIOPresignedPutSignsContentType(t *testing.T) {
	if testing.Short() {
		t.Skip("needs MinIO")
	}
	t.Parallel()
	ctx := testkit.Context(t)
	client := testkit.S3()
	bucket := testkit.Bucket(t, client)
	presign := s3.NewPresignClient(client)
	body := []byte("hello, intake")

	req, err := presign.PresignPutObject(ctx, &s3.PutObjectInput{
		Bucket: aws.String(bucket), Key: aws.String("dir/hello.txt"),
		ContentType: aws.String("text/plain"), ContentLength: aws.Int64(int64(len(body))),
	}, s3.WithPresignExpires(5*time.Minute))
	require.NoError(t, err)
	require.Contains(t, req.SignedHeader.Values("Content-Type"), "text/plain")

	put := func(contentType string) int {
		r, err := http.NewRequestWithContext(ctx, req.Method, req.URL, bytes.NewReader(body))
		require.NoError(t, err)
		r.Header.Set("Content-Type", contentType)
		resp, err := http.DefaultClient.Do(r)
		require.NoError(t, err)
		_ = resp.Body.Close()
		return resp.StatusCode
	}
	require.Equal(t, http.StatusForbidden, put("image/png"), "a different content type breaks the signature")
	_, err = client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(bucket), Key: aws.String("dir/hello.txt")})
	require.True(t, objstore.IsNotFound(err), "refused upload stored nothing: %v", err)

	require.Equal(t, http.StatusOK, put("text/plain"))
	head, err := client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(bucket), Key: aws.String("dir/hello.txt")})
	require.NoError(t, err)
	require.Equal(t, int64(len(body)), aws.ToInt64(head.ContentLength))
	require.Equal(t, "text/plain", aws.ToString(head.ContentType))
}

func TestKumoSendReceiveDeleteAndRedrive(t *testing.T) {
	if testing.Short() {
		t.Skip("needs kumo")
	}
	t.Parallel()
	ctx := testkit.Context(t)
	client := testkit.SQS()
	q := testkit.Queue(t, client, 2, time.Second)

	_, err := client.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: aws.String(q.URL), MessageBody: aws.String("ok")})
	require.NoError(t, err)
	msgs := receive(ctx, t, client, q.URL, 0)
	require.Len(t, msgs, 1)
	require.Equal(t, "ok", aws.ToString(msgs[0].Body))
	_, err = client.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: aws.String(q.URL), ReceiptHandle: msgs[0].ReceiptHandle})
	require.NoError(t, err)
	require.Empty(t, receive(ctx, t, client, q.URL, 2), "deleted message does not come back")

	// A message received maxReceiveCount times without deletion moves to the DLQ.
	_, err = client.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: aws.String(q.URL), MessageBody: aws.String("poison")})
	require.NoError(t, err)
	for i := range q.MaxReceiveCount {
		msgs := receive(ctx, t, client, q.URL, 3)
		require.Len(t, msgs, 1, "receive %d", i+1)
		_, err := client.ChangeMessageVisibility(ctx, &sqs.ChangeMessageVisibilityInput{
			QueueUrl: aws.String(q.URL), ReceiptHandle: msgs[0].ReceiptHandle, VisibilityTimeout: 0,
		})
		require.NoError(t, err)
	}
	require.Empty(t, receive(ctx, t, client, q.URL, 2), "poison message left the main queue")
	dead := receive(ctx, t, client, q.DLQURL, 3)
	require.Len(t, dead, 1)
	require.Equal(t, "poison", aws.ToString(dead[0].Body))

	_, err = client.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: aws.String(q.URL + "-nope")})
	require.True(t, queue.IsNonExistentQueue(err), "missing queue classified: %v", err)
}

func receive(ctx context.Context, t *testing.T, client *sqs.Client, url string, wait int32) []types.Message {
	t.Helper()
	out, err := client.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{
		QueueUrl: aws.String(url), MaxNumberOfMessages: 10, WaitTimeSeconds: wait,
	})
	require.NoError(t, err)
	return out.Messages
}

// TestToxiproxyCutsAndHeals drives each toxic the fault tests use over a path to Redis: the proxy is
// healthy, cut, half-open, reset, slow and healed again.
func TestToxiproxyCutsAndHeals(t *testing.T) {
	if testing.Short() {
		t.Skip("needs toxiproxy and Redis")
	}
	t.Parallel()
	p := testkit.NewProxy(t, "redis", testkit.RedisAddr())
	require.NotEqual(t, testkit.RedisAddr(), p.Addr)
	ping := func() error {
		c := redis.NewClient(&redis.Options{Addr: p.Addr, DialTimeout: time.Second, ReadTimeout: time.Second,
			WriteTimeout: time.Second, MaxRetries: -1})
		defer c.Close()
		return c.Ping(context.Background()).Err()
	}
	require.NoError(t, ping(), "healthy")

	p.Down()
	require.ErrorContains(t, ping(), "connection refused", "down: the port is closed")
	p.Up()
	require.NoError(t, ping(), "up again on the same address")

	for _, tc := range []struct {
		name   string
		toxic  func() string
		broken bool
	}{
		{"timeout (half-open: replies vanish)", func() string { return p.Timeout(testkit.Downstream, 0) }, true},
		{"reset_peer", func() string { return p.ResetPeer(testkit.Upstream, 0) }, true},
		{"latency", func() string { return p.Latency(testkit.Downstream, 50*time.Millisecond, 0) }, false},
		{"bandwidth", func() string { return p.Bandwidth(testkit.Downstream, 64) }, false},
		{"slow_close", func() string { return p.SlowClose(testkit.Downstream, 100*time.Millisecond) }, false},
	} {
		name := tc.toxic()
		if tc.broken {
			require.Error(t, ping(), tc.name)
		} else {
			require.NoError(t, ping(), tc.name)
		}
		p.Remove(name)
		require.NoError(t, ping(), "%s removed", tc.name)
	}
	p.Latency(testkit.Upstream, 10*time.Millisecond, 0)
	p.Timeout(testkit.Upstream, 0)
	p.Clear()
	require.NoError(t, ping(), "every toxic cleared")
}
