package redisstore_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/realtimeauth/realtimeauth"
	"github.com/realtimeauth/realtimeauth/redisstore"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// storeOp is one call on a SessionStore; its result is compared between
// stores.
type storeOp struct {
	name string
	call func(ctx context.Context, s realtimeauth.SessionStore) (any, error)
}

func create(s realtimeauth.Session, maxPerSubject int) storeOp {
	return storeOp{"create " + s.ID, func(ctx context.Context, st realtimeauth.SessionStore) (any, error) {
		return nil, st.Create(ctx, s, maxPerSubject)
	}}
}

func get(id string, now time.Time) storeOp {
	return storeOp{"get " + id, func(ctx context.Context, st realtimeauth.SessionStore) (any, error) {
		s, err := st.Get(ctx, id, now)
		return normal(s), err
	}}
}

func update(id string, u realtimeauth.SessionUpdate) storeOp {
	return storeOp{"update " + id, func(ctx context.Context, st realtimeauth.SessionStore) (any, error) {
		s, err := st.Update(ctx, id, u)
		return normal(s), err
	}}
}

func del(id string) storeOp {
	return storeOp{"delete " + id, func(ctx context.Context, st realtimeauth.SessionStore) (any, error) {
		return nil, st.Delete(ctx, id)
	}}
}

func count(now time.Time) storeOp {
	return storeOp{"count", func(ctx context.Context, st realtimeauth.SessionStore) (any, error) {
		return st.Count(ctx, now)
	}}
}

func revokeSubject(sub string, now time.Time) storeOp {
	return storeOp{"revoke subject " + sub, func(ctx context.Context, st realtimeauth.SessionStore) (any, error) {
		return st.RevokeSubject(ctx, sub, now)
	}}
}

// normal drops the location and monotonic reading, which differ between
// stores without changing the instant.
func normal(s realtimeauth.Session) realtimeauth.Session {
	for _, t := range []*time.Time{&s.CreatedAt, &s.ExpiresAt, &s.LastIssuedAt} {
		if !t.IsZero() {
			*t = t.UTC()
		}
	}
	return s
}

func sess(id, ip, sub string, created time.Time, ttl time.Duration) realtimeauth.Session {
	return realtimeauth.Session{ID: id, ClientIP: ip, Subject: sub, CreatedAt: created,
		ExpiresAt: created.Add(ttl), LastIssuedAt: created}
}

// TestSessionStoreMatchesMemoryStore runs a MemoryStore and a SessionStore
// through the same calls and requires the same results and errors.
func TestSessionStoreMatchesMemoryStore(t *testing.T) { eachTopology(t, testSessionStoreMatches) }

