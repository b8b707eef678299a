package realtimeauthtest

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

// TestLimiter runs the Limiter contract, and the rule every limiter of this
// library keeps (NewMemoryLimiter's doc), against the limiters newLimiter
// returns: limit events per window per key, limit in 1..1023 and window a
// whole number of milliseconds divisible by 4.
func TestLimiter(t *testing.T, newLimiter func(t *testing.T, limit int, window time.Duration) realtimeauth.Limiter) {
	t.Helper()
	runCases(t, limiterCases, func(t *testing.T) limiterRig { return limiterRig{t, newLimiter} })
}

type limiterRig struct {
	t   *testing.T
	new func(t *testing.T, limit int, window time.Duration) realtimeauth.Limiter
}

func decide(t *testing.T, l realtimeauth.Limiter, key string, now time.Time) realtimeauth.Decision {
	t.Helper()
	d, err := l.Allow(context.Background(), key, now)
	require.NoError(t, err)
	if d.Allowed {
		require.Zero(t, d.RetryAfter, "an admission has no RetryAfter")
	}
	return d
}

// most is the most admissions any interval of one window's length holds:
// max(N+1, floor(5N/4)).
func most(n int) int { return max(n+1, 5*n/4) }

var suiteLimits = []int{1, 2, 3, 4, 5, 7, 10, 37}

var limiterCases = []contractCase[limiterRig]{
	{"burst", "a burst of N at once is admitted, and the next is refused; keys are independent",
		func(t *testing.T, r limiterRig) {
			for _, n := range suiteLimits {
				l := r.new(t, n, time.Minute)
				now := suiteT0.Add(17 * time.Second)
				for i := range n {
					require.True(t, decide(t, l, "k", now).Allowed, "N=%d: event %d", n, i+1)
				}
				d := decide(t, l, "k", now)
				assert.False(t, d.Allowed, "N=%d: event N+1", n)
				assert.True(t, decide(t, l, "other", now).Allowed, "N=%d: another key", n)
			}
		}},
	{"burst after idle", "a key idle for two windows admits a burst of N again",
		func(t *testing.T, r limiterRig) {
			l := r.new(t, 5, 4*time.Second)
			for range 5 {
				decide(t, l, "k", at(1300))
			}
			for i := range 5 {
				assert.True(t, decide(t, l, "k", at(9300)).Allowed, "event %d", i+1)
			}
			assert.False(t, decide(t, l, "k", at(9300)).Allowed)
		}},
	{"refused counts nothing", "a refused event does not use up the window",
		func(t *testing.T, r limiterRig) {
			quiet, noisy := r.new(t, 3, 4*time.Second), r.new(t, 3, 4*time.Second)
			for range 3 {
				decide(t, quiet, "k", at(100))
				decide(t, noisy, "k", at(100))
			}
			first := decide(t, noisy, "k", at(100))
			require.False(t, first.Allowed)
			for i := range 200 {
				d := decide(t, noisy, "k", at(100+i*10))
				require.False(t, d.Allowed, "attempt %d", i)
				require.Equal(t, first.RetryAfter-time.Duration(i*10)*time.Millisecond, d.RetryAfter, "attempt %d", i)
			}
			for ms := 100 + 2000; ms < 30_000; ms += 370 {
				assert.Equal(t, decide(t, quiet, "k", at(ms)), decide(t, noisy, "k", at(ms)), "at %dms", ms)
			}
		}},
	{"retry after", "RetryAfter is exact and 0 < RetryAfter <= window: refused a millisecond before now+RetryAfter, admitted at it",
		func(t *testing.T, r limiterRig) {
			rng := rand.New(rand.NewPCG(7, 11))
			for round := range 24 {
				n := suiteLimits[round%len(suiteLimits)]
				window := time.Duration(4*(1+rng.IntN(2500))) * time.Millisecond
				l := r.new(t, n, window)
				now := at(rng.IntN(100_000))
				for step := range 120 {
					now = now.Add(time.Duration(rng.Int64N(int64(window)/int64(n) + 1)).Truncate(time.Millisecond))
					d := decide(t, l, "k", now)
					if d.Allowed {
						continue
					}
					msg := fmt.Sprintf("round %d (N=%d, W=%v) step %d at %v", round, n, window, step, now.Sub(suiteT0))
					require.Positive(t, d.RetryAfter, msg)
					require.LessOrEqual(t, d.RetryAfter, window, msg)
					if d.RetryAfter > time.Millisecond {
						require.False(t, decide(t, l, "k", now.Add(d.RetryAfter-time.Millisecond)).Allowed, msg)
					}
					now = now.Add(d.RetryAfter)
					require.True(t, decide(t, l, "k", now).Allowed, msg)
				}
			}
		}},
	{"at most 1.25N per window", "any half-open interval of length W holds at most max(N+1, floor(5N/4)) admissions, whatever the schedule",
		func(t *testing.T, r limiterRig) {
			const window, grid, points = 4 * time.Second, 100 * time.Millisecond, 6 * 40
			rng := rand.New(rand.NewPCG(3, 5))
			for _, n := range []int{1, 2, 3, 4, 5, 8, 13} {
				l := r.new(t, n, window)
				for sched := range 14 {
					phase := rng.IntN(40)
					key := fmt.Sprintf("k%d", sched)
					admitted := make([]int, points)
					for p := range points {
						// Schedule 0 tries at every point, 1..5 at every
						// (sched+1)th, the rest at random points; each try
						// is a burst of N+1 events (of fewer, at random, in
						// the odd schedules), stopped by the first refusal.
						try := sched == 0 || sched <= 5 && p%(sched+1) == 0 || sched > 5 && rng.IntN(3) == 0
						if !try {
							continue
						}
						now := suiteT0.Add(time.Duration(phase+p) * grid)
						tries := n + 1
						if sched%2 == 1 {
							tries = 1 + rng.IntN(n+1)
						}
						for range tries {
							if !decide(t, l, key, now).Allowed {
								break
							}
							admitted[p]++
						}
					}
					for s := range points - 39 {
						sum := 0
						for _, a := range admitted[s : s+40] {
							sum += a
						}
						require.LessOrEqual(t, sum, most(n), "N=%d schedule %d: [%v, +W)", n, sched, time.Duration(phase+s)*grid)
					}
				}
			}
		}},
	{"concurrent", "N concurrent calls for one key under a limit of L admit exactly min(N, L)",
		func(t *testing.T, r limiterRig) {
			for _, c := range []struct{ n, l int }{{64, 10}, {8, 10}, {200, 123}} {
				l := r.new(t, c.l, time.Minute)
				got := concurrently(c.n, func(int) bool {
					d, err := l.Allow(context.Background(), "k", suiteT0)
					return err == nil && d.Allowed
				})
				assert.Equal(t, min(c.n, c.l), got, "%d calls, limit %d", c.n, c.l)
			}
		}},
}
