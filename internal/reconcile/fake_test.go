package reconcile

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/intakehq/intake/internal/store/dbq"
)

// fkey is the key of index i in the fakes: byte order is index order.
func fkey(i int) string { return fmt.Sprintf("k%08d", i) }

// fakeS3 is an in-process bucket of the keys fkey(i), i in [0, n), for which has(i) (nil: all),
// generated page by page: it holds no listing in memory. ListObjectsV2 fails its page failPage
// (counting from 1) with failErr; head answers HeadObject (nil: 404 for every key).
type fakeS3 struct {
	n        int
	has      func(i int) bool
	failPage int
	failErr  error
	head     func(key string) error

	mu    sync.Mutex
	pages int
	heads []string
}

func (f *fakeS3) ListObjectsV2(ctx context.Context, in *s3.ListObjectsV2Input, _ ...func(*s3.Options)) (*s3.ListObjectsV2Output, error) {
	f.mu.Lock()
	f.pages++
	page := f.pages
	f.mu.Unlock()
	if page == f.failPage {
		return nil, f.failErr
	}
	i := 0
	if tok := aws.ToString(in.ContinuationToken); tok != "" {
		var err error
		if i, err = strconv.Atoi(tok); err != nil {
			return nil, err
		}
	}
	out := &s3.ListObjectsV2Output{}
	for ; i < f.n && len(out.Contents) < int(aws.ToInt32(in.MaxKeys)); i++ {
		if f.has == nil || f.has(i) {
			out.Contents = append(out.Contents, types.Object{Key: aws.String(fkey(i)), ETag: aws.String(`"e"`), Size: aws.Int64(1)})
		}
	}
	out.IsTruncated = aws.Bool(i < f.n)
	if i < f.n {
		out.NextContinuationToken = aws.String(strconv.Itoa(i))
	}
	return out, ctx.Err()
}

func (f *fakeS3) HeadObject(ctx context.Context, in *s3.HeadObjectInput, _ ...func(*s3.Options)) (*s3.HeadObjectOutput, error) {
	key := aws.ToString(in.Key)
	f.mu.Lock()
	if len(f.heads) < 1000 {
		f.heads = append(f.heads, key)
	}
	f.mu.Unlock()
	if f.head != nil {
		if err := f.head(key); err != nil {
			return nil, err
		}
		return &s3.HeadObjectOutput{}, nil
	}
	return nil, httpError(http.StatusNotFound, "NotFound")
}

func (f *fakeS3) HeadBucket(context.Context, *s3.HeadBucketInput, ...func(*s3.Options)) (*s3.HeadBucketOutput, error) {
	return &s3.HeadBucketOutput{}, nil
}

// httpError is an S3 error answered with status (as the SDK returns it, minus the operation).
func httpError(status int, code string) error {
	return &smithyhttp.ResponseError{
		Response: &smithyhttp.Response{Response: &http.Response{StatusCode: status}},
		Err:      &smithy.GenericAPIError{Code: code, Message: http.StatusText(status)},
	}
}

// fakeRows are rows fkey(i), i in [0, n), for which has(i), status valid, etag "e", updated an
// hour ago, generated page by page. OpsMarkMissing counts the keys it marks.
type fakeRows struct {
	n   int
	has func(i int) bool

	mu     sync.Mutex
	marked int
}

func (r *fakeRows) OpsNow(context.Context) (time.Time, error) { return time.Now(), nil }

func (r *fakeRows) OpsListObjects(_ context.Context, arg dbq.OpsListObjectsParams) ([]dbq.OpsListObjectsRow, error) {
	i := 0
	if arg.AfterKey != "" {
		after, err := strconv.Atoi(arg.AfterKey[1:])
		if err != nil {
			return nil, err
		}
		i = after + 1
	}
	var out []dbq.OpsListObjectsRow
	for ; i < r.n && len(out) < int(arg.MaxRows); i++ {
		if r.has(i) {
			out = append(out, dbq.OpsListObjectsRow{Key: fkey(i), Etag: aws.String("e"), Status: "valid", UpdatedAt: time.Now().Add(-time.Hour)})
		}
	}
	return out, nil
}

func (r *fakeRows) OpsMarkMissing(_ context.Context, arg dbq.OpsMarkMissingParams) ([]string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.marked += len(arg.Keys)
	return arg.Keys, nil
}

// recordEnqueuer records the keys it is asked to enqueue (up to keep of them), and counts them all;
// every is called after each one.
type recordEnqueuer struct {
	keep  int
	every func(n int)

	mu   sync.Mutex
	n    int
	keys []string
}

func (e *recordEnqueuer) EnqueueInspect(_ context.Context, _, key string) error {
	e.mu.Lock()
	e.n++
	n := e.n
	if len(e.keys) < e.keep {
		e.keys = append(e.keys, key)
	}
	e.mu.Unlock()
	if e.every != nil {
		e.every(n)
	}
	return nil
}
