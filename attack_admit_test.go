package realtimeauth_test

// Findings of the security review (branch attack) on the admission path,
// each landed with its fix: every test states a limit the design promises.

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/realtimeauth/realtimeauth"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/time/rate"
)

// TestAttackEvictedSessionsBlockASharedAddress: a session closed by the
// per-client cap answers 404 session_not_found on its next refresh, and
// that 404 is a strike. Eleven users behind one NAT address (one more than
// Limits.MaxSessionsPerClient's 10) each keep one tab open, refresh it every
// 30 s, and ask for a new token when their session is gone, as the
// browser client does. Their own evictions strike their address, and after
// ten the whole office is blocked for 15 minutes. Nobody misbehaved:
// a 122-bit session ID cannot be guessed, so a 404 is no sign of abuse,
// and an evicted session should not earn a strike.
//
// The office's new sessions are given room (Limits.Sessions 60 a minute):
// eleven tabs round-robin over a cap of ten evict each other on every
// round, 22 new sessions a minute, and under the default 10 a minute their
// rate_limited refusals, which are strikes, block the address on their own
// (a separate question: see the cap and Limits.Sessions in docs/limits.md).
func TestAttackEvictedSessionsBlockASharedAddress(t *testing.T) {
	ev := &events{}
	// The default abuse guard: 10 strikes in 10 minutes block for 15.
	r := newRig(t, realtimeauth.WithEventHook(ev.Hook), realtimeauth.WithLimits(realtimeauth.Limits{
		MaxRefreshes:       1000,
		MinRefreshInterval: 10 * time.Second,
		Sessions:           realtimeauth.Rate{N: 60, Per: time.Minute},
	}))
	const nat = "198.51.100.7:1"
	tabs := make([]string, 11)
	for i := range tabs {
		if i == 10 {
			r.clock.Advance(time.Minute) // past the 10 new sessions a minute
		}
		tabs[i] = newSessionAt(t, r, nat)
	}
	blocked := 0
	for step := 0; step < 20 && blocked == 0; step++ { // ten minutes
		r.clock.Advance(30 * time.Second)
		for i, id := range tabs {
			w := serveReq(r.h, req{path: refrURL, remote: nat, body: refreshBody(id)})
			switch w.Code {
			case http.StatusOK:
			case http.StatusNotFound: // evicted: the tab starts a new session
				w = serveReq(r.h, req{path: tokenURL, remote: nat})
				if w.Code == http.StatusOK {
					tabs[i] = jsonBody(t, w.Body.Bytes())["sessionId"].(string)
				}
			}
			if w.Code == http.StatusForbidden {
				blocked++
			}
		}
	}
	assert.Zero(t, ev.Count(realtimeauth.EventClientBlocked), "%d evictions of the office's own sessions", ev.Count(realtimeauth.EventSessionEvicted))
	assert.Zero(t, blocked, "requests refused as blocked")
}

// openGate holds the store's Open of the next token request inside the
// store until released, as a slow store round trip (Redis under load)
// would.
type openGate struct {
	realtimeauth.SessionStore
	mu     sync.Mutex
	armed  bool
	inside chan struct{}
	gate   chan struct{}
}

func (s *openGate) arm() {
	s.mu.Lock()
	s.armed, s.inside, s.gate = true, make(chan struct{}), make(chan struct{})
	s.mu.Unlock()
}

func (s *openGate) Open(ctx context.Context, q realtimeauth.OpenRequest) (realtimeauth.Session, []realtimeauth.Session, error) {
	s.mu.Lock()
	held, inside, gate := s.armed, s.inside, s.gate
	s.armed = false
	s.mu.Unlock()
	if held {
		close(inside)
		<-gate
	}
	return s.SessionStore.Open(ctx, q)
}

