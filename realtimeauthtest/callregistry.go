package realtimeauthtest

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/realtimeauth/realtimeauth/calls"
)

// TestCallRegistry is the conformance suite of calls.Registry: every
// implementation runs it (the in-memory one and redisstore's alike), and
// it checks the promises of the calls package's doc.
// newRegistry returns an empty registry for each subtest; times are whole
// microseconds, the finest a registry has to keep.
func TestCallRegistry(t *testing.T, newRegistry func(t *testing.T) calls.Registry) {
	testCallBindGetEnd(t, newRegistry)
	testCallBadArguments(t, newRegistry)
	testCallClientAndSubjectCaps(t, newRegistry)
	testCallPrefixCap(t, newRegistry)
	testCallHoldAndExpiry(t, newRegistry)
	testCallLists(t, newRegistry)
	testCallClaims(t, newRegistry)
	testCallConcurrentReserve(t, newRegistry)
	testCallConcurrentEnd(t, newRegistry)
}

// callT0 is the call suite's base time.
var callT0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// reservation is a call's reservation and the session it is for.
type reservation struct {
	calls.Reservation
	session string
}

// callRes is a reservation for client and subject at now, held for 30 s,
// with caps of 2 per client and 3 per subject.
func callRes(client, subject, session string, now time.Time) reservation {
	return reservation{calls.Reservation{
		Now: now, HoldUntil: now.Add(30 * time.Second),
		ClientIP: client + ".7", Client: client, Subject: subject,
		MaxPerClient: 2, MaxPerSubject: 3,
	}, session}
}

// placeCall reserves and binds one call, failing the test on an error.
func placeCall(t *testing.T, r calls.Registry, req reservation, id string, deadline time.Time) calls.Call {
	t.Helper()
	slot, err := r.Reserve(bg, req.Reservation)
	require.NoError(t, err)
	c, err := r.Bind(bg, calls.Start{Slot: slot, ID: id, SessionID: req.session, StartedAt: req.Now, Deadline: deadline, ExpiresAt: req.Now.Add(time.Hour)})
	require.NoError(t, err)
	return c
}

// testCallBindGetEnd binds a reserved slot, reads the call and ends it.
func testCallBindGetEnd(t *testing.T, newRegistry func(t *testing.T) calls.Registry) {
	t.Run("BindGetEnd", func(t *testing.T) {
		r := newRegistry(t)
		req := callRes("10.0.0.1", "alice", "s1", callT0)
		slot, err := r.Reserve(bg, req.Reservation)
		require.NoError(t, err)
		require.NotEmpty(t, slot)
		n, err := r.Count(bg, callT0)
		require.NoError(t, err)
		assert.Equal(t, 0, n, "a reserved slot is not a live call")
		start := callT0.Add(time.Second)
		want := calls.Call{
			ID: "rtc_1", SessionID: "s1", ClientIP: "10.0.0.1.7", Client: "10.0.0.1", Subject: "alice",
			StartedAt: start, Deadline: start.Add(time.Minute), ExpiresAt: start.Add(time.Hour),
		}
		c, err := r.Bind(bg, calls.Start{Slot: slot, ID: "rtc_1", SessionID: "s1", StartedAt: start, Deadline: want.Deadline, ExpiresAt: want.ExpiresAt})
		require.NoError(t, err)
		assert.Equal(t, want, utc(c))
		_, err = r.Bind(bg, calls.Start{Slot: slot, ID: "rtc_2", StartedAt: start})
		assert.ErrorIs(t, err, calls.ErrNotFound, "a slot binds once")
		got, err := r.Get(bg, "rtc_1", start)
		require.NoError(t, err)
		assert.Equal(t, want, utc(got))
		n, err = r.Count(bg, start)
		require.NoError(t, err)
		assert.Equal(t, 1, n)
		require.NoError(t, r.Release(bg, slot), "releasing a bound slot changes nothing")
		_, err = r.Get(bg, "rtc_1", start)
		require.NoError(t, err)
		ended, err := r.End(bg, "rtc_1", start)
		require.NoError(t, err)
		assert.Equal(t, want, utc(ended))
		_, err = r.End(bg, "rtc_1", start)
		assert.ErrorIs(t, err, calls.ErrNotFound, "only one End succeeds")
		_, err = r.Get(bg, "rtc_1", start)
		assert.ErrorIs(t, err, calls.ErrNotFound)
		_, err = r.Get(bg, "rtc_unknown", start)
		assert.ErrorIs(t, err, calls.ErrNotFound)
		n, err = r.Count(bg, start)
		require.NoError(t, err)
		assert.Equal(t, 0, n)
	})
}

