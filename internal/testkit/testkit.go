// Package testkit gives integration tests isolated pieces of the real local stack (see
// deploy/local/stack.sh): a PostgreSQL schema with migrations applied (DB; intake's schema is the
// test's own), or a whole empty database (Database), a Redis database of their own, a fresh S3
// bucket in MinIO and a fresh SQS queue (with its dead-letter queue) in kumo, and toxiproxy proxies
// (NewProxy) that cut or degrade the path to any of them. Everything is removed when the test ends,
// so tests run in parallel without stepping on each other.
//
// # Environment
//
// The addresses default to the local stack's; override them with TEST_DATABASE_URL, TEST_REDIS_ADDR,
// TEST_S3_ENDPOINT, TEST_SQS_ENDPOINT, TEST_TOXIPROXY_ADDR, TEST_AWS_ACCESS_KEY_ID and
// TEST_AWS_SECRET_ACCESS_KEY. A service that does not answer fails the test with a hint to run
// `make up`; tests never skip silently.
package testkit

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/intakehq/intake/internal/config"
	"github.com/intakehq/intake/internal/objstore"
	"github.com/intakehq/intake/internal/queue"
	"github.com/intakehq/intake/internal/store"
)

// Local stack defaults (deploy/local/stack.sh).
const (
	DefaultDatabaseURL = "postgres://postgres@127.0.0.1:5432/intake_test?sslmode=disable"
	DefaultRedisAddr   = "127.0.0.1:6379"
	DefaultS3Endpoint  = "http://127.0.0.1:9000"
	DefaultSQSEndpoint = "http://127.0.0.1:4566"
	DefaultAccessKey   = "intakeadmin"
	DefaultSecretKey   = "intakeadmin-secret"
	Region             = "us-east-1"
)

const hint = " (is the local stack up? run `make up`)"

// DatabaseURL is the test database's URL.
func DatabaseURL() string { return cmp.Or(os.Getenv("TEST_DATABASE_URL"), DefaultDatabaseURL) }

// RedisAddr is the test Redis address.
func RedisAddr() string { return cmp.Or(os.Getenv("TEST_REDIS_ADDR"), DefaultRedisAddr) }

// AWS returns the config.AWS section pointing at the local stack.
func AWS() config.AWS {
	return AWSAt(cmp.Or(os.Getenv("TEST_S3_ENDPOINT"), DefaultS3Endpoint), cmp.Or(os.Getenv("TEST_SQS_ENDPOINT"), DefaultSQSEndpoint))
}

// AWSAt returns a config.AWS section with the test region and these endpoints ("": none).
func AWSAt(s3Endpoint, sqsEndpoint string) config.AWS {
	return config.AWS{
		AWSRegion:    config.AWSRegion{Region: Region},
		S3Endpoints:  config.S3Endpoints{S3Endpoint: s3Endpoint},
		SQSEndpoints: config.SQSEndpoints{SQSEndpoint: sqsEndpoint},
	}
}

// AWSConfig returns an SDK configuration with the local stack's static credentials.
func AWSConfig() aws.Config {
	return aws.Config{
		Region: Region,
		Credentials: credentials.NewStaticCredentialsProvider(
			cmp.Or(os.Getenv("TEST_AWS_ACCESS_KEY_ID"), DefaultAccessKey),
			cmp.Or(os.Getenv("TEST_AWS_SECRET_ACCESS_KEY"), DefaultSecretKey), ""),
		RetryMaxAttempts: 3,
		HTTPClient:       objstore.HTTPClient(100),
	}
}

// Name returns a short random lower-case name with the given prefix (valid for buckets, queues and
// schemas).
func Name(prefix string) string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

