package auth

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/require"

	"github.com/intakehq/intake/internal/config"
	"github.com/intakehq/intake/internal/problem"
	"github.com/intakehq/intake/internal/testkit"
)

// rsaJWKS is the JSON key set of RSA keys by kid; extra fields are added to the set's object.
func rsaJWKS(t *testing.T, keys map[string]*rsa.PrivateKey, extra map[string]any) []byte {
	t.Helper()
	var list []map[string]string
	for kid, k := range keys {
		list = append(list, map[string]string{"kty": "RSA", "kid": kid, "alg": "RS256", "use": "sig",
			"n": b64(k.N.Bytes()), "e": b64(big.NewInt(int64(k.E)).Bytes())})
	}
	set := map[string]any{"keys": list}
	for k, v := range extra {
		set[k] = v
	}
	b, err := json.Marshal(set)
	require.NoError(t, err)
	return b
}

func rsaKey(t *testing.T) *rsa.PrivateKey {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	return k
}

// jwksServer serves the key set *set holds, counting the fetches; while down is set it answers 503
// (the identity provider is down).
type jwksServer struct {
	*httptest.Server
	set     atomic.Pointer[[]byte]
	fetches atomic.Int64
	down    atomic.Bool
}

func newJWKSServer(t *testing.T, set []byte) *jwksServer {
	t.Helper()
	s := &jwksServer{}
	s.set.Store(&set)
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		s.fetches.Add(1)
		if s.down.Load() {
			http.Error(w, "identity provider down", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(*s.set.Load())
	}))
	t.Cleanup(s.Close)
	return s
}

// testJWKS are short settings for tests: the background refresh never runs during a test, the
// unknown-kid refresh is allowed every 50 ms.
func testJWKS() jwksSettings {
	js := defaultJWKS
	js.timeout, js.refresh, js.unknownKIDEvery = 5*time.Second, time.Hour, 50*time.Millisecond
	return js
}

func jwksAPI(u string) config.API {
	return config.API{JWKSURL: u, JWTIssuer: issuer, JWTAudience: audience}
}

// TestJWKSDefaults: the settings New uses bound how long a rotated key waits and how long a fetch
// may hold a request.
func TestJWKSDefaults(t *testing.T) {
	t.Parallel()
	require.LessOrEqual(t, defaultJWKS.refresh, 5*time.Minute, "background refresh")
	require.LessOrEqual(t, defaultJWKS.unknownKIDEvery, 10*time.Second, "refresh for an unknown kid")
	require.LessOrEqual(t, defaultJWKS.timeout, 10*time.Second, "one fetch")
	require.Equal(t, int64(1<<20), defaultJWKS.maxBody)
}

// TestJWKSRotationDespiteJunkKids: an unauthenticated attacker keeps sending tokens that name a
// kid the key set lacks ({"alg":"RS256","kid":"junk"}), each a refresh of the key set on demand.
// They used to take the process's one refresh per 5 minutes (and make the next request wait a
// minute for it), so that after the identity provider rotated its key, valid tokens got 401 until
// the hourly refresh. Now the refresh on demand is rate-limited to a short period and never waited
// for: a token signed with the rotated key is accepted soon, attacker or not.
func TestJWKSRotationDespiteJunkKids(t *testing.T) {
	t.Parallel()
	oldKey, newKey, attackerKey := rsaKey(t), rsaKey(t), rsaKey(t)
	idp := newJWKSServer(t, rsaJWKS(t, map[string]*rsa.PrivateKey{"old": oldKey}, nil))
	a, err := newAuthenticator(t.Context(), jwksAPI(idp.URL), discard(), testJWKS())
	require.NoError(t, err)
	_, status := authenticate(a, "Authorization", "Bearer "+testkit.SignJWT(t, jwt.SigningMethodRS256, oldKey, "old", tokenClaims(nil)))
	require.Equal(t, 200, status, "the key set was fetched")

	junk := "Bearer " + testkit.SignJWT(t, jwt.SigningMethodRS256, attackerKey, "junk", tokenClaims(nil))
	_, status = authenticate(a, "Authorization", junk)
	require.Equal(t, 401, status)

	// The identity provider rotates its key while the attacker goes on.
	idp.set.Store(new(rsaJWKS(t, map[string]*rsa.PrivateKey{"new": newKey}, nil)))
	before := idp.fetches.Load()
	stop, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				_, _ = authenticate(a, "Authorization", junk)
			}
		}
	}()
	defer func() { close(stop); <-stopped }()

	valid := "Bearer " + testkit.SignJWT(t, jwt.SigningMethodRS256, newKey, "new", tokenClaims(nil))
	require.Eventually(t, func() bool {
		who, status := authenticate(a, "Authorization", valid)
		return status == 200 && who.Owner == "rita"
	}, 20*time.Second, 20*time.Millisecond, "a token signed with the rotated key stays refused while junk kids arrive")
	require.Greater(t, idp.fetches.Load(), before, "the rotated key set was fetched")
}

