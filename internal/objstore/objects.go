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
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"

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

// Objects is the pipeline's [pipeline.ObjectStore] on S3. Errors wrap
// [pipeline.ErrNotFound] for a missing object or bucket (404), [pipeline.ErrChanged] when a
// conditional request fails (412: the object was replaced), and are an outage of S3
// ([pipeline.UnavailableError], matching [pipeline.ErrUnavailable]) when [IsRetryable] says so
// (throttling, 5xx, transport errors, timeouts).
type Objects struct {
	client *s3.Client
	// presigned sends Peek's GETs without the SDK's middleware (nil: the SDK does).
	presigned *presignedGetter
	// maxCopySize is the largest object moved with one CopyObject; larger ones are copied part by
	// part (UploadPartCopy) in parts of copyPartSize.
	maxCopySize  int64
	copyPartSize int64
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

// Head returns the object's size, content type, ETag, version and modification time.
func (o *Objects) Head(ctx context.Context, bucket, key string) (pipeline.ObjectInfo, error) {
	out, err := o.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		return pipeline.ObjectInfo{}, wrap(ctx, "head", bucket, key, err)
	}
	return objectInfo(out), nil
}

func objectInfo(out *s3.HeadObjectOutput) pipeline.ObjectInfo {
	return pipeline.ObjectInfo{
		Size:         aws.ToInt64(out.ContentLength),
		ContentType:  aws.ToString(out.ContentType),
		ETag:         unquote(aws.ToString(out.ETag)),
		VersionID:    aws.ToString(out.VersionId),
		LastModified: aws.ToTime(out.LastModified).UTC(),
	}
}

// Peek returns the object's metadata and its first n bytes with a single ranged GET (the
// response carries the size in Content-Range, and the ETag, type, version and modification time),
// which saves the HEAD a separate [Objects.Head] would cost. An empty object has no byte 0: S3
// answers 416 and Peek falls back to HEAD.
//
// Peek is the consumer's one S3 request per event, so it bypasses the SDK's middleware stack when
// it can: the GET is presigned by a sigv4.Signer built from the client's options and sent with
// fasthttp in the calling goroutine (when the client's HTTP client is the SDK's own and no proxy
// applies; see fastGetter) or else through the client's HTTP client, and its response is mapped as
// the SDK maps it, errors included (same codes, same sentinels). A retryable failure of that
// request (throttling, 5xx, transport) is repeated through the SDK, whose retryer backs off as for
// every other call. Options the Signer does not support (FIPS, dual-stack, accelerate, anonymous
// access), access points and S3 Express buckets always go through the SDK.
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
		info, err := o.Head(ctx, bucket, key)
		return info, nil, err
	}
	if err != nil {
		return pipeline.ObjectInfo{}, nil, wrap(ctx, "peek", bucket, key, err)
	}
	defer out.Body.Close()
	info := pipeline.ObjectInfo{
		Size:         aws.ToInt64(out.ContentLength),
		ContentType:  aws.ToString(out.ContentType),
		ETag:         unquote(aws.ToString(out.ETag)),
		VersionID:    aws.ToString(out.VersionId),
		LastModified: aws.ToTime(out.LastModified).UTC(),
	}
	if total, ok := rangeTotal(aws.ToString(out.ContentRange)); ok {
		info.Size = total
	}
	// Reading less than the answer announced means the body was cut off (see peekPresigned).
	buf := make([]byte, min(int64(n), max(info.Size, 0)))
	if _, err := io.ReadFull(out.Body, buf); err != nil {
		return pipeline.ObjectInfo{}, nil, wrap(ctx, "peek", bucket, key, fmt.Errorf("read the first %d bytes: %w", len(buf), err))
	}
	return info, buf, nil
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
// GET, conditional on the ref's version and ETag.
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
		return nil, wrap(ctx, "read prefix of", obj.Bucket, obj.Key, err)
	}
	defer out.Body.Close()
	buf := make([]byte, n)
	m, err := io.ReadFull(out.Body, buf)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return nil, wrap(ctx, "read prefix of", obj.Bucket, obj.Key, err)
	}
	return buf[:m], nil
}

