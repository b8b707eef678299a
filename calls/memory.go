package calls

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"
)

// defaultMaxCalls is the memory registry's capacity unless told
// otherwise: live calls and reserved slots together.
const defaultMaxCalls = 100_000

// memoryRegistry is the Registry of NewMemoryRegistry.
type memoryRegistry struct {
	mu        sync.Mutex
	max       int
	seq       uint64
	recs      map[uint64]callRecord
	ids       map[string]uint64
	byClient  map[string][]uint64
	byPrefix  map[string][]uint64
	bySubject map[string][]uint64
	bySession map[string][]uint64
	gone      callHeap // (goneAt, seq): when a slot or call stops being live
	due       callHeap // (dueAt, seq): when a call may next be claimed
}

type callRecord struct {
	id, session, ip, client, prefix, subject string
	// Unix nanoseconds; 0 is none. hold is set while the slot is unbound.
	start, deadline, expires, hold, claim int64
}

// goneAt is when the record stops being live: the slot's hold, or the
// call's expiry (0: never).
func (r *callRecord) goneAt() int64 {
	if r.id == "" {
		return r.hold
	}
	return r.expires
}

// dueAt is when the call may next be claimed: its deadline, or the end of
// the current lease.
func (r *callRecord) dueAt() int64 { return max(r.deadline, r.claim) }

func (r *callRecord) call() Call {
	return Call{
		ID: r.id, SessionID: r.session, ClientIP: r.ip, Client: r.client, Subject: r.subject,
		StartedAt: callTime(r.start), Deadline: callTime(r.deadline), ExpiresAt: callTime(r.expires),
	}
}

// NewMemoryRegistry returns an empty Registry for one process, which holds
// at most maxCalls live calls and reserved slots together (0: 100,000;
// valid 1..100,000,000) and fails a Reserve past that with ErrFull.
//
// Calls are kept by value with times as Unix nanoseconds, and indexed by
// client, prefix, subject and session with integer keys; two heaps (by
// expiry and by due time) keep the sweeps and ClaimDue logarithmic. A live
// call takes about 500 bytes (BenchmarkMemoryRegistry measures it).
func NewMemoryRegistry(maxCalls int) (Registry, error) {
	if maxCalls == 0 {
		maxCalls = defaultMaxCalls
	}
	if maxCalls < 1 || maxCalls > 100_000_000 {
		return nil, fmt.Errorf("calls: NewMemoryRegistry: %d is outside 1..100000000", maxCalls)
	}
	return &memoryRegistry{
		max:       maxCalls,
		recs:      make(map[uint64]callRecord),
		ids:       make(map[string]uint64),
		byClient:  make(map[string][]uint64),
		byPrefix:  make(map[string][]uint64),
		bySubject: make(map[string][]uint64),
		bySession: make(map[string][]uint64),
	}, nil
}