// TestJWKSRefreshNotSpentByHangUp: an unauthenticated attacker sends a token naming a junk kid
// and hangs up at once, as each refresh window opens. The refresh on demand ran under the
// request's context, so the hang-up cancelled it before anything was fetched while the window was
// spent: after the identity provider rotated its key, valid tokens got 401 until the background
// refresh (5 minutes). Now the refresh runs detached from the request: the rotated key set is
// fetched all the same, and a token signed with the new key is accepted.
func TestJWKSRefreshNotSpentByHangUp(t *testing.T) {
	t.Parallel()
	oldKey, newKey := rsaKey(t), rsaKey(t)
	idp := newJWKSServer(t, rsaJWKS(t, map[string]*rsa.PrivateKey{"old": oldKey}, nil))
	js := testJWKS()
	js.unknownKIDEvery = time.Hour // one refresh on demand in the whole test: the attacker's
	a, err := newAuthenticator(t.Context(), jwksAPI(idp.URL), discard(), js)
	require.NoError(t, err)
	idp.set.Store(new(rsaJWKS(t, map[string]*rsa.PrivateKey{"new": newKey}, nil)))
	before := idp.fetches.Load()

	hungUp, cancel := context.WithCancel(t.Context())
	cancel()
	req := httptest.NewRequestWithContext(hungUp, "GET", "/v1/objects", nil)
	req.Header.Set("Authorization", "Bearer "+testkit.SignJWT(t, jwt.SigningMethodRS256, rsaKey(t), "junk", tokenClaims(nil)))
	_, p := a.Authenticate(req)
	require.NotNil(t, p, "a junk kid is refused")
	require.Equal(t, 401, p.Status)

	valid := "Bearer " + testkit.SignJWT(t, jwt.SigningMethodRS256, newKey, "new", tokenClaims(nil))
	require.Eventually(t, func() bool {
		who, status := authenticate(a, "Authorization", valid)
		return status == 200 && who.Owner == "rita"
	}, 10*time.Second, 20*time.Millisecond, "the hang-up spent the refresh: the rotated key stays refused")
	require.Equal(t, before+1, idp.fetches.Load(), "the refresh the attacker took fetched the set once")
}

// TestJWKSHangingEndpointDoesNotHoldRequests: a token naming an unknown kid makes the request fetch
// the key set; when the JWKS endpoint accepts the connection and never answers, the request fails
// after the fetch's timeout instead of holding its connection for a minute: 503 (the key set could
// not be fetched, the token may be good), with Retry-After.
func TestJWKSHangingEndpointDoesNotHoldRequests(t *testing.T) {
	t.Parallel()
	key := rsaKey(t)
	set := rsaJWKS(t, map[string]*rsa.PrivateKey{"k1": key}, nil)
	var requests, hung atomic.Int64
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if requests.Add(1) == 1 {
			_, _ = w.Write(set) // New's first fetch
			return
		}
		hung.Add(1)
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) }) // runs first: the handler returns, then the server closes
	js := testJWKS()
	js.timeout = 300 * time.Millisecond
	a, err := newAuthenticator(t.Context(), jwksAPI(srv.URL), discard(), js)
	require.NoError(t, err)

	token := "Bearer " + testkit.SignJWT(t, jwt.SigningMethodRS256, rsaKey(t), "rotated", tokenClaims(nil))
	done := make(chan int, 1)
	go func() {
		_, status := authenticate(a, "Authorization", token)
		done <- status
	}()
	deadline, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	select {
	case status := <-done:
		require.Equal(t, 503, status)
	case <-deadline.Done():
		t.Fatal("the request is still held by the hanging JWKS endpoint")
	}
	require.Positive(t, hung.Load(), "the request fetched the key set")
}

