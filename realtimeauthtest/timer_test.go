package realtimeauthtest_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/realtimeauth/realtimeauth/realtimeauthtest"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func TestTimerClockFiresInOrderAtTheirTime(t *testing.T) {
	tc := realtimeauthtest.NewTimerClock(realtimeauthtest.NewClock(t0))
	var fired []string
	var at []time.Time
	record := func(name string) func() {
		return func() { fired, at = append(fired, name), append(at, tc.Now()) }
	}
	tc.AfterFunc(3*time.Second, record("c"))
	tc.AfterFunc(time.Second, record("a"))
	tc.AfterFunc(time.Second, record("a2")) // same instant: in scheduling order
	tc.AfterFunc(2*time.Second, func() {
		record("b")()
		tc.AfterFunc(500*time.Millisecond, record("b+")) // scheduled while advancing
	})
	assert.Equal(t, []time.Duration{time.Second, time.Second, 2 * time.Second, 3 * time.Second}, tc.Pending())

	tc.Advance(999 * time.Millisecond)
	assert.Empty(t, fired)
	tc.Advance(2 * time.Second) // to 2.999s
	assert.Equal(t, []string{"a", "a2", "b", "b+"}, fired)
	assert.Equal(t, []time.Time{t0.Add(time.Second), t0.Add(time.Second), t0.Add(2 * time.Second), t0.Add(2500 * time.Millisecond)}, at)
	assert.Equal(t, t0.Add(2999*time.Millisecond), tc.Now())
	assert.Equal(t, []time.Duration{time.Millisecond}, tc.Pending())
	tc.Advance(time.Millisecond)
	assert.Equal(t, []string{"a", "a2", "b", "b+", "c"}, fired)
	assert.Equal(t, []time.Duration{3 * time.Second, time.Second, time.Second, 2 * time.Second, 500 * time.Millisecond}, tc.Requested())
}

func TestTimerClockStop(t *testing.T) {
	tc := realtimeauthtest.NewTimerClock(realtimeauthtest.NewClock(t0))
	fired := false
	stop := tc.AfterFunc(time.Second, func() { fired = true })
	assert.True(t, stop())
	assert.False(t, stop(), "already stopped")
	tc.Advance(time.Hour)
	assert.False(t, fired)
	assert.Empty(t, tc.Pending())

	stop = tc.AfterFunc(0, func() { fired = true })
	tc.Advance(0)
	assert.True(t, fired)
	assert.False(t, stop(), "already fired")
}

func TestTimerClockWaitPending(t *testing.T) {
	tc := realtimeauthtest.NewTimerClock(realtimeauthtest.NewClock(t0))
	go func() {
		tc.AfterFunc(time.Second, func() {})
		tc.AfterFunc(time.Second, func() {})
	}()
	require.NoError(t, tc.WaitPending(context.Background(), 2))
	assert.Len(t, tc.Pending(), 2)

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	assert.ErrorIs(t, tc.WaitPending(ctx, 3), context.Canceled)
}
