package sigv4

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// S3 operation names, written into presigned URLs as x-id exactly like the SDK does.
const (
	OpPutObject  = "PutObject"
	OpGetObject  = "GetObject"
	OpUploadPart = "UploadPart"
)

// MaxExpiry is SigV4's limit for query-string authentication (Input.Expires).
const MaxExpiry = 7 * 24 * time.Hour

// Signer is a lean SigV4 query-string presigner for the three S3 requests intake signs on its hot
// paths: PutObject, GetObject and UploadPart (the API hands them out; the consumer sends ranged
// GETs with them). It produces the same URL, byte for byte, as the SDK's
// s3.PresignClient for the same inputs and time (see sigv4_test.go), at a fraction of the cost: the
// derived signing key is cached per day, region and secret, the request is canonicalised into one
// pooled buffer, and no middleware stack runs.
//
// Signer supports static or cached credentials (any aws.CredentialsProvider), session tokens,
// path-style and virtual-hosted-style addressing and custom endpoints. It does not do FIPS,
// dual-stack, S3 Accelerate, access points, S3 Express or SigV4a: callers use the SDK for anything
// else.
type Signer struct {
	creds     aws.CredentialsProvider
	region    string
	scheme    string // "https" or "http"
	host      string // endpoint host[:port] as written in URLs
	signHost  string // the same without a default port, as signed in the Host header
	basePath  string // endpoint path prefix, "" or "/p" (no trailing slash)
	pathStyle bool
	awsHost   bool // no custom endpoint: the region's own S3 host (virtual-hosted style where the bucket allows)

	key atomic.Pointer[signingKey]

	// own is the credentials cache of the Signer's own (see [SigningSource]), which it may empty
	// to ask for a fresher session; nil when the provider is shared, which it never empties.
	own *aws.CredentialsCache
	// held is the session that signs while own is asked for a fresher one, and after it failed
	// to give one, for as long as it can sign (nil: none).
	held atomic.Pointer[aws.Credentials]
	// refreshing is set while a call asks own for a fresher session.
	refreshing atomic.Bool
	// lastRefresh is when the Signer last asked own for a fresher session (unix nanoseconds).
	lastRefresh atomic.Int64
}

// SigningSource is implemented by a credentials provider that has a second cache, over a credential
// chain of its own, for signers (objstore.LoadAWS builds one). A Signer whose provider is one signs
// with that cache, and empties it (Invalidate) to ask for a fresh session when the one it has is
// about to end (see RefreshWindow). It never empties any other cache: the SDK clients share theirs,
// and a refresh that failed (the credential source down in a session's last minutes) would leave
// every S3 and SQS call without credentials while the old session still had minutes to run.
type SigningSource interface {
	// SigningCredentials returns the signers' own cache.
	SigningCredentials() *aws.CredentialsCache
}

// RefreshWindow and refreshEvery: when the session that signs has less than RefreshWindow left
// (and less than the URL's lifetime), a Signer with a cache of its own (see [SigningSource]) asks it
// for a fresh session, at most once every refreshEvery. The SDK's cache hands a session out until
// its last second, and a URL signed then is cut to the seconds left (see [Lifetime]): a client would
// get a 3-second upload URL. A source that already has a fresher session (IRSA, an instance role near
// its rotation) gives it at once; one that has not gives the same session again, which signs as
// before; one that fails leaves the old session signing for the time it has left, and is asked again
// by one call at a time, at most once every refreshEvery. While the source is asked, the other calls
// sign with the old session without waiting for it.
const (
	RefreshWindow = 10 * time.Minute
	refreshEvery  = 10 * time.Second
)

