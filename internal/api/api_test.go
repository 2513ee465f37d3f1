package api

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"maps"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/intakehq/intake/internal/config"
	mpart "github.com/intakehq/intake/internal/multipart"
	"github.com/intakehq/intake/internal/objstore"
	"github.com/intakehq/intake/internal/ratelimit"
	"github.com/intakehq/intake/internal/store"
	"github.com/intakehq/intake/internal/store/dbq"
	"github.com/intakehq/intake/internal/telemetry"
	"github.com/intakehq/intake/internal/testkit"
	"github.com/intakehq/intake/pipeline"
)

const (
	aliceKey  = "alice-key-0123456789"
	bobKey    = "bob-key-0123456789ab"
	opsKey    = "ops-key-0123456789ab" // an operator key (INTAKE_API_ADMIN_KEYS)
	jwtSecret = "a-test-secret-that-is-32-bytes-long!"
	maxPolicy = 20 << 20
)

// testBundle is one API server on a fresh schema and bucket.
type testBundle struct {
	srv      *httptest.Server
	api      *Server
	st       *store.Store
	s3       *s3.Client
	bucket   string
	registry *prometheus.Registry
	aborts   *recordingAborts
	mp       *mpart.Service
}

// recordingAborts records ScheduleAbort calls (it is the API's own interface, not a fake service).
type recordingAborts struct {
	calls chan string
}

func (r *recordingAborts) ScheduleAbort(ctx context.Context, bucket, key, uploadID string, deadline time.Time) error {
	select {
	case r.calls <- bucket + "|" + key + "|" + uploadID + "|" + deadline.UTC().Format(time.RFC3339):
	default: // tests that create many uploads do not read them all
	}
	return nil
}

type setupOpts struct {
	api    func(*config.API)
	policy *pipeline.Policy
	// share, when set, serves the same schema and bucket as another bundle (a second replica).
	share *testBundle
	// waits wakes long polls (nil: they answer at once).
	waits Waiter
	// queries wraps the server's queries.
	queries func(Queries) Queries
	// ctx is New's context (default: one cancelled when the test ends).
	ctx context.Context
	// aborts replaces the recording DeadlineAborter (e.g. tasks.Aborts on a dead Redis).
	aborts DeadlineAborter
	// presignCreds replace the local stack's static credentials for presigning.
	presignCreds aws.CredentialsProvider
	// s3Creds replace them for the server's S3 calls (multipart create, parts, complete, abort).
	s3Creds aws.CredentialsProvider
	// now is the API's clock.
	now func() time.Time
	// publicEndpoint is INTAKE_S3_PUBLIC_ENDPOINT: the endpoint presigned URLs name.
	publicEndpoint string
}

func testAPIConfig() config.API {
	return config.API{
		JWTSecret: jwtSecret, JWTIssuer: "https://issuer.test", JWTAudience: "intake",
		Keys: aliceKey + "=alice," + bobKey + "=bob", AdminKeys: opsKey + "=oncall",
		CORSOrigins:   "https://app.example.com",
		PresignExpiry: 5 * time.Minute, MaxPresignExpiry: time.Hour, KeyPrefix: "uploads",
		AuthCookie: "intake_token", S3Timeout: 10 * time.Second, PutIfNoneMatch: true, // as the flag's default
	}
}

func testPolicy() *pipeline.Policy {
	p := &pipeline.Policy{Rules: []pipeline.Rule{{Prefix: "", MaxSize: maxPolicy, AllowedTypes: []string{"text/*", "image/*", "application/octet-stream"}}}}
	if err := p.Validate(); err != nil {
		panic(err)
	}
	return p
}

