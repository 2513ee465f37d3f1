package objstore

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/middleware"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/intakehq/intake/pipeline"
)

// Limits of CopyObject and multipart copies (S3's).
const (
	maxSingleCopy   = 5 << 30 // CopyObject refuses larger sources
	defaultCopyPart = 512 << 20
	maxParts        = 10000
)

// hashBufSize is the fixed buffer through which Hash streams an object.
const hashBufSize = 64 << 10

// Objects is the pipeline's [pipeline.ObjectStore] on S3. Errors wrap [pipeline.ErrNotFound] only
// when S3 says the object (or the version asked for) is missing from a bucket that exists: a
// NoSuchKey or NoSuchVersion answer, or the 404 of a HEAD (which has no body to say why) once a
// HeadBucket found the bucket (see [Objects.Head]). They wrap [pipeline.ErrChanged] when a
// conditional request fails (412: the object was replaced), and are an outage of S3
// ([pipeline.UnavailableError], matching [pipeline.ErrUnavailable]) when [IsRetryable] says so
// (throttling, 500, 502, 503, 504, transport errors, timeouts), when the bucket is missing
// (NoSuchBucket: an empty volume, a wrong endpoint) or a 404 carries no S3 code (a proxy's page),
// when S3 refuses intake's credentials (ExpiredToken, InvalidToken, TokenRefreshRequired,
// InvalidAccessKeyId, SignatureDoesNotMatch: no object is at fault, every request fails alike),
// when an AccessDenied (or a HEAD's bodiless 403 or 400) is confirmed store-wide by a HeadBucket of
// the same bucket that is refused too (see [Objects.classify]), and when an answer is cut off or
// gives no object size. Any other error wraps none of them and is the one object's: an
// AccessDenied while the bucket answers (a policy or a KMS key denying that object), a 409 of a
// request that raced another on the object (ConditionalRequestConflict, OperationAborted: trying
// that message again tells what happened), another 400, an aborted multipart copy's NoSuchUpload,
// another 5xx (a 501 NotImplemented of a store that lacks the request's operation or one of its
// headers: the HeadBucket of the consumer's outage check would pass, and the same request fail
// again).
type Objects struct {
	client *s3.Client
	// presigned sends Peek's GETs without the SDK's middleware (nil: the SDK does).
	presigned *presignedGetter
	// maxCopySize is the largest object moved with one CopyObject; larger ones are copied part by
	// part (UploadPartCopy) in parts of copyPartSize.
	maxCopySize  int64
	copyPartSize int64

	// bucketsMu guards bucketSeen and bucketChecks (see bucketExists).
	bucketsMu sync.Mutex
	// bucketSeen is, per bucket, when the latest HeadBucket that found it was sent.
	bucketSeen map[string]time.Time
	// bucketChecks is, per bucket, the HeadBucket in flight.
	bucketChecks map[string]*bucketCheck
}

var _ pipeline.ObjectStore = (*Objects)(nil)

// NewObjects returns the object store of client. Peek sends presigned GETs, with fasthttp or the
// client's HTTP client, when the client's options allow it (see [Objects.Peek]).
func NewObjects(client *s3.Client) *Objects {
	return &Objects{
		client: client, presigned: newPresignedGetter(client.Options()),
		maxCopySize: maxSingleCopy, copyPartSize: defaultCopyPart,
	}
}

// Head returns the object's size, content type, ETag, version and modification time. A HEAD's 404
// has no body, so nothing in it tells a missing key from a missing bucket: Head reports the object
// missing (ErrNotFound) only once a HeadBucket sent after the HEAD found the bucket, and a bucket
// that is not there is an outage of S3 (see bucketExists).
func (o *Objects) Head(ctx context.Context, bucket, key string) (pipeline.ObjectInfo, error) {
	sent := time.Now()
	out, err := o.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		return pipeline.ObjectInfo{}, o.wrapHead(ctx, "head", bucket, key, sent, err)
	}
	return objectInfo(out), nil
}

