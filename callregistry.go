package realtimeauth

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"sync"
	"time"
)

// Errors of the call registry. Compare with errors.Is.
var (
	// ErrCallNotFound: no live call (or reserved slot) has that ID: it is
	// unknown, has ended, or has expired.
	ErrCallNotFound = errors.New("realtimeauth: call not found")
	// ErrTooManyCalls: the client or the subject already holds the maximum
	// number of live calls.
	ErrTooManyCalls = errors.New("realtimeauth: too many calls")
)

// Call is the server's record of one relayed WebRTC call.
type Call struct {
	// ID is the upstream's call ID ("rtc_…"), known once the upstream has
	// answered the offer (Bind).
	ID string
	// SessionID is the handler's session the call was admitted with.
	SessionID string
	// ClientIP is the full address the call was placed from; only it may
	// hang the call up.
	ClientIP string
	// Client is the client key the call is counted against (the IPv4
	// address or the IPv6 /64).
	Client string
	// Subject is the authenticated user, or "".
	Subject string
	// StartedAt is when the upstream answered.
	StartedAt time.Time
	// Deadline is when the server hangs the call up (WithMaxCallDuration);
	// zero means never.
	Deadline time.Time
	// ExpiresAt is when the registry forgets the call even if nobody ended
	// it: by then the upstream has ended it on its own (OpenAI's maximum
	// call length). Zero means never.
	ExpiresAt time.Time
}

// CallReservation asks for a slot for a call about to be placed. The call's
// ID is known only once the upstream answers, so the handler reserves a
// slot first (the caps are checked and counted then), places the call, and
// binds the upstream's ID to the slot, or releases it when no call came of
// it.
type CallReservation struct {
	// Now is the decision time.
	Now time.Time
	// HoldUntil is when the slot frees itself unless it has been bound: an
	// instance that dies between Reserve and Bind does not hold it forever.
	// It must be after Now.
	HoldUntil time.Time
	ClientIP  string
	Client    string
	Subject   string
	// Prefix is an IPv6 client's /48 ("" for IPv4), which holds many
	// clients (its /64s).
	Prefix string
	// MaxPerClient caps the client's live calls and slots (0: no cap).
	MaxPerClient int
	// MaxPerPrefix caps the live calls and slots of all the clients of
	// Prefix together (0, or Prefix "": no cap): the handler's is
	// WithPrefixShare times WithMaxCallsPerClient, so that one /48 holds
	// no more calls than that many clients.
	MaxPerPrefix int
	// MaxPerSubject caps the subject's live calls and slots (0, or
	// Subject "": no cap).
	MaxPerSubject int
}

// CallStart binds a reserved slot to the call the upstream placed.
type CallStart struct {
	Slot string
	ID   string
	// SessionID is the handler's session the call was admitted with.
	SessionID string
	StartedAt time.Time
	// Deadline and ExpiresAt are the Call's (zero: none).
	Deadline, ExpiresAt time.Time
}

