package testkit

import (
	"crypto/rand"
	"encoding/base64"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/intakehq/intake/worker/tasks"
)

// WebhookSecret returns a fresh Standard Webhooks secret ("whsec_" + base64 of 32 random bytes).
func WebhookSecret(t testing.TB) string {
	t.Helper()
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		t.Fatalf("testkit: %v", err)
	}
	return "whsec_" + base64.StdEncoding.EncodeToString(key)
}

// Webhook is what a WebhookReceiver saw of one notification (one webhook-id).
type Webhook struct {
	// ID is the webhook-id header.
	ID string
	// Verdict is the body, decoded.
	Verdict tasks.UploadVerdict
	// Attempts counts the requests carrying the id; Delivered those answered 2xx.
	Attempts, Delivered int
	// DeliveredAt is when the first 2xx answer was given.
	DeliveredAt time.Time
}

// WebhookReceiver is a real HTTP receiver (an httptest server on 127.0.0.1) that verifies every
// request with the Standard Webhooks specification's own Go library and records the notifications
// by webhook-id. By default it answers 204; Answer changes that.
type WebhookReceiver struct {
	// URL is where to post.
	URL string

	t     testing.TB
	wh    *standardwebhooks.Webhook
	srv   *httptest.Server
	mu    sync.Mutex
	cond  *sync.Cond
	byID  map[string]*Webhook
	order []string
	bad   int
	// delivered counts the notifications answered 2xx at least once.
	delivered int
	answer    func(v tasks.UploadVerdict, attempt int) int
}

// NewWebhookReceiver starts a receiver checking signatures made with secret; it stops when the
// test ends.
func NewWebhookReceiver(t testing.TB, secret string) *WebhookReceiver {
	t.Helper()
	wh, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		t.Fatalf("testkit: webhook secret: %v", err)
	}
	r := &WebhookReceiver{t: t, wh: wh, byID: map[string]*Webhook{}}
	r.cond = sync.NewCond(&r.mu)
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	r.URL = r.srv.URL + "/hooks/intake"
	t.Cleanup(r.srv.Close)
	return r
}

// Answer sets the status the receiver gives to attempt (1, 2, ...) of the notification id.
func (r *WebhookReceiver) Answer(f func(id string, attempt int) int) {
	r.AnswerVerdict(func(v tasks.UploadVerdict, attempt int) int { return f(v.ID, attempt) })
}

// AnswerVerdict is Answer with the notification decoded.
func (r *WebhookReceiver) AnswerVerdict(f func(v tasks.UploadVerdict, attempt int) int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.answer = f
}

func (r *WebhookReceiver) serve(w http.ResponseWriter, req *http.Request) {
	body, err := io.ReadAll(req.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if err := r.wh.Verify(body, req.Header); err != nil {
		r.mu.Lock()
		r.bad++
		r.mu.Unlock()
		r.t.Errorf("testkit: webhook with a bad signature: %v", err)
		http.Error(w, err.Error(), http.StatusUnauthorized)
		return
	}
	v, err := tasks.ParseUploadVerdict(body)
	id := req.Header.Get("webhook-id")
	if err != nil || v.ID != id {
		r.t.Errorf("testkit: webhook body %s (webhook-id %s): %v", body, id, err)
		http.Error(w, "bad body", http.StatusBadRequest)
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	got := r.byID[id]
	if got == nil {
		got = &Webhook{ID: id, Verdict: v}
		r.byID[id] = got
		r.order = append(r.order, id)
	}
	got.Attempts++
	code := http.StatusNoContent
	if r.answer != nil {
		code = r.answer(v, got.Attempts)
	}
	if code >= 200 && code < 300 {
		if got.Delivered == 0 {
			got.DeliveredAt = time.Now()
			r.delivered++
		}
		got.Delivered++
	}
	r.cond.Broadcast()
	w.WriteHeader(code)
}

// Received returns every notification seen, in the order of their first request.
func (r *WebhookReceiver) Received() []Webhook {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]Webhook, 0, len(r.order))
	for _, id := range r.order {
		out = append(out, *r.byID[id])
	}
	return out
}

// WaitDelivered waits until n notifications were answered 2xx (or timeout: the test fails) and
// returns every notification seen.
func (r *WebhookReceiver) WaitDelivered(n int, timeout time.Duration) []Webhook {
	r.t.Helper()
	return r.waitFor(timeout, func() bool { return r.delivered >= n }, "%d delivered notifications", n)
}

// WaitAttempts waits until n distinct notifications were attempted at least once.
func (r *WebhookReceiver) WaitAttempts(n int, timeout time.Duration) []Webhook {
	r.t.Helper()
	return r.waitFor(timeout, func() bool { return len(r.byID) >= n }, "%d attempted notifications", n)
}

func (r *WebhookReceiver) waitFor(timeout time.Duration, done func() bool, what string, args ...any) []Webhook {
	r.t.Helper()
	deadline := time.Now().Add(timeout)
	stop := time.AfterFunc(timeout, func() {
		r.mu.Lock()
		r.cond.Broadcast()
		r.mu.Unlock()
	})
	defer stop.Stop()
	r.mu.Lock()
	for !done() && time.Now().Before(deadline) {
		r.cond.Wait()
	}
	ok := done()
	r.mu.Unlock()
	if !ok {
		r.t.Fatalf("testkit: webhook receiver: no "+what+" within %s; got %+v", append(args, timeout, r.Received())...)
	}
	return r.Received()
}

// BadSignatures counts the requests whose signature did not verify.
func (r *WebhookReceiver) BadSignatures() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.bad
}

// ByType returns the notifications seen of one event type.
func ByType(ws []Webhook, typ string) []Webhook {
	return slices.DeleteFunc(slices.Clone(ws), func(w Webhook) bool { return w.Verdict.Type != typ })
}
