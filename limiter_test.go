package realtimeauth_test

import (
	"context"
	"fmt"
	"math/big"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/realtimeauth/realtimeauth"
	"github.com/realtimeauth/realtimeauth/realtimeauthtest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func newLimiter(limit int, window time.Duration, opts ...realtimeauth.MemoryOption) (*realtimeauth.MemoryLimiter, *realtimeauthtest.Clock) {
	clock := realtimeauthtest.NewClock(t0)
	return realtimeauth.NewMemoryLimiter(limit, window, append([]realtimeauth.MemoryOption{realtimeauth.WithMemoryClock(clock.Now)}, opts...)...), clock
}

func allow(t *testing.T, l realtimeauth.Limiter, key string) realtimeauth.Decision {
	t.Helper()
	d, err := l.Allow(context.Background(), key)
	require.NoError(t, err)
	return d
}

func TestLimiterWithinWindow(t *testing.T) {
	l, clock := newLimiter(3, time.Minute)
	for i := range 3 {
		d := allow(t, l, "a")
		assert.Equal(t, realtimeauth.Decision{Allowed: true, Limit: 3, Remaining: 2 - i}, d)
		clock.Advance(time.Second)
	}
	d := allow(t, l, "a")
	assert.False(t, d.Allowed)
	assert.Equal(t, 3, d.Limit)
	assert.Equal(t, 0, d.Remaining)
	assert.Positive(t, d.RetryAfter)
	assert.True(t, allow(t, l, "b").Allowed, "keys are independent")
}

// TestLimiterWeights: the previous window's count weighs by the share of
// it still inside the sliding window.
func TestLimiterWeights(t *testing.T) {
	l, clock := newLimiter(4, time.Minute)
	for range 4 {
		require.True(t, allow(t, l, "k").Allowed)
	}
	// A quarter into the next window: 4*0.75 = 3 estimated, room for one.
	clock.Advance(time.Minute + 15*time.Second)
	d := allow(t, l, "k")
	assert.True(t, d.Allowed)
	assert.Equal(t, 0, d.Remaining)
	assert.False(t, allow(t, l, "k").Allowed)
	// Three quarters in: 4*0.25 + 1 = 2 estimated, room for two more.
	clock.Advance(30 * time.Second)
	assert.True(t, allow(t, l, "k").Allowed)
	assert.True(t, allow(t, l, "k").Allowed)
	assert.False(t, allow(t, l, "k").Allowed)
	// Two windows later everything has rolled out.
	clock.Advance(2 * time.Minute)
	for range 4 {
		assert.True(t, allow(t, l, "k").Allowed)
	}
	assert.False(t, allow(t, l, "k").Allowed)
}

// TestLimiterRetryAfterIsExact: for many histories, a request at
// now+RetryAfter is admitted and one a millisecond earlier is not.
func TestLimiterRetryAfterIsExact(t *testing.T) {
	for _, limit := range []int{1, 2, 3, 7, 10, 100} {
		for _, window := range []time.Duration{time.Second, time.Minute, 7 * time.Second} {
			for _, step := range []time.Duration{0, 37 * time.Millisecond, window / 9, window / 3} {
				t.Run(fmt.Sprintf("%d/%v step %v", limit, window, step), func(t *testing.T) {
					l, clock := newLimiter(limit, window)
					checked := 0
					for i := 0; i < 4*limit+8 && checked < 12; i++ {
						d := allow(t, l, "k")
						if !d.Allowed || i%3 == 2 {
							for d.Allowed { // run into the limit
								d = allow(t, l, "k")
							}
							checked++
							require.Positive(t, d.RetryAfter)
							require.Zero(t, d.RetryAfter%time.Millisecond, "whole milliseconds")
							at := clock.Now()
							clock.Set(at.Add(d.RetryAfter - time.Millisecond))
							early := allow(t, l, "k")
							require.False(t, early.Allowed, "1ms before RetryAfter %v", d.RetryAfter)
							clock.Set(at.Add(d.RetryAfter))
							require.True(t, allow(t, l, "k").Allowed, "at RetryAfter %v", d.RetryAfter)
						}
						clock.Advance(step)
					}
					assert.Positive(t, checked)
				})
			}
		}
	}
}

// TestLimiterRejectionsDoNotCount: hammering while limited changes
// nothing.
func TestLimiterRejectionsDoNotCount(t *testing.T) {
	quiet, qc := newLimiter(2, time.Minute)
	noisy, nc := newLimiter(2, time.Minute)
	for range 2 {
		require.True(t, allow(t, quiet, "k").Allowed)
		require.True(t, allow(t, noisy, "k").Allowed)
	}
	first := allow(t, noisy, "k")
	for range 1000 {
		d := allow(t, noisy, "k")
		require.False(t, d.Allowed)
		require.Equal(t, first.RetryAfter, d.RetryAfter)
	}
	qc.Advance(first.RetryAfter)
	nc.Advance(first.RetryAfter)
	assert.True(t, allow(t, quiet, "k").Allowed)
	assert.True(t, allow(t, noisy, "k").Allowed)
	assert.Equal(t, allow(t, quiet, "k"), allow(t, noisy, "k"))
}

