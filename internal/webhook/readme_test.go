package webhook_test

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/intakehq/intake/internal/webhook"
)

// TestReadmeNodeReceiver runs the README's Node receiver (testdata/receiver.mjs, which the README
// quotes verbatim) with node: it accepts a request signed as intake signs and refuses a forged one;
// it verifies a body whose multi-byte characters arrive split across chunks (before, it built the
// body as a string, chunk by chunk: the split character became two replacement characters and the
// signature failed), and refuses a body over 1 MiB (before, it read any size).
func TestReadmeNodeReceiver(t *testing.T) {
	t.Parallel()
	src, err := os.ReadFile(filepath.Join("testdata", "receiver.mjs"))
	require.NoError(t, err)
	readme, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	require.NoError(t, err)
	require.Contains(t, string(readme), string(src), "README.md quotes testdata/receiver.mjs")
	if testing.Short() {
		t.Skip("runs node")
	}
	node, err := exec.LookPath("node")
	require.NoError(t, err, "node is needed (deploy/local/browser.sh installs it)")

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	require.NoError(t, ln.Close())
	secret := newSecret(t, 32)
	cmd := exec.Command(node, "receiver.mjs")
	cmd.Dir = "testdata"
	cmd.Env = append(os.Environ(), "INTAKE_WEBHOOK_SECRET="+secret, "PORT="+port)
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	lines := bufio.NewScanner(stdout)

	key, err := webhook.ParseSecret(secret)
	require.NoError(t, err)
	body := `{"id":"evt-1","type":"upload.valid","timestamp":"2026-05-01T10:00:00Z","data":{"upload_id":"0196f1c0-0000-7000-8000-000000000001","status":"valid","metadata":{"order":"A-17"}}}`
	post := func(sig string, ts time.Time) int {
		req, err := http.NewRequest(http.MethodPost, "http://127.0.0.1:"+port+"/", strings.NewReader(body))
		require.NoError(t, err)
		req.Header.Set(webhook.HeaderID, "evt-1")
		req.Header.Set(webhook.HeaderTimestamp, strconv.FormatInt(ts.Unix(), 10))
		req.Header.Set(webhook.HeaderSignature, sig)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	now := time.Now()
	require.Eventually(t, func() bool { return post(webhook.Sign(key, "evt-1", now, []byte(body)), now) == http.StatusNoContent },
		30*time.Second, 50*time.Millisecond, "the receiver accepts intake's signature")
	require.True(t, lines.Scan())
	require.Equal(t, `upload.valid 0196f1c0-0000-7000-8000-000000000001 {"order":"A-17"}`, lines.Text())
	old := now.Add(-10 * time.Minute)

	// A body in two writes, split inside "é" (0xC3 0xA9): node reads it as two chunks.
	accented := `{"id":"evt-2","type":"upload.valid","timestamp":"2026-05-01T10:00:00Z","data":{"upload_id":"0196f1c0-0000-7000-8000-000000000002","status":"valid","metadata":{"name":"café"}}}`
	split := strings.Index(accented, "é") + 1
	pr, pw := io.Pipe()
	go func() {
		_, _ = pw.Write([]byte(accented[:split]))
		time.Sleep(200 * time.Millisecond)
		_, _ = pw.Write([]byte(accented[split:]))
		_ = pw.Close()
	}()
	req, err := http.NewRequest(http.MethodPost, "http://127.0.0.1:"+port+"/", pr)
	require.NoError(t, err)
	req.Header.Set(webhook.HeaderID, "evt-2")
	req.Header.Set(webhook.HeaderTimestamp, strconv.FormatInt(now.Unix(), 10))
	req.Header.Set(webhook.HeaderSignature, webhook.Sign(key, "evt-2", now, []byte(accented)))
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	_ = resp.Body.Close()
	require.Equal(t, http.StatusNoContent, resp.StatusCode, "a multi-byte character split across chunks")
	require.True(t, lines.Scan())
	require.Equal(t, `upload.valid 0196f1c0-0000-7000-8000-000000000002 {"name":"café"}`, lines.Text())

	// Over 1 MiB, signed: refused unread.
	huge := `{"id":"evt-3","type":"upload.valid","timestamp":"2026-05-01T10:00:00Z","data":{"metadata":{"pad":"` +
		strings.Repeat("x", 1<<20) + `"}}}`
	req, err = http.NewRequest(http.MethodPost, "http://127.0.0.1:"+port+"/", strings.NewReader(huge))
	require.NoError(t, err)
	req.Header.Set(webhook.HeaderID, "evt-3")
	req.Header.Set(webhook.HeaderTimestamp, strconv.FormatInt(now.Unix(), 10))
	req.Header.Set(webhook.HeaderSignature, webhook.Sign(key, "evt-3", now, []byte(huge)))
	resp, err = http.DefaultClient.Do(req)
	require.NoError(t, err)
	_ = resp.Body.Close()
	require.Equal(t, http.StatusRequestEntityTooLarge, resp.StatusCode)

	// A rotation: intake signs with two secrets ("v1,<a> v1,<b>"); the receiver holds either one.
	other, err := webhook.ParseSecret(newSecret(t, 32))
	require.NoError(t, err)
	for name, keys := range map[string][][]byte{"its secret first": {key, other}, "its secret second": {other, key}} {
		require.Equal(t, http.StatusNoContent, post(webhook.SignAll(keys, "evt-1", now, []byte(body)), now), name)
		require.True(t, lines.Scan(), name)
		require.Equal(t, `upload.valid 0196f1c0-0000-7000-8000-000000000001 {"order":"A-17"}`, lines.Text(), name)
	}

	for name, c := range map[string]struct {
		sig string
		ts  time.Time
	}{
		"forged signature":  {"v1,AAAA", now},
		"other secret":      {webhook.Sign(key[1:], "evt-1", now, []byte(body)), now},
		"two other secrets": {webhook.SignAll([][]byte{key[1:], other}, "evt-1", now, []byte(body)), now},
		"replayed too late": {webhook.Sign(key, "evt-1", old, []byte(body)), old},
		"no signature":      {"", now},
	} {
		require.Equal(t, http.StatusUnauthorized, post(c.sig, c.ts), name)
	}
}
