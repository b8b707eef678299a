package realtimeauth

import (
	"context"
	"hash/maphash"
	"sync"
	"time"

	"github.com/google/uuid"
)

// MemoryStore is an in-process SessionStore, and the allowances its
// operations are charged against (counted by MemoryLimiter's rule). Every
// operation holds one mutex. Sessions are forgotten at their ExpiresAt:
// every call that is given a time first drops the sessions that have
// expired, in order of expiry from a heap, so there is no background
// goroutine. It returns times in UTC.
//
// Allowance limits must be in 1..1023 and windows positive multiples of 4ns;
// Open and Refresh return an error (none of the sentinels) otherwise.
// Allowance keys are tracked by hash, capped by WithMemoryMaxKeys.
type MemoryStore struct {
	mu       sync.Mutex
	seed     maphash.Seed
	maxKeys  int
	sessions map[string]*memSession
	clients  map[string]map[string]struct{} // live session IDs by client
	subjects map[string]map[string]struct{} // stored session IDs by subject
	expiries expiryHeap
	live     int
	allow    map[time.Duration]*counterTable
}

var _ SessionStore = (*MemoryStore)(nil)

type memSession struct {
	Session
}

// NewMemoryStore returns an empty MemoryStore.
func NewMemoryStore(opts ...MemoryOption) *MemoryStore {
	c := newMemoryConfig(opts)
	return &MemoryStore{
		seed:     maphash.MakeSeed(),
		maxKeys:  c.maxKeys,
		sessions: make(map[string]*memSession),
		clients:  make(map[string]map[string]struct{}),
		subjects: make(map[string]map[string]struct{}),
		allow:    make(map[time.Duration]*counterTable),
	}
}

// Open implements SessionStore.
func (m *MemoryStore) Open(_ context.Context, req OpenRequest) (Session, []Session, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.expire(req.Now)
	var undo undoLog
	if err := m.charge(req.Allowances, req.Now, &undo); err != nil {
		return Session{}, nil, err
	}
	if req.MaxPerSubject > 0 && req.Subject != "" && m.liveOfSubject(req.Subject) >= req.MaxPerSubject {
		undo.rollback()
		return Session{}, nil, ErrTooManySessions
	}
	// The client's own evictions first: they make room in the total too.
	own := len(m.clients[req.Client])
	evictOwn := 0
	if req.MaxPerClient > 0 && own >= req.MaxPerClient {
		evictOwn = own - req.MaxPerClient + 1
	}
	var heaviest string
	if req.MaxSessions > 0 && m.live-evictOwn >= req.MaxSessions {
		var n int
		heaviest, n = m.heaviest()
		if heaviest == req.Client || own-evictOwn >= n {
			undo.rollback()
			return Session{}, nil, ErrStoreFull
		}
	}
	var evicted []Session
	for range evictOwn {
		evicted = append(evicted, m.evictLRU(req.Client))
	}
	if heaviest != "" {
		evicted = append(evicted, m.evictLRU(heaviest))
	}
	s := Session{
		ID:           uuid.NewString(),
		ClientIP:     req.ClientIP,
		Client:       req.Client,
		Subject:      req.Subject,
		CreatedAt:    req.Now.UTC(),
		ExpiresAt:    req.ExpiresAt.UTC(),
		LastIssuedAt: req.Now.UTC(),
	}
	m.insert(s)
	return s, evicted, nil
}

// Refresh implements SessionStore.
func (m *MemoryStore) Refresh(_ context.Context, req RefreshRequest) (Session, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.expire(req.Now)
	ms, ok := m.sessions[req.ID]
	switch {
	case !ok:
		return Session{}, ErrSessionNotFound
	case ms.Revoked:
		return Session{}, ErrSessionRevoked
	case ms.ClientIP != req.ClientIP || ms.Subject != req.Subject:
		return Session{}, ErrSessionMismatch
	case ms.Refreshes >= req.MaxRefreshes:
		return Session{}, ErrRefreshLimit
	case ms.LastIssuedAt.Add(req.MinInterval).After(req.Now):
		return ms.Session, ErrRefreshTooSoon
	}
	var undo undoLog
	if err := m.charge(req.Allowances, req.Now, &undo); err != nil {
		return Session{}, err
	}
	ms.Refreshes++
	ms.LastIssuedAt = req.Now.UTC()
	return ms.Session, nil
}