// retrieve returns the credentials to sign a URL of lifetime want at now (see RefreshWindow).
func (s *Signer) retrieve(ctx context.Context, now time.Time, want time.Duration) (aws.Credentials, error) {
	if s.own == nil {
		creds, err := s.creds.Retrieve(ctx)
		if err != nil {
			return creds, fmt.Errorf("presign: retrieve credentials: %w", err)
		}
		return creds, nil
	}
	if held := s.held.Load(); held != nil {
		if credentialsLeft(*held, now) < MinLifetime {
			s.held.CompareAndSwap(held, nil) // over: only the source can give credentials now
		} else if !s.startRefresh() {
			return *held, nil // the source is being asked, or failed a moment ago
		} else {
			// The source failed a while ago: ask it again (the cache is empty since).
			defer s.refreshing.Store(false)
			creds, err := s.own.Retrieve(ctx)
			if err != nil {
				return *held, nil
			}
			s.held.CompareAndSwap(held, nil)
			return creds, nil
		}
	}
	creds, err := s.own.Retrieve(ctx)
	if err != nil {
		// A refresh another call started (it emptied the cache) failed under this one: the
		// session it held still signs.
		if held := s.held.Load(); held != nil && credentialsLeft(*held, now) >= MinLifetime {
			return *held, nil
		}
		return creds, fmt.Errorf("presign: retrieve credentials: %w", err)
	}
	if !creds.CanExpire || creds.Expires.Sub(now) >= min(want, RefreshWindow) || !s.startRefresh() {
		return creds, nil
	}
	defer s.refreshing.Store(false)
	// Held before the cache is emptied, so that calls made meanwhile sign with it rather than wait
	// for the source, and it keeps signing should the source fail.
	held := &creds
	s.held.Store(held)
	s.own.Invalidate()
	fresh, err := s.own.Retrieve(ctx)
	if err != nil {
		return creds, nil // held: the old session signs for the time it has left
	}
	s.held.CompareAndSwap(held, nil)
	return fresh, nil
}

// startRefresh reports whether the caller is to ask own for a fresher session: no other call is
// asking it, and none did in the last refreshEvery. The caller then ends the refresh
// (refreshing.Store(false)).
func (s *Signer) startRefresh() bool {
	t, last := time.Now().UnixNano(), s.lastRefresh.Load()
	if t-last < int64(refreshEvery) || !s.refreshing.CompareAndSwap(false, true) {
		return false
	}
	s.lastRefresh.Store(t)
	return true
}

// signingKey is the derived key of one day and secret, with the strings that depend on them.
type signingKey struct {
	secret, accessKey, token string
	day                      string // 20060102
	key                      [32]byte
	// ipad and opad are the derived key XOR-ed with HMAC's pads (one block each).
	ipad, opad [64]byte
	// credential is "AKID/20060102/region/s3/aws4_request", query-escaped.
	credential string
	// scope is "20060102/region/s3/aws4_request".
	scope string
	// tokenQuery is the escaped session token ("" without one).
	tokenQuery string
}

