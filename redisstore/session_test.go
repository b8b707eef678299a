package redisstore_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/realtimeauth/realtimeauth"
	"github.com/realtimeauth/realtimeauth/redisstore"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// twin runs a memory store and a SessionStore side by side. Sessions are
// known by the index of the Open that made them, since each store assigns
// its own IDs.
type twin struct {
	t        *testing.T
	mem, red realtimeauth.SessionStore
	ids      [][2]string // per index: memory ID, redis ID
	issued   []time.Time // per index: the newest LastIssuedAt
	owners   [][2]string // per index: ClientIP, Subject
	seen     map[string]int
}

// tally counts the outcomes seen, so that the test can require that it
// met each of them.
func (w *twin) tally(op string, err error) {
	k := errKind(err)
	if strings.HasPrefix(k, "limit ") {
		k = k[:strings.IndexByte(k, ':')+1] // the allowance's kind
	}
	w.seen[op+" "+k]++
}

func (w *twin) index(id string, side int) int {
	for i, p := range w.ids {
		if p[side] == id {
			return i
		}
	}
	return -1
}

// view is a session with its ID replaced by its index, so that the two
// stores' answers compare.
func (w *twin) view(s realtimeauth.Session, side int) string {
	if s.ID == "" {
		return fmt.Sprintf("%+v", s)
	}
	s.ID = fmt.Sprint(w.index(s.ID, side))
	return fmt.Sprintf("%+v", s)
}

func (w *twin) views(ss []realtimeauth.Session, side int) []string {
	out := []string{}
	for _, s := range ss {
		out = append(out, w.view(s, side))
	}
	slices.Sort(out)
	return out
}

// errKind makes errors comparable: the sentinel, or the LimitError.
func errKind(err error) string {
	var le *realtimeauth.LimitError
	switch {
	case err == nil:
		return ""
	case errors.As(err, &le):
		return fmt.Sprintf("limit %s %v", le.Key, le.RetryAfter)
	}
	for _, s := range []error{realtimeauth.ErrSessionNotFound, realtimeauth.ErrSessionRevoked, realtimeauth.ErrSessionMismatch,
		realtimeauth.ErrRefreshLimit, realtimeauth.ErrRefreshTooSoon, realtimeauth.ErrTooManySessions, realtimeauth.ErrStoreFull} {
		if errors.Is(err, s) {
			return s.Error()
		}
	}
	return "backend: " + err.Error()
}

func (w *twin) open(req realtimeauth.OpenRequest) {
	w.t.Helper()
	ctx := context.Background()
	ms, mev, merr := w.mem.Open(ctx, req)
	rs, rev, rerr := w.red.Open(ctx, req)
	require.Equal(w.t, errKind(merr), errKind(rerr), "open %+v", req)
	w.tally("open", merr)
	if len(mev) > 0 {
		w.seen["open evicting"]++
	}
	if merr != nil {
		return
	}
	w.ids = append(w.ids, [2]string{ms.ID, rs.ID})
	w.issued = append(w.issued, req.Now)
	w.owners = append(w.owners, [2]string{req.ClientIP, req.Subject})
	require.Equal(w.t, w.view(ms, 0), w.view(rs, 1))
	require.Equal(w.t, w.views(mev, 0), w.views(rev, 1), "evicted")
}

func (w *twin) refresh(i int, req realtimeauth.RefreshRequest) {
	w.t.Helper()
	ctx := context.Background()
	mreq, rreq := req, req
	mreq.ID, rreq.ID = w.ids[i][0], w.ids[i][1]
	ms, merr := w.mem.Refresh(ctx, mreq)
	rs, rerr := w.red.Refresh(ctx, rreq)
	require.Equal(w.t, errKind(merr), errKind(rerr), "refresh %d %+v", i, req)
	w.tally("refresh", merr)
	require.Equal(w.t, w.view(ms, 0), w.view(rs, 1), "refresh %d", i)
	if merr == nil {
		w.issued[i] = req.Now
	}
}

