package realtimeauth_test

// The attacks of issue 10, each driven through the whole handler on a fake
// clock, with the minter counting what they cost.

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/realtimeauth/realtimeauth"
	"github.com/realtimeauth/realtimeauth/realtimeauthtest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/time/rate"
)

// slowBody is a request body that arrives one byte at a time over d of fake
// time, the clock moving on before each byte.
type slowBody struct {
	clock *realtimeauthtest.Clock
	body  string
	read  int
	d     time.Duration
}

func (b *slowBody) Read(p []byte) (int, error) {
	if b.read == len(b.body) {
		return 0, io.EOF
	}
	if len(p) == 0 {
		return 0, nil
	}
	n := time.Duration(len(b.body))
	i := time.Duration(b.read)
	b.clock.Advance(b.d*(i+1)/n - b.d*i/n)
	p[0] = b.body[b.read]
	b.read++
	return 1, nil
}

// serveSlow sends q with its body trickling in over d of fake time.
func serveSlow(r *rig, q req, d time.Duration) *httptest.ResponseRecorder {
	hr := q.build()
	hr.Body = io.NopCloser(&slowBody{clock: r.clock, body: q.body, d: d})
	hr.ContentLength = -1
	w := httptest.NewRecorder()
	r.h.ServeHTTP(w, hr)
	return w
}

// TestSlowBodyDecidesAfterTheBody: a body that takes its time does not make
// the budget, the allowances or the refresh interval decide with the time
// the request began.
func TestSlowBodyDecidesAfterTheBody(t *testing.T) {
	t.Run("upstream budget", func(t *testing.T) {
		r := newRig(t, realtimeauth.WithLimits(realtimeauth.Limits{UpstreamRate: rate.Every(time.Minute), UpstreamBurst: 1}))
		issueToken(t, r.h, "192.0.2.1:1") // the budget's one mint
		r.clock.Advance(30 * time.Second)
		// Decided when the body has arrived, a minute after the first mint:
		// the budget has refilled.
		w := serveSlow(r, req{path: tokenURL, remote: "192.0.2.2:1", body: `{"a":"bcdefgh"}`}, 30*time.Second)
		require.Equal(t, http.StatusOK, w.Code, w.Body.String())
		assertError(t, serveReq(r.h, req{path: tokenURL, remote: "192.0.2.3:1"}), 503, "upstream_busy", 60)
		assert.Equal(t, 2, r.mint.Calls())
	})
	t.Run("allowance", func(t *testing.T) {
		r := newRig(t, realtimeauth.WithLimits(realtimeauth.Limits{Sessions: realtimeauth.Rate{N: 1, Per: time.Minute}}))
		issueToken(t, r.h, defaultRemote)
		r.clock.Advance(50 * time.Second)
		w := serveSlow(r, req{path: tokenURL, body: `{"a":"bcdefgh"}`}, 10*time.Second)
		require.Equal(t, http.StatusOK, w.Code, "a minute after the first: %s", w.Body.String())
		assertError(t, serveReq(r.h, req{path: tokenURL}), 429, "rate_limited", 60)
	})
	t.Run("refresh interval", func(t *testing.T) {
		r := newRig(t)
		id := openSession(t, r)
		r.clock.Advance(10 * time.Second)
		w := serveSlow(r, req{path: refrURL, body: refreshBody(id)}, 9*time.Second)
		require.Equal(t, http.StatusOK, w.Code, w.Body.String())
		assert.Equal(t, float64(t0.Add(19*time.Second).UnixMilli()), jsonBody(t, w.Body.Bytes())["serverTime"])
		// The token was issued when the body had arrived: the next refresh
		// waits the interval from then, not from when the slow one began.
		r.clock.Advance(time.Second)
		assertError(t, serveReq(r.h, req{path: refrURL, body: refreshBody(id)}), 429, "refresh_too_soon", 9)
		assert.Equal(t, 2, r.mint.Calls())
	})
}

// mintClock records when each mint happened, on the rig's fake clock.
type mintClock struct {
	mu    sync.Mutex
	times []time.Time
}

