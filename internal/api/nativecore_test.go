package api

import (
	"context"
	"crypto/sha256"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"github.com/valyala/fasthttp"
)

// What a server swap would give, measured rather than guessed (issue 14): the route's core, the
// same Server.newIntent the daemon runs (validation, key, presign, the durable intent row through
// the same IntentWriter), served natively by a fasthttp.Server with the daemon's timeouts instead
// of net/http's. It is not a product path and nothing in the daemon uses it. Around the core it
// does, for the benchmark's request only, what the daemon's middleware does for it: a request id,
// the API key looked up by its SHA-256, the one-pass body scan, the request counter and duration
// histogram, the same answer bytes. It leaves out what that request does not reach (CORS without
// an Origin, cookies and bearer tokens, the encoding/json fallback, problem bodies) and what
// fasthttp does not do (a request context cancelled when the client goes away).

// startNativeCore serves srv's POST /v1/uploads core on a fasthttp.Server over a loopback listener
// and returns its address and the function that shuts it down.
func startNativeCore(b *testing.B, srv *Server) (string, func()) {
	b.Helper()
	keys := map[[32]byte]string{sha256.Sum256([]byte(aliceKey)): "alice"}
	requests := newCounters(srv.metrics.requests.MustCurryWith(prometheus.Labels{"route": "native-core"}), strconv.Itoa)
	duration := srv.metrics.duration.WithLabelValues("native-core")
	handle := func(fc *fasthttp.RequestCtx) int {
		id := string(fc.Request.Header.Peek("X-Request-Id"))
		if !validRequestID(id) {
			id = srv.ids.next()
		}
		fc.Response.Header.Set("X-Request-Id", id)
		if string(fc.Path()) != "/v1/uploads" || !fc.IsPost() {
			return fasthttp.StatusNotFound
		}
		owner, ok := keys[sha256.Sum256(fc.Request.Header.Peek("X-API-Key"))]
		if !ok {
			return fasthttp.StatusUnauthorized
		}
		var req createUploadRequest
		if !req.scanJSON(fc.PostBody()) || req.Size == nil {
			return fasthttp.StatusBadRequest
		}
		exp, p := srv.expiry(req.ExpiresIn)
		if p != nil {
			return p.Status
		}
		spec := intentSpec{filename: req.Filename, contentType: req.ContentType, size: *req.Size, sizeDeclared: true,
			method: req.Method, metadata: req.Metadata, expires: exp}
		resp, p := srv.newIntent(context.Context(fc), owner, spec)
		if p != nil {
			return p.Status
		}
		fc.SetContentType("application/json")
		fc.Response.Header.Set("Cache-Control", "no-store")
		bp := responseBuffers.Get().(*[]byte)
		buf := resp.appendJSON((*bp)[:0])
		fc.SetBody(buf) // copies
		*bp = buf
		responseBuffers.Put(bp)
		return fasthttp.StatusCreated
	}
	fs := &fasthttp.Server{
		Handler: func(fc *fasthttp.RequestCtx) {
			start := time.Now()
			code := handle(fc)
			fc.SetStatusCode(code)
			requests.get(code).Inc()
			duration.Observe(time.Since(start).Seconds())
		},
		ReadTimeout: ReadTimeout, WriteTimeout: WriteTimeout, IdleTimeout: IdleTimeout,
		MaxRequestBodySize: maxJSONBody, NoDefaultServerHeader: true,
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(b, err)
	go func() { _ = fs.Serve(ln) }()
	return ln.Addr().String(), func() { _ = fs.Shutdown() }
}
