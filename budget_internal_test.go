package realtimeauth

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"golang.org/x/time/rate"
)

// TestUpstreamBudgetNeverGoesBack: a time older than one the budget has
// decided with decides as that newer time, so that it refills nothing
// twice: under 1 a minute with burst 2, the minutes [t0, t0+2m] pay for 4
// mints whatever order the times come in.
func TestUpstreamBudgetNeverGoesBack(t *testing.T) {
	t0 := time.Unix(1_800_000_000, 0)
	b := newUpstreamBudget(rate.Every(time.Minute), 2)
	ok := 0
	for _, at := range []time.Duration{0, 0, 2 * time.Minute, 0, 2 * time.Minute, time.Minute, 2 * time.Minute, 0} {
		if took, _ := b.take(t0.Add(at)); took {
			ok++
		}
	}
	assert.Equal(t, 4, ok)
	took, wait := b.take(t0)
	assert.False(t, took)
	assert.Equal(t, time.Minute, wait, "counted from t0+2m, the newest time seen")
	assert.InDelta(t, 0, b.tokensAt(t0), 1e-9)
	assert.InDelta(t, 1, b.tokensAt(t0.Add(3*time.Minute)), 1e-9)
}