// NewSigner returns a Signer for the endpoint, region, addressing and credentials of an S3 client's
// options (s3.Client.Options()). It refuses the options the Signer cannot sign as the SDK does:
// FIPS, dual-stack, accelerated and ARN-region endpoints, and a custom endpoint whose path is not
// one [CanonicalPath] accepts (one with escapes, such as %2F, or characters that need them).
func NewSigner(o s3.Options) (*Signer, error) {
	if o.Credentials == nil {
		return nil, fmt.Errorf("presigner: no credentials provider")
	}
	if o.Region == "" {
		return nil, fmt.Errorf("presigner: no region")
	}
	if o.UseAccelerate || o.UseARNRegion ||
		o.EndpointOptions.UseFIPSEndpoint == aws.FIPSEndpointStateEnabled ||
		o.EndpointOptions.UseDualStackEndpoint == aws.DualStackEndpointStateEnabled {
		// The Signer addresses s3.REGION.amazonaws.com or the configured endpoint only; signing
		// for another endpoint than the client's would hand out URLs that go elsewhere.
		return nil, fmt.Errorf("presigner: FIPS, dual-stack, accelerated and ARN-region S3 endpoints are not supported (set the endpoint with AWS_ENDPOINT_URL_S3 instead)")
	}
	s := &Signer{creds: o.Credentials, region: o.Region, pathStyle: o.UsePathStyle}
	if src, ok := o.Credentials.(SigningSource); ok {
		if own := src.SigningCredentials(); own != nil {
			s.creds, s.own = own, own
		}
	}
	if o.BaseEndpoint == nil || *o.BaseEndpoint == "" {
		// The region's own S3 host, from the SDK's endpoint rules: s3.<region>.amazonaws.com in
		// the aws partition, but .amazonaws.com.cn in China, and other suffixes elsewhere.
		ep, err := s3.NewDefaultEndpointResolverV2().ResolveEndpoint(context.Background(),
			s3.EndpointParameters{Region: aws.String(o.Region), ForcePathStyle: aws.Bool(true)})
		if err != nil {
			return nil, fmt.Errorf("presigner: S3 endpoint of region %q: %w", o.Region, err)
		}
		if ep.URI.Scheme != "https" || ep.URI.Host == "" || ep.URI.Port() != "" || (ep.URI.Path != "" && ep.URI.Path != "/") {
			return nil, fmt.Errorf("presigner: unexpected S3 endpoint %q for region %q", ep.URI.String(), o.Region)
		}
		s.scheme, s.host, s.awsHost = "https", ep.URI.Host, true
		s.signHost = s.host
		return s, nil
	}
	u, err := url.Parse(*o.BaseEndpoint)
	if err != nil {
		return nil, fmt.Errorf("presigner: endpoint %q: %w", *o.BaseEndpoint, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("presigner: endpoint %q is not an http(s) URL", *o.BaseEndpoint)
	}
	s.scheme, s.host, s.signHost = u.Scheme, u.Host, u.Host
	if p := u.Port(); (u.Scheme == "http" && p == "80") || (u.Scheme == "https" && p == "443") {
		s.signHost = u.Hostname()
	}
	if net.ParseIP(u.Hostname()) != nil {
		// A bucket cannot be a subdomain of an IP address: the SDK addresses such endpoints
		// path-style whatever UsePathStyle says (except for buckets with dots over http, which it
		// puts in front of the address, a URL that resolves nowhere).
		s.pathStyle = true
	}
	if p := u.EscapedPath(); p != "" && !CanonicalPath(p) {
		// The SDK signs such a path its own way (it unescapes it, and escapes it again), which
		// the Signer does not copy: its URLs would not be the SDK's.
		return nil, fmt.Errorf("presigner: endpoint %q: its path %q holds escapes or characters that need escaping; the path may hold only letters, digits, '-', '.', '_', '~' and '/'", *o.BaseEndpoint, p)
	}
	s.basePath = strings.TrimRight(u.EscapedPath(), "/")
	return s, nil
}

// Input is one request to presign.
type Input struct {
	// Method is the HTTP method ("PUT" or "GET") and Op the S3 operation (OpPutObject, OpGetObject
	// or OpUploadPart), written into the URL as x-id.
	Method, Op string
	// Bucket and Key name the object; the key is escaped as SigV4 requires.
	Bucket, Key string
	// Now is the signing time and Expires the URL's lifetime, in (0, MaxExpiry]; the lifetime
	// signed is capped at the credentials' expiry (see [Lifetime]).
	Now     time.Time
	Expires time.Duration
	// ContentType and ContentLength are signed headers of a PUT PutObject when ContentLength >= 0
	// (pass -1 to leave them unsigned). A PUT UploadPart signs ContentLength alone when it is >= 0
	// (a part has no content type). GET ignores both.
	ContentType   string
	ContentLength int64
	// ChecksumSHA256 is the base64 SHA-256 signed as x-amz-checksum-sha256 (with a signed
	// ContentLength only).
	ChecksumSHA256 string
	// IfNoneMatch is signed as the If-None-Match header of a PutObject with a signed
	// ContentLength: "*" makes S3 refuse the upload (412) when the key already holds an object,
	// so that the URL cannot write over what it uploaded once.
	IfNoneMatch string
	// PartNumber and UploadID select the part of UploadPart.
	PartNumber int32
	UploadID   string
	// VersionID, when set, pins a GetObject to that version of the object (S3's versionId).
	VersionID string
	// ResponseCacheControl, ResponseContentType and ResponseContentDisposition, when set, are the
	// Cache-Control, Content-Type and Content-Disposition S3 answers a GetObject with
	// (response-cache-control, response-content-type and response-content-disposition), whatever
	// headers the object was stored with.
	ResponseCacheControl, ResponseContentType, ResponseContentDisposition string
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 2048); return &b }}

// Presigned is a presigned URL and the instant S3 stops accepting it.
type Presigned struct {
	// URL is the presigned request.
	URL string
	// Expires is the signing time (to the second, as X-Amz-Date) plus the URL's lifetime
	// (X-Amz-Expires): the requested one, capped at the expiry of the credentials that signed it.
	Expires time.Time
}

// MinLifetime is the shortest lifetime Sign hands out: credentials closer to their expiry are
// refused (ErrCredentialsExpiring) rather than used for a URL that dies at once.
const MinLifetime = time.Second

// ErrCredentialsExpiring says the signing credentials expire within MinLifetime of the signing time.
var ErrCredentialsExpiring = errors.New("presign: the signing credentials expire now")

