package realtimeauthtest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/realtimeauth/realtimeauth"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// SessionStoreOptions states the latitude a store's documentation takes,
// for TestSessionStore.
type SessionStoreOptions struct {
	// Partitions, when above 1, says that the store applies
	// OpenRequest.MaxSessions per partition, split evenly (each partition
	// holds MaxSessions/Partitions live sessions). The total-cap cases then
	// ask for Partitions times the cap they check.
	Partitions int
	// Colocated returns n distinct client keys that the store keeps in one
	// partition; the cases that involve several clients (and the subject
	// caps) draw their clients from it. Required when Partitions > 1.
	Colocated func(n int) []string
}

// TestSessionStore runs the SessionStore contract against the stores
// newStore returns, each case on a new, empty store.
func TestSessionStore(t *testing.T, newStore func(t *testing.T) realtimeauth.SessionStore, opts ...SessionStoreOptions) {
	t.Helper()
	var o SessionStoreOptions
	if len(opts) > 0 {
		o = opts[0]
	}
	parts := max(1, o.Partitions)
	clients := []string{"192.0.2.1", "192.0.2.2", "192.0.2.3", "2001:db8:0:1::/64"}
	if o.Colocated != nil {
		clients = o.Colocated(len(clients))
	} else if parts > 1 {
		t.Fatal("realtimeauthtest.TestSessionStore: Partitions > 1 needs Colocated")
	}
	require.Len(t, clients, 4, "Colocated(4)")
	rig := func(t *testing.T) *storeRig {
		return &storeRig{t: t, st: newStore(t), clients: clients, parts: parts}
	}
	runCases(t, storeOpenCases, rig)
	runCases(t, storeRefreshCases, rig)
	runCases(t, storeLifeCases, rig)
	runCases(t, storeConcurrentCases, rig)
	runCases(t, storeRefundCases, rig)
	runCases(t, storeRestoreCases, rig)
}

// storeRig is one case's store and its helpers.
type storeRig struct {
	t       *testing.T
	st      realtimeauth.SessionStore
	clients []string
	parts   int
}

var bg = context.Background()

// req is an OpenRequest for client (an index into the rig's clients) and
// subject at now, living an hour, without allowances or caps.
func (r *storeRig) req(client int, subject string, now time.Time) realtimeauth.OpenRequest {
	c := r.clients[client]
	return realtimeauth.OpenRequest{Now: now, ExpiresAt: now.Add(time.Hour), ClientIP: "ip-" + c, Client: c, Subject: subject}
}

func (r *storeRig) mustOpen(req realtimeauth.OpenRequest) (realtimeauth.Session, []realtimeauth.Session) {
	r.t.Helper()
	s, ev, err := r.st.Open(bg, req)
	require.NoError(r.t, err)
	return s, ev
}

func (r *storeRig) open(client int, subject string, now time.Time) realtimeauth.Session {
	r.t.Helper()
	s, ev := r.mustOpen(r.req(client, subject, now))
	require.Empty(r.t, ev)
	return s
}

// refresh is the RefreshRequest that s's owner sends at now.
func refresh(s realtimeauth.Session, now time.Time) realtimeauth.RefreshRequest {
	return realtimeauth.RefreshRequest{Now: now, ID: s.ID, ClientIP: s.ClientIP, Subject: s.Subject, MaxRefreshes: 100}
}

// peek returns s as stored at now, changing nothing: a refresh whose
// minimum interval has never passed answers ErrRefreshTooSoon with it.
func (r *storeRig) peek(s realtimeauth.Session, now time.Time) realtimeauth.Session {
	r.t.Helper()
	q := refresh(s, now)
	q.MaxRefreshes, q.MinInterval = 1<<30, 100*365*24*time.Hour
	got, err := r.st.Refresh(bg, q)
	require.ErrorIs(r.t, err, realtimeauth.ErrRefreshTooSoon, "peek %s", s.ID)
	return got
}

