package realtimeauth

import "time"

// The sub-window counter of NewMemoryLimiter's doc, shared by memoryLimiter and
// the memory store's allowances. A key's state is one uint64:
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
