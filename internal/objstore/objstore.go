// Package objstore is intake's S3 side. Mostly it is the pipeline's S3 adapter: Objects implements
// pipeline.ObjectStore (HEAD, the inspection's one ranged GET through a presigned URL, streaming
// SHA-256, and the conditional tag, move and delete actions), classifying S3's answers as not
// found, changed or unavailable. Around it: the S3 clients of the daemon and of presigning (which
// may use a public endpoint) built from the configuration, with path-style addressing for local
// endpoints; the pooled HTTP client every AWS client uses, with response timeouts; and the bucket
// helpers of readiness and of the local stack (CheckBucket, EnsureBucket, NotifyQueue).
package objstore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/logging"

	"github.com/intakehq/intake/internal/config"
)

// LoadAWS loads the SDK configuration (credential chain, retries) for the configured region, with
// intake's HTTP client (see HTTPClient). What the SDK logs (its warnings, such as a response
// checksum it could not validate) goes through log, structured and redacted like intake's own
// lines, instead of the SDK's default plain lines on stderr.
func LoadAWS(ctx context.Context, c config.AWS, log *slog.Logger) (aws.Config, error) {
	load := func() (aws.Config, error) {
		return awsconfig.LoadDefaultConfig(ctx, awsconfig.WithRegion(c.Region), awsconfig.WithLogger(sdkLog{log.With("component", "aws-sdk")}))
	}
	cfg, err := load()
	if err != nil {
		return aws.Config{}, fmt.Errorf("load AWS configuration: %w", err)
	}
	// A second credential chain, with a cache of its own, for intake's SigV4 signers: they empty
	// their cache to ask for a fresher session near a session's end, and must not empty the one
	// every S3 and SQS call shares (see sigv4.SigningSource).
	signing, err := load()
	if err != nil {
		return aws.Config{}, fmt.Errorf("load AWS configuration: %w", err)
	}
	shared, ok1 := cfg.Credentials.(*aws.CredentialsCache)
	own, ok2 := signing.Credentials.(*aws.CredentialsCache)
	if ok1 && ok2 {
		cfg.Credentials = &Credentials{CredentialsCache: shared, signing: own}
	}
	// Room for the consumer's workers, which call S3 and SQS concurrently (idle connections
	// are only kept when they were needed).
	cfg.HTTPClient = TuneHTTPClient(cfg.HTTPClient, 256)
	return cfg, nil
}

// Credentials is the credentials provider of LoadAWS's configuration: the SDK's cache, shared by
// every client, with a second cache over a chain of its own for intake's SigV4 signers (see
// sigv4.SigningSource).
type Credentials struct {
	*aws.CredentialsCache
	signing *aws.CredentialsCache
}

// SigningCredentials returns the signers' own cache.
func (c *Credentials) SigningCredentials() *aws.CredentialsCache { return c.signing }

// NewClient returns an S3 client for the daemon's own calls; its requests wait at most
// S3ResponseTimeout for an answer.
func NewClient(awsCfg aws.Config, c config.AWS) *s3.Client {
	return s3.NewFromConfig(awsCfg, func(o *s3.Options) {
		o.HTTPClient = WithResponseTimeout(o.HTTPClient, S3ResponseTimeout)
		if c.S3Endpoint != "" {
			o.BaseEndpoint = aws.String(c.S3Endpoint)
		}
		o.UsePathStyle = c.UsePathStyle()
	})
}

// NewPresignClient returns an S3 client whose presigned URLs point at the public endpoint when one is
// configured (browsers may reach S3 under another name than the daemon does).
func NewPresignClient(awsCfg aws.Config, c config.AWS) *s3.Client {
	return s3.NewFromConfig(awsCfg, func(o *s3.Options) {
		switch {
		case c.S3PublicEndpoint != "":
			o.BaseEndpoint = aws.String(c.S3PublicEndpoint)
		case c.S3Endpoint != "":
			o.BaseEndpoint = aws.String(c.S3Endpoint)
		}
		o.UsePathStyle = c.UsePathStyle()
	})
}

// CheckBucket verifies that the bucket exists and is reachable with the current credentials.
func CheckBucket(ctx context.Context, client *s3.Client, bucket string) error {
	if _, err := client.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String(bucket)}); err != nil {
		return fmt.Errorf("head bucket %q: %w", bucket, err)
	}
	return nil
}

