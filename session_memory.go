package realtimeauth

import (
	"context"
	"hash/maphash"
	"math"
	"sync"
	"time"

	"github.com/google/uuid"
)

// NewMemoryStore returns an empty in-process SessionStore, which also keeps
// the allowances its operations are charged against (counted by
// NewMemoryLimiter's rule). Every operation holds one mutex and costs O(1)
// (amortised) but for Open's and Refresh's walk to a session's place by
// recency, which is short. Sessions are forgotten at their ExpiresAt: every
// call that is given a time first drops the sessions that have expired, in
// order of expiry, so there is no background goroutine. It returns times in
// UTC.
//
// Its sessions hold no pointers, so that a million of them cost the garbage
// collector nothing to scan; the strings they share (clients, subjects) are
// kept once each.
//
// Allowance limits must be in 1..1023 and windows positive multiples of 4ns;
// Open and Refresh return an error (none of the sentinels) otherwise.
// Allowance keys are tracked by hash, at most about 1,000,000 per window
// length (a new key in a full table forgets an arbitrary one). Sessions are
// capped by OpenRequest.MaxSessions instead.
func NewMemoryStore() SessionStore { return newMemoryStore(memoryMaxKeys) }

// memoryStore is NewMemoryStore's SessionStore.
type memoryStore struct {
	mu       sync.Mutex
	sessions map[[16]byte]int32 // ID → slot in entries
	entries  []entry
	free     []int32 // slots to reuse
	clients  interned
	cinfo    []clientInfo // by client index
	subjects interned
	sinfo    []subjectInfo // by subject index
	ips      interned      // client IPs that are not canonical addresses
	heavy    heaviest
	expiry   expiryIndex
	live     int

	seed    maphash.Seed
	maxKeys int
	allow   map[time.Duration]*allowTables
	undo    []undoEntry
}

var _ SessionStore = (*memoryStore)(nil)

// newMemoryStore is NewMemoryStore with about maxKeys allowance keys per
// window length.
func newMemoryStore(maxKeys int) *memoryStore {
	return &memoryStore{
		sessions: make(map[[16]byte]int32),
		clients:  newInterned(),
		subjects: newInterned(),
		ips:      newInterned(),
		seed:     maphash.MakeSeed(),
		maxKeys:  maxKeys,
		allow:    make(map[time.Duration]*allowTables),
	}
}

// Open implements SessionStore.
func (m *memoryStore) Open(_ context.Context, req OpenRequest) (Session, []Session, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.expire(req.Now)
	if err := m.charge(req.Allowances, req.Now); err != nil {
		return Session{}, nil, err
	}
	if req.MaxPerSubject > 0 && req.Subject != "" {
		if si, ok := m.subjects.lookup(req.Subject); ok && int(m.sinfo[si].live) >= req.MaxPerSubject {
			m.rollback()
			return Session{}, nil, ErrTooManySessions
		}
	}
	ci, known := m.clients.lookup(req.Client)
	own := 0
	if known {
		own = int(m.cinfo[ci].live)
	}
	evictOwn := 0
	if req.MaxPerClient > 0 && own >= req.MaxPerClient {
		evictOwn = own - req.MaxPerClient + 1
	}
	heavy := int32(none)
	if req.MaxSessions > 0 && m.live-evictOwn >= req.MaxSessions {
		h, n := m.heavy.top()
		if h == none || known && h == ci || own-evictOwn >= int(n) {
			m.rollback()
			return Session{}, nil, ErrStoreFull
		}
		heavy = h
	}
	// Every check passed: from here on, change.
	if known {
		m.clients.refs[ci]++
	} else {
		ci = m.acquireClient(req.Client)
	}
	// The client's bucket by live count moves once, at the end: at its cap
	// it evicts one and gains one, and so does not move at all.
	was := m.cinfo[ci].live
	m.cinfo[ci].detached = true
	var evicted []Session
	for range evictOwn {
		evicted = append(evicted, m.evict(m.cinfo[ci].head))
	}
	if heavy != none {
		evicted = append(evicted, m.evict(m.cinfo[heavy].head))
	}
	id := [16]byte(uuid.New())
	slot := m.insert(id, req, ci)
	m.cinfo[ci].detached = false
	if now := m.cinfo[ci].live; now != was {
		m.heavy.unlink(m.cinfo, ci, was)
		m.heavy.link(m.cinfo, ci, now)
	}
	s := m.session(slot, uuid.UUID(id).String(), req.ClientIP)
	return s, evicted, nil
}

