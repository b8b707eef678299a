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

// TestMemoryStoreBasics walks one session through its life; the
// conformance suite (realtimeauthtest.TestSessionStore) holds the contract.
func TestMemoryStoreBasics(t *testing.T) {
	ctx := context.Background()
	st := realtimeauth.NewMemoryStore()
	s, evicted, err := st.Open(ctx, realtimeauth.OpenRequest{
		Now: t0, ExpiresAt: t0.Add(time.Hour), ClientIP: "192.0.2.1", Client: "192.0.2.1", Subject: "u",
		Allowances: []realtimeauth.Allowance{{Key: "n:192.0.2.1", Limit: 1, Window: time.Minute}},
	})
	require.NoError(t, err)
	assert.Empty(t, evicted)
	assert.Equal(t, uuid.MustParse(s.ID).String(), s.ID)
	assert.Equal(t, realtimeauth.Session{ID: s.ID, ClientIP: "192.0.2.1", Client: "192.0.2.1", Subject: "u",
		CreatedAt: t0, ExpiresAt: t0.Add(time.Hour), LastIssuedAt: t0}, s)

	_, _, err = st.Open(ctx, realtimeauth.OpenRequest{
		Now: t0, ExpiresAt: t0.Add(time.Hour), ClientIP: "192.0.2.1", Client: "192.0.2.1",
		Allowances: []realtimeauth.Allowance{{Key: "n:192.0.2.1", Limit: 1, Window: time.Minute}},
	})
	var le *realtimeauth.LimitError
	require.ErrorAs(t, err, &le)
	assert.Equal(t, "n:192.0.2.1", le.Key)
	assert.Equal(t, time.Minute, le.RetryAfter)

	r := realtimeauth.RefreshRequest{Now: t0.Add(time.Second), ID: s.ID, ClientIP: "192.0.2.1", Subject: "u", MaxRefreshes: 5}
	got, err := st.Refresh(ctx, r)
	require.NoError(t, err)
	assert.Equal(t, 1, got.Refreshes)
	assert.Equal(t, r.Now, got.LastIssuedAt)
	require.NoError(t, st.GiveBack(ctx, s.ID, r.Now, t0))
	n, err := st.Count(ctx, t0)
	require.NoError(t, err)
	assert.Equal(t, 1, n)
	_, err = st.Revoke(ctx, s.ID, t0)
	require.NoError(t, err)
	_, err = st.Refresh(ctx, r)
	assert.ErrorIs(t, err, realtimeauth.ErrSessionRevoked)
	n, _ = st.Count(ctx, t0)
	assert.Equal(t, 0, n)
	assert.Equal(t, 1, realtimeauth.MemoryLen(st))
	_, err = st.Revoke(ctx, s.ID, t0.Add(time.Hour))
	assert.ErrorIs(t, err, realtimeauth.ErrSessionNotFound)
	assert.Equal(t, 0, realtimeauth.MemoryLen(st))
}

// TestMemoryStoreExpiresToTheNanosecond: the memory store keeps times to
// the nanosecond, so a session is live one nanosecond before its ExpiresAt
// and gone at it (the conformance suite checks whole milliseconds).
func TestMemoryStoreExpiresToTheNanosecond(t *testing.T) {
	ctx := context.Background()
	st := realtimeauth.NewMemoryStore()
	exp := t0.Add(time.Hour + 7)
	s, _, err := st.Open(ctx, realtimeauth.OpenRequest{Now: t0, ExpiresAt: exp, ClientIP: "192.0.2.1", Client: "192.0.2.1"})
	require.NoError(t, err)
	n, _ := st.Count(ctx, exp.Add(-1))
	assert.Equal(t, 1, n)
	_, err = st.Refresh(ctx, realtimeauth.RefreshRequest{Now: exp.Add(-1), ID: s.ID, ClientIP: "192.0.2.1", MaxRefreshes: 1})
	require.NoError(t, err)
	n, _ = st.Count(ctx, exp)
	assert.Equal(t, 0, n)
	assert.Equal(t, 0, realtimeauth.MemoryLen(st))
}
