package redisstore_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
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

// TestLimiterMatchesMemoryLimiter runs a memory limiter and a Limiter
// through the same calls at the same times and requires the same
// decisions, RetryAfter to the nanosecond included.
func TestLimiterMatchesMemoryLimiter(t *testing.T) { eachTopology(t, testLimiterMatches) }

func testLimiterMatches(t *testing.T, rdb redis.UniversalClient) {
	type step struct {
		advance time.Duration
		key     string
	}
	burst := func(n int, advance time.Duration) []step {
		s := make([]step, n)
		for i := range s {
			s[i] = step{advance, "k"}
		}
		return s
	}
	rng := rand.New(rand.NewPCG(1, 2))
	var random []step
	for range 600 {
		random = append(random, step{time.Duration(rng.Int64N(int64(9 * time.Second))), []string{"a", "b", "10.1.2.3"}[rng.IntN(3)]})
	}
	cases := []struct {
		name  string
		limit int
		steps []step
	}{
		{"burst over the limit in one sub-window", 3, burst(6, 0)},
		{"steady rate across windows", 5, burst(40, 7*time.Second)},
		{"rule (b): the fifth sub-window back", 8, append(burst(9, time.Second), burst(20, 3*time.Second)...)},
		{"a quiet window forgets", 2, append(burst(3, 0), step{2 * time.Minute, "k"}, step{0, "k"}, step{0, "k"})},
		{"limit 1", 1, burst(20, 17*time.Second+300*time.Microsecond)},
		{"nanosecond steps", 7, burst(30, 1234567*time.Nanosecond)},
		{"limit 1023", 1023, burst(1100, 10*time.Millisecond)},
		{"random keys and gaps", 5, random},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			mem, err := realtimeauth.NewMemoryLimiter(tc.limit, time.Minute)
			require.NoError(t, err)
			rl, err := redisstore.NewLimiter(ctx, rdb, tc.limit, time.Minute, redisstore.WithPrefix(fmt.Sprint("eq", i)))
			require.NoError(t, err)
			now := t0.Add(7*time.Second + 123)
			allowed, refused := 0, 0
			for j, st := range tc.steps {
				now = now.Add(st.advance)
				want, err := mem.Allow(ctx, st.key, now)
				require.NoError(t, err)
				got, err := rl.Allow(ctx, st.key, now)
				require.NoError(t, err)
				require.Equal(t, want, got, "step %d at %v", j, now.Sub(t0))
				if got.Allowed {
					allowed++
				} else {
					refused++
					assert.Positive(t, got.RetryAfter)
					assert.LessOrEqual(t, got.RetryAfter, time.Minute)
				}
			}
			assert.Positive(t, allowed)
			assert.Positive(t, refused)
		})
	}
}

