package realtimeauth

import "time"

// counterTable holds the states of many keys for one window length, keyed
// by the keys' 64-bit hashes: an open-addressing table with linear probing
// and backward-shift deletion (no tombstones), key and state side by side
// so that a decision reads one cache line and probes once. It replaces a
// map[uint64]uint64, which hashed twice per decision (read, then write)
// and took 45% more memory per key; BenchmarkMemoryLimiter's
// 100000keys/admit/parallel and BenchmarkMemoryPerClient show both. It is
// not safe for concurrent use: its owner locks.
type counterTable struct {
	slots []counterSlot // len a power of two, or 0; key 0 is a free slot
	n     int
	last  int64 // the newest sub-window seen
	lo    int64 // where it starts, in Unix nanoseconds
	used  bool
}

type counterSlot struct{ k, v uint64 }

const minTableSlots = 8

// slotKey maps a hash to a table key: 0 marks a free slot, so hash 0 shares
// hash 1's count, as two colliding hashes would.
func slotKey(hk uint64) uint64 { return max(hk, 1) }

// home is where key k's probe starts. Its low bits chose the limiter's
// shard, so the table uses the high ones.
func (t *counterTable) home(k uint64) int { return int(k>>32) & (len(t.slots) - 1) }

// find returns k's slot, or the free slot where it would go.
func (t *counterTable) find(k uint64) (int, bool) {
	mask := len(t.slots) - 1
	for i := t.home(k); ; i = (i + 1) & mask {
		switch t.slots[i].k {
		case k:
			return i, true
		case 0:
			return i, false
		}
	}
}

// get returns the state of key hash hk.
func (t *counterTable) get(hk uint64) (uint64, bool) {
	if t.n == 0 {
		return 0, false
	}
	i, ok := t.find(slotKey(hk))
	return t.slots[i].v, ok
}

// set stores the state of key hash hk.
func (t *counterTable) set(hk, v uint64) {
	k := slotKey(hk)
	if (t.n+1)*4 > len(t.slots)*3 {
		t.resize(max(minTableSlots, 2*len(t.slots)))
	}
	i, ok := t.find(k)
	if !ok {
		t.slots[i].k = k
		t.n++
	}
	t.slots[i].v = v
}

// del removes key hash hk, if present.
func (t *counterTable) del(hk uint64) {
	if t.n == 0 {
		return
	}
	if i, ok := t.find(slotKey(hk)); ok {
		t.deleteAt(i)
	}
}

// deleteAt frees slot i and shifts back the keys after it that probed past
// it, so that every key stays reachable from its home.
func (t *counterTable) deleteAt(i int) {
	mask := len(t.slots) - 1
	for j := (i + 1) & mask; t.slots[j].k != 0; j = (j + 1) & mask {
		if h := t.home(t.slots[j].k); (j-h)&mask >= (j-i)&mask {
			t.slots[i] = t.slots[j]
			i = j
		}
	}
	t.slots[i] = counterSlot{}
	t.n--
}

func (t *counterTable) resize(size int) {
	old := t.slots
	t.slots = make([]counterSlot, size)
	for _, s := range old {
		if s.k != 0 {
			i, _ := t.find(s.k)
			t.slots[i] = s
		}
	}
}

// len returns the number of keys tracked.
func (t *counterTable) len() int { return t.n }

// advance returns the sub-window that decides at now: now's own, or the
// newest the table has seen if time went back. Entering a new sub-window
// first drops the keys whose counts have all shifted out.
func (t *counterTable) advance(r windowRule, now time.Time) int64 {
	ns := now.UnixNano()
	if t.used && ns < t.lo+r.q {
		return t.last
	}
	m := r.subWindow(now)
	if t.used {
		t.sweep(m)
	}
	t.used, t.last, t.lo = true, m, m*r.q
	return m
}

// sweep drops the keys idle since before the last 5 sub-windows. Every key
// was last counted at t.last or before and no key is older than 4
// sub-windows before it, so the index modulo 2^14 is exact unless the gap
// is near 2^14, when every key is idle.
func (t *counterTable) sweep(m int64) {
	if m-t.last >= indexMask-subWindows {
		clear(t.slots)
		t.n = 0
	} else {
		idx := uint64(m) & indexMask
		// A deletion shifts later keys back into slot i, so i is looked
		// at again; a key shifted from the table's start to its end is
		// looked at twice, which is harmless.
		for i := 0; i < len(t.slots); {
			if s := t.slots[i]; s.k != 0 && (idx-s.v>>countsBits)&indexMask > subWindows {
				t.deleteAt(i)
				continue
			}
			i++
		}
	}
	if len(t.slots) > minTableSlots && t.n*8 < len(t.slots) {
		t.resize(max(minTableSlots, len(t.slots)/2))
	}
}

// allow decides and counts one event for key hash hk at now, and returns
// the key's state before (old, and whether it had one) for an undo. maxKeys
// caps the table: a new key in a full table first evicts the key in the
// slot after its home, an arbitrary one.
func (t *counterTable) allow(r windowRule, hk uint64, now time.Time, maxKeys int) (d Decision, old uint64, had bool) {
	m := t.advance(r, now)
	k := slotKey(hk)
	i := -1
	if t.n > 0 {
		i, had = t.find(k)
		if had {
			old = t.slots[i].v
		}
	}
	v := rebase(old, had, m)
	if !r.admits(v) {
		return Decision{RetryAfter: r.retryAfter(v, m, now)}, old, had
	}
	if had {
		t.slots[i].v = v + 1
		return Decision{Allowed: true}, old, had
	}
	if t.n >= maxKeys {
		mask := len(t.slots) - 1
		j := (t.home(k) + 1) & mask
		for t.slots[j].k == 0 {
			j = (j + 1) & mask
		}
		t.deleteAt(j)
	}
	t.set(hk, v+1)
	return Decision{Allowed: true}, old, had
}

// refund uncounts one event of key hash hk in the sub-window holding at, if
// the key still holds a count there: the sub-window is neither newer than
// the newest the table has seen nor shifted out of the last 5.
func (t *counterTable) refund(r windowRule, hk uint64, at time.Time) {
	c := r.subWindow(at)
	if !t.used || c > t.last || t.last-c > subWindows || t.n == 0 {
		return
	}
	i, ok := t.find(slotKey(hk))
	if !ok {
		return
	}
	v := t.slots[i].v
	d := (v>>countsBits - uint64(c)) & indexMask
	if d > subWindows {
		return // the key's newest sub-window is older than c
	}
	shift := countBits * d
	if v>>shift&countMask > 0 {
		t.slots[i].v = v - 1<<shift
	}
}
