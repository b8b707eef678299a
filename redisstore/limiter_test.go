package redisstore_test

import (
	"bytes"
	"context"
	"log/slog"
	"math/rand/v2"
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

// limiterStep is one Allow call after advancing the shared clock.
type limiterStep struct {
	advance time.Duration
	key     string
}

// TestLimiterMatchesMemoryLimiter runs a MemoryLimiter and a Limiter
// through the same calls at the same clock readings and requires the same
// decisions, RetryAfter to the millisecond included.
func TestLimiterMatchesMemoryLimiter(t *testing.T) { eachTopology(t, testLimiterMatches) }

func testLimiterMatches(t *testing.T, rdb redis.UniversalClient) {
	rng := rand.New(rand.NewPCG(1, 2))
	var random []limiterStep
	for range 600 {
		random = append(random, limiterStep{
			advance: time.Duration(rng.Int64N(int64(9 * time.Second))),
			key:     []string{"a", "b", "c"}[rng.IntN(3)],
		})
	}
	burst := func(n int, advance time.Duration) []limiterStep {
		s := make([]limiterStep, n)
		for i := range s {
			s[i] = limiterStep{advance: advance, key: "k"}
		}
		return s
	}
	cases := []struct {
		name  string
		limit int
		steps []limiterStep
	}{
		{"burst over the limit in one window", 3, burst(6, 0)},
		{"steady rate across windows", 5, burst(40, 7*time.Second)},
		{"into the next window with a full previous one", 4, append(burst(5, time.Second), burst(8, 13*time.Second)...)},
		{"a quiet window forgets", 2, append(burst(3, 0), limiterStep{advance: 2 * time.Minute, key: "k"}, limiterStep{key: "k"}, limiterStep{key: "k"})},
		{"limit 1", 1, burst(20, 17*time.Second+300*time.Microsecond)},
		{"sub-millisecond retry rounding", 7, burst(30, 1234567*time.Nanosecond)},
		{"random keys and gaps", 5, random},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			clock := realtimeauthtest.NewClock(t0)
			mem := realtimeauth.NewMemoryLimiter(tc.limit, time.Minute, realtimeauth.WithMemoryClock(clock.Now))
			rl, err := redisstore.NewLimiter(rdb, tc.limit, time.Minute,
				redisstore.WithClock(clock.Now), redisstore.WithPrefix("eq"+string(rune('a'+i))))
			require.NoError(t, err)
			allowed, rejected := 0, 0
			for j, st := range tc.steps {
				clock.Advance(st.advance)
				want, err := mem.Allow(context.Background(), st.key)
				require.NoError(t, err)
				got, err := rl.Allow(context.Background(), st.key)
				require.NoError(t, err)
				require.Equal(t, want, got, "step %d at %v", j, clock.Now().Sub(t0))
				if got.Allowed {
					allowed++
				} else {
					rejected++
				}
			}
			// The table must exercise both answers to mean anything.
			assert.Positive(t, allowed)
			assert.Positive(t, rejected)
		})
	}
}

// TestLimiterServerClock uses the default clock, Redis's TIME.
func TestLimiterServerClock(t *testing.T) {
	_, rdb, _ := startRedis(t)
	rl, err := redisstore.NewLimiter(rdb, 3, time.Hour)
	require.NoError(t, err)
	ctx := context.Background()
	for i := range 3 {
		d, err := rl.Allow(ctx, "ip")
		require.NoError(t, err)
		assert.Equal(t, realtimeauth.Decision{Allowed: true, Limit: 3, Remaining: 2 - i}, d)
	}
	d, err := rl.Allow(ctx, "ip")
	require.NoError(t, err)
	assert.False(t, d.Allowed)
	assert.Greater(t, d.RetryAfter, time.Duration(0))
	assert.LessOrEqual(t, d.RetryAfter, 2*time.Hour)
	assert.Zero(t, d.RetryAfter%time.Millisecond)
	d, err = rl.Allow(ctx, "other")
	require.NoError(t, err)
	assert.True(t, d.Allowed, "keys are independent")
}

// TestLimiterConcurrent: 200 concurrent calls for one key under a limit of
// 50, through two clients, admit exactly 50.
func TestLimiterConcurrent(t *testing.T) {
	srv, rdb, _ := startRedis(t)
	rdb2, _ := newClient(t, srv)
	var limiters [2]*redisstore.Limiter
	for i, c := range []redis.UniversalClient{rdb, rdb2} {
		l, err := redisstore.NewLimiter(c, 50, time.Hour)
		require.NoError(t, err)
		limiters[i] = l
	}
	var admitted atomic.Int64
	var wg sync.WaitGroup
	for i := range 200 {
		wg.Go(func() {
			d, err := limiters[i%2].Allow(context.Background(), "ip")
			assert.NoError(t, err)
			if d.Allowed {
				admitted.Add(1)
			}
		})
	}
	wg.Wait()
	assert.Equal(t, int64(50), admitted.Load())
}

func TestLimiterOptionsRefused(t *testing.T) {
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	defer rdb.Close()
	cases := []struct {
		name   string
		client redis.UniversalClient
		limit  int
		window time.Duration
		opts   []redisstore.Option
		want   string
	}{
		{"nil client", nil, 1, time.Second, nil, "client is nil"},
		{"zero limit", rdb, 0, time.Second, nil, "limit 0"},
		{"limit too large", rdb, realtimeauth.MaxMemoryLimit + 1, time.Second, nil, "outside 1.."},
		{"zero window", rdb, 1, 0, nil, "window 0s"},
		{"sub-millisecond window", rdb, 1, 1500 * time.Microsecond, nil, "whole number of milliseconds"},
		{"empty prefix", rdb, 1, time.Second, []redisstore.Option{redisstore.WithPrefix("")}, "WithPrefix"},
		{"brace in prefix", rdb, 1, time.Second, []redisstore.Option{redisstore.WithPrefix("a{b")}, "WithPrefix"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			l, err := redisstore.NewLimiter(tc.client, tc.limit, tc.window, tc.opts...)
			assert.Nil(t, l)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}

// TestLimiterFailure stops Redis under a fail-closed and a fail-open
// limiter, then starts it again.
func TestLimiterFailure(t *testing.T) {
	srv, rdb, _ := startRedis(t)
	var logs bytes.Buffer
	closed, err := redisstore.NewLimiter(rdb, 5, time.Minute)
	require.NoError(t, err)
	open, err := redisstore.NewLimiter(rdb, 5, time.Minute, redisstore.WithPrefix("open"),
		redisstore.WithFailOpen(slog.New(slog.NewTextHandler(&logs, nil))))
	require.NoError(t, err)

	srv.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	d, err := closed.Allow(ctx, "ip")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "redisstore: limiter")
	assert.False(t, d.Allowed)
	for range 3 {
		d, err = open.Allow(ctx, "ip")
		require.NoError(t, err)
		assert.Equal(t, realtimeauth.Decision{Allowed: true, Limit: 5}, d)
	}
	assert.Equal(t, 1, strings.Count(logs.String(), "limiter failed open"), "logged once a second, not per call")

	srv.Restart()
	d, err = closed.Allow(context.Background(), "ip")
	require.NoError(t, err, "recovers by itself")
	assert.Equal(t, realtimeauth.Decision{Allowed: true, Limit: 5, Remaining: 4}, d)
}
