package redisstore_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/realtimeauth/realtimeauth"
	"github.com/realtimeauth/realtimeauth/redisstore"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func usedMemory(t *testing.T, rdb *redis.Client) int64 {
	t.Helper()
	info, err := rdb.Info(context.Background(), "memory").Result()
	require.NoError(t, err)
	for _, line := range strings.Split(info, "\r\n") {
		if v, ok := strings.CutPrefix(line, "used_memory:"); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			require.NoError(t, err)
			return n
		}
	}
	t.Fatal("no used_memory in INFO memory")
	return 0
}

// parallel runs f(i) for i in 0..n-1 on 8 goroutines.
func parallel(n int, f func(i int)) {
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := w; i < n; i += 8 {
				f(i)
			}
		})
	}
	wg.Wait()
}

// TestMemoryFigures measures what Redis holds per client, per session, per
// authenticated session and per block (used_memory before and after, over
// 10,000 of each; MEMORY USAGE of single keys beside it), the figures the
// README sizes maxmemory with. Sixteen buckets put several hundred clients
// and sessions in each bucket's sorted sets, as at scale (1,000,000
// sessions over 256 buckets), so that they take their large encoding.
//
//	go test -run TestMemoryFigures -v ./redisstore/
func TestMemoryFigures(t *testing.T) {
	if testing.Short() {
		t.Skip("measures 10,000 clients")
	}
	_, rdb, _ := startRedis(t)
	ctx := context.Background()
	s, err := redisstore.NewSessionStore(ctx, rdb, redisstore.WithBuckets(16))
	require.NoError(t, err)
	const n = 10_000
	ip := func(i int) string { return fmt.Sprintf("10.%d.%d.%d", i>>16, i>>8&255, i&255) }
	open := func(i int, sub string) realtimeauth.Session {
		c := ip(i)
		req := realtimeauth.OpenRequest{Now: t0, ExpiresAt: t0.Add(time.Hour), ClientIP: c, Client: c, Subject: sub,
			Allowances:   []realtimeauth.Allowance{{Key: "n:" + c, Limit: 10, Window: time.Minute}, {Key: "m:" + c, Limit: 30, Window: time.Minute}},
			MaxPerClient: 10, MaxPerSubject: 10, MaxSessions: 1_000_000}
		if sub != "" {
			req.Allowances = append(req.Allowances, realtimeauth.Allowance{Key: "s:" + sub, Limit: 30, Window: time.Hour})
		}
		sess, _, err := s.Open(ctx, req)
		require.NoError(t, err)
		return sess
	}
	per := func(before int64) float64 { return float64(usedMemory(t, rdb)-before) / n }

	m0 := usedMemory(t, rdb)
	first := make([]realtimeauth.Session, n)
	parallel(n, func(i int) { first[i] = open(i, "") })
	clientAndSession := per(m0)
	m1 := usedMemory(t, rdb)
	parallel(n, func(i int) { open(i, "") })
	session := per(m1)
	m2 := usedMemory(t, rdb)
	parallel(n, func(i int) { open(i, fmt.Sprintf("user-%d", i)) })
	authed := per(m2) // a session, and its subject's index and allowance

	g, err := redisstore.NewAbuseGuard(ctx, rdb, 1, 10*time.Minute, 15*time.Minute, redisstore.WithBuckets(16))
	require.NoError(t, err)
	m3 := usedMemory(t, rdb)
	parallel(n, func(i int) {
		_, started, err := g.Strike(ctx, ip(i), t0)
		require.NoError(t, err)
		require.True(t, started)
	})
	block := per(m3)

	t.Logf("bytes per client (its allowances n: and m:, its LRU set, its load entry): %.0f", clientAndSession-session)
	t.Logf("bytes per session (anonymous): %.0f", session)
	t.Logf("bytes per session of a new subject (its index and s: allowance included): %.0f", authed)
	t.Logf("bytes per block: %.0f", block)
	id := first[0].ID
	for _, k := range []string{"s:" + id, "c:" + ip(0), "a:n:" + ip(0), "x:" + ip(0)} {
		b := redisstore.BucketOf(ip(0), 16)
		key := fmt.Sprintf("{%s:%d}:%s", redisstore.DefaultPrefix, b, k)
		u, err := rdb.MemoryUsage(ctx, key).Result()
		require.NoError(t, err, key)
		t.Logf("MEMORY USAGE %s: %d", key, u)
	}
	assert.Less(t, session, 550.0, "the README says about 450")
	assert.Less(t, clientAndSession-session, 850.0, "the README says about 730")
	assert.Less(t, block, 250.0, "the README says about 180")
}
