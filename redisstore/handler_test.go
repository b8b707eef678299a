package redisstore_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
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
	"github.com/realtimeauth/realtimeauth/redisstore/redistest"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// instance is one server of a fleet sharing a Redis: its own handler, its
// own Redis client, behind its own httptest server.
type instance struct {
	h      *realtimeauth.Handler
	store  *redisstore.SessionStore
	url    string
	rt     *roundTrips
	events *realtimeauthtest.Events
}

// fleetConfig is what the tests vary; zero fields keep the handler's
// defaults.
type fleetConfig struct {
	rateLimit, mintLimit     int
	perClient, maxSessions   int
	perSubject, subjectLimit int
	strikes                  int
	maxRefreshes             int
	minInterval              time.Duration
	buckets                  int
	authenticate             bool // the subject is the X-User header
	requestTimeout           time.Duration
	cluster                  bool // a three-master Redis Cluster
}

// limits are the fleet's Limits; a zero field keeps the default.
func (fc fleetConfig) limits() realtimeauth.Limits {
	var lim realtimeauth.Limits
	if fc.rateLimit > 0 {
		lim.Sessions = realtimeauth.Rate{N: fc.rateLimit, Per: time.Minute}
	}
	if fc.mintLimit > 0 {
		lim.Mints = realtimeauth.Rate{N: fc.mintLimit, Per: time.Minute}
	}
	lim.MaxSessionsPerClient, lim.MaxSessions = fc.perClient, fc.maxSessions
	if fc.maxRefreshes > 0 {
		lim.MaxRefreshes, lim.MinRefreshInterval = fc.maxRefreshes, fc.minInterval
		if fc.minInterval == 0 {
			lim.MinRefreshInterval = -1 // no minimum
		}
	}
	if fc.authenticate {
		if fc.subjectLimit > 0 {
			lim.SubjectMints = realtimeauth.Rate{N: fc.subjectLimit, Per: time.Minute}
		}
		lim.MaxSessionsPerSubject = fc.perSubject
	}
	return lim
}

// newInstance starts one server on rdb, reading clock. Requests name their
// client in X-Forwarded-For, the test server being a trusted proxy.
func newInstance(t *testing.T, rdb redis.UniversalClient, rt *roundTrips, clock *realtimeauthtest.Clock,
	minter realtimeauth.Minter, fc fleetConfig) *instance {
	t.Helper()
	ctx := context.Background()
	var sopts []redisstore.Option
	if fc.buckets > 0 {
		sopts = append(sopts, redisstore.WithBuckets(fc.buckets))
	}
	store, err := redisstore.NewSessionStore(ctx, rdb, sopts...)
	require.NoError(t, err)
	guard, err := redisstore.NewAbuseGuard(ctx, rdb, max(1, fc.strikes), 10*time.Minute, 15*time.Minute, sopts...)
	require.NoError(t, err)
	events := &realtimeauthtest.Events{}
	opts := []realtimeauth.Option{
		realtimeauth.WithSessionStore(store),
		realtimeauth.WithAbuseGuard(guard),
		realtimeauth.WithTrustedProxies("127.0.0.1/32"),
		realtimeauth.WithEventHook(events.Hook),
		realtimeauth.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))),
	}
	if fc.strikes == 0 {
		opts[1] = realtimeauth.WithAbuseGuard(nil)
	}
	if clock != nil {
		opts = append(opts, realtimeauth.WithClock(clock.Now))
	}
	if fc.authenticate {
		opts = append(opts, realtimeauth.WithAuthenticator(func(r *http.Request) (string, error) {
			if u := r.Header.Get("X-User"); u != "" {
				return u, nil
			}
			return "", errors.New("no user")
		}))
	}
	opts = append(opts, realtimeauth.WithLimits(fc.limits()))
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
	return &instance{h: h, store: store, url: srv.URL, rt: rt, events: events}
}

