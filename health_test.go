package realtimeauth_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/realtimeauth/realtimeauth"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// health reads the health endpoint, and checks that its HTTP status
// follows the body: 503 when unhealthy or draining, 200 otherwise.
func health(t *testing.T, h http.Handler) map[string]any {
	t.Helper()
	w := serveReq(h, req{method: http.MethodGet, path: healthU, headers: map[string]string{"Origin": "https://anywhere.example"}})
	assertSecurityHeaders(t, w.Header(), false)
	m := jsonBody(t, w.Body.Bytes())
	want := http.StatusOK
	if m["status"] == "unhealthy" || m["draining"] == true {
		want = http.StatusServiceUnavailable
	}
	require.Equal(t, want, w.Code, w.Body.String())
	return m
}

func metric(m map[string]any, name string) any { return m["metrics"].(map[string]any)[name] }

func service(m map[string]any, name string) string {
	return m["services"].(map[string]any)[name].(map[string]any)["status"].(string)
}

func TestHealthShapeAndCounts(t *testing.T) {
	r := newRig(t, realtimeauth.WithLimits(realtimeauth.Limits{MaxRefreshes: 10, MinRefreshInterval: -1}))
	r.clock.Advance(1500 * time.Millisecond)
	m := health(t, r.h)
	assert.Equal(t, "healthy", m["status"])
	assert.Equal(t, float64(r.clock.Now().UnixMilli()), m["timestamp"])
	assert.Equal(t, float64(1500), m["uptime"])
	for _, s := range []string{"openaiApi", "rateLimit", "sessionTracking"} {
		assert.Equal(t, "operational", service(m, s), s)
	}
	assert.Equal(t, map[string]any{
		"totalRequests": float64(0), "activeSessions": float64(0), "totalRefreshes": float64(0),
		"errorRate": float64(0), "averageResponseTime": float64(0), "activeCalls": float64(0),
	}, m["metrics"])

	// Mints take 200ms of the fake clock.
	r.mint.Func = func(_ context.Context, q realtimeauth.MintRequest) (realtimeauth.Token, error) {
		r.clock.Advance(200 * time.Millisecond)
		return realtimeauth.Token{Value: "ek_x", ExpiresAt: r.clock.Now().Add(q.TTL)}, nil
	}
	a := issueToken(t, r.h, defaultRemote)["sessionId"].(string)
	issueToken(t, r.h, "198.51.100.2:1")
	for range 3 {
		require.Equal(t, 200, serveReq(r.h, req{path: refrURL, body: refreshBody(a)}).Code)
	}
	serveReq(r.h, req{path: refrURL, body: refreshBody("nope")})                                  // 400, no mint
	serveReq(r.h, req{method: http.MethodGet, path: healthU})                                     // not counted
	serveReq(r.h, req{path: base + "/elsewhere"})                                                 // not counted
	serveReq(r.h, req{path: tokenURL, headers: map[string]string{"Origin": "https://x.example"}}) // 403
	m = health(t, r.h)
	assert.Equal(t, float64(7), metric(m, "totalRequests"))
	assert.Equal(t, float64(3), metric(m, "totalRefreshes"))
	assert.Equal(t, float64(2), metric(m, "activeSessions"))
	assert.Equal(t, float64(0), metric(m, "errorRate"))
	assert.InDelta(t, 5*200.0/7, metric(m, "averageResponseTime"), 0.001)
	lat := m["services"].(map[string]any)["openaiApi"].(map[string]any)["latency"]
	assert.Equal(t, float64(200), lat)

	st := r.h.Stats()
	assert.Equal(t, int64(7), st.TotalRequests)
	assert.Equal(t, 200*time.Millisecond, st.OpenAI.Latency)

	// HEAD answers without a body.
	w := serveReq(r.h, req{method: http.MethodHead, path: healthU})
	assert.Equal(t, http.StatusOK, w.Code)
	assert.Empty(t, w.Body.Bytes())
}