// Lifetime returns the lifetime of a URL signed at now with creds: want, capped so that the URL
// expires no later than the credentials (temporary credentials such as STS or IRSA sessions last
// about an hour, and S3 refuses a URL once the session that signed it has expired, whatever
// X-Amz-Expires says). The result is whole seconds, counted from now truncated to the second as
// X-Amz-Date is; want itself is not checked against MaxExpiry.
func Lifetime(creds aws.Credentials, now time.Time, want time.Duration) (time.Duration, error) {
	want = want.Truncate(time.Second)
	if !creds.CanExpire {
		return want, nil
	}
	left := credentialsLeft(creds, now)
	if left < MinLifetime {
		return 0, fmt.Errorf("%w (at %s)", ErrCredentialsExpiring, creds.Expires.UTC().Format(time.RFC3339))
	}
	return min(want, left), nil
}

// credentialsLeft returns how long credentials sign from now, in whole seconds counted from now
// truncated to the second, as Lifetime counts them (MaxExpiry for credentials that do not expire).
func credentialsLeft(creds aws.Credentials, now time.Time) time.Duration {
	if !creds.CanExpire {
		return MaxExpiry
	}
	return creds.Expires.Sub(now.UTC().Truncate(time.Second)).Truncate(time.Second)
}

// Credentials returns the credentials the Signer would sign a URL of lifetime want with at now
// (its own cache's, or the session held during a refresh: see [RefreshWindow]) and the lifetime of
// a URL they sign (see [Lifetime]). It is for callers that sign with another signer (the SDK's POST
// policies): they must sign with these credentials, not with another provider's (the SDK clients'
// shared cache may hold another session, which may expire sooner), for the lifetime to bound what
// they sign.
func (s *Signer) Credentials(ctx context.Context, now time.Time, want time.Duration) (aws.Credentials, time.Duration, error) {
	creds, err := s.retrieve(ctx, now, want)
	if err != nil {
		return aws.Credentials{}, 0, err
	}
	lifetime, err := Lifetime(creds, now, want)
	if err != nil {
		return aws.Credentials{}, 0, err
	}
	return creds, lifetime, nil
}

// Lifetime retrieves the signing credentials and returns the lifetime of a URL signed at now (see
// [Lifetime]). It bounds only what is signed with the same credentials: a caller that signs with
// another signer uses [Signer.Credentials], and signs with the credentials it returns.
func (s *Signer) Lifetime(ctx context.Context, now time.Time, want time.Duration) (time.Duration, error) {
	_, lifetime, err := s.Credentials(ctx, now, want)
	return lifetime, err
}

// Presign returns the presigned URL of the request (Sign without the expiry).
func (s *Signer) Presign(ctx context.Context, in Input) (string, error) {
	p, err := s.Sign(ctx, in)
	return p.URL, err
}