// testCallBadArguments checks the arguments every registry refuses.
func testCallBadArguments(t *testing.T, newRegistry func(t *testing.T) calls.Registry) {
	t.Run("BadArguments", func(t *testing.T) {
		r := newRegistry(t)
		req := callRes("10.0.0.1", "", "s1", callT0)
		req.HoldUntil = callT0
		_, err := r.Reserve(bg, req.Reservation)
		assert.Error(t, err, "HoldUntil not after Now")
		_, err = r.ClaimDue(bg, callT0, 0, 1)
		assert.Error(t, err, "a lease of 0")
		_, err = r.Bind(bg, calls.Start{Slot: "no-such-slot", ID: "rtc_1", StartedAt: callT0})
		assert.ErrorIs(t, err, calls.ErrNotFound)
		require.NoError(t, r.Release(bg, "no-such-slot"))
		slot, err := r.Reserve(bg, callRes("10.0.0.1", "", "s1", callT0).Reservation)
		require.NoError(t, err)
		_, err = r.Bind(bg, calls.Start{Slot: slot, StartedAt: callT0})
		assert.Error(t, err, "an empty call ID")
	})
}

// testCallClientAndSubjectCaps checks the caps per client and per subject.
func testCallClientAndSubjectCaps(t *testing.T, newRegistry func(t *testing.T) calls.Registry) {
	t.Run("ClientCap", func(t *testing.T) {
		r := newRegistry(t)
		placeCall(t, r, callRes("10.0.0.1", "", "s1", callT0), "rtc_1", time.Time{})
		slot, err := r.Reserve(bg, callRes("10.0.0.1", "", "s2", callT0).Reservation)
		require.NoError(t, err, "reserved slots count too, but 2 fit")
		_, err = r.Reserve(bg, callRes("10.0.0.1", "", "s3", callT0).Reservation)
		assert.ErrorIs(t, err, calls.ErrTooMany)
		_, err = r.Reserve(bg, callRes("10.0.0.2", "", "s3", callT0).Reservation)
		assert.NoError(t, err, "another client has its own cap")
		require.NoError(t, r.Release(bg, slot))
		_, err = r.Reserve(bg, callRes("10.0.0.1", "", "s3", callT0).Reservation)
		assert.NoError(t, err, "a released slot frees its place")
		_, err = r.Reserve(bg, callRes("10.0.0.1", "", "s4", callT0).Reservation)
		assert.ErrorIs(t, err, calls.ErrTooMany)
		_, err = r.End(bg, "rtc_1", callT0)
		require.NoError(t, err)
		_, err = r.Reserve(bg, callRes("10.0.0.1", "", "s4", callT0).Reservation)
		assert.NoError(t, err, "an ended call frees its place")
		nocap := callRes("10.0.0.1", "", "s5", callT0)
		nocap.MaxPerClient = 0
		_, err = r.Reserve(bg, nocap.Reservation)
		assert.NoError(t, err, "MaxPerClient 0 is no cap")
	})

	t.Run("SubjectCap", func(t *testing.T) {
		r := newRegistry(t)
		for i := range 3 {
			_, err := r.Reserve(bg, callRes(fmt.Sprintf("10.0.1.%d", i), "alice", "s", callT0).Reservation)
			require.NoError(t, err)
		}
		_, err := r.Reserve(bg, callRes("10.0.1.9", "alice", "s", callT0).Reservation)
		assert.ErrorIs(t, err, calls.ErrTooMany, "the subject's cap spans clients")
		_, err = r.Reserve(bg, callRes("10.0.1.9", "bob", "s", callT0).Reservation)
		assert.NoError(t, err)
		for i := range 3 {
			_, err := r.Reserve(bg, callRes(fmt.Sprintf("10.0.2.%d", i), "", "s", callT0).Reservation)
			require.NoError(t, err, "no subject, no subject cap")
		}
	})
}