// TestHealthErrorRateWindow: errorRate is the 5xx share over the last five
// minutes; older requests fall out as the clock moves.
func TestHealthErrorRateWindow(t *testing.T) {
	r := newRig(t)
	issueToken(t, r.h, "198.51.100.1:1")
	serveReq(r.h, req{path: refrURL}) // 400: not an error of ours
	r.mint.SetError(&realtimeauth.UpstreamError{StatusCode: 500})
	serveReq(r.h, req{path: tokenURL, remote: "198.51.100.2:1"})
	r.mint.SetError(nil)
	issueToken(t, r.h, "198.51.100.3:1")
	m := health(t, r.h)
	assert.Equal(t, 0.25, metric(m, "errorRate"))
	assert.Equal(t, "degraded", service(m, "openaiApi"), "a failure in the window")
	assert.Equal(t, "degraded", m["status"])

	r.clock.Advance(4*time.Minute + 50*time.Second)
	issueToken(t, r.h, "198.51.100.4:1")
	assert.Equal(t, 0.2, metric(health(t, r.h), "errorRate"))

	r.clock.Advance(10 * time.Second) // the first four are now five minutes old
	m = health(t, r.h)
	assert.Equal(t, float64(0), metric(m, "errorRate"))
	assert.Equal(t, float64(5), metric(m, "totalRequests"), "totals are not windowed")
	assert.Equal(t, "operational", service(m, "openaiApi"))
	assert.Equal(t, "healthy", m["status"])
}

// TestHealthUpstreamStatus: operational, degraded, down, from the mints'
// outcomes and latency.
func TestHealthUpstreamStatus(t *testing.T) {
	r := newRig(t, realtimeauth.WithLimits(realtimeauth.Limits{Sessions: realtimeauth.Rate{N: 100, Per: time.Minute}}), realtimeauth.WithAbuseGuard(nil))
	for range 3 {
		issueToken(t, r.h, defaultRemote)
	}
	assert.Equal(t, "operational", service(health(t, r.h), "openaiApi"))

	r.mint.SetError(&realtimeauth.UpstreamError{StatusCode: 502})
	serveReq(r.h, req{path: tokenURL})
	m := health(t, r.h)
	assert.Equal(t, "degraded", service(m, "openaiApi"))
	assert.Equal(t, "degraded", m["status"])
	serveReq(r.h, req{path: tokenURL})
	serveReq(r.h, req{path: tokenURL})
	m = health(t, r.h)
	assert.Equal(t, "down", service(m, "openaiApi"), "three failures in a row")
	assert.Equal(t, "unhealthy", m["status"])

	r.mint.SetError(nil)
	issueToken(t, r.h, defaultRemote)
	m = health(t, r.h)
	assert.Equal(t, "degraded", service(m, "openaiApi"), "3 of 7 mints failed in the window")
	r.clock.Advance(5 * time.Minute)
	issueToken(t, r.h, defaultRemote)
	assert.Equal(t, "operational", service(health(t, r.h), "openaiApi"))

	// Slow mints degrade it too.
	r.mint.Func = func(_ context.Context, q realtimeauth.MintRequest) (realtimeauth.Token, error) {
		r.clock.Advance(5 * time.Second)
		return realtimeauth.Token{Value: "ek_slow", ExpiresAt: r.clock.Now().Add(q.TTL)}, nil
	}
	for range 3 {
		issueToken(t, r.h, defaultRemote)
	}
	assert.Equal(t, "degraded", service(health(t, r.h), "openaiApi"))
}

// countStore wraps a SessionStore, counting its Count calls; failing
// makes Count fail.
type countStore struct {
	realtimeauth.SessionStore
	counts  atomic.Int64
	failing atomic.Bool
	last    atomic.Int64 // the last Count's now, Unix ns
}

func (s *countStore) Count(ctx context.Context, now time.Time) (int, error) {
	s.counts.Add(1)
	s.last.Store(now.UnixNano())
	if s.failing.Load() {
		return 0, errBackend
	}
	return s.SessionStore.Count(ctx, now)
}

