package realtimeauth

import "net/netip"

// The memory store's indexes. Sessions live in a slab of entries that hold
// no pointers, found through a map from the 16 bytes of their ID to their
// slot, so that the garbage collector never scans them (see
// BenchmarkMemoryStoreGC and TestMemoryStoreEntriesHoldNoPointers); the
// strings they refer to (client keys, subjects, the rare client IP that is
// not a canonical address) are interned in side tables of one entry per
// distinct string, linked by int32 indices.

// none is the null index of every list and table.
const none = -1

// entry is one stored session.
type entry struct {
	id         [16]byte
	ip         [16]byte // the client IP: see encodeIP
	ipKind     uint8
	revoked    bool
	refreshes  int32
	client     int32 // index into clients
	subject    int32 // index into subjects, or none
	created    int64 // Unix nanoseconds
	expires    int64
	lastIssued int64
	// prev and next link the client's live sessions, least recently
	// issued first; sprev and snext link the subject's stored sessions;
	// eprev and enext the sessions expiring in the same second, by expiry.
	prev, next   int32
	sprev, snext int32
	eprev, enext int32
}

// Client IP kinds: a canonical IPv4 or IPv6 address in ip, or any other
// string, interned, its index in ip[0:4].
const (
	ipInterned = iota
	ipV4
	ipV6
)

// encodeIP returns s's encoding, and whether it is an address: only an
// address whose canonical form is s itself is kept as bytes, so that
// decoding gives s back.
func encodeIP(s string) (b [16]byte, kind uint8, ok bool) {
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return b, ipInterned, false
	}
	var buf [64]byte
	if string(a.AppendTo(buf[:0])) != s {
		return b, ipInterned, false
	}
	if a.Is4() {
		v4 := a.As4()
		copy(b[:], v4[:])
		return b, ipV4, true
	}
	return a.As16(), ipV6, true
}

func decodeIP(b [16]byte, kind uint8) netip.Addr {
	if kind == ipV4 {
		return netip.AddrFrom4([4]byte(b[:4]))
	}
	return netip.AddrFrom16(b)
}

func internIndex(b [16]byte) int32 {
	return int32(uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24)
}

func indexBytes(i int32) (b [16]byte) {
	b[0], b[1], b[2], b[3] = byte(i), byte(i>>8), byte(i>>16), byte(i>>24)
	return b
}

// interned is a table of distinct strings with reference counts, each known
// by a small index that stays put while it is referenced.
type interned struct {
	idx  map[string]int32
	keys []string
	refs []int32
	free []int32
}

func newInterned() interned { return interned{idx: make(map[string]int32)} }

func (t *interned) lookup(s string) (int32, bool) {
	i, ok := t.idx[s]
	return i, ok
}

// acquire returns s's index, adding s if it is new (fresh reports that), and
// counts one more reference. It keeps s itself, not a copy: the handler's
// keys are small strings of their own.
func (t *interned) acquire(s string) (i int32, fresh bool) {
	if i, ok := t.idx[s]; ok {
		t.refs[i]++
		return i, false
	}
	if n := len(t.free); n > 0 {
		i = t.free[n-1]
		t.free = t.free[:n-1]
		t.keys[i], t.refs[i] = s, 1
	} else {
		i = int32(len(t.keys))
		t.keys, t.refs = append(t.keys, s), append(t.refs, 1)
	}
	t.idx[s] = i
	return i, true
}

// release drops one reference to i and forgets its string with the last.
func (t *interned) release(i int32) {
	if t.refs[i]--; t.refs[i] > 0 {
		return
	}
	delete(t.idx, t.keys[i])
	t.keys[i] = ""
	t.free = append(t.free, i)
}

// clientInfo is a client's live sessions: how many, the list of them by
// recency, and its place in the list of clients holding as many.
type clientInfo struct {
	live         int32
	head, tail   int32 // entry slots, least recently issued first
	bprev, bnext int32 // client indices in the bucket of its live count
	// detached: the client's bucket is still that of its live count when
	// Open began, and Open moves it when it is done.
	detached bool
}

// subjectInfo is a subject's sessions: how many are live, and the list of
// every stored one (revoked included), for RevokeSubject.
type subjectInfo struct {
	live int32
	head int32
}

// heaviest buckets clients by live count, so that finding a client with
// the most live sessions, and moving one by a session, are O(1).
type heaviest struct {
	heads []int32 // heads[n]: a client holding n live sessions, or none
	max   int32
}

func (h *heaviest) link(cs []clientInfo, ci, n int32) {
	if n == 0 {
		return
	}
	for int32(len(h.heads)) <= n {
		h.heads = append(h.heads, none)
	}
	c := &cs[ci]
	c.bprev, c.bnext = none, h.heads[n]
	if c.bnext != none {
		cs[c.bnext].bprev = ci
	}
	h.heads[n] = ci
	h.max = max(h.max, n)
}

func (h *heaviest) unlink(cs []clientInfo, ci, n int32) {
	if n == 0 {
		return
	}
	c := &cs[ci]
	if c.bprev != none {
		cs[c.bprev].bnext = c.bnext
	} else {
		h.heads[n] = c.bnext
	}
	if c.bnext != none {
		cs[c.bnext].bprev = c.bprev
	}
	// A client moves by one session at a time, so the new maximum is at
	// most one step down.
	for h.max > 0 && h.heads[h.max] == none {
		h.max--
	}
}

// top returns a client holding the most live sessions, and how many.
func (h *heaviest) top() (int32, int32) {
	if h.max == 0 {
		return none, 0
	}
	return h.heads[h.max], h.max
}

// parseID decodes a canonical lower-case UUID, the only form the store
// issues; anything else is no session.
func parseID(s string) (id [16]byte, ok bool) {
	if len(s) != 36 || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-' {
		return id, false
	}
	bad := byte(0)
	for j, i := range idOffsets {
		hi, lo := hexValue[s[i]], hexValue[s[i+1]]
		bad |= hi | lo
		id[j] = hi<<4 | lo
	}
	return id, bad&0x10 == 0
}

// idOffsets are where the 16 bytes of a canonical UUID start.
var idOffsets = [16]int{0, 2, 4, 6, 9, 11, 14, 16, 19, 21, 24, 26, 28, 30, 32, 34}

// hexValue maps a lower-case hex digit to its value and anything else to
// 0x10.
var hexValue = func() (t [256]byte) {
	for i := range t {
		t[i] = 0x10
	}
	for i := range 10 {
		t['0'+i] = byte(i)
	}
	for i := range 6 {
		t['a'+i] = byte(10 + i)
	}
	return t
}()