func (w *twin) giveBack(i int, issuedAt, restore time.Time) {
	w.t.Helper()
	ctx := context.Background()
	require.NoError(w.t, w.mem.GiveBack(ctx, w.ids[i][0], issuedAt, restore))
	require.NoError(w.t, w.red.GiveBack(ctx, w.ids[i][1], issuedAt, restore))
}

func (w *twin) revoke(i int, now time.Time) {
	w.t.Helper()
	ctx := context.Background()
	ms, merr := w.mem.Revoke(ctx, w.ids[i][0], now)
	rs, rerr := w.red.Revoke(ctx, w.ids[i][1], now)
	require.Equal(w.t, errKind(merr), errKind(rerr), "revoke %d", i)
	require.Equal(w.t, w.view(ms, 0), w.view(rs, 1), "revoke %d", i)
}

func (w *twin) revokeSubject(sub string, now time.Time) {
	w.t.Helper()
	ctx := context.Background()
	ms, merr := w.mem.RevokeSubject(ctx, sub, now)
	rs, rerr := w.red.RevokeSubject(ctx, sub, now)
	require.NoError(w.t, merr)
	require.NoError(w.t, rerr)
	require.Equal(w.t, w.views(ms, 0), w.views(rs, 1), "revoke subject %s", sub)
}

func (w *twin) del(i int) {
	w.t.Helper()
	ctx := context.Background()
	require.NoError(w.t, w.mem.Delete(ctx, w.ids[i][0]))
	require.NoError(w.t, w.red.Delete(ctx, w.ids[i][1]))
}

func (w *twin) count(now time.Time) {
	w.t.Helper()
	ctx := context.Background()
	mn, merr := w.mem.Count(ctx, now)
	rn, rerr := w.red.Count(ctx, now)
	require.NoError(w.t, merr)
	require.NoError(w.t, rerr)
	require.Equal(w.t, mn, rn, "count")
}

var (
	twinIPs      = []string{"10.0.0.1", "10.0.0.2", "192.0.2.7", "2001:db8:1:1::5", "2001:db8:1:2::9", "2001:db8:7:1::1"}
	twinSubjects = []string{"", "", "alice", "bob"}
)

// clientOf is the handler's client key: IPv4 as is, IPv6 by its /64.
func clientOf(ip string) string {
	if strings.Contains(ip, ":") {
		p := strings.Split(ip, ":")
		return strings.Join(p[:4], ":") + "::/64"
	}
	return ip
}

func prefixOf(ip string) string {
	p := strings.Split(ip, ":")
	return strings.Join(p[:3], ":") + "::/48"
}

// allowances are the handler's: new sessions and mints per client, per /48
// for IPv6, mints per subject.
func allowances(ip, sub string, open bool) []realtimeauth.Allowance {
	var a []realtimeauth.Allowance
	v6 := strings.Contains(ip, ":")
	if open {
		a = append(a, realtimeauth.Allowance{Key: "n:" + clientOf(ip), Limit: 4, Window: time.Minute})
		if v6 {
			a = append(a, realtimeauth.Allowance{Key: "np:" + prefixOf(ip), Limit: 5, Window: time.Minute})
		}
	}
	a = append(a, realtimeauth.Allowance{Key: "m:" + clientOf(ip), Limit: 7, Window: time.Minute})
	if v6 {
		a = append(a, realtimeauth.Allowance{Key: "mp:" + prefixOf(ip), Limit: 8, Window: time.Minute})
	}
	if sub != "" {
		a = append(a, realtimeauth.Allowance{Key: "s:" + sub, Limit: 5, Window: 2 * time.Minute})
	}
	return a
}

// TestSessionStoreMatchesMemoryStore drives a memory store and a SessionStore
// through the same random operations (every one of them, over clients,
// IPv6 prefixes and subjects, with allowances and caps) and requires the
// same answers, times to the nanosecond included.
func TestSessionStoreMatchesMemoryStore(t *testing.T) {
	eachTopology(t, func(t *testing.T, rdb redis.UniversalClient) {
		for _, buckets := range []int{1, 256} {
			t.Run(fmt.Sprintf("buckets=%d", buckets), func(t *testing.T) {
				testTwin(t, rdb, buckets)
			})
		}
	})
}

