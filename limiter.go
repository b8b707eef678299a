package realtimeauth

import (
	"context"
	"fmt"
	"hash/maphash"
	"math/bits"
	"sync"
	"time"
)

// Limiter decides whether a key (a client IP, a subject) may proceed.
//
// Allow records one event for key when, and only when, it admits it: a
// rejected request does not use up the window. Implementations must be safe
// for concurrent use and the check-and-count must be atomic, so that N
// concurrent calls for one key under a limit of L admit exactly min(N, L).
// A non-nil error means the backend failed (not that the key is over its
// limit); the handler then answers 503 store_unavailable, or admits the
// request if the implementation chose to fail open and returned no error.
type Limiter interface {
	Allow(ctx context.Context, key string) (Decision, error)
}

// Decision is a Limiter's answer for one event.
type Decision struct {
	// Allowed reports whether the event was admitted (and counted).
	Allowed bool
	// Limit is the number of events the window admits.
	Limit int
	// Remaining is how many more events the window would admit now.
	Remaining int
	// RetryAfter, when !Allowed, is how long until the next event would be
	// admitted, rounded up to the millisecond.
	RetryAfter time.Duration
}

// MemoryOption configures the in-memory implementations: MemoryLimiter,
// MemoryStore and MemoryAbuseGuard.
type MemoryOption func(*memoryConfig)

type memoryConfig struct {
	now     func() time.Time
	maxKeys int
	// wallClock is set when no clock was given, so that elapsed time can
	// be read with time.Since, which reads only the monotonic clock.
	wallClock bool
}

// WithMemoryClock sets the clock the in-memory implementation reads, for
// tests. Default (also when now is nil): time.Now.
func WithMemoryClock(now func() time.Time) MemoryOption {
	return func(c *memoryConfig) { c.now = now }
}

// WithMemoryMaxKeys caps how many keys (clients, sessions) the in-memory
// implementation tracks at once, which bounds its memory. Default 1,000,000;
// valid range 1 and up (values below 1 keep the default).
//
// MemoryLimiter and MemoryAbuseGuard hold the cap per shard (the cap divided
// by their shard count, rounded up), so they may start evicting a little
// before the total is reached. A full shard first drops the keys that have
// gone idle (for the limiter that happens at every window boundary, when a
// key's counts lapse; the abuse guard sweeps a full shard at most once per
// sixteenth of its window) and then forgets an arbitrary tracked key, so
// memory stays bounded under a flood of distinct clients at the price of
// forgetting one client's count. A MemoryStore refuses new sessions with
// ErrStoreFull instead, since forgetting a session would cut off a user.
func WithMemoryMaxKeys(n int) MemoryOption {
	return func(c *memoryConfig) {
		if n >= 1 {
			c.maxKeys = n
		}
	}
}

func newMemoryConfig(opts []MemoryOption) memoryConfig {
	c := memoryConfig{maxKeys: 1_000_000}
	for _, o := range opts {
		o(&c)
	}
	if c.now == nil {
		c.now, c.wallClock = time.Now, true
	}
	return c
}

// MaxMemoryLimit is the largest limit MemoryLimiter accepts: a window's
// counts are packed into 20 bits each, which keeps a tracked key at 24 bytes
// of map slot.
const MaxMemoryLimit = 1<<20 - 1

const (
	limiterShards = 256
	countBits     = 20
	countMask     = 1<<countBits - 1
	windowBits    = 64 - 2*countBits
	windowMask    = 1<<windowBits - 1
)

// MemoryLimiter is an in-process sliding-window Limiter.
//
// It is a two-window weighted counter (the algorithm Cloudflare and
// go-chi/httprate use): time is cut into fixed windows, each key keeps the
// count of admitted events in the current and the previous window, and an
// event at a fraction f into the current window is admitted when
//
//	previous*(1-f) + current + 1 <= limit
//
// that is, when the estimated count over the last full window, this event
// included, stays within the limit. The estimate assumes the previous
// window's events were spread evenly; it never admits more than limit events
// in one fixed window, and at most 2*limit in the worst-case sliding window
// (all of the previous window's events at its very end), typically much
// fewer. Each key is tracked by its 64-bit hash (seeded at random per
// limiter) with one 8-byte value of state, in a sharded map: about 38 bytes
// of heap per tracked client, the key string itself not kept, so a million
// tracked clients take under 40 MB (see the README's Performance section),
// and deciding takes no allocation for a key already tracked. Two keys whose
// hashes collide would share a count; with a million tracked keys the chance
// that any two do is about 3 in 100 million, and the random seed means no
// client can aim for one.
//
// Idle keys (no event for a full window) are dropped lazily: a shard sweeps
// itself at most once per window, when it is next used, so there is no
// background goroutine to stop. Tracked keys are capped by WithMemoryMaxKeys.
type MemoryLimiter struct {
	limit       int
	window      time.Duration
	now         func() time.Time
	wallClock   bool
	epoch       time.Time
	seed        maphash.Seed
	maxPerShard int
	shards      [limiterShards]limiterShard
}

var _ Limiter = (*MemoryLimiter)(nil)

type limiterShard struct {
	mu        sync.Mutex
	m         map[uint64]uint64 // key hash → packed window index, previous count, current count
	lastSweep uint64            // window index of the last sweep
	_         [40]byte          // keep shards on separate cache lines
}

