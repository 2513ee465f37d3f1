package api

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/intakehq/intake/internal/objstore"
	"github.com/intakehq/intake/internal/store"
	"github.com/intakehq/intake/internal/testkit"
	"github.com/intakehq/intake/pipeline"
)

const (
	chromiumPath = "/usr/bin/chromium"
	uppyDir      = "testdata/uppy"
)

// requireBrowserTools fails the test (it does not skip) when Chromium, node or the npm packages are
// missing: `make test` installs them through deploy/local/browser.sh.
func requireBrowserTools(t *testing.T, dir string) string {
	t.Helper()
	const fix = "; run deploy/local/browser.sh (make test does) to install Chromium and the npm packages"
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Fatalf("browser test: %s not found: %v%s", chromiumPath, err, fix)
	}
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("browser test: node not found: %v%s", err, fix)
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules")); err != nil {
		t.Fatalf("browser test: %s/node_modules missing%s", dir, fix)
	}
	return node
}

// TestUppyBrowser runs the real @uppy/aws-s3 client in headless Chromium against intake's Uppy
// routes: a small file through /s3/params (a POST policy, which is what Uppy 6 does without
// multipart), a file over 10 MiB through /s3/multipart (forced multipart, 3 parts), and a plain
// fetch() PUT through /v1/uploads. The objects must land in MinIO with the right sizes. Each file
// carries the app's metadata ({order}); once the pipeline has judged the objects, the metadata
// comes back in each upload's webhook.
func TestUppyBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("needs Chromium, node and the local stack")
	}
	node := requireBrowserTools(t, uppyDir)
	t.Parallel()
	b := setup(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	outDir := t.TempDir()
	esbuild := exec.CommandContext(ctx, filepath.Join("node_modules", ".bin", "esbuild"), "page.js",
		"--bundle", "--format=esm", "--platform=browser", "--log-level=warning", "--outfile="+filepath.Join(outDir, "bundle.js"))
	esbuild.Dir = uppyDir
	out, err := esbuild.CombinedOutput()
	require.NoError(t, err, "esbuild: %s", out)
	bundle, err := os.ReadFile(filepath.Join(outDir, "bundle.js"))
	require.NoError(t, err)
	index, err := os.ReadFile(filepath.Join(uppyDir, "index.html"))
	require.NoError(t, err)

	// The page and the API share an origin, as when intake sits behind the app's domain; the JWT
	// travels in the auth cookie because Uppy sends no Authorization header. What the browser sends
	// to the API is checked against openapi.json.
	apiMux := http.NewServeMux()
	b.api.Register(apiMux)
	mux := http.NewServeMux()
	mux.Handle("/", testkit.NewContract(t, openAPIDoc).Handler(t, apiMux))
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write(index)
	})
	mux.HandleFunc("GET /bundle.js", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/javascript")
		_, _ = w.Write(bundle)
	})
	mux.HandleFunc("GET /favicon.ico", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) })
	hs := httptest.NewServer(mux)
	defer hs.Close()

	token := testkit.SignJWT(t, jwt.SigningMethodHS256, []byte(jwtSecret), "", jwt.MapClaims{
		"sub": "erin", "iss": "https://issuer.test", "aud": "intake", "exp": time.Now().Add(10 * time.Minute).Unix(),
	})
	const smallSize, bigSize = 200 << 10, 11<<20 + 12345
	drive := exec.CommandContext(ctx, node, "drive.mjs", hs.URL+"/", "intake_token", token,
		strconv.Itoa(smallSize), strconv.Itoa(bigSize), t.TempDir())
	drive.Dir = uppyDir
	var stdout, stderr bytes.Buffer
	drive.Stdout, drive.Stderr = &stdout, &stderr
	require.NoError(t, drive.Run(), "drive.mjs: %s", stderr.String())

	type upload struct {
		Name, Key, Location, ETag string
	}
	var res struct {
		Small, Big, Put struct {
			OK     []upload
			Failed []string
		}
		Error   string
		Console []string
	}
	require.NoError(t, json.Unmarshal(stdout.Bytes(), &res), stdout.String())
	for _, l := range res.Console {
		t.Logf("browser console: %s", l)
	}
	require.Empty(t, res.Error)
	for name, want := range map[string]struct {
		got  []upload
		fail []string
		size int64
		ct   string
	}{
		"small (POST policy)":  {res.Small.OK, res.Small.Failed, smallSize, "image/png"},
		"big (multipart)":      {res.Big.OK, res.Big.Failed, bigSize, "application/octet-stream"},
		"plain PUT through v1": {res.Put.OK, res.Put.Failed, smallSize, "text/plain"},
	} {
		require.Empty(t, want.fail, name)
		require.Len(t, want.got, 1, name)
		key := want.got[0].Key
		require.True(t, strings.HasPrefix(key, "uploads/erin/"), "%s: key %q", name, key)
		head := b.head(t, key)
		require.Equal(t, want.size, aws.ToInt64(head.ContentLength), name)
		require.Equal(t, want.ct, aws.ToString(head.ContentType), name)
	}
	var completed int
	require.NoError(t, b.st.Pool.QueryRow(ctx, "SELECT count(*) FROM uploads WHERE owner = 'erin' AND method = 'multipart' AND status = 'completed' AND NOT size_declared").Scan(&completed))
	require.Equal(t, 1, completed)

	// The pipeline judges the three objects (as the consumer would on their events); the
	// notifications carry the metadata each file was given in the browser.
	notes := testkit.StartNotifications(t, b.st, testkit.NotificationsOptions{})
	proc, err := pipeline.NewProcessor(pipeline.ProcessorConfig{Objects: objstore.NewObjects(b.s3), Records: store.NewRecords(b.st), Buckets: []string{b.bucket},
		Policy: testPolicy(), Registerer: prometheus.NewRegistry()})
	require.NoError(t, err)
	names := map[string]string{}
	for _, up := range [][]upload{res.Small.OK, res.Big.OK, res.Put.OK} {
		require.NoError(t, proc.InspectObject(ctx, b.bucket, up[0].Key))
		names[up[0].Key] = up[0].Name
	}
	hooks := notes.Receiver.WaitDelivered(3, time.Minute)
	require.Len(t, hooks, 3)
	for _, h := range hooks {
		name, ok := names[h.Verdict.Data.Key]
		require.True(t, ok, "webhook for an unknown key %q", h.Verdict.Data.Key)
		var meta map[string]any
		require.NoError(t, json.Unmarshal(h.Verdict.Data.Metadata, &meta), "%s", h.Verdict.Data.Metadata)
		t.Logf("%s (%s): metadata %s", name, h.Verdict.Type, h.Verdict.Data.Metadata)
		require.Equal(t, "ord-"+name, meta["order"], "%s: the metadata given in the browser", name)
		require.Equal(t, 1, h.Delivered)
	}
}