// Reserve implements Registry.
func (m *memoryRegistry) Reserve(_ context.Context, req Reservation) (string, error) {
	if !req.HoldUntil.After(req.Now) {
		return "", errors.New("calls: Reserve: HoldUntil must be after Now")
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.sweep(req.Now)
	if req.MaxPerClient > 0 && len(m.byClient[req.Client]) >= req.MaxPerClient {
		return "", ErrTooMany
	}
	if req.MaxPerPrefix > 0 && req.Prefix != "" && len(m.byPrefix[req.Prefix]) >= req.MaxPerPrefix {
		return "", ErrTooMany
	}
	if req.MaxPerSubject > 0 && req.Subject != "" && len(m.bySubject[req.Subject]) >= req.MaxPerSubject {
		return "", ErrTooMany
	}
	if len(m.recs) >= m.max {
		return "", ErrFull
	}
	m.seq++
	seq := m.seq
	r := callRecord{ip: req.ClientIP, client: req.Client, prefix: req.Prefix, subject: req.Subject, hold: callNano(req.HoldUntil)}
	m.recs[seq] = r
	m.byClient[r.client] = append(m.byClient[r.client], seq)
	if r.prefix != "" {
		m.byPrefix[r.prefix] = append(m.byPrefix[r.prefix], seq)
	}
	if r.subject != "" {
		m.bySubject[r.subject] = append(m.bySubject[r.subject], seq)
	}
	m.gone.push(callEntry{at: r.hold, seq: seq})
	return strconv.FormatUint(seq, 10), nil
}

// Bind implements Registry.
func (m *memoryRegistry) Bind(_ context.Context, s Start) (Call, error) {
	if s.ID == "" {
		return Call{}, errors.New("calls: Bind: empty call ID")
	}
	seq, err := strconv.ParseUint(s.Slot, 10, 64)
	if err != nil {
		return Call{}, ErrNotFound
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.sweep(s.StartedAt)
	r, ok := m.recs[seq]
	if !ok || r.id != "" {
		return Call{}, ErrNotFound
	}
	if _, dup := m.ids[s.ID]; dup {
		return Call{}, fmt.Errorf("calls: Bind: call ID %q is already bound", s.ID)
	}
	r.id, r.session, r.hold = s.ID, s.SessionID, 0
	r.start, r.deadline, r.expires = callNano(s.StartedAt), callNano(s.Deadline), callNano(s.ExpiresAt)
	m.recs[seq] = r
	m.ids[r.id] = seq
	if r.session != "" {
		m.bySession[r.session] = append(m.bySession[r.session], seq)
	}
	if r.expires != 0 {
		m.gone.push(callEntry{at: r.expires, seq: seq})
	}
	if r.deadline != 0 {
		m.due.push(callEntry{at: r.deadline, seq: seq})
	}
	return r.call(), nil
}

// Release implements Registry.
func (m *memoryRegistry) Release(_ context.Context, slot string) error {
	seq, err := strconv.ParseUint(slot, 10, 64)
	if err != nil {
		return nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if r, ok := m.recs[seq]; ok && r.id == "" {
		m.remove(seq, r)
	}
	return nil
}

// Get implements Registry.
func (m *memoryRegistry) Get(_ context.Context, id string, now time.Time) (Call, error) {
	return m.find(id, now, false)
}

// End implements Registry.
func (m *memoryRegistry) End(_ context.Context, id string, now time.Time) (Call, error) {
	return m.find(id, now, true)
}

// find returns the live call id, removing it if end.
func (m *memoryRegistry) find(id string, now time.Time, end bool) (Call, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.sweep(now)
	seq, ok := m.ids[id]
	if !ok {
		return Call{}, ErrNotFound
	}
	r := m.recs[seq]
	if end {
		m.remove(seq, r)
	}
	return r.call(), nil
}

// SessionCalls implements Registry.
func (m *memoryRegistry) SessionCalls(_ context.Context, sessionID string, now time.Time) ([]Call, error) {
	return m.list(m.bySession, sessionID, now), nil
}

// SubjectCalls implements Registry.
func (m *memoryRegistry) SubjectCalls(_ context.Context, subject string, now time.Time) ([]Call, error) {
	return m.list(m.bySubject, subject, now), nil
}

func (m *memoryRegistry) list(index map[string][]uint64, key string, now time.Time) []Call {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.sweep(now)
	var out []Call
	for _, seq := range index[key] {
		if r := m.recs[seq]; r.id != "" {
			out = append(out, r.call())
		}
	}
	slices.SortStableFunc(out, func(a, b Call) int { return a.StartedAt.Compare(b.StartedAt) })
	return out
}

// ClaimDue implements Registry.
func (m *memoryRegistry) ClaimDue(_ context.Context, now time.Time, lease time.Duration, limit int) ([]Call, error) {
	if lease <= 0 {
		return nil, errors.New("calls: ClaimDue: lease must be positive")
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.sweep(now)
	t := callNano(now)
	var out []Call
	for len(out) < limit && len(m.due) > 0 && m.due[0].at <= t {
		e := m.due.pop()
		r, ok := m.recs[e.seq]
		if !ok || r.id == "" || r.dueAt() != e.at {
			continue // ended, or a stale entry of an earlier lease
		}
		r.claim = t + int64(lease)
		m.recs[e.seq] = r
		m.due.push(callEntry{at: r.claim, seq: e.seq})
		out = append(out, r.call())
	}
	return out, nil
}

// Count implements Registry.
func (m *memoryRegistry) Count(_ context.Context, now time.Time) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.sweep(now)
	return len(m.ids), nil
}

// sweep drops every slot and call that stopped being live at or before now.
// Entries whose record has moved on (bound, ended) are stale and skipped.
func (m *memoryRegistry) sweep(now time.Time) {
	t := callNano(now)
	for len(m.gone) > 0 && m.gone[0].at <= t {
		e := m.gone.pop()
		if r, ok := m.recs[e.seq]; ok && r.goneAt() == e.at {
			m.remove(e.seq, r)
		}
	}
	// The due heap keeps entries of ended calls until they come due; trim
	// it when it has grown well past the live calls.
	if len(m.due) > 64 && len(m.due) > 2*len(m.ids) {
		m.due = slices.DeleteFunc(m.due, func(e callEntry) bool {
			r, ok := m.recs[e.seq]
			return !ok || r.dueAt() != e.at
		})
		m.due.init()
	}
}

func (m *memoryRegistry) remove(seq uint64, r callRecord) {
	delete(m.recs, seq)
	if r.id != "" {
		delete(m.ids, r.id)
	}
	unindex(m.byClient, r.client, seq)
	unindex(m.byPrefix, r.prefix, seq)
	unindex(m.bySubject, r.subject, seq)
	unindex(m.bySession, r.session, seq)
}

func unindex(index map[string][]uint64, key string, seq uint64) {
	s, ok := index[key]
	if !ok {
		return
	}
	if i := slices.Index(s, seq); i >= 0 {
		s = slices.Delete(s, i, i+1)
	}
	if len(s) == 0 {
		delete(index, key)
		return
	}
	index[key] = s
}

func callNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func callTime(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}