// TestAttackSlowStoreRefillsTheBudget: the upstream budget decides with the
// time read before the store operation. A request whose store operation
// takes Δ hands x/time/rate a time Δ in the past; when it is admitted, the
// limiter's last time goes back by Δ, and the next request refills Δ of
// budget a second time. Under an upstream budget of 1/min, burst 2, in the two
// minutes from t0 at most 2 + 2 = 4 mints can be paid for; here 6 are.
func TestAttackSlowStoreRefillsTheBudget(t *testing.T) {
	store := &openGate{SessionStore: realtimeauth.NewMemoryStore()}
	r := newRig(t, realtimeauth.WithLimits(realtimeauth.Limits{
		UpstreamRate:  rate.Every(time.Minute),
		UpstreamBurst: 2,
	}), realtimeauth.WithSessionStore(store),
		realtimeauth.WithAbuseGuard(nil))
	ip := func(i int) string { return fmt.Sprintf("192.0.2.%d:1", i) }
	// Half the burst, at t0: one mint is left, so that the next request
	// passes the budget's look before the store (which takes nothing).
	require.Equal(t, http.StatusOK, serveReq(r.h, req{path: tokenURL, remote: ip(0)}).Code)
	// A request whose store round trip is slow, decided at t0.
	store.arm()
	slow := make(chan *httptest.ResponseRecorder)
	go func() { slow <- serveReq(r.h, req{path: tokenURL, remote: ip(10)}) }()
	<-store.inside
	r.clock.Advance(2 * time.Minute)
	ok := 0
	if serveReq(r.h, req{path: tokenURL, remote: ip(11)}).Code == http.StatusOK {
		ok++
	}
	close(store.gate)
	if (<-slow).Code == http.StatusOK {
		ok++
	}
	for i := 12; i < 20; i++ {
		if serveReq(r.h, req{path: tokenURL, remote: ip(i)}).Code == http.StatusOK {
			ok++
		}
	}
	assert.LessOrEqual(t, r.mint.Calls(), 4, "mints in [t0, t0+2m] under 1/min with burst 2 (%d after the first)", ok)
}

// TestAttackDrainedBudgetStrikesOutTheVictim: an attacker with many
// addresses takes every mint of the upstream budget as it refills (each
// address well within its own allowances). A legitimate client that
// retries its token request when told (Retry-After of upstream_busy) never
// gets a token, yet each refusal is charged to its allowances, which the
// budget's refusal does not give back; soon it is refused as rate_limited,
// which is a strike, and ten of those block it for 15 minutes. A client
// that was refused for want of budget should not pay for it: the undo
// should give the allowances back (or upstream_busy should not lead to a
// strike).
func TestAttackDrainedBudgetStrikesOutTheVictim(t *testing.T) {
	ev := &events{}
	r := newRig(t, realtimeauth.WithEventHook(ev.Hook), realtimeauth.WithLimits(realtimeauth.Limits{
		UpstreamRate:  rate.Every(time.Second),
		UpstreamBurst: 1,
	}))
	const victim = "203.0.113.50:1"
	attacker := 0
	next := time.Duration(0)
	for end := r.clock.Now().Add(10 * time.Minute); r.clock.Now().Before(end); {
		// Each second the attacker is first at the refill, from one of
		// its 300 addresses (12 a minute each).
		attacker++
		serveReq(r.h, req{path: tokenURL, remote: fmt.Sprintf("198.18.%d.%d:1", attacker%300/250, attacker%300%250+1)})
		if next <= 0 {
			w := serveReq(r.h, req{path: tokenURL, remote: victim})
			require.NotEqual(t, http.StatusOK, w.Code)
			if w.Code == http.StatusForbidden {
				break
			}
			s, _ := time.ParseDuration(w.Header().Get("Retry-After") + "s")
			next = max(s, time.Second)
		}
		r.clock.Advance(time.Second)
		next -= time.Second
	}
	limited, blocked := 0, 0
	for _, e := range ev.All() {
		switch {
		case e.ClientIP != "203.0.113.50":
		case e.Name == realtimeauth.EventRateLimitExceeded:
			limited++
		case e.Name == realtimeauth.EventClientBlocked:
			blocked++
		}
	}
	assert.Zero(t, blocked, "the victim, never given a token, blocked after %d rate_limited answers", limited)
}