// testCallPrefixCap checks the cap per IPv6 prefix.
func testCallPrefixCap(t *testing.T, newRegistry func(t *testing.T) calls.Registry) {
	t.Run("PrefixCap", func(t *testing.T) {
		r := newRegistry(t)
		const p48 = "2001:db8:1::/48"
		v6 := func(n int, prefix string, now time.Time) reservation {
			q := callRes(fmt.Sprintf("2001:db8:1:%x::/64", n), "", "s", now)
			q.ClientIP = fmt.Sprintf("2001:db8:1:%x::1", n)
			q.Prefix, q.MaxPerPrefix = prefix, 3
			return q
		}
		placeCall(t, r, v6(1, p48, callT0), "rtc_p1", time.Time{})
		placeCall(t, r, v6(1, p48, callT0), "rtc_p2", time.Time{})
		slot, err := r.Reserve(bg, v6(2, p48, callT0).Reservation)
		require.NoError(t, err, "the prefix's third, from another of its clients")
		_, err = r.Reserve(bg, v6(3, p48, callT0).Reservation)
		assert.ErrorIs(t, err, calls.ErrTooMany, "the prefix's cap spans its clients, bound calls and slots alike")
		_, err = r.Reserve(bg, v6(3, "2001:db8:2::/48", callT0).Reservation)
		assert.NoError(t, err, "another prefix has its own cap")
		_, err = r.Reserve(bg, v6(4, "", callT0).Reservation)
		assert.NoError(t, err, "no prefix, no prefix cap")
		require.NoError(t, r.Release(bg, slot))
		_, err = r.Reserve(bg, v6(5, p48, callT0).Reservation)
		assert.NoError(t, err, "a released slot frees the prefix's place")
		_, err = r.Reserve(bg, v6(6, p48, callT0).Reservation)
		assert.ErrorIs(t, err, calls.ErrTooMany)
		_, err = r.End(bg, "rtc_p1", callT0)
		require.NoError(t, err)
		_, err = r.Reserve(bg, v6(6, p48, callT0).Reservation)
		assert.NoError(t, err, "an ended call frees the prefix's place")
		// A slot that runs out frees its place too: at callT0+30s the three
		// slots are gone, the bound rtc_p2 still counts.
		later := callT0.Add(30 * time.Second)
		for i := range 2 {
			_, err = r.Reserve(bg, v6(7+i, p48, later).Reservation)
			require.NoError(t, err)
		}
		_, err = r.Reserve(bg, v6(9, p48, later).Reservation)
		assert.ErrorIs(t, err, calls.ErrTooMany)
		nocap := v6(9, p48, later)
		nocap.MaxPerPrefix = 0
		_, err = r.Reserve(bg, nocap.Reservation)
		assert.NoError(t, err, "MaxPerPrefix 0 is no cap")
	})
}

// testCallHoldAndExpiry checks that a slot is held until HoldUntil and a
// call lives until ExpiresAt.
func testCallHoldAndExpiry(t *testing.T, newRegistry func(t *testing.T) calls.Registry) {
	t.Run("HoldRunsOut", func(t *testing.T) {
		r := newRegistry(t)
		req := callRes("10.0.0.1", "", "s1", callT0)
		slot1, err := r.Reserve(bg, req.Reservation)
		require.NoError(t, err)
		_, err = r.Reserve(bg, req.Reservation)
		require.NoError(t, err)
		late := req.HoldUntil.Add(-time.Microsecond)
		_, err = r.Reserve(bg, callRes("10.0.0.1", "", "s1", late).Reservation)
		assert.ErrorIs(t, err, calls.ErrTooMany, "held until HoldUntil")
		_, err = r.Reserve(bg, callRes("10.0.0.1", "", "s1", req.HoldUntil).Reservation)
		assert.NoError(t, err, "free at HoldUntil")
		_, err = r.Bind(bg, calls.Start{Slot: slot1, ID: "rtc_late", StartedAt: req.HoldUntil})
		assert.ErrorIs(t, err, calls.ErrNotFound, "a slot past its hold cannot be bound")
	})

	t.Run("Expiry", func(t *testing.T) {
		r := newRegistry(t)
		c := placeCall(t, r, callRes("10.0.0.1", "alice", "s1", callT0), "rtc_1", time.Time{})
		before := c.ExpiresAt.Add(-time.Microsecond)
		_, err := r.Get(bg, "rtc_1", before)
		require.NoError(t, err)
		n, err := r.Count(bg, before)
		require.NoError(t, err)
		assert.Equal(t, 1, n)
		_, err = r.Get(bg, "rtc_1", c.ExpiresAt)
		assert.ErrorIs(t, err, calls.ErrNotFound, "gone at ExpiresAt")
		n, err = r.Count(bg, c.ExpiresAt)
		require.NoError(t, err)
		assert.Equal(t, 0, n)
		cs, err := r.SessionCalls(bg, "s1", c.ExpiresAt)
		require.NoError(t, err)
		assert.Empty(t, cs)
		_, err = r.End(bg, "rtc_1", c.ExpiresAt)
		assert.ErrorIs(t, err, calls.ErrNotFound)
		// Its place is free.
		placeCall(t, r, callRes("10.0.0.1", "alice", "s1", c.ExpiresAt), "rtc_2", time.Time{})
		placeCall(t, r, callRes("10.0.0.1", "alice", "s1", c.ExpiresAt), "rtc_3", time.Time{})
	})
}