func setup(t *testing.T, opts ...setupOpts) *testBundle {
	t.Helper()
	if testing.Short() {
		t.Skip("needs the local stack (PostgreSQL, MinIO)")
	}
	var o setupOpts
	if len(opts) > 0 {
		o = opts[0]
	}
	cfg := testAPIConfig()
	if o.api != nil {
		o.api(&cfg)
	}
	pol := o.policy
	if pol == nil {
		pol = testPolicy()
	}
	s3c := testkit.S3()
	var st *store.Store
	var bucket string
	if o.share != nil {
		st, bucket = o.share.st, o.share.bucket
	} else {
		st, bucket = testkit.DB(t), testkit.Bucket(t, s3c)
	}
	var q Queries = st.Q
	if o.queries != nil {
		q = o.queries(q)
	}
	reg := prometheus.NewRegistry()
	var aborts DeadlineAborter = o.aborts
	recording := &recordingAborts{calls: make(chan string, 16)}
	if aborts == nil {
		aborts = recording
	}
	ctx, cancel := context.WithCancel(cmp.Or(o.ctx, context.Background()))
	t.Cleanup(cancel)
	awsCfg := testkit.AWSConfig()
	if o.presignCreds != nil {
		awsCfg.Credentials = o.presignCreds
	}
	srvS3 := s3c
	if o.s3Creds != nil {
		c := testkit.AWSConfig()
		c.Credentials = o.s3Creds
		srvS3 = objstore.NewClient(c, testkit.AWS())
	}
	presignAWS := testkit.AWS()
	presignAWS.S3PublicEndpoint = o.publicEndpoint
	mpMetrics, err := mpart.NewMetrics(reg)
	require.NoError(t, err)
	mp, err := mpart.New(mpart.Config{S3: srvS3, Store: st.Multipart(), Metrics: mpMetrics, CallTimeout: cfg.S3Timeout})
	require.NoError(t, err)
	limiter := ratelimit.New(cfg.OwnerRate, cfg.OwnerBurst) // as the daemon builds it (internal/cli)
	if limiter != nil {
		reg.MustRegister(limiter)
	}
	srv, err := New(ctx, Options{
		API: cfg, Bucket: bucket, MultipartDeadline: 2 * time.Hour, Policy: pol, Queries: q, S3: srvS3, Multipart: mp,
		Presign: objstore.NewPresignClient(awsCfg, presignAWS), Aborts: aborts, Waits: o.waits,
		Log: telemetry.NewLogger(io.Discard, "json", "debug"), Registerer: reg, Now: o.now,
		Limiter: limiter,
	})
	require.NoError(t, err)
	// Every exchange with the server is checked against openapi.json.
	hs := httptest.NewServer(testkit.NewContract(t, openAPIDoc).Handler(t, srv.Handler()))
	t.Cleanup(hs.Close)
	return &testBundle{srv: hs, api: srv, st: st, s3: s3c, bucket: bucket, registry: reg, aborts: recording, mp: mp}
}

// call sends a request to the API with the given API key ("" for none) and returns the status,
// headers and decoded JSON body (nil when the body is not an object).
func (b *testBundle) call(t *testing.T, method, path, key string, body any) (int, http.Header, map[string]any) {
	t.Helper()
	return b.send(t, attack{method: method, path: path, as: asKey(key), body: body})
}

// raw is call with the body as it came.
func (b *testBundle) raw(t *testing.T, method, path, key string, body any) (int, http.Header, []byte) {
	t.Helper()
	return b.sendRaw(t, attack{method: method, path: path, as: asKey(key), body: body})
}

func (b *testBundle) head(t *testing.T, key string) *s3.HeadObjectOutput {
	t.Helper()
	out, err := b.s3.HeadObject(context.Background(), &s3.HeadObjectInput{Bucket: aws.String(b.bucket), Key: aws.String(key)})
	require.NoError(t, err, "head %s", key)
	return out
}

func (b *testBundle) get(t *testing.T, key string) []byte {
	t.Helper()
	out, err := b.s3.GetObject(context.Background(), &s3.GetObjectInput{Bucket: aws.String(b.bucket), Key: aws.String(key)})
	require.NoError(t, err)
	defer out.Body.Close()
	raw, err := io.ReadAll(out.Body)
	require.NoError(t, err)
	return raw
}

func headers(m map[string]any) map[string]string {
	out := map[string]string{}
	h, _ := m["headers"].(map[string]any)
	for k, v := range h {
		if !strings.EqualFold(k, "Content-Length") {
			out[k] = v.(string)
		}
	}
	return out
}