func recordMints(r *rig) *mintClock {
	mc := &mintClock{}
	r.mint.Func = func(_ context.Context, q realtimeauth.MintRequest) (realtimeauth.Token, error) {
		now := r.clock.Now()
		mc.mu.Lock()
		mc.times = append(mc.times, now)
		mc.mu.Unlock()
		return realtimeauth.Token{Value: "ek_x", ExpiresAt: now.Add(q.TTL)}, nil
	}
	return mc
}

// mostInAnyWindow is the most mints in any half-open interval of length w.
func (mc *mintClock) mostInAnyWindow(w time.Duration) int {
	mc.mu.Lock()
	defer mc.mu.Unlock()
	ts := slices.Clone(mc.times)
	slices.SortFunc(ts, func(a, b time.Time) int { return a.Compare(b) })
	most := 0
	for i := range ts {
		j, _ := slices.BinarySearchFunc(ts, ts[i].Add(w), func(a, b time.Time) int { return a.Compare(b) })
		most = max(most, j-i)
	}
	return most
}

// inMinutes counts the mints in each whole minute from t0.
func (mc *mintClock) inMinutes() []int {
	mc.mu.Lock()
	defer mc.mu.Unlock()
	var out []int
	for _, t := range mc.times {
		m := int(t.Sub(t0) / time.Minute)
		for len(out) <= m {
			out = append(out, 0)
		}
		out[m]++
	}
	return out
}

// greedy is an attacker that, every second for d, refreshes each of its
// sessions as soon as interval (the handler's minimum refresh interval)
// allows and asks for a new session, from each of clients (remote
// addresses), as subject (none when ""). It ignores every refusal; the
// abuse guard is off in its rigs, so that only the allowances bound it.
func greedy(t *testing.T, r *rig, clients []string, subject string, d, interval time.Duration) {
	t.Helper()
	type held struct {
		id, remote string
		last       time.Time
	}
	var sessions []held
	hdr := map[string]string{}
	if subject != "" {
		hdr = as(subject)
	}
	for end := r.clock.Now().Add(d); r.clock.Now().Before(end); r.clock.Advance(time.Second) {
		now := r.clock.Now()
		kept := sessions[:0]
		for _, s := range sessions {
			if now.Sub(s.last) >= interval {
				w := serveReq(r.h, req{path: refrURL, remote: s.remote, headers: hdr, body: refreshBody(s.id)})
				if w.Code == http.StatusNotFound {
					continue // evicted
				}
				if w.Code == http.StatusOK {
					s.last = now
				}
			}
			kept = append(kept, s)
		}
		sessions = kept
		for _, c := range clients {
			w := serveReq(r.h, req{path: tokenURL, remote: c, headers: hdr})
			if w.Code == http.StatusOK {
				sessions = append(sessions, held{jsonBody(t, w.Body.Bytes())["sessionId"].(string), c, now})
			}
		}
	}
}

// TestRefreshLoopIsCharged: one address opening sessions at its limit and
// refreshing every one of them at the minimum interval is held to its mint
// allowance, 30 per minute, refreshes included.
func TestRefreshLoopIsCharged(t *testing.T) {
	r := newRig(t, realtimeauth.WithAbuseGuard(nil))
	mc := recordMints(r)
	var ids []string
	for step := range 60 { // ten minutes, every 10 s
		for _, id := range ids {
			serveReq(r.h, req{path: refrURL, body: refreshBody(id)})
		}
		if step%6 < 2 { // 5 new sessions in each of the first two steps of a minute
			for range 5 {
				if w := serveReq(r.h, req{path: tokenURL}); w.Code == http.StatusOK {
					ids = append(ids, jsonBody(t, w.Body.Bytes())["sessionId"].(string))
				}
			}
		}
		r.clock.Advance(10 * time.Second)
	}
	perMinute := mc.inMinutes()
	require.Len(t, perMinute, 10)
	for m, n := range perMinute {
		assert.LessOrEqual(t, n, 30, "minute %d", m)
	}
	assert.LessOrEqual(t, r.mint.Calls(), 300, "ten minutes of the mint allowance")
	assert.LessOrEqual(t, mc.mostInAnyWindow(time.Minute), 37)
}