// newFleet starts n instances sharing one fresh redis-server, each with its
// own client.
func newFleet(t *testing.T, n int, clock *realtimeauthtest.Clock, fc fleetConfig) ([]*instance, *realtimeauthtest.Minter) {
	t.Helper()
	minter := &realtimeauthtest.Minter{}
	if clock != nil {
		minter.Now = clock.Now
	}
	var fleet []*instance
	if fc.cluster {
		c, rdb, rt := startCluster(t)
		fleet = append(fleet, newInstance(t, rdb, rt, clock, minter, fc))
		for range n - 1 {
			rdb, rt := newClusterClient(t, c)
			fleet = append(fleet, newInstance(t, rdb, rt, clock, minter, fc))
		}
		return fleet, minter
	}
	srv, _, _ := startRedis(t)
	for range n {
		rdb, rt := newClient(t, srv)
		fleet = append(fleet, newInstance(t, rdb, rt, clock, minter, fc))
	}
	return fleet, minter
}

// eachFleetTopology runs f with cluster unset and set.
func eachFleetTopology(t *testing.T, f func(t *testing.T, cluster bool)) {
	t.Run("single", func(t *testing.T) { f(t, false) })
	t.Run("cluster", func(t *testing.T) { f(t, true) })
}

type reply struct {
	status    int
	code      realtimeauth.Code
	sessionID string
}

// from is who sends a request: its address and, with an authenticator, its
// user.
type from struct{ ip, user string }

var anyone = from{ip: "198.51.100.1"}

func post(t *testing.T, url, body string, f from) reply {
	t.Helper()
	// Called from many goroutines: assert, not require.
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if !assert.NoError(t, err) {
		return reply{}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Forwarded-For", f.ip)
	if f.user != "" {
		req.Header.Set("X-User", f.user)
	}
	res, err := http.DefaultClient.Do(req)
	if !assert.NoError(t, err) {
		return reply{}
	}
	defer res.Body.Close()
	var v struct {
		Code      realtimeauth.Code `json:"code"`
		SessionID string            `json:"sessionId"`
	}
	assert.NoError(t, json.NewDecoder(res.Body).Decode(&v))
	return reply{status: res.StatusCode, code: v.Code, sessionID: v.SessionID}
}

func (in *instance) token(t *testing.T, f from) reply {
	return post(t, in.url+"/api/voice-agent/token", "", f)
}

func (in *instance) refresh(t *testing.T, sessionID string, f from) reply {
	return post(t, in.url+"/api/voice-agent/refresh-token", `{"sessionId":"`+sessionID+`"}`, f)
}

// flood runs n requests at once over the fleet and counts the answers by
// code ("" for a token).
func flood(t *testing.T, fleet []*instance, n int, f func(i int, in *instance) reply) map[realtimeauth.Code]int {
	var mu sync.Mutex
	out := map[realtimeauth.Code]int{}
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			r := f(i, fleet[i%len(fleet)])
			mu.Lock()
			out[r.code]++
			mu.Unlock()
		})
	}
	wg.Wait()
	return out
}

func countEvents(fleet []*instance, name realtimeauth.EventName) int {
	n := 0
	for _, in := range fleet {
		n += in.events.Count(name)
	}
	return n
}

// TestFleetNewSessionAllowance: 200 concurrent token requests from one
// address over two instances, under 50 new sessions a minute, open exactly
// 50; the strikes of the refused start exactly one block.
func TestFleetNewSessionAllowance(t *testing.T) {
	eachFleetTopology(t, func(t *testing.T, cluster bool) {
		clock := realtimeauthtest.NewClock(t0)
		fleet, minter := newFleet(t, 2, clock, fleetConfig{rateLimit: 50, mintLimit: 1000, perClient: 1000, strikes: 10, cluster: cluster})
		got := flood(t, fleet, 200, func(_ int, in *instance) reply { return in.token(t, anyone) })
		assert.Equal(t, 50, got[""], "%v", got)
		assert.Equal(t, 150, got[realtimeauth.CodeRateLimited]+got[realtimeauth.CodeBlocked], "%v", got)
		assert.Equal(t, 50, minter.Calls())
		assert.Equal(t, 1, countEvents(fleet, realtimeauth.EventClientBlocked), "one block, started once across the fleet")
	})
}