// TestLimiterSweepsIdleKeys: a key idle for a whole window is forgotten
// the next time its shard is used.
func TestLimiterSweepsIdleKeys(t *testing.T) {
	l, clock := newLimiter(5, time.Minute)
	for i := range 1000 {
		allow(t, l, fmt.Sprintf("old-%d", i))
	}
	require.Equal(t, 1000, l.Len())
	clock.Advance(time.Minute)
	allow(t, l, "old-0") // still in the previous window: kept
	clock.Advance(time.Minute)
	// 10,000 new keys touch every one of the 256 shards.
	for i := range 10000 {
		allow(t, l, fmt.Sprintf("new-%d", i))
	}
	assert.Equal(t, 10001, l.Len(), "the new keys and old-0")
}

func TestLimiterMaxKeys(t *testing.T) {
	l, _ := newLimiter(5, time.Minute, realtimeauth.WithMemoryMaxKeys(512))
	for i := range 20000 {
		require.True(t, allow(t, l, fmt.Sprintf("k-%d", i)).Allowed)
		if i%1000 == 0 {
			require.LessOrEqual(t, l.Len(), 512)
		}
	}
	assert.LessOrEqual(t, l.Len(), 512)
	assert.Greater(t, l.Len(), 256)
}

func TestLimiterBoundsPanic(t *testing.T) {
	assert.Panics(t, func() { realtimeauth.NewMemoryLimiter(0, time.Minute) })
	assert.Panics(t, func() { realtimeauth.NewMemoryLimiter(-1, time.Minute) })
	assert.Panics(t, func() { realtimeauth.NewMemoryLimiter(realtimeauth.MaxMemoryLimit+1, time.Minute) })
	assert.Panics(t, func() { realtimeauth.NewMemoryLimiter(1, 0) })
	assert.Panics(t, func() { realtimeauth.NewMemoryLimiter(1, -time.Second) })

	l, _ := newLimiter(realtimeauth.MaxMemoryLimit, time.Hour)
	for range 1000 {
		require.True(t, allow(t, l, "k").Allowed)
	}
	assert.Equal(t, realtimeauth.MaxMemoryLimit-1001, allow(t, l, "k").Remaining)
}

// TestLimiterConcurrentExact: N concurrent events for one key under limit
// L admit exactly L.
func TestLimiterConcurrentExact(t *testing.T) {
	const n, limit = 500, 123
	l, _ := newLimiter(limit, time.Minute)
	var admitted atomic.Int64
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			if d, _ := l.Allow(context.Background(), "k"); d.Allowed {
				admitted.Add(1)
			}
		})
	}
	wg.Wait()
	assert.Equal(t, int64(limit), admitted.Load())
}

// TestLimiterMatchesExactArithmetic compares the limiter with the
// weighted-window rule evaluated in exact rationals, over pseudo-random
// histories.
func TestLimiterMatchesExactArithmetic(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for round := range 40 {
		limit := 1 + rng.IntN(20)
		window := time.Duration(1+rng.IntN(5000)) * time.Millisecond * 7
		l, clock := newLimiter(limit, window)
		var win, prev, cur int64 // reference state
		for i := range 300 {
			clock.Advance(time.Duration(rng.Int64N(int64(window) / int64(1+limit))))
			elapsed := int64(clock.Now().Sub(t0))
			w := int64(window)
			nw, into := elapsed/w, elapsed%w
			switch nw - win {
			case 0:
			case 1:
				prev, cur = cur, 0
			default:
				prev, cur = 0, 0
			}
			win = nw
			// est = prev*(w-into)/w + cur
			est := new(big.Rat).SetFrac64(prev*(w-into), w)
			est.Add(est, big.NewRat(cur, 1))
			room := new(big.Rat).Sub(big.NewRat(int64(limit)-1, 1), est) // limit - est - 1
			d := allow(t, l, "k")
			wantAllowed := room.Sign() >= 0
			require.Equal(t, wantAllowed, d.Allowed, "round %d step %d: prev %d cur %d into %d/%d", round, i, prev, cur, into, w)
			if wantAllowed {
				floor := new(big.Int).Quo(room.Num(), room.Denom())
				require.Equal(t, floor.Int64(), int64(d.Remaining))
				cur++
			}
		}
	}
}
