package realtimeauthtest

import (
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/realtimeauth/realtimeauth"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var storeRefreshCases = []contractCase[*storeRig]{
	{"refresh", "Refresh records one more token for a session: Refreshes+1, LastIssuedAt = req.Now; it returns the session as stored afterwards",
		func(t *testing.T, r *storeRig) {
			s := r.open(0, "alice", at(0))
			got, err := r.st.Refresh(bg, refresh(s, at(1500)))
			require.NoError(t, err)
			want := s
			want.Refreshes, want.LastIssuedAt = 1, at(1500)
			same(t, want, got)
			same(t, want, r.peek(s, at(1600)))
		}},
	{"refresh refusal order", "the checks run in this order, the first failing one refuses: exists and unexpired (ErrSessionNotFound), not revoked (ErrSessionRevoked), same ClientIP and Subject (ErrSessionMismatch), Refreshes < MaxRefreshes (ErrRefreshLimit), MinInterval is 0 or LastIssuedAt+MinInterval <= Now (ErrRefreshTooSoon), the allowances (*LimitError)",
		func(t *testing.T, r *storeRig) {
			used := realtimeauth.Allowance{Key: "m:used", Limit: 1, Window: time.Minute}
			spare := realtimeauth.Allowance{Key: "m:spare", Limit: 1, Window: time.Minute}
			req := r.req(1, "alice", at(0))
			req.Allowances = []realtimeauth.Allowance{used}
			s, _ := r.mustOpen(req)
			q := refresh(s, at(5000))
			q.ClientIP, q.Subject, q.MaxRefreshes, q.MinInterval = "elsewhere", "mallory", 0, 10*time.Second
			q.Allowances = []realtimeauth.Allowance{spare, used}
			for _, step := range []struct {
				want error // nil: a *LimitError
				fix  func()
			}{
				{realtimeauth.ErrSessionMismatch, func() { q.ClientIP = s.ClientIP }},
				{realtimeauth.ErrSessionMismatch, func() { q.Subject = s.Subject }},
				{realtimeauth.ErrRefreshLimit, func() { q.MaxRefreshes = 1 }},
				{realtimeauth.ErrRefreshTooSoon, func() { q.MinInterval = 5 * time.Second }},
				{nil, func() { q.Allowances = []realtimeauth.Allowance{spare} }},
			} {
				got, err := r.st.Refresh(bg, q)
				if step.want == nil {
					require.True(t, isLimitError(err), "the allowances refuse with a *LimitError, got %v", err)
				} else {
					require.ErrorIs(t, err, step.want)
				}
				if errors.Is(err, realtimeauth.ErrRefreshTooSoon) {
					same(t, s, got, "ErrRefreshTooSoon returns the session as stored")
				}
				step.fix()
			}
			same(t, s, r.peek(s, at(5000)), "refusals changed nothing")
			_, err := r.st.Refresh(bg, q) // at LastIssuedAt+MinInterval exactly
			require.NoError(t, err, "spare was not charged by the refusals")
			q.MaxRefreshes, q.MinInterval = 100, 0
			_, err = r.st.Refresh(bg, q)
			limitError(t, err, spare.Key, spare.Window)
			_, err = r.st.Refresh(bg, refresh(realtimeauth.Session{ID: uuid.NewString()}, at(0)))
			assert.ErrorIs(t, err, realtimeauth.ErrSessionNotFound, "unknown")
			_, err = r.st.Refresh(bg, refresh(realtimeauth.Session{ID: "not-a-session"}, at(0)))
			assert.ErrorIs(t, err, realtimeauth.ErrSessionNotFound, "malformed")
			x := r.open(0, "alice", at(6000))
			_, err = r.st.Revoke(bg, x.ID, at(6000))
			require.NoError(t, err)
			bad := refresh(x, x.ExpiresAt.Add(-time.Millisecond))
			bad.ClientIP = "elsewhere"
			_, err = r.st.Refresh(bg, bad)
			assert.ErrorIs(t, err, realtimeauth.ErrSessionRevoked, "revoked, before mismatch")
			bad.Now = x.ExpiresAt
			_, err = r.st.Refresh(bg, bad)
			assert.ErrorIs(t, err, realtimeauth.ErrSessionNotFound, "expired at ExpiresAt, before revoked")
		}},
	{"no minimum interval", "MinInterval 0 means no minimum: a refresh whose Now is earlier than LastIssuedAt (a concurrent refresh on another instance read its clock first) is not too soon",
		func(t *testing.T, r *storeRig) {
			s := r.open(0, "alice", at(0))
			_, err := r.st.Refresh(bg, refresh(s, at(2000)))
			require.NoError(t, err)
			q := refresh(s, at(1999))
			q.MinInterval = 0
			got, err := r.st.Refresh(bg, q)
			require.NoError(t, err, "a refresh read its clock 1ms before the last one was stored")
			assert.Equal(t, 2, got.Refreshes)
		}},
	{"refresh limit", "Refreshes must be below MaxRefreshes",
		func(t *testing.T, r *storeRig) {
			s := r.open(0, "", at(0))
			q := refresh(s, at(1))
			q.MaxRefreshes = 2
			for range 2 {
				_, err := r.st.Refresh(bg, q)
				require.NoError(t, err)
			}
			_, err := r.st.Refresh(bg, q)
			assert.ErrorIs(t, err, realtimeauth.ErrRefreshLimit)
		}},
	{"shared allowance", "Open and Refresh charge the same allowance by its Key",
		func(t *testing.T, r *storeRig) {
			a := realtimeauth.Allowance{Key: "m:shared", Limit: 2, Window: time.Minute}
			req := r.req(0, "", at(0))
			req.Allowances = []realtimeauth.Allowance{a}
			s, _ := r.mustOpen(req)
			q := refresh(s, at(1))
			q.Allowances = req.Allowances
			_, err := r.st.Refresh(bg, q)
			require.NoError(t, err)
			_, _, err = r.st.Open(bg, req)
			limitError(t, err, a.Key, a.Window)
		}},
	{"give back", "GiveBack undoes the refresh issued at issuedAt: Refreshes-1 and LastIssuedAt = restore; allowances stay charged",
		func(t *testing.T, r *storeRig) {
			a := realtimeauth.Allowance{Key: "m:giveback", Limit: 1, Window: time.Minute}
			s := r.open(0, "", at(0))
			q := refresh(s, at(2000))
			q.Allowances = []realtimeauth.Allowance{a}
			_, err := r.st.Refresh(bg, q)
			require.NoError(t, err)
			require.NoError(t, r.st.GiveBack(bg, s.ID, at(2000), at(1000)))
			want := s
			want.LastIssuedAt = at(1000)
			same(t, want, r.peek(s, at(2001)))
			_, err = r.st.Refresh(bg, q)
			limitError(t, err, a.Key, a.Window)
		}},
	{"give back restores recency", "LastIssuedAt is the session's recency for least-recently-used eviction, GiveBack's restore included",
		func(t *testing.T, r *storeRig) {
			s1 := r.open(0, "", at(0))
			s2 := r.open(0, "", at(1000))
			_, err := r.st.Refresh(bg, refresh(s1, at(2000)))
			require.NoError(t, err)
			require.NoError(t, r.st.GiveBack(bg, s1.ID, at(2000), at(0)))
			req := r.req(0, "", at(3000))
			req.MaxPerClient = 2
			_, ev := r.mustOpen(req)
			require.Len(t, ev, 1)
			assert.Equal(t, s1.ID, ev[0].ID)
			r.peek(s2, at(3001))
		}},
	{"give back keeps a newer refresh", "unless a newer refresh has replaced it meanwhile (LastIssuedAt != issuedAt), in which case it changes nothing",
		func(t *testing.T, r *storeRig) {
			s := r.open(0, "", at(0))
			for _, ms := range []int{1000, 2000} {
				_, err := r.st.Refresh(bg, refresh(s, at(ms)))
				require.NoError(t, err)
			}
			require.NoError(t, r.st.GiveBack(bg, s.ID, at(1000), at(0)))
			want := s
			want.Refreshes, want.LastIssuedAt = 2, at(2000)
			same(t, want, r.peek(s, at(2001)))
		}},
	{"give back to nothing", "an unknown, expired or revoked session is not an error",
		func(t *testing.T, r *storeRig) {
			assert.NoError(t, r.st.GiveBack(bg, uuid.NewString(), at(0), at(0)), "unknown")
			assert.NoError(t, r.st.GiveBack(bg, "not-a-session", at(0), at(0)), "malformed")
			s := r.open(0, "", at(0))
			_, err := r.st.Revoke(bg, s.ID, at(1))
			require.NoError(t, err)
			assert.NoError(t, r.st.GiveBack(bg, s.ID, at(0), at(0)), "revoked")
			req := r.req(0, "", at(0))
			req.ExpiresAt = at(10)
			e, _ := r.mustOpen(req)
			assert.NoError(t, r.st.GiveBack(bg, e.ID, at(0), at(0)), "expired")
		}},
}