// GiveBack implements SessionStore.
func (m *MemoryStore) GiveBack(_ context.Context, id string, issuedAt, restore time.Time) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	ms, ok := m.sessions[id]
	if !ok || ms.Revoked || !ms.LastIssuedAt.Equal(issuedAt) {
		return nil
	}
	ms.Refreshes = max(0, ms.Refreshes-1)
	ms.LastIssuedAt = restore.UTC()
	return nil
}

// Revoke implements SessionStore.
func (m *MemoryStore) Revoke(_ context.Context, id string, now time.Time) (Session, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.expire(now)
	ms, ok := m.sessions[id]
	if !ok {
		return Session{}, ErrSessionNotFound
	}
	m.revoke(ms)
	return ms.Session, nil
}

// RevokeSubject implements SessionStore.
func (m *MemoryStore) RevokeSubject(_ context.Context, subject string, now time.Time) ([]Session, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.expire(now)
	var out []Session
	for id := range m.subjects[subject] {
		if ms := m.sessions[id]; !ms.Revoked {
			m.revoke(ms)
			out = append(out, ms.Session)
		}
	}
	return out, nil
}

// Delete implements SessionStore.
func (m *MemoryStore) Delete(_ context.Context, id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.remove(id)
	return nil
}

// Count implements SessionStore.
func (m *MemoryStore) Count(_ context.Context, now time.Time) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.expire(now)
	return m.live, nil
}

// Len returns the number of stored sessions, revoked ones included, without
// dropping expired ones first.
func (m *MemoryStore) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.sessions)
}

// charge checks and counts every allowance, or none: on a refusal it rolls
// back what it counted and returns a *LimitError.
func (m *MemoryStore) charge(as []Allowance, now time.Time, undo *undoLog) error {
	for _, a := range as {
		if err := checkLimit("Allowance "+a.Key, a.Limit, a.Window); err != nil {
			undo.rollback()
			return err
		}
		t := m.allow[a.Window]
		if t == nil {
			t = &counterTable{m: make(map[uint64]uint64)}
			m.allow[a.Window] = t
		}
		hk := maphash.String(m.seed, a.Key)
		old, had := t.m[hk]
		r := newWindowRule(a.Limit, a.Window)
		if d := t.allow(r, hk, now, m.maxKeys); !d.Allowed {
			undo.rollback()
			return &LimitError{Key: a.Key, RetryAfter: d.RetryAfter}
		}
		undo.push(t, hk, old, had)
	}
	return nil
}

// undoLog restores counter states when a later allowance or cap refuses.
type undoLog struct {
	entries []undoEntry
}

type undoEntry struct {
	t   *counterTable
	hk  uint64
	old uint64
	had bool
}

func (u *undoLog) push(t *counterTable, hk, old uint64, had bool) {
	u.entries = append(u.entries, undoEntry{t, hk, old, had})
}

func (u *undoLog) rollback() {
	for i := len(u.entries) - 1; i >= 0; i-- {
		e := u.entries[i]
		if e.had {
			e.t.m[e.hk] = e.old
		} else {
			delete(e.t.m, e.hk)
		}
	}
	u.entries = u.entries[:0]
}

func (m *MemoryStore) liveOfSubject(subject string) int {
	n := 0
	for id := range m.subjects[subject] {
		if !m.sessions[id].Revoked {
			n++
		}
	}
	return n
}

// heaviest returns a client holding the most live sessions, and how many.
func (m *MemoryStore) heaviest() (string, int) {
	var best string
	n := 0
	for c, ids := range m.clients {
		if len(ids) > n {
			best, n = c, len(ids)
		}
	}
	return best, n
}

