package realtimeauthtest

import (
	"testing"
	"time"

	"github.com/realtimeauth/realtimeauth"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// refundable is an OpenRequest for the rig's first client and subject
// alice at now, charged against allowances.
func (r *storeRig) refundable(now time.Time, allowances ...realtimeauth.Allowance) realtimeauth.OpenRequest {
	q := r.req(0, "alice", now)
	q.Allowances = allowances
	return q
}

// refundOf is the RefundRequest of what q charged.
func refundOf(q realtimeauth.OpenRequest) realtimeauth.RefundRequest {
	return realtimeauth.RefundRequest{Client: q.Client, Subject: q.Subject, Allowances: q.Allowances, ChargedAt: q.Now}
}

// admitted opens q until it is refused, and returns how many were admitted.
func (r *storeRig) admitted(q realtimeauth.OpenRequest) int {
	r.t.Helper()
	for n := 0; n <= 1024; n++ {
		if _, _, err := r.st.Open(bg, q); err != nil {
			require.True(r.t, isLimitError(err), "refused with a *LimitError, got %v", err)
			return n
		}
	}
	r.t.Fatal("never refused")
	return 0
}

var storeRefundCases = []contractCase[*storeRig]{
	{"refund restores admission", "Refund uncounts one event from each of req.Allowances in the sub-window of req.ChargedAt (the subject's allowances included)",
		func(t *testing.T, r *storeRig) {
			m := realtimeauth.Allowance{Key: "m:" + r.clients[0], Limit: 2, Window: time.Minute}
			s := realtimeauth.Allowance{Key: "s:alice", Limit: 2, Window: time.Minute}
			q := r.refundable(at(1000), m, s)
			require.Equal(t, 2, r.admitted(q))
			require.NoError(t, r.st.Refund(bg, refundOf(q)))
			assert.Equal(t, 1, r.admitted(q), "one event of each given back")
			// The subject's alone: the client's stays full.
			qs := r.refundable(at(2000), s)
			require.NoError(t, r.st.Refund(bg, refundOf(qs)))
			assert.Equal(t, 0, r.admitted(q), "the client's allowance was not refunded")
			assert.Equal(t, 1, r.admitted(qs))
			// A refund in a later sub-window of the same window uncounts
			// nothing there: the events were charged at 1 s and 2 s.
			require.NoError(t, r.st.Refund(bg, refundOf(r.refundable(at(20_000), m, s))))
			assert.Equal(t, 0, r.admitted(r.refundable(at(20_000), m, s)))
		}},
	{"refund never below zero", "Refund never counts an event below zero: refunding more than was charged frees no more than was charged",
		func(t *testing.T, r *storeRig) {
			m := realtimeauth.Allowance{Key: "m:" + r.clients[0], Limit: 3, Window: time.Minute}
			q := r.refundable(at(0), m)
			_, _, err := r.st.Open(bg, q)
			require.NoError(t, err)
			for range 3 {
				require.NoError(t, r.st.Refund(bg, refundOf(q)))
			}
			assert.Equal(t, 3, r.admitted(q))
			other := realtimeauth.Allowance{Key: "m:never-charged", Limit: 1, Window: time.Minute}
			assert.NoError(t, r.st.Refund(bg, refundOf(r.refundable(at(0), other))), "an unknown key")
			assert.Equal(t, 1, r.admitted(r.refundable(at(0), other)))
		}},
	{"refund of a gone sub-window", "an allowance whose sub-window of ChargedAt has shifted out of its counts is left as it is",
		func(t *testing.T, r *storeRig) {
			m := realtimeauth.Allowance{Key: "m:" + r.clients[0], Limit: 1, Window: time.Minute}
			old := r.refundable(at(0), m)
			require.Equal(t, 1, r.admitted(old))
			// 75 s later the sub-window of 0 s is the fifth before: gone.
			now := r.refundable(at(75_000), m)
			require.Equal(t, 1, r.admitted(now))
			require.NoError(t, r.st.Refund(bg, refundOf(old)))
			assert.Equal(t, 0, r.admitted(now), "the refund of a gone sub-window uncounted a newer event")
			future := r.refundable(at(3_600_000), m)
			require.NoError(t, r.st.Refund(bg, refundOf(future)))
			assert.Equal(t, 0, r.admitted(now), "a refund of a sub-window not yet seen")
		}},
	{"concurrent charge and refund", "N concurrent charges and refunds of one allowance leave exactly the charges less the refunds",
		func(t *testing.T, r *storeRig) {
			const limit, n = 20, 60
			m := realtimeauth.Allowance{Key: "m:" + r.clients[0], Limit: limit, Window: time.Minute}
			s := realtimeauth.Allowance{Key: "s:alice", Limit: limit, Window: time.Minute}
			q := r.refundable(at(0), m, s)
			kept := concurrently(n, func(i int) bool {
				sess, _, err := r.st.Open(bg, q)
				if err != nil {
					assert.True(t, isLimitError(err), "refused with a *LimitError, got %v", err)
					return false
				}
				if i%2 == 1 {
					return true
				}
				assert.NoError(t, r.st.Delete(bg, sess.ID))
				assert.NoError(t, r.st.Refund(bg, refundOf(q)))
				return false
			})
			require.LessOrEqual(t, kept, limit)
			assert.Equal(t, limit-kept, r.admitted(q), "%d kept of %d", kept, n)
		}},
}

var storeRestoreCases = []contractCase[*storeRig]{
	{"restore", "Restore puts back sessions an Open evicted, each as it was (ID, fields, recency, its subject's count), when that Open is undone",
		func(t *testing.T, r *storeRig) {
			s1 := r.open(0, "alice", at(0))
			_, err := r.st.Refresh(bg, refresh(s1, at(1000)))
			require.NoError(t, err)
			s1.Refreshes, s1.LastIssuedAt = 1, at(1000)
			q := r.req(0, "alice", at(2000))
			q.MaxPerClient = 1
			s2, ev := r.mustOpen(q)
			require.Equal(t, []string{s1.ID}, sessionIDs(ev))
			same(t, s1, ev[0], "the evicted session as it was")
			require.NoError(t, r.st.Delete(bg, s2.ID))
			require.NoError(t, r.st.Restore(bg, ev, at(3000)))
			same(t, s1, r.peek(s1, at(3000)))
			assert.Equal(t, 1, r.count(at(3000)))
			require.NoError(t, r.st.Restore(bg, ev, at(3000)), "twice")
			assert.Equal(t, 1, r.count(at(3000)), "a stored ID is left as it is")
			capped := r.req(0, "alice", at(4000))
			capped.MaxPerSubject = 1
			_, _, err = r.st.Open(bg, capped)
			assert.ErrorIs(t, err, realtimeauth.ErrTooManySessions, "the subject counts it again")
			// Its client's cap evicts it again, its least recently used.
			s3, ev := r.mustOpen(q)
			assert.Equal(t, []string{s1.ID}, sessionIDs(ev))
			revoked, err := r.st.RevokeSubject(bg, "alice", at(5000))
			require.NoError(t, err)
			assert.Equal(t, []string{s3.ID}, sessionIDs(revoked))
		}},
	{"restore skips the expired", "Restore does not store a session that has expired at now, nor a revoked one",
		func(t *testing.T, r *storeRig) {
			s1 := r.open(0, "", at(0))
			q := r.req(0, "", at(1000))
			q.MaxPerClient = 1
			s2, ev := r.mustOpen(q)
			require.NoError(t, r.st.Delete(bg, s2.ID))
			require.NoError(t, r.st.Restore(bg, ev, s1.ExpiresAt))
			assert.Equal(t, 0, r.count(s1.ExpiresAt.Add(-time.Millisecond)))
			r.gone(s1, s1.ExpiresAt.Add(-time.Millisecond))
			x := ev[0]
			x.Revoked = true
			require.NoError(t, r.st.Restore(bg, []realtimeauth.Session{x}, at(2000)))
			assert.Equal(t, 0, r.count(at(2000)))
		}},
}
