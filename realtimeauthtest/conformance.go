package realtimeauthtest

// The conformance suites: one per interface, run by every implementation
// (the memory ones in the core's tests, redisstore's against a real Redis).
// Each case names the contract line it checks; they use fixed times (whole
// milliseconds, so that a backend keeping milliseconds passes) and never
// sleep.

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/realtimeauth/realtimeauth"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// suiteT0 is the suites' base time: a whole minute, so that every window
// the suites use starts its sub-windows there.
var suiteT0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// contractCase is one row of a suite: the contract line it checks, and the
// check.
type contractCase[R any] struct {
	name     string
	contract string
	run      func(t *testing.T, r R)
}

func runCases[R any](t *testing.T, cases []contractCase[R], rig func(t *testing.T) R) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Cleanup(func() {
				if t.Failed() {
					t.Logf("contract: %s", c.contract)
				}
			})
			c.run(t, rig(t))
		})
	}
}

// concurrently runs f n times at once and returns how many returned true.
func concurrently(n int, f func(i int) bool) int {
	var ok atomic.Int64
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			if f(i) {
				ok.Add(1)
			}
		})
	}
	close(start)
	wg.Wait()
	return int(ok.Load())
}

// TestAbuseGuard runs the AbuseGuard contract against the guards newGuard
// returns: strikes strikes within window block a key for blockFor.
func TestAbuseGuard(t *testing.T, newGuard func(t *testing.T, strikes int, window, blockFor time.Duration) realtimeauth.AbuseGuard) {
	t.Helper()
	const window, blockFor = time.Minute, 10 * time.Minute
	ctx := context.Background()
	strike := func(t *testing.T, g realtimeauth.AbuseGuard, key string, now time.Time) (time.Duration, bool) {
		t.Helper()
		d, started, err := g.Strike(ctx, key, now)
		require.NoError(t, err)
		return d, started
	}
	blocked := func(t *testing.T, g realtimeauth.AbuseGuard, key string, now time.Time) time.Duration {
		t.Helper()
		d, err := g.Blocked(ctx, key, now)
		require.NoError(t, err)
		return d
	}
	type rig struct{ g realtimeauth.AbuseGuard }
	cases := []contractCase[rig]{
		{"threshold", "when this strike reaches the threshold, the key becomes blocked and Strike returns the block's length with started set",
			func(t *testing.T, r rig) {
				for i := range 2 {
					d, started := strike(t, r.g, "k", suiteT0.Add(time.Duration(i)*time.Second))
					require.False(t, started, "strike %d", i+1)
					require.Zero(t, d)
					require.Zero(t, blocked(t, r.g, "k", suiteT0.Add(time.Duration(i)*time.Second)))
				}
				at := suiteT0.Add(2 * time.Second)
				d, started := strike(t, r.g, "k", at)
				assert.True(t, started)
				assert.Equal(t, blockFor, d)
				assert.Zero(t, blocked(t, r.g, "other", at), "keys are independent")
			}},
		{"blocked for", "Blocked reports how long key stays blocked after now; 0 when it is not blocked",
			func(t *testing.T, r rig) {
				for range 3 {
					strike(t, r.g, "k", suiteT0)
				}
				assert.Equal(t, blockFor, blocked(t, r.g, "k", suiteT0))
				assert.Equal(t, time.Millisecond, blocked(t, r.g, "k", suiteT0.Add(blockFor-time.Millisecond)))
				assert.Zero(t, blocked(t, r.g, "k", suiteT0.Add(blockFor)))
			}},
		{"strikes while blocked", "strikes against a key that is already blocked are not counted",
			func(t *testing.T, r rig) {
				for range 3 {
					strike(t, r.g, "k", suiteT0)
				}
				for i := range 10 {
					d, started := strike(t, r.g, "k", suiteT0.Add(time.Duration(i)*time.Second))
					require.False(t, started)
					require.Zero(t, d)
				}
				after := suiteT0.Add(blockFor)
				for i := range 2 {
					_, started := strike(t, r.g, "k", after.Add(time.Duration(i)*time.Millisecond))
					assert.False(t, started, "strike %d after the block", i+1)
				}
				assert.Zero(t, blocked(t, r.g, "k", after.Add(time.Second)))
			}},
		{"window", "strikes strikes within window block; strikes further apart do not",
			func(t *testing.T, r rig) {
				strike(t, r.g, "k", suiteT0)
				strike(t, r.g, "k", suiteT0.Add(window))
				_, started := strike(t, r.g, "k", suiteT0.Add(window+time.Millisecond))
				assert.False(t, started, "the first strike left the window")
				_, started = strike(t, r.g, "k", suiteT0.Add(window+2*time.Millisecond))
				assert.True(t, started)
			}},
		{"concurrent strikes", "exactly one of any number of concurrent strikes starts a given block",
			func(t *testing.T, r rig) {
				n := concurrently(64, func(int) bool {
					_, started, err := r.g.Strike(ctx, "k", suiteT0)
					return err == nil && started
				})
				assert.Equal(t, 1, n)
				assert.Equal(t, blockFor, blocked(t, r.g, "k", suiteT0))
				n = concurrently(2, func(int) bool {
					_, started, err := r.g.Strike(ctx, "fresh", suiteT0)
					return err == nil && started
				})
				assert.Zero(t, n, "two strikes of three block nothing")
			}},
	}
	runCases(t, cases, func(t *testing.T) rig { return rig{newGuard(t, 3, window, blockFor)} })
}

// sessionString is a Session for failure messages and comparisons, its
// times in UTC milliseconds.
func sessionString(s realtimeauth.Session) string {
	ms := func(t time.Time) int64 { return t.UnixMilli() }
	return fmt.Sprintf("{%s ip=%s client=%s subject=%q created=%d expires=%d issued=%d refreshes=%d revoked=%v}",
		s.ID, s.ClientIP, s.Client, s.Subject, ms(s.CreatedAt), ms(s.ExpiresAt), ms(s.LastIssuedAt), s.Refreshes, s.Revoked)
}
