package realtimeauthtest

import (
	"testing"
	"time"

	"github.com/realtimeauth/realtimeauth"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestAbuseGuard runs the AbuseGuard contract against the guards newGuard
// returns: strikes strikes within window block a key for blockFor.
func TestAbuseGuard(t *testing.T, newGuard func(t *testing.T, strikes int, window, blockFor time.Duration) realtimeauth.AbuseGuard) {
	t.Helper()
	rig := func(t *testing.T) guardRig { return guardRig{newGuard(t, 3, guardWindow, guardBlockFor)} }
	runCases(t, guardBlockCases, rig)
	runCases(t, guardWindowCases, rig)
}

// The guards under test block a key for guardBlockFor at its third strike
// within guardWindow.
const guardWindow, guardBlockFor = time.Minute, 10 * time.Minute

type guardRig struct{ g realtimeauth.AbuseGuard }

func guardStrike(t *testing.T, g realtimeauth.AbuseGuard, key string, now time.Time) (time.Duration, bool) {
	t.Helper()
	d, started, err := g.Strike(bg, key, now)
	require.NoError(t, err)
	return d, started
}

func guardBlocked(t *testing.T, g realtimeauth.AbuseGuard, key string, now time.Time) time.Duration {
	t.Helper()
	d, err := g.Blocked(bg, key, now)
	require.NoError(t, err)
	return d
}

// guardBlockCases: when a block starts, how long it lasts, and the strikes
// it ignores.
var guardBlockCases = []contractCase[guardRig]{
	{"threshold", "when this strike reaches the threshold, the key becomes blocked and Strike returns the block's length with started set",
		func(t *testing.T, r guardRig) {
			for i := range 2 {
				d, started := guardStrike(t, r.g, "k", suiteT0.Add(time.Duration(i)*time.Second))
				require.False(t, started, "strike %d", i+1)
				require.Zero(t, d)
				require.Zero(t, guardBlocked(t, r.g, "k", suiteT0.Add(time.Duration(i)*time.Second)))
			}
			at := suiteT0.Add(2 * time.Second)
			d, started := guardStrike(t, r.g, "k", at)
			assert.True(t, started)
			assert.Equal(t, guardBlockFor, d)
			assert.Zero(t, guardBlocked(t, r.g, "other", at), "keys are independent")
		}},
	{"blocked for", "Blocked reports how long key stays blocked after now; 0 when it is not blocked",
		func(t *testing.T, r guardRig) {
			for range 3 {
				guardStrike(t, r.g, "k", suiteT0)
			}
			assert.Equal(t, guardBlockFor, guardBlocked(t, r.g, "k", suiteT0))
			assert.Equal(t, time.Millisecond, guardBlocked(t, r.g, "k", suiteT0.Add(guardBlockFor-time.Millisecond)))
			assert.Zero(t, guardBlocked(t, r.g, "k", suiteT0.Add(guardBlockFor)))
		}},
	{"strikes while blocked", "strikes against a key that is already blocked are not counted",
		func(t *testing.T, r guardRig) {
			for range 3 {
				guardStrike(t, r.g, "k", suiteT0)
			}
			for i := range 10 {
				d, started := guardStrike(t, r.g, "k", suiteT0.Add(time.Duration(i)*time.Second))
				require.False(t, started)
				require.Zero(t, d)
			}
			after := suiteT0.Add(guardBlockFor)
			for i := range 2 {
				_, started := guardStrike(t, r.g, "k", after.Add(time.Duration(i)*time.Millisecond))
				assert.False(t, started, "strike %d after the block", i+1)
			}
			assert.Zero(t, guardBlocked(t, r.g, "k", after.Add(time.Second)))
		}},
}

// guardWindowCases: the strikes the window counts, and concurrent strikes.
var guardWindowCases = []contractCase[guardRig]{
	{"window", "strikes strikes within window block; strikes further apart do not",
		func(t *testing.T, r guardRig) {
			guardStrike(t, r.g, "k", suiteT0)
			guardStrike(t, r.g, "k", suiteT0.Add(guardWindow))
			_, started := guardStrike(t, r.g, "k", suiteT0.Add(guardWindow+time.Millisecond))
			assert.False(t, started, "the first strike left the window")
			_, started = guardStrike(t, r.g, "k", suiteT0.Add(guardWindow+2*time.Millisecond))
			assert.True(t, started)
		}},
	{"concurrent strikes", "exactly one of any number of concurrent strikes starts a given block",
		func(t *testing.T, r guardRig) {
			n := concurrently(64, func(int) bool {
				_, started, err := r.g.Strike(bg, "k", suiteT0)
				return err == nil && started
			})
			assert.Equal(t, 1, n)
			assert.Equal(t, guardBlockFor, guardBlocked(t, r.g, "k", suiteT0))
			n = concurrently(2, func(int) bool {
				_, started, err := r.g.Strike(bg, "fresh", suiteT0)
				return err == nil && started
			})
			assert.Zero(t, n, "two strikes of three block nothing")
		}},
}