// Refresh implements SessionStore.
func (m *memoryStore) Refresh(_ context.Context, req RefreshRequest) (Session, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.expire(req.Now)
	slot, ok := m.lookup(req.ID)
	if !ok {
		return Session{}, ErrSessionNotFound
	}
	e := &m.entries[slot]
	switch {
	case e.revoked:
		return Session{}, ErrSessionRevoked
	case !m.sameIP(e, req.ClientIP) || m.subjectOf(e) != req.Subject:
		return Session{}, ErrSessionMismatch
	case int(e.refreshes) >= req.MaxRefreshes:
		return Session{}, ErrRefreshLimit
	case req.MinInterval > 0 && time.Unix(0, e.lastIssued).Add(req.MinInterval).After(req.Now):
		return m.session(slot, req.ID, req.ClientIP), ErrRefreshTooSoon
	}
	if err := m.charge(req.Allowances, req.Now); err != nil {
		return Session{}, err
	}
	e.refreshes = int32(min(int64(e.refreshes)+1, math.MaxInt32))
	m.reissue(slot, req.Now.UnixNano())
	return m.session(slot, req.ID, req.ClientIP), nil
}

// GiveBack implements SessionStore.
func (m *memoryStore) GiveBack(_ context.Context, id string, issuedAt, restore time.Time) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	slot, ok := m.lookup(id)
	if !ok {
		return nil
	}
	e := &m.entries[slot]
	if e.revoked || e.lastIssued != issuedAt.UnixNano() {
		return nil
	}
	e.refreshes = max(0, e.refreshes-1)
	m.reissue(slot, restore.UnixNano())
	return nil
}

// Revoke implements SessionStore.
func (m *memoryStore) Revoke(_ context.Context, id string, now time.Time) (Session, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.expire(now)
	slot, ok := m.lookup(id)
	if !ok {
		return Session{}, ErrSessionNotFound
	}
	m.revoke(slot)
	return m.session(slot, id, ""), nil
}

// RevokeSubject implements SessionStore.
func (m *memoryStore) RevokeSubject(_ context.Context, subject string, now time.Time) ([]Session, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.expire(now)
	si, ok := m.subjects.lookup(subject)
	if !ok {
		return nil, nil
	}
	var out []Session
	for slot := m.sinfo[si].head; slot != none; slot = m.entries[slot].snext {
		if !m.entries[slot].revoked {
			m.revoke(slot)
			out = append(out, m.session(slot, "", ""))
		}
	}
	return out, nil
}

// Delete implements SessionStore.
func (m *memoryStore) Delete(_ context.Context, id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if slot, ok := m.lookup(id); ok {
		m.remove(slot)
	}
	return nil
}

// Restore implements SessionStore.
func (m *memoryStore) Restore(_ context.Context, sessions []Session, now time.Time) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.expire(now)
	for _, s := range sessions {
		id, ok := parseID(s.ID)
		if !ok || s.Revoked || !s.ExpiresAt.After(now) {
			continue
		}
		if _, taken := m.sessions[id]; taken {
			continue
		}
		ci, known := m.clients.lookup(s.Client)
		if known {
			m.clients.refs[ci]++
		} else {
			ci = m.acquireClient(s.Client)
		}
		// Inserted at its LastIssuedAt, so that it takes its place by
		// recency again, then given back its creation and refreshes.
		slot := m.insert(id, OpenRequest{Now: s.LastIssuedAt, ExpiresAt: s.ExpiresAt, ClientIP: s.ClientIP, Subject: s.Subject}, ci)
		m.entries[slot].created = s.CreatedAt.UnixNano()
		m.entries[slot].refreshes = int32(min(max(s.Refreshes, 0), math.MaxInt32))
	}
	return nil
}