func objectInfo(out *s3.HeadObjectOutput) pipeline.ObjectInfo {
	return pipeline.ObjectInfo{
		Size:            aws.ToInt64(out.ContentLength),
		ContentType:     aws.ToString(out.ContentType),
		ETag:            unquote(aws.ToString(out.ETag)),
		VersionID:       aws.ToString(out.VersionId),
		LastModified:    aws.ToTime(out.LastModified).UTC(),
		ContentEncoding: aws.ToString(out.ContentEncoding),
	}
}

// Peek returns the object's metadata and its first n bytes with a single ranged GET (the
// response carries the size in Content-Range, and the ETag, type, version and modification time),
// which saves the HEAD a separate [Objects.Head] would cost. An empty object has no byte 0: S3
// answers 416 and Peek falls back to HEAD, which must still show an empty object (of the 416's
// ETag, when it gave one): an object written since, which nothing of Peek has read, returns
// [pipeline.ErrChanged] (see emptyObject). An answer that does not give the object's size (a server
// that ignored the Range and sent the object chunked, or until it closed the connection) or whose
// body is cut off is an outage of S3: Peek never returns a guessed size or a fragment as the
// prefix.
//
// Peek is the consumer's one S3 request per event, so it bypasses the SDK's middleware stack when
// it can: the GET is presigned by a sigv4.Signer built from the client's options and sent with
// fasthttp in the calling goroutine (when the client's HTTP client is the SDK's own and no proxy
// applies; see fastGetter) or else through the client's HTTP client, and its response is mapped as
// the SDK maps it, errors included (same codes, same sentinels). A retryable failure of that
// request (throttling, 500, 502, 503, 504, transport) is repeated through the SDK, whose retryer
// backs off as for every other call. Options the Signer does not support (FIPS, dual-stack,
// accelerate, anonymous access), access points and S3 Express buckets always go through the SDK.
func (o *Objects) Peek(ctx context.Context, bucket, key string, n int) (pipeline.ObjectInfo, []byte, error) {
	if o.presigned.handles(bucket) {
		info, prefix, retry, err := o.peekPresigned(ctx, bucket, key, n)
		if !retry {
			return info, prefix, err
		}
	}
	return o.peekSDK(ctx, bucket, key, n)
}

// peekSDK is Peek through the SDK's GetObject.
func (o *Objects) peekSDK(ctx context.Context, bucket, key string, n int) (pipeline.ObjectInfo, []byte, error) {
	out, err := o.client.GetObject(ctx, &s3.GetObjectInput{
		Bucket: aws.String(bucket), Key: aws.String(key), Range: aws.String(fmt.Sprintf("bytes=0-%d", n-1)),
	})
	if isInvalidRange(err) {
		info, err := o.emptyObject(ctx, bucket, key, err)
		return info, nil, err
	}
	if err != nil {
		return pipeline.ObjectInfo{}, nil, o.classify(ctx, "peek", bucket, key, err)
	}
	defer out.Body.Close()
	size, err := objectSize(rawStatus(out.ResultMetadata), contentLength(out.ContentLength), aws.ToString(out.ContentRange))
	if err != nil {
		return pipeline.ObjectInfo{}, nil, pipeline.Unavailable(pipeline.DependencyS3, fmt.Errorf("peek %s/%s: %w", bucket, key, err))
	}
	info := pipeline.ObjectInfo{
		Size:            size,
		ContentType:     aws.ToString(out.ContentType),
		ETag:            unquote(aws.ToString(out.ETag)),
		VersionID:       aws.ToString(out.VersionId),
		LastModified:    aws.ToTime(out.LastModified).UTC(),
		ContentEncoding: aws.ToString(out.ContentEncoding),
	}
	// Reading less than the answer announced means the body was cut off (see peekPresigned).
	buf, err := readPrefix(out.Body, n, size)
	if err != nil {
		return pipeline.ObjectInfo{}, nil, wrap(ctx, "peek", bucket, key, err)
	}
	return info, buf, nil
}