func TestPresignedPut(t *testing.T) {
	t.Parallel()
	b := setup(t)
	body := []byte("hello, intake — a presigned PUT")
	status, _, resp := b.call(t, "POST", "/v1/uploads", aliceKey, map[string]any{
		"filename": "greeting.txt", "content_type": "text/plain; charset=utf-8", "size": len(body),
	})
	require.Equal(t, http.StatusCreated, status, resp)
	require.Equal(t, "put", resp["method"])
	key := resp["key"].(string)
	require.Regexp(t, `^uploads/alice/[0-9a-f-]{36}/greeting\.txt$`, key)
	require.Equal(t, strings.Split(key, "/")[2], resp["id"], "the key's uuid is the upload id")
	h := headers(resp)
	require.Equal(t, "text/plain; charset=utf-8", h["Content-Type"])

	require.Equal(t, "*", h["If-None-Match"], "the URL uploads one object, once")

	u := resp["url"].(string)
	cases := []struct {
		name        string
		ct          string
		ifNoneMatch string
		body        []byte
		want        []int
	}{
		{"wrong content type", "text/html", "*", body, []int{http.StatusForbidden}},
		{"longer body", h["Content-Type"], "*", append(bytes.Clone(body), '!'), []int{http.StatusForbidden}},
		{"shorter body", h["Content-Type"], "*", body[:len(body)-1], []int{http.StatusForbidden}},
		{"without the signed If-None-Match", h["Content-Type"], "", body, []int{http.StatusBadRequest, http.StatusForbidden}},
		{"right type and length", h["Content-Type"], "*", body, []int{http.StatusOK}},
		// The uploader (or whoever holds the URL) uses it again after the object landed and was
		// verified: S3 refuses, and the verified bytes stay.
		{"the same URL again", h["Content-Type"], "*", bytes.ToUpper(body), []int{http.StatusPreconditionFailed}},
	}
	for _, c := range cases {
		hdr := map[string]string{"Content-Type": c.ct}
		if c.ifNoneMatch != "" {
			hdr["If-None-Match"] = c.ifNoneMatch
		}
		status, _ := testkit.Do(t, http.MethodPut, u, c.body, hdr)
		require.Contains(t, c.want, status, c.name)
	}
	head := b.head(t, key)
	require.Equal(t, int64(len(body)), aws.ToInt64(head.ContentLength))
	require.Equal(t, "text/plain; charset=utf-8", aws.ToString(head.ContentType))
	require.Equal(t, body, b.get(t, key), "not overwritten")

	// The intent row records what was declared.
	var owner, method, ct, st string
	var size int64
	var declared bool
	require.NoError(t, b.st.Pool.QueryRow(context.Background(),
		"SELECT owner, method, content_type, size, size_declared, status FROM uploads WHERE key = $1", key).
		Scan(&owner, &method, &ct, &size, &declared, &st))
	require.Equal(t, []any{"alice", "put", "text/plain; charset=utf-8", int64(len(body)), true, "pending"}, []any{owner, method, ct, size, declared, st})
}

func TestPresignedPutChecksum(t *testing.T) {
	t.Parallel()
	b := setup(t)
	body := []byte("checksummed content")
	sum := sha256.Sum256(body)
	status, _, resp := b.call(t, "POST", "/v1/uploads", aliceKey, map[string]any{
		"filename": "c.bin", "content_type": "application/octet-stream", "size": len(body), "sha256": hex.EncodeToString(sum[:]),
	})
	require.Equal(t, http.StatusCreated, status, resp)
	h := headers(resp)
	require.NotEmpty(t, h["x-amz-checksum-sha256"])
	u := resp["url"].(string)
	other := bytes.ToUpper(body) // same length, different content
	status, _ = testkit.Do(t, http.MethodPut, u, other, h)
	require.Equal(t, http.StatusBadRequest, status, "content that does not match the signed checksum")
	noChecksum := maps.Clone(h) // every signed header but the checksum
	delete(noChecksum, "x-amz-checksum-sha256")
	delete(noChecksum, "Content-Length")
	status, _ = testkit.Do(t, http.MethodPut, u, body, noChecksum)
	require.Contains(t, []int{http.StatusBadRequest, http.StatusForbidden}, status, "the checksum header is signed")
	status, _ = testkit.Do(t, http.MethodPut, u, body, h)
	require.Equal(t, http.StatusOK, status)
	require.Equal(t, body, b.get(t, resp["key"].(string)))
	var stored []byte
	require.NoError(t, b.st.Pool.QueryRow(context.Background(), "SELECT sha256 FROM uploads WHERE key = $1", resp["key"]).Scan(&stored))
	require.Equal(t, sum[:], stored)
}

// postForm posts content with the POST policy's fields (the file last, as S3 requires).
func postForm(t *testing.T, url string, fields map[string]any, content []byte, override map[string]string) int {
	t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for k, v := range fields {
		val := v.(string)
		if o, ok := override[k]; ok {
			val = o
		}
		require.NoError(t, mw.WriteField(k, val))
	}
	fw, err := mw.CreateFormFile("file", "upload")
	require.NoError(t, err)
	_, _ = fw.Write(content)
	require.NoError(t, mw.Close())
	resp, err := http.Post(url, mw.FormDataContentType(), &buf)
	require.NoError(t, err)
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode >= 300 {
		t.Logf("POST policy upload: %d %s", resp.StatusCode, raw)
	}
	return resp.StatusCode
}