// TestFleetMintAllowance: token and refresh requests share the client's
// mint allowance across instances, exactly.
func TestFleetMintAllowance(t *testing.T) {
	clock := realtimeauthtest.NewClock(t0)
	fleet, minter := newFleet(t, 2, clock, fleetConfig{rateLimit: 10, mintLimit: 25, maxRefreshes: 100})
	var ids []string
	for range 5 {
		r := fleet[0].token(t, anyone)
		require.Equal(t, http.StatusOK, r.status)
		ids = append(ids, r.sessionID)
	}
	got := flood(t, fleet, 60, func(i int, in *instance) reply { return in.refresh(t, ids[i%5], anyone) })
	assert.Equal(t, 20, got[""], "25 mints, 5 of them the tokens: %v", got)
	assert.Equal(t, 40, got[realtimeauth.CodeRateLimited], "%v", got)
	assert.Equal(t, 25, minter.Calls())
}

// TestFleetPrefixAllowance: the /64s of one IPv6 /48 share its allowance
// (16 clients' worth by default) across instances.
func TestFleetPrefixAllowance(t *testing.T) {
	clock := realtimeauthtest.NewClock(t0)
	fleet, minter := newFleet(t, 2, clock, fleetConfig{rateLimit: 2, mintLimit: 30})
	got := flood(t, fleet, 100, func(i int, in *instance) reply {
		return in.token(t, from{ip: fmt.Sprintf("2001:db8:77:%x::1", i)})
	})
	assert.Equal(t, 32, got[""], "the /48 opens 16 times 2: %v", got)
	assert.Equal(t, 68, got[realtimeauth.CodeRateLimited], "%v", got)
	assert.Equal(t, 32, minter.Calls())
}

// TestFleetPerClientCap: a client opening 40 sessions at once over two
// instances under a cap of 4 gets every token and holds 4 sessions; 36 were
// evicted, each once.
func TestFleetPerClientCap(t *testing.T) {
	eachFleetTopology(t, func(t *testing.T, cluster bool) {
		clock := realtimeauthtest.NewClock(t0)
		fleet, _ := newFleet(t, 2, clock, fleetConfig{rateLimit: 100, mintLimit: 100, perClient: 4, cluster: cluster})
		got := flood(t, fleet, 40, func(_ int, in *instance) reply { return in.token(t, anyone) })
		assert.Equal(t, map[realtimeauth.Code]int{"": 40}, got)
		assert.Equal(t, 36, countEvents(fleet, realtimeauth.EventSessionEvicted))
		n, err := fleet[0].store.Count(context.Background(), clock.Now())
		require.NoError(t, err)
		assert.Equal(t, 4, n)
	})
}

// TestFleetSubjectCapAndAllowance: one user from 30 addresses at once over
// two instances holds at most its cap of sessions; its mint allowance holds
// across token and refresh requests.
func TestFleetSubjectCapAndAllowance(t *testing.T) {
	eachFleetTopology(t, func(t *testing.T, cluster bool) {
		clock := realtimeauthtest.NewClock(t0)
		fleet, minter := newFleet(t, 2, clock, fleetConfig{authenticate: true, perSubject: 4, subjectLimit: 12, maxRefreshes: 100, cluster: cluster})
		var mu sync.Mutex
		var ids []string
		var ips []string
		got := flood(t, fleet, 30, func(i int, in *instance) reply {
			f := from{ip: fmt.Sprintf("10.20.%d.1", i), user: "ivy"}
			r := in.token(t, f)
			if r.status == http.StatusOK {
				mu.Lock()
				ids, ips = append(ids, r.sessionID), append(ips, f.ip)
				mu.Unlock()
			}
			return r
		})
		assert.Equal(t, 4, got[""], "%v", got)
		assert.Equal(t, 26, got[realtimeauth.CodeTooManySessions], "%v", got)
		require.Len(t, ids, 4)
		got = flood(t, fleet, 40, func(i int, in *instance) reply {
			return in.refresh(t, ids[i%4], from{ip: ips[i%4], user: "ivy"})
		})
		assert.Equal(t, 8, got[""], "12 mints for ivy, 4 of them the tokens: %v", got)
		assert.Equal(t, 32, got[realtimeauth.CodeRateLimited], "%v", got)
		assert.Equal(t, 12, minter.Calls())
	})
}

