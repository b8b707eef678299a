package redisstore_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/realtimeauth/realtimeauth/calls"
	"github.com/realtimeauth/realtimeauth/realtimeauthtest"
	"github.com/realtimeauth/realtimeauth/redisstore"
	"github.com/realtimeauth/realtimeauth/redisstore/redistest"
)

func TestCallRegistry(t *testing.T) {
	eachTopology(t, func(t *testing.T, rdb redis.UniversalClient) {
		n := 0
		realtimeauthtest.TestCallRegistry(t, func(t *testing.T) calls.Registry {
			n++ // a prefix per subtest: each starts empty
			r, err := redisstore.NewCallRegistry(context.Background(), rdb, redisstore.WithPrefix(fmt.Sprintf("calls%d", n)))
			require.NoError(t, err)
			return r
		})
	})
}

// TestCallRegistryKeysFollowLiveCalls: once every call has ended or
// expired, the registry's keys are gone but for the slot counter.
func TestCallRegistryKeysFollowLiveCalls(t *testing.T) {
	srv := redistest.Start(t)
	rdb, _ := newClient(t, srv)
	ctx := context.Background()
	r, err := redisstore.NewCallRegistry(ctx, rdb)
	require.NoError(t, err)
	for i, id := range []string{"rtc_a", "rtc_b", "rtc_c"} {
		slot, err := r.Reserve(ctx, calls.Reservation{
			Now: t0, HoldUntil: t0.Add(time.Minute), ClientIP: "10.0.0.1", Client: "10.0.0.1", Subject: "alice",
		})
		require.NoError(t, err)
		if i == 2 {
			continue // never bound: its hold runs out
		}
		_, err = r.Bind(ctx, calls.Start{Slot: slot, ID: id, SessionID: "s", StartedAt: t0, Deadline: t0.Add(time.Second), ExpiresAt: t0.Add(time.Hour)})
		require.NoError(t, err)
	}
	_, err = r.End(ctx, "rtc_a", t0)
	require.NoError(t, err)
	n, err := r.Count(ctx, t0.Add(time.Hour))
	require.NoError(t, err)
	assert.Equal(t, 0, n)
	keys, err := rdb.Keys(ctx, "*").Result()
	require.NoError(t, err)
	assert.Equal(t, []string{"{realtimeauth:calls}:seq"}, keys)
}

func TestCallRegistryRedisDown(t *testing.T) {
	srv := redistest.Start(t)
	rdb, _ := newClient(t, srv)
	ctx := context.Background()
	r, err := redisstore.NewCallRegistry(ctx, rdb)
	require.NoError(t, err)
	srv.Stop()
	_, err = r.Reserve(ctx, calls.Reservation{Now: t0, HoldUntil: t0.Add(time.Second), Client: "c"})
	assert.Error(t, err)
	assert.NotErrorIs(t, err, calls.ErrTooMany)
	_, err = r.Bind(ctx, calls.Start{Slot: "1", ID: "rtc", StartedAt: t0})
	assert.Error(t, err)
	assert.NotErrorIs(t, err, calls.ErrNotFound)
	assert.Error(t, r.Release(ctx, "1"))
	_, err = r.Get(ctx, "rtc", t0)
	assert.NotErrorIs(t, err, calls.ErrNotFound)
	assert.Error(t, err)
	_, err = r.SessionCalls(ctx, "s", t0)
	assert.Error(t, err)
	_, err = r.ClaimDue(ctx, t0, time.Second, 1)
	assert.Error(t, err)
	_, err = r.Count(ctx, t0)
	assert.Error(t, err)
	_, err = redisstore.NewCallRegistry(ctx, rdb) // its policy check cannot reach Redis
	assert.Error(t, err)
	_, err = redisstore.NewCallRegistry(ctx, nil)
	assert.Error(t, err)
}