// testCallLists checks a session's and a subject's calls.
func testCallLists(t *testing.T, newRegistry func(t *testing.T) calls.Registry) {
	t.Run("Lists", func(t *testing.T) {
		r := newRegistry(t)
		a := placeCall(t, r, callRes("10.0.0.1", "alice", "s1", callT0), "rtc_a", time.Time{})
		b := placeCall(t, r, callRes("10.0.0.2", "alice", "s2", callT0.Add(time.Second)), "rtc_b", time.Time{})
		c := placeCall(t, r, callRes("10.0.0.1", "alice", "s1", callT0.Add(2*time.Second)), "rtc_c", time.Time{})
		d := placeCall(t, r, callRes("10.0.0.3", "bob", "s3", callT0), "rtc_d", time.Time{})
		pending := callRes("10.0.0.2", "alice", "s1", callT0)
		pending.MaxPerSubject = 0
		_, err := r.Reserve(bg, pending.Reservation)
		require.NoError(t, err, "a reserved slot is listed nowhere")
		now := callT0.Add(3 * time.Second)
		got, err := r.SessionCalls(bg, "s1", now)
		require.NoError(t, err)
		assert.Equal(t, []calls.Call{a, c}, utcs(got))
		got, err = r.SubjectCalls(bg, "alice", now)
		require.NoError(t, err)
		assert.Equal(t, []calls.Call{a, b, c}, utcs(got))
		got, err = r.SubjectCalls(bg, "bob", now)
		require.NoError(t, err)
		assert.Equal(t, []calls.Call{d}, utcs(got))
		got, err = r.SessionCalls(bg, "nobody", now)
		require.NoError(t, err)
		assert.Empty(t, got)
		_, err = r.End(bg, "rtc_a", now)
		require.NoError(t, err)
		got, err = r.SessionCalls(bg, "s1", now)
		require.NoError(t, err)
		assert.Equal(t, []calls.Call{c}, utcs(got))
	})
}

// testCallClaims checks ClaimDue: deadlines, leases and its limit.
func testCallClaims(t *testing.T, newRegistry func(t *testing.T) calls.Registry) {
	t.Run("ClaimDue", func(t *testing.T) {
		r := newRegistry(t)
		dl := callT0.Add(time.Minute)
		placeCall(t, r, callRes("10.0.0.1", "", "s1", callT0), "rtc_late", dl.Add(time.Second))
		placeCall(t, r, callRes("10.0.0.2", "", "s2", callT0), "rtc_first", dl)
		placeCall(t, r, callRes("10.0.0.3", "", "s3", callT0), "rtc_never", time.Time{})
		got, err := r.ClaimDue(bg, dl.Add(-time.Microsecond), time.Second, 10)
		require.NoError(t, err)
		assert.Empty(t, got, "nothing is due before its deadline")
		got, err = r.ClaimDue(bg, dl, 5*time.Second, 10)
		require.NoError(t, err)
		assert.Equal(t, []string{"rtc_first"}, ids(got), "due at the deadline")
		got, err = r.ClaimDue(bg, dl.Add(time.Second), 5*time.Second, 10)
		require.NoError(t, err)
		assert.Equal(t, []string{"rtc_late"}, ids(got), "a claimed call is not claimed again within its lease")
		got, err = r.ClaimDue(bg, dl.Add(5*time.Second-time.Microsecond), 5*time.Second, 10)
		require.NoError(t, err)
		assert.Empty(t, got)
		got, err = r.ClaimDue(bg, dl.Add(5*time.Second), 5*time.Second, 10)
		require.NoError(t, err)
		assert.Equal(t, []string{"rtc_first"}, ids(got), "a lease that ran out without End: claimable again")
		_, err = r.End(bg, "rtc_first", dl.Add(5*time.Second))
		require.NoError(t, err)
		_, err = r.End(bg, "rtc_late", dl.Add(5*time.Second))
		require.NoError(t, err)
		got, err = r.ClaimDue(bg, dl.Add(time.Hour-time.Second), 5*time.Second, 10)
		require.NoError(t, err)
		assert.Empty(t, got, "ended calls are never claimed; no deadline is never due")
	})

	t.Run("ClaimDueLimit", func(t *testing.T) {
		r := newRegistry(t)
		for i := range 5 {
			placeCall(t, r, callRes(fmt.Sprintf("10.0.3.%d", i), "", "s", callT0), fmt.Sprintf("rtc_%d", i), callT0.Add(time.Duration(i)*time.Second))
		}
		now := callT0.Add(10 * time.Second)
		got, err := r.ClaimDue(bg, now, time.Minute, 2)
		require.NoError(t, err)
		assert.Equal(t, []string{"rtc_0", "rtc_1"}, ids(got), "earliest first, at most limit")
		got, err = r.ClaimDue(bg, now, time.Minute, 10)
		require.NoError(t, err)
		assert.Equal(t, []string{"rtc_2", "rtc_3", "rtc_4"}, ids(got))
	})
}

