package realtimeauth_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/realtimeauth/realtimeauth"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const striker = "198.51.100.66:7777"

// bearerAuth authenticates "Authorization: Bearer <subject>".
func bearerAuth(r *http.Request) (string, error) {
	s, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || s == "" || s == "bad" {
		return "", errors.New("not authenticated")
	}
	return s, nil
}

func jsonBodyOrEmpty(b []byte) map[string]any {
	m := map[string]any{}
	_ = json.Unmarshal(b, &m)
	return m
}

// TestBlockLifecycle: the threshold counts within the window; a block
// answers 403 with Retry-After on token, refresh and preflight but not on
// health, and ends after blockFor.
func TestBlockLifecycle(t *testing.T) {
	ev := &events{}
	r := newRig(t, realtimeauth.WithAbuseGuard(mustGuard(3, 10*time.Minute, 15*time.Minute)), realtimeauth.WithEventHook(ev.Hook))
	id := issueToken(t, r.h, striker)["sessionId"].(string)
	bad := req{path: refrURL, remote: striker, body: refreshBody("not-a-session-id")}

	serveReq(r.h, bad)
	r.clock.Advance(5 * time.Minute)
	serveReq(r.h, bad)
	r.clock.Advance(5 * time.Minute) // the first window is over
	serveReq(r.h, bad)
	serveReq(r.h, bad)
	assert.Equal(t, 200, serveReq(r.h, req{path: tokenURL, remote: striker}).Code, "two strikes in this window")
	serveReq(r.h, bad)
	require.Len(t, ev.Named(realtimeauth.EventClientBlocked), 1)
	blocked := ev.Named(realtimeauth.EventClientBlocked)[0]
	assert.Equal(t, "198.51.100.66", blocked.ClientIP)
	assert.Equal(t, 15*time.Minute, blocked.RetryAfter)
	assert.Equal(t, realtimeauth.SeverityHigh, blocked.Severity)

	r.clock.Advance(5 * time.Minute)
	assertError(t, serveReq(r.h, req{path: tokenURL, remote: striker}), 403, "blocked", 600)
	r.clock.Advance(time.Minute)
	assertError(t, serveReq(r.h, req{path: refrURL, remote: striker, body: refreshBody(id)}), 403, "blocked", 540)
	pf := preflightReq(tokenURL, origin)
	pf.remote = striker
	assertError(t, serveReq(r.h, pf), 403, "blocked", 540)
	w := serveReq(r.h, req{method: http.MethodGet, path: healthU, remote: striker})
	assert.Equal(t, http.StatusOK, w.Code, "health is never blocked")

	r.clock.Advance(9*time.Minute - time.Second)
	assertError(t, serveReq(r.h, req{path: tokenURL, remote: striker}), 403, "blocked", 1)
	r.clock.Advance(time.Second)
	assert.Equal(t, 200, serveReq(r.h, req{path: tokenURL, remote: striker}).Code)
	assert.Len(t, ev.Named(realtimeauth.EventClientBlocked), 1, "one event per block, not per request")
}

// TestBlockedReachesNothing: a blocked client costs no store or
// upstream call.
func TestBlockedReachesNothing(t *testing.T) {
	store := &countingStore{SessionStore: realtimeauth.NewMemoryStore()}
	r := newRig(t, realtimeauth.WithAbuseGuard(mustGuard(1, time.Minute, time.Hour)),
		realtimeauth.WithSessionStore(store))
	id := issueToken(t, r.h, defaultRemote)["sessionId"].(string)
	serveReq(r.h, req{path: tokenURL, remote: striker, body: `{`})
	s0, m0 := store.calls.Load(), r.mint.Calls()
	for range 20 {
		assertError(t, serveReq(r.h, req{path: tokenURL, remote: striker}), 403, "blocked", 3600)
		assertError(t, serveReq(r.h, req{path: refrURL, remote: striker, body: refreshBody(id)}), 403, "blocked", 3600)
	}
	assert.Equal(t, s0, store.calls.Load(), "store")
	assert.Equal(t, m0, r.mint.Calls(), "minter")
}

// TestOneBlockEventUnderConcurrency: many concurrent strikes start one
// block and log one client_blocked.
func TestOneBlockEventUnderConcurrency(t *testing.T) {
	ev := &events{}
	logs := &syncBuffer{}
	r := newRig(t, realtimeauth.WithAbuseGuard(mustGuard(5, time.Minute, time.Minute)),
		realtimeauth.WithEventHook(ev.Hook), realtimeauth.WithLogger(newTextLogger(logs)))
	for round := 1; round <= 2; round++ {
		var wg sync.WaitGroup
		for range 100 {
			wg.Go(func() { serveReq(r.h, req{path: refrURL, remote: striker, body: refreshBody("x")}) })
		}
		wg.Wait()
		assert.Len(t, ev.Named(realtimeauth.EventClientBlocked), round)
		assert.Equal(t, round, strings.Count(logs.String(), "event=client_blocked"))
		r.clock.Advance(time.Minute) // the block ends
	}
}