// Count implements SessionStore.
func (m *memoryStore) Count(_ context.Context, now time.Time) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.expire(now)
	return m.live, nil
}

// Len returns the number of stored sessions, revoked ones included, without
// dropping expired ones first.
func (m *memoryStore) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.sessions)
}

func (m *memoryStore) lookup(id string) (int32, bool) {
	key, ok := parseID(id)
	if !ok {
		return none, false
	}
	slot, ok := m.sessions[key]
	return slot, ok
}

// session returns the Session in slot; id and ip, when the caller has them,
// save formatting them again.
func (m *memoryStore) session(slot int32, id, ip string) Session {
	e := &m.entries[slot]
	if id == "" {
		id = uuid.UUID(e.id).String()
	}
	if ip == "" {
		if e.ipKind == ipInterned {
			ip = m.ips.keys[internIndex(e.ip)]
		} else {
			ip = decodeIP(e.ip, e.ipKind).String()
		}
	}
	return Session{
		ID:           id,
		ClientIP:     ip,
		Client:       m.clients.keys[e.client],
		Subject:      m.subjectOf(e),
		CreatedAt:    time.Unix(0, e.created).UTC(),
		ExpiresAt:    time.Unix(0, e.expires).UTC(),
		LastIssuedAt: time.Unix(0, e.lastIssued).UTC(),
		Refreshes:    int(e.refreshes),
		Revoked:      e.revoked,
	}
}

func (m *memoryStore) subjectOf(e *entry) string {
	if e.subject == none {
		return ""
	}
	return m.subjects.keys[e.subject]
}

func (m *memoryStore) sameIP(e *entry, ip string) bool {
	if b, kind, ok := encodeIP(ip); ok {
		return e.ipKind == kind && e.ip == b
	}
	i, ok := m.ips.lookup(ip)
	return ok && e.ipKind == ipInterned && internIndex(e.ip) == i
}

func (m *memoryStore) acquireClient(client string) int32 {
	ci, fresh := m.clients.acquire(client)
	if fresh {
		c := clientInfo{head: none, tail: none, bprev: none, bnext: none}
		if int(ci) == len(m.cinfo) {
			m.cinfo = append(m.cinfo, c)
		} else {
			m.cinfo[ci] = c
		}
	}
	return ci
}

// setLive moves client ci to n live sessions.
func (m *memoryStore) setLive(ci, n int32) {
	if m.cinfo[ci].detached { // Open places it when done
		m.cinfo[ci].live = n
		return
	}
	m.heavy.unlink(m.cinfo, ci, m.cinfo[ci].live)
	m.cinfo[ci].live = n
	m.heavy.link(m.cinfo, ci, n)
}

