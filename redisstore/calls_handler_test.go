package redisstore_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/realtimeauth/realtimeauth"
	"github.com/realtimeauth/realtimeauth/calls"
	"github.com/realtimeauth/realtimeauth/realtimeauthtest"
	"github.com/realtimeauth/realtimeauth/redisstore"
)

const callOffer = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\n"

// TestCallsTwoInstances runs two handlers on one real Redis (sessions and
// calls shared) against the fake upstream, on one fake clock: the caps
// hold across them, and when the instance that made a call is closed
// without any cleanup (as if killed) before the deadline, the other hangs
// the call up at its deadline, once.
func TestCallsTwoInstances(t *testing.T) {
	_, rdb, _ := startRedis(t)
	ctx := context.Background()
	up := &realtimeauthtest.Upstream{Key: "sk-redis-calls"}
	upSrv := httptest.NewServer(up)
	t.Cleanup(upSrv.Close)
	minter, err := realtimeauth.NewOpenAIMinter("sk-redis-calls", realtimeauth.OpenAIConfig{BaseURL: upSrv.URL + "/v1",
		Session: json.RawMessage(`{"instructions":"shared"}`)})
	require.NoError(t, err)
	clock := realtimeauthtest.NewTimerClock(realtimeauthtest.NewClock(time.Unix(1_800_000_000, 0)))
	events := &realtimeauthtest.Events{}
	instance := func() *realtimeauth.Handler {
		store, err := redisstore.NewSessionStore(ctx, rdb)
		require.NoError(t, err)
		reg, err := redisstore.NewCallRegistry(ctx, rdb)
		require.NoError(t, err)
		h, err := realtimeauth.New(minter, realtimeauth.WithSessionStore(store), realtimeauth.WithCallRegistry(reg),
			realtimeauth.WithLimits(realtimeauth.Limits{MaxCallDuration: time.Minute}), realtimeauth.WithClock(clock.Now), realtimeauth.WithTimer(clock.AfterFunc),
			realtimeauth.WithEventHook(events.Hook), realtimeauth.WithLogger(slog.New(slog.DiscardHandler)))
		require.NoError(t, err)
		t.Cleanup(func() { _ = h.Close() })
		return h
	}
	a, b := instance(), instance()
	call := func(h http.Handler, remote string) *httptest.ResponseRecorder {
		r := httptest.NewRequest(http.MethodPost, "/api/voice-agent/calls", strings.NewReader(callOffer))
		r.Header.Set("Content-Type", "application/sdp")
		r.RemoteAddr = remote
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}
	idOf := func(w *httptest.ResponseRecorder) string {
		require.Equal(t, http.StatusCreated, w.Code, w.Body.String())
		return strings.TrimPrefix(w.Header().Get("Location"), "/api/voice-agent/calls/")
	}

	first := idOf(call(a, "198.51.100.7:1"))
	clock.Advance(10 * time.Second)
	second := idOf(call(b, "198.51.100.7:2"))
	w := call(a, "198.51.100.7:3")
	assert.Equal(t, http.StatusTooManyRequests, w.Code, "the client's cap of 2 holds across the instances")
	assert.Contains(t, w.Body.String(), "too_many_calls")
	assert.Len(t, up.Calls(), 2)
	for _, h := range []*realtimeauth.Handler{a, b} {
		assert.Equal(t, 2, h.Stats().ActiveCalls)
	}

	// A hang-up through the other instance: same client IP, so allowed.
	del := httptest.NewRequest(http.MethodDelete, "/api/voice-agent/calls/"+second, nil)
	del.RemoteAddr = "198.51.100.7:9"
	rec := httptest.NewRecorder()
	a.ServeHTTP(rec, del)
	require.Equal(t, http.StatusNoContent, rec.Code, rec.Body.String())
	assert.Equal(t, []string{second}, up.Hangups())

	// a made the first call; it dies before the deadline.
	require.NoError(t, a.Close())
	clock.Advance(49 * time.Second) // 59 s into the first call
	assert.Equal(t, []string{second}, up.Hangups(), "not before the deadline")
	clock.Advance(time.Second + 250*time.Millisecond)
	assert.Equal(t, []string{second, first}, up.Hangups(), "b hangs a's call up at its deadline")
	clock.Advance(10 * time.Minute)
	assert.Equal(t, []string{second, first}, up.Hangups(), "once")
	assert.Equal(t, 0, b.Stats().ActiveCalls)
	var reasons []calls.EndReason
	for _, ev := range events.Named(realtimeauth.EventCallEnded) {
		reasons = append(reasons, ev.Reason)
	}
	assert.Equal(t, []calls.EndReason{calls.EndClient, calls.EndMaxDuration}, reasons)
}

