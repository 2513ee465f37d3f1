package api

import (
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/intakehq/intake/internal/multipart"
	"github.com/intakehq/intake/internal/problem"
	"github.com/intakehq/intake/internal/store/dbq"
)

// The budgets of complete requests' bodies held in memory at once on a replica. A complete's body
// may be maxCompleteBody (2.5 MB) and is read whole before it is decoded (into a buffer up to
// twice its size), so a tenant sending many large bodies slowly (each connection may take
// the listener's ReadTimeout, 60 s) held some 4 MB of heap per connection: 140 of them pushed a
// replica past its pod's 512 MiB limit, and every tenant's requests died with it. A real part
// list is some 50 bytes a part (0.5 MB for 10,000 parts): an owner's budget holds 30 such
// completes at once, or thousands of ordinary ones.
const (
	// completeBodyOwnerBudget bounds the bytes of complete bodies one owner's requests hold (429
	// too-many-completes past it).
	completeBodyOwnerBudget = 16 << 20
	// completeBodyTotalBudget bounds those of every owner (503 server-busy past it): several
	// owners' worth, and well below a replica's memory.
	completeBodyTotalBudget = 64 << 20
)

var (
	probTooManyCompletes = problem.Kind{Slug: "too-many-completes", Title: "Too many complete requests in flight", Status: http.StatusTooManyRequests}
	probServerBusy       = problem.Kind{Slug: "server-busy", Title: "Server busy", Status: http.StatusServiceUnavailable}
)

// bodyBudget charges the bytes of request bodies read to their owner and to the replica, refusing a
// read that would take either past its limit. The zero value is not usable: see newBodyBudget.
type bodyBudget struct {
	owner, total int64 // the limits

	mu   sync.Mutex
	held map[string]int64 // the owners holding bytes, no more
	all  int64
	// refused counts the reads refused (intake_api_complete_bodies_refused_total); nil in tests.
	refused func()
}

func newBodyBudget(owner, total int64, refused func()) *bodyBudget {
	return &bodyBudget{owner: owner, total: total, held: map[string]int64{}, refused: refused}
}

// charge returns body counting what is read from it against owner's budget and the replica's: a
// read past either fails with a *Problem (too-many-completes, or server-busy), which
// decodeJSONLimit answers as it is, and refused is called (before the answer is written). release
// gives the bytes back, once the request no longer holds what it decoded from them.
func (b *bodyBudget) charge(owner string, body io.ReadCloser, refused func()) (charged io.ReadCloser, release func()) {
	c := &chargedBody{ReadCloser: body, b: b, owner: owner, refused: refused}
	return c, c.release
}

// take charges n bytes to owner, or refuses them (nothing charged).
func (b *bodyBudget) take(owner string, n int64) *Problem {
	b.mu.Lock()
	defer b.mu.Unlock()
	var p *Problem
	switch {
	case b.held[owner]+n > b.owner:
		p = problemf(probTooManyCompletes, "complete requests of yours hold %d MiB of part lists on this replica, the limit: retry shortly, or send fewer at once", b.owner>>20)
	case b.all+n > b.total:
		p = problemf(probServerBusy, "this replica holds %d MiB of part lists of complete requests, its limit: retry shortly", b.total>>20)
	default:
		b.held[owner] += n
		b.all += n
		return nil
	}
	p.RetryAfter = time.Second
	if b.refused != nil {
		b.refused()
	}
	return p
}

// give returns n bytes of owner's.
func (b *bodyBudget) give(owner string, n int64) {
	if n == 0 {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.all -= n
	if b.held[owner] -= n; b.held[owner] <= 0 {
		delete(b.held, owner)
	}
}

// chargedBody is a request body whose reads are charged to its owner (bodyBudget.charge).
type chargedBody struct {
	io.ReadCloser
	b       *bodyBudget
	owner   string
	refused func()
	n       int64 // charged so far
	once    sync.Once
}

// Read implements io.Reader: what it read is charged, or the read fails with the budget's refusal.
func (c *chargedBody) Read(p []byte) (int, error) {
	n, err := c.ReadCloser.Read(p)
	if n > 0 {
		if prob := c.b.take(c.owner, int64(n)); prob != nil {
			c.refused()
			return 0, prob
		}
		c.n += int64(n)
	}
	return n, err
}

func (c *chargedBody) release() { c.once.Do(func() { c.b.give(c.owner, c.n) }) }

// admitComplete is the start of a complete request (either route family's, load its upload
// lookup): an upload that is unknown, or refused for good, is answered at once, its body unread
// (before, a body of 2.5 MB naming any id was read whole first); an upload that may complete, or
// whose completion may be retried (completedBefore), gets its body charged to the owner's budget
// (s.completeBodies) until release. The handler loads the upload again once the body is read: it
// may have taken the request's whole budget of time.
//
// A body refused for the budget is answered on a connection then closed (Connection: close): else
// net/http would read up to 256 KB more of it before answering, waiting on a client that stalls.
func (s *Server) admitComplete(w http.ResponseWriter, r *http.Request, owner string, load func(*http.Request, string) (dbq.Upload, *Problem)) (release func(), p *Problem) {
	if u, p := load(r, owner); p != nil && !(u.Method == MethodMultipart && u.Status == multipart.StatusCompleted) {
		return func() {}, p
	}
	body, release := s.completeBodies.charge(owner, r.Body, func() { w.Header().Set("Connection", "close") })
	r.Body = body
	return release, nil
}