// emptyObject is Peek's answer when its ranged GET was refused with 416 (rangeErr): the object it
// reached had no byte 0, so it was empty. Its metadata comes from a HEAD, which is another request:
// the key may hold another object by then (an uploader allowed sizes from 0 racing an empty upload
// with another one). The HEAD counts only if it still shows an empty object (of the 416's ETag when
// that answer gave one): anything else returns [pipeline.ErrChanged], so that the inspection starts
// over and reads the new object's bytes instead of judging its metadata by the empty prefix.
func (o *Objects) emptyObject(ctx context.Context, bucket, key string, rangeErr error) (pipeline.ObjectInfo, error) {
	info, err := o.Head(ctx, bucket, key)
	if err != nil {
		return pipeline.ObjectInfo{}, err
	}
	if info.Size != 0 {
		return pipeline.ObjectInfo{}, fmt.Errorf("peek %s/%s: the ranged GET found the object empty (416), its HEAD then %d bytes (ETag %s): %w",
			bucket, key, info.Size, info.ETag, pipeline.ErrChanged)
	}
	if etag := errorETag(rangeErr); etag != "" && etag != info.ETag {
		return pipeline.ObjectInfo{}, fmt.Errorf("peek %s/%s: the ranged GET found an empty object of ETag %s (416), its HEAD one of ETag %s: %w",
			bucket, key, etag, info.ETag, pipeline.ErrChanged)
	}
	return info, nil
}

// errorETag returns the unquoted ETag header of the failed response err came from ("" when none).
func errorETag(err error) string {
	var pe *s3Error
	if errors.As(err, &pe) {
		return unquote(pe.etag)
	}
	var re interface{ HTTPResponse() *smithyhttp.Response }
	if errors.As(err, &re) {
		if r := re.HTTPResponse(); r != nil && r.Response != nil {
			return unquote(r.Header.Get("ETag"))
		}
	}
	return ""
}

// errNoSize says that a 200 or 206 answer to a ranged GET does not give the object's size.
var errNoSize = errors.New("the answer gives no object size (no complete length in Content-Range, no Content-Length)")

// objectSize returns the object's size from a 200 or 206 answer (status; 0: unknown) to a ranged
// GET: the complete length of its Content-Range, or, for an answer without Content-Range that is
// not a 206 (a server that ignored the Range sends the whole object), its Content-Length (-1: none).
// Without either (a whole object sent chunked, a 206 without a complete length) it returns
// errNoSize: the size is unknown, and a guess (0, the part's length) would be recorded as the
// object's.
func objectSize(status int, contentLength int64, contentRange string) (int64, error) {
	if total, ok := rangeTotal(contentRange); ok {
		return total, nil
	}
	if contentRange == "" && status != http.StatusPartialContent && contentLength >= 0 {
		return contentLength, nil
	}
	return 0, errNoSize
}

// contentLength is an SDK output's Content-Length, -1 when the answer had none.
func contentLength(v *int64) int64 {
	if v == nil {
		return -1
	}
	return *v
}

// rawStatus returns the HTTP status of an SDK call's answer (0: unknown).
func rawStatus(md middleware.Metadata) int {
	if r, ok := awsmiddleware.GetRawResponse(md).(*smithyhttp.Response); ok && r != nil {
		return r.StatusCode
	}
	return 0
}

// readPrefix reads the first n bytes of a GET's body, or all of it when it is shorter. length is
// what the answer announced (its Content-Length, or the object's size; -1: nothing, as for a
// chunked body): a body that ends before min(n, length) bytes was cut off, and one of unknown
// length must end cleanly (io.EOF; a chunked body cut off ends with io.ErrUnexpectedEOF). A body
// cut off returns an error wrapping io.ErrUnexpectedEOF, which has no HTTP status and so is
// retryable ([IsRetryable]): the bytes read are a fragment, not the object's prefix.
func readPrefix(body io.Reader, n int, length int64) ([]byte, error) {
	want := int64(n)
	if length >= 0 {
		want = min(want, length)
	}
	buf := make([]byte, want)
	m := 0
	for m < len(buf) {
		k, err := body.Read(buf[m:])
		m += k
		switch {
		case m == len(buf) || err == nil:
		case errors.Is(err, io.EOF) && length < 0:
			return buf[:m], nil
		case errors.Is(err, io.EOF):
			return nil, fmt.Errorf("read the first %d bytes: the body ended after %d: %w", len(buf), m, io.ErrUnexpectedEOF)
		default:
			return nil, fmt.Errorf("read the first %d bytes: %w", len(buf), err)
		}
	}
	return buf, nil
}

