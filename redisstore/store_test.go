package redisstore_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/realtimeauth/realtimeauth"
	"github.com/realtimeauth/realtimeauth/redisstore"
	"github.com/realtimeauth/realtimeauth/redisstore/redistest"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func openReq(ip, sub string, now time.Time) realtimeauth.OpenRequest {
	return realtimeauth.OpenRequest{Now: now, ExpiresAt: now.Add(time.Hour), ClientIP: ip, Client: clientOf(ip), Subject: sub}
}

// TestStoreFull: with one bucket the total cap is the memory store's exactly: a
// full store evicts the heaviest client's least recently used session for
// a lighter client and refuses a client that is itself the heaviest.
func TestStoreFull(t *testing.T) {
	eachTopology(t, func(t *testing.T, rdb redis.UniversalClient) {
		red, err := redisstore.NewSessionStore(context.Background(), rdb, redisstore.WithBuckets(1))
		require.NoError(t, err)
		w := &twin{t: t, mem: realtimeauth.NewMemoryStore(), red: red, seen: map[string]int{}}
		now := t0
		open := func(ip string) {
			now = now.Add(time.Second)
			req := openReq(ip, "", now)
			req.MaxPerClient, req.MaxSessions = 3, 4
			w.open(req)
		}
		for _, ip := range []string{"10.0.0.1", "10.0.0.1", "10.0.0.1", "10.0.0.2"} {
			open(ip) // A:3 B:1, full
		}
		open("10.0.0.3")    // evicts A's oldest: A:2 B:1 C:1
		open("10.0.0.2")    // evicts A's next: A:1 B:2 C:1
		open("10.0.0.2")    // B is the heaviest: ErrStoreFull
		open("2001:db8::1") // evicts B's oldest: A:1 B:1 C:1 D:1
		open("10.0.0.2")    // among the heaviest: ErrStoreFull
		w.count(now)
		assert.Equal(t, 7, w.seen["open "], "opens admitted")
		assert.Equal(t, 2, w.seen["open "+realtimeauth.ErrStoreFull.Error()])
		assert.Equal(t, 3, w.seen["open evicting"])
	})
}

// TestStoreFullPerBucket: with buckets, MaxSessions is split over them and
// each bucket evicts its own heaviest client: a flood from many addresses
// never holds more than the cap and never refuses a newcomer, and a client
// that piles up sessions is refused once it is its bucket's heaviest.
func TestStoreFullPerBucket(t *testing.T) {
	_, rdb, _ := startRedis(t)
	ctx := context.Background()
	s, err := redisstore.NewSessionStore(ctx, rdb, redisstore.WithBuckets(4))
	require.NoError(t, err)
	now := t0
	evicted := 0
	for i := range 500 {
		req := openReq(fmt.Sprintf("10.%d.%d.1", i/250, i%250), "", now)
		req.MaxSessions = 40 // 10 per bucket
		_, ev, err := s.Open(ctx, req)
		require.NoError(t, err, "newcomer %d", i)
		evicted += len(ev)
	}
	n, err := s.Count(ctx, now)
	require.NoError(t, err)
	assert.Equal(t, 40, n)
	assert.Equal(t, 460, evicted)

	refused := 0
	for range 30 {
		req := openReq("192.0.2.1", "", now)
		req.MaxSessions, req.MaxPerClient = 40, 100
		if _, _, err := s.Open(ctx, req); errors.Is(err, realtimeauth.ErrStoreFull) {
			refused++
		} else {
			require.NoError(t, err)
		}
	}
	assert.Equal(t, 29, refused, "admitted once, while lighter than its bucket's heaviest (1 session); then among the heaviest")
	n, err = s.Count(ctx, now)
	require.NoError(t, err)
	assert.Equal(t, 40, n)
}