// IsNotFound reports whether err says the object, bucket or upload does not exist: S3's NoSuchKey,
// NoSuchVersion, NoSuchBucket or NoSuchUpload, or any 404 (a HEAD's 404 has no body, and so no
// code). It does not tell a missing object from a missing bucket, a wrong endpoint or a proxy's own
// 404: a caller that concludes an object is gone from it (a removal confirmed, a row marked
// missing) should use [Objects.Head], whose ErrNotFound means the object alone is missing.
func IsNotFound(err error) bool {
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) {
		switch apiErr.ErrorCode() {
		case "NotFound", "NoSuchKey", "NoSuchBucket", "NoSuchUpload", "NoSuchVersion":
			return true
		}
	}
	return statusCode(err) == http.StatusNotFound
}

// isObjectMissing reports whether err is S3 saying that the key, or the version asked for, does not
// exist in a bucket that does (NoSuchKey, NoSuchVersion: codes only S3 itself sends, in the body of
// a GET's or a write's answer).
func isObjectMissing(err error) bool {
	var apiErr smithy.APIError
	if !errors.As(err, &apiErr) {
		return false
	}
	switch apiErr.ErrorCode() {
	case "NoSuchKey", "NoSuchVersion":
		return true
	}
	return false
}

// IsNoSuchUpload reports whether err is S3 saying that a multipart upload does not exist
// (NoSuchUpload, in the body of the answer of ListParts, AbortMultipartUpload or
// CompleteMultipartUpload): unlike [IsNotFound], never a missing bucket or another server's 404.
func IsNoSuchUpload(err error) bool { return isNoSuchUpload(err) }

// isNoSuchUpload reports whether err is S3 saying that a multipart upload does not exist.
func isNoSuchUpload(err error) bool {
	var apiErr smithy.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode() == "NoSuchUpload"
}

// isConflict reports whether err is a 409 of a request that raced another one on the same object
// (ConditionalRequestConflict: a conditional write, copy or delete racing another write of the key;
// OperationAborted: a conflicting conditional operation in progress on the resource, such as two
// PutObjectTagging of one object). Every request Objects sends names one object, so the conflict
// is that object's, not the store's: the object may or may not have changed, and trying that one
// message again later tells.
func isConflict(err error) bool {
	switch errorCode(err) {
	case "ConditionalRequestConflict", "OperationAborted":
		return true
	}
	return false
}

// errorCode is the S3 error code of err ("" when it has none).
func errorCode(err error) string {
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) {
		return apiErr.ErrorCode()
	}
	return ""
}

// IsCredentialsError reports whether err is S3 refusing the request's credentials themselves: an
// expired or invalid session token (ExpiredToken, InvalidToken, MinIO's InvalidTokenId,
// TokenRefreshRequired), an access key it does not know (InvalidAccessKeyId), a signature it does
// not accept (SignatureDoesNotMatch) or credentials it calls invalid (InvalidSecurity). No object
// is at fault: every request signed with those credentials fails alike, until they are renewed or
// fixed, which often happens by itself (the instance metadata service or the web identity
// provider answering again, a refresh catching up). [IsRetryable] is false for them (the same
// request fails the same way); the pipeline's adapter reports them as an outage of S3 (see
// [Objects]), and a task meeting one is retried later with its backoff. An AccessDenied is not
// one: it may be a policy denying that one request (see isRefusal).
func IsCredentialsError(err error) bool {
	switch errorCode(err) {
	case "ExpiredToken", "InvalidToken", "InvalidTokenId", "TokenRefreshRequired",
		"InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidSecurity":
		return true
	}
	return false
}

// isRefusal reports whether err is S3 refusing a request in a way that may be the object's or the
// store's: AccessDenied (a policy or a KMS key denying that object alone, or intake's role losing
// its access to the bucket), or a 403 or 400 without S3's code, such as a HEAD's, which has no body
// (an AccessDenied, an expired token and a bad signature all look alike there). Only a look at the
// bucket tells which (see [Objects.classify]).
func isRefusal(err error) bool {
	code := errorCode(err)
	if code == "AccessDenied" {
		return true
	}
	switch status := statusCode(err); status {
	case http.StatusForbidden, http.StatusBadRequest:
		// The SDK names a bodiless error after its status ("Forbidden", "BadRequest"); the
		// presigned path calls it UnknownError.
		return code == "" || code == "UnknownError" || code == strings.ReplaceAll(http.StatusText(status), " ", "")
	}
	return false
}

