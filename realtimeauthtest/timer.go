package realtimeauthtest

import (
	"context"
	"slices"
	"sync"
	"time"
)

// TimerClock adds fake timers to a Clock, for code that schedules work
// (such as tokenclient's refresh and backoff timers). AfterFunc schedules a
// function at the clock's time plus a duration; Advance moves the clock and
// runs every function that has come due, in time order, on the goroutine
// that called Advance. Nothing fires on its own. It is safe for concurrent
// use.
//
// Move the time with the TimerClock's Advance, not the Clock's: the Clock's
// own Advance and Set move the time without firing timers.
type TimerClock struct {
	clock *Clock

	mu        sync.Mutex
	seq       int
	timers    []*fakeTimer
	requested []time.Duration
	changed   chan struct{} // closed and replaced whenever timers change
}

type fakeTimer struct {
	at  time.Time
	seq int
	d   time.Duration
	f   func()
}

// NewTimerClock returns a TimerClock reading and moving c.
func NewTimerClock(c *Clock) *TimerClock {
	return &TimerClock{clock: c, changed: make(chan struct{})}
}

// Now returns the clock's time.
func (tc *TimerClock) Now() time.Time { return tc.clock.Now() }

// AfterFunc schedules f to run when the clock has advanced by d (at once, on
// the next Advance, when d <= 0). The returned stop cancels it and reports
// whether it was still pending, as time.Timer.Stop does.
func (tc *TimerClock) AfterFunc(d time.Duration, f func()) (stop func() bool) {
	tc.mu.Lock()
	defer tc.mu.Unlock()
	tc.seq++
	t := &fakeTimer{at: tc.clock.Now().Add(d), seq: tc.seq, d: d, f: f}
	tc.timers = append(tc.timers, t)
	tc.requested = append(tc.requested, d)
	tc.notifyLocked()
	return func() bool {
		tc.mu.Lock()
		defer tc.mu.Unlock()
		i := slices.Index(tc.timers, t)
		if i < 0 {
			return false
		}
		tc.timers = slices.Delete(tc.timers, i, i+1)
		tc.notifyLocked()
		return true
	}
}

func (tc *TimerClock) notifyLocked() {
	close(tc.changed)
	tc.changed = make(chan struct{})
}

// Advance moves the clock forward by d, running every timer that comes due
// on the way at its own time: the clock reads each timer's instant while
// its function runs. A function may schedule new timers; those that fall
// within d run too. Functions must not call Advance.
func (tc *TimerClock) Advance(d time.Duration) {
	end := tc.clock.Now().Add(d)
	for {
		tc.mu.Lock()
		var next *fakeTimer
		for _, t := range tc.timers {
			if !t.at.After(end) && (next == nil || t.at.Before(next.at) || t.at.Equal(next.at) && t.seq < next.seq) {
				next = t
			}
		}
		if next == nil {
			tc.mu.Unlock()
			break
		}
		tc.timers = slices.DeleteFunc(tc.timers, func(t *fakeTimer) bool { return t == next })
		tc.notifyLocked()
		if next.at.After(tc.clock.Now()) {
			tc.clock.Set(next.at)
		}
		tc.mu.Unlock()
		next.f()
	}
	tc.clock.Set(end)
}

// Pending returns the time left until each pending timer, soonest first.
func (tc *TimerClock) Pending() []time.Duration {
	tc.mu.Lock()
	defer tc.mu.Unlock()
	now := tc.clock.Now()
	out := make([]time.Duration, len(tc.timers))
	for i, t := range tc.timers {
		out[i] = t.at.Sub(now)
	}
	slices.Sort(out)
	return out
}

// Requested returns the duration passed to every AfterFunc call so far, in
// call order: the waits the code under test asked for.
func (tc *TimerClock) Requested() []time.Duration {
	tc.mu.Lock()
	defer tc.mu.Unlock()
	return slices.Clone(tc.requested)
}

// WaitFor blocks until cond, called with the pending timers' remaining
// durations (as Pending returns them), reports true, or ctx ends. It
// re-checks whenever a timer is added, stopped or fired, so tests can wait
// for code running on other goroutines to schedule its next timer without
// sleeping.
func (tc *TimerClock) WaitFor(ctx context.Context, cond func(pending []time.Duration) bool) error {
	for {
		tc.mu.Lock()
		ch := tc.changed
		tc.mu.Unlock()
		if cond(tc.Pending()) {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// WaitPending blocks until at least n timers are pending, or ctx ends.
func (tc *TimerClock) WaitPending(ctx context.Context, n int) error {
	return tc.WaitFor(ctx, func(p []time.Duration) bool { return len(p) >= n })
}