// Sign presigns the request. Its lifetime is in.Expires capped at the expiry of the credentials
// it signs with, the provider's now or the session held during a refresh (see [Lifetime] and
// [RefreshWindow]); Presigned.Expires says when it ends.
func (s *Signer) Sign(ctx context.Context, in Input) (Presigned, error) {
	creds, err := s.retrieve(ctx, in.Now, in.Expires)
	if err != nil {
		return Presigned{}, err
	}
	if in.Expires <= 0 || in.Expires > MaxExpiry {
		return Presigned{}, fmt.Errorf("presign: expiry %s not in (0, 7 days]", in.Expires)
	}
	now := in.Now.UTC()
	lifetime, err := Lifetime(creds, now, in.Expires)
	if err != nil {
		return Presigned{}, err
	}
	if lifetime < time.Second {
		return Presigned{}, fmt.Errorf("presign: expiry %s is below one second", in.Expires)
	}
	var dateBuf [16]byte
	amzDate := appendAmzDate(dateBuf[:0], now)
	k := cachedKey(&s.key, creds, amzDay(amzDate), s.region, "s3")

	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := (*bp)[:0]

	// Host (as signed, and as written in the URL when a default port differs) and path.
	virtual := !s.pathStyle && virtualHostable(in.Bucket, s.scheme)
	var hostStart, hostEnd, pathStart, pathEnd int
	hostStart = len(buf)
	if virtual {
		buf = append(buf, in.Bucket...)
		buf = append(buf, '.')
	}
	buf = append(buf, s.signHost...)
	hostEnd = len(buf)
	urlHostStart, urlHostEnd := hostStart, hostEnd
	if s.host != s.signHost {
		urlHostStart = len(buf)
		if virtual {
			buf = append(buf, in.Bucket...)
			buf = append(buf, '.')
		}
		buf = append(buf, s.host...)
		urlHostEnd = len(buf)
	}
	pathStart = len(buf)
	buf = append(buf, s.basePath...)
	if !virtual {
		buf = append(buf, '/')
		buf = appendEscaped(buf, in.Bucket, false)
	}
	buf = append(buf, '/')
	buf = appendEscaped(buf, in.Key, false)
	pathEnd = len(buf)

	// Canonical query string (already in sorted order; it is also the URL's query).
	qStart := len(buf)
	buf = append(buf, "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential="...)
	buf = append(buf, k.credential...)
	buf = append(buf, "&X-Amz-Date="...)
	buf = append(buf, amzDate...)
	buf = append(buf, "&X-Amz-Expires="...)
	buf = strconv.AppendInt(buf, int64(lifetime/time.Second), 10)
	if k.tokenQuery != "" {
		buf = append(buf, "&X-Amz-Security-Token="...)
		buf = append(buf, k.tokenQuery...)
	}
	buf = append(buf, "&X-Amz-SignedHeaders="...)
	signed := in.ContentLength >= 0 && in.Method == "PUT" && in.Op == OpPutObject
	partLength := in.ContentLength >= 0 && in.Method == "PUT" && in.Op == OpUploadPart
	switch {
	case signed:
		buf = append(buf, "content-length%3Bcontent-type%3Bhost"...)
		if in.IfNoneMatch != "" {
			buf = append(buf, "%3Bif-none-match"...)
		}
		if in.ChecksumSHA256 != "" {
			buf = append(buf, "%3Bx-amz-checksum-sha256"...)
		}
	case partLength:
		buf = append(buf, "content-length%3Bhost"...)
	default:
		buf = append(buf, "host"...)
	}
	if in.Op == OpUploadPart {
		buf = append(buf, "&partNumber="...)
		buf = strconv.AppendInt(buf, int64(in.PartNumber), 10)
		buf = append(buf, "&uploadId="...)
		buf = appendEscaped(buf, in.UploadID, true)
	}
	if in.Op == OpGetObject && in.ResponseCacheControl != "" {
		buf = append(buf, "&response-cache-control="...)
		buf = appendEscaped(buf, in.ResponseCacheControl, true)
	}
	if in.Op == OpGetObject && in.ResponseContentDisposition != "" {
		buf = append(buf, "&response-content-disposition="...)
		buf = appendEscaped(buf, in.ResponseContentDisposition, true)
	}
	if in.Op == OpGetObject && in.ResponseContentType != "" {
		buf = append(buf, "&response-content-type="...)
		buf = appendEscaped(buf, in.ResponseContentType, true)
	}
	if in.VersionID != "" && in.Op == OpGetObject {
		buf = append(buf, "&versionId="...)
		buf = appendEscaped(buf, in.VersionID, true)
	}
	buf = append(buf, "&x-id="...)
	buf = append(buf, in.Op...)
	qEnd := len(buf)

	// Canonical request.
	crStart := len(buf)
	buf = append(buf, in.Method...)
	buf = append(buf, '\n')
	buf = append(buf, buf[pathStart:pathEnd]...)
	buf = append(buf, '\n')
	buf = append(buf, buf[qStart:qEnd]...)
	buf = append(buf, '\n')
	if signed || partLength {
		buf = append(buf, "content-length:"...)
		buf = strconv.AppendInt(buf, in.ContentLength, 10)
		buf = append(buf, '\n')
	}
	if signed {
		buf = appendCanonicalHeader(buf, "content-type", in.ContentType)
	}
	buf = append(buf, "host:"...)
	buf = append(buf, buf[hostStart:hostEnd]...)
	buf = append(buf, '\n')
	if signed && in.IfNoneMatch != "" {
		buf = appendCanonicalHeader(buf, "if-none-match", in.IfNoneMatch)
	}
	if signed && in.ChecksumSHA256 != "" {
		buf = appendCanonicalHeader(buf, "x-amz-checksum-sha256", in.ChecksumSHA256)
	}
	buf = append(buf, '\n')
	switch {
	case signed:
		buf = append(buf, "content-length;content-type;host"...)
		if in.IfNoneMatch != "" {
			buf = append(buf, ";if-none-match"...)
		}
		if in.ChecksumSHA256 != "" {
			buf = append(buf, ";x-amz-checksum-sha256"...)
		}
	case partLength:
		buf = append(buf, "content-length;host"...)
	default:
		buf = append(buf, "host"...)
	}
	buf = append(buf, "\nUNSIGNED-PAYLOAD"...)
	crHash := sha256.Sum256(buf[crStart:])
	buf = buf[:crStart]

	// String to sign, then its signature.
	var sigBuf [64]byte
	var hexSig []byte
	hexSig, buf = appendSignature(sigBuf[:0], buf, k, amzDate, crHash)

	// URL.
	var sb strings.Builder
	sb.Grow(len(s.scheme) + 3 + (urlHostEnd - urlHostStart) + (pathEnd - pathStart) + 1 + (qEnd - qStart) + 17 + 64)
	sb.WriteString(s.scheme)
	sb.WriteString("://")
	sb.Write(buf[urlHostStart:urlHostEnd])
	sb.Write(buf[pathStart:pathEnd])
	sb.WriteByte('?')
	sb.Write(buf[qStart:qEnd])
	sb.WriteString("&X-Amz-Signature=")
	sb.Write(hexSig)
	*bp = buf
	return Presigned{URL: sb.String(), Expires: now.Truncate(time.Second).Add(lifetime)}, nil
}