// TestFleetFloodLeavesRoom: a flood from 300 addresses fills a small
// MaxSessions (kept per bucket, 8 buckets); the store never holds more, and
// a newcomer still gets a token, on either instance.
func TestFleetFloodLeavesRoom(t *testing.T) {
	eachFleetTopology(t, func(t *testing.T, cluster bool) {
		clock := realtimeauthtest.NewClock(t0)
		fleet, _ := newFleet(t, 2, clock, fleetConfig{maxSessions: 64, buckets: 8, strikes: 10, cluster: cluster})
		got := flood(t, fleet, 900, func(i int, in *instance) reply {
			return in.token(t, from{ip: fmt.Sprintf("10.30.%d.%d", i%300/250, i%300%250)})
		})
		n, err := fleet[0].store.Count(context.Background(), clock.Now())
		require.NoError(t, err)
		assert.Equal(t, 64, n, "the store is full, and no fuller: %v", got)
		assert.Zero(t, got[realtimeauth.CodeStoreUnavailable])
		for i, in := range fleet {
			r := in.token(t, from{ip: fmt.Sprintf("192.0.2.%d", 10+i)})
			assert.Equal(t, http.StatusOK, r.status, "newcomer on instance %d: %+v", i, r)
		}
	})
}

// TestFleetBlockOutlivesAFlood: a blocked client stays blocked while a
// flood fills Redis to its maxmemory: with noeviction (which the store
// requires) Redis refuses the flood's writes and evicts nothing.
func TestFleetBlockOutlivesAFlood(t *testing.T) {
	srv := redistest.Start(t, "--maxmemory", "3mb")
	rdb, rt := newClient(t, srv)
	clock := realtimeauthtest.NewClock(t0)
	in := newInstance(t, rdb, rt, clock, &realtimeauthtest.Minter{Now: clock.Now},
		fleetConfig{strikes: 3, rateLimit: 1, perClient: 1000})
	bad := from{ip: "203.0.113.66"}
	require.Equal(t, http.StatusOK, in.token(t, bad).status)
	for range 3 {
		in.token(t, bad) // rate_limited: strikes
	}
	require.Equal(t, realtimeauth.CodeBlocked, in.token(t, bad).code)

	full := false
	for i := 0; i < 100_000 && !full; i += 200 {
		got := flood(t, []*instance{in}, 200, func(j int, in *instance) reply {
			return in.token(t, from{ip: fmt.Sprintf("10.%d.%d.%d", (i+j)>>16, (i+j)>>8&255, (i+j)&255)})
		})
		full = got[realtimeauth.CodeStoreUnavailable] > 0
	}
	require.True(t, full, "the flood reached maxmemory")
	assert.Equal(t, realtimeauth.CodeBlocked, in.token(t, bad).code, "the block was not evicted")
	clock.Advance(15 * time.Minute)
	assert.NotEqual(t, realtimeauth.CodeBlocked, in.token(t, bad).code, "the block ends on time")
}