func testTwin(t *testing.T, rdb redis.UniversalClient, buckets int) {
	ctx := context.Background()
	red, err := redisstore.NewSessionStore(ctx, rdb, redisstore.WithBuckets(buckets), redisstore.WithPrefix(fmt.Sprint("twin", buckets)))
	require.NoError(t, err)
	w := &twin{t: t, mem: realtimeauth.NewMemoryStore(), red: red, seen: map[string]int{}}
	rng := rand.New(rand.NewPCG(7, uint64(buckets)))
	now := t0
	// The memory store picks among equally heavy clients at random, so the total
	// cap is compared in TestStoreFull instead.
	maxSessions := 0
	ops := 0
	for ; ops < 1500; ops++ {
		now = now.Add(time.Duration(rng.Int64N(int64(2 * time.Second))))
		if rng.IntN(50) == 0 {
			now = now.Add(time.Duration(rng.Int64N(int64(3 * time.Minute))))
		}
		ip := twinIPs[rng.IntN(len(twinIPs))]
		sub := twinSubjects[rng.IntN(len(twinSubjects))]
		switch op := rng.IntN(20); {
		case op < 5 || len(w.ids) == 0:
			w.open(realtimeauth.OpenRequest{Now: now, ExpiresAt: now.Add(time.Duration(60+rng.IntN(120)) * time.Second),
				ClientIP: ip, Client: clientOf(ip), Subject: sub, Allowances: allowances(ip, sub, true),
				MaxPerClient: 3, MaxPerSubject: 3, MaxSessions: maxSessions})
		case op < 13:
			i := len(w.ids) - 1 - rng.IntN(min(len(w.ids), 6)) // mostly live ones
			if rng.IntN(3) > 0 {                               // mostly the session's own client
				ip, sub = w.clientOf(i)
			}
			w.refresh(i, realtimeauth.RefreshRequest{Now: now, ClientIP: ip, Subject: sub, MaxRefreshes: 2,
				MinInterval: time.Duration(rng.IntN(3)) * 3 * time.Second, Allowances: allowances(ip, sub, false)})
		case op < 15:
			i := rng.IntN(len(w.ids))
			issued := w.issued[i]
			if rng.IntN(4) == 0 {
				issued = issued.Add(time.Nanosecond) // superseded: changes nothing
			}
			w.giveBack(i, issued, issued.Add(-time.Second))
		case op < 16:
			w.revoke(rng.IntN(len(w.ids)), now)
		case op < 17:
			w.revokeSubject(twinSubjects[2+rng.IntN(2)], now)
		case op < 18:
			w.del(rng.IntN(len(w.ids)))
		default:
			w.count(now)
		}
	}
	w.count(now)
	t.Logf("%d operations, %d sessions opened: %v", ops, len(w.ids), w.seen)
	for _, k := range []string{"open ", "open evicting", "open limit n:", "open limit np:", "open limit s:",
		"open " + realtimeauth.ErrTooManySessions.Error(), "refresh ", "refresh limit m:", "refresh limit mp:", "refresh limit s:",
		"refresh " + realtimeauth.ErrSessionNotFound.Error(), "refresh " + realtimeauth.ErrSessionRevoked.Error(),
		"refresh " + realtimeauth.ErrSessionMismatch.Error(), "refresh " + realtimeauth.ErrRefreshLimit.Error(),
		"refresh " + realtimeauth.ErrRefreshTooSoon.Error()} {
		assert.Positive(t, w.seen[k], "never met %q", k)
	}
}

// clientOf returns the ClientIP and Subject session i was opened with.
func (w *twin) clientOf(i int) (string, string) { return w.owners[i][0], w.owners[i][1] }
