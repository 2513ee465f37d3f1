package sigv4

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
)

// HeaderSigner signs the POST requests of the AWS JSON protocol (SQS's) with SigV4 header
// authentication, for one service and region: the Authorization header the SDK's v4.Signer.SignHTTP
// produces for the same signed headers, time and body, with the derived key cached per day and
// credentials, the request canonicalised into one pooled buffer, and no http.Request built. The
// signed headers are content-type, host, x-amz-date, x-amz-security-token (with session
// credentials) and x-amz-target.
type HeaderSigner struct {
	creds           aws.CredentialsProvider
	region, service string
	key             atomic.Pointer[signingKey]
}

// NewHeaderSigner returns a HeaderSigner of the service (as in the credential scope, "sqs") and
// region with creds.
func NewHeaderSigner(creds aws.CredentialsProvider, region, service string) (*HeaderSigner, error) {
	if creds == nil || region == "" || service == "" {
		return nil, errors.New("header signer: credentials, region and service are required")
	}
	return &HeaderSigner{creds: creds, region: region, service: service}, nil
}

// JSONRequest is one POST of the AWS JSON protocol to sign.
type JSONRequest struct {
	// Host is the Host header sent (host[:port], without a default port).
	Host string
	// Path is the canonical URI: "/" or a path of RFC 3986 unreserved characters and slashes,
	// which SigV4's escaping leaves as it is (see [CanonicalPath]).
	Path string
	// ContentType and Target are the Content-Type and X-Amz-Target headers sent.
	ContentType, Target string
	// Body is the request's body.
	Body []byte
	// Now is the signing time.
	Now time.Time
}

// HeaderAuth is what a signed request carries besides its own headers.
type HeaderAuth struct {
	// Date is the X-Amz-Date header.
	Date string
	// SecurityToken is the X-Amz-Security-Token header ("": none is sent).
	SecurityToken string
	// Authorization is the Authorization header.
	Authorization string
}

// CanonicalPath reports whether p is a path JSONRequest.Path accepts, and the path of a custom
// endpoint NewSigner accepts: "/" followed by unreserved characters and slashes, so that SigV4's
// escaping of it is the identity.
func CanonicalPath(p string) bool {
	if p == "" || p[0] != '/' {
		return false
	}
	for i := 1; i < len(p); i++ {
		if c := p[i]; !noEscape[c] && c != '/' {
			return false
		}
	}
	return true
}

// SignJSON signs r with the credentials the provider returns now.
func (s *HeaderSigner) SignJSON(ctx context.Context, r JSONRequest) (HeaderAuth, error) {
	if !CanonicalPath(r.Path) {
		return HeaderAuth{}, fmt.Errorf("sign: path %q is not canonical", r.Path)
	}
	creds, err := s.creds.Retrieve(ctx)
	if err != nil {
		return HeaderAuth{}, fmt.Errorf("sign: retrieve credentials: %w", err)
	}
	now := r.Now.UTC()
	var dateBuf [16]byte
	amzDate := appendAmzDate(dateBuf[:0], now)
	k := cachedKey(&s.key, creds, amzDay(amzDate), s.region, s.service)

	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := (*bp)[:0]

	signed := "content-type;host;x-amz-date;x-amz-target"
	if k.token != "" {
		signed = "content-type;host;x-amz-date;x-amz-security-token;x-amz-target"
	}

	// Canonical request: method, path, empty query, headers, signed headers, payload hash.
	buf = append(buf, "POST\n"...)
	buf = append(buf, r.Path...)
	buf = append(buf, "\n\n"...)
	buf = appendCanonicalHeader(buf, "content-type", r.ContentType)
	buf = appendCanonicalHeader(buf, "host", r.Host)
	buf = append(buf, "x-amz-date:"...)
	buf = append(buf, amzDate...)
	buf = append(buf, '\n')
	if k.token != "" {
		buf = appendCanonicalHeader(buf, "x-amz-security-token", k.token)
	}
	buf = appendCanonicalHeader(buf, "x-amz-target", r.Target)
	buf = append(buf, '\n')
	buf = append(buf, signed...)
	buf = append(buf, '\n')
	payload := sha256.Sum256(r.Body)
	buf = hex.AppendEncode(buf, payload[:])
	crHash := sha256.Sum256(buf)
	buf = buf[:0]

	auth := make([]byte, 0, 64+len(k.accessKey)+len(k.scope)+len(signed)+64)
	auth = append(auth, "AWS4-HMAC-SHA256 Credential="...)
	auth = append(auth, k.accessKey...)
	auth = append(auth, '/')
	auth = append(auth, k.scope...)
	auth = append(auth, ", SignedHeaders="...)
	auth = append(auth, signed...)
	auth = append(auth, ", Signature="...)
	auth, buf = appendSignature(auth, buf, k, amzDate, crHash)
	*bp = buf
	return HeaderAuth{Date: string(amzDate), SecurityToken: k.token, Authorization: string(auth)}, nil
}

// appendCanonicalHeader appends one line of the canonical headers: the lower-case name, a colon
// and the value trimmed as SigV4 requires.
func appendCanonicalHeader(dst []byte, name, value string) []byte {
	dst = append(dst, name...)
	dst = append(dst, ':')
	dst = appendHeaderValue(dst, value)
	return append(dst, '\n')
}