// Context returns a context cancelled when the test ends (or after 2 minutes).
func Context(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// DB returns a Store on a fresh schema of the test database with every migration applied (the
// store's Schema and its pool's search_path are that schema). The schema is dropped when the test
// ends.
func DB(t testing.TB) *store.Store {
	t.Helper()
	ctx := context.Background()
	schema := Schema(t)
	cfg, err := pgxpool.ParseConfig(DatabaseURL())
	if err != nil {
		t.Fatalf("testkit: parse database url: %v", err)
	}
	cfg.ConnConfig.RuntimeParams["search_path"] = schema
	cfg.MaxConns = 16
	st, err := store.OpenConfig(ctx, cfg)
	if err != nil {
		t.Fatalf("testkit: %v%s", err, hint)
	}
	t.Cleanup(st.Close)
	if _, err := store.Migrate(ctx, st.Pool); err != nil {
		t.Fatalf("testkit: migrate: %v", err)
	}
	return st
}

// StoreVia opens a second Store on st's schema whose connections go to addr ("host:port", a
// toxiproxy proxy in front of PostgreSQL), with a 2 s connect timeout; it is closed when the test
// ends.
func StoreVia(t testing.TB, st *store.Store, addr string) *store.Store {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(DatabaseURL())
	if err != nil {
		t.Fatalf("testkit: parse database url: %v", err)
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("testkit: proxy address %q: %v", addr, err)
	}
	cfg.ConnConfig.Host = host
	if _, err := fmt.Sscan(port, &cfg.ConnConfig.Port); err != nil {
		t.Fatalf("testkit: proxy port %q: %v", port, err)
	}
	cfg.ConnConfig.RuntimeParams["search_path"] = st.Pool.Config().ConnConfig.RuntimeParams["search_path"]
	cfg.ConnConfig.ConnectTimeout = 2 * time.Second
	cfg.MaxConns = 8
	via, err := store.OpenConfig(context.Background(), cfg)
	if err != nil {
		t.Fatalf("testkit: open store via %s: %v", addr, err)
	}
	t.Cleanup(via.Close)
	return via
}

// Schema creates an empty schema in the test database, dropped when the test ends, and returns its
// name; DatabaseURLFor(schema) selects it.
func Schema(t testing.TB) string {
	t.Helper()
	schema := Name("t_")
	createDropped(t, "schema", "CREATE SCHEMA "+schema, "DROP SCHEMA "+schema+" CASCADE")
	return schema
}

// Database creates an empty database on the test server, dropped (with its connections) when the
// test ends, and returns its URL. For tests that need a whole database: what lives in public, or a
// database-level setting. Most tests want DB or Schema.
func Database(t testing.TB) string {
	t.Helper()
	name := Name("intake_t_")
	createDropped(t, "database", "CREATE DATABASE "+name, "DROP DATABASE "+name+" WITH (FORCE)")
	u, err := url.Parse(DatabaseURL())
	if err != nil {
		t.Fatalf("testkit: parse database url: %v", err)
	}
	u.Path = "/" + name
	return u.String()
}

// createDropped runs create on the test database and, when the test ends, drop.
func createDropped(t testing.TB, what, create, drop string) {
	t.Helper()
	ctx := context.Background()
	admin, err := pgxpool.New(ctx, DatabaseURL())
	if err != nil {
		t.Fatalf("testkit: connect %s: %v%s", config.Redact(DatabaseURL()), err, hint)
	}
	t.Cleanup(admin.Close)
	if _, err := admin.Exec(ctx, create); err != nil {
		t.Fatalf("testkit: create %s: %v%s", what, err, hint)
	}
	t.Cleanup(func() {
		if _, err := admin.Exec(context.Background(), drop); err != nil {
			t.Errorf("testkit: %s: %v", drop, err)
		}
	})
}

// DatabaseURLFor returns a URL that selects schema as search_path (for code that takes a URL).
func DatabaseURLFor(schema string) string {
	u := DatabaseURL()
	sep := "?"
	if strings.Contains(u, "?") {
		sep = "&"
	}
	return u + sep + "search_path=" + schema
}

// redisDBs is how many Redis databases the tests may use (1..15; 0 is left to `make run`).
const redisDBs = 15

// RedisDB reserves a Redis database for the test, flushes it, and returns its number. The
// reservation is a key with a TTL in database 0, released when the test ends.
func RedisDB(t testing.TB) int {
	t.Helper()
	ctx := context.Background()
	ctl := redis.NewClient(&redis.Options{Addr: RedisAddr(), DB: 0})
	t.Cleanup(func() { _ = ctl.Close() })
	owner := Name("")
	deadline := time.Now().Add(90 * time.Second)
	for {
		for db := 1; db <= redisDBs; db++ {
			key := fmt.Sprintf("intake:testkit:redis-db:%d", db)
			ok, err := ctl.SetNX(ctx, key, owner, 10*time.Minute).Result()
			if err != nil {
				t.Fatalf("testkit: redis %s: %v%s", RedisAddr(), err, hint)
			}
			if !ok {
				continue
			}
			c := redis.NewClient(&redis.Options{Addr: RedisAddr(), DB: db})
			err = c.FlushDB(ctx).Err()
			_ = c.Close()
			if err != nil {
				t.Fatalf("testkit: flush redis db %d: %v", db, err)
			}
			t.Cleanup(func() {
				c := redis.NewClient(&redis.Options{Addr: RedisAddr(), DB: db})
				_ = c.FlushDB(context.Background()).Err()
				_ = c.Close()
				_ = ctl.Del(context.Background(), key).Err()
			})
			return db
		}
		if time.Now().After(deadline) {
			t.Fatalf("testkit: no free Redis database among 1..%d after 90s", redisDBs)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// S3 returns an S3 client for the local MinIO.
func S3() *s3.Client { return objstore.NewClient(AWSConfig(), AWS()) }

// Bucket creates a fresh bucket and removes it (with every object and open multipart upload) when
// the test ends.
func Bucket(t testing.TB, client *s3.Client) string {
	t.Helper()
	ctx := context.Background()
	name := Name("t-")
	if _, err := client.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(name)}); err != nil {
		t.Fatalf("testkit: create bucket: %v%s", err, hint)
	}
	t.Cleanup(func() { emptyBucket(t, client, name) })
	return name
}

func emptyBucket(t testing.TB, client *s3.Client, bucket string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	uploads := s3.NewListMultipartUploadsPaginator(client, &s3.ListMultipartUploadsInput{Bucket: aws.String(bucket)})
	for uploads.HasMorePages() {
		page, err := uploads.NextPage(ctx)
		if err != nil {
			break
		}
		for _, u := range page.Uploads {
			_, _ = client.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{Bucket: aws.String(bucket), Key: u.Key, UploadId: u.UploadId})
		}
	}
	// URL-encoded keys: a test's key may hold what XML cannot carry (a control character, U+FFFF).
	objects := s3.NewListObjectsV2Paginator(client, &s3.ListObjectsV2Input{Bucket: aws.String(bucket), EncodingType: s3types.EncodingTypeUrl})
	for objects.HasMorePages() {
		page, err := objects.NextPage(ctx)
		if err != nil {
			t.Logf("testkit: list %s: %v", bucket, err)
			return
		}
		for _, o := range page.Contents {
			key := aws.ToString(o.Key)
			if page.EncodingType == s3types.EncodingTypeUrl {
				if key, err = url.QueryUnescape(key); err != nil {
					t.Logf("testkit: list %s: decode key %q: %v", bucket, aws.ToString(o.Key), err)
					continue
				}
			}
			_, _ = client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
		}
	}
	if _, err := client.DeleteBucket(ctx, &s3.DeleteBucketInput{Bucket: aws.String(bucket)}); err != nil {
		t.Logf("testkit: delete bucket %s: %v", bucket, err)
	}
}

// SQS returns an SQS client for the local kumo.
func SQS() *sqs.Client { return queue.NewClient(AWSConfig(), AWS()) }

// Queues is a fresh queue and its dead-letter queue.
type Queues struct {
	// URL is the main queue.
	URL string
	// DLQURL is the dead-letter queue it redrives to.
	DLQURL string
	// MaxReceiveCount is the redrive policy's threshold.
	MaxReceiveCount int
}

// Queue creates a queue with a dead-letter queue (redrive after maxReceiveCount receives) and a
// visibility timeout, and deletes both when the test ends.
func Queue(t testing.TB, client *sqs.Client, maxReceiveCount int, visibility time.Duration) Queues {
	t.Helper()
	ctx := context.Background()
	name := Name("t-")
	dlqURL, dlqARN, err := queue.Ensure(ctx, client, queue.Spec{Name: name + "-dlq"})
	if err != nil {
		t.Fatalf("testkit: %v%s", err, hint)
	}
	url, _, err := queue.Ensure(ctx, client, queue.Spec{
		Name: name, Visibility: visibility, DLQARN: dlqARN, MaxReceiveCount: maxReceiveCount,
	})
	if err != nil {
		t.Fatalf("testkit: %v%s", err, hint)
	}
	t.Cleanup(func() {
		for _, u := range []string{url, dlqURL} {
			_, _ = client.DeleteQueue(context.Background(), &sqs.DeleteQueueInput{QueueUrl: aws.String(u)})
		}
	})
	return Queues{URL: url, DLQURL: dlqURL, MaxReceiveCount: maxReceiveCount}
}