// CallRegistry records the live calls: who placed them, when they must end,
// and how many each client and subject holds. Every method is atomic (a map
// under a mutex, one Lua script in Redis), safe for concurrent use by many
// handler instances sharing the registry, decides with the time it is given,
// and returns a backend failure as an error that is none of the package's
// sentinel errors. A slot or call is live from Reserve until Release, End,
// its HoldUntil (slot) or its ExpiresAt (call).
type CallRegistry interface {
	// Reserve holds a slot for a call and returns the slot's opaque ID. It
	// fails with ErrTooManyCalls, changing nothing, when the client, its
	// prefix or the subject holds its cap of live calls and slots at
	// req.Now; N
	// concurrent Reserves against one cap of L succeed exactly min(N, L)
	// times. A registry that is full fails with ErrStoreFull.
	Reserve(ctx context.Context, req CallReservation) (slot string, err error)
	// Bind turns a reserved slot into a live call and returns the call.
	// A slot that is unknown, already bound or past its HoldUntil at
	// s.StartedAt is ErrCallNotFound.
	Bind(ctx context.Context, s CallStart) (Call, error)
	// Release frees a slot no call came of. An unknown or bound slot is
	// not an error and changes nothing.
	Release(ctx context.Context, slot string) error
	// Get returns the live call id, or ErrCallNotFound.
	Get(ctx context.Context, id string, now time.Time) (Call, error)
	// End removes the live call id and returns it. Of any number of
	// concurrent Ends of one call exactly one succeeds; the others, and
	// any later one, get ErrCallNotFound.
	End(ctx context.Context, id string, now time.Time) (Call, error)
	// SessionCalls returns the live calls of a session, oldest first.
	SessionCalls(ctx context.Context, sessionID string, now time.Time) ([]Call, error)
	// SubjectCalls returns the live calls of a subject, oldest first.
	SubjectCalls(ctx context.Context, subject string, now time.Time) ([]Call, error)
	// ClaimDue returns up to limit live calls whose Deadline is not after
	// now, earliest first, and claims them for lease: no ClaimDue of any
	// instance returns them again before now+lease. The claimant hangs the
	// call up and Ends it; if it dies first, the lease runs out and another
	// instance claims the call. lease must be positive.
	ClaimDue(ctx context.Context, now time.Time, lease time.Duration, limit int) ([]Call, error)
	// Count returns the number of live calls (bound, not reserved slots).
	Count(ctx context.Context, now time.Time) (int, error)
}

// DefaultMaxCalls is the MemoryCallRegistry's capacity unless told
// otherwise: live calls and reserved slots together.
const DefaultMaxCalls = 100_000

