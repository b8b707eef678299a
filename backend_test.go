package realtimeauth_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/realtimeauth/realtimeauth"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// brokenStore fails the methods named in fail.
type brokenStore struct {
	realtimeauth.SessionStore
	fail map[string]bool
}

func (s *brokenStore) Open(ctx context.Context, req realtimeauth.OpenRequest) (realtimeauth.Session, []realtimeauth.Session, error) {
	if s.fail["Open"] {
		return realtimeauth.Session{}, nil, errBackend
	}
	return s.SessionStore.Open(ctx, req)
}

func (s *brokenStore) Refresh(ctx context.Context, req realtimeauth.RefreshRequest) (realtimeauth.Session, error) {
	if s.fail["Refresh"] {
		return realtimeauth.Session{}, errBackend
	}
	return s.SessionStore.Refresh(ctx, req)
}

// TestBackendFailures: a store that fails is 503
// store_unavailable, never a mint, and shows in health.
func TestBackendFailures(t *testing.T) {
	t.Run("store create", func(t *testing.T) {
		store := &brokenStore{SessionStore: realtimeauth.NewMemoryStore(), fail: map[string]bool{"Open": true}}
		r := newRig(t, realtimeauth.WithSessionStore(store))
		assertError(t, serveReq(r.h, req{path: tokenURL}), 503, "store_unavailable", 0)
		assert.Equal(t, 0, r.mint.Calls())
		assert.Equal(t, "degraded", r.h.Stats().SessionTracking.Status)
	})
	t.Run("store update", func(t *testing.T) {
		store := &brokenStore{SessionStore: realtimeauth.NewMemoryStore(), fail: map[string]bool{}}
		r := newRig(t, realtimeauth.WithSessionStore(store))
		id := issueToken(t, r.h, defaultRemote)["sessionId"].(string)
		r.clock.Advance(time.Minute)
		store.fail["Refresh"] = true
		assertError(t, serveReq(r.h, req{path: refrURL, body: refreshBody(id)}), 503, "store_unavailable", 0)
		assert.Equal(t, 1, r.mint.Calls())
	})
	t.Run("store full", func(t *testing.T) {
		r := newRig(t, realtimeauth.WithLimits(realtimeauth.Limits{MaxSessions: 1}))
		issueToken(t, r.h, defaultRemote)
		// The heaviest client is refused; another client evicts its session.
		assertError(t, serveReq(r.h, req{path: tokenURL}), 429, "too_many_sessions", 0)
		assert.Equal(t, 200, serveReq(r.h, req{path: tokenURL, remote: "192.0.2.1:1"}).Code)
		assert.Equal(t, 2, r.mint.Calls())
	})
}

// TestRefreshNeedsTheSameSessionID: a refresh for one session never
// touches another.
func TestRefreshNeedsTheSameSessionID(t *testing.T) {
	r := newRig(t, realtimeauth.WithLimits(realtimeauth.Limits{MaxRefreshes: 1, MinRefreshInterval: -1}))
	a := issueToken(t, r.h, defaultRemote)["sessionId"].(string)
	b := issueToken(t, r.h, defaultRemote)["sessionId"].(string)
	require.Equal(t, 200, serveReq(r.h, req{path: refrURL, body: refreshBody(a)}).Code)
	assertError(t, serveReq(r.h, req{path: refrURL, body: refreshBody(a)}), 403, "refresh_limit_reached", 0)
	assert.Equal(t, 200, serveReq(r.h, req{path: refrURL, body: refreshBody(b)}).Code)
	assertError(t, serveReq(r.h, req{path: refrURL, body: refreshBody(uuid.NewString())}), 404, "session_not_found", 0)
}
