package redisstore_test

import (
	"context"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/realtimeauth/realtimeauth"
	"github.com/realtimeauth/realtimeauth/redisstore"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestAbuseGuardMatchesMemoryAbuseGuard runs both guards through the same
// strikes and checks at the same times.
func TestAbuseGuardMatchesMemoryAbuseGuard(t *testing.T) { eachTopology(t, testAbuseGuardMatches) }

func testAbuseGuardMatches(t *testing.T, rdb redis.UniversalClient) {
	const strikes, window, blockFor = 3, 10 * time.Second, 30 * time.Second
	mem, err := realtimeauth.NewMemoryAbuseGuard(strikes, window, blockFor)
	require.NoError(t, err)
	rg, err := redisstore.NewAbuseGuard(context.Background(), rdb, strikes, window, blockFor)
	require.NoError(t, err)
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(3, 4))
	now := t0
	blocks := 0
	for i := range 800 {
		now = now.Add(time.Duration(rng.Int64N(int64(4 * time.Second))))
		key := []string{"10.0.0.1", "10.0.0.2"}[rng.IntN(2)]
		if rng.IntN(3) == 0 {
			want, err := mem.Blocked(ctx, key, now)
			require.NoError(t, err)
			got, err := rg.Blocked(ctx, key, now)
			require.NoError(t, err)
			require.Equal(t, want, got, "blocked %d", i)
			continue
		}
		wd, ws, err := mem.Strike(ctx, key, now)
		require.NoError(t, err)
		gd, gs, err := rg.Strike(ctx, key, now)
		require.NoError(t, err)
		require.Equal(t, [2]any{wd, ws}, [2]any{gd, gs}, "strike %d", i)
		if gs {
			blocks++
		}
	}
	assert.Positive(t, blocks)
}

// TestAbuseGuardConcurrent: 100 concurrent strikes from two clients over a
// threshold of 10 start exactly one block, which both see.
func TestAbuseGuardConcurrent(t *testing.T) {
	srv, rdb, _ := startRedis(t)
	rdb2, _ := newClient(t, srv)
	var guards [2]*redisstore.AbuseGuard
	for i, c := range []redis.UniversalClient{rdb, rdb2} {
		g, err := redisstore.NewAbuseGuard(context.Background(), c, 10, time.Minute, 15*time.Minute)
		require.NoError(t, err)
		guards[i] = g
	}
	ctx := context.Background()
	var started atomic.Int64
	var wg sync.WaitGroup
	for i := range 100 {
		wg.Go(func() {
			d, s, err := guards[i%2].Strike(ctx, "ip", t0)
			assert.NoError(t, err)
			if s {
				started.Add(1)
				assert.Equal(t, 15*time.Minute, d)
			}
		})
	}
	wg.Wait()
	assert.Equal(t, int64(1), started.Load())
	for _, g := range guards {
		d, err := g.Blocked(ctx, "ip", t0.Add(time.Minute))
		require.NoError(t, err)
		assert.Equal(t, 14*time.Minute, d)
	}
}

func TestAbuseGuardRefusedAndFailure(t *testing.T) {
	srv, rdb, _ := startRedis(t)
	for _, tc := range []struct {
		strikes          int
		window, blockFor time.Duration
	}{{0, time.Minute, time.Minute}, {1_000_001, time.Minute, time.Minute}, {1, 0, time.Minute}, {1, time.Minute, 0}} {
		g, err := redisstore.NewAbuseGuard(context.Background(), rdb, tc.strikes, tc.window, tc.blockFor)
		assert.Nil(t, g)
		assert.Error(t, err)
	}
	g, err := redisstore.NewAbuseGuard(context.Background(), rdb, 1, time.Minute, time.Minute)
	require.NoError(t, err)
	srv.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, err = g.Blocked(ctx, "ip", t0)
	assert.ErrorContains(t, err, "redisstore: abuse blocked")
	_, started, err := g.Strike(ctx, "ip", t0)
	assert.ErrorContains(t, err, "redisstore: abuse strike")
	assert.False(t, started)
	srv.Restart()
	_, started, err = g.Strike(context.Background(), "ip", t0)
	require.NoError(t, err, "recovers by itself")
	assert.True(t, started)
}