// TestFleetSharesSessionsAndBlocks: a session opened on one instance
// refreshes on the other, a revocation on one holds on the other, and so
// does a block.
func TestFleetSharesSessionsAndBlocks(t *testing.T) {
	clock := realtimeauthtest.NewClock(t0)
	fleet, _ := newFleet(t, 2, clock, fleetConfig{strikes: 3, maxRefreshes: 5, minInterval: 10 * time.Second})
	a, b := fleet[0], fleet[1]

	r := a.token(t, anyone)
	require.Equal(t, http.StatusOK, r.status)
	clock.Advance(10 * time.Second)
	assert.Equal(t, http.StatusOK, b.refresh(t, r.sessionID, anyone).status, "opened on a, refreshed on b")
	assert.Equal(t, realtimeauth.CodeRefreshTooSoon, a.refresh(t, r.sessionID, anyone).code, "b's refresh counts on a")
	assert.Equal(t, realtimeauth.CodeSessionMismatch, a.refresh(t, r.sessionID, from{ip: "192.0.2.99"}).code, "another client")
	require.NoError(t, b.h.RevokeSession(context.Background(), r.sessionID))
	clock.Advance(10 * time.Second)
	assert.Equal(t, realtimeauth.CodeSessionRevoked, a.refresh(t, r.sessionID, anyone).code, "revoked on b, revoked on a")

	// An unknown session is no strike; a malformed session ID is.
	assert.Equal(t, realtimeauth.CodeSessionNotFound, a.refresh(t, "00000000-0000-4000-8000-000000000000", anyone).code)
	for range 3 {
		assert.Equal(t, realtimeauth.CodeInvalidRequest, a.refresh(t, "not-a-session-id", anyone).code)
	}
	assert.Equal(t, realtimeauth.CodeBlocked, b.token(t, anyone).code, "blocked on a, blocked on b")
	assert.Equal(t, 1, a.events.Count(realtimeauth.EventClientBlocked))
	clock.Advance(15 * time.Minute)
	assert.Equal(t, http.StatusOK, b.token(t, anyone).status, "the block ends on time")
}

// TestRoundTrips counts the commands each request sends to Redis: an
// anonymous token request and refresh each cost one store round trip plus
// the abuse check; with an authenticator, one more (the subject's bucket:
// its index for Open, its allowance for both).
func TestRoundTrips(t *testing.T) {
	eachFleetTopology(t, func(t *testing.T, cluster bool) { testRoundTrips(t, cluster) })
}

func testRoundTrips(t *testing.T, cluster bool) {
	clock := realtimeauthtest.NewClock(t0)
	for _, auth := range []bool{false, true} {
		t.Run(map[bool]string{false: "anonymous", true: "authenticated"}[auth], func(t *testing.T) {
			fleet, _ := newFleet(t, 1, clock, fleetConfig{strikes: 10, maxRefreshes: 5, minInterval: time.Second,
				authenticate: auth, subjectLimit: 30, cluster: cluster})
			in := fleet[0]
			f := from{ip: "10.40.0.1", user: "jack"}
			measure := func(do func() reply) (reply, int64) {
				before := in.rt.Load()
				r := do()
				return r, in.rt.Load() - before
			}
			want := int64(2)
			if auth {
				want = 3
			}
			r, n := measure(func() reply { return in.token(t, f) })
			require.Equal(t, http.StatusOK, r.status)
			assert.Equal(t, want, n, "token request: abuse check, Open")
			t.Logf("token request: %d round trips", n)
			clock.Advance(time.Second)
			rr, n := measure(func() reply { return in.refresh(t, r.sessionID, f) })
			require.Equal(t, http.StatusOK, rr.status)
			assert.Equal(t, want, n, "refresh: abuse check, Refresh")
			t.Logf("refresh: %d round trips", n)
		})
	}
}

// TestFleetRedisDown stops, and stalls, Redis under a running instance:
// every request fails closed with 503 store_unavailable within its
// deadline, and service resumes by itself when Redis is back.
func TestFleetRedisDown(t *testing.T) {
	srv, rdb, rt := startRedis(t)
	minter := &realtimeauthtest.Minter{}
	in := newInstance(t, rdb, rt, nil, minter, fleetConfig{strikes: 10, maxRefreshes: 5, requestTimeout: 500 * time.Millisecond})
	r := in.token(t, anyone)
	require.Equal(t, http.StatusOK, r.status)

	check := func(state string) {
		t.Helper()
		for _, f := range []func() reply{func() reply { return in.token(t, anyone) }, func() reply { return in.refresh(t, r.sessionID, anyone) }} {
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

	srv.Restart()
	var ok atomic.Bool
	ok.Store(in.token(t, anyone).status == http.StatusOK)
	assert.True(t, ok.Load(), "recovers by itself")
}
