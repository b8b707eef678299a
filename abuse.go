package realtimeauth

import (
	"context"
	"fmt"
	"hash/maphash"
	"sync"
	"time"
)

// AbuseGuard keeps the suspicious-activity state of clients: strikes, and
// the blocks they lead to. Implementations must be safe for concurrent use;
// a non-nil error is a backend failure.
type AbuseGuard interface {
	// Blocked reports how long key stays blocked after now; 0 when it is
	// not blocked.
	Blocked(ctx context.Context, key string, now time.Time) (time.Duration, error)
	// Strike records one strike against key at now. When this strike
	// reaches the threshold, the key becomes blocked and Strike returns the
	// block's length with started set; exactly one of any number of
	// concurrent strikes starts a given block. Strikes against a key that
	// is already blocked are not counted.
	Strike(ctx context.Context, key string, now time.Time) (blockFor time.Duration, started bool, err error)
}

// memoryAbuseGuard is NewMemoryAbuseGuard's AbuseGuard.
type memoryAbuseGuard struct {
	strikes     int
	window      time.Duration
	blockFor    time.Duration
	seed        maphash.Seed
	maxPerShard int
	shards      [abuseShards]abuseShard
}

var _ AbuseGuard = (*memoryAbuseGuard)(nil)

const abuseShards = 64

type abuseShard struct {
	mu        sync.Mutex
	m         map[string]abuseEntry
	lastSweep time.Time
}

// abuseEntry times are Unix nanoseconds.
type abuseEntry struct {
	first, until int64
	count        int32
}

// NewMemoryAbuseGuard returns an in-process AbuseGuard: strikes strikes
// within window block a key for blockFor. The strike window is fixed,
// starting at a key's first strike after its last window or block ended.
// Keys with neither a live window nor a block are dropped lazily (each shard
// sweeps at most once per window), and tracked keys are capped at 1,000,000
// (held per shard, as NewMemoryLimiter's cap is: a full shard drops its
// lapsed keys, then forgets an arbitrary one). The guard reads the time it
// is given and its methods never return an error.
//
// strikes must be in 1..1,000,000 and window and blockFor positive, or it
// returns an error naming the bad argument. To turn blocking off, pass nil
// to WithAbuseGuard.
func NewMemoryAbuseGuard(strikes int, window, blockFor time.Duration) (AbuseGuard, error) {
	g, err := newMemoryAbuseGuard(strikes, window, blockFor, memoryMaxKeys)
	if err != nil {
		return nil, err // not a typed nil in the interface
	}
	return g, nil
}

// newMemoryAbuseGuard is NewMemoryAbuseGuard with a cap of about maxKeys
// tracked keys (at least one per shard).
func newMemoryAbuseGuard(strikes int, window, blockFor time.Duration, maxKeys int) (*memoryAbuseGuard, error) {
	if err := checkAbuse(strikes, window, blockFor); err != nil {
		return nil, err
	}
	g := &memoryAbuseGuard{
		strikes:     strikes,
		window:      window,
		blockFor:    blockFor,
		seed:        maphash.MakeSeed(),
		maxPerShard: max(1, (maxKeys+abuseShards-1)/abuseShards),
	}
	for i := range g.shards {
		g.shards[i].m = make(map[string]abuseEntry)
	}
	return g, nil
}

func checkAbuse(strikes int, window, blockFor time.Duration) error {
	if strikes < 1 || strikes > 1_000_000 {
		return fmt.Errorf("realtimeauth: NewMemoryAbuseGuard: strikes %d is outside 1..1000000", strikes)
	}
	if window <= 0 || blockFor <= 0 {
		return fmt.Errorf("realtimeauth: NewMemoryAbuseGuard: window %v and blockFor %v must be positive", window, blockFor)
	}
	return nil
}

func (g *memoryAbuseGuard) shard(key string) *abuseShard {
	return &g.shards[maphash.String(g.seed, key)&(abuseShards-1)]
}

// Blocked implements AbuseGuard.
func (g *memoryAbuseGuard) Blocked(_ context.Context, key string, now time.Time) (time.Duration, error) {
	sh := g.shard(key)
	sh.mu.Lock()
	e, ok := sh.m[key]
	sh.mu.Unlock()
	if !ok || e.until <= now.UnixNano() {
		return 0, nil
	}
	return time.Duration(e.until - now.UnixNano()), nil
}

// Strike implements AbuseGuard.
func (g *memoryAbuseGuard) Strike(_ context.Context, key string, now time.Time) (time.Duration, bool, error) {
	t := now.UnixNano()
	sh := g.shard(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if now.Sub(sh.lastSweep) >= g.window {
		sh.sweep(t, int64(g.window))
	}
	e, ok := sh.m[key]
	if ok && e.until > t {
		return 0, false, nil // already blocked
	}
	if !ok && len(sh.m) >= g.maxPerShard {
		// Full: drop the entries that have lapsed first, but scan the shard
		// at most once per sixteenth of a window, so that a flood of new
		// keys does not pay a full scan each; then, if still full, forget
		// an arbitrary key.
		if now.Sub(sh.lastSweep) >= g.window/16 {
			sh.sweep(t, int64(g.window))
		}
		for k := range sh.m {
			if len(sh.m) < g.maxPerShard {
				break
			}
			delete(sh.m, k)
		}
	}
	if !ok || t-e.first >= int64(g.window) || e.until != 0 {
		e = abuseEntry{first: t}
	}
	e.count++
	if int(e.count) >= g.strikes {
		e = abuseEntry{first: t, until: t + int64(g.blockFor)}
		sh.m[key] = e
		return g.blockFor, true, nil
	}
	sh.m[key] = e
	return 0, false, nil
}

func (sh *abuseShard) sweep(t, window int64) {
	sh.lastSweep = time.Unix(0, t)
	for k, e := range sh.m {
		if e.until <= t && t-e.first >= window {
			delete(sh.m, k)
		}
	}
}

// Len returns the number of keys tracked.
func (g *memoryAbuseGuard) Len() int {
	n := 0
	for i := range g.shards {
		sh := &g.shards[i]
		sh.mu.Lock()
		n += len(sh.m)
		sh.mu.Unlock()
	}
	return n
}