var storeLifeCases = []contractCase[*storeRig]{
	{"revoke", "Revoke marks a live session revoked and returns it; an unknown or expired one is ErrSessionNotFound; revoking twice is not an error",
		func(t *testing.T, r *storeRig) {
			s := r.open(0, "alice", at(0))
			got, err := r.st.Revoke(bg, s.ID, at(1))
			require.NoError(t, err)
			want := s
			want.Revoked = true
			same(t, want, got)
			again, err := r.st.Revoke(bg, s.ID, at(2))
			require.NoError(t, err, "twice")
			same(t, want, again)
			_, err = r.st.Refresh(bg, refresh(s, at(3)))
			assert.ErrorIs(t, err, realtimeauth.ErrSessionRevoked)
			assert.Equal(t, 0, r.count(at(3)), "no longer live")
			_, err = r.st.Revoke(bg, uuid.NewString(), at(3))
			assert.ErrorIs(t, err, realtimeauth.ErrSessionNotFound, "unknown")
			_, err = r.st.Revoke(bg, s.ID, s.ExpiresAt)
			assert.ErrorIs(t, err, realtimeauth.ErrSessionNotFound, "expired")
		}},
	{"revoke subject", "RevokeSubject revokes every live session of subject and returns them",
		func(t *testing.T, r *storeRig) {
			a1, a2 := r.open(0, "alice", at(0)), r.open(1, "alice", at(0))
			old := r.open(2, "alice", at(0))
			_, err := r.st.Revoke(bg, old.ID, at(1))
			require.NoError(t, err)
			b := r.open(0, "bob", at(0))
			got, err := r.st.RevokeSubject(bg, "alice", at(2))
			require.NoError(t, err)
			assert.ElementsMatch(t, []string{a1.ID, a2.ID}, sessionIDs(got))
			for _, s := range got {
				assert.True(t, s.Revoked)
				assert.Equal(t, "alice", s.Subject)
			}
			for _, s := range []realtimeauth.Session{a1, a2} {
				_, err := r.st.Refresh(bg, refresh(s, at(3)))
				assert.ErrorIs(t, err, realtimeauth.ErrSessionRevoked)
			}
			r.peek(b, at(3))
			assert.Equal(t, 1, r.count(at(3)))
			got, err = r.st.RevokeSubject(bg, "nobody", at(3))
			require.NoError(t, err)
			assert.Empty(t, got)
		}},
	{"delete", "Delete removes a session; unknown is not an error",
		func(t *testing.T, r *storeRig) {
			s, keep := r.open(0, "", at(0)), r.open(0, "", at(0))
			require.NoError(t, r.st.Delete(bg, s.ID))
			r.gone(s, at(1))
			r.peek(keep, at(1))
			assert.Equal(t, 1, r.count(at(1)))
			assert.NoError(t, r.st.Delete(bg, s.ID), "twice")
			assert.NoError(t, r.st.Delete(bg, uuid.NewString()), "unknown")
			assert.NoError(t, r.st.Delete(bg, "not-a-session"), "malformed")
		}},
	{"expiry", "a session has expired at its ExpiresAt: not found, not live, no longer counted against any cap",
		func(t *testing.T, r *storeRig) {
			req := r.req(0, "alice", at(0))
			req.ExpiresAt = at(60_000)
			s, _ := r.mustOpen(req)
			assert.Equal(t, 1, r.count(at(59_999)))
			r.peek(s, at(59_999))
			assert.Equal(t, 0, r.count(at(60_000)))
			r.gone(s, at(60_000))
			next := r.req(0, "alice", at(60_000))
			next.MaxPerClient, next.MaxPerSubject, next.MaxSessions = 1, 1, r.parts
			_, ev := r.mustOpen(next)
			assert.Empty(t, ev)
		}},
	{"count", "Count returns the number of live (unexpired, unrevoked) sessions",
		func(t *testing.T, r *storeRig) {
			assert.Equal(t, 0, r.count(at(0)))
			r.open(0, "", at(0))
			rev := r.open(1, "", at(0))
			req := r.req(2, "", at(0))
			req.ExpiresAt = at(10)
			r.mustOpen(req)
			assert.Equal(t, 3, r.count(at(9)))
			_, err := r.st.Revoke(bg, rev.ID, at(9))
			require.NoError(t, err)
			assert.Equal(t, 1, r.count(at(10)))
		}},
}

