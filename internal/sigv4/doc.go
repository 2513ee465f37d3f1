// Package sigv4 presigns S3 requests with AWS Signature Version 4 query-string authentication,
// producing exactly the URLs of the SDK's s3.PresignClient at a small fraction of its cost, and
// signs the consumer's SQS requests (the AWS JSON protocol) with header authentication
// ([HeaderSigner]), producing the Authorization header of the SDK's v4.Signer for the same signed
// headers, again at a fraction of its cost (BenchmarkHeaderSignerSignJSON: about 1 µs and 3
// allocations, against 5 µs and 56).
//
// # Why
//
// The SDK builds every presigned URL by running an operation's whole middleware stack (about
// 55 µs and 375 allocations); Signer canonicalises the request into one pooled buffer with a cached
// signing key (about 1.5 µs and one allocation). The API presigns uploads and downloads with it, and
// the consumer reads each object's first bytes with a presigned ranged GET sent straight through the
// SDK's HTTP client.
//
// # Scope
//
// PutObject (optionally with signed Content-Type, Content-Length and x-amz-checksum-sha256),
// GetObject and UploadPart; path-style and virtual-hosted-style addressing; AWS and custom
// endpoints (NewSigner refuses a custom endpoint whose path holds escapes or characters that need
// them, which the SDK signs its own way); any credentials provider, session tokens included. The
// tests compare Signer's URLs with the SDK's byte for byte across endpoints, regions, credentials,
// buckets and keys (and a fuzz target, FuzzSignerMatchesSDK, does so for random ones), and send
// them to MinIO. Two differences are deliberate: for an empty PutObject (ContentLength 0) the SDK
// signs neither Content-Length nor Content-Type, so its URL would accept any body, while the Signer
// signs both; and on an endpoint that is an IP address the SDK puts a bucket with dots in front of
// the address (a host that resolves nowhere), while the Signer addresses it path-style, as the SDK
// does other buckets there.
//
// # Expiry
//
// A presigned URL is only as good as the credentials that signed it: S3 refuses it once temporary
// credentials (an STS or IRSA session, about an hour) have expired, whatever X-Amz-Expires says.
// Sign therefore caps the lifetime at the expiry of the credentials it signs with (the provider's
// at signing time, or the session a Signer keeps while it refreshes a cache of its own, and after
// that failed: see RefreshWindow; aws.Credentials.CanExpire and Expires) and reports the real end in
// Presigned.Expires; credentials that expire within MinLifetime are refused with
// ErrCredentialsExpiring. Lifetime gives the same cap to callers that sign with the SDK (POST
// policies).
package sigv4