// TestStoreExactAcrossInstances: concurrent Opens and Refreshes through two
// stores on two clients (two instances) hold every cap and allowance
// exactly.
func TestStoreExactAcrossInstances(t *testing.T) {
	eachTopology(t, func(t *testing.T, rdb redis.UniversalClient) {
		ctx := context.Background()
		var stores [2]*redisstore.SessionStore
		for i := range stores {
			s, err := redisstore.NewSessionStore(ctx, rdb)
			require.NoError(t, err)
			stores[i] = s
		}
		run := func(n int, f func(i int, s *redisstore.SessionStore) error) map[string]int {
			var mu sync.Mutex
			out := map[string]int{}
			var wg sync.WaitGroup
			for i := range n {
				wg.Go(func() {
					k := errKind(f(i, stores[i%2]))
					mu.Lock()
					out[k]++
					mu.Unlock()
				})
			}
			wg.Wait()
			return out
		}
		var evicted atomic.Int64
		got := run(60, func(i int, s *redisstore.SessionStore) error {
			req := openReq("10.9.0.1", "", t0)
			req.MaxPerClient = 5
			_, ev, err := s.Open(ctx, req)
			evicted.Add(int64(len(ev)))
			return err
		})
		assert.Equal(t, map[string]int{"": 60}, got, "the per-client cap evicts, never refuses")
		assert.Equal(t, int64(55), evicted.Load())

		got = run(40, func(i int, s *redisstore.SessionStore) error {
			req := openReq(fmt.Sprintf("10.8.%d.1", i), "carol", t0)
			req.MaxPerSubject = 7
			_, _, err := s.Open(ctx, req)
			return err
		})
		assert.Equal(t, map[string]int{"": 7, realtimeauth.ErrTooManySessions.Error(): 33}, got, "the per-subject cap")

		got = run(40, func(i int, s *redisstore.SessionStore) error {
			req := openReq(fmt.Sprintf("2001:db8:5:%x::1", i), "", t0)
			req.Allowances = []realtimeauth.Allowance{{Key: "np:2001:db8:5::/48", Limit: 12, Window: time.Minute}}
			_, _, err := s.Open(ctx, req)
			return err
		})
		assert.Equal(t, 12, got[""], "the /48's allowance: %v", got)
		assert.Equal(t, 28, got["limit np:2001:db8:5::/48 1m0s"], "%v", got)

		got = run(40, func(i int, s *redisstore.SessionStore) error {
			req := openReq(fmt.Sprintf("10.7.%d.1", i), "dave", t0)
			req.Allowances = []realtimeauth.Allowance{{Key: "s:dave", Limit: 9, Window: time.Minute}}
			_, _, err := s.Open(ctx, req)
			return err
		})
		assert.Equal(t, 9, got[""], "the subject's allowance: %v", got)

		sess, _, err := stores[0].Open(ctx, openReq("10.6.0.1", "erin", t0))
		require.NoError(t, err)
		got = run(50, func(i int, s *redisstore.SessionStore) error {
			_, err := s.Refresh(ctx, realtimeauth.RefreshRequest{Now: t0, ID: sess.ID, ClientIP: "10.6.0.1", Subject: "erin", MaxRefreshes: 20,
				Allowances: []realtimeauth.Allowance{{Key: "m:10.6.0.1", Limit: 30, Window: time.Minute}, {Key: "s:erin", Limit: 25, Window: time.Minute}}})
			return err
		})
		assert.Equal(t, 20, got[""], "the refresh policy: %v", got)
		assert.Equal(t, 30, got[realtimeauth.ErrRefreshLimit.Error()], "%v", got)
	})
}

