package cli

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/intakehq/intake/internal/testkit"
)

// TestHashHandOffThroughTheDaemon: `intake run` with one hash slot and the defaults otherwise (the
// hash hand-off on, a queue that redrives after 5 receives, a 60 s visibility). One owner's 8 uploads of
// 24 MiB declaring their sha256 land at once, their events in one batch: one hash holds the slot,
// the events that find it busy are handed off to the jobs role (object:inspect tasks) and their
// messages finish. At the end: 8 uploaded, 8 recorded valid with the digest each declared and
// their intents completed, none lost, none twice, none dead-lettered; the hand-offs are counted,
// their tasks ran, and their rows in PostgreSQL are settled.
func TestHashHandOffThroughTheDaemon(t *testing.T) {
	if testing.Short() {
		t.Skip("needs the local stack")
	}
	ctx, schema, bucket, awsc := daemonStack(t)
	s3c, sqsc := testkit.S3(), testkit.SQS()
	q := testkit.Queue(t, sqsc, 5, 60*time.Second)
	d := startDaemon(t, ctx,
		"--database-url", testkit.DatabaseURLFor(schema), "--migrate",
		"--redis-url", fmt.Sprintf("redis://%s/%d", testkit.RedisAddr(), testkit.RedisDB(t)),
		"--s3-endpoint", awsc.S3Endpoint, "--sqs-endpoint", awsc.SQSEndpoint, "--aws-region", awsc.Region,
		"--bucket", bucket, "--queue-url", q.URL, "--dlq-url", q.DLQURL,
		"--api-insecure-dev-auth", "--shutdown-grace", "5s",
		"--consumer-hash-concurrency", "1") // the hand-off is on by default

	db, err := pgx.Connect(ctx, testkit.DatabaseURLFor(schema))
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close(ctx) })

	const n, size = 8, 24 << 20
	rng := rand.New(rand.NewPCG(1, 2))
	sums := map[string][]byte{}
	var events []types.SendMessageBatchRequestEntry
	for i := range n {
		key := fmt.Sprintf("u/tenant-a/%s/big-%d.bin", uuid.NewString(), i)
		content := make([]byte, size)
		for j := 0; j < size; j += 8 {
			v := rng.Uint64()
			for k := range 8 {
				content[j+k] = byte(v >> (8 * k))
			}
		}
		sum := sha256.Sum256(content)
		sums[key] = sum[:]
		_, err := db.Exec(ctx, `INSERT INTO uploads (id, owner, bucket, key, method, filename, content_type, size,
			size_declared, sha256, expires_at)
			VALUES ($1, 'tenant-a', $2, $3, 'put', 'big.bin', 'application/octet-stream', $4, true, $5, now() + interval '1 hour')`,
			uuid.New(), bucket, key, size, sum[:])
		require.NoError(t, err)
		out, err := s3c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(key),
			Body: bytes.NewReader(content), ContentType: aws.String("application/octet-stream")})
		require.NoError(t, err)
		events = append(events, types.SendMessageBatchRequestEntry{
			Id:          aws.String(strconv.Itoa(i)),
			MessageBody: aws.String(testkit.S3Event(bucket, key, strings.Trim(aws.ToString(out.ETag), `"`), size, i+1)),
		})
	}
	testkit.SendMessages(t, sqsc, q.URL, events)

	// Every upload gets its verdict, from the consumer or from a task.
	require.Eventually(t, func() bool {
		var done int
		err := db.QueryRow(ctx, `SELECT count(*) FROM objects WHERE bucket = $1 AND status = 'valid' AND sha256 IS NOT NULL`, bucket).Scan(&done)
		return err == nil && done == n
	}, 3*time.Minute, 200*time.Millisecond, "every upload valid; logs:\n%s", d.logs.String())

	rows, err := db.Query(ctx, `SELECT key, status, sha256 FROM objects WHERE bucket = $1`, bucket)
	require.NoError(t, err)
	recorded := map[string]int{}
	for rows.Next() {
		var key, status string
		var sum []byte
		require.NoError(t, rows.Scan(&key, &status, &sum))
		recorded[key]++
		require.Equal(t, "valid", status, key)
		require.Equal(t, sums[key], sum, key)
	}
	require.NoError(t, rows.Err())
	require.Len(t, recorded, n, "none lost, none foreign")
	var completed int
	require.NoError(t, db.QueryRow(ctx, `SELECT count(*) FROM uploads WHERE bucket = $1 AND status = 'completed'`, bucket).Scan(&completed))
	require.Equal(t, n, completed, "every intent completed")

	metrics := func() string {
		resp, err := http.Get(d.base + "/metrics")
		require.NoError(t, err)
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		return string(b)
	}
	value := func(text, series string) float64 {
		m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`).FindStringSubmatch(text)
		if m == nil {
			return 0
		}
		v, err := strconv.ParseFloat(m[1], 64)
		require.NoError(t, err)
		return v
	}
	var text string
	require.Eventually(t, func() bool {
		text = metrics()
		return value(text, `intake_messages_acked_total`) == n
	}, time.Minute, 200*time.Millisecond, "every message acked")
	require.Zero(t, value(text, `intake_messages_retried_total`), "no message retried")
	require.Zero(t, value(text, `intake_hashes_waiting`))
	queued := value(text, `intake_hashes_handed_off_total{result="queued"}`)
	require.GreaterOrEqual(t, queued, 1.0, "events found the one slot busy and were handed off:\n%s", text)
	require.Equal(t, queued, value(text, `intake_tasks_total{outcome="success",type="object:inspect"}`), "each hand-off's task ran once")
	require.Zero(t, value(text, `intake_hashes_handed_off_total{result="failed"}`))

	// Nothing dead-lettered, nothing left in the queue.
	left, _ := testkit.DrainQueue(t, sqsc, q.URL)
	require.Empty(t, left)
	dead, _ := testkit.DrainQueue(t, sqsc, q.DLQURL)
	require.Empty(t, dead)
	var owed int
	require.NoError(t, db.QueryRow(ctx, `SELECT count(*) FROM handed_off`).Scan(&owed))
	require.Zero(t, owed, "each hand-off's row settled by its task")
	t.Logf("%d uploads: %d handed off to the jobs role, %d hashed by the consumer", n, int(queued), n-int(queued))
}
