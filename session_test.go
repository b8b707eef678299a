package realtimeauth_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/realtimeauth/realtimeauth"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func sess(subject string, ttl time.Duration) realtimeauth.Session {
	return realtimeauth.Session{
		ID: uuid.NewString(), ClientIP: "198.51.100.1", Subject: subject,
		CreatedAt: t0, ExpiresAt: t0.Add(ttl), LastIssuedAt: t0,
	}
}

func TestMemoryStoreCRUD(t *testing.T) {
	ctx := context.Background()
	st := realtimeauth.NewMemoryStore()
	s := sess("alice", time.Hour)
	require.NoError(t, st.Create(ctx, s, 0))
	assert.ErrorIs(t, st.Create(ctx, s, 0), realtimeauth.ErrSessionExists)

	got, err := st.Get(ctx, s.ID, t0)
	require.NoError(t, err)
	assert.Equal(t, s, got)
	_, err = st.Get(ctx, uuid.NewString(), t0)
	assert.ErrorIs(t, err, realtimeauth.ErrSessionNotFound)

	got, err = st.Update(ctx, s.ID, realtimeauth.SessionUpdate{Now: t0.Add(time.Minute), AddRefreshes: 1, LastIssuedAt: t0.Add(time.Minute)})
	require.NoError(t, err)
	assert.Equal(t, 1, got.Refreshes)
	assert.Equal(t, t0.Add(time.Minute), got.LastIssuedAt)
	got, _ = st.Get(ctx, s.ID, t0)
	assert.Equal(t, 1, got.Refreshes, "Update is stored")
	_, err = st.Update(ctx, uuid.NewString(), realtimeauth.SessionUpdate{Now: t0})
	assert.ErrorIs(t, err, realtimeauth.ErrSessionNotFound)

	n, err := st.Count(ctx, t0)
	require.NoError(t, err)
	assert.Equal(t, 1, n)

	require.NoError(t, st.Delete(ctx, s.ID))
	require.NoError(t, st.Delete(ctx, s.ID), "deleting an unknown ID is not an error")
	_, err = st.Get(ctx, s.ID, t0)
	assert.ErrorIs(t, err, realtimeauth.ErrSessionNotFound)
	n, _ = st.Count(ctx, t0)
	assert.Equal(t, 0, n)
}

// TestMemoryStoreFailedUpdateChangesNothing: a failed condition returns
// the stored session unchanged.
func TestMemoryStoreFailedUpdateChangesNothing(t *testing.T) {
	ctx := context.Background()
	st := realtimeauth.NewMemoryStore()
	s := sess("", time.Hour)
	require.NoError(t, st.Create(ctx, s, 0))
	got, err := st.Update(ctx, s.ID, realtimeauth.SessionUpdate{
		Now: t0.Add(time.Second), MinInterval: 10 * time.Second, AddRefreshes: 1, LastIssuedAt: t0.Add(time.Second),
	})
	assert.ErrorIs(t, err, realtimeauth.ErrRefreshTooSoon)
	assert.Equal(t, s, got, "the caller can compute Retry-After from LastIssuedAt")
	got, _ = st.Get(ctx, s.ID, t0)
	assert.Equal(t, s, got)
}

func TestMemoryStoreExpiry(t *testing.T) {
	ctx := context.Background()
	st := realtimeauth.NewMemoryStore()
	short, long := sess("a", time.Minute), sess("a", time.Hour)
	require.NoError(t, st.Create(ctx, long, 0))
	require.NoError(t, st.Create(ctx, short, 0))

	_, err := st.Get(ctx, short.ID, t0.Add(time.Minute-time.Nanosecond))
	require.NoError(t, err)
	n, _ := st.Count(ctx, t0.Add(time.Minute-time.Nanosecond))
	assert.Equal(t, 2, n)

	_, err = st.Get(ctx, short.ID, t0.Add(time.Minute))
	assert.ErrorIs(t, err, realtimeauth.ErrSessionNotFound, "expired at ExpiresAt")
	_, err = st.Update(ctx, short.ID, realtimeauth.SessionUpdate{Now: t0.Add(time.Minute)})
	assert.ErrorIs(t, err, realtimeauth.ErrSessionNotFound)
	n, _ = st.Count(ctx, t0.Add(time.Minute))
	assert.Equal(t, 1, n)
	assert.Equal(t, 1, st.Len(), "the expired session is forgotten, not kept")

	n, _ = st.Count(ctx, t0.Add(time.Hour))
	assert.Equal(t, 0, n)
	assert.Equal(t, 0, st.Len())
}