// statusCode returns the HTTP status of the response err came from (0: none).
func statusCode(err error) int {
	var respErr interface{ HTTPStatusCode() int }
	if errors.As(err, &respErr) {
		return respErr.HTTPStatusCode()
	}
	return 0
}

// IsRetryable reports whether an S3 error is worth retrying as it is, the same request later
// (throttling, transient 5xx, transport errors, timeouts). Of the 5xx, only those the SDK's
// retryer retries are (500, 502, 503, 504; see retryableStatus): another one, such as a 501 Not
// Implemented from an S3-compatible store that lacks the operation or one of its headers, or a 505,
// answers the request itself, and the same request gets the same answer. Client errors such as 403
// or 400 are not retryable either, those refusing intake's credentials (ExpiredToken,
// SignatureDoesNotMatch…) included: they last until the credentials are renewed or fixed. The
// pipeline's adapter reports those as an outage of S3 all the same (see [Objects]), so that the
// consumer pauses instead of failing every message.
func IsRetryable(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) {
		switch apiErr.ErrorCode() {
		case "SlowDown", "Throttling", "ThrottlingException", "RequestTimeout", "InternalError", "ServiceUnavailable", "RequestTimeTooSkewed":
			return true
		}
	}
	var respErr interface{ HTTPStatusCode() int }
	if errors.As(err, &respErr) {
		return retryableStatus(respErr.HTTPStatusCode())
	}
	// No HTTP response at all: connection refused, reset, DNS.
	return true
}

// retryableStatus reports whether an answer's HTTP status says that the same request may succeed
// later: one the SDK's retryer retries (retry.DefaultRetryableHTTPStatusCodes: 500, 502, 503,
// 504), 429 Too Many Requests, 507 Insufficient Storage (MinIO's XMinioStorageFull: the store's
// disk is full until an operator frees it, an outage to pause for rather than a reason to
// dead-letter every message meanwhile), or none (0).
func retryableStatus(code int) bool {
	if code == 0 || code == http.StatusTooManyRequests || code == http.StatusInsufficientStorage {
		return true
	}
	_, ok := retry.DefaultRetryableHTTPStatusCodes[code]
	return ok
}

// EnsureBucket creates the bucket unless it already exists.
func EnsureBucket(ctx context.Context, client *s3.Client, bucket string) error {
	_, err := client.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(bucket)})
	var owned *types.BucketAlreadyOwnedByYou
	var exists *types.BucketAlreadyExists
	if err != nil && !errors.As(err, &owned) && !errors.As(err, &exists) {
		return fmt.Errorf("create bucket %q: %w", bucket, err)
	}
	return nil
}

// NotifyQueue points the bucket's ObjectCreated and ObjectRemoved notifications at a queue ARN
// (an SQS ARN on AWS, arn:minio:sqs:REGION:ID:webhook on MinIO), replacing existing ones.
func NotifyQueue(ctx context.Context, client *s3.Client, bucket, queueARN string) error {
	_, err := client.PutBucketNotificationConfiguration(ctx, &s3.PutBucketNotificationConfigurationInput{
		Bucket: aws.String(bucket),
		NotificationConfiguration: &types.NotificationConfiguration{
			QueueConfigurations: []types.QueueConfiguration{{
				Id:       aws.String("intake"),
				QueueArn: aws.String(queueARN),
				Events:   []types.Event{types.EventS3ObjectCreated, types.EventS3ObjectRemoved},
			}},
		},
	})
	if err != nil {
		return fmt.Errorf("put notification configuration of %q: %w", bucket, err)
	}
	return nil
}

// sdkLog is the SDK's logging.Logger over slog: its warnings at warn, everything else at debug.
type sdkLog struct{ log *slog.Logger }

// Logf implements logging.Logger.
func (l sdkLog) Logf(c logging.Classification, format string, v ...any) {
	level := slog.LevelDebug
	if c == logging.Warn {
		level = slog.LevelWarn
	}
	if l.log.Enabled(context.Background(), level) {
		l.log.Log(context.Background(), level, fmt.Sprintf(format, v...))
	}
}