// rangeTotal parses the complete length of a Content-Range header ("bytes 0-3071/12345").
func rangeTotal(cr string) (int64, bool) {
	_, total, ok := strings.Cut(cr, "/")
	if !ok || total == "*" {
		return 0, false
	}
	v, err := strconv.ParseInt(total, 10, 64)
	return v, err == nil && v >= 0
}

// ReadPrefix returns the first n bytes of the object (all of it when shorter) with one ranged
// GET, conditional on the ref's version and ETag. A body that ends before the bytes its answer
// announced (a connection cut) is an outage of S3, not a short object.
func (o *Objects) ReadPrefix(ctx context.Context, obj pipeline.ObjectRef, n int) ([]byte, error) {
	if n <= 0 {
		return nil, nil
	}
	in := getInput(obj)
	in.Range = aws.String(fmt.Sprintf("bytes=0-%d", n-1))
	out, err := o.client.GetObject(ctx, in)
	if isInvalidRange(err) { // an empty object has no byte 0
		return nil, nil
	}
	if err != nil {
		return nil, o.classify(ctx, "read prefix of", obj.Bucket, obj.Key, err)
	}
	defer out.Body.Close()
	buf, err := readPrefix(out.Body, n, contentLength(out.ContentLength))
	if err != nil {
		return nil, wrap(ctx, "read prefix of", obj.Bucket, obj.Key, err)
	}
	return buf, nil
}

// Hash streams the object through SHA-256 with a fixed buffer, so memory does not grow with the
// object's size, and returns the digest and the number of bytes read.
func (o *Objects) Hash(ctx context.Context, obj pipeline.ObjectRef) ([]byte, int64, error) {
	out, err := o.client.GetObject(ctx, getInput(obj))
	if err != nil {
		return nil, 0, o.classify(ctx, "hash", obj.Bucket, obj.Key, err)
	}
	defer out.Body.Close()
	h := sha256.New()
	buf := make([]byte, hashBufSize)
	// Hide any WriterTo of the body so that the copy goes through buf.
	n, err := io.CopyBuffer(h, struct{ io.Reader }{out.Body}, buf)
	if err != nil {
		return nil, n, wrap(ctx, "hash", obj.Bucket, obj.Key, err)
	}
	return h.Sum(nil), n, nil
}

func getInput(obj pipeline.ObjectRef) *s3.GetObjectInput {
	in := &s3.GetObjectInput{Bucket: aws.String(obj.Bucket), Key: aws.String(obj.Key)}
	if obj.VersionID != "" {
		in.VersionId = aws.String(obj.VersionID)
	}
	if obj.ETag != "" {
		in.IfMatch = aws.String(quote(obj.ETag))
	}
	return in
}

// Tag merges tags into the object's tag set (other tags are kept). PutObjectTagging has no
// precondition: in an unversioned bucket the ETag is checked by a HEAD just before, which leaves
// a window of a few milliseconds in which a replacement could be tagged.
func (o *Objects) Tag(ctx context.Context, obj pipeline.ObjectRef, tags map[string]string) error {
	if err := o.check(ctx, obj); err != nil {
		return err
	}
	var version *string
	if obj.VersionID != "" {
		version = aws.String(obj.VersionID)
	}
	cur, err := o.client.GetObjectTagging(ctx, &s3.GetObjectTaggingInput{
		Bucket: aws.String(obj.Bucket), Key: aws.String(obj.Key), VersionId: version,
	})
	if err != nil {
		return o.classify(ctx, "get tags of", obj.Bucket, obj.Key, err)
	}
	merged := map[string]string{}
	for _, t := range cur.TagSet {
		merged[aws.ToString(t.Key)] = aws.ToString(t.Value)
	}
	maps.Copy(merged, tags)
	set := make([]types.Tag, 0, len(merged))
	for _, k := range slices.Sorted(maps.Keys(merged)) {
		set = append(set, types.Tag{Key: aws.String(k), Value: aws.String(merged[k])})
	}
	_, err = o.client.PutObjectTagging(ctx, &s3.PutObjectTaggingInput{
		Bucket: aws.String(obj.Bucket), Key: aws.String(obj.Key), VersionId: version,
		Tagging: &types.Tagging{TagSet: set},
	})
	if err != nil {
		return o.classify(ctx, "tag", obj.Bucket, obj.Key, err)
	}
	return nil
}

