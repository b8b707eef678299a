package redisstore_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/realtimeauth/realtimeauth"
	"github.com/realtimeauth/realtimeauth/realtimeauthtest"
	"github.com/realtimeauth/realtimeauth/redisstore"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// instance is one server of a fleet sharing a Redis: its own handler, its
// own Redis client, behind its own httptest server.
type instance struct {
	h      *realtimeauth.Handler
	url    string
	rt     *roundTrips
	events *realtimeauthtest.Events
}

type fleetConfig struct {
	limit          int
	strikes        int
	maxRefreshes   int
	minInterval    time.Duration
	failOpen       bool
	memoryStore    bool // keep sessions and abuse state in memory
	requestTimeout time.Duration
}

// newInstance starts one server on rdb, reading clock.
func newInstance(t *testing.T, rdb redis.UniversalClient, rt *roundTrips, clock *realtimeauthtest.Clock,
	minter realtimeauth.Minter, fc fleetConfig) *instance {
	t.Helper()
	var limOpts []redisstore.Option
	if clock != nil {
		limOpts = append(limOpts, redisstore.WithClock(clock.Now))
	}
	if fc.failOpen {
		limOpts = append(limOpts, redisstore.WithFailOpen(slog.New(slog.NewTextHandler(io.Discard, nil))))
	}
	lim, err := redisstore.NewLimiter(rdb, fc.limit, time.Minute, limOpts...)
	require.NoError(t, err)
	events := &realtimeauthtest.Events{}
	opts := []realtimeauth.Option{
		realtimeauth.WithLimiter(lim),
		realtimeauth.WithRefreshPolicy(fc.maxRefreshes, fc.minInterval),
		realtimeauth.WithEventHook(events.Hook),
		realtimeauth.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))),
	}
	if clock != nil {
		opts = append(opts, realtimeauth.WithClock(clock.Now))
	}
	if fc.memoryStore {
		opts = append(opts, realtimeauth.WithAbuseGuard(nil))
	} else {
		store, err := redisstore.NewSessionStore(rdb)
		require.NoError(t, err)
		guard, err := redisstore.NewAbuseGuard(rdb, fc.strikes, 10*time.Minute, 15*time.Minute)
		require.NoError(t, err)
		opts = append(opts, realtimeauth.WithSessionStore(store), realtimeauth.WithAbuseGuard(guard))
	}
	h, err := realtimeauth.New(minter, opts...)
	require.NoError(t, err)
	t.Cleanup(func() { _ = h.Close() })
	var handler http.Handler = h
	if fc.requestTimeout > 0 {
		// The host application's request deadline.
		handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			ctx, cancel := context.WithTimeout(r.Context(), fc.requestTimeout)
			defer cancel()
			h.ServeHTTP(w, r.WithContext(ctx))
		})
	}
	srv := httptest.NewServer(handler)
	t.Cleanup(srv.Close)
	return &instance{h: h, url: srv.URL, rt: rt, events: events}
}

// newFleet starts n instances sharing one fresh redis-server, each with its
// own client.
func newFleet(t *testing.T, n int, clock *realtimeauthtest.Clock, fc fleetConfig) ([]*instance, *realtimeauthtest.Minter) {
	t.Helper()
	srv, _, _ := startRedis(t)
	minter := &realtimeauthtest.Minter{}
	if clock != nil {
		minter.Now = clock.Now
	}
	var fleet []*instance
	for range n {
		rdb, rt := newClient(t, srv)
		fleet = append(fleet, newInstance(t, rdb, rt, clock, minter, fc))
	}
	return fleet, minter
}

type reply struct {
	status    int
	code      string
	sessionID string
}

func post(t *testing.T, url, body string) reply {
	t.Helper()
	// Called from many goroutines: assert, not require.
	res, err := http.Post(url, "application/json", strings.NewReader(body))
	if !assert.NoError(t, err) {
		return reply{}
	}
	defer res.Body.Close()
	var v struct {
		Code      string `json:"code"`
		SessionID string `json:"sessionId"`
	}
	assert.NoError(t, json.NewDecoder(res.Body).Decode(&v))
	return reply{status: res.StatusCode, code: v.Code, sessionID: v.SessionID}
}

func (in *instance) token(t *testing.T) reply {
	return post(t, in.url+"/api/voice-agent/token", "")
}

func (in *instance) refresh(t *testing.T, sessionID string) reply {
	return post(t, in.url+"/api/voice-agent/refresh-token", `{"sessionId":"`+sessionID+`"}`)
}