// testCallConcurrentReserve checks that concurrent reservations keep the
// caps exactly.
func testCallConcurrentReserve(t *testing.T, newRegistry func(t *testing.T) calls.Registry) {
	t.Run("ConcurrentReserve", func(t *testing.T) {
		r := newRegistry(t)
		const n = 20
		var ok, capped atomic.Int32
		var wg sync.WaitGroup
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				req := callRes(fmt.Sprintf("10.0.4.%d", i%2), "carol", "s", callT0)
				req.MaxPerClient, req.MaxPerSubject = 0, 7
				_, err := r.Reserve(bg, req.Reservation)
				switch {
				case err == nil:
					ok.Add(1)
				case assert.ErrorIs(t, err, calls.ErrTooMany):
					capped.Add(1)
				}
			}()
		}
		wg.Wait()
		assert.Equal(t, int32(7), ok.Load())
		assert.Equal(t, int32(n-7), capped.Load())
	})

	t.Run("ConcurrentReservePrefix", func(t *testing.T) {
		r := newRegistry(t)
		const n = 20
		var ok atomic.Int32
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				req := callRes(fmt.Sprintf("2001:db8:9:%x::/64", i), "", "s", callT0)
				req.Prefix, req.MaxPerPrefix = "2001:db8:9::/48", 5
				if _, err := r.Reserve(bg, req.Reservation); err == nil {
					ok.Add(1)
				} else {
					assert.ErrorIs(t, err, calls.ErrTooMany)
				}
			})
		}
		wg.Wait()
		assert.Equal(t, int32(5), ok.Load(), "exactly the prefix's cap, whatever the interleaving")
	})
}

// testCallConcurrentEnd checks that under concurrent Ends and claims each
// call ends exactly once and is claimed at most once.
func testCallConcurrentEnd(t *testing.T, newRegistry func(t *testing.T) calls.Registry) {
	t.Run("ConcurrentEndAndClaim", func(t *testing.T) {
		r := newRegistry(t)
		for i := range 4 {
			placeCall(t, r, callRes(fmt.Sprintf("10.0.5.%d", i), "", "s", callT0), fmt.Sprintf("rtc_%d", i), callT0.Add(time.Second))
		}
		now := callT0.Add(2 * time.Second)
		var claims, ends atomic.Int32
		var wg sync.WaitGroup
		for range 8 {
			wg.Add(2)
			go func() {
				defer wg.Done()
				got, err := r.ClaimDue(bg, now, time.Minute, 10)
				assert.NoError(t, err)
				claims.Add(int32(len(got)))
			}()
			go func() {
				defer wg.Done()
				for i := range 4 {
					if _, err := r.End(bg, fmt.Sprintf("rtc_%d", i), now); err == nil {
						ends.Add(1)
					} else {
						assert.ErrorIs(t, err, calls.ErrNotFound)
					}
				}
			}()
		}
		wg.Wait()
		assert.LessOrEqual(t, claims.Load(), int32(4), "no call is claimed twice")
		assert.Equal(t, int32(4), ends.Load(), "each call ends exactly once")
	})
}

func utc(c calls.Call) calls.Call {
	for _, t := range []*time.Time{&c.StartedAt, &c.Deadline, &c.ExpiresAt} {
		if !t.IsZero() {
			*t = t.UTC()
		}
	}
	return c
}

func utcs(cs []calls.Call) []calls.Call {
	out := make([]calls.Call, len(cs))
	for i, c := range cs {
		out[i] = utc(c)
	}
	return out
}

func ids(cs []calls.Call) []string {
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = c.ID
	}
	return out
}