// TestSubjectStepTakenBack: when the client's step refuses an
// authenticated Open (or Refresh), the subject's reservation and charge
// are given back.
func TestSubjectStepTakenBack(t *testing.T) {
	eachTopology(t, func(t *testing.T, rdb redis.UniversalClient) {
		ctx := context.Background()
		s, err := redisstore.NewSessionStore(ctx, rdb)
		require.NoError(t, err)
		clientLimit := realtimeauth.Allowance{Key: "n:10.5.0.1", Limit: 1, Window: time.Minute}
		subjLimit := realtimeauth.Allowance{Key: "s:frank", Limit: 2, Window: time.Minute}
		open := func(ip string) error {
			req := openReq(ip, "frank", t0)
			req.MaxPerSubject = 2
			req.Allowances = []realtimeauth.Allowance{{Key: "n:" + ip, Limit: 1, Window: time.Minute}, subjLimit}
			_, _, err := s.Open(ctx, req)
			return err
		}
		require.NoError(t, open(clientLimit.Key[2:]))
		for range 5 { // refused by the client's allowance, after the subject's step
			var le *realtimeauth.LimitError
			require.ErrorAs(t, open(clientLimit.Key[2:]), &le)
			assert.Equal(t, clientLimit.Key, le.Key)
		}
		require.NoError(t, open("10.5.0.2"), "the subject's cap and allowance were given back")
		var le *realtimeauth.LimitError
		require.ErrorAs(t, open("10.5.0.3"), &le)
		assert.Equal(t, subjLimit.Key, le.Key, "the subject's allowance, used up")

		// Refresh: the subject's allowance refuses after the client's step.
		sess, _, err := s.Open(ctx, openReq("10.5.1.1", "grace", t0))
		require.NoError(t, err)
		refresh := func(now time.Time) (realtimeauth.Session, error) {
			return s.Refresh(ctx, realtimeauth.RefreshRequest{Now: now, ID: sess.ID, ClientIP: "10.5.1.1", Subject: "grace", MaxRefreshes: 10,
				MinInterval: time.Second, Allowances: []realtimeauth.Allowance{{Key: "m:10.5.1.1", Limit: 2, Window: time.Minute},
					{Key: "s:grace", Limit: 1, Window: time.Minute}}})
		}
		got, err := refresh(t0.Add(time.Second))
		require.NoError(t, err)
		assert.Equal(t, 1, got.Refreshes)
		_, err = refresh(t0.Add(2 * time.Second))
		require.ErrorAs(t, err, &le)
		assert.Equal(t, "s:grace", le.Key)
		// Given back: the refresh (Refreshes 1, LastIssuedAt t0+1s, so a
		// refresh is not too soon) and the client's charge (m: has 1 left).
		_, err = s.Refresh(ctx, realtimeauth.RefreshRequest{Now: t0.Add(2 * time.Second), ID: sess.ID, ClientIP: "10.5.1.1", Subject: "grace",
			MaxRefreshes: 10, MinInterval: time.Second, Allowances: []realtimeauth.Allowance{{Key: "m:10.5.1.1", Limit: 2, Window: time.Minute}}})
		require.NoError(t, err)
		got, err = s.Revoke(ctx, sess.ID, t0.Add(2*time.Second))
		require.NoError(t, err)
		assert.Equal(t, 2, got.Refreshes)
	})
}

// TestRefreshFromAnotherBucket: a session ID presented by another client,
// whose bucket differs, is still found and answered ErrSessionMismatch; a
// malformed or foreign ID is ErrSessionNotFound.
func TestRefreshFromAnotherBucket(t *testing.T) {
	eachTopology(t, func(t *testing.T, rdb redis.UniversalClient) {
		ctx := context.Background()
		s, err := redisstore.NewSessionStore(ctx, rdb)
		require.NoError(t, err)
		sess, _, err := s.Open(ctx, openReq("10.4.0.1", "", t0))
		require.NoError(t, err)
		for i := range 20 {
			ip := fmt.Sprintf("10.4.%d.2", i)
			_, err := s.Refresh(ctx, realtimeauth.RefreshRequest{Now: t0, ID: sess.ID, ClientIP: ip, MaxRefreshes: 5,
				Allowances: []realtimeauth.Allowance{{Key: "m:" + ip, Limit: 5, Window: time.Minute}}})
			assert.ErrorIs(t, err, realtimeauth.ErrSessionMismatch, ip)
		}
		for _, id := range []string{"nope", strings.ToUpper(sess.ID), "00000000-0000-4000-8000-000000000000", sess.ID[:35] + "x"} {
			_, err := s.Refresh(ctx, realtimeauth.RefreshRequest{Now: t0, ID: id, ClientIP: "10.4.0.1", MaxRefreshes: 5})
			assert.ErrorIs(t, err, realtimeauth.ErrSessionNotFound, id)
			_, err = s.Revoke(ctx, id, t0)
			assert.ErrorIs(t, err, realtimeauth.ErrSessionNotFound, id)
			assert.NoError(t, s.Delete(ctx, id))
			assert.NoError(t, s.GiveBack(ctx, id, t0, t0))
		}
	})
}