// TestJWKSRedirectLeavingHTTPSRefused: the https JWKS endpoint redirects to plain http, where
// anyone on the path could serve another key set; the redirect is not followed. A redirect that
// stays on https is.
func TestJWKSRedirectLeavingHTTPSRefused(t *testing.T) {
	t.Parallel()
	key := rsaKey(t)
	set := rsaJWKS(t, map[string]*rsa.PrivateKey{"k1": key}, nil)
	var plainHits atomic.Int64
	plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		plainHits.Add(1)
		_, _ = w.Write(set)
	}))
	t.Cleanup(plain.Close)
	var downgrades atomic.Int64
	tlsSrv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/downgrade":
			downgrades.Add(1)
			http.Redirect(w, r, plain.URL+"/jwks", http.StatusFound)
		case "/moved":
			http.Redirect(w, r, "/jwks", http.StatusMovedPermanently)
		case "/jwks":
			_, _ = w.Write(set)
		}
	}))
	t.Cleanup(tlsSrv.Close)
	js := testJWKS()
	js.transport = tlsSrv.Client().Transport // trusts the test server's certificate
	token := "Bearer " + testkit.SignJWT(t, jwt.SigningMethodRS256, key, "k1", tokenClaims(nil))

	downgraded, err := newAuthenticator(t.Context(), jwksAPI(tlsSrv.URL+"/downgrade"), discard(), js)
	require.NoError(t, err)
	_, status := authenticate(downgraded, "Authorization", token)
	require.Equal(t, 503, status, "keys served over plain http after a redirect must not be trusted (the key set could not be fetched)")
	require.Positive(t, downgrades.Load(), "the key set was fetched")
	require.Zero(t, plainHits.Load(), "the redirect to plain http was not followed")

	moved, err := newAuthenticator(t.Context(), jwksAPI(tlsSrv.URL+"/moved"), discard(), js)
	require.NoError(t, err)
	_, status = authenticate(moved, "Authorization", token)
	require.Equal(t, 200, status, "a redirect staying on https is followed")
}

// TestJWKSRedirectRule: which redirects a fetch of the key set follows, by the configured URL.
func TestJWKSRedirectRule(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		configured, target string
		follow             bool
	}{
		{"https://idp.example.com/jwks", "https://keys.example.com/jwks", true},
		{"https://idp.example.com/jwks", "http://idp.example.com/jwks", false},
		{"https://idp.example.com/jwks", "http://127.0.0.1:8080/jwks", false},
		{"http://127.0.0.1:8080/jwks", "http://localhost:8081/jwks", true},
		{"http://127.0.0.1:8080/jwks", "https://idp.example.com/jwks", true},
		{"http://127.0.0.1:8080/jwks", "http://idp.example.com/jwks", false},
		{"http://localhost:8080/jwks", "ftp://localhost/jwks", false},
	} {
		client := jwksClient(c.configured, defaultJWKS, new(atomic.Bool))
		u, err := url.Parse(c.target)
		require.NoError(t, err)
		err = client.CheckRedirect(&http.Request{URL: u}, []*http.Request{{}})
		require.Equal(t, c.follow, err == nil, "%s → %s: %v", c.configured, c.target, err)
	}
}

// TestJWKSBodyCapped: a key set past 1 MiB (a compromised or broken endpoint streaming without
// end) fails the fetch instead of being read into memory.
func TestJWKSBodyCapped(t *testing.T) {
	t.Parallel()
	key := rsaKey(t)
	token := "Bearer " + testkit.SignJWT(t, jwt.SigningMethodRS256, key, "k1", tokenClaims(nil))
	keys := map[string]*rsa.PrivateKey{"k1": key}

	huge := newJWKSServer(t, rsaJWKS(t, keys, map[string]any{"padding": strings.Repeat("x", 1<<20)}))
	a, err := newAuthenticator(t.Context(), jwksAPI(huge.URL), discard(), testJWKS())
	require.NoError(t, err)
	_, status := authenticate(a, "Authorization", token)
	require.Equal(t, 503, status, "a key set past 1 MiB is not read (the key set could not be fetched)")
	require.Positive(t, huge.fetches.Load())

	small := newJWKSServer(t, rsaJWKS(t, keys, map[string]any{"padding": strings.Repeat("x", 1<<19)}))
	b, err := newAuthenticator(t.Context(), jwksAPI(small.URL), discard(), testJWKS())
	require.NoError(t, err)
	_, status = authenticate(b, "Authorization", token)
	require.Equal(t, 200, status, "a key set under the cap is read")
}