// TestHealthStoreDown: a store that cannot count makes health unhealthy
// (503): sessionTracking and rateLimit, which lives in the store, are down,
// and activeSessions is null, not a reassuring 0.
func TestHealthStoreDown(t *testing.T) {
	store := &countStore{SessionStore: realtimeauth.NewMemoryStore()}
	r := newRig(t, realtimeauth.WithSessionStore(store))
	issueToken(t, r.h, defaultRemote)
	assert.Equal(t, float64(1), metric(health(t, r.h), "activeSessions"))
	store.failing.Store(true)
	r.clock.Advance(time.Second)
	m := health(t, r.h) // 503, checked by health
	assert.Equal(t, "unhealthy", m["status"])
	assert.Equal(t, "down", service(m, "sessionTracking"))
	assert.Equal(t, "down", service(m, "rateLimit"))
	assert.Equal(t, "operational", service(m, "openaiApi"))
	assert.Contains(t, m["metrics"], "activeSessions")
	assert.Nil(t, metric(m, "activeSessions"))
	st := r.h.Stats()
	assert.Equal(t, -1, st.ActiveSessions)
	assert.Equal(t, "down", st.RateLimit.Status)
	r.clock.Advance(time.Second)
	health(t, r.h)
	store.failing.Store(false)
	r.clock.Advance(time.Second)
	// Recovered: the failures are still in the window, but it is no
	// longer down.
	m = health(t, r.h)
	assert.Equal(t, "degraded", m["status"])
	assert.Equal(t, "degraded", service(m, "sessionTracking"))
	assert.Equal(t, "degraded", service(m, "rateLimit"))
	assert.Equal(t, float64(1), metric(m, "activeSessions"))
	r.clock.Advance(5 * time.Minute)
	assert.Equal(t, "healthy", health(t, r.h)["status"])
}

// TestHealthAfterClose: health keeps answering once the handler is closed,
// with 503 and the same body plus "draining": true.
func TestHealthAfterClose(t *testing.T) {
	r := newRig(t)
	open := health(t, r.h)
	require.NoError(t, r.h.Close())
	m := health(t, r.h) // 503, checked by health
	assert.Equal(t, "healthy", m["status"], "the backends are fine")
	assert.Equal(t, true, m["draining"])
	delete(m, "draining")
	for _, k := range []string{"timestamp", "uptime"} {
		delete(m, k)
		delete(open, k)
	}
	assert.Equal(t, open, m, "same body")
	assert.True(t, r.h.Stats().Draining)
}

// TestHealthSnapshot: a flood of health requests reads the store once per
// second of the clock, however many arrive at once.
func TestHealthSnapshot(t *testing.T) {
	store := &countStore{SessionStore: realtimeauth.NewMemoryStore()}
	r := newRig(t, realtimeauth.WithSessionStore(store))
	issueToken(t, r.h, defaultRemote)
	var wg sync.WaitGroup
	for i := range 1000 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if i%10 == 0 {
				r.clock.Advance(time.Millisecond) // 100 ms in all: within the second
			}
			w := serveReq(r.h, req{method: http.MethodGet, path: healthU})
			assert.Equal(t, http.StatusOK, w.Code)
			assert.Contains(t, w.Body.String(), `"activeSessions":1`)
		}()
	}
	wg.Wait()
	assert.Equal(t, int64(1), store.counts.Load(), "1,000 health requests, one Count")

	issueToken(t, r.h, "198.51.100.9:1")
	r.clock.Set(time.Unix(0, store.last.Load()).Add(999 * time.Millisecond))
	assert.Equal(t, float64(1), metric(health(t, r.h), "activeSessions"), "at most a second old")
	assert.Equal(t, int64(1), store.counts.Load())
	r.clock.Advance(time.Millisecond)
	assert.Equal(t, float64(2), metric(health(t, r.h), "activeSessions"))
	assert.Equal(t, int64(2), store.counts.Load())

	// A clock that steps back does not keep serving a count from the future.
	r.clock.Advance(-time.Minute)
	health(t, r.h)
	assert.Equal(t, int64(3), store.counts.Load())
	// Stats is the programmatic view: a fresh count each call.
	r.h.Stats()
	assert.Equal(t, int64(4), store.counts.Load())
}