// MemoryCallRegistry is the in-memory CallRegistry, for one process. Calls
// are kept by value with times as Unix nanoseconds, and indexed by client,
// prefix, subject and session with integer keys; two heaps (by expiry and by due
// time) keep the sweeps and ClaimDue logarithmic.
type MemoryCallRegistry struct {
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

var _ CallRegistry = (*MemoryCallRegistry)(nil)

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

// NewMemoryCallRegistry returns an empty registry that holds at most
// maxCalls live calls and reserved slots together (0: DefaultMaxCalls).
func NewMemoryCallRegistry(maxCalls int) (*MemoryCallRegistry, error) {
	if maxCalls == 0 {
		maxCalls = DefaultMaxCalls
	}
	if maxCalls < 1 || maxCalls > 100_000_000 {
		return nil, errorf("NewMemoryCallRegistry: %d is outside 1..100000000", maxCalls)
	}
	return &MemoryCallRegistry{
		max:       maxCalls,
		recs:      make(map[uint64]callRecord),
		ids:       make(map[string]uint64),
		byClient:  make(map[string][]uint64),
		byPrefix:  make(map[string][]uint64),
		bySubject: make(map[string][]uint64),
		bySession: make(map[string][]uint64),
	}, nil
}

// Reserve implements CallRegistry.
func (m *MemoryCallRegistry) Reserve(_ context.Context, req CallReservation) (string, error) {
	if !req.HoldUntil.After(req.Now) {
		return "", errorf("CallRegistry.Reserve: HoldUntil must be after Now")
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.sweep(req.Now)
	if req.MaxPerClient > 0 && len(m.byClient[req.Client]) >= req.MaxPerClient {
		return "", ErrTooManyCalls
	}
	if req.MaxPerPrefix > 0 && req.Prefix != "" && len(m.byPrefix[req.Prefix]) >= req.MaxPerPrefix {
		return "", ErrTooManyCalls
	}
	if req.MaxPerSubject > 0 && req.Subject != "" && len(m.bySubject[req.Subject]) >= req.MaxPerSubject {
		return "", ErrTooManyCalls
	}
	if len(m.recs) >= m.max {
		return "", ErrStoreFull
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

// Bind implements CallRegistry.
func (m *MemoryCallRegistry) Bind(_ context.Context, s CallStart) (Call, error) {
	if s.ID == "" {
		return Call{}, errorf("CallRegistry.Bind: empty call ID")
	}
	seq, err := strconv.ParseUint(s.Slot, 10, 64)
	if err != nil {
		return Call{}, ErrCallNotFound
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.sweep(s.StartedAt)
	r, ok := m.recs[seq]
	if !ok || r.id != "" {
		return Call{}, ErrCallNotFound
	}
	if _, dup := m.ids[s.ID]; dup {
		return Call{}, errorf("CallRegistry.Bind: call ID %q is already bound", s.ID)
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

// Release implements CallRegistry.
func (m *MemoryCallRegistry) Release(_ context.Context, slot string) error {
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

// Get implements CallRegistry.
func (m *MemoryCallRegistry) Get(_ context.Context, id string, now time.Time) (Call, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.sweep(now)
	seq, ok := m.ids[id]
	if !ok {
		return Call{}, ErrCallNotFound
	}
	r := m.recs[seq]
	return r.call(), nil
}

// End implements CallRegistry.
func (m *MemoryCallRegistry) End(_ context.Context, id string, now time.Time) (Call, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.sweep(now)
	seq, ok := m.ids[id]
	if !ok {
		return Call{}, ErrCallNotFound
	}
	r := m.recs[seq]
	m.remove(seq, r)
	return r.call(), nil
}

// SessionCalls implements CallRegistry.
func (m *MemoryCallRegistry) SessionCalls(_ context.Context, sessionID string, now time.Time) ([]Call, error) {
	return m.list(m.bySession, sessionID, now), nil
}

// SubjectCalls implements CallRegistry.
func (m *MemoryCallRegistry) SubjectCalls(_ context.Context, subject string, now time.Time) ([]Call, error) {
	return m.list(m.bySubject, subject, now), nil
}

func (m *MemoryCallRegistry) list(index map[string][]uint64, key string, now time.Time) []Call {
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

// ClaimDue implements CallRegistry.
func (m *MemoryCallRegistry) ClaimDue(_ context.Context, now time.Time, lease time.Duration, limit int) ([]Call, error) {
	if lease <= 0 {
		return nil, errorf("CallRegistry.ClaimDue: lease must be positive")
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

// Count implements CallRegistry.
func (m *MemoryCallRegistry) Count(_ context.Context, now time.Time) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.sweep(now)
	return len(m.ids), nil
}

// sweep drops every slot and call that stopped being live at or before now.
// Entries whose record has moved on (bound, ended) are stale and skipped.
func (m *MemoryCallRegistry) sweep(now time.Time) {
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

func (m *MemoryCallRegistry) remove(seq uint64, r callRecord) {
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

// callEntry is a heap entry: a record and an instant in Unix nanoseconds.
type callEntry struct {
	at  int64
	seq uint64
}

// callHeap is a min-heap by at, typed so that pushing boxes nothing.
type callHeap []callEntry

func (h *callHeap) push(e callEntry) {
	*h = append(*h, e)
	h.up(len(*h) - 1)
}

func (h *callHeap) pop() callEntry {
	old := *h
	e := old[0]
	n := len(old) - 1
	old[0] = old[n]
	*h = old[:n]
	if n > 0 {
		h.down(0)
	}
	return e
}

func (h callHeap) init() {
	for i := len(h)/2 - 1; i >= 0; i-- {
		h.down(i)
	}
}

func (h callHeap) less(i, j int) bool {
	return h[i].at < h[j].at || h[i].at == h[j].at && h[i].seq < h[j].seq
}

func (h callHeap) up(i int) {
	for i > 0 {
		p := (i - 1) / 2
		if !h.less(i, p) {
			return
		}
		h[i], h[p] = h[p], h[i]
		i = p
	}
}

func (h callHeap) down(i int) {
	n := len(h)
	for {
		l := 2*i + 1
		if l >= n {
			return
		}
		c := l
		if r := l + 1; r < n && h.less(r, l) {
			c = r
		}
		if !h.less(c, i) {
			return
		}
		h[i], h[c] = h[c], h[i]
		i = c
	}
}