// TestLimiterRule checks the rule's promises on Redis itself: a burst of N
// at once passes, no interval of one window's length holds more than
// floor(1.25 N) admissions, RetryAfter is exact (the event passes at
// RetryAfter and not a nanosecond before) and never above the window.
func TestLimiterRule(t *testing.T) {
	_, rdb, _ := startRedis(t)
	ctx := context.Background()
	const n, w = 8, time.Minute
	l, err := redisstore.NewLimiter(ctx, rdb, n, w)
	require.NoError(t, err)
	now := t0.Add(59 * time.Second) // late in a sub-window
	for i := range n {
		d, err := l.Allow(ctx, "burst", now)
		require.NoError(t, err)
		require.True(t, d.Allowed, "burst event %d", i)
	}

	// Greedy: every event as soon as it is allowed, probing each RetryAfter
	// a nanosecond early.
	var admitted []time.Time
	now = t0
	for now.Before(t0.Add(10 * w)) {
		d, err := l.Allow(ctx, "greedy", now)
		require.NoError(t, err)
		if d.Allowed {
			admitted = append(admitted, now)
			now = now.Add(time.Duration(rand.Int64N(int64(time.Second))))
			continue
		}
		require.Positive(t, d.RetryAfter)
		require.LessOrEqual(t, d.RetryAfter, w)
		early, err := l.Allow(ctx, "greedy", now.Add(d.RetryAfter-time.Nanosecond))
		require.NoError(t, err)
		require.False(t, early.Allowed, "a nanosecond before RetryAfter")
		now = now.Add(d.RetryAfter)
	}
	most := 0
	for i := range admitted {
		k := i
		for k < len(admitted) && admitted[k].Sub(admitted[i]) < w {
			k++
		}
		most = max(most, k-i)
	}
	assert.LessOrEqual(t, most, n*5/4, "the most admissions in any interval of one window")

	// The worst case: a burst at the end of a sub-window, then the most
	// the fourth sub-window after it admits: floor(1.25 N) within 45 s.
	late := t0.Add(15*time.Second - time.Nanosecond)
	got := 0
	for _, at := range []time.Time{late, t0.Add(time.Minute)} {
		for range n {
			d, err := l.Allow(ctx, "worst", at)
			require.NoError(t, err)
			if d.Allowed {
				got++
			}
		}
	}
	assert.Equal(t, n*5/4, got)
}

// TestLimiterConcurrent: 300 concurrent decisions for one key through two
// clients under a limit of 100 admit exactly 100.
func TestLimiterConcurrent(t *testing.T) {
	eachTopology(t, func(t *testing.T, rdb redis.UniversalClient) {
		ctx := context.Background()
		l, err := redisstore.NewLimiter(ctx, rdb, 100, time.Minute)
		require.NoError(t, err)
		var ok atomic.Int64
		var wg sync.WaitGroup
		for range 300 {
			wg.Go(func() {
				d, err := l.Allow(ctx, "2001:db8::1", t0)
				assert.NoError(t, err)
				if d.Allowed {
					ok.Add(1)
				}
			})
		}
		wg.Wait()
		assert.Equal(t, int64(100), ok.Load())
	})
}

func TestLimiterRefusedAndFailure(t *testing.T) {
	srv, rdb, _ := startRedis(t)
	ctx := context.Background()
	for _, tc := range []struct {
		limit  int
		window time.Duration
	}{{0, time.Minute}, {1024, time.Minute}, {1, 0}, {1, 6 * time.Nanosecond}} {
		l, err := redisstore.NewLimiter(ctx, rdb, tc.limit, tc.window)
		assert.Nil(t, l)
		assert.Error(t, err)
	}
	_, err := redisstore.NewLimiter(ctx, nil, 1, time.Minute)
	assert.ErrorContains(t, err, "nil")
	_, err = redisstore.NewLimiter(ctx, rdb, 1, time.Minute, redisstore.WithPrefix("a{b}"))
	assert.ErrorContains(t, err, "WithPrefix")
	_, err = redisstore.NewLimiter(ctx, rdb, 1, time.Minute, redisstore.WithBuckets(0))
	assert.ErrorContains(t, err, "WithBuckets")

	closed, err := redisstore.NewLimiter(ctx, rdb, 1, time.Minute)
	require.NoError(t, err)
	open, err := redisstore.NewLimiter(ctx, rdb, 1, time.Minute, redisstore.WithFailOpen(slog.New(slog.NewTextHandler(io.Discard, nil))))
	require.NoError(t, err)
	srv.Stop()
	cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	_, err = closed.Allow(cctx, "k", t0)
	assert.ErrorContains(t, err, "redisstore: limiter")
	for range 3 {
		d, err := open.Allow(cctx, "k", t0)
		assert.NoError(t, err)
		assert.True(t, d.Allowed, "fails open")
	}
	srv.Restart()
	d, err := closed.Allow(ctx, "k", t0)
	require.NoError(t, err, "recovers by itself (the script is loaded again)")
	assert.True(t, d.Allowed)
}