// TestRefreshTooSoonKeepsTheBudget: refresh_too_soon is decided by the
// store before any upstream budget is taken, so an attacker flooding it,
// even with a refresh in flight at every moment, never takes a mint from a
// legitimate client.
func TestRefreshTooSoonKeepsTheBudget(t *testing.T) {
	store := &gatedStore{SessionStore: realtimeauth.NewMemoryStore()}
	r := newRig(t, realtimeauth.WithLimits(realtimeauth.Limits{
		UpstreamRate:  rate.Every(time.Second),
		UpstreamBurst: 1,
	}), realtimeauth.WithSessionStore(store))
	attacker := "198.51.100.66:1"
	id := newSessionAt(t, r, attacker)
	r.clock.Advance(time.Second)

	// One of the attacker's refreshes is inside the store while a
	// legitimate client asks for a token.
	store.hold(id)
	done := make(chan *httptest.ResponseRecorder)
	go func() { done <- serveReq(r.h, req{path: refrURL, remote: attacker, body: refreshBody(id)}) }()
	store.waitHeld()
	assert.Equal(t, http.StatusOK, serveReq(r.h, req{path: tokenURL, remote: "203.0.113.10:1"}).Code)
	store.release()
	assertError(t, <-done, 429, "refresh_too_soon", 9)

	// And a flood of them leaves every second's mint to the legitimate one.
	for i := range 5 {
		r.clock.Advance(time.Second)
		for range 200 {
			assertError(t, serveReq(r.h, req{path: refrURL, remote: attacker, body: refreshBody(id)}), 429, "refresh_too_soon", -1)
		}
		assert.Equal(t, http.StatusOK, serveReq(r.h, req{path: tokenURL, remote: fmt.Sprintf("203.0.113.%d:1", 20+i)}).Code)
	}
	assert.Equal(t, 7, r.mint.Calls(), "the attacker's session, then the legitimate client's six")
}

// gatedStore holds a Refresh of one session inside the store until
// released.
type gatedStore struct {
	realtimeauth.SessionStore
	mu     sync.Mutex
	id     string
	inside chan struct{}
	gate   chan struct{}
}

func (s *gatedStore) hold(id string) {
	s.mu.Lock()
	s.id, s.inside, s.gate = id, make(chan struct{}), make(chan struct{})
	s.mu.Unlock()
}

func (s *gatedStore) waitHeld() { <-s.inside }

func (s *gatedStore) release() {
	s.mu.Lock()
	close(s.gate)
	s.id = ""
	s.mu.Unlock()
}

func (s *gatedStore) Refresh(ctx context.Context, q realtimeauth.RefreshRequest) (realtimeauth.Session, error) {
	s.mu.Lock()
	held, inside, gate := q.ID == s.id, s.inside, s.gate
	s.mu.Unlock()
	if held {
		close(inside)
		<-gate
	}
	return s.SessionStore.Refresh(ctx, q)
}

// TestManySessionsFromOneAddress: one address holds at most 10 live
// sessions; each new one closes its least recently used, whose refresh is
// then 404 session_not_found, while the ones it uses keep working.
func TestManySessionsFromOneAddress(t *testing.T) {
	ev := &events{}
	r := newRig(t, realtimeauth.WithEventHook(ev.Hook), realtimeauth.WithLimits(realtimeauth.Limits{
		MaxRefreshes:       120,
		MinRefreshInterval: -1,
	}), realtimeauth.WithAbuseGuard(nil))
	var ids []string
	for batch, n := range []int{10, 10, 9} {
		for range n {
			ids = append(ids, openSession(t, r))
		}
		if batch == 1 {
			// The second batch's first session is used again: now the most
			// recent, it outlives the rest of its batch.
			r.clock.Advance(time.Second)
			require.Equal(t, http.StatusOK, serveReq(r.h, req{path: refrURL, body: refreshBody(ids[10])}).Code)
		}
		r.clock.Advance(75 * time.Second) // past the rule's 5/4 bound on new sessions
	}
	assert.Equal(t, 10, r.h.Stats().ActiveSessions)
	live := append([]string{ids[10]}, ids[20:]...)
	var evicted []string
	for _, e := range ev.Named(realtimeauth.EventSessionEvicted) {
		evicted = append(evicted, e.SessionID)
	}
	slices.Sort(evicted)
	want := append(slices.Clone(ids[:10]), ids[11:20]...)
	slices.Sort(want)
	assert.Equal(t, want, evicted, "the least recently used, never the one in use")
	for _, id := range ids {
		w := serveReq(r.h, req{path: refrURL, body: refreshBody(id)})
		if slices.Contains(live, id) {
			assert.Equal(t, http.StatusOK, w.Code, w.Body.String())
		} else {
			assertError(t, w, 404, "session_not_found", 0)
		}
	}
}