func (r *storeRig) count(now time.Time) int {
	r.t.Helper()
	n, err := r.st.Count(bg, now)
	require.NoError(r.t, err)
	return n
}

// gone asserts that s is no longer stored at now.
func (r *storeRig) gone(s realtimeauth.Session, now time.Time) {
	r.t.Helper()
	_, err := r.st.Refresh(bg, refresh(s, now))
	assert.ErrorIs(r.t, err, realtimeauth.ErrSessionNotFound, "session %s", s.ID)
}

// same asserts that two sessions agree in every field, times to the
// millisecond.
func same(t *testing.T, want, got realtimeauth.Session, msgAndArgs ...any) {
	t.Helper()
	assert.Equal(t, sessionString(want), sessionString(got), msgAndArgs...)
}

func sessionIDs(ss []realtimeauth.Session) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = s.ID
	}
	return out
}

// isLimitError reports whether err is (or wraps) a *LimitError.
func isLimitError(err error) bool {
	_, ok := errors.AsType[*realtimeauth.LimitError](err)
	return ok
}

func limitError(t *testing.T, err error, key string, window time.Duration) *realtimeauth.LimitError {
	t.Helper()
	var le *realtimeauth.LimitError
	require.ErrorAs(t, err, &le)
	assert.Equal(t, key, le.Key)
	assert.Positive(t, le.RetryAfter)
	assert.LessOrEqual(t, le.RetryAfter, window)
	return le
}

func at(ms int) time.Time { return suiteT0.Add(time.Duration(ms) * time.Millisecond) }