// TestHealthStoreNearlyFull: a store holding more than 90% of its capacity
// makes health degraded, before it refuses anyone.
func TestHealthStoreNearlyFull(t *testing.T) {
	r := newRig(t, realtimeauth.WithLimits(realtimeauth.Limits{
		MaxSessions: 10,
		Sessions:    realtimeauth.Rate{N: 100, Per: time.Minute},
	}))
	for range 9 {
		issueToken(t, r.h, defaultRemote)
	}
	m := health(t, r.h)
	assert.Equal(t, "healthy", m["status"], "90%% is not over 90%%")
	assert.Equal(t, 10, r.h.Stats().MaxSessions)
	issueToken(t, r.h, defaultRemote)
	r.clock.Advance(time.Second)
	m = health(t, r.h)
	assert.Equal(t, "degraded", m["status"])
	assert.Equal(t, "degraded", service(m, "sessionTracking"))
	assert.Equal(t, float64(10), metric(m, "activeSessions"))
}

// TestReadEndpointsCORS: health and compatibility answer an allowed
// origin's GET with CORS headers and its preflight with 204; another
// origin's GET is answered without them (so its page cannot read it), its
// preflight with 403, neither a strike nor an event.
func TestReadEndpointsCORS(t *testing.T) {
	ev := &events{}
	r := newRig(t, realtimeauth.WithEventHook(ev.Hook), realtimeauth.WithAbuseGuard(mustGuard(1, time.Minute, time.Minute)))
	for _, path := range []string{healthU, base + "/compatibility"} {
		t.Run(path, func(t *testing.T) {
			w := serveReq(r.h, req{method: http.MethodGet, path: path, headers: map[string]string{"Origin": origin}})
			assert.Equal(t, http.StatusOK, w.Code)
			assert.Equal(t, origin, w.Header().Get("Access-Control-Allow-Origin"))
			assert.Contains(t, w.Header().Values("Vary"), "Origin")

			w = serveReq(r.h, req{method: http.MethodGet, path: path, headers: map[string]string{"Origin": "https://evil.example"}})
			assert.Equal(t, http.StatusOK, w.Code)
			assert.Empty(t, w.Header().Get("Access-Control-Allow-Origin"))
			assert.Contains(t, w.Header().Values("Vary"), "Origin")

			// The original client's GET carries Content-Type: a preflight.
			pre := map[string]string{"Origin": origin, "Access-Control-Request-Method": "GET",
				"Access-Control-Request-Headers": "content-type"}
			w = serveReq(r.h, req{method: http.MethodOptions, path: path, headers: pre})
			assert.Equal(t, http.StatusNoContent, w.Code)
			assert.Equal(t, origin, w.Header().Get("Access-Control-Allow-Origin"))
			assert.Contains(t, w.Header().Get("Access-Control-Allow-Methods"), "GET")
			assert.Equal(t, "content-type", strings.ToLower(w.Header().Get("Access-Control-Allow-Headers")))

			pre["Origin"] = "https://evil.example"
			w = serveReq(r.h, req{method: http.MethodOptions, path: path, headers: pre})
			assertError(t, w, http.StatusForbidden, "origin_not_allowed", 0)
			assert.Empty(t, w.Header().Get("Access-Control-Allow-Origin"))

			w = serveReq(r.h, req{method: http.MethodOptions, path: path})
			assert.Equal(t, http.StatusNoContent, w.Code)
			assert.Equal(t, "GET, HEAD, OPTIONS", w.Header().Get("Allow"))

			w = serveReq(r.h, req{method: http.MethodDelete, path: path})
			assertError(t, w, http.StatusMethodNotAllowed, "method_not_allowed", 0)
			assert.Equal(t, "GET, HEAD, OPTIONS", w.Header().Get("Allow"))
		})
	}
	assert.Empty(t, ev.All(), "no event, no strike")
	issueToken(t, r.h, defaultRemote) // one strike would have blocked it
}

