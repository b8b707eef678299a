package realtimeauth

import (
	"context"
	"math"
	"sync"
	"time"
)

// Session is the server's record of one voice session: who opened it and how
// many tokens it has been issued.
type Session struct {
	// ID is the unguessable session ID the client presents to refresh.
	ID string
	// ClientIP is the full address the session was opened from; refreshes
	// must come from it.
	ClientIP string
	// Subject is the authenticated user (WithAuthenticator), or "".
	Subject string
	// CreatedAt and ExpiresAt bound the session's life; refreshes are refused
	// after ExpiresAt, and the store forgets the session then.
	CreatedAt, ExpiresAt time.Time
	// LastIssuedAt is when the session's newest token was issued.
	LastIssuedAt time.Time
	// Refreshes counts the tokens issued by refresh (the first is not one).
	Refreshes int
	// Revoked sessions stay stored until they expire, so that their refresh
	// is answered session_revoked, but no longer count as active.
	Revoked bool
}

// SessionUpdate is one atomic read-modify-write of a stored session, spelled
// out as data so that every store (a map under a mutex, a Lua script in
// Redis) can apply it in one indivisible step and one round trip.
//
// The store loads the session and checks, in this order: that it exists and
// has not expired at Now (ErrSessionNotFound), that it is not revoked
// (ErrSessionRevoked), that ClientIP and Subject match when they are set
// (ErrSessionMismatch), that Refreshes < MaxRefreshes when MaxRefreshes > 0
// (ErrRefreshLimit), and that Now >= LastIssuedAt+MinInterval when
// MinInterval > 0 (ErrRefreshTooSoon). Only if every check passes does it
// apply the changes. A zero field skips its check or its change.
type SessionUpdate struct {
	Now time.Time

	// Conditions.
	ClientIP     string
	Subject      string
	MaxRefreshes int
	MinInterval  time.Duration

	// Changes.
	AddRefreshes int       // added to Refreshes (negative to give back)
	LastIssuedAt time.Time // set when non-zero...
	// IfLastIssuedAt, when non-zero, makes the LastIssuedAt change apply
	// only if the stored LastIssuedAt still equals it (used to undo a
	// reservation without clobbering a newer one).
	IfLastIssuedAt time.Time
	Revoke         bool
}

// SessionStore keeps sessions. Implementations must be safe for concurrent
// use; every method takes the request's context first and returns a backend
// failure as an error that is none of the package's sentinel errors.
type SessionStore interface {
	// Create stores s, which has a fresh ID. When maxPerSubject > 0 and
	// s.Subject is not empty, it fails with ErrTooManySessions if the
	// subject already holds maxPerSubject live (unexpired, unrevoked)
	// sessions at s.CreatedAt; the check and the insert are atomic, so N
	// concurrent creates for one subject store exactly min(N, maxPerSubject).
	// An ID already stored is ErrSessionExists.
	Create(ctx context.Context, s Session, maxPerSubject int) error
	// Get returns the session, or ErrSessionNotFound if it is unknown or
	// expired at now.
	Get(ctx context.Context, id string, now time.Time) (Session, error)
	// Update applies u atomically (see SessionUpdate) and returns the
	// session as stored afterwards. When a condition fails it returns the
	// stored session unchanged together with the condition's sentinel
	// error, so that the caller can compute, say, a Retry-After.
	Update(ctx context.Context, id string, u SessionUpdate) (Session, error)
	// Delete removes the session; deleting an unknown ID is not an error.
	Delete(ctx context.Context, id string) error
	// Count returns the number of live (unexpired, unrevoked) sessions at
	// now. It must be cheap: the health endpoint calls it.
	Count(ctx context.Context, now time.Time) (int, error)
	// RevokeSubject revokes every live session of subject and returns how
	// many it revoked.
	RevokeSubject(ctx context.Context, subject string, now time.Time) (int, error)
}

// ApplySessionUpdate checks u's conditions against s and, when they all
// hold, applies its changes to s. It is the reference semantics of
// SessionStore.Update for implementers; expiry and existence are the
// store's to check first.
func ApplySessionUpdate(s *Session, u SessionUpdate) error {
	if s.Revoked {
		return ErrSessionRevoked
	}
	if u.ClientIP != "" && s.ClientIP != u.ClientIP {
		return ErrSessionMismatch
	}
	if u.Subject != "" && s.Subject != u.Subject {
		return ErrSessionMismatch
	}
	if u.MaxRefreshes > 0 && s.Refreshes >= u.MaxRefreshes {
		return ErrRefreshLimit
	}
	if u.MinInterval > 0 && u.Now.Before(s.LastIssuedAt.Add(u.MinInterval)) {
		return ErrRefreshTooSoon
	}
	s.Refreshes = max(0, s.Refreshes+u.AddRefreshes)
	if !u.LastIssuedAt.IsZero() && (u.IfLastIssuedAt.IsZero() || s.LastIssuedAt.Equal(u.IfLastIssuedAt)) {
		s.LastIssuedAt = u.LastIssuedAt
	}
	if u.Revoke {
		s.Revoked = true
	}
	return nil
}

// MemoryStore is an in-process SessionStore. Sessions are forgotten at
// their ExpiresAt: every call first drops the sessions that have expired,
// in order of expiry from a heap, so that memory follows the live sessions
// and Count costs O(1) plus the expired ones. There is no background
// goroutine. It returns times in UTC, to the nanosecond. The number of
// stored sessions is capped by WithMemoryMaxKeys;
// at the cap, Create fails with ErrStoreFull.
type MemoryStore struct {
	mu        sync.Mutex
	now       func() time.Time
	maxKeys   int
	sessions  map[string]storedSession
	bySubject map[string]map[string]struct{}
	expiries  expiryHeap
	revoked   int // stored sessions that are revoked
}