func (m *memoryStore) insert(id [16]byte, req OpenRequest, ci int32) int32 {
	e := entry{
		id: id, client: ci, subject: none,
		created: req.Now.UnixNano(), expires: req.ExpiresAt.UnixNano(), lastIssued: req.Now.UnixNano(),
		prev: none, next: none, sprev: none, snext: none, eprev: none, enext: none,
	}
	var ok bool
	if e.ip, e.ipKind, ok = encodeIP(req.ClientIP); !ok {
		i, _ := m.ips.acquire(req.ClientIP)
		e.ip, e.ipKind = indexBytes(i), ipInterned
	}
	var slot int32
	if n := len(m.free); n > 0 {
		slot = m.free[n-1]
		m.free = m.free[:n-1]
		m.entries[slot] = e
	} else {
		slot = int32(len(m.entries))
		m.entries = append(m.entries, e)
	}
	m.sessions[id] = slot
	m.linkLRU(ci, slot)
	m.setLive(ci, m.cinfo[ci].live+1)
	if req.Subject != "" {
		si, fresh := m.subjects.acquire(req.Subject)
		if fresh {
			if int(si) == len(m.sinfo) {
				m.sinfo = append(m.sinfo, subjectInfo{head: none})
			} else {
				m.sinfo[si] = subjectInfo{head: none}
			}
		}
		ep := &m.entries[slot]
		ep.subject, ep.snext = si, m.sinfo[si].head
		if ep.snext != none {
			m.entries[ep.snext].sprev = slot
		}
		m.sinfo[si].head = slot
		m.sinfo[si].live++
	}
	m.live++
	m.expiry.link(m.entries, slot)
	return slot
}

// linkLRU places a live session in its client's list by LastIssuedAt,
// walking back from the most recent (times arrive nearly in order), after
// the sessions issued at the same time.
func (m *memoryStore) linkLRU(ci, slot int32) {
	c, es := &m.cinfo[ci], m.entries
	p := c.tail
	for p != none && es[p].lastIssued > es[slot].lastIssued {
		p = es[p].prev
	}
	es[slot].prev = p
	if p == none {
		es[slot].next, c.head = c.head, slot
	} else {
		es[slot].next, es[p].next = es[p].next, slot
	}
	if n := es[slot].next; n != none {
		es[n].prev = slot
	} else {
		c.tail = slot
	}
}

func (m *memoryStore) unlinkLRU(ci, slot int32) {
	c, es := &m.cinfo[ci], m.entries
	if p := es[slot].prev; p != none {
		es[p].next = es[slot].next
	} else {
		c.head = es[slot].next
	}
	if n := es[slot].next; n != none {
		es[n].prev = es[slot].prev
	} else {
		c.tail = es[slot].prev
	}
	es[slot].prev, es[slot].next = none, none
}

// reissue moves a live session's LastIssuedAt, and its place by recency.
func (m *memoryStore) reissue(slot int32, at int64) {
	e := &m.entries[slot]
	m.unlinkLRU(e.client, slot)
	e.lastIssued = at
	m.linkLRU(e.client, slot)
}

func (m *memoryStore) revoke(slot int32) {
	e := &m.entries[slot]
	if e.revoked {
		return
	}
	e.revoked = true
	m.unlinkLRU(e.client, slot)
	m.setLive(e.client, m.cinfo[e.client].live-1)
	if e.subject != none {
		m.sinfo[e.subject].live--
	}
	m.live--
}

// evict removes a live session and returns it as it was.
func (m *memoryStore) evict(slot int32) Session {
	s := m.session(slot, "", "")
	m.remove(slot)
	return s
}

func (m *memoryStore) remove(slot int32) {
	m.revoke(slot)
	e := &m.entries[slot]
	if e.subject != none {
		si := e.subject
		if e.sprev != none {
			m.entries[e.sprev].snext = e.snext
		} else {
			m.sinfo[si].head = e.snext
		}
		if e.snext != none {
			m.entries[e.snext].sprev = e.sprev
		}
		m.subjects.release(si)
	}
	if e.ipKind == ipInterned {
		m.ips.release(internIndex(e.ip))
	}
	m.clients.release(e.client)
	m.expiry.unlink(m.entries, slot)
	delete(m.sessions, e.id)
	*e = entry{}
	m.free = append(m.free, slot)
}

// expire drops every session whose ExpiresAt is not after now.
func (m *memoryStore) expire(now time.Time) {
	t := now.UnixNano()
	for slot := m.expiry.next(m.entries, t); slot != none; slot = m.expiry.next(m.entries, t) {
		m.remove(slot)
	}
}