// TestFullStoreStaysFair: addresses that fill the store (127.0.0.x, 10
// sessions each) cannot lock anyone out: a newcomer's session closes the
// heaviest client's least recently used one, and the store never holds
// more than its cap.
func TestFullStoreStaysFair(t *testing.T) {
	const capacity = 100
	r := newRig(t, realtimeauth.WithLimits(realtimeauth.Limits{MaxSessions: capacity}))
	codes := map[int]int{}
	for x := 1; x <= 30; x++ {
		for range 10 {
			codes[serveReq(r.h, req{path: tokenURL, remote: fmt.Sprintf("127.0.0.%d:1", x)}).Code]++
		}
		assert.LessOrEqual(t, r.h.Stats().ActiveSessions, capacity)
	}
	// A client among the heaviest of a full store is refused, the others
	// take a session from the heaviest.
	assert.Equal(t, []int{200, 429}, slices.Sorted(maps.Keys(codes)), "%v", codes)
	assert.Equal(t, codes[200], r.mint.Calls())
	assert.Equal(t, capacity, r.h.Stats().ActiveSessions)
	w := serveReq(r.h, req{path: tokenURL, remote: "127.0.0.250:1"})
	require.Equal(t, http.StatusOK, w.Code, "the newcomer gets a token: %s", w.Body.String())
	id := jsonBody(t, w.Body.Bytes())["sessionId"].(string)
	r.clock.Advance(10 * time.Second)
	assert.Equal(t, http.StatusOK, serveReq(r.h, req{path: refrURL, remote: "127.0.0.250:1", body: refreshBody(id)}).Code)
	assert.Equal(t, capacity, r.h.Stats().ActiveSessions)
}

// TestOneSlash48IsCappedByThePrefixShare: the 65,536 /64s of one /48 each
// ask for a token at once: the /48 counts as 16 clients, so 160 are
// minted; another /48 is not affected.
func TestOneSlash48IsCappedByThePrefixShare(t *testing.T) {
	r := newRig(t, realtimeauth.WithAbuseGuard(nil))
	codes := map[int]int{}
	for i := range 1 << 16 {
		w := serveReq(r.h, req{path: tokenURL, remote: fmt.Sprintf("[2001:db8:1:%x::1]:443", i)})
		codes[w.Code]++
	}
	assert.Equal(t, map[int]int{200: 160, 429: 1<<16 - 160}, codes)
	assert.Equal(t, 160, r.mint.Calls())
	assert.Equal(t, http.StatusOK, serveReq(r.h, req{path: tokenURL, remote: "[2001:db8:2::1]:443"}).Code)
}

// TestRefusedOriginIsNotAStrike: any page the victim visits can make its
// browser send no-cors requests with the page's Origin; refusing them must
// not block the victim's address.
func TestRefusedOriginIsNotAStrike(t *testing.T) {
	ev := &events{}
	r := newRig(t, realtimeauth.WithEventHook(ev.Hook)) // the default abuse guard: 10 strikes block
	evil := map[string]string{"Origin": "https://evil.example.net"}
	for range 20 {
		assertError(t, serveReq(r.h, req{path: tokenURL, headers: evil}), 403, "origin_not_allowed", 0)
		assertError(t, serveReq(r.h, preflightReq(tokenURL, "https://evil.example.net")), 403, "origin_not_allowed", 0)
	}
	assert.Equal(t, 40, ev.Count(realtimeauth.EventOriginRejected))
	assert.Zero(t, ev.Count(realtimeauth.EventClientBlocked))
	w := serveReq(r.h, req{path: tokenURL, headers: map[string]string{"Origin": origin}})
	assert.Equal(t, http.StatusOK, w.Code, w.Body.String())
}