var storeConcurrentCases = []contractCase[*storeRig]{
	{"concurrent allowance", "N concurrent Opens against one allowance of L succeed exactly min(N, L) times",
		func(t *testing.T, r *storeRig) {
			for _, c := range []struct{ n, l int }{{64, 10}, {8, 10}} {
				a := realtimeauth.Allowance{Key: "n:conc-" + strconv.Itoa(c.n), Limit: c.l, Window: time.Minute}
				n := concurrently(c.n, func(int) bool {
					req := r.req(0, "", at(0))
					req.Allowances = []realtimeauth.Allowance{a}
					_, _, err := r.st.Open(bg, req)
					return err == nil
				})
				assert.Equal(t, min(c.n, c.l), n, "%d opens, limit %d", c.n, c.l)
			}
		}},
	{"concurrent subject cap", "N concurrent Opens against one subject cap of L succeed exactly min(N, L) times",
		func(t *testing.T, r *storeRig) {
			n := concurrently(64, func(i int) bool {
				req := r.req(i%len(r.clients), "alice", at(0))
				req.MaxPerSubject = 7
				_, _, err := r.st.Open(bg, req)
				return err == nil
			})
			assert.Equal(t, 7, n)
			assert.Equal(t, 7, r.count(at(1)))
		}},
	{"concurrent total cap", "N concurrent Opens against one total cap of L succeed exactly min(N, L) times",
		func(t *testing.T, r *storeRig) {
			n := concurrently(64, func(int) bool {
				req := r.req(0, "", at(0))
				req.MaxSessions = 5 * r.parts
				_, _, err := r.st.Open(bg, req)
				return err == nil
			})
			assert.Equal(t, 5, n)
			assert.Equal(t, 5, r.count(at(1)))
		}},
	{"concurrent client cap", "N concurrent Opens at one client cap of L all succeed, leave L live and evict each other session exactly once",
		func(t *testing.T, r *storeRig) {
			evicted := make(chan []realtimeauth.Session, 64)
			n := concurrently(64, func(int) bool {
				req := r.req(0, "", at(0))
				req.MaxPerClient = 3
				_, ev, err := r.st.Open(bg, req)
				evicted <- ev
				return err == nil
			})
			close(evicted)
			assert.Equal(t, 64, n)
			assert.Equal(t, 3, r.count(at(1)))
			seen := map[string]bool{}
			for ev := range evicted {
				for _, s := range ev {
					assert.False(t, seen[s.ID], "evicted twice: %s", s.ID)
					seen[s.ID] = true
				}
			}
			assert.Len(t, seen, 61)
		}},
	{"concurrent refresh", "N concurrent Refreshes of one session under MaxRefreshes L succeed exactly min(N, L) times",
		func(t *testing.T, r *storeRig) {
			s := r.open(0, "", at(0))
			n := concurrently(64, func(int) bool {
				q := refresh(s, at(1))
				q.MaxRefreshes = 9
				_, err := r.st.Refresh(bg, q)
				return err == nil
			})
			assert.Equal(t, 9, n)
			assert.Equal(t, 9, r.peek(s, at(2)).Refreshes)
		}},
}