func TestPresignedPost(t *testing.T) {
	t.Parallel()
	b := setup(t)
	body := []byte("posted through a policy")
	status, _, resp := b.call(t, "POST", "/v1/uploads", aliceKey, map[string]any{
		"filename": "form.txt", "content_type": "text/plain", "size": len(body), "method": "post", "expires_in": 120,
	})
	require.Equal(t, http.StatusCreated, status, resp)
	require.Equal(t, "post", resp["method"])
	fields := resp["fields"].(map[string]any)
	require.Equal(t, "text/plain", fields["Content-Type"])
	require.Equal(t, resp["key"], fields["key"])
	u := resp["url"].(string)

	require.Equal(t, http.StatusBadRequest, postForm(t, u, fields, append(bytes.Clone(body), "more"...), nil), "over content-length-range")
	require.Equal(t, http.StatusBadRequest, postForm(t, u, fields, body[:3], nil), "under content-length-range")
	require.Equal(t, http.StatusForbidden, postForm(t, u, fields, body, map[string]string{"Content-Type": "text/html"}), "other content type")
	require.Equal(t, http.StatusForbidden, postForm(t, u, fields, body, map[string]string{"key": "uploads/alice/elsewhere.txt"}), "other key")
	require.Equal(t, http.StatusNoContent, postForm(t, u, fields, body, nil))
	require.Equal(t, body, b.get(t, resp["key"].(string)))
	require.Equal(t, "text/plain", aws.ToString(b.head(t, resp["key"].(string)).ContentType))
}

func TestMultipartThroughAPI(t *testing.T) {
	t.Parallel()
	b := setup(t)
	const partSize = 5 << 20
	content := make([]byte, 2*partSize+123)
	for i := range content {
		content[i] = byte(i * 7 % 251)
	}
	status, _, resp := b.call(t, "POST", "/v1/uploads", aliceKey, map[string]any{
		"filename": "big.bin", "content_type": "application/octet-stream", "size": len(content), "method": "multipart",
	})
	require.Equal(t, http.StatusCreated, status, resp)
	id, key, uploadID := resp["id"].(string), resp["key"].(string), resp["upload_id"].(string)
	require.NotEmpty(t, uploadID)
	require.Empty(t, resp["url"])
	select {
	case call := <-b.aborts.calls:
		require.True(t, strings.HasPrefix(call, b.bucket+"|"+key+"|"+uploadID+"|"), call)
		require.Contains(t, call, resp["expires_at"].(string)[:16])
	case <-time.After(5 * time.Second):
		t.Fatal("the abort was not scheduled")
	}

	status, _, resp = b.call(t, "POST", "/v1/uploads/"+id+"/parts", aliceKey, map[string]any{"part_numbers": []int{1, 2, 3}})
	require.Equal(t, http.StatusOK, status, resp)
	parts := resp["parts"].([]any)
	require.Len(t, parts, 3)
	var done []map[string]any
	for i, p := range parts {
		pm := p.(map[string]any)
		n := int(pm["part_number"].(float64))
		require.Equal(t, i+1, n)
		chunk := content[(n-1)*partSize : min(n*partSize, len(content))]
		req, err := http.NewRequest(http.MethodPut, pm["url"].(string), bytes.NewReader(chunk))
		require.NoError(t, err)
		r, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		_ = r.Body.Close()
		require.Equal(t, http.StatusOK, r.StatusCode)
		done = append(done, map[string]any{"part_number": n, "etag": r.Header.Get("ETag")})
	}
	status, _, resp = b.call(t, "GET", "/v1/uploads/"+id+"/parts", aliceKey, nil)
	require.Equal(t, http.StatusOK, status, resp)
	listed := resp["parts"].([]any)
	require.Len(t, listed, 3)
	require.Equal(t, float64(partSize), listed[0].(map[string]any)["size"])

	// Out of order is fine (the API sorts); duplicates are not.
	status, _, resp = b.call(t, "POST", "/v1/uploads/"+id+"/complete", aliceKey, map[string]any{"parts": []any{done[0], done[0]}})
	require.Equal(t, http.StatusBadRequest, status, resp)
	status, _, resp = b.call(t, "POST", "/v1/uploads/"+id+"/complete", aliceKey, map[string]any{"parts": []any{done[2], done[0], done[1]}})
	require.Equal(t, http.StatusOK, status, resp)
	require.Equal(t, key, resp["key"])
	got := b.get(t, key)
	require.Equal(t, len(content), len(got))
	require.Equal(t, sha256.Sum256(content), sha256.Sum256(got))
	require.Equal(t, "application/octet-stream", aws.ToString(b.head(t, key).ContentType))

	var st string
	require.NoError(t, b.st.Pool.QueryRow(context.Background(), "SELECT status FROM uploads WHERE id = $1", id).Scan(&st))
	require.Equal(t, "completed", st)
	status, _, resp = b.call(t, "POST", "/v1/uploads/"+id+"/parts", aliceKey, map[string]any{"part_numbers": []int{4}})
	require.Equal(t, http.StatusConflict, status, resp)
	require.Equal(t, ProblemBase+"upload-not-pending", resp["type"])
}