// TestLogFloodIsSuppressed: 10,000 refusals that are not strikes, from one
// client, in one minute, write at most 10 lines; the next minute writes at
// most 10 more and one line that counts the rest; the hook sees them all.
func TestLogFloodIsSuppressed(t *testing.T) {
	ev := &events{}
	logs := &syncBuffer{}
	r := newRig(t, realtimeauth.WithEventHook(ev.Hook), realtimeauth.WithLogger(newTextLogger(logs)))
	evil := map[string]string{"Origin": "https://evil.example.net"}
	lines := func() int { return strings.Count(logs.String(), "\n") }
	for minute := range 3 {
		before := lines()
		for range 10_000 {
			serveReq(r.h, req{path: tokenURL, headers: evil})
		}
		// Another client has an allowance of its own.
		serveReq(r.h, req{path: tokenURL, remote: "192.0.2.99:1", headers: evil})
		written := lines() - before
		if minute == 0 {
			assert.Equal(t, 10+1, written)
		} else {
			assert.Equal(t, 10+1+1, written, "10 lines, the other client's, and the summary of the minute before")
			assert.Contains(t, logs.String(), "suppressed=9990 clients=1")
		}
		r.clock.Advance(time.Minute)
	}
	assert.Equal(t, 30_003, ev.Count(realtimeauth.EventOriginRejected), "the hook sees every event")
}

// TestLogFloodFromManyAddressesIsSuppressed: refusals from 5,000 IPv4
// addresses, and from 5,000 /64s of one IPv6 /48, write at most
// logsPerKindPerMinute (100) lines of their kind a minute and one summary,
// however many addresses send them; the /64s share their /48's allowance of
// 10; the hook still sees every event.
func TestLogFloodFromManyAddressesIsSuppressed(t *testing.T) {
	for _, tc := range []struct {
		name   string
		remote func(i int) string
		max    int
	}{
		{"ipv4", func(i int) string { return fmt.Sprintf("10.%d.%d.1:1", i/250, i%250) }, 100},
		{"one /48", func(i int) string { return fmt.Sprintf("[2001:db8:7:%x::1]:1", i) }, 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ev := &events{}
			logs := &syncBuffer{}
			r := newRig(t, realtimeauth.WithEventHook(ev.Hook), realtimeauth.WithLogger(newTextLogger(logs)))
			evil := map[string]string{"Origin": "https://evil.example.net"}
			lines := func() int { return strings.Count(logs.String(), "\n") }
			for minute := range 2 {
				before := lines()
				for i := range 5_000 {
					serveReq(r.h, req{path: tokenURL, remote: tc.remote(i), headers: evil})
				}
				written := lines() - before
				if minute == 0 {
					assert.Equal(t, tc.max, written)
				} else {
					assert.Equal(t, tc.max+1, written, "the allowance and the summary of the minute before")
					assert.Contains(t, logs.String(), fmt.Sprintf("suppressed=%d", 5_000-tc.max))
				}
				r.clock.Advance(time.Minute)
			}
			assert.Equal(t, 10_000, ev.Count(realtimeauth.EventOriginRejected), "the hook sees every event")
		})
	}
}

// TestDefaultLoggerLeavesOutInfo: without WithLogger, the default logger
// gets warnings and errors but no line per issued token.
func TestDefaultLoggerLeavesOutInfo(t *testing.T) {
	logs := &syncBuffer{}
	prev := slog.Default()
	slog.SetDefault(newTextLogger(logs))
	t.Cleanup(func() { slog.SetDefault(prev) })
	clock := realtimeauthtest.NewClock(t0)
	h, err := realtimeauth.New(&realtimeauthtest.Minter{Now: clock.Now}, realtimeauth.WithClock(clock.Now))
	require.NoError(t, err)
	id := issueToken(t, h, defaultRemote)["sessionId"].(string)
	clock.Advance(10 * time.Second)
	require.Equal(t, http.StatusOK, serveReq(h, req{path: refrURL, body: refreshBody(id)}).Code)
	assert.NotContains(t, logs.String(), "token_issued")
	assert.NotContains(t, logs.String(), "token_refreshed")
	serveReq(h, req{path: tokenURL, headers: map[string]string{"Origin": "https://evil.example.net"}})
	assert.Contains(t, logs.String(), "event=origin_rejected")
}