var _ SessionStore = (*MemoryStore)(nil)

// NewMemoryStore returns an empty MemoryStore.
func NewMemoryStore(opts ...MemoryOption) *MemoryStore {
	c := newMemoryConfig(opts)
	return &MemoryStore{
		now:       c.now,
		maxKeys:   c.maxKeys,
		sessions:  make(map[string]storedSession),
		bySubject: make(map[string]map[string]struct{}),
	}
}

// Create implements SessionStore.
func (m *MemoryStore) Create(_ context.Context, s Session, maxPerSubject int) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.expire(s.CreatedAt)
	if _, ok := m.sessions[s.ID]; ok {
		return ErrSessionExists
	}
	if len(m.sessions) >= m.maxKeys {
		return ErrStoreFull
	}
	if maxPerSubject > 0 && s.Subject != "" {
		live := 0
		for id := range m.bySubject[s.Subject] {
			if !m.sessions[id].revoked {
				live++
			}
		}
		if live >= maxPerSubject {
			return ErrTooManySessions
		}
	}
	m.sessions[s.ID] = storeSession(s)
	if s.Subject != "" {
		ids := m.bySubject[s.Subject]
		if ids == nil {
			ids = make(map[string]struct{})
			m.bySubject[s.Subject] = ids
		}
		ids[s.ID] = struct{}{}
	}
	if s.Revoked {
		m.revoked++
	}
	m.expiries.push(expiry{at: s.ExpiresAt.UnixNano(), id: s.ID})
	return nil
}

// Get implements SessionStore.
func (m *MemoryStore) Get(_ context.Context, id string, now time.Time) (Session, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.expire(now)
	st, ok := m.sessions[id]
	if !ok {
		return Session{}, ErrSessionNotFound
	}
	return st.session(id), nil
}

// Update implements SessionStore.
func (m *MemoryStore) Update(_ context.Context, id string, u SessionUpdate) (Session, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.expire(u.Now)
	st, ok := m.sessions[id]
	if !ok {
		return Session{}, ErrSessionNotFound
	}
	s := st.session(id)
	wasRevoked := s.Revoked
	if err := ApplySessionUpdate(&s, u); err != nil {
		return s, err
	}
	m.sessions[id] = storeSession(s)
	if s.Revoked && !wasRevoked {
		m.revoked++
	}
	return s, nil
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
	return len(m.sessions) - m.revoked, nil
}

// RevokeSubject implements SessionStore.
func (m *MemoryStore) RevokeSubject(_ context.Context, subject string, now time.Time) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.expire(now)
	n := 0
	for id := range m.bySubject[subject] {
		if st := m.sessions[id]; !st.revoked {
			st.revoked = true
			m.sessions[id] = st
			m.revoked++
			n++
		}
	}
	return n, nil
}

// Len returns the number of stored sessions, revoked ones included, without
// dropping expired ones first.
func (m *MemoryStore) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.sessions)
}

// expire drops every session whose ExpiresAt is not after now. The heap may
// hold entries for deleted sessions; those are skipped.
func (m *MemoryStore) expire(now time.Time) {
	t := now.UnixNano()
	for len(m.expiries) > 0 && m.expiries[0].at <= t {
		e := m.expiries.pop()
		if st, ok := m.sessions[e.id]; ok && st.expires == e.at {
			m.remove(e.id)
		}
	}
	// Deleted sessions leave entries behind; rebuild when they dominate.
	if len(m.expiries) > 64 && len(m.expiries) > 2*len(m.sessions) {
		m.expiries = m.expiries[:0]
		for id, st := range m.sessions {
			m.expiries = append(m.expiries, expiry{at: st.expires, id: id})
		}
		m.expiries.init()
	}
}

func (m *MemoryStore) remove(id string) {
	st, ok := m.sessions[id]
	if !ok {
		return
	}
	if st.revoked {
		m.revoked--
	}
	delete(m.sessions, id)
	if st.subject != "" {
		ids := m.bySubject[st.subject]
		delete(ids, id)
		if len(ids) == 0 {
			delete(m.bySubject, st.subject)
		}
	}
}

// storedSession is a Session as MemoryStore keeps it: times as Unix
// nanoseconds and the ID as the map key, so that an entry is 64 bytes with
// two pointers for the garbage collector to trace instead of 136 with six
// (a busy server holds a session for every token of the last hour).
type storedSession struct {
	clientIP, subject            string
	created, expires, lastIssued int64
	refreshes                    int32
	revoked                      bool
}

func storeSession(s Session) storedSession {
	return storedSession{
		clientIP:   s.ClientIP,
		subject:    s.Subject,
		created:    unixNano(s.CreatedAt),
		expires:    unixNano(s.ExpiresAt),
		lastIssued: unixNano(s.LastIssuedAt),
		refreshes:  int32(min(s.Refreshes, math.MaxInt32)),
		revoked:    s.Revoked,
	}
}

func (st storedSession) session(id string) Session {
	return Session{
		ID:           id,
		ClientIP:     st.clientIP,
		Subject:      st.subject,
		CreatedAt:    fromUnixNano(st.created),
		ExpiresAt:    fromUnixNano(st.expires),
		LastIssuedAt: fromUnixNano(st.lastIssued),
		Refreshes:    int(st.refreshes),
		Revoked:      st.revoked,
	}
}

// unixNano maps the zero time to 0, which fromUnixNano maps back.
func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func fromUnixNano(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
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
	old[n] = expiry{} // let the ID be collected
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
		m := l
		if r := l + 1; r < len(h) && h[r].at < h[l].at {
			m = r
		}
		if h[i].at <= h[m].at {
			return
		}
		h[i], h[m] = h[m], h[i]
		i = m
	}
}