// check returns ErrChanged when the object is no longer the ref's content (HEAD).
func (o *Objects) check(ctx context.Context, obj pipeline.ObjectRef) error {
	if obj.ETag == "" && obj.VersionID == "" {
		return nil
	}
	_, err := o.head(ctx, obj)
	return err
}

// head HEADs the ref's version and checks its ETag (a 404 is classified as [Objects.Head]'s).
func (o *Objects) head(ctx context.Context, obj pipeline.ObjectRef) (*s3.HeadObjectOutput, error) {
	in := &s3.HeadObjectInput{Bucket: aws.String(obj.Bucket), Key: aws.String(obj.Key)}
	if obj.VersionID != "" {
		in.VersionId = aws.String(obj.VersionID)
	}
	if obj.ETag != "" {
		in.IfMatch = aws.String(quote(obj.ETag))
	}
	sent := time.Now()
	out, err := o.client.HeadObject(ctx, in)
	if err != nil {
		return nil, o.wrapHead(ctx, "head", obj.Bucket, obj.Key, sent, err)
	}
	if obj.ETag != "" && unquote(aws.ToString(out.ETag)) != obj.ETag {
		return nil, fmt.Errorf("head %s/%s: ETag %s, want %s: %w", obj.Bucket, obj.Key, aws.ToString(out.ETag), obj.ETag, pipeline.ErrChanged)
	}
	return out, nil
}

// Move copies the object to dstKey in the same bucket (metadata and tags kept; objects larger
// than 5 GiB are copied part by part, without their tags) and then deletes the source. Both steps
// are conditional on the ref's ETag, so a replaced object is left alone. A retry after a crash
// between them finds the copy already there (same ETag and size) and only deletes the source: the
// copy is written once. (A part-by-part copy has another ETag than its source, so its retry copies
// again.)
//
// copied reports whether dstKey holds the copy of the ref's content when Move returns, whatever
// err says: it is true when deleting the source failed after the copy was made (or found), such as
// with [pipeline.ErrChanged] when the source was replaced between the copy and the delete, or
// [pipeline.ErrNotFound] when it was deleted meanwhile, so that the caller records the copy.
func (o *Objects) Move(ctx context.Context, obj pipeline.ObjectRef, dstKey string) (copied bool, err error) {
	head, err := o.head(ctx, obj)
	if err != nil {
		return false, err
	}
	src := copySource(obj)
	size := aws.ToInt64(head.ContentLength)
	if o.holds(ctx, obj.Bucket, dstKey, head) {
		return true, o.Delete(ctx, obj)
	}
	if size <= o.maxCopySize {
		in := &s3.CopyObjectInput{Bucket: aws.String(obj.Bucket), Key: aws.String(dstKey), CopySource: aws.String(src)}
		if obj.ETag != "" {
			in.CopySourceIfMatch = aws.String(quote(obj.ETag))
		}
		if _, err := o.client.CopyObject(ctx, in); err != nil {
			return false, o.classify(ctx, "copy", obj.Bucket, obj.Key, err)
		}
	} else if err := o.copyParts(ctx, obj, head, src, dstKey); err != nil {
		return false, err
	}
	return true, o.Delete(ctx, obj)
}

// holds reports whether dstKey already holds the content head describes (a copy made by an attempt
// that did not get to delete its source). Any doubt (an error, another ETag) says no: copy again.
func (o *Objects) holds(ctx context.Context, bucket, dstKey string, head *s3.HeadObjectOutput) bool {
	dst, err := o.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(bucket), Key: aws.String(dstKey)})
	return err == nil && aws.ToString(dst.ETag) != "" && aws.ToString(dst.ETag) == aws.ToString(head.ETag) &&
		aws.ToInt64(dst.ContentLength) == aws.ToInt64(head.ContentLength)
}