// TestStoreRoundTrips counts the store's round trips per operation.
func TestStoreRoundTrips(t *testing.T) {
	_, rdb, rt := startRedis(t)
	ctx := context.Background()
	s, err := redisstore.NewSessionStore(ctx, rdb)
	require.NoError(t, err)
	measure := func(f func()) int64 {
		before := rt.Load()
		f()
		return rt.Load() - before
	}
	client := []realtimeauth.Allowance{{Key: "n:10.3.0.1", Limit: 10, Window: time.Minute}, {Key: "m:10.3.0.1", Limit: 30, Window: time.Minute}}
	var anon, authed realtimeauth.Session
	assert.Equal(t, int64(1), measure(func() {
		req := openReq("10.3.0.1", "", t0)
		req.Allowances, req.MaxPerClient, req.MaxSessions = client, 10, 1000
		anon, _, err = s.Open(ctx, req)
		require.NoError(t, err)
	}), "anonymous Open")
	assert.Equal(t, int64(2), measure(func() {
		req := openReq("10.3.0.1", "henry", t0)
		req.Allowances = append(client, realtimeauth.Allowance{Key: "s:henry", Limit: 30, Window: time.Minute})
		req.MaxPerClient, req.MaxPerSubject, req.MaxSessions = 10, 5, 1000
		authed, _, err = s.Open(ctx, req)
		require.NoError(t, err)
	}), "authenticated Open")
	assert.Equal(t, int64(1), measure(func() {
		_, err := s.Refresh(ctx, realtimeauth.RefreshRequest{Now: t0, ID: anon.ID, ClientIP: "10.3.0.1", MaxRefreshes: 5, Allowances: client[1:]})
		require.NoError(t, err)
	}), "anonymous Refresh")
	assert.Equal(t, int64(2), measure(func() {
		_, err := s.Refresh(ctx, realtimeauth.RefreshRequest{Now: t0, ID: authed.ID, ClientIP: "10.3.0.1", Subject: "henry", MaxRefreshes: 5,
			Allowances: append(client[1:2:2], realtimeauth.Allowance{Key: "s:henry", Limit: 30, Window: time.Minute})})
		require.NoError(t, err)
	}), "authenticated Refresh")
	assert.Equal(t, int64(1), measure(func() { require.NoError(t, s.GiveBack(ctx, anon.ID, t0, t0)) }), "GiveBack")
	assert.Equal(t, int64(1), measure(func() { require.NoError(t, s.Delete(ctx, anon.ID)) }), "Delete, anonymous")
	assert.Equal(t, int64(2), measure(func() { _, err := s.Revoke(ctx, authed.ID, t0); require.NoError(t, err) }), "Revoke, authenticated")
	assert.Equal(t, int64(1), measure(func() { _, err := s.Count(ctx, t0); require.NoError(t, err) }), "Count: one pipeline")
}

// TestPolicyCheck: a Redis whose maxmemory-policy may evict keys is
// refused at construction by every constructor, with the same message
// naming the setting and the fix; WithoutPolicyCheck opts out.
func TestPolicyCheck(t *testing.T) {
	ctx := context.Background()
	constructors := []struct {
		name string
		new  func(rdb redis.UniversalClient, opts ...redisstore.Option) error
	}{
		{"NewSessionStore", func(rdb redis.UniversalClient, opts ...redisstore.Option) error {
			_, err := redisstore.NewSessionStore(ctx, rdb, opts...)
			return err
		}},
		{"NewAbuseGuard", func(rdb redis.UniversalClient, opts ...redisstore.Option) error {
			_, err := redisstore.NewAbuseGuard(ctx, rdb, 3, time.Minute, time.Minute, opts...)
			return err
		}},
		{"NewLimiter", func(rdb redis.UniversalClient, opts ...redisstore.Option) error {
			_, err := redisstore.NewLimiter(ctx, rdb, 3, time.Minute, opts...)
			return err
		}},
		{"NewCallRegistry", func(rdb redis.UniversalClient, opts ...redisstore.Option) error {
			_, err := redisstore.NewCallRegistry(ctx, rdb, opts...)
			return err
		}},
	}

	srv := redistest.Start(t)
	rdb, _ := newClient(t, srv)
	for _, policy := range []string{"volatile-lru", "allkeys-lru"} {
		require.NoError(t, rdb.ConfigSet(ctx, "maxmemory-policy", policy).Err())
		var first error
		for _, c := range constructors {
			err := c.new(rdb)
			require.Error(t, err, "%s under %s", c.name, policy)
			assert.Contains(t, err.Error(), `maxmemory-policy "`+policy+`"`, c.name)
			assert.Contains(t, err.Error(), "maxmemory-policy noeviction", c.name)
			assert.Contains(t, err.Error(), "WithoutPolicyCheck", c.name)
			if first == nil {
				first = err
			}
			assert.Equal(t, first.Error(), err.Error(), "%s refuses as %s does", c.name, constructors[0].name)
			assert.NoError(t, c.new(rdb, redisstore.WithoutPolicyCheck()), "%s with WithoutPolicyCheck under %s", c.name, policy)
		}
	}

	// CONFIG hidden (renamed away, as managed Redis does).
	hidden := redistest.Start(t, "--rename-command", "CONFIG", "")
	hrdb, _ := newClient(t, hidden)
	for _, c := range constructors {
		assert.ErrorContains(t, c.new(hrdb), "WithoutPolicyCheck", c.name)
		assert.NoError(t, c.new(hrdb, redisstore.WithoutPolicyCheck()), c.name)
	}

	// One master of a cluster with the wrong policy is enough to refuse.
	cl, crdb, _ := startCluster(t)
	cc, _ := newClient(t, cl.Servers[2])
	require.NoError(t, cc.ConfigSet(ctx, "maxmemory-policy", "allkeys-lru").Err())
	for _, c := range constructors {
		assert.ErrorContains(t, c.new(crdb), cl.Addrs[2], c.name)
	}
}

