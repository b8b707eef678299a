package realtimeauth

import "time"

// expiryIndex finds the memory store's sessions in order of expiry. Sessions
// are linked, by slot, into buckets of one second of ExpiresAt, each kept
// sorted; a typed min-heap of the buckets' seconds gives the earliest. A
// session arriving later in its second than the others (the usual case: one
// TTL, a clock that moves forward) is appended, a deleted or evicted one is
// unlinked in O(1) and leaves nothing behind, so that no rebuild ever
// stalls the store: a heap of sessions with lazy deletion had to be rebuilt
// from the whole map every million evictions at a million sessions, a
// 130-190 ms pause under the store's lock.
type expiryIndex struct {
	buckets map[int64]expiryBucket // by second of ExpiresAt
	seconds secondHeap             // the keys of buckets
}

type expiryBucket struct{ head, tail int32 }

const expiryGrain = int64(time.Second)

func expirySecond(at int64) int64 {
	k := at / expiryGrain
	if at%expiryGrain < 0 {
		k--
	}
	return k
}

// link adds the session in slot to its second's bucket, in order.
func (x *expiryIndex) link(es []entry, slot int32) {
	if x.buckets == nil {
		x.buckets = make(map[int64]expiryBucket)
	}
	k := expirySecond(es[slot].expires)
	b, ok := x.buckets[k]
	if !ok {
		b = expiryBucket{none, none}
		x.seconds.push(k)
	}
	p := b.tail
	for p != none && es[p].expires > es[slot].expires {
		p = es[p].eprev
	}
	es[slot].eprev = p
	if p == none {
		es[slot].enext, b.head = b.head, slot
	} else {
		es[slot].enext, es[p].enext = es[p].enext, slot
	}
	if n := es[slot].enext; n != none {
		es[n].eprev = slot
	} else {
		b.tail = slot
	}
	x.buckets[k] = b
}

// unlink removes the session in slot. An emptied bucket stays until its
// second comes, so that a second is in the heap once.
func (x *expiryIndex) unlink(es []entry, slot int32) {
	k := expirySecond(es[slot].expires)
	b := x.buckets[k]
	if p := es[slot].eprev; p != none {
		es[p].enext = es[slot].enext
	} else {
		b.head = es[slot].enext
	}
	if n := es[slot].enext; n != none {
		es[n].eprev = es[slot].eprev
	} else {
		b.tail = es[slot].eprev
	}
	x.buckets[k] = b
}

// next returns the slot of a session expired at t (ExpiresAt <= t), or
// none, dropping the buckets it finds empty on the way.
func (x *expiryIndex) next(es []entry, t int64) int32 {
	for len(x.seconds) > 0 {
		k := x.seconds[0]
		if k > expirySecond(t) {
			return none
		}
		if h := x.buckets[k].head; h != none {
			if es[h].expires <= t {
				return h
			}
			return none
		}
		delete(x.buckets, k)
		x.seconds.pop()
	}
	return none
}

// secondHeap is a min-heap of bucket seconds, typed so that pushing does
// not box each one into an interface as container/heap would.
type secondHeap []int64

func (h *secondHeap) push(k int64) {
	*h = append(*h, k)
	s := *h
	for i := len(s) - 1; i > 0; {
		p := (i - 1) / 2
		if s[p] <= s[i] {
			break
		}
		s[p], s[i] = s[i], s[p]
		i = p
	}
}

func (h *secondHeap) pop() {
	s := *h
	n := len(s) - 1
	s[0] = s[n]
	s = s[:n]
	*h = s
	for i := 0; ; {
		l := 2*i + 1
		if l >= n {
			return
		}
		c := l
		if r := l + 1; r < n && s[r] < s[l] {
			c = r
		}
		if s[i] <= s[c] {
			return
		}
		s[i], s[c] = s[c], s[i]
		i = c
	}
}