var storeOpenCases = []contractCase[*storeRig]{
	{"open", "Open stores a new session for req and returns it (with its new ID): a canonical lower-case UUID",
		func(t *testing.T, r *storeRig) {
			req := r.req(0, "alice", at(5))
			s, ev := r.mustOpen(req)
			assert.Empty(t, ev)
			u, err := uuid.Parse(s.ID)
			require.NoError(t, err)
			assert.Equal(t, u.String(), s.ID)
			same(t, realtimeauth.Session{ID: s.ID, ClientIP: req.ClientIP, Client: req.Client, Subject: "alice",
				CreatedAt: at(5), ExpiresAt: at(5).Add(time.Hour), LastIssuedAt: at(5)}, s)
			same(t, s, r.peek(s, at(6)), "as stored")
			s2 := r.open(0, "alice", at(5))
			assert.NotEqual(t, s.ID, s2.ID)
			assert.Equal(t, 2, r.count(at(6)))
		}},
	{"refusal order", "the checks run in this order and the first failing one refuses: the allowances (*LimitError), the subject cap (ErrTooManySessions), the total cap (ErrStoreFull)",
		func(t *testing.T, r *storeRig) {
			a := realtimeauth.Allowance{Key: "n:order", Limit: 1, Window: time.Minute}
			req := r.req(0, "alice", at(0))
			req.Allowances = []realtimeauth.Allowance{a}
			req.MaxPerSubject, req.MaxSessions = 1, r.parts
			r.mustOpen(req) // now every check would refuse
			_, _, err := r.st.Open(bg, req)
			limitError(t, err, a.Key, a.Window)
			req.Allowances = nil
			_, _, err = r.st.Open(bg, req)
			assert.ErrorIs(t, err, realtimeauth.ErrTooManySessions)
			req.MaxPerSubject = 0
			_, _, err = r.st.Open(bg, req)
			assert.ErrorIs(t, err, realtimeauth.ErrStoreFull)
			assert.False(t, errors.Is(err, realtimeauth.ErrTooManySessions), "ErrStoreFull is not ErrTooManySessions")
			assert.False(t, isLimitError(err), "ErrStoreFull is not a *LimitError")
		}},
	{"refused changes nothing", "the first failing check refuses without changing anything",
		func(t *testing.T, r *storeRig) {
			a := realtimeauth.Allowance{Key: "n:nothing", Limit: 2, Window: time.Minute}
			s := r.open(0, "alice", at(0))
			req := r.req(0, "alice", at(1))
			req.Allowances = []realtimeauth.Allowance{a}
			req.MaxPerSubject = 1
			for range 5 { // the subject cap refuses after the allowance passed
				_, _, err := r.st.Open(bg, req)
				require.ErrorIs(t, err, realtimeauth.ErrTooManySessions)
			}
			req.MaxPerSubject, req.MaxSessions = 0, r.parts
			for range 5 { // the total cap refuses after the allowance passed
				_, _, err := r.st.Open(bg, req)
				require.ErrorIs(t, err, realtimeauth.ErrStoreFull)
			}
			same(t, s, r.peek(s, at(2)), "the stored session")
			assert.Equal(t, 1, r.count(at(2)))
			req.MaxSessions = 0
			r.mustOpen(req) // the allowance still has both of its events
			r.mustOpen(req)
			_, _, err := r.st.Open(bg, req)
			limitError(t, err, a.Key, a.Window)
		}},
	{"allowances all or none", "Allowances are checked together and charged together: either every one admits and each counts one event, or none counts anything and Open fails with a *LimitError",
		func(t *testing.T, r *storeRig) {
			tight := realtimeauth.Allowance{Key: "m:tight", Limit: 1, Window: time.Minute}
			loose := realtimeauth.Allowance{Key: "m:loose", Limit: 2, Window: 2 * time.Minute}
			req := r.req(0, "", at(0))
			req.Allowances = []realtimeauth.Allowance{tight}
			r.mustOpen(req)
			req.Allowances = []realtimeauth.Allowance{loose, tight}
			for range 3 {
				_, _, err := r.st.Open(bg, req)
				le := limitError(t, err, tight.Key, tight.Window)
				assert.Equal(t, time.Minute, le.RetryAfter, "RetryAfter is the refusing allowance's")
			}
			req.Allowances = []realtimeauth.Allowance{loose}
			r.mustOpen(req) // loose was not charged by the refusals
			r.mustOpen(req)
			_, _, err := r.st.Open(bg, req)
			limitError(t, err, loose.Key, loose.Window)
			assert.Equal(t, 3, r.count(at(0)))
		}},
	{"allowance retry after", "*LimitError's RetryAfter is until that allowance would admit; 0 < RetryAfter <= Window",
		func(t *testing.T, r *storeRig) {
			a := realtimeauth.Allowance{Key: "n:retry", Limit: 3, Window: 4 * time.Second}
			req := r.req(0, "", at(0))
			req.Allowances = []realtimeauth.Allowance{a}
			for i := range 3 {
				req.Now = at(900 * i)
				r.mustOpen(req)
			}
			req.Now = at(2500)
			_, _, err := r.st.Open(bg, req)
			le := limitError(t, err, a.Key, a.Window)
			req.Now = req.Now.Add(le.RetryAfter - time.Millisecond)
			_, _, err = r.st.Open(bg, req)
			limitError(t, err, a.Key, a.Window)
			req.Now = at(2500).Add(le.RetryAfter)
			r.mustOpen(req)
		}},
	{"per-client cap evicts LRU", "at the cap, Open evicts (deletes) the client's least recently used live session to make room; it never refuses for this cap; its refresh then fails ErrSessionNotFound",
		func(t *testing.T, r *storeRig) {
			s1 := r.open(0, "", at(0))
			s2 := r.open(0, "", at(1))
			other := r.open(1, "", at(2))
			_, err := r.st.Refresh(bg, refresh(s1, at(3))) // s1 is now the most recent
			require.NoError(t, err)
			want := r.peek(s2, at(4))
			req := r.req(0, "", at(4))
			req.MaxPerClient = 2
			s3, ev := r.mustOpen(req)
			require.Len(t, ev, 1)
			same(t, want, ev[0], "the evicted session, as it was stored")
			r.gone(s2, at(5))
			r.peek(s1, at(5))
			r.peek(s3, at(5))
			r.peek(other, at(5))
			assert.Equal(t, 3, r.count(at(5)))
		}},
	{"per-client cap counts live sessions", "MaxPerClient caps the client's live sessions: revoked and expired ones do not count",
		func(t *testing.T, r *storeRig) {
			s1 := r.open(0, "", at(0))
			_, err := r.st.Revoke(bg, s1.ID, at(1))
			require.NoError(t, err)
			short := r.req(0, "", at(1))
			short.ExpiresAt = at(10)
			r.mustOpen(short)
			req := r.req(0, "", at(10))
			req.MaxPerClient = 1
			_, ev := r.mustOpen(req)
			assert.Empty(t, ev)
			_, err = r.st.Refresh(bg, refresh(s1, at(11)))
			assert.ErrorIs(t, err, realtimeauth.ErrSessionRevoked, "a revoked session is not evicted")
		}},
	{"per-subject cap", "MaxPerSubject caps the subject's live sessions (0, or Subject \"\": no cap); at the cap, Open fails with ErrTooManySessions",
		func(t *testing.T, r *storeRig) {
			capped := func(client int, subject string) error {
				req := r.req(client, subject, at(5))
				req.MaxPerSubject = 2
				_, _, err := r.st.Open(bg, req)
				return err
			}
			require.NoError(t, capped(0, "alice"))
			require.NoError(t, capped(1, "alice"))
			assert.ErrorIs(t, capped(2, "alice"), realtimeauth.ErrTooManySessions, "across clients")
			assert.NoError(t, capped(0, "bob"), "subjects are independent")
			for range 3 {
				require.NoError(t, capped(0, ""), "no subject, no cap")
			}
			rev := r.open(0, "carol", at(0))
			r.open(0, "carol", at(0))
			_, err := r.st.Revoke(bg, rev.ID, at(1))
			require.NoError(t, err)
			assert.NoError(t, capped(1, "carol"), "a revoked session does not count")
		}},
	{"total cap evicts the heaviest", "when full and the client holds fewer live sessions than the heaviest client, Open evicts the heaviest client's least recently used session; a client among the heaviest fails with ErrStoreFull",
		func(t *testing.T, r *storeRig) {
			heavyA := []realtimeauth.Session{r.open(0, "", at(0)), r.open(0, "", at(1)), r.open(0, "", at(2))}
			b := r.open(1, "", at(3))
			full := func(client int, now time.Time) (realtimeauth.Session, []realtimeauth.Session, error) {
				req := r.req(client, "", now)
				req.MaxSessions = 4 * r.parts
				return r.st.Open(bg, req)
			}
			s, ev, err := full(1, at(4))
			require.NoError(t, err)
			require.Len(t, ev, 1)
			same(t, heavyA[0], ev[0], "client 0's least recently used")
			r.gone(heavyA[0], at(5))
			// Clients 0 and 1 hold two each: both are among the heaviest.
			for i := range 10 {
				_, _, err = full(i%2, at(5))
				require.ErrorIs(t, err, realtimeauth.ErrStoreFull, "client %d, try %d", i%2, i/2)
			}
			_, ev, err = full(2, at(6))
			require.NoError(t, err)
			require.Len(t, ev, 1)
			assert.Contains(t, []string{heavyA[1].ID, b.ID}, ev[0].ID, "a heaviest client's LRU")
			assert.Equal(t, 4, r.count(at(7)))
			r.peek(s, at(7))
		}},
	{"both caps", "a client at its own cap in a full store evicts its own LRU session and is not refused",
		func(t *testing.T, r *storeRig) {
			s1 := r.open(0, "", at(0))
			r.open(0, "", at(1))
			req := r.req(0, "", at(2))
			req.MaxPerClient, req.MaxSessions = 2, 2*r.parts
			_, ev := r.mustOpen(req)
			require.Len(t, ev, 1)
			assert.Equal(t, s1.ID, ev[0].ID)
			assert.Equal(t, 2, r.count(at(3)))
		}},
}