// TestMemoryStoreExpiryAfterDeletes: deleted sessions' heap entries do not
// expire live sessions that reuse nothing of them.
func TestMemoryStoreExpiryAfterDeletes(t *testing.T) {
	ctx := context.Background()
	st := realtimeauth.NewMemoryStore()
	keep := sess("", 2*time.Hour)
	require.NoError(t, st.Create(ctx, keep, 0))
	for i := range 500 {
		s := sess("", time.Duration(i+1)*time.Second)
		require.NoError(t, st.Create(ctx, s, 0))
		require.NoError(t, st.Delete(ctx, s.ID))
	}
	n, _ := st.Count(ctx, t0.Add(time.Hour))
	assert.Equal(t, 1, n)
	_, err := st.Get(ctx, keep.ID, t0.Add(2*time.Hour-time.Second))
	assert.NoError(t, err)
	n, _ = st.Count(ctx, t0.Add(2*time.Hour))
	assert.Equal(t, 0, n)
}

func TestMemoryStoreFull(t *testing.T) {
	ctx := context.Background()
	st := realtimeauth.NewMemoryStore(realtimeauth.WithMemoryMaxKeys(2))
	require.NoError(t, st.Create(ctx, sess("", time.Minute), 0))
	require.NoError(t, st.Create(ctx, sess("", time.Hour), 0))
	assert.ErrorIs(t, st.Create(ctx, sess("", time.Hour), 0), realtimeauth.ErrStoreFull)
	// Expiry frees room.
	s := sess("", time.Hour)
	s.CreatedAt = t0.Add(time.Minute)
	assert.NoError(t, st.Create(ctx, s, 0))
}

func TestMemoryStoreRevokeSubject(t *testing.T) {
	ctx := context.Background()
	st := realtimeauth.NewMemoryStore()
	a1, a2, b := sess("alice", time.Hour), sess("alice", time.Hour), sess("bob", time.Hour)
	for _, s := range []realtimeauth.Session{a1, a2, b} {
		require.NoError(t, st.Create(ctx, s, 0))
	}
	n, err := st.RevokeSubject(ctx, "alice", t0)
	require.NoError(t, err)
	assert.Equal(t, 2, n)
	n, _ = st.RevokeSubject(ctx, "alice", t0)
	assert.Equal(t, 0, n, "already revoked")
	n, _ = st.RevokeSubject(ctx, "nobody", t0)
	assert.Equal(t, 0, n)

	count, _ := st.Count(ctx, t0)
	assert.Equal(t, 1, count, "revoked sessions are not active")
	got, err := st.Get(ctx, a1.ID, t0)
	require.NoError(t, err, "revoked sessions stay until they expire")
	assert.True(t, got.Revoked)
	_, err = st.Update(ctx, a1.ID, realtimeauth.SessionUpdate{Now: t0})
	assert.ErrorIs(t, err, realtimeauth.ErrSessionRevoked)

	// Revoked sessions do not count against the per-subject cap.
	assert.NoError(t, st.Create(ctx, sess("alice", time.Hour), 1))
	assert.ErrorIs(t, st.Create(ctx, sess("alice", time.Hour), 1), realtimeauth.ErrTooManySessions)

	// Deleting and expiring revoked sessions keeps Count right.
	require.NoError(t, st.Delete(ctx, a2.ID))
	count, _ = st.Count(ctx, t0)
	assert.Equal(t, 2, count)
	count, _ = st.Count(ctx, t0.Add(time.Hour))
	assert.Equal(t, 0, count)
}

// TestMemoryStorePerSubjectCapConcurrent: n+10 concurrent creates for one
// subject store exactly n.
func TestMemoryStorePerSubjectCapConcurrent(t *testing.T) {
	const n = 25
	ctx := context.Background()
	st := realtimeauth.NewMemoryStore()
	require.NoError(t, st.Create(ctx, sess("other", time.Hour), n))
	var wg sync.WaitGroup
	var mu sync.Mutex
	results := map[string]int{}
	for range n + 10 {
		wg.Go(func() {
			err := st.Create(ctx, sess("alice", time.Hour), n)
			key := "ok"
			if err != nil {
				key = err.Error()
				assert.ErrorIs(t, err, realtimeauth.ErrTooManySessions)
			}
			mu.Lock()
			results[key]++
			mu.Unlock()
		})
	}
	wg.Wait()
	assert.Equal(t, map[string]int{"ok": n, realtimeauth.ErrTooManySessions.Error(): 10}, results)
	// An expired session no longer counts.
	s := sess("alice", time.Hour)
	s.CreatedAt = t0.Add(time.Hour)
	s.ExpiresAt = t0.Add(2 * time.Hour)
	assert.NoError(t, st.Create(ctx, s, n))
}