// TestCallsDeadlineOnceAcrossLiveInstances: with three live instances
// sweeping the same registry, each due call is hung up exactly once.
func TestCallsDeadlineOnceAcrossLiveInstances(t *testing.T) {
	_, rdb, _ := startRedis(t)
	up := &realtimeauthtest.Upstream{Key: "sk-redis-calls"}
	upSrv := httptest.NewServer(up)
	t.Cleanup(upSrv.Close)
	minter, err := realtimeauth.NewOpenAIMinter("sk-redis-calls", realtimeauth.OpenAIConfig{BaseURL: upSrv.URL + "/v1"})
	require.NoError(t, err)
	clock := realtimeauthtest.NewTimerClock(realtimeauthtest.NewClock(time.Unix(1_800_000_000, 0)))
	var hs []*realtimeauth.Handler
	for range 3 {
		reg, err := redisstore.NewCallRegistry(context.Background(), rdb)
		require.NoError(t, err)
		h, err := realtimeauth.New(minter, realtimeauth.WithCallRegistry(reg), realtimeauth.WithLimits(realtimeauth.Limits{
			MaxCallDuration: 10 * time.Second, MaxCallsPerClient: 100,
			Sessions: realtimeauth.Rate{N: 100, Per: time.Minute}, Mints: realtimeauth.Rate{N: 100, Per: time.Minute}}),
			realtimeauth.WithClock(clock.Now), realtimeauth.WithTimer(clock.AfterFunc), realtimeauth.WithLogger(slog.New(slog.DiscardHandler)))
		require.NoError(t, err)
		t.Cleanup(func() { _ = h.Close() })
		hs = append(hs, h)
	}
	for i := range 12 {
		r := httptest.NewRequest(http.MethodPost, "/api/voice-agent/calls", strings.NewReader(callOffer))
		r.Header.Set("Content-Type", "application/sdp")
		w := httptest.NewRecorder()
		hs[i%3].ServeHTTP(w, r)
		require.Equal(t, http.StatusCreated, w.Code, w.Body.String())
	}
	clock.Advance(11 * time.Second)
	hung := up.Hangups()
	assert.Len(t, hung, 12)
	seen := map[string]int{}
	for _, id := range hung {
		seen[id]++
	}
	assert.Len(t, seen, 12, "each call hung up exactly once: %v", hung)
}

// TestCallRoundTrips counts what one relayed call costs Redis, anonymous
// with the abuse guard in Redis: the block check, the slot's Reserve, the
// session's Open, the call's Bind; its DELETE: the block check, Get, End.
func TestCallRoundTrips(t *testing.T) {
	_, rdb, rt := startRedis(t)
	ctx := context.Background()
	up := &realtimeauthtest.Upstream{Key: "sk-redis-calls"}
	upSrv := httptest.NewServer(up)
	t.Cleanup(upSrv.Close)
	minter, err := realtimeauth.NewOpenAIMinter("sk-redis-calls", realtimeauth.OpenAIConfig{BaseURL: upSrv.URL + "/v1"})
	require.NoError(t, err)
	store, err := redisstore.NewSessionStore(ctx, rdb)
	require.NoError(t, err)
	guard, err := redisstore.NewAbuseGuard(ctx, rdb, 10, time.Minute, time.Minute)
	require.NoError(t, err)
	reg, err := redisstore.NewCallRegistry(ctx, rdb)
	require.NoError(t, err)
	h, err := realtimeauth.New(minter, realtimeauth.WithSessionStore(store), realtimeauth.WithAbuseGuard(guard),
		realtimeauth.WithCallRegistry(reg), realtimeauth.WithLogger(slog.New(slog.DiscardHandler)))
	require.NoError(t, err)
	t.Cleanup(func() { _ = h.Close() })
	// Warm the script cache: a script's first call may cost a NOSCRIPT round trip.
	warm := func() string {
		r := httptest.NewRequest(http.MethodPost, "/api/voice-agent/calls", strings.NewReader(callOffer))
		r.Header.Set("Content-Type", "application/sdp")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		require.Equal(t, http.StatusCreated, w.Code, w.Body.String())
		return strings.TrimPrefix(w.Header().Get("Location"), "/api/voice-agent/calls/")
	}
	hang := func(id string) {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(http.MethodDelete, "/api/voice-agent/calls/"+id, nil))
		require.Equal(t, http.StatusNoContent, w.Code, w.Body.String())
	}
	hang(warm())
	before := rt.Load()
	id := warm()
	placed := rt.Load() - before
	hang(id)
	ended := rt.Load() - before - placed
	assert.Equal(t, int64(4), placed, "a call: block check, Reserve, Open, Bind")
	assert.Equal(t, int64(3), ended, "a hang-up: block check, Get, End")
	t.Logf("Redis round trips: %d per call, %d per hang-up", placed, ended)
}