// evictLRU removes the client's live session with the oldest LastIssuedAt.
func (m *MemoryStore) evictLRU(client string) Session {
	var lru *memSession
	for id := range m.clients[client] {
		ms := m.sessions[id]
		if lru == nil || ms.LastIssuedAt.Before(lru.LastIssuedAt) ||
			ms.LastIssuedAt.Equal(lru.LastIssuedAt) && ms.ID < lru.ID {
			lru = ms
		}
	}
	s := lru.Session
	m.remove(s.ID)
	return s
}

func (m *MemoryStore) insert(s Session) {
	m.sessions[s.ID] = &memSession{Session: s}
	addTo(m.clients, s.Client, s.ID)
	if s.Subject != "" {
		addTo(m.subjects, s.Subject, s.ID)
	}
	m.live++
	m.expiries.push(expiry{at: s.ExpiresAt.UnixNano(), id: s.ID})
}

func (m *MemoryStore) revoke(ms *memSession) {
	if ms.Revoked {
		return
	}
	ms.Revoked = true
	m.live--
	removeFrom(m.clients, ms.Client, ms.ID)
}

func (m *MemoryStore) remove(id string) {
	ms, ok := m.sessions[id]
	if !ok {
		return
	}
	if !ms.Revoked {
		m.live--
		removeFrom(m.clients, ms.Client, id)
	}
	delete(m.sessions, id)
	if ms.Subject != "" {
		removeFrom(m.subjects, ms.Subject, id)
	}
}

func addTo(sets map[string]map[string]struct{}, k, id string) {
	ids := sets[k]
	if ids == nil {
		ids = make(map[string]struct{})
		sets[k] = ids
	}
	ids[id] = struct{}{}
}

func removeFrom(sets map[string]map[string]struct{}, k, id string) {
	ids := sets[k]
	delete(ids, id)
	if len(ids) == 0 {
		delete(sets, k)
	}
}

// expire drops every session whose ExpiresAt is not after now. The heap may
// hold entries for deleted sessions; those are skipped.
func (m *MemoryStore) expire(now time.Time) {
	t := now.UnixNano()
	for len(m.expiries) > 0 && m.expiries[0].at <= t {
		e := m.expiries.pop()
		if ms, ok := m.sessions[e.id]; ok && ms.ExpiresAt.UnixNano() == e.at {
			m.remove(e.id)
		}
	}
	// Deleted sessions leave entries behind; rebuild when they dominate.
	if len(m.expiries) > 64 && len(m.expiries) > 2*len(m.sessions) {
		m.expiries = m.expiries[:0]
		for id, ms := range m.sessions {
			m.expiries = append(m.expiries, expiry{at: ms.ExpiresAt.UnixNano(), id: id})
		}
		m.expiries.init()
	}
}

// expiry is a heap entry: a session ID and its ExpiresAt in Unix
// nanoseconds.
type expiry struct {
	at int64
	id string
}

// expiryHeap is a min-heap by at, typed so that pushing does not box each
// entry into an interface as container/heap would.
type expiryHeap []expiry

func (h *expiryHeap) push(e expiry) {
	*h = append(*h, e)
	h.up(len(*h) - 1)
}

func (h *expiryHeap) pop() expiry {
	old := *h
	e := old[0]
	n := len(old) - 1
	old[0] = old[n]
	old[n] = expiry{}
	*h = old[:n]
	h.down(0)
	return e
}

func (h expiryHeap) init() {
	for i := len(h)/2 - 1; i >= 0; i-- {
		h.down(i)
	}
}

func (h expiryHeap) up(i int) {
	for i > 0 {
		p := (i - 1) / 2
		if h[p].at <= h[i].at {
			return
		}
		h[p], h[i] = h[i], h[p]
		i = p
	}
}

func (h expiryHeap) down(i int) {
	for {
		l := 2*i + 1
		if l >= len(h) {
			return
		}
		c := l
		if r := l + 1; r < len(h) && h[r].at < h[l].at {
			c = r
		}
		if h[i].at <= h[c].at {
			return
		}
		h[i], h[c] = h[c], h[i]
		i = c
	}
}