func TestMultipartAbort(t *testing.T) {
	t.Parallel()
	b := setup(t)
	status, _, resp := b.call(t, "POST", "/v1/uploads", aliceKey, map[string]any{
		"filename": "gone.bin", "content_type": "application/octet-stream", "size": 6 << 20, "method": "multipart",
	})
	require.Equal(t, http.StatusCreated, status, resp)
	id, uploadID := resp["id"].(string), resp["upload_id"].(string)
	status, _, _ = b.call(t, "DELETE", "/v1/uploads/"+id, bobKey, nil)
	require.Equal(t, http.StatusNotFound, status)
	status, _, resp = b.call(t, "DELETE", "/v1/uploads/"+id, aliceKey, nil)
	require.Equal(t, http.StatusNoContent, status, resp)
	_, err := b.s3.ListParts(context.Background(), &s3.ListPartsInput{Bucket: aws.String(b.bucket), Key: aws.String(resp0(t, b, id)), UploadId: aws.String(uploadID)})
	require.True(t, objstore.IsNotFound(err), "the S3 upload is gone: %v", err)
	var st, reason, outcome string
	require.NoError(t, b.st.Pool.QueryRow(context.Background(), "SELECT status FROM uploads WHERE id = $1", id).Scan(&st))
	require.Equal(t, "aborted", st)
	require.NoError(t, b.st.Pool.QueryRow(context.Background(), "SELECT reason, outcome FROM multipart_aborts WHERE upload_id = $1", uploadID).Scan(&reason, &outcome))
	require.Equal(t, []string{"api", "aborted"}, []string{reason, outcome})
	// A DELETE retried (its answer lost) is answered again: the upload is aborted, as asked.
	status, _, resp = b.call(t, "DELETE", "/v1/uploads/"+id, aliceKey, nil)
	require.Equal(t, http.StatusNoContent, status, resp)
}

func resp0(t *testing.T, b *testBundle, id string) string {
	t.Helper()
	var key string
	require.NoError(t, b.st.Pool.QueryRow(context.Background(), "SELECT key FROM uploads WHERE id = $1", id).Scan(&key))
	return key
}

// insertObject writes an objects row as the consumer would.
func insertObject(t *testing.T, b *testBundle, owner, key, status string, createdAt time.Time) string {
	t.Helper()
	var id string
	require.NoError(t, b.st.Pool.QueryRow(context.Background(),
		`INSERT INTO objects (bucket, key, size, content_type, owner, status, reason, created_at, sha256)
		 VALUES ($1, $2, 5, 'text/plain', $3, $4, CASE WHEN $4 = 'rejected' THEN 'too_large' END, $5, $6) RETURNING id::text`,
		b.bucket, key, owner, status, createdAt, bytes.Repeat([]byte{0xab}, 32)).Scan(&id))
	return id
}