func testSessionStoreMatches(t *testing.T, rdb redis.UniversalClient) {
	ns := time.Nanosecond
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	const ttl = 10 * time.Minute
	refresh := func(now time.Time, ip string) realtimeauth.SessionUpdate {
		return realtimeauth.SessionUpdate{Now: now, ClientIP: ip, MaxRefreshes: 3, MinInterval: 10 * time.Second,
			AddRefreshes: 1, LastIssuedAt: now}
	}
	cases := []struct {
		name string
		ops  []storeOp
	}{
		{"create, get, duplicate", []storeOp{
			create(sess("s1", "10.0.0.1", "", at(0), ttl), 0),
			get("s1", at(time.Second)),
			create(sess("s1", "10.0.0.2", "", at(time.Second), ttl), 0),
			get("nope", at(time.Second)),
			count(at(time.Second)),
		}},
		{"expiry to the nanosecond", []storeOp{
			create(sess("s1", "ip", "", at(0), ttl), 0),
			get("s1", at(ttl-ns)),
			update("s1", realtimeauth.SessionUpdate{Now: at(ttl - ns), AddRefreshes: 1}),
			count(at(ttl - ns)),
			get("s1", at(ttl)),
			update("s1", realtimeauth.SessionUpdate{Now: at(ttl), AddRefreshes: 1}),
			count(at(ttl)),
			create(sess("s1", "ip2", "", at(ttl), ttl), 0), // an expired ID is free again
			get("s1", at(ttl)),
		}},
		{"refresh policy", []storeOp{
			create(sess("s1", "ip", "", at(0), ttl), 0),
			update("s1", refresh(at(10*time.Second-ns), "ip")),
			update("s1", refresh(at(10*time.Second), "ip")),
			update("s1", refresh(at(15*time.Second), "ip")),
			update("s1", refresh(at(20*time.Second), "other-ip")),
			update("s1", refresh(at(20*time.Second), "ip")),
			update("s1", refresh(at(30*time.Second), "ip")),
			update("s1", refresh(at(40*time.Second), "ip")),
			get("s1", at(40*time.Second)),
		}},
		{"give back a refresh only if not superseded", []storeOp{
			create(sess("s1", "ip", "", at(0), ttl), 0),
			update("s1", refresh(at(time.Minute), "ip")),
			update("s1", realtimeauth.SessionUpdate{Now: at(time.Minute), AddRefreshes: -1,
				LastIssuedAt: at(50 * time.Second), IfLastIssuedAt: at(time.Minute + ns)}),
			update("s1", realtimeauth.SessionUpdate{Now: at(time.Minute), AddRefreshes: -1,
				LastIssuedAt: at(50 * time.Second), IfLastIssuedAt: at(time.Minute)}),
			update("s1", realtimeauth.SessionUpdate{Now: at(time.Minute), AddRefreshes: -5}),
		}},
		{"subject mismatch and revocation", []storeOp{
			create(sess("s1", "ip", "alice", at(0), ttl), 0),
			update("s1", realtimeauth.SessionUpdate{Now: at(time.Second), Subject: "bob", AddRefreshes: 1}),
			update("s1", realtimeauth.SessionUpdate{Now: at(time.Second), Subject: "alice", AddRefreshes: 1}),
			count(at(time.Second)),
			update("s1", realtimeauth.SessionUpdate{Now: at(2 * time.Second), Revoke: true}),
			count(at(2 * time.Second)),
			update("s1", realtimeauth.SessionUpdate{Now: at(3 * time.Second), AddRefreshes: 1}),
			get("s1", at(3*time.Second)),
		}},
		{"per-subject cap", []storeOp{
			create(sess("a1", "ip", "alice", at(0), ttl), 2),
			create(sess("a2", "ip", "alice", at(time.Second), ttl), 2),
			create(sess("a3", "ip", "alice", at(2*time.Second), ttl), 2),
			create(sess("b1", "ip", "bob", at(2*time.Second), ttl), 2),
			create(sess("x1", "ip", "", at(2*time.Second), ttl), 2),
			update("a1", realtimeauth.SessionUpdate{Now: at(3 * time.Second), Revoke: true}),
			create(sess("a3", "ip", "alice", at(3*time.Second), ttl), 2),
			create(sess("a4", "ip", "alice", at(4*time.Second), ttl), 2),
			del("a2"),
			create(sess("a4", "ip", "alice", at(5*time.Second), ttl), 2),
			create(sess("a5", "ip", "alice", at(ttl+time.Second), ttl), 2), // a3 expired by then
			create(sess("a6", "ip", "alice", at(ttl+time.Second), ttl), 0), // no cap
			count(at(ttl + time.Second)),
		}},
		{"revoke a subject", []storeOp{
			create(sess("a1", "ip", "alice", at(0), ttl), 0),
			create(sess("a2", "ip", "alice", at(time.Second), time.Minute), 0),
			create(sess("a3", "ip", "alice", at(2*time.Second), ttl), 0),
			create(sess("b1", "ip", "bob", at(2*time.Second), ttl), 0),
			update("a3", realtimeauth.SessionUpdate{Now: at(3 * time.Second), Revoke: true}),
			count(at(2 * time.Minute)),
			revokeSubject("alice", at(2*time.Minute)), // a1 only: a2 expired, a3 revoked
			revokeSubject("alice", at(2*time.Minute)),
			revokeSubject("nobody", at(2*time.Minute)),
			count(at(2 * time.Minute)),
			get("a1", at(2*time.Minute)),
			update("b1", refresh(at(2*time.Minute), "ip")),
		}},
		{"count follows expiry and delete", []storeOp{
			create(sess("s1", "ip", "", at(0), time.Minute), 0),
			create(sess("s2", "ip", "", at(0), time.Minute+time.Microsecond/2), 0),
			create(sess("s3", "ip", "", at(0), 2*time.Minute), 0),
			count(at(0)),
			del("s3"),
			del("s3"),
			count(at(time.Minute)),
			count(at(time.Minute + time.Microsecond/2 - ns)),
			count(at(time.Minute + time.Microsecond/2)),
		}},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			mem := realtimeauth.NewMemoryStore()
			rs, err := redisstore.NewSessionStore(rdb, redisstore.WithPrefix(fmt.Sprintf("conf%d", i)))
			require.NoError(t, err)
			ctx := context.Background()
			for j, op := range tc.ops {
				want, wantErr := op.call(ctx, mem)
				got, gotErr := op.call(ctx, rs)
				require.Equal(t, wantErr, gotErr, "op %d: %s", j, op.name)
				require.Equal(t, want, got, "op %d: %s", j, op.name)
			}
		})
	}
}