// copyParts copies a large object with UploadPartCopy, aborting the upload on failure.
func (o *Objects) copyParts(ctx context.Context, obj pipeline.ObjectRef, head *s3.HeadObjectOutput, src, dstKey string) error {
	size := aws.ToInt64(head.ContentLength)
	partSize := max(o.copyPartSize, (size+maxParts-1)/maxParts)
	created, err := o.client.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{
		Bucket: aws.String(obj.Bucket), Key: aws.String(dstKey),
		ContentType: head.ContentType, ContentEncoding: head.ContentEncoding,
		ContentDisposition: head.ContentDisposition, ContentLanguage: head.ContentLanguage,
		CacheControl: head.CacheControl, Metadata: head.Metadata,
	})
	if err != nil {
		return o.classify(ctx, "start multipart copy of", obj.Bucket, obj.Key, err)
	}
	abort := func() {
		// The upload must not linger even when ctx is done.
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		_, _ = o.client.AbortMultipartUpload(actx, &s3.AbortMultipartUploadInput{
			Bucket: aws.String(obj.Bucket), Key: aws.String(dstKey), UploadId: created.UploadId,
		})
	}
	var parts []types.CompletedPart
	for off, n := int64(0), int32(1); off < size; off, n = off+partSize, n+1 {
		in := &s3.UploadPartCopyInput{
			Bucket: aws.String(obj.Bucket), Key: aws.String(dstKey), UploadId: created.UploadId,
			PartNumber: aws.Int32(n), CopySource: aws.String(src),
			CopySourceRange: aws.String(fmt.Sprintf("bytes=%d-%d", off, min(off+partSize, size)-1)),
		}
		if obj.ETag != "" {
			in.CopySourceIfMatch = aws.String(quote(obj.ETag))
		}
		out, err := o.client.UploadPartCopy(ctx, in)
		if err != nil {
			abort()
			return o.classify(ctx, fmt.Sprintf("copy part %d of", n), obj.Bucket, obj.Key, err)
		}
		parts = append(parts, types.CompletedPart{ETag: out.CopyPartResult.ETag, PartNumber: aws.Int32(n)})
	}
	_, err = o.client.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{
		Bucket: aws.String(obj.Bucket), Key: aws.String(dstKey), UploadId: created.UploadId,
		MultipartUpload: &types.CompletedMultipartUpload{Parts: parts},
	})
	if err != nil {
		abort()
		return o.classify(ctx, "complete multipart copy of", obj.Bucket, obj.Key, err)
	}
	return nil
}

// nullVersion is the version ID S3 gives an object written while the bucket's versioning was off
// or suspended; a PUT to its key then overwrites it in place.
const nullVersion = "null"

// Delete deletes the object. A ref with a VersionID deletes that version, for good: the key's other
// versions stay, and so does a newer one written since the ref was taken (a delete marker would
// hide it, and leave the ref's version readable by its id). A ref without one deletes the key (a
// delete marker in a versioned bucket). The ref's version and ETag are checked by a HEAD. Without a
// version, the ETag is also sent as If-Match, which AWS enforces (MinIO ignores it, leaving the
// HEAD's small window); with one it is not: AWS compares a DELETE's If-Match with the key's current
// version, whatever version it names, and would refuse to delete a version a newer one has
// replaced, while a version's content, checked by the HEAD, never changes. Except the "null"
// version (written while versioning was off or suspended), which a PUT overwrites in place: it is
// sent If-Match, which guards it as the current version it then is. Deleting an object that is
// already gone succeeds, unless the HEAD finds it gone (ErrNotFound).
func (o *Objects) Delete(ctx context.Context, obj pipeline.ObjectRef) error {
	if err := o.check(ctx, obj); err != nil {
		return err
	}
	in := &s3.DeleteObjectInput{Bucket: aws.String(obj.Bucket), Key: aws.String(obj.Key)}
	if obj.VersionID != "" {
		in.VersionId = aws.String(obj.VersionID)
	}
	if obj.ETag != "" && (obj.VersionID == "" || obj.VersionID == nullVersion) {
		in.IfMatch = aws.String(quote(obj.ETag))
	}
	if _, err := o.client.DeleteObject(ctx, in); err != nil {
		return o.classify(ctx, "delete", obj.Bucket, obj.Key, err)
	}
	return nil
}