// ObjectURL is the URL of bucket's object key without a query, addressed as the Signer's
// presigned URLs address it (virtual-hosted or path-style, the endpoint's port and path kept):
// what S3 gives as the Location of a completed multipart upload.
func (s *Signer) ObjectURL(bucket, key string) string {
	virtual := !s.pathStyle && virtualHostable(bucket, s.scheme)
	b := make([]byte, 0, len(s.scheme)+3+len(bucket)+1+len(s.host)+len(s.basePath)+1+len(key)+16)
	b = append(b, s.scheme...)
	b = append(b, "://"...)
	if virtual {
		b = append(b, bucket...)
		b = append(b, '.')
	}
	b = append(b, s.host...)
	b = append(b, s.basePath...)
	if !virtual {
		b = append(b, '/')
		b = appendEscaped(b, bucket, false)
	}
	b = append(b, '/')
	b = appendEscaped(b, key, false)
	return string(b)
}

// appendAmzDate appends t, in UTC, as X-Amz-Date writes it: t.AppendFormat(dst,
// "20060102T150405Z"), written digit by digit for the years 0 to 9999 (AppendFormat parses its
// layout on every call: 2% of the presign route's CPU, counting the day below). Other years go
// to AppendFormat.
func appendAmzDate(dst []byte, t time.Time) []byte {
	t = t.UTC()
	year, month, day := t.Date()
	if year < 0 || year > 9999 {
		return t.AppendFormat(dst, "20060102T150405Z")
	}
	hour, minute, sec := t.Clock()
	return append(dst,
		byte('0'+year/1000), byte('0'+year/100%10), byte('0'+year/10%10), byte('0'+year%10),
		byte('0'+int(month)/10), byte('0'+int(month)%10), byte('0'+day/10), byte('0'+day%10), 'T',
		byte('0'+hour/10), byte('0'+hour%10), byte('0'+minute/10), byte('0'+minute%10),
		byte('0'+sec/10), byte('0'+sec%10), 'Z')
}

// amzDay returns the day of an X-Amz-Date (yyyymmdd for the years 0 to 9999): all but its time.
func amzDay(amzDate []byte) []byte { return amzDate[:len(amzDate)-len("T150405Z")] }