// pausingClock is a fake clock whose next reading, once armed, is taken
// and then held until released: a goroutine descheduled between reading
// the clock and using what it read.
type pausingClock struct {
	mu      sync.Mutex
	now     func() time.Time
	armed   bool
	read    chan struct{}
	release chan struct{}
}

func (c *pausingClock) Now() time.Time {
	t := c.now()
	c.mu.Lock()
	held, read, release := c.armed, c.read, c.release
	c.armed = false
	c.mu.Unlock()
	if held {
		close(read)
		<-release
	}
	return t
}

func (c *pausingClock) arm() {
	c.mu.Lock()
	c.armed, c.read, c.release = true, make(chan struct{}), make(chan struct{})
	c.mu.Unlock()
}

// TestAttackHealthSnapshotRereadOnConcurrentSkew: health answers from a
// snapshot at most a second old, but a request whose clock reading is
// older than the snapshot (it read the clock, then another request counted
// first) reads the store again, and moves the snapshot's time back. Under a
// flood, every such inversion is one more store read: here two in half a
// second. A reading before the snapshot by less than its age should be
// served the snapshot (only a large step back needs a new count).
func TestAttackHealthSnapshotRereadOnConcurrentSkew(t *testing.T) {
	store := &countStore{SessionStore: realtimeauth.NewMemoryStore()}
	r := newRig(t, realtimeauth.WithSessionStore(store))
	pc := &pausingClock{now: r.clock.Now}
	h, err := realtimeauth.New(r.mint, realtimeauth.WithClock(pc.Now), realtimeauth.WithSessionStore(store),
		realtimeauth.WithLogger(quietLogger()))
	require.NoError(t, err)
	t.Cleanup(func() { _ = h.Close() })

	pc.arm()
	done := make(chan int)
	go func() { done <- serveReq(h, req{method: http.MethodGet, path: healthU}).Code }()
	<-pc.read // the slow request has read t0
	r.clock.Advance(500 * time.Millisecond)
	assert.Equal(t, http.StatusOK, serveReq(h, req{method: http.MethodGet, path: healthU}).Code)
	close(pc.release)
	assert.Equal(t, http.StatusOK, <-done)
	assert.Equal(t, int64(1), store.counts.Load(), "store reads for two health requests 0.5 s apart")
}

// TestAttackFailedMintEvictsLiveSessions: a token request from a client at
// its cap of live sessions first closes the client's least recently used
// session, then mints; when the mint fails (or the upstream budget is
// out), undo deletes the new session but cannot bring the closed one back.
// A user with ten tabs whose eleventh fails during an upstream outage has
// lost a live tab's session for nothing (its next refresh is a 404, which
// is a strike); in a full store the same undo closes another client's
// session. A failed mint should leave the sessions as they were (evict only
// once the mint has succeeded, or restore what was evicted).
func TestAttackFailedMintEvictsLiveSessions(t *testing.T) {
	ev := &events{}
	r := newRig(t, realtimeauth.WithEventHook(ev.Hook), realtimeauth.WithAbuseGuard(nil))
	for range 10 {
		openSession(t, r)
	}
	r.clock.Advance(75 * time.Second) // past the new-session allowance's five sub-windows
	r.mint.SetError(&realtimeauth.UpstreamError{StatusCode: 500, Message: "down"})
	for range 10 {
		assertError(t, serveReq(r.h, req{path: tokenURL}), 502, "upstream_error", 0)
		r.clock.Advance(5 * time.Second)
	}
	assert.Equal(t, 10, r.h.Stats().ActiveSessions, "live sessions after ten failed mints (%d evicted)",
		ev.Count(realtimeauth.EventSessionEvicted))
}
