package realtimeauth

import "time"

// The sub-window counter of MemoryLimiter's doc, shared by MemoryLimiter and
// the MemoryStore's allowances. A key's state is one uint64:
//
//	bits 50..63  the index of its newest sub-window, modulo 2^14
//	bits 40..49  b[m-4]
//	   …
//	bits  0..9   b[m], the count of that newest sub-window
const (
	countBits  = 10
	countMask  = 1<<countBits - 1
	countsBits = 5 * countBits
	countsMask = 1<<countsBits - 1
	indexBits  = 64 - countsBits
	indexMask  = 1<<indexBits - 1
	subWindows = 4
)

// windowRule is one limit: n events per window, m = max(n+1, 5n/4) per
// 5 sub-windows of q each.
type windowRule struct {
	n, m   uint64
	q      int64 // sub-window length in nanoseconds, window/4
	window time.Duration
}

func newWindowRule(limit int, window time.Duration) windowRule {
	n := uint64(limit)
	return windowRule{n: n, m: max(n+1, 5*n/4), q: int64(window / subWindows), window: window}
}

// subWindow returns the index of the sub-window holding now.
func (r windowRule) subWindow(now time.Time) int64 {
	t := now.UnixNano()
	i := t / r.q
	if t%r.q < 0 {
		i--
	}
	return i
}

// rebase returns the state v (ok: present) as seen from sub-window m, which
// is not before v's own: older counts shift out, newer ones start at 0.
func rebase(v uint64, ok bool, m int64) uint64 {
	idx := uint64(m) & indexMask
	if !ok {
		return idx << countsBits
	}
	d := (idx - v>>countsBits) & indexMask
	if d == 0 {
		return v
	}
	if d > subWindows {
		return idx << countsBits
	}
	return idx<<countsBits | v<<(countBits*d)&countsMask
}

// sums returns b[m]+…+b[m-3] and b[m]+…+b[m-4] of a rebased state.
func sums(v uint64) (s4, s5 uint64) {
	s4 = v&countMask + v>>countBits&countMask + v>>(2*countBits)&countMask + v>>(3*countBits)&countMask
	return s4, s4 + v>>(4*countBits)&countMask
}

// admits reports whether one more event fits the rebased state v.
func (r windowRule) admits(v uint64) bool {
	s4, s5 := sums(v)
	return s4+1 <= r.n && s5+1 <= r.m
}

// retryAfter returns how long after now (in sub-window m, the index of the
// rebased state v, which did not admit) the first sub-window boundary lies
// at which v would admit. The fourth boundary always does: only b[m] is
// left in the last five then, and b[m] <= n < m.
func (r windowRule) retryAfter(v uint64, m int64, now time.Time) time.Duration {
	k := int64(1)
	for ; k < subWindows; k++ {
		if r.admits(v << (countBits * uint64(k)) & countsMask) {
			break
		}
	}
	d := time.Duration((m+k)*r.q - now.UnixNano())
	// m is later than now's own sub-window only when time went back.
	return min(d, r.window)
}

// counterTable holds the states of many keys for one window length, keyed
// by the keys' hashes. It is not safe for concurrent use: its owner locks.
type counterTable struct {
	m    map[uint64]uint64
	last int64 // the newest sub-window seen, when the table last swept
	used bool
}

// advance returns the sub-window that decides at now: now's own, or the
// newest the table has seen if time went back. Entering a new sub-window
// first drops the keys whose counts have all shifted out.
func (t *counterTable) advance(r windowRule, now time.Time) int64 {
	m := r.subWindow(now)
	if !t.used {
		t.used, t.last = true, m
		return m
	}
	if m <= t.last {
		return t.last
	}
	// Every key was last counted at t.last or before and no key is older
	// than 4 sub-windows before it, so the index modulo 2^14 is exact
	// unless the gap is near 2^14.
	if m-t.last >= indexMask-subWindows {
		clear(t.m)
	} else {
		idx := uint64(m) & indexMask
		for k, v := range t.m {
			if (idx-v>>countsBits)&indexMask > subWindows {
				delete(t.m, k)
			}
		}
	}
	t.last = m
	return m
}

// allow decides and counts one event for key hash hk at now, and returns
// the key's state before (old, and whether it had one) for an undo. maxKeys
// caps the table: a new key in a full table first evicts an arbitrary one
// (Go's map iteration starts at a random place).
func (t *counterTable) allow(r windowRule, hk uint64, now time.Time, maxKeys int) (d Decision, old uint64, had bool) {
	m := t.advance(r, now)
	old, had = t.m[hk]
	v := rebase(old, had, m)
	if !r.admits(v) {
		return Decision{RetryAfter: r.retryAfter(v, m, now)}, old, had
	}
	if !had && len(t.m) >= maxKeys {
		for k := range t.m {
			delete(t.m, k)
			break
		}
	}
	t.m[hk] = v + 1
	return Decision{Allowed: true}, old, had
}