// authenticateProblem authenticates a request carrying token as a bearer token and returns the
// problem answered (nil: authenticated) and the headers problem.Write sends with it.
func authenticateProblem(t *testing.T, a *Authenticator, token string) (*problem.Problem, http.Header) {
	t.Helper()
	req := httptest.NewRequest("GET", "/v1/objects", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	_, p := a.Authenticate(req)
	if p == nil {
		return nil, nil
	}
	rec := httptest.NewRecorder()
	problem.Write(rec, *p)
	return p, rec.Header()
}

// acceptedEventually waits (up to 10 s) until a accepts token: the key set was fetched again.
func acceptedEventually(t *testing.T, a *Authenticator, token, msg string) {
	t.Helper()
	require.Eventually(t, func() bool {
		p, _ := authenticateProblem(t, a, token)
		return p == nil
	}, 10*time.Second, 10*time.Millisecond, msg)
}

// requireUnavailable checks a 503 auth-unavailable with a Retry-After of at least a second and at
// most limit, and no Bearer challenge (the credentials are not in question).
func requireUnavailable(t *testing.T, p *problem.Problem, h http.Header, limit time.Duration, msg string) {
	t.Helper()
	require.NotNil(t, p, msg)
	require.Equal(t, http.StatusServiceUnavailable, p.Status, "%s: %s", msg, p.Detail)
	require.Equal(t, problem.AuthUnavailable.Type(), p.Type, msg)
	require.GreaterOrEqual(t, p.RetryAfter, time.Second, msg)
	require.LessOrEqual(t, p.RetryAfter, limit, msg)
	require.NotEmpty(t, h.Get("Retry-After"), msg)
	require.Equal(t, strconv.FormatInt(problem.RetryAfterSeconds(p.RetryAfter), 10), h.Get("Retry-After"), msg)
	require.Empty(t, h.Get("WWW-Authenticate"), msg)
}

// TestJWKSOutageIsUnavailable: intake starts (or a replica rolls) while the identity provider's
// JWKS endpoint answers 503. Every correctly signed token used to get 401 until a fetch succeeded
// (the first fetch's failure was only logged, and the refresh for the token's kid failing read as
// "no such key"), which clients take for bad credentials: they log their users out instead of
// retrying. Now such a token gets 503 auth-unavailable with Retry-After while the key set cannot
// be fetched (whether the request's own refresh failed or found the refresh taken after a failed
// one), 200 once it can, and a kid the fetched set lacks still gets 401. A key rotated in during a
// later outage gets 503 too, while the keys fetched before keep working.
func TestJWKSOutageIsUnavailable(t *testing.T) {
	t.Parallel()
	key, rotated, stranger := rsaKey(t), rsaKey(t), rsaKey(t)
	idp := newJWKSServer(t, rsaJWKS(t, map[string]*rsa.PrivateKey{"k1": key}, nil))
	idp.down.Store(true)
	js := testJWKS()
	a, err := newAuthenticator(t.Context(), jwksAPI(idp.URL), discard(), js)
	require.NoError(t, err, "intake starts while the identity provider is down")
	require.Positive(t, idp.fetches.Load(), "the first fetch was tried")
	valid := testkit.SignJWT(t, jwt.SigningMethodRS256, key, "k1", tokenClaims(nil))
	noKID := testkit.SignJWT(t, jwt.SigningMethodRS256, key, "", tokenClaims(nil))
	refreshOpen := func(a *Authenticator) func() bool {
		return func() bool { return a.unknownKID.Tokens() >= 1 }
	}

	// The request's own refresh fails.
	require.Eventually(t, refreshOpen(a), 10*time.Second, 5*time.Millisecond)
	p, h := authenticateProblem(t, a, valid)
	requireUnavailable(t, p, h, time.Second, "down, the request's refresh failed")
	require.Eventually(t, refreshOpen(a), 10*time.Second, 5*time.Millisecond)
	p, h = authenticateProblem(t, a, noKID)
	requireUnavailable(t, p, h, time.Second, "down, no key ever fetched, a token naming no kid")

	// The refresh is taken (once an hour here) after a failed one: 503 at once, Retry-After until
	// the next refresh may run.
	hourly := js
	hourly.unknownKIDEvery = time.Hour
	b, err := newAuthenticator(t.Context(), jwksAPI(idp.URL), discard(), hourly)
	require.NoError(t, err)
	p, h = authenticateProblem(t, b, valid)
	requireUnavailable(t, p, h, time.Hour, "down, the request's refresh failed")
	fetches := idp.fetches.Load()
	p, h = authenticateProblem(t, b, valid)
	requireUnavailable(t, p, h, time.Hour, "down, the refresh taken after a failed one")
	require.Greater(t, p.RetryAfter, time.Minute, "Retry-After is when the next refresh may run, not the least second")
	require.Equal(t, fetches, idp.fetches.Load(), "the refresh was taken: no fetch")

	// Back: the next refresh fetches the set and the token is accepted.
	idp.down.Store(false)
	acceptedEventually(t, a, valid, "the token is accepted once the key set is fetched")
	who, status := authenticate(a, "Authorization", "Bearer "+valid)
	require.Equal(t, 200, status)
	require.Equal(t, "rita", who.Owner)
	_, status = authenticate(a, "Authorization", "Bearer "+noKID)
	require.Equal(t, 200, status, "a token naming no kid, verified with the set's keys")

	// Up: a kid the set lacks is refused, whether the request refreshes the set or finds the
	// refresh taken after a successful one.
	unknown := "Bearer " + testkit.SignJWT(t, jwt.SigningMethodRS256, stranger, "nope", tokenClaims(nil))
	require.Eventually(t, refreshOpen(a), 10*time.Second, 5*time.Millisecond)
	_, status = authenticate(a, "Authorization", unknown)
	require.Equal(t, 401, status, "up: a kid not in the fetched set")
	_, status = authenticate(a, "Authorization", unknown)
	require.Equal(t, 401, status, "up, the refresh taken: a kid not in the fetched set")
	forged := "Bearer " + testkit.SignJWT(t, jwt.SigningMethodRS256, stranger, "k1", tokenClaims(nil))
	_, status = authenticate(a, "Authorization", forged)
	require.Equal(t, 401, status, "a bad signature")

	// Down again, and the identity provider rotated in a key: tokens of the key fetched before are
	// accepted, the rotated key's get 503 until the set can be fetched.
	idp.set.Store(new(rsaJWKS(t, map[string]*rsa.PrivateKey{"k1": key, "k2": rotated}, nil)))
	idp.down.Store(true)
	_, status = authenticate(a, "Authorization", "Bearer "+valid)
	require.Equal(t, 200, status, "a key fetched before the outage")
	newer := testkit.SignJWT(t, jwt.SigningMethodRS256, rotated, "k2", tokenClaims(nil))
	require.Eventually(t, refreshOpen(a), 10*time.Second, 5*time.Millisecond)
	p, h = authenticateProblem(t, a, newer)
	requireUnavailable(t, p, h, time.Second, "down, a rotated kid")
	idp.down.Store(false)
	acceptedEventually(t, a, newer, "the rotated key is accepted once the key set is fetched")
}

// TestJWKSBackgroundRefreshEndsTheOutage: once the background refresh fetches the key set again
// after an outage, a token naming a kid the set lacks is refused (401) even when the unknown-kid
// refresh is taken: the outage is over, and a junk kid is junk. (The background refresh reports
// only its failures; before fetchSeen, only a successful unknown-kid refresh ended the outage, and
// junk kids were answered 503, "retry later", until the next one.)
func TestJWKSBackgroundRefreshEndsTheOutage(t *testing.T) {
	t.Parallel()
	key, stranger := rsaKey(t), rsaKey(t)
	idp := newJWKSServer(t, rsaJWKS(t, map[string]*rsa.PrivateKey{"k1": key}, nil))
	idp.down.Store(true)
	js := testJWKS()
	js.refresh, js.unknownKIDEvery = 100*time.Millisecond, time.Hour
	a, err := newAuthenticator(t.Context(), jwksAPI(idp.URL), discard(), js)
	require.NoError(t, err)
	valid := testkit.SignJWT(t, jwt.SigningMethodRS256, key, "k1", tokenClaims(nil))
	junk := testkit.SignJWT(t, jwt.SigningMethodRS256, stranger, "junk", tokenClaims(nil))

	// Down: the one unknown-kid refresh of the hour is spent, and fails.
	p, h := authenticateProblem(t, a, valid)
	requireUnavailable(t, p, h, time.Hour, "down")

	// Back: the background refresh fetches the set; the token of its key is accepted without an
	// unknown-kid refresh (taken for the hour).
	idp.down.Store(false)
	acceptedEventually(t, a, valid, "the background refresh fetched the key set")
	p, _ = authenticateProblem(t, a, junk)
	require.NotNil(t, p)
	require.Equal(t, http.StatusUnauthorized, p.Status, "a kid the fetched set lacks, the refresh taken: %s", p.Detail)

	// Down again: the background refresh fails, and a kid the set lacks is an outage again.
	idp.down.Store(true)
	fetches := idp.fetches.Load()
	require.Eventually(t, func() bool { return idp.fetches.Load() > fetches+1 }, 10*time.Second, 20*time.Millisecond)
	p, h = authenticateProblem(t, a, junk)
	requireUnavailable(t, p, h, time.Hour, "down again: the background refresh failed")
	require.Contains(t, p.Detail, `the key the token names (kid "junk") is not known yet`)
}
