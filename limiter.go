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

// memoryMaxKeys caps how many keys the in-memory limiter and abuse guard
// track at once, and the memory store's allowance keys per window length:
// it bounds their memory (see NewMemoryLimiter).
const memoryMaxKeys = 1_000_000

// maxLimit is the largest limit the sub-window counter holds: its counts
// are 10 bits each.
const maxLimit = 1<<countBits - 1

const limiterShards = 256

// memoryLimiter is NewMemoryLimiter's Limiter.
type memoryLimiter struct {
	rule        windowRule
	seed        maphash.Seed
	maxPerShard int
	shards      [limiterShards]limiterShard
}

var _ Limiter = (*memoryLimiter)(nil)

type limiterShard struct {
	mu sync.Mutex
	t  counterTable
	// Keep shards on separate pairs of cache lines (the adjacent-line
	// prefetcher pulls lines in pairs), so that two cores deciding for
	// different shards do not contend.
	_ [128 - unsafe.Sizeof(sync.Mutex{}) - unsafe.Sizeof(counterTable{})]byte
}

// NewMemoryLimiter returns an in-process Limiter that admits limit events
// per window for each key, counted in sub-windows. limit must be in 1..1023
// and window a positive multiple of 4ns (any whole number of milliseconds
// is); it returns an error otherwise.
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
// capped at 1,000,000, which bounds the memory (about 34 bytes a key). The
// cap is held per shard (the cap divided by the shard count, rounded up), so
// eviction may start a little before the total is reached: a full shard
// first drops the keys that have gone idle and then forgets an arbitrary
// tracked key, so memory stays bounded under a flood of distinct clients at
// the price of forgetting one client's count.
//
// Time is what the caller passes: a time earlier than one the key's shard
// has already seen counts as that later sub-window. Allow never returns an
// error.
func NewMemoryLimiter(limit int, window time.Duration) (Limiter, error) {
	l, err := newMemoryLimiter(limit, window, memoryMaxKeys)
	if err != nil {
		return nil, err // not a nil *memoryLimiter in a non-nil Limiter
	}
	return l, nil
}

// newMemoryLimiter is NewMemoryLimiter with a cap of about maxKeys tracked
// keys (at least one per shard).
func newMemoryLimiter(limit int, window time.Duration, maxKeys int) (*memoryLimiter, error) {
	if err := checkLimit("NewMemoryLimiter", limit, window); err != nil {
		return nil, err
	}
	l := &memoryLimiter{
		rule:        newWindowRule(limit, window),
		seed:        maphash.MakeSeed(),
		maxPerShard: max(1, (maxKeys+limiterShards-1)/limiterShards),
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
func (l *memoryLimiter) Allow(_ context.Context, key string, now time.Time) (Decision, error) {
	hk := maphash.String(l.seed, key)
	sh := &l.shards[hk&(limiterShards-1)]
	sh.mu.Lock()
	d, _, _ := sh.t.allow(l.rule, hk, now, l.maxPerShard)
	sh.mu.Unlock()
	return d, nil
}

// Len returns the number of keys currently tracked.
func (l *memoryLimiter) Len() int {
	n := 0
	for i := range l.shards {
		sh := &l.shards[i]
		sh.mu.Lock()
		n += sh.t.len()
		sh.mu.Unlock()
	}
	return n
}