// TestApplySessionUpdateOrder: the conditions are checked in the
// documented order, and a failure changes nothing.
func TestApplySessionUpdateOrder(t *testing.T) {
	base := realtimeauth.Session{ClientIP: "1.1.1.1", Subject: "alice", Refreshes: 3, LastIssuedAt: t0}
	all := realtimeauth.SessionUpdate{ // every condition fails
		Now: t0.Add(time.Second), ClientIP: "2.2.2.2", Subject: "bob", MaxRefreshes: 3, MinInterval: time.Minute,
		AddRefreshes: 1, LastIssuedAt: t0.Add(time.Second),
	}
	steps := []struct {
		fix  func(s *realtimeauth.Session, u *realtimeauth.SessionUpdate)
		want error
	}{
		{func(s *realtimeauth.Session, _ *realtimeauth.SessionUpdate) { s.Revoked = true }, realtimeauth.ErrSessionRevoked},
		{func(s *realtimeauth.Session, _ *realtimeauth.SessionUpdate) { s.Revoked = false }, realtimeauth.ErrSessionMismatch},
		{func(_ *realtimeauth.Session, u *realtimeauth.SessionUpdate) { u.ClientIP = "1.1.1.1" }, realtimeauth.ErrSessionMismatch},
		{func(_ *realtimeauth.Session, u *realtimeauth.SessionUpdate) { u.Subject = "alice" }, realtimeauth.ErrRefreshLimit},
		{func(_ *realtimeauth.Session, u *realtimeauth.SessionUpdate) { u.MaxRefreshes = 4 }, realtimeauth.ErrRefreshTooSoon},
		{func(_ *realtimeauth.Session, u *realtimeauth.SessionUpdate) { u.Now = t0.Add(time.Minute) }, nil},
	}
	s, u := base, all
	for i, st := range steps {
		st.fix(&s, &u)
		before := s
		err := realtimeauth.ApplySessionUpdate(&s, u)
		if st.want != nil {
			assert.ErrorIs(t, err, st.want, "step %d", i)
			assert.Equal(t, before, s, "step %d changed the session", i)
			continue
		}
		require.NoError(t, err)
		assert.Equal(t, 4, s.Refreshes)
		assert.Equal(t, t0.Add(time.Second), s.LastIssuedAt)
	}

	// Zero fields skip their check; IfLastIssuedAt guards the change.
	s = realtimeauth.Session{Refreshes: 1, LastIssuedAt: t0}
	require.NoError(t, realtimeauth.ApplySessionUpdate(&s, realtimeauth.SessionUpdate{
		Now: t0, AddRefreshes: -1, LastIssuedAt: t0.Add(-time.Minute), IfLastIssuedAt: t0.Add(time.Second),
	}))
	assert.Equal(t, 0, s.Refreshes)
	assert.Equal(t, t0, s.LastIssuedAt, "a newer LastIssuedAt is not clobbered")
	require.NoError(t, realtimeauth.ApplySessionUpdate(&s, realtimeauth.SessionUpdate{
		Now: t0, AddRefreshes: -1, LastIssuedAt: t0.Add(-time.Minute), IfLastIssuedAt: t0, Revoke: true,
	}))
	assert.Equal(t, 0, s.Refreshes, "never below zero")
	assert.Equal(t, t0.Add(-time.Minute), s.LastIssuedAt)
	assert.True(t, s.Revoked)
}

func TestMemoryStoreConcurrentUpdates(t *testing.T) {
	ctx := context.Background()
	st := realtimeauth.NewMemoryStore()
	s := sess("", time.Hour)
	require.NoError(t, st.Create(ctx, s, 0))
	var wg sync.WaitGroup
	var mu sync.Mutex
	errs := map[error]int{}
	for range 100 {
		wg.Go(func() {
			_, err := st.Update(ctx, s.ID, realtimeauth.SessionUpdate{Now: t0, MaxRefreshes: 40, AddRefreshes: 1})
			if err != nil && !errors.Is(err, realtimeauth.ErrRefreshLimit) {
				t.Error(fmt.Errorf("unexpected: %w", err))
			}
			mu.Lock()
			errs[err]++
			mu.Unlock()
		})
	}
	wg.Wait()
	assert.Equal(t, map[error]int{nil: 40, realtimeauth.ErrRefreshLimit: 60}, errs)
}