// TestFleetSharesTheRateLimit: 200 concurrent token requests from one IP,
// spread over two instances, under a limit of 50, open exactly 50 sessions;
// the strikes of the 150 refused start exactly one block.
func TestFleetSharesTheRateLimit(t *testing.T) {
	clock := realtimeauthtest.NewClock(t0)
	fleet, minter := newFleet(t, 2, clock, fleetConfig{limit: 50, strikes: 10, maxRefreshes: 5, minInterval: time.Second})
	var ok, refused atomic.Int64
	var wg sync.WaitGroup
	for i := range 200 {
		wg.Go(func() {
			r := fleet[i%2].token(t)
			switch {
			case r.status == http.StatusOK:
				ok.Add(1)
			case r.code == realtimeauth.CodeRateLimited || r.code == realtimeauth.CodeBlocked:
				refused.Add(1)
			default:
				t.Errorf("unexpected reply %+v", r)
			}
		})
	}
	wg.Wait()
	assert.Equal(t, int64(50), ok.Load())
	assert.Equal(t, int64(150), refused.Load())
	assert.Equal(t, 50, minter.Calls())
	assert.Equal(t, 1, fleet[0].events.Count(realtimeauth.EventClientBlocked)+fleet[1].events.Count(realtimeauth.EventClientBlocked),
		"one block, started once across the fleet")
}

// TestFleetSharesSessionsAndBlocks: a session opened on one instance
// refreshes on the other, a revocation on one holds on the other, and so
// does a block.
func TestFleetSharesSessionsAndBlocks(t *testing.T) {
	clock := realtimeauthtest.NewClock(t0)
	fleet, _ := newFleet(t, 2, clock, fleetConfig{limit: 10, strikes: 3, maxRefreshes: 5, minInterval: 10 * time.Second})
	a, b := fleet[0], fleet[1]

	r := a.token(t)
	require.Equal(t, http.StatusOK, r.status)
	clock.Advance(10 * time.Second)
	assert.Equal(t, http.StatusOK, b.refresh(t, r.sessionID).status, "opened on a, refreshed on b")
	assert.Equal(t, realtimeauth.CodeRefreshTooSoon, a.refresh(t, r.sessionID).code, "b's refresh counts on a")
	require.NoError(t, b.h.RevokeSession(context.Background(), r.sessionID))
	clock.Advance(10 * time.Second)
	assert.Equal(t, realtimeauth.CodeSessionRevoked, a.refresh(t, r.sessionID).code, "revoked on b, revoked on a")

	for range 3 { // unknown sessions are strikes
		assert.Equal(t, realtimeauth.CodeSessionNotFound, a.refresh(t, "00000000-0000-4000-8000-000000000000").code)
	}
	assert.Equal(t, realtimeauth.CodeBlocked, b.token(t).code, "blocked on a, blocked on b")
	assert.Equal(t, 1, a.events.Count(realtimeauth.EventClientBlocked))
	clock.Advance(15 * time.Minute)
	assert.Equal(t, http.StatusOK, b.token(t).status, "the block ends on time")
}

// TestFleetSharesTheRefreshPolicy: 60 concurrent refreshes of one session
// over two instances, under a policy of 20, issue exactly 20 tokens.
func TestFleetSharesTheRefreshPolicy(t *testing.T) {
	clock := realtimeauthtest.NewClock(t0)
	fleet, minter := newFleet(t, 2, clock, fleetConfig{limit: 10, strikes: 10, maxRefreshes: 20})
	r := fleet[0].token(t)
	require.Equal(t, http.StatusOK, r.status)
	var ok, limited atomic.Int64
	var wg sync.WaitGroup
	for i := range 60 {
		wg.Go(func() {
			switch rr := fleet[i%2].refresh(t, r.sessionID); rr.code {
			case "":
				ok.Add(1)
			case realtimeauth.CodeRefreshLimitReached:
				limited.Add(1)
			default:
				t.Errorf("unexpected reply %+v", rr)
			}
		})
	}
	wg.Wait()
	assert.Equal(t, int64(20), ok.Load())
	assert.Equal(t, int64(40), limited.Load())
	assert.Equal(t, 21, minter.Calls())
}