// copySource is the x-amz-copy-source of a ref: bucket/key with every key segment escaped
// (spaces and '+' included) and the version, if any.
func copySource(obj pipeline.ObjectRef) string {
	segs := strings.Split(obj.Key, "/")
	for i, s := range segs {
		segs[i] = strings.ReplaceAll(url.QueryEscape(s), "+", "%20")
	}
	src := obj.Bucket + "/" + strings.Join(segs, "/")
	if obj.VersionID != "" {
		src += "?versionId=" + url.QueryEscape(obj.VersionID)
	}
	return src
}

// wrap adds the operation and the pipeline sentinel that classifies err (see [Objects]): only
// NoSuchKey and NoSuchVersion say that the object is missing. A 404 without them (NoSuchBucket, a
// GET's 404 without S3's code) is an outage, except NoSuchUpload (a multipart copy's upload that
// someone aborted), which wraps no sentinel; so are credentials S3 refuses (IsCredentialsError). A
// HEAD's 404 goes through wrapHead, and an AccessDenied needs [Objects.classify]'s HeadBucket to be
// told apart: wrap alone leaves it the object's.
func wrap(ctx context.Context, op, bucket, key string, err error) error {
	switch {
	case isObjectMissing(err):
		return fmt.Errorf("%s %s/%s: %v: %w", op, bucket, key, err, pipeline.ErrNotFound)
	case isPreconditionFailed(err):
		return fmt.Errorf("%s %s/%s: %v: %w", op, bucket, key, err, pipeline.ErrChanged)
	case errors.Is(ctx.Err(), context.Canceled), isNoSuchUpload(err), isConflict(err):
		return fmt.Errorf("%s %s/%s: %w", op, bucket, key, err)
	case IsRetryable(err), IsCredentialsError(err), statusCode(err) == http.StatusNotFound:
		return pipeline.Unavailable(pipeline.DependencyS3, fmt.Errorf("%s %s/%s: %w", op, bucket, key, err))
	}
	return fmt.Errorf("%s %s/%s: %w", op, bucket, key, err)
}

// classify is wrap for the failed request of an object of bucket, except that a refusal that may be
// the object's or the store's (isRefusal: an AccessDenied, a 403 or 400 without code) is looked
// into with a HeadBucket of the same bucket, sent now (or one sent since, shared: see
// bucketExists). When that HeadBucket is refused too (403, 400, 401, refused credentials), finds no
// bucket, or fails for a retryable reason, intake cannot use the store, and the refusal is an outage
// of S3: the consumer pauses and checks the store instead of spending every message's receives on
// it, and then dead-lettering the queue. When the bucket answers, the refusal is the object's (a
// bucket policy or a KMS key denying that object alone), and the error wraps no sentinel: that
// message alone is retried, then dead-lettered. intake's readiness and outage checks are
// HeadBuckets too (s3:ListBucket), so a role that may not send them is no working configuration.
func (o *Objects) classify(ctx context.Context, op, bucket, key string, err error) error {
	if !isRefusal(err) || errors.Is(ctx.Err(), context.Canceled) {
		return wrap(ctx, op, bucket, key, err)
	}
	berr := o.bucketExists(ctx, bucket, time.Now())
	if berr == nil {
		return wrap(ctx, op, bucket, key, err)
	}
	e := fmt.Errorf("%s %s/%s: %w; and a HeadBucket of %s failed too: %v", op, bucket, key, err, bucket, berr)
	switch status := statusCode(berr); {
	case errors.Is(ctx.Err(), context.Canceled):
		return e
	case IsCredentialsError(berr), IsRetryable(berr), isRefusal(berr), status == http.StatusUnauthorized, status == http.StatusNotFound:
		return pipeline.Unavailable(pipeline.DependencyS3, e)
	}
	return e
}

