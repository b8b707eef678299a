package realtimeauth

import (
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// upstreamBudget is the token bucket of Limits.UpstreamRate and
// UpstreamBurst, fed only times that never go back. x/time/rate takes a
// time earlier than its last as its new last, so the next call refills the
// difference a second time: a request whose clock reading is older than
// another's (it read the clock, then waited on a store round trip) would
// hand the budget mints it never had.
// The budget therefore decides with the newest time it has seen.
type upstreamBudget struct {
	mu   sync.Mutex
	lim  *rate.Limiter
	seen time.Time // the newest time decided with
}

func newUpstreamBudget(r rate.Limit, burst int) *upstreamBudget {
	return &upstreamBudget{lim: rate.NewLimiter(r, burst)}
}

// take takes one mint at now (or at the newest time seen, if later), and
// reports whether it had one, or else how long until it will.
func (b *upstreamBudget) take(now time.Time) (bool, time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if now.Before(b.seen) {
		now = b.seen
	}
	b.seen = now
	if b.lim.AllowN(now, 1) {
		return true, 0
	}
	return false, b.wait(now)
}

// left reports whether a mint is left at now (or at the newest time seen,
// if later), taking none, or else how long until one will be.
func (b *upstreamBudget) left(now time.Time) (bool, time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if now.Before(b.seen) {
		now = b.seen
	}
	if b.lim.TokensAt(now) >= 1 {
		return true, 0
	}
	return false, b.wait(now)
}

// wait is how long from now until the budget holds one mint; b.mu is held.
func (b *upstreamBudget) wait(now time.Time) time.Duration {
	return time.Duration((1 - b.lim.TokensAt(now)) / float64(b.lim.Limit()) * float64(time.Second))
}

// tokensAt returns the mints left at now (or at the newest time seen, if
// later), without taking any.
func (b *upstreamBudget) tokensAt(now time.Time) float64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	if now.Before(b.seen) {
		now = b.seen
	}
	return b.lim.TokensAt(now)
}

func (b *upstreamBudget) burst() int { return b.lim.Burst() }