// TestKeysSpread: the buckets of 1,000 clients land on all three masters
// of a cluster, each holding a fair share.
func TestKeysSpread(t *testing.T) {
	_, rdb, _ := startCluster(t)
	ctx := context.Background()
	s, err := redisstore.NewSessionStore(ctx, rdb)
	require.NoError(t, err)
	for i := range 1000 {
		ip := fmt.Sprintf("10.%d.%d.%d", i/65536, i/256%256, i%256)
		if i%2 == 1 {
			ip = fmt.Sprintf("2001:db8:%x:1::1", i)
		}
		req := openReq(ip, "", t0)
		req.Allowances = []realtimeauth.Allowance{{Key: "n:" + clientOf(ip), Limit: 10, Window: time.Minute}}
		_, _, err := s.Open(ctx, req)
		require.NoError(t, err)
	}
	var mu sync.Mutex
	var sizes []int64
	require.NoError(t, rdb.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error {
		n, err := c.DBSize(ctx).Result()
		mu.Lock()
		sizes = append(sizes, n)
		mu.Unlock()
		return err
	}))
	require.Len(t, sizes, 3)
	total := sizes[0] + sizes[1] + sizes[2]
	t.Logf("keys per master: %v", sizes)
	for _, n := range sizes {
		assert.Greater(t, n, total/5, "every master holds a fair share: %v", sizes)
	}
	n, err := s.Count(ctx, t0)
	require.NoError(t, err)
	assert.Equal(t, 1000, n)
}

// TestStoreFailureAndRecovery: with Redis down every operation returns a
// backend error (none of the sentinels); a restarted Redis, which has
// forgotten the scripts, serves every operation again, the pipelined ones
// (Count, RevokeSubject) included.
func TestStoreFailureAndRecovery(t *testing.T) {
	srv, rdb, _ := startRedis(t)
	ctx := context.Background()
	s, err := redisstore.NewSessionStore(ctx, rdb)
	require.NoError(t, err)
	sess, _, err := s.Open(ctx, openReq("10.2.0.1", "kim", t0))
	require.NoError(t, err)
	srv.Stop()
	cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	backend := func(err error, op string) {
		t.Helper()
		require.Error(t, err, op)
		assert.Contains(t, err.Error(), "redisstore: ", op)
		assert.Equal(t, "backend: "+err.Error(), errKind(err), "%s: none of the sentinels", op)
	}
	_, _, err = s.Open(cctx, openReq("10.2.0.1", "", t0))
	backend(err, "open")
	_, _, err = s.Open(cctx, openReq("10.2.0.1", "kim", t0))
	backend(err, "open, authenticated")
	_, err = s.Refresh(cctx, realtimeauth.RefreshRequest{Now: t0, ID: sess.ID, ClientIP: "10.2.0.1", Subject: "kim", MaxRefreshes: 5})
	backend(err, "refresh")
	backend(s.GiveBack(cctx, sess.ID, t0, t0), "give back")
	_, err = s.Revoke(cctx, sess.ID, t0)
	backend(err, "revoke")
	_, err = s.RevokeSubject(cctx, "kim", t0)
	backend(err, "revoke subject")
	backend(s.Delete(cctx, sess.ID), "delete")
	_, err = s.Count(cctx, t0)
	backend(err, "count")

	srv.Restart() // empty, scripts forgotten
	n, err := s.Count(ctx, t0)
	require.NoError(t, err)
	assert.Zero(t, n)
	for _, ip := range []string{"10.2.0.1", "10.2.0.2"} {
		_, _, err = s.Open(ctx, openReq(ip, "kim", t0))
		require.NoError(t, err)
	}
	require.NoError(t, redisScriptFlush(ctx, rdb))
	revoked, err := s.RevokeSubject(ctx, "kim", t0)
	require.NoError(t, err)
	assert.Len(t, revoked, 2)
	require.NoError(t, redisScriptFlush(ctx, rdb))
	n, err = s.Count(ctx, t0)
	require.NoError(t, err)
	assert.Zero(t, n)
}

