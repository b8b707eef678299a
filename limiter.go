package realtimeauth

import (
	"context"
	"fmt"
	"hash/maphash"
	"sync"
	"time"
	"unsafe"
)

// Limiter decides whether a key (a client, a subject) may proceed at now.
//
// Allow counts one event for key when, and only when, it admits it: a
// refused event does not use up the window. Implementations must be safe
// for concurrent use and the check-and-count must be atomic per key, so that
// N concurrent calls for one key under a limit of L admit exactly min(N, L).
// They decide with the time they are given, never their own clock. A
// non-nil error means the backend failed, not that the key is over its
// limit.
type Limiter interface {
	Allow(ctx context.Context, key string, now time.Time) (Decision, error)
}

// Decision is a Limiter's answer for one event.
type Decision struct {
	// Allowed reports whether the event was admitted (and counted).
	Allowed bool
	// RetryAfter, when !Allowed, is how long after now the next event
	// would be admitted: 0 < RetryAfter <= the window.
	RetryAfter time.Duration
}

// MemoryOption configures the in-memory implementations: MemoryLimiter,
// MemoryStore and MemoryAbuseGuard.
type MemoryOption func(*memoryConfig)

type memoryConfig struct {
	maxKeys int
}

// WithMemoryMaxKeys caps how many keys (clients) MemoryLimiter and
// MemoryAbuseGuard track at once, which bounds their memory. Default
// 1,000,000; valid range 1 and up (values below 1 keep the default).
//
// They hold the cap per shard (the cap divided by their shard count,
// rounded up), so they may start evicting a little before the total is
// reached. A full shard first drops the keys that have gone idle and then
// forgets an arbitrary tracked key, so memory stays bounded under a flood of
// distinct clients at the price of forgetting one client's count. The
// MemoryStore's sessions are capped by OpenRequest.MaxSessions instead.
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
	return c
}

// maxLimit is the largest limit the sub-window counter holds: its counts
// are 10 bits each.
const maxLimit = 1<<countBits - 1

const limiterShards = 256

// MemoryLimiter is an in-process Limiter: limit events per window for each
// key, counted in sub-windows.
//
// The window W is cut into 4 sub-windows of W/4, aligned on the Unix epoch
// (so that every instance and the Redis store cut time alike). A key keeps
// the counts of admitted events of the current sub-window m and the 4
// before it, and an event in sub-window m is admitted when both
//
//	(a) b[m]+b[m-1]+b[m-2]+b[m-3] + 1 <= N
//	(b) b[m]+b[m-1]+b[m-2]+b[m-3]+b[m-4] + 1 <= M, M = max(N+1, floor(5N/4))
//
// hold (N is the limit), and then counts it in b[m]. So a burst of N at once
// is admitted, any half-open interval of length W (which meets at most 5
// sub-windows) holds at most M admissions, and RetryAfter is exact (counts
// only change at sub-window boundaries, and the fourth boundary ahead always
// admits) and never above W.
//
// Each key is tracked by its 64-bit hash (seeded at random per limiter)
// with one 8-byte value of state (the sub-window index modulo 2^14 and five
// 10-bit counts, hence limit <= 1023), in a sharded map: the key string is
// not kept. Two keys whose hashes collide would share a count; with a
// million tracked keys the chance that any two do is about 3 in 100
// million, and the random seed means no client can aim for one.
//
// Idle keys (no event for 5 sub-windows, so their state equals a new key's)
// are dropped lazily: a shard sweeps itself at most once per sub-window, when
// it is next used, so there is no background goroutine. Tracked keys are
// capped by WithMemoryMaxKeys.
//
// Time is what the caller passes: a time earlier than one the key's shard
// has already seen counts as that later sub-window.
type MemoryLimiter struct {
	rule        windowRule
	seed        maphash.Seed
	maxPerShard int
	shards      [limiterShards]limiterShard
}

var _ Limiter = (*MemoryLimiter)(nil)

type limiterShard struct {
	mu sync.Mutex
	t  counterTable
	// Keep shards on separate pairs of cache lines (the adjacent-line
	// prefetcher pulls lines in pairs), so that two cores deciding for
	// different shards do not contend.
	_ [128 - unsafe.Sizeof(sync.Mutex{}) - unsafe.Sizeof(counterTable{})]byte
}

// NewMemoryLimiter returns a MemoryLimiter that admits limit events per
// window for each key, by the rule in MemoryLimiter's doc. limit must be in
// 1..1023 and window a positive multiple of 4ns (any whole number of
// milliseconds is); it returns an error otherwise.
func NewMemoryLimiter(limit int, window time.Duration, opts ...MemoryOption) (*MemoryLimiter, error) {
	if err := checkLimit("NewMemoryLimiter", limit, window); err != nil {
		return nil, err
	}
	c := newMemoryConfig(opts)
	l := &MemoryLimiter{
		rule:        newWindowRule(limit, window),
		seed:        maphash.MakeSeed(),
		maxPerShard: max(1, (c.maxKeys+limiterShards-1)/limiterShards),
	}
	return l, nil
}

func checkLimit(name string, limit int, window time.Duration) error {
	if limit < 1 || limit > maxLimit {
		return fmt.Errorf("realtimeauth: %s: limit %d is outside 1..%d", name, limit, maxLimit)
	}
	if window <= 0 || window%4 != 0 {
		return fmt.Errorf("realtimeauth: %s: window %v must be positive and a multiple of 4ns", name, window)
	}
	return nil
}

// Allow reports whether key may proceed at now, and counts the event if so.
// It never returns an error.
func (l *MemoryLimiter) Allow(_ context.Context, key string, now time.Time) (Decision, error) {
	hk := maphash.String(l.seed, key)
	sh := &l.shards[hk&(limiterShards-1)]
	sh.mu.Lock()
	d, _, _ := sh.t.allow(l.rule, hk, now, l.maxPerShard)
	sh.mu.Unlock()
	return d, nil
}

// Len returns the number of keys currently tracked.
func (l *MemoryLimiter) Len() int {
	n := 0
	for i := range l.shards {
		sh := &l.shards[i]
		sh.mu.Lock()
		n += sh.t.len()
		sh.mu.Unlock()
	}
	return n
}