// TestSessionStoreConcurrent: creates for one subject beyond its cap, and
// refreshes of one session beyond its policy, through two clients, store
// and admit exactly the cap and the policy.
func TestSessionStoreConcurrent(t *testing.T) {
	srv, rdb, _ := startRedis(t)
	rdb2, _ := newClient(t, srv)
	var stores [2]*redisstore.SessionStore
	for i, c := range []redis.UniversalClient{rdb, rdb2} {
		s, err := redisstore.NewSessionStore(c)
		require.NoError(t, err)
		stores[i] = s
	}
	ctx := context.Background()
	var created, tooMany atomic.Int64
	var wg sync.WaitGroup
	for i := range 60 {
		wg.Go(func() {
			err := stores[i%2].Create(ctx, sess(fmt.Sprintf("s%d", i), "ip", "alice", t0, time.Hour), 50)
			switch err {
			case nil:
				created.Add(1)
			case realtimeauth.ErrTooManySessions:
				tooMany.Add(1)
			default:
				t.Errorf("create: %v", err)
			}
		})
	}
	wg.Wait()
	assert.Equal(t, int64(50), created.Load())
	assert.Equal(t, int64(10), tooMany.Load())

	require.NoError(t, stores[0].Create(ctx, sess("r", "ip", "", t0, time.Hour), 0))
	var refreshed, limited atomic.Int64
	for i := range 100 {
		wg.Go(func() {
			_, err := stores[i%2].Update(ctx, "r", realtimeauth.SessionUpdate{Now: t0.Add(time.Minute),
				MaxRefreshes: 30, AddRefreshes: 1, LastIssuedAt: t0.Add(time.Minute)})
			switch err {
			case nil:
				refreshed.Add(1)
			case realtimeauth.ErrRefreshLimit:
				limited.Add(1)
			default:
				t.Errorf("update: %v", err)
			}
		})
	}
	wg.Wait()
	assert.Equal(t, int64(30), refreshed.Load())
	assert.Equal(t, int64(70), limited.Load())
	s, err := stores[1].Get(ctx, "r", t0.Add(time.Minute))
	require.NoError(t, err)
	assert.Equal(t, 30, s.Refreshes)
}

// TestSessionStoreCountIsCheap: Count is one command however many
// sessions there are, and expired ones leave Redis's live set.
func TestSessionStoreCountIsCheap(t *testing.T) {
	_, rdb, rt := startRedis(t)
	s, err := redisstore.NewSessionStore(rdb)
	require.NoError(t, err)
	ctx := context.Background()
	for i := range 500 {
		require.NoError(t, s.Create(ctx, sess(fmt.Sprintf("s%d", i), "ip", "", t0.Add(time.Duration(i)*time.Second), time.Hour), 0))
	}
	_, err = s.Count(ctx, t0) // loads the script: EVALSHA, NOSCRIPT, EVAL
	require.NoError(t, err)
	before := rt.Load()
	n, err := s.Count(ctx, t0.Add(time.Hour+100*time.Second))
	require.NoError(t, err)
	assert.Equal(t, 399, n) // s0..s100 expired at t0+1h..t0+1h+100s
	assert.Equal(t, int64(1), rt.Load()-before, "one round trip")
	assert.Equal(t, int64(399), rdb.ZCard(ctx, "{realtimeauth}:sessions").Val(), "the live set was trimmed")
	ttl := rdb.PTTL(ctx, "{realtimeauth}:session:s0").Val()
	assert.InDelta(t, time.Hour+time.Second, ttl, float64(5*time.Second), "redis forgets the session by TTL")
}

func TestSessionStoreFailure(t *testing.T) {
	srv, rdb, _ := startRedis(t)
	s, err := redisstore.NewSessionStore(rdb)
	require.NoError(t, err)
	ctx := context.Background()
	require.NoError(t, s.Create(ctx, sess("s1", "ip", "alice", t0, time.Hour), 0))

	srv.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	sentinels := []error{realtimeauth.ErrSessionNotFound, realtimeauth.ErrSessionExists, realtimeauth.ErrTooManySessions,
		realtimeauth.ErrSessionRevoked, realtimeauth.ErrSessionMismatch, realtimeauth.ErrRefreshLimit, realtimeauth.ErrRefreshTooSoon}
	check := func(op string, err error) {
		t.Helper()
		require.Error(t, err, op)
		assert.Contains(t, err.Error(), "redisstore: session "+op)
		for _, s := range sentinels {
			assert.NotErrorIs(t, err, s, "a backend failure is none of the sentinels")
		}
	}
	check("create", s.Create(ctx, sess("s2", "ip", "", t0, time.Hour), 0))
	_, err = s.Get(ctx, "s1", t0)
	check("get", err)
	_, err = s.Update(ctx, "s1", realtimeauth.SessionUpdate{Now: t0, AddRefreshes: 1})
	check("update", err)
	check("delete", s.Delete(ctx, "s1"))
	_, err = s.Count(ctx, t0)
	check("count", err)
	_, err = s.RevokeSubject(ctx, "alice", t0)
	check("revoke subject", err)

	srv.Restart() // no persistence: an empty Redis
	n, err := s.Count(context.Background(), t0)
	require.NoError(t, err, "recovers by itself")
	assert.Zero(t, n)
	require.NoError(t, s.Create(context.Background(), sess("s2", "ip", "", t0, time.Hour), 0))
}

func TestSessionStoreMalformedData(t *testing.T) {
	_, rdb, _ := startRedis(t)
	s, err := redisstore.NewSessionStore(rdb)
	require.NoError(t, err)
	ctx := context.Background()
	require.NoError(t, rdb.HSet(ctx, "{realtimeauth}:session:bad", "ip", "x", "sub", "", "c", "nope", "e", "9999999999.000000000",
		"l", "", "r", "0", "v", "0").Err())
	_, err = s.Get(ctx, "bad", t0)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "malformed")
	_, err = s.Update(ctx, "bad", realtimeauth.SessionUpdate{Now: t0})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "malformed")
}