// Hash streams the object through SHA-256 with a fixed buffer, so memory does not grow with the
// object's size, and returns the digest and the number of bytes read.
func (o *Objects) Hash(ctx context.Context, obj pipeline.ObjectRef) ([]byte, int64, error) {
	out, err := o.client.GetObject(ctx, getInput(obj))
	if err != nil {
		return nil, 0, wrap(ctx, "hash", obj.Bucket, obj.Key, err)
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
		return wrap(ctx, "get tags of", obj.Bucket, obj.Key, err)
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
		return wrap(ctx, "tag", obj.Bucket, obj.Key, err)
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

// head HEADs the ref's version and checks its ETag.
func (o *Objects) head(ctx context.Context, obj pipeline.ObjectRef) (*s3.HeadObjectOutput, error) {
	in := &s3.HeadObjectInput{Bucket: aws.String(obj.Bucket), Key: aws.String(obj.Key)}
	if obj.VersionID != "" {
		in.VersionId = aws.String(obj.VersionID)
	}
	if obj.ETag != "" {
		in.IfMatch = aws.String(quote(obj.ETag))
	}
	out, err := o.client.HeadObject(ctx, in)
	if err != nil {
		return nil, wrap(ctx, "head", obj.Bucket, obj.Key, err)
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
func (o *Objects) Move(ctx context.Context, obj pipeline.ObjectRef, dstKey string) error {
	head, err := o.head(ctx, obj)
	if err != nil {
		return err
	}
	src := copySource(obj)
	size := aws.ToInt64(head.ContentLength)
	if o.holds(ctx, obj.Bucket, dstKey, head) {
		return o.Delete(ctx, obj)
	}
	if size <= o.maxCopySize {
		in := &s3.CopyObjectInput{Bucket: aws.String(obj.Bucket), Key: aws.String(dstKey), CopySource: aws.String(src)}
		if obj.ETag != "" {
			in.CopySourceIfMatch = aws.String(quote(obj.ETag))
		}
		if _, err := o.client.CopyObject(ctx, in); err != nil {
			return wrap(ctx, "copy", obj.Bucket, obj.Key, err)
		}
	} else if err := o.copyParts(ctx, obj, head, src, dstKey); err != nil {
		return err
	}
	return o.Delete(ctx, obj)
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
		return wrap(ctx, "start multipart copy of", obj.Bucket, obj.Key, err)
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
			return wrap(ctx, fmt.Sprintf("copy part %d of", n), obj.Bucket, obj.Key, err)
		}
		parts = append(parts, types.CompletedPart{ETag: out.CopyPartResult.ETag, PartNumber: aws.Int32(n)})
	}
	_, err = o.client.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{
		Bucket: aws.String(obj.Bucket), Key: aws.String(dstKey), UploadId: created.UploadId,
		MultipartUpload: &types.CompletedMultipartUpload{Parts: parts},
	})
	if err != nil {
		abort()
		return wrap(ctx, "complete multipart copy of", obj.Bucket, obj.Key, err)
	}
	return nil
}

// Delete deletes the object (a delete marker in a versioned bucket). The ETag is checked by a HEAD
// and sent as If-Match, which AWS enforces; MinIO ignores it, leaving the HEAD's small window.
// Deleting an object that is already gone succeeds.
func (o *Objects) Delete(ctx context.Context, obj pipeline.ObjectRef) error {
	if err := o.check(ctx, obj); err != nil {
		return err
	}
	in := &s3.DeleteObjectInput{Bucket: aws.String(obj.Bucket), Key: aws.String(obj.Key)}
	if obj.ETag != "" {
		in.IfMatch = aws.String(quote(obj.ETag))
	}
	if _, err := o.client.DeleteObject(ctx, in); err != nil {
		return wrap(ctx, "delete", obj.Bucket, obj.Key, err)
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

// wrap adds the operation and the pipeline sentinel that classifies err.
func wrap(ctx context.Context, op, bucket, key string, err error) error {
	switch {
	case IsNotFound(err):
		return fmt.Errorf("%s %s/%s: %v: %w", op, bucket, key, err, pipeline.ErrNotFound)
	case isPreconditionFailed(err):
		return fmt.Errorf("%s %s/%s: %v: %w", op, bucket, key, err, pipeline.ErrChanged)
	case errors.Is(ctx.Err(), context.Canceled):
		return fmt.Errorf("%s %s/%s: %w", op, bucket, key, err)
	case IsRetryable(err):
		return pipeline.Unavailable(pipeline.DependencyS3, fmt.Errorf("%s %s/%s: %w", op, bucket, key, err))
	}
	return fmt.Errorf("%s %s/%s: %w", op, bucket, key, err)
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