func TestObjects(t *testing.T) {
	t.Parallel()
	b := setup(t)
	base := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	var aliceIDs []string
	for i := range 5 {
		aliceIDs = append(aliceIDs, insertObject(t, b, "alice", "uploads/alice/x/"+string(rune('a'+i)), "valid", base.Add(time.Duration(i)*time.Minute)))
	}
	// Two rows with the same created_at: the id breaks the tie.
	aliceIDs = append(aliceIDs, insertObject(t, b, "alice", "uploads/alice/x/tie", "valid", base.Add(4*time.Minute)))
	rejected := insertObject(t, b, "alice", "uploads/alice/x/bad", "rejected", base.Add(-time.Hour))
	bobs := insertObject(t, b, "bob", "uploads/bob/x/b", "valid", base)

	var seen []string
	cursor := ""
	for range 10 {
		path := "/v1/objects?limit=3"
		if cursor != "" {
			path += "&cursor=" + cursor
		}
		status, _, resp := b.call(t, "GET", path, aliceKey, nil)
		require.Equal(t, http.StatusOK, status, resp)
		for _, o := range resp["objects"].([]any) {
			om := o.(map[string]any)
			require.NotEqual(t, bobs, om["id"])
			seen = append(seen, om["id"].(string))
		}
		next, _ := resp["next_cursor"].(string)
		if next == "" {
			break
		}
		cursor = next
	}
	require.Len(t, seen, 7, "every alice object exactly once")
	require.ElementsMatch(t, append(aliceIDs, rejected), seen)
	require.Equal(t, rejected, seen[len(seen)-1], "newest first")

	status, _, resp := b.call(t, "GET", "/v1/objects/"+aliceIDs[0], aliceKey, nil)
	require.Equal(t, http.StatusOK, status)
	require.Equal(t, strings.Repeat("ab", 32), resp["sha256"])
	require.Equal(t, "valid", resp["status"])

	// Download: the object must exist in S3 for the URL to be useful.
	_, err := b.s3.PutObject(context.Background(), &s3.PutObjectInput{Bucket: aws.String(b.bucket), Key: aws.String("uploads/alice/x/a"), Body: strings.NewReader("hello")})
	require.NoError(t, err)
	status, _, resp = b.call(t, "GET", "/v1/objects/"+aliceIDs[0]+"/download?expires_in=60", aliceKey, nil)
	require.Equal(t, http.StatusOK, status, resp)
	code, got := testkit.Do(t, http.MethodGet, resp["url"].(string), nil, nil)
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, "hello", string(got))

	status, _, resp = b.call(t, "GET", "/v1/objects/"+rejected+"/download", aliceKey, nil)
	require.Equal(t, http.StatusConflict, status)
	require.Equal(t, ProblemBase+"object-not-valid", resp["type"])
}

// TestDownloadReadsTheVerifiedVersion: in a versioned bucket, the uploader writes the key again
// after its object was verified (its upload URL or POST policy has not expired yet). Until the new
// version has a verdict of its own, the row still describes the first version, and a download URL
// must read those bytes, not the unverified ones written over them.
func TestDownloadReadsTheVerifiedVersion(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	_, err := b.s3.PutBucketVersioning(ctx, &s3.PutBucketVersioningInput{Bucket: aws.String(b.bucket),
		VersioningConfiguration: &types.VersioningConfiguration{Status: types.BucketVersioningStatusEnabled}})
	require.NoError(t, err)
	const key = "uploads/alice/x/swapped.txt"
	v1, err := b.s3.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(b.bucket), Key: aws.String(key), Body: strings.NewReader("verified")})
	require.NoError(t, err)
	require.NotEmpty(t, aws.ToString(v1.VersionId))
	id := insertObject(t, b, "alice", key, "valid", time.Now())
	_, err = b.st.Pool.Exec(ctx, `UPDATE objects SET version_id = $1 WHERE id = $2`, aws.ToString(v1.VersionId), id)
	require.NoError(t, err)
	_, err = b.s3.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(b.bucket), Key: aws.String(key), Body: strings.NewReader("swapped!")})
	require.NoError(t, err)

	status, _, resp := b.call(t, "GET", "/v1/objects/"+id+"/download", aliceKey, nil)
	require.Equal(t, http.StatusOK, status, resp)
	code, got := testkit.Do(t, http.MethodGet, resp["url"].(string), nil, nil)
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, "verified", string(got), "the download serves the verified version")
}