// NewMemoryLimiter returns a MemoryLimiter that admits limit events per
// window for each key. limit must be in 1..MaxMemoryLimit and window
// positive; it panics otherwise, as the handler validates both first (use
// WithRateLimit there).
func NewMemoryLimiter(limit int, window time.Duration, opts ...MemoryOption) *MemoryLimiter {
	if err := checkLimit("NewMemoryLimiter", limit, window); err != nil {
		panic(err)
	}
	c := newMemoryConfig(opts)
	l := &MemoryLimiter{
		limit:     limit,
		window:    window,
		now:       c.now,
		wallClock: c.wallClock,
		epoch:     c.now(),
		seed:      maphash.MakeSeed(),
	}
	l.maxPerShard = max(1, (c.maxKeys+limiterShards-1)/limiterShards)
	for i := range l.shards {
		l.shards[i].m = make(map[uint64]uint64)
	}
	return l
}

func checkLimit(name string, limit int, window time.Duration) error {
	if limit < 1 || limit > MaxMemoryLimit {
		return fmt.Errorf("realtimeauth: %s: limit %d is outside 1..%d", name, limit, MaxMemoryLimit)
	}
	if window <= 0 {
		return fmt.Errorf("realtimeauth: %s: window %v must be positive", name, window)
	}
	return nil
}

func pack(win, prev, cur uint64) uint64 {
	return win&windowMask<<(2*countBits) | prev<<countBits | cur
}

func unpack(v uint64) (win, prev, cur uint64) {
	return v >> (2 * countBits), v >> countBits & countMask, v & countMask
}

// Allow reports whether key may proceed now, and counts the event if so.
// It never returns an error.
func (l *MemoryLimiter) Allow(_ context.Context, key string) (Decision, error) {
	var elapsed time.Duration
	if l.wallClock {
		elapsed = time.Since(l.epoch) // the same value, one clock read fewer
	} else {
		elapsed = l.now().Sub(l.epoch)
	}
	if elapsed < 0 { // the wall clock stepped back: count it as the epoch
		elapsed = 0
	}
	n := elapsed / l.window
	win, into := uint64(n), elapsed-n*l.window // one division, not two

	hk := maphash.String(l.seed, key)
	sh := &l.shards[hk&(limiterShards-1)]
	sh.mu.Lock()
	if win != sh.lastSweep {
		sh.sweep(win)
	}
	var prev, cur uint64
	v, ok := sh.m[hk]
	if ok {
		sw, sp, sc := unpack(v)
		switch (win - sw) & windowMask {
		case 0:
			prev, cur = sp, sc
		case 1:
			prev = sc
		}
	} else if len(sh.m) >= l.maxPerShard {
		sh.evictOne()
	}
	d := l.decide(prev, cur, into)
	if d.Allowed {
		sh.m[hk] = pack(win, prev, cur+1)
	}
	sh.mu.Unlock()
	return d, nil
}

// decide applies the weighted-window rule; it only reads. It works in
// whole nanoseconds with 128-bit products, multiplying the rule through by
// the window, prev*(window-into) + (cur+1)*window <= limit*window, so that
// RetryAfter is exact: floating point put it a millisecond off either way.
func (l *MemoryLimiter) decide(prev, cur uint64, into time.Duration) Decision {
	w, in, limit := uint64(l.window), uint64(into), uint64(l.limit)
	if cur+1 <= limit {
		room := mul128(limit-cur-1, w) // (limit-cur-1)*w
		used := mul128(prev, w-in)     // prev*(w-into)
		if !room.less(used) {
			diff := room.sub(used)
			q, _ := bits.Div64(diff.hi, diff.lo, w) // < limit, so hi < w
			return Decision{Allowed: true, Limit: l.limit, Remaining: int(q)}
		}
		// Later in this window: the first into' with
		// prev*(w-into') <= (limit-cur-1)*w; prev > 0 here.
		return Decision{Limit: l.limit, RetryAfter: ceilMillis(w - maxShare(limit-cur-1, w, prev) - in)}
	}
	// Not before the next window; there, prev' = cur and cur' = 0, so the
	// first into' with cur*(w-into') <= (limit-1)*w.
	return Decision{Limit: l.limit, RetryAfter: ceilMillis(w - in + w - maxShare(limit-1, w, cur))}
}

// maxShare returns floor(a*w/d), which the callers know to be below w.
func maxShare(a, w, d uint64) uint64 {
	p := mul128(a, w)
	if p.hi >= d { // the quotient would overflow: it is at least w
		return w
	}
	q, _ := bits.Div64(p.hi, p.lo, d)
	return min(q, w)
}

type u128 struct{ hi, lo uint64 }

func mul128(a, b uint64) u128 {
	hi, lo := bits.Mul64(a, b)
	return u128{hi, lo}
}

func (x u128) less(y u128) bool { return x.hi < y.hi || x.hi == y.hi && x.lo < y.lo }

func (x u128) sub(y u128) u128 {
	lo, borrow := bits.Sub64(x.lo, y.lo, 0)
	hi, _ := bits.Sub64(x.hi, y.hi, borrow)
	return u128{hi, lo}
}

func ceilMillis(ns uint64) time.Duration {
	const ms = uint64(time.Millisecond)
	return time.Duration((ns + ms - 1) / ms * ms)
}

// sweep drops keys whose newest event is older than the previous window:
// their state is the same as a key never seen.
func (sh *limiterShard) sweep(win uint64) {
	sh.lastSweep = win
	for k, v := range sh.m {
		sw, _, _ := unpack(v)
		if (win-sw)&windowMask > 1 {
			delete(sh.m, k)
		}
	}
}

// evictOne removes one arbitrary key; Go's map iteration starts at a random
// place, so repeated floods do not always evict the same client.
func (sh *limiterShard) evictOne() {
	for k := range sh.m {
		delete(sh.m, k)
		return
	}
}

// Len returns the number of keys currently tracked.
func (l *MemoryLimiter) Len() int {
	n := 0
	for i := range l.shards {
		sh := &l.shards[i]
		sh.mu.Lock()
		n += len(sh.m)
		sh.mu.Unlock()
	}
	return n
}
