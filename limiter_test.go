package realtimeauth_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/realtimeauth/realtimeauth"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func allowAt(t *testing.T, l realtimeauth.Limiter, key string, now time.Time) realtimeauth.Decision {
	t.Helper()
	d, err := l.Allow(context.Background(), key, now)
	require.NoError(t, err)
	return d
}

// TestLimiterMatchesReference compares the memory limiter with the rule of its
// doc evaluated naively (every admitted event's time kept), over
// pseudo-random histories: the same decisions and the same RetryAfter.
func TestLimiterMatchesReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for round := range 60 {
		limit := 1 + rng.IntN(30)
		window := time.Duration(4*(1+rng.IntN(5000))) * time.Millisecond
		l := mustLimiter(limit, window)
		q := int64(window / 4)
		var admitted []int64 // sub-window indices of admitted events
		now := t0
		for i := range 400 {
			now = now.Add(time.Duration(rng.Int64N(int64(window) / int64(1+limit))))
			m := now.UnixNano() / q
			count := func(m int64, span int64) int {
				n := 0
				for _, a := range admitted {
					if a > m-span && a <= m {
						n++
					}
				}
				return n
			}
			bigM := max(limit+1, 5*limit/4)
			want := count(m, 4)+1 <= limit && count(m, 5)+1 <= bigM
			d := allowAt(t, l, "k", now)
			require.Equal(t, want, d.Allowed, "round %d step %d", round, i)
			if want {
				admitted = append(admitted, m)
				continue
			}
			k := int64(1)
			for ; k < 4; k++ {
				if count(m+k, 4)+1 <= limit && count(m+k, 5)+1 <= bigM {
					break
				}
			}
			require.Equal(t, time.Duration((m+k)*q-now.UnixNano()), d.RetryAfter, "round %d step %d", round, i)
		}
	}
}

func TestNewMemoryLimiterValidates(t *testing.T) {
	for _, c := range []struct {
		limit  int
		window time.Duration
	}{{0, time.Minute}, {-1, time.Minute}, {1024, time.Minute}, {1, 0}, {1, -time.Second}, {1, 3}} {
		_, err := realtimeauth.NewMemoryLimiter(c.limit, c.window)
		assert.Error(t, err, "%d per %v", c.limit, c.window)
	}
	_, err := realtimeauth.NewMemoryLimiter(1023, 4)
	assert.NoError(t, err)
}

// TestLimiterSweepsIdleKeys: a key idle for 5 sub-windows is forgotten
// the next time its shard is used.
func TestLimiterSweepsIdleKeys(t *testing.T) {
	l := mustLimiter(5, time.Minute)
	for i := range 1000 {
		allowAt(t, l, fmt.Sprintf("old-%d", i), t0)
	}
	require.Equal(t, 1000, realtimeauth.MemoryLen(l))
	allowAt(t, l, "old-0", t0.Add(time.Minute)) // counted again: kept
	// 10,000 new keys touch every one of the 256 shards.
	for i := range 10000 {
		allowAt(t, l, fmt.Sprintf("new-%d", i), t0.Add(75*time.Second))
	}
	assert.Equal(t, 10001, realtimeauth.MemoryLen(l), "the new keys and old-0")
}

func TestLimiterMaxKeys(t *testing.T) {
	l := mustLimiterCap(5, time.Minute, 512)
	for i := range 20000 {
		require.True(t, allowAt(t, l, fmt.Sprintf("k-%d", i), t0).Allowed)
		if i%1000 == 0 {
			require.LessOrEqual(t, realtimeauth.MemoryLen(l), 512)
		}
	}
	assert.LessOrEqual(t, realtimeauth.MemoryLen(l), 512)
	assert.Greater(t, realtimeauth.MemoryLen(l), 256)
}

// TestLimiterTimeGoingBack: an earlier time than the shard has seen counts
// in the later sub-window, and RetryAfter stays within the window.
func TestLimiterTimeGoingBack(t *testing.T) {
	l := mustLimiter(2, time.Minute)
	later := t0.Add(10 * time.Minute)
	require.True(t, allowAt(t, l, "k", later).Allowed)
	require.True(t, allowAt(t, l, "k", t0).Allowed)
	d := allowAt(t, l, "k", t0)
	assert.False(t, d.Allowed)
	assert.Positive(t, d.RetryAfter)
	assert.LessOrEqual(t, d.RetryAfter, time.Minute)
}