// TestDownloadOverridesUploaderHeaders: a presigned PUT does not sign Content-Disposition,
// Content-Encoding or Cache-Control, so its uploader may add them, and S3 stores them and serves
// them on download (a text file served inline as evil.html). The download's response-* overrides
// (downloadOverrides) make S3 answer with the verified type, as an attachment under the file's
// name, whatever the object was stored with.
func TestDownloadOverridesUploaderHeaders(t *testing.T) {
	t.Parallel()
	b := setup(t)
	body := []byte("<html><script>alert(1)</script></html>")
	status, _, resp := b.call(t, "POST", "/v1/uploads", aliceKey, map[string]any{"filename": "notes été.txt", "content_type": "text/plain", "size": len(body)})
	require.Equal(t, http.StatusCreated, status, resp)
	hostile := headers(resp)
	hostile["Content-Disposition"] = "inline; filename=evil.html"
	hostile["Cache-Control"] = "public, max-age=31536000"
	code, _ := testkit.Do(t, http.MethodPut, resp["url"].(string), body, hostile)
	require.Equal(t, http.StatusOK, code, "S3 takes the unsigned headers")
	key := resp["key"].(string)
	obj := insertObject(t, b, "alice", key, "valid", time.Now())
	var row dbq.Object
	row.Key = key
	row.ContentType = aws.String("text/plain")
	ct, disposition := downloadOverrides(row)
	require.Equal(t, "text/plain", ct)
	require.Equal(t, "attachment; filename*=UTF-8''notes%20%C3%A9t%C3%A9.txt", disposition)

	status, _, dl := b.call(t, "GET", "/v1/objects/"+obj+"/download", aliceKey, nil)
	require.Equal(t, http.StatusOK, status, dl)
	got, err := http.Get(dl["url"].(string))
	require.NoError(t, err)
	_ = got.Body.Close()
	require.Equal(t, http.StatusOK, got.StatusCode)
	require.Equal(t, disposition, got.Header.Get("Content-Disposition"), "served as an attachment, not inline as evil.html")
	require.Equal(t, "text/plain", got.Header.Get("Content-Type"))
	require.Equal(t, "private", got.Header.Get("Cache-Control"), "not the uploader's public, max-age=31536000")
}

func TestFilenameIsSanitizedInKey(t *testing.T) {
	t.Parallel()
	b := setup(t)
	status, _, resp := b.call(t, "POST", "/v1/uploads", aliceKey, map[string]any{"filename": "  my <report> #1?.txt ", "content_type": "TEXT/Plain", "size": 1})
	require.Equal(t, http.StatusCreated, status, resp)
	require.True(t, strings.HasSuffix(resp["key"].(string), "/my _report_ _1_.txt"), resp["key"])
	require.Equal(t, "text/plain", headers(resp)["Content-Type"])
}

// TestJWTAuth: a valid token's subject is the owner, and API keys work as bearer tokens too (the
// refused tokens are rows of TestAPIAttacks).
func TestJWTAuth(t *testing.T) {
	t.Parallel()
	b := setup(t)
	status, _, body := b.send(t, attack{method: "POST", path: "/v1/uploads", as: asBearer(hs256(t, func(c jwt.MapClaims) { c["sub"] = "carol" })),
		body: map[string]any{"filename": "j.txt", "content_type": "text/plain", "size": 3}})
	require.Equal(t, http.StatusCreated, status, body)
	require.True(t, strings.HasPrefix(body["key"].(string), "uploads/carol/"), body["key"])
	status, _, body = b.send(t, attack{method: "GET", path: "/v1/objects", as: asBearer(bobKey)})
	require.Equal(t, http.StatusOK, status, body)
}