// cachedKey returns the derived key of the credentials, day (amzDay), region and service held in
// cache, deriving and storing it when the credentials or the day changed.
func cachedKey(cache *atomic.Pointer[signingKey], c aws.Credentials, day []byte, region, service string) *signingKey {
	if k := cache.Load(); k != nil && k.secret == c.SecretAccessKey && k.accessKey == c.AccessKeyID &&
		k.token == c.SessionToken && k.day == string(day) {
		return k
	}
	k := &signingKey{secret: c.SecretAccessKey, accessKey: c.AccessKeyID, token: c.SessionToken, day: string(day)}
	kDate := hmacSHA256([]byte("AWS4"+c.SecretAccessKey), day)
	kRegion := hmacSHA256(kDate[:], []byte(region))
	kService := hmacSHA256(kRegion[:], []byte(service))
	k.key = hmacSHA256(kService[:], []byte("aws4_request"))
	for i := range 64 {
		var b byte
		if i < len(k.key) {
			b = k.key[i]
		}
		k.ipad[i] = b ^ 0x36
		k.opad[i] = b ^ 0x5c
	}
	k.scope = k.day + "/" + region + "/" + service + "/aws4_request"
	k.credential = string(appendEscaped(nil, c.AccessKeyID+"/"+k.scope, true))
	if c.SessionToken != "" {
		k.tokenQuery = string(appendEscaped(nil, c.SessionToken, true))
	}
	cache.Store(k)
	return k
}

// appendSignature appends the hex signature of the string to sign made of amzDate, k's scope and
// the hash of the canonical request: HMAC-SHA256 with the derived key, H(opad || H(ipad || sts)).
// buf is scratch space: its contents are left as they were, its capacity may grow.
func appendSignature(dst, buf []byte, k *signingKey, amzDate []byte, crHash [32]byte) ([]byte, []byte) {
	start := len(buf)
	buf = append(buf, k.ipad[:]...)
	buf = append(buf, "AWS4-HMAC-SHA256\n"...)
	buf = append(buf, amzDate...)
	buf = append(buf, '\n')
	buf = append(buf, k.scope...)
	buf = append(buf, '\n')
	buf = hex.AppendEncode(buf, crHash[:])
	inner := sha256.Sum256(buf[start:])
	buf = buf[:start]
	buf = append(buf, k.opad[:]...)
	buf = append(buf, inner[:]...)
	sig := sha256.Sum256(buf[start:])
	return hex.AppendEncode(dst, sig[:]), buf[:start]
}

// hmacSHA256 is HMAC-SHA256 for keys of at most one block.
func hmacSHA256(key, data []byte) [32]byte {
	var ipad, opad [64]byte
	if len(key) > 64 {
		h := sha256.Sum256(key)
		key = h[:]
	}
	copy(ipad[:], key)
	copy(opad[:], key)
	for i := range 64 {
		ipad[i] ^= 0x36
		opad[i] ^= 0x5c
	}
	inner := sha256.Sum256(append(ipad[:], data...))
	return sha256.Sum256(append(opad[:], inner[:]...))
}

// noEscape marks the bytes SigV4 leaves unescaped (RFC 3986 unreserved characters).
var noEscape = func() (t [256]bool) {
	for c := range 256 {
		t[c] = c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' ||
			c == '-' || c == '.' || c == '_' || c == '~'
	}
	return t
}()

// appendEscaped appends s percent-encoded the SigV4 way; '/' is kept unless encodeSlash.
func appendEscaped(dst []byte, s string, encodeSlash bool) []byte {
	const upperHex = "0123456789ABCDEF"
	for i := 0; i < len(s); i++ {
		c := s[i]
		if noEscape[c] || (c == '/' && !encodeSlash) {
			dst = append(dst, c)
			continue
		}
		dst = append(dst, '%', upperHex[c>>4], upperHex[c&15])
	}
	return dst
}

// appendHeaderValue appends a header value trimmed with inner runs of spaces collapsed, as SigV4's
// canonical headers require.
func appendHeaderValue(dst []byte, v string) []byte {
	v = strings.TrimSpace(v)
	space := false
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c == ' ' {
			if space {
				continue
			}
			space = true
		} else {
			space = false
		}
		dst = append(dst, c)
	}
	return dst
}

// virtualHostable reports whether the bucket can be addressed as a host name (else the SDK, and so
// the Signer, falls back to path-style), by the SDK's endpoint rules: not an IP address, and every
// label of 3 to 63 lower-case letters, digits and hyphens, where only http endpoints allow several
// labels (a bucket with dots would break the TLS certificate's wildcard). FuzzSignerMatchesSDK
// checks the rule against the SDK.
func virtualHostable(bucket, scheme string) bool {
	if net.ParseIP(bucket) != nil {
		return false
	}
	for label := range strings.SplitSeq(bucket, ".") {
		if len(label) < 3 || len(label) > 63 || scheme == "https" && len(label) != len(bucket) {
			return false
		}
		for i := 0; i < len(label); i++ {
			if c := label[i]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}
