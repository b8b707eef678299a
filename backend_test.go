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

// brokenLimiter's backend is down.
type brokenLimiter struct{}

func (brokenLimiter) Allow(context.Context, string) (realtimeauth.Decision, error) {
	return realtimeauth.Decision{}, errBackend
}

// brokenStore fails the methods named in fail.
type brokenStore struct {
	realtimeauth.SessionStore
	fail map[string]bool
}

func (s *brokenStore) Create(ctx context.Context, x realtimeauth.Session, n int) error {
	if s.fail["Create"] {
		return errBackend
	}
	return s.SessionStore.Create(ctx, x, n)
}

func (s *brokenStore) Update(ctx context.Context, id string, u realtimeauth.SessionUpdate) (realtimeauth.Session, error) {
	if s.fail["Update"] {
		return realtimeauth.Session{}, errBackend
	}
	return s.SessionStore.Update(ctx, id, u)
}

// TestBackendFailures: a limiter or store that fails is 503
// store_unavailable, never a mint, and shows in health.
func TestBackendFailures(t *testing.T) {
	t.Run("limiter", func(t *testing.T) {
		ev := &events{}
		r := newRig(t, realtimeauth.WithLimiter(brokenLimiter{}), realtimeauth.WithEventHook(ev.Hook))
		for range 3 {
			assertError(t, serveReq(r.h, req{path: tokenURL}), 503, "store_unavailable", 0)
		}
		assert.Equal(t, 0, r.mint.Calls())
		assert.Len(t, ev.Named(realtimeauth.EventStoreError), 3)
		st := r.h.Stats()
		assert.Equal(t, realtimeauth.ServiceDown, st.RateLimit.Status)
		assert.Equal(t, realtimeauth.StatusUnhealthy, st.Status)
		assert.Equal(t, 1.0, st.ErrorRate)
	})
	t.Run("store create", func(t *testing.T) {
		store := &brokenStore{SessionStore: realtimeauth.NewMemoryStore(), fail: map[string]bool{"Create": true}}
		r := newRig(t, realtimeauth.WithSessionStore(store))
		assertError(t, serveReq(r.h, req{path: tokenURL}), 503, "store_unavailable", 0)
		assert.Equal(t, 0, r.mint.Calls())
		assert.Equal(t, realtimeauth.ServiceDegraded, r.h.Stats().SessionTracking.Status)
	})
	t.Run("store update", func(t *testing.T) {
		store := &brokenStore{SessionStore: realtimeauth.NewMemoryStore(), fail: map[string]bool{}}
		r := newRig(t, realtimeauth.WithSessionStore(store))
		id := issueToken(t, r.h, defaultRemote)["sessionId"].(string)
		r.clock.Advance(time.Minute)
		store.fail["Update"] = true
		assertError(t, serveReq(r.h, req{path: refrURL, body: refreshBody(id)}), 503, "store_unavailable", 0)
		assert.Equal(t, 1, r.mint.Calls())
	})
	t.Run("store full", func(t *testing.T) {
		r := newRig(t, realtimeauth.WithMemoryLimits(1))
		issueToken(t, r.h, defaultRemote)
		assertError(t, serveReq(r.h, req{path: tokenURL, remote: "192.0.2.1:1"}), 503, "store_unavailable", 0)
		assert.Equal(t, 1, r.mint.Calls())
	})
}

// TestRefreshNeedsTheSameSessionID: a refresh for one session never
// touches another.
func TestRefreshNeedsTheSameSessionID(t *testing.T) {
	r := newRig(t, realtimeauth.WithRefreshPolicy(1, 0))
	a := issueToken(t, r.h, defaultRemote)["sessionId"].(string)
	b := issueToken(t, r.h, defaultRemote)["sessionId"].(string)
	require.Equal(t, 200, serveReq(r.h, req{path: refrURL, body: refreshBody(a)}).Code)
	assertError(t, serveReq(r.h, req{path: refrURL, body: refreshBody(a)}), 403, "refresh_limit_reached", 0)
	assert.Equal(t, 200, serveReq(r.h, req{path: refrURL, body: refreshBody(b)}).Code)
	assertError(t, serveReq(r.h, req{path: refrURL, body: refreshBody(uuid.NewString())}), 404, "session_not_found", 0)
}