func TestCORSAndRequestID(t *testing.T) {
	t.Parallel()
	b := setup(t)
	pre := func(origin string) *http.Response {
		req, _ := http.NewRequest("OPTIONS", b.srv.URL+"/s3/multipart/abc/complete", nil)
		req.Header.Set("Origin", origin)
		req.Header.Set("Access-Control-Request-Method", "POST")
		req.Header.Set("Access-Control-Request-Headers", "content-type,authorization")
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		_ = resp.Body.Close()
		return resp
	}
	resp := pre("https://app.example.com")
	require.Equal(t, 204, resp.StatusCode)
	require.Equal(t, "https://app.example.com", resp.Header.Get("Access-Control-Allow-Origin"))
	require.Contains(t, resp.Header.Get("Access-Control-Allow-Methods"), "POST")
	require.Contains(t, strings.ToLower(resp.Header.Get("Access-Control-Allow-Headers")), "authorization")
	resp = pre("https://evil.example.com")
	require.Empty(t, resp.Header.Get("Access-Control-Allow-Origin"))

	req, _ := http.NewRequest("GET", b.srv.URL+"/v1/objects", nil)
	req.Header.Set("Origin", "https://app.example.com")
	req.Header.Set("X-API-Key", aliceKey)
	req.Header.Set("X-Request-Id", "client-chosen-42")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	_ = resp.Body.Close()
	require.Equal(t, "client-chosen-42", resp.Header.Get("X-Request-Id"))
	require.Equal(t, "https://app.example.com", resp.Header.Get("Access-Control-Allow-Origin"))
	require.Contains(t, resp.Header.Get("Access-Control-Expose-Headers"), "ETag")
	require.Contains(t, resp.Header.Get("Access-Control-Expose-Headers"), "Retry-After",
		"a browser's script must read a 429's or 503's Retry-After")

	req.Header.Set("X-Request-Id", "bad id\twith tab")
	resp, err = http.DefaultClient.Do(req)
	require.NoError(t, err)
	_ = resp.Body.Close()
	require.NotEqual(t, "bad id\twith tab", resp.Header.Get("X-Request-Id"))
	require.NotEmpty(t, resp.Header.Get("X-Request-Id"))

	// Metrics carry the route pattern and code.
	mfs, err := b.registry.Gather()
	require.NoError(t, err)
	found := false
	for _, mf := range mfs {
		if mf.GetName() == "intake_http_requests_total" {
			for _, m := range mf.GetMetric() {
				labels := map[string]string{}
				for _, l := range m.GetLabel() {
					labels[l.GetName()] = l.GetValue()
				}
				if labels["route"] == "GET /v1/objects" && labels["code"] == "200" && m.GetCounter().GetValue() == 2 {
					found = true
				}
			}
		}
	}
	require.True(t, found, "intake_http_requests_total{route=\"GET /v1/objects\",code=\"200\"} == 2")
}

func TestDevAuth(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{api: func(c *config.API) {
		*c = testAPIConfig()
		c.JWTSecret, c.Keys, c.AdminKeys, c.AuthCookie, c.InsecureDevAuth = "", "", "", "", true
	}})
	// Development auth is outside the documented contract (every route needs credentials there):
	// the request is sent off contract, its response is still checked.
	status, _, resp := b.send(t, attack{attacker: "developer without credentials", method: "POST", path: "/v1/uploads",
		body: map[string]any{"filename": "d.txt", "content_type": "text/plain", "size": 1}})
	require.Equal(t, http.StatusCreated, status, resp)
	require.True(t, strings.HasPrefix(resp["key"].(string), "uploads/dev/"))

	// The loopback API without credentials is reachable from any page the developer's browser
	// opens: a request the browser marks as another site's is refused, as a cookie's would be.
	upload := map[string]any{"filename": "e.txt", "content_type": "text/plain", "size": 1}
	runAttacks(t, b, familyV1, []attack{
		{attacker: "a page on another site, through the developer's browser (fetch)", method: "POST", path: "/v1/uploads", body: upload,
			header: crossSite, status: http.StatusForbidden, typ: "forbidden", mustNot: "create an intent or sign a URL"},
		{attacker: "a page on another site, through an older browser (Origin only)", method: "POST", path: "/v1/uploads", body: upload,
			header: map[string]string{"Origin": "https://evil.example.net"}, status: http.StatusForbidden, typ: "forbidden", mustNot: "create an intent or sign a URL"},
		{attacker: "a page whose domain was rebound to 127.0.0.1 (DNS rebinding: same-origin to the browser)", method: "POST", path: "/v1/uploads", body: upload,
			header: map[string]string{"Host": "rebind.evil.example:8080", "Sec-Fetch-Site": "same-origin", "Origin": "http://rebind.evil.example:8080"},
			status: http.StatusForbidden, typ: "forbidden", mustNot: "create an intent or sign a URL"},
		{attacker: "the same rebound page reading the developer's objects", method: "GET", path: "/v1/objects",
			header: map[string]string{"Host": "rebind.evil.example:8080", "Sec-Fetch-Site": "same-origin"},
			status: http.StatusForbidden, typ: "forbidden", mustNot: "list any object"},
	})
	runAttacks(t, b, familyUppy, []attack{
		{attacker: "an <img> on another site (Sec-Fetch-Site, no Origin)", method: "GET", path: "/s3/params?filename=x.txt&type=text/plain",
			header: map[string]string{"Sec-Fetch-Site": "cross-site"}, status: http.StatusForbidden, mustNot: "create an intent or sign a URL"},
	})
}

func TestMain(m *testing.M) {
	if os.Getenv(loadgenEnv) != "" {
		os.Exit(runLoadgenChild())
	}
	os.Exit(m.Run())
}