// TestRoundTrips counts the commands each request sends to Redis, scripts
// loaded: an admitted token request and a refresh.
func TestRoundTrips(t *testing.T) {
	clock := realtimeauthtest.NewClock(t0)
	fleet, _ := newFleet(t, 1, clock, fleetConfig{limit: 3, strikes: 10, maxRefreshes: 5, minInterval: time.Second})
	in := fleet[0]
	measure := func(f func() reply) (reply, int64) {
		before := in.rt.Load()
		r := f()
		return r, in.rt.Load() - before
	}
	// Load the scripts (EVALSHA answered NOSCRIPT, then EVAL).
	warm := in.token(t)
	clock.Advance(time.Second)
	in.refresh(t, warm.sessionID)

	r, n := measure(func() reply { return in.token(t) })
	require.Equal(t, http.StatusOK, r.status)
	assert.Equal(t, int64(3), n, "admitted token request: abuse check, limit, session create")
	t.Logf("admitted token request: %d round trips", n)

	clock.Advance(time.Second)
	rr, n := measure(func() reply { return in.refresh(t, r.sessionID) })
	require.Equal(t, http.StatusOK, rr.status)
	assert.Equal(t, int64(2), n, "refresh: abuse check, session update")
	t.Logf("refresh: %d round trips", n)

	in.token(t) // the third of the limit
	in.token(t) // loads the strike script
	r, n = measure(func() reply { return in.token(t) })
	require.Equal(t, realtimeauth.CodeRateLimited, r.code)
	t.Logf("rate-limited token request (a strike): %d round trips", n)
	assert.Equal(t, int64(3), n, "rate-limited: abuse check, limit, strike")
}

// TestFleetRedisDown stops, and stalls, Redis under a running instance:
// every request fails closed with 503 store_unavailable within its
// deadline, and service resumes by itself when Redis is back.
func TestFleetRedisDown(t *testing.T) {
	srv, rdb, rt := startRedis(t)
	minter := &realtimeauthtest.Minter{}
	in := newInstance(t, rdb, rt, nil, minter, fleetConfig{limit: 100, strikes: 10, maxRefreshes: 5,
		requestTimeout: 500 * time.Millisecond})
	r := in.token(t)
	require.Equal(t, http.StatusOK, r.status)

	check := func(state string) {
		t.Helper()
		for _, f := range []func() reply{func() reply { return in.token(t) }, func() reply { return in.refresh(t, r.sessionID) }} {
			start := time.Now()
			got := f()
			assert.Equal(t, http.StatusServiceUnavailable, got.status, state)
			assert.Equal(t, realtimeauth.CodeStoreUnavailable, got.code, state)
			assert.Less(t, time.Since(start), 2*time.Second, "%s: answered within the request's deadline", state)
		}
	}
	srv.Pause()
	check("stalled")
	srv.Resume()
	srv.Stop()
	check("stopped")
	assert.Equal(t, 1, minter.Calls(), "nothing minted while redis was down")

	// Health says so: 503, every service that lives in Redis down, and no
	// reassuring activeSessions 0.
	res, err := http.Get(in.url + "/api/voice-agent/health")
	require.NoError(t, err)
	var health struct {
		Status   string
		Services map[string]struct{ Status string }
		Metrics  map[string]any
	}
	require.NoError(t, json.NewDecoder(res.Body).Decode(&health))
	res.Body.Close()
	assert.Equal(t, http.StatusServiceUnavailable, res.StatusCode, "health still answers, and says so")
	assert.Equal(t, realtimeauth.StatusUnhealthy, health.Status)
	assert.Equal(t, realtimeauth.ServiceDown, health.Services["sessionTracking"].Status)
	assert.Equal(t, realtimeauth.ServiceDown, health.Services["rateLimit"].Status)
	assert.Equal(t, realtimeauth.ServiceOperational, health.Services["openaiApi"].Status)
	assert.Contains(t, health.Metrics, "activeSessions")
	assert.Nil(t, health.Metrics["activeSessions"])

	srv.Restart()
	assert.Equal(t, http.StatusOK, in.token(t).status, "recovers by itself")
}

// TestFleetLimiterFailsOpen: with WithFailOpen, and sessions in memory, a
// Redis outage admits token requests instead of refusing them.
func TestFleetLimiterFailsOpen(t *testing.T) {
	srv, rdb, rt := startRedis(t)
	in := newInstance(t, rdb, rt, nil, &realtimeauthtest.Minter{}, fleetConfig{limit: 1, maxRefreshes: 5,
		failOpen: true, memoryStore: true, requestTimeout: 500 * time.Millisecond})
	require.Equal(t, http.StatusOK, in.token(t).status)
	require.Equal(t, realtimeauth.CodeRateLimited, in.token(t).code, "the limit holds while redis is up")
	srv.Stop()
	for range 3 {
		assert.Equal(t, http.StatusOK, in.token(t).status)
	}
	srv.Restart()
	assert.Equal(t, http.StatusOK, in.token(t).status, "a fresh redis: a fresh window")
	assert.Equal(t, realtimeauth.CodeRateLimited, in.token(t).code, "limiting again")
}
