package api

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	mpart "github.com/intakehq/intake/internal/multipart"
	"github.com/intakehq/intake/internal/problem"
	"github.com/intakehq/intake/internal/store"
	"github.com/intakehq/intake/internal/store/dbq"
	"github.com/intakehq/intake/internal/testkit"
)

// TestJWKSOutageAnswers503: the API starts while the identity provider's JWKS endpoint answers
// 503, and a browser's client sends a correctly signed RS256 token. The API answered 401 (with a
// Bearer challenge), which clients read as bad credentials: they logged their users out instead of
// retrying. It answers 503 auth-unavailable with Retry-After (when the key set may be fetched
// again), and no challenge; the JWKS package's tests cover the answers once the endpoint is back.
func TestJWKSOutageAnswers503(t *testing.T) {
	t.Parallel()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	b64 := base64.RawURLEncoding.EncodeToString
	set, err := json.Marshal(map[string]any{"keys": []map[string]string{{"kty": "RSA", "kid": "k1", "alg": "RS256", "use": "sig",
		"n": b64(key.N.Bytes()), "e": b64(big.NewInt(int64(key.E)).Bytes())}}})
	require.NoError(t, err)
	var down atomic.Bool
	down.Store(true)
	idp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if down.Load() {
			http.Error(w, "identity provider down", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write(set)
	}))
	t.Cleanup(idp.Close)

	cfg := testAPIConfig()
	cfg.JWKSURL = idp.URL
	client := s3.New(s3.Options{Region: "us-east-1", Credentials: credentials.NewStaticCredentialsProvider("A", "S", ""), BaseEndpoint: aws.String("http://127.0.0.1:1"), UsePathStyle: true})
	mp, err := mpart.New(mpart.Config{S3: client, Store: (&store.Store{Q: dbq.New(nil)}).Multipart()})
	require.NoError(t, err)
	srv, err := New(t.Context(), Options{
		API: cfg, Bucket: "b", Queries: dbq.New(nil), S3: client, Presign: client, Multipart: mp,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Registerer: prometheus.NewRegistry(),
	})
	require.NoError(t, err, "the API starts while the identity provider is down")
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(hs.Close)

	token := testkit.SignJWT(t, jwt.SigningMethodRS256, key, "k1", jwt.MapClaims{
		"sub": "alice", "iss": cfg.JWTIssuer, "aud": cfg.JWTAudience, "exp": time.Now().Add(time.Hour).Unix(),
	})
	get := func(path string) (*http.Response, map[string]any) {
		t.Helper()
		req, err := http.NewRequest(http.MethodGet, hs.URL+path, nil)
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		var body map[string]any
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&body))
		return resp, body
	}

	for _, name := range []string{"the request's refresh fails", "the refresh taken after a failed one"} {
		resp, body := get("/v1/objects")
		require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, "%s: %v", name, body)
		require.Equal(t, "application/problem+json", resp.Header.Get("Content-Type"), name)
		require.Equal(t, problem.AuthUnavailable.Type(), body["type"], name)
		require.Empty(t, resp.Header.Get("WWW-Authenticate"), "%s: the credentials are not in question", name)
		after, err := strconv.Atoi(resp.Header.Get("Retry-After"))
		require.NoError(t, err, "%s: Retry-After %q", name, resp.Header.Get("Retry-After"))
		require.GreaterOrEqual(t, after, 1, name)
		require.LessOrEqual(t, after, 10, "%s: at most the period of the refresh for an unknown kid", name)
	}

	// Uppy's routes answer their own JSON, of the same type and status.
	resp, body := get("/s3/params?filename=a.txt&type=text/plain")
	require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, "%v", body)
	require.Equal(t, problem.AuthUnavailable.Type(), body["type"])
	require.Empty(t, resp.Header.Get("WWW-Authenticate"))
}