func redisScriptFlush(ctx context.Context, rdb *redis.Client) error {
	return rdb.ScriptFlush(ctx).Err()
}

// TestStoreRefusesBadInput: an allowance out of the rule's range is an
// error (none of the sentinels) before anything is charged, and a session
// Redis holds in a shape the store did not write is a backend error.
func TestStoreRefusesBadInput(t *testing.T) {
	_, rdb, _ := startRedis(t)
	ctx := context.Background()
	s, err := redisstore.NewSessionStore(ctx, rdb, redisstore.WithBuckets(1))
	require.NoError(t, err)
	for _, a := range []realtimeauth.Allowance{{Key: "n:x", Limit: 0, Window: time.Minute}, {Key: "n:x", Limit: 1024, Window: time.Minute},
		{Key: "n:x", Limit: 1, Window: 0}, {Key: "s:x", Limit: 1, Window: 6}} {
		req := openReq("10.1.0.1", "x", t0)
		req.Allowances = []realtimeauth.Allowance{a}
		_, _, err := s.Open(ctx, req)
		require.Error(t, err, "%+v", a)
		assert.Equal(t, "backend: "+err.Error(), errKind(err))
		assert.Contains(t, err.Error(), a.Key)
	}
	n, err := s.Count(ctx, t0)
	require.NoError(t, err)
	assert.Zero(t, n, "nothing opened")
	req := openReq("10.1.0.1", "x", t0)
	req.MaxPerSubject = 1
	_, _, err = s.Open(ctx, req)
	require.NoError(t, err, "the refused Opens reserved nothing for the subject")

	sess, _, err := s.Open(ctx, openReq("10.1.0.2", "", t0))
	require.NoError(t, err)
	key := fmt.Sprintf("{%s:0}:s:%s", redisstore.DefaultPrefix, sess.ID)
	for _, v := range []string{"10.1.0.2\n10.1.0.2\nnot a time\n1900000000.000000000\n1700000000.000000000\n0\n0\n", "no fields"} {
		require.NoError(t, rdb.Set(ctx, key, v, 0).Err())
		_, err = s.Refresh(ctx, realtimeauth.RefreshRequest{Now: t0, ID: sess.ID, ClientIP: "10.1.0.2", MaxRefreshes: 5})
		require.Error(t, err)
		assert.Contains(t, err.Error(), "malformed")
		assert.Equal(t, "backend: "+err.Error(), errKind(err))
	}
	_, _, err = s.Open(ctx, openReq("10.1.0.3\n", "", t0))
	assert.ErrorContains(t, err, "newline")
}

// TestExpiryToTheNanosecond: sessions expiring within one microsecond (the
// sorted sets' resolution) are told apart by their exact expiry.
func TestExpiryToTheNanosecond(t *testing.T) {
	eachTopology(t, func(t *testing.T, rdb redis.UniversalClient) {
		ctx := context.Background()
		s, err := redisstore.NewSessionStore(ctx, rdb, redisstore.WithBuckets(1))
		require.NoError(t, err)
		base := t0.Add(time.Hour + 7*time.Microsecond)
		var ids []string
		for i, ns := range []time.Duration{100, 500, 900} {
			req := openReq(fmt.Sprintf("10.0.9.%d", i), "lee", t0)
			req.ExpiresAt = base.Add(ns)
			sess, _, err := s.Open(ctx, req)
			require.NoError(t, err)
			ids = append(ids, sess.ID)
		}
		for _, tc := range []struct {
			at   time.Duration
			live int
		}{{0, 3}, {100, 2}, {499, 2}} {
			n, err := s.Count(ctx, base.Add(tc.at))
			require.NoError(t, err)
			assert.Equal(t, tc.live, n, "at +%v", tc.at)
		}
		// The subject's index too: at +500ns one of lee's sessions is live.
		revoked, err := s.RevokeSubject(ctx, "lee", base.Add(500))
		require.NoError(t, err)
		require.Len(t, revoked, 1)
		assert.Equal(t, ids[2], revoked[0].ID)
		n, err := s.Count(ctx, base.Add(500))
		require.NoError(t, err)
		assert.Zero(t, n)
	})
}
