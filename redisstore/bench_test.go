package redisstore_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/realtimeauth/realtimeauth"
	"github.com/realtimeauth/realtimeauth/redisstore"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
)

// The benchmarks measure the store work of one token request (the block
// check and Open, with the handler's default allowances and caps) and of
// one refresh (the block check and Refresh), through one redis-server and
// through a three-master cluster, from 32 goroutines: requests per second,
// round trips per request (the client hook) and Redis CPU per request
// (used_cpu_user+used_cpu_sys of every server, before and after).
//
//	go test -run '^$' -bench . -benchtime 20000x ./redisstore/

// redisCPU returns the CPU seconds every server behind rdb has used.
func redisCPU(b *testing.B, rdb redis.UniversalClient) float64 {
	b.Helper()
	var mu sync.Mutex
	total := 0.0
	read := func(ctx context.Context, c *redis.Client) error {
		info, err := c.Info(ctx, "cpu").Result()
		if err != nil {
			return err
		}
		for _, line := range strings.Split(info, "\r\n") {
			k, v, _ := strings.Cut(line, ":")
			if k == "used_cpu_user" || k == "used_cpu_sys" {
				f, err := strconv.ParseFloat(v, 64)
				if err != nil {
					return err
				}
				mu.Lock()
				total += f
				mu.Unlock()
			}
		}
		return nil
	}
	ctx := context.Background()
	var err error
	switch c := rdb.(type) {
	case *redis.ClusterClient:
		err = c.ForEachMaster(ctx, read)
	case *redis.Client:
		err = read(ctx, c)
	}
	require.NoError(b, err)
	return total
}

func eachBenchTopology(b *testing.B, f func(b *testing.B, rdb redis.UniversalClient, rt *roundTrips)) {
	b.Run("shards=1", func(b *testing.B) {
		_, rdb, rt := startRedis(b)
		f(b, rdb, rt)
	})
	b.Run("shards=3", func(b *testing.B) {
		_, rdb, rt := startCluster(b)
		f(b, rdb, rt)
	})
}

// benchClient is the i-th of a million distinct IPv4 clients.
func benchClient(i int64) string {
	return fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255)
}

func runBench(b *testing.B, rdb redis.UniversalClient, rt *roundTrips, op func(ctx context.Context, i int64) error) {
	ctx := context.Background()
	var n atomic.Int64
	cpu0, rt0 := redisCPU(b, rdb), rt.Load()
	b.SetParallelism(16) // 32 callers on 2 cores
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := op(ctx, n.Add(1)); err != nil {
				b.Error(err)
				return
			}
		}
	})
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "req/s")
	b.ReportMetric(float64(rt.Load()-rt0)/float64(b.N), "roundtrips/op")
	b.ReportMetric((redisCPU(b, rdb)-cpu0)*1e6/float64(b.N), "redis-µs/op")
}

func BenchmarkTokenRequest(b *testing.B) {
	eachBenchTopology(b, func(b *testing.B, rdb redis.UniversalClient, rt *roundTrips) {
		ctx := context.Background()
		s, err := redisstore.NewSessionStore(ctx, rdb)
		require.NoError(b, err)
		g, err := redisstore.NewAbuseGuard(ctx, rdb, 10, 10*time.Minute, 15*time.Minute)
		require.NoError(b, err)
		now := time.Now()
		runBench(b, rdb, rt, func(ctx context.Context, i int64) error {
			c := benchClient(i % 100_000)
			if _, err := g.Blocked(ctx, c, now); err != nil {
				return err
			}
			_, _, err := s.Open(ctx, realtimeauth.OpenRequest{Now: now, ExpiresAt: now.Add(time.Hour), ClientIP: c, Client: c,
				Allowances:   []realtimeauth.Allowance{{Key: "n:" + c, Limit: 1023, Window: time.Minute}, {Key: "m:" + c, Limit: 1023, Window: time.Minute}},
				MaxPerClient: 10, MaxSessions: 1_000_000})
			return err
		})
	})
}

func BenchmarkRefresh(b *testing.B) {
	eachBenchTopology(b, func(b *testing.B, rdb redis.UniversalClient, rt *roundTrips) {
		ctx := context.Background()
		s, err := redisstore.NewSessionStore(ctx, rdb)
		require.NoError(b, err)
		g, err := redisstore.NewAbuseGuard(ctx, rdb, 10, 10*time.Minute, 15*time.Minute)
		require.NoError(b, err)
		now := time.Now()
		const sessions = 10_000
		ids := make([]string, sessions)
		for i := range ids {
			c := benchClient(int64(i))
			sess, _, err := s.Open(ctx, realtimeauth.OpenRequest{Now: now, ExpiresAt: now.Add(time.Hour), ClientIP: c, Client: c})
			require.NoError(b, err)
			ids[i] = sess.ID
		}
		runBench(b, rdb, rt, func(ctx context.Context, i int64) error {
			c := benchClient(i % sessions)
			if _, err := g.Blocked(ctx, c, now); err != nil {
				return err
			}
			_, err := s.Refresh(ctx, realtimeauth.RefreshRequest{Now: now, ID: ids[i%sessions], ClientIP: c, MaxRefreshes: 1 << 30,
				Allowances: []realtimeauth.Allowance{{Key: "m:" + c, Limit: 1023, Window: time.Minute}}})
			return err
		})
	})
}