// wrapHead is classify for a HEAD of the object sent at sent. Its 404 has no body, so no code tells
// a missing key from a missing bucket: it is the object missing (ErrNotFound) once bucketExists
// confirms the bucket, an outage of S3 when the bucket is not there (or cannot be looked at for a
// retryable reason, or refuses intake's credentials), and an error without sentinel otherwise.
func (o *Objects) wrapHead(ctx context.Context, op, bucket, key string, sent time.Time, err error) error {
	if statusCode(err) != http.StatusNotFound {
		return o.classify(ctx, op, bucket, key, err)
	}
	berr := o.bucketExists(ctx, bucket, sent)
	if berr == nil {
		return fmt.Errorf("%s %s/%s: %v: %w", op, bucket, key, err, pipeline.ErrNotFound)
	}
	e := fmt.Errorf("%s %s/%s: %v, and the bucket is not confirmed: %w", op, bucket, key, err, berr)
	switch {
	case errors.Is(ctx.Err(), context.Canceled):
		return e
	case statusCode(berr) == http.StatusNotFound, IsRetryable(berr), IsCredentialsError(berr), isRefusal(berr):
		return pipeline.Unavailable(pipeline.DependencyS3, e)
	}
	return e
}

// bucketCheck is a HeadBucket in flight, which callers of bucketExists may wait for.
type bucketCheck struct {
	sent time.Time     // when it was sent (at the latest)
	done chan struct{} // closed once err is set
	err  error
}

// bucketExists returns nil when a HeadBucket sent at or after since found the bucket: an earlier
// caller's (one that succeeded, or the one in flight), or one it sends now. A HeadBucket sent
// before since proves nothing about since (MinIO may have come back on an empty volume in between),
// so a confirmation is shared by the 404s of HEADs sent before it, never reused for later ones:
// every removal whose HEAD finds nothing costs at most one HeadBucket, fewer when concurrent. It
// returns the HeadBucket's error (a 404 when the bucket is missing) or ctx's.
func (o *Objects) bucketExists(ctx context.Context, bucket string, since time.Time) error {
	o.bucketsMu.Lock()
	if seen, ok := o.bucketSeen[bucket]; ok && !seen.Before(since) {
		o.bucketsMu.Unlock()
		return nil
	}
	if c := o.bucketChecks[bucket]; c != nil && !c.sent.Before(since) {
		o.bucketsMu.Unlock()
		select {
		case <-c.done:
		case <-ctx.Done():
			return ctx.Err()
		}
		if c.err == nil {
			return nil
		}
		// It failed, maybe for its caller's own reason (a cancelled context): look again.
		return o.headBucket(ctx, bucket, &bucketCheck{sent: time.Now(), done: make(chan struct{})})
	}
	c := &bucketCheck{sent: time.Now(), done: make(chan struct{})}
	if o.bucketChecks == nil {
		o.bucketChecks = map[string]*bucketCheck{}
	}
	o.bucketChecks[bucket] = c
	o.bucketsMu.Unlock()
	return o.headBucket(ctx, bucket, c)
}

// headBucket sends c's HeadBucket, records its success in bucketSeen and publishes its result.
func (o *Objects) headBucket(ctx context.Context, bucket string, c *bucketCheck) error {
	_, err := o.client.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String(bucket)})
	o.bucketsMu.Lock()
	if err == nil && c.sent.After(o.bucketSeen[bucket]) {
		if o.bucketSeen == nil {
			o.bucketSeen = map[string]time.Time{}
		}
		o.bucketSeen[bucket] = c.sent
	}
	c.err = err
	if o.bucketChecks[bucket] == c {
		delete(o.bucketChecks, bucket)
	}
	o.bucketsMu.Unlock()
	close(c.done)
	return err
}

func isPreconditionFailed(err error) bool {
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) && apiErr.ErrorCode() == "PreconditionFailed" {
		return true
	}
	var respErr interface{ HTTPStatusCode() int }
	return errors.As(err, &respErr) && respErr.HTTPStatusCode() == http.StatusPreconditionFailed
}

func isInvalidRange(err error) bool {
	if err == nil {
		return false // before respErr, which escapes to the heap: every successful Peek asks
	}
	var respErr interface{ HTTPStatusCode() int }
	return errors.As(err, &respErr) && respErr.HTTPStatusCode() == http.StatusRequestedRangeNotSatisfiable
}

func quote(etag string) string { return `"` + etag + `"` }

func unquote(etag string) string { return strings.Trim(etag, `"`) }