func TestAbuseGuardOff(t *testing.T) {
	r := newRig(t, realtimeauth.WithAbuseGuard(nil))
	for range 100 {
		serveReq(r.h, req{path: refrURL, remote: striker, body: refreshBody("x")})
	}
	assert.Equal(t, 200, serveReq(r.h, req{path: tokenURL, remote: striker}).Code)
}

// TestAbuseGuardIPv6: a /64 is one client for blocking too.
func TestAbuseGuardIPv6(t *testing.T) {
	r := newRig(t, realtimeauth.WithAbuseGuard(mustGuard(2, time.Minute, time.Minute)))
	serveReq(r.h, req{path: refrURL, remote: "[2001:db8::1]:1", body: `{}`})
	serveReq(r.h, req{path: refrURL, remote: "[2001:db8::2]:1", body: `{}`})
	assertError(t, serveReq(r.h, req{path: tokenURL, remote: "[2001:db8::3]:1"}), 403, "blocked", 60)
	assert.Equal(t, 200, serveReq(r.h, req{path: tokenURL, remote: "[2001:db8:0:1::1]:1"}).Code)
}

func TestMemoryAbuseGuard(t *testing.T) {
	ctx := context.Background()
	g := mustGuard(3, time.Minute, 5*time.Minute)
	for i := range 2 {
		d, started, err := g.Strike(ctx, "k", t0.Add(time.Duration(i)*time.Second))
		require.NoError(t, err)
		assert.Zero(t, d)
		assert.False(t, started)
	}
	d, started, err := g.Strike(ctx, "k", t0.Add(59*time.Second))
	require.NoError(t, err)
	assert.True(t, started)
	assert.Equal(t, 5*time.Minute, d)
	d, started, _ = g.Strike(ctx, "k", t0.Add(60*time.Second))
	assert.False(t, started, "strikes while blocked are not counted")
	assert.Zero(t, d)
	left, err := g.Blocked(ctx, "k", t0.Add(2*time.Minute))
	require.NoError(t, err)
	assert.Equal(t, 3*time.Minute+59*time.Second, left)
	left, _ = g.Blocked(ctx, "k", t0.Add(59*time.Second+5*time.Minute))
	assert.Zero(t, left)
	left, _ = g.Blocked(ctx, "other", t0)
	assert.Zero(t, left)

	// Bad arguments are an error naming the constructor and the argument
	// (WithAbuseGuard takes a built guard, and 0 strikes is no way to turn
	// it off: WithAbuseGuard(nil) is), and no guard.
	for _, tc := range []struct {
		strikes          int
		window, blockFor time.Duration
		want             string
	}{
		{0, time.Minute, time.Minute, "strikes 0 is outside 1..1000000"},
		{1_000_001, time.Minute, time.Minute, "strikes 1000001 is outside"},
		{1, 0, time.Minute, "window 0s and blockFor 1m0s must be positive"},
		{1, time.Minute, -time.Second, "window 1m0s and blockFor -1s must be positive"},
	} {
		g, err := realtimeauth.NewMemoryAbuseGuard(tc.strikes, tc.window, tc.blockFor)
		require.Error(t, err)
		assert.Nil(t, g, "no guard, not a typed nil")
		assert.Contains(t, err.Error(), "realtimeauth: NewMemoryAbuseGuard: "+tc.want)
	}
}

func TestMemoryAbuseGuardSweepAndCap(t *testing.T) {
	ctx := context.Background()
	g := mustGuard(10, time.Minute, time.Minute)
	for i := range 1000 {
		_, _, err := g.Strike(ctx, fmt.Sprintf("old-%d", i), t0)
		require.NoError(t, err)
	}
	require.Equal(t, 1000, realtimeauth.MemoryLen(g))
	// A window later, 5,000 new keys touch all 64 shards, each of which
	// sweeps the idle old keys.
	for i := range 5000 {
		_, _, _ = g.Strike(ctx, fmt.Sprintf("new-%d", i), t0.Add(time.Minute))
	}
	assert.Equal(t, 5000, realtimeauth.MemoryLen(g))

	capped := realtimeauth.NewMemoryAbuseGuardCap(10, time.Minute, time.Minute, 128)
	for i := range 5000 {
		_, _, _ = capped.Strike(ctx, fmt.Sprintf("k-%d", i), t0)
	}
	assert.LessOrEqual(t, realtimeauth.MemoryLen(capped), 128)
}

// failingGuard is an AbuseGuard whose backend is down.
type failingGuard struct{}

func (failingGuard) Blocked(context.Context, string, time.Time) (time.Duration, error) {
	return 0, errors.New("guard down")
}

func (failingGuard) Strike(context.Context, string, time.Time) (time.Duration, bool, error) {
	return 0, false, errors.New("guard down")
}

// TestAbuseGuardFailure: a guard that cannot answer fails closed with 503.
func TestAbuseGuardFailure(t *testing.T) {
	r := newRig(t, realtimeauth.WithAbuseGuard(failingGuard{}))
	assertError(t, serveReq(r.h, req{path: tokenURL}), 503, "store_unavailable", 0)
	assert.Equal(t, 0, r.mint.Calls())
}