// TestEventLatency: token_issued, token_refreshed and a failed mint's
// upstream_error carry how long the Minter took, on the handler's clock;
// the other events carry none.
func TestEventLatency(t *testing.T) {
	ev := &events{}
	r := newRig(t, realtimeauth.WithEventHook(ev.Hook), realtimeauth.WithLimits(realtimeauth.Limits{
		MaxRefreshes:       10,
		MinRefreshInterval: -1,
	}))
	fail := false
	r.mint.Func = func(_ context.Context, q realtimeauth.MintRequest) (realtimeauth.Token, error) {
		r.clock.Advance(300 * time.Millisecond)
		if fail {
			r.clock.Advance(200 * time.Millisecond)
			return realtimeauth.Token{}, &realtimeauth.UpstreamError{StatusCode: 500}
		}
		return realtimeauth.Token{Value: "ek_x", ExpiresAt: r.clock.Now().Add(q.TTL)}, nil
	}
	id := issueToken(t, r.h, defaultRemote)["sessionId"].(string)
	require.Equal(t, 200, serveReq(r.h, req{path: refrURL, body: refreshBody(id)}).Code)
	serveReq(r.h, req{path: refrURL, body: "{}"})
	fail = true
	require.Equal(t, 502, serveReq(r.h, req{path: tokenURL}).Code)
	got := map[realtimeauth.EventName]time.Duration{}
	for _, e := range ev.All() {
		got[e.Name] = e.Latency
	}
	assert.Equal(t, map[realtimeauth.EventName]time.Duration{
		realtimeauth.EventTokenIssued:    300 * time.Millisecond,
		realtimeauth.EventTokenRefreshed: 300 * time.Millisecond,
		realtimeauth.EventInvalidRequest: 0,
		realtimeauth.EventUpstreamError:  500 * time.Millisecond,
	}, got)
}

// blockStore's Count waits for release.
type blockStore struct {
	realtimeauth.SessionStore
	entered chan struct{}
	release chan struct{}
}

func (s *blockStore) Count(ctx context.Context, now time.Time) (int, error) {
	s.entered <- struct{}{}
	<-s.release
	return s.SessionStore.Count(ctx, now)
}

// TestHealthSnapshotWaiters: requests arriving while a count is under way
// wait for it instead of counting again; one that leaves meanwhile gets
// its own context's error, and the first caller leaving does not fail the
// count the others wait for.
func TestHealthSnapshotWaiters(t *testing.T) {
	store := &blockStore{SessionStore: realtimeauth.NewMemoryStore(), entered: make(chan struct{}, 2), release: make(chan struct{})}
	r := newRig(t, realtimeauth.WithSessionStore(store))
	firstCtx, leave := context.WithCancel(context.Background())
	first := make(chan int, 1)
	go func() {
		w := httptest.NewRecorder()
		r.h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, healthU, nil).WithContext(firstCtx))
		first <- w.Code
	}()
	<-store.entered
	leave() // the first caller goes away: its count carries on

	gone, cancel := context.WithCancel(context.Background())
	cancel()
	w := httptest.NewRecorder()
	r.h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, healthU, nil).WithContext(gone))
	assert.Equal(t, http.StatusServiceUnavailable, w.Code, "a waiter that left is not told all is well")

	waiter := make(chan *httptest.ResponseRecorder, 1)
	go func() {
		w := httptest.NewRecorder()
		r.h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, healthU, nil))
		waiter <- w
	}()
	close(store.release)
	assert.Equal(t, http.StatusOK, <-first)
	w = <-waiter
	assert.Equal(t, http.StatusOK, w.Code)
	assert.Contains(t, w.Body.String(), `"sessionTracking":{"status":"operational"}`)
	assert.Len(t, store.entered, 0, "one Count for all three")
}

// TestStatsUpstreamBudget: Stats says how much of the upstream budget is
// left, for a saturation gauge.
func TestStatsUpstreamBudget(t *testing.T) {
	r := newRig(t)
	assert.Zero(t, r.h.Stats().UpstreamBurst, "no budget")
	r = newRig(t, realtimeauth.WithLimits(realtimeauth.Limits{UpstreamRate: 1, UpstreamBurst: 3}))
	st := r.h.Stats()
	assert.Equal(t, 3, st.UpstreamBurst)
	assert.Equal(t, 3.0, st.UpstreamTokens)
	issueToken(t, r.h, "198.51.100.1:1")
	issueToken(t, r.h, "198.51.100.2:1")
	issueToken(t, r.h, "198.51.100.3:1")
	assert.Equal(t, 0.0, r.h.Stats().UpstreamTokens, "saturated")
	assertError(t, serveReq(r.h, req{path: tokenURL, remote: "198.51.100.4:1"}), 503, "upstream_busy", 1)
	r.clock.Advance(1500 * time.Millisecond)
	assert.InDelta(t, 1.5, r.h.Stats().UpstreamTokens, 1e-9)
}
